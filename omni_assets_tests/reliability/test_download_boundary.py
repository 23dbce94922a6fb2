"""Video downloads from a hostile provider: nothing unverified is committed, nothing fetched from
an internal address, no body without bound (issue 12 findings 5, 6, 7, 8; docs/reliability.md,
"Trust boundaries" / Downloads).

The provider is the suite's hostile server on 127.0.0.1 (``hostile.py``); a second one on another
loopback port stands in for an internal service that must never be reached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import pytest

from omni_assets.emulator.video import render_mp4
from omni_assets.pipeline.media import InvalidVideoError, probe_video
from omni_assets.providers import ProviderClient, get_provider
from omni_assets.providers.base import StagedDownload
from omni_assets.providers.errors import DownloadError
from omni_assets.providers.urlguard import RefusedDestinationError

from ..hostile import HostileServer, endless
from ..test_providers_support import FAST

pytestmark = pytest.mark.reliability

LOCAL = fsspec.filesystem("file")
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    render_mp4(path, 4, "16:9")
    return path.read_bytes()


@pytest.fixture
def internal() -> Iterator[HostileServer]:
    """Another loopback port: an internal service (a metadata endpoint, an admin port)."""
    with HostileServer() as server:
        server.route("GET", "/*", lambda r: r.send(b"internal secrets", 200))
        yield server


def _client(hostile: HostileServer, **options: object) -> ProviderClient:
    return get_provider(
        "apimart",
        api_key="sk-hostile-test",
        base_url=f"{hostile.url}/v1",
        options=dataclasses.replace(FAST, **options),  # type: ignore[arg-type]
    )


def _verify(staged: StagedDownload) -> None:
    probe_video(LOCAL, staged.path)


def _download(
    client: ProviderClient,
    url: str,
    target: Path,
    verify: Callable[[StagedDownload], None] | None = _verify,
) -> None:
    client.download(url, str(target), verify=verify)


def _nothing_left(folder: Path) -> bool:
    return not folder.exists() or not list(folder.iterdir())


def test_an_html_page_never_reaches_the_final_path(hostile: HostileServer, tmp_path: Path) -> None:
    page = b"<html><body>Please log in</body></html>" * 10
    hostile.route("GET", "/page", lambda r: r.send(page, headers={"Content-Type": "text/html"}))
    disguised = {"Content-Type": "video/mp4"}
    hostile.route("GET", "/disguised", lambda r: r.send(page, headers=disguised))
    client = _client(hostile)
    folder = tmp_path / "videos"
    with pytest.raises(DownloadError, match="text/html page, not a video"):
        _download(client, f"{hostile.url}/page", folder / "k.mp4")
    with pytest.raises(InvalidVideoError, match="not a video FFmpeg can read"):
        _download(client, f"{hostile.url}/disguised", folder / "k.mp4")
    assert _nothing_left(folder)  # no final file, no temporary file


def test_a_body_longer_than_its_content_length_is_refused(
    hostile: HostileServer, video: bytes, tmp_path: Path
) -> None:
    """The client stops at Content-Length: what arrived is the first half of a real video, whose
    index still lists every frame. It must not be stored as the video."""
    half = len(video) // 2
    hostile.route("GET", "/short", lambda r: r.send(video, content_length=half))
    with pytest.raises(InvalidVideoError, match=r"only \d+ of 32 frames decode"):
        _download(_client(hostile), f"{hostile.url}/short", tmp_path / "videos" / "k.mp4")
    assert _nothing_left(tmp_path / "videos")


def test_a_body_shorter_than_its_content_length_is_a_download_failure(
    hostile: HostileServer, video: bytes, tmp_path: Path
) -> None:
    hostile.route("GET", "/cut", lambda r: r.send(video[:1000], content_length=len(video)))
    with pytest.raises(DownloadError, match=r"broke off|ended at"):
        _download(_client(hostile), f"{hostile.url}/cut", tmp_path / "videos" / "k.mp4")
    assert _nothing_left(tmp_path / "videos")


def test_downloads_have_a_size_limit(hostile: HostileServer, tmp_path: Path) -> None:
    hostile.route("GET", "/huge", lambda r: r.send(b"", content_length=64 * 1024**3))
    hostile.route("GET", "/endless", lambda r: r.stream(endless(), headers={"X": "y"}))
    client = _client(hostile, max_download_bytes=2 * MiB)
    folder = tmp_path / "videos"
    with pytest.raises(DownloadError, match="larger than the 2,097,152-byte limit"):
        _download(client, f"{hostile.url}/huge", folder / "k.mp4")
    assert len(hostile.requests_to("/huge")) == 1  # refused on its headers, not retried
    with pytest.raises(DownloadError, match="body went past it"):
        _download(client, f"{hostile.url}/endless", folder / "k.mp4")
    assert _nothing_left(folder)


def test_the_default_size_limit_covers_the_largest_video_a_model_makes() -> None:
    """15 s of 4k (the longest and largest in the capability tables) at 100 Mbit/s, twice."""
    from omni_assets.providers.capabilities import CAPABILITIES
    from omni_assets.providers.http import DEFAULT_MAX_DOWNLOAD_BYTES

    entries = [c for table in CAPABILITIES.values() for c in table.values()]
    longest = max(max(c.durations, default=c.fixed_duration or 10) for c in entries)
    assert longest == 15  # google's gemini-omni-1.2-flash
    assert {r for c in entries for r in c.resolutions} <= {"360p", "720p", "1080p", "4k"}
    largest = longest * 100_000_000 // 8
    assert 2 * largest <= DEFAULT_MAX_DOWNLOAD_BYTES


def test_video_urls_on_internal_addresses_are_refused(
    hostile: HostileServer, internal: HostileServer, tmp_path: Path
) -> None:
    hostile.route("GET", "/to-internal", lambda r: r.redirect(f"{internal.url}/admin"))
    hostile.route(
        "GET", "/to-localhost", lambda r: r.redirect(f"http://localhost:{internal.port}/")
    )
    hostile.route("GET", "/to-file", lambda r: r.redirect("file:///etc/passwd"))
    hostile.route("GET", "/loop", lambda r: r.redirect("/loop"))
    client = _client(hostile)
    target = tmp_path / "videos" / "k.mp4"
    cases = {
        f"{internal.url}/admin": "non-public address",  # directly
        f"{hostile.url}/to-internal": "non-public address",  # through a 302
        f"{hostile.url}/to-localhost": "non-public address",  # a name that resolves to loopback
        f"{hostile.url}/to-file": "must be http",
        "ftp://example.com/v.mp4": "must be http",
        f"{hostile.url}/loop": "redirected more than 5 times",
    }
    for url, message in cases.items():
        with pytest.raises(RefusedDestinationError, match=message):
            _download(client, url, target)
    assert internal.seen == []  # the internal service was never reached
    assert len(hostile.requests_to("/loop")) == 6  # the first GET and 5 redirects, no more
    assert _nothing_left(tmp_path / "videos")


def test_the_providers_own_host_and_allowed_private_urls_are_fetched(
    hostile: HostileServer, internal: HostileServer, video: bytes, tmp_path: Path
) -> None:
    """The emulator case: the provider itself is on loopback, so its own URLs are fetched; and a
    user who allows private destinations (OMNI_ALLOW_PRIVATE_URLS) gets the others too."""
    hostile.route("GET", "/video", lambda r: r.send(video, headers={"Content-Type": "video/mp4"}))
    internal.route("GET", "/video", lambda r: r.send(video))
    _download(_client(hostile), f"{hostile.url}/video", tmp_path / "own.mp4")
    assert (tmp_path / "own.mp4").read_bytes() == video
    allowed = _client(hostile, allow_private_urls=True)
    _download(allowed, f"{internal.url}/video", tmp_path / "allowed.mp4")
    assert (tmp_path / "allowed.mp4").read_bytes() == video


def test_the_limits_are_settings_and_resource_fields(
    hostile: HostileServer, internal: HostileServer, video: bytes, tmp_path: Path
) -> None:
    from omni_assets.resources import APIMartResource

    from ..pipeline_env import temporary_env

    base = f"{hostile.url}/v1"
    with temporary_env(OMNI_MAX_DOWNLOAD_BYTES="1048576", OMNI_ALLOW_PRIVATE_URLS="1"):
        from_env = APIMartResource(api_key="k", base_url=base).get_client()
        assert isinstance(from_env, ProviderClient)
        assert from_env.options.max_download_bytes == MiB
        assert from_env.options.allow_private_urls
        fields = APIMartResource(
            api_key="k", base_url=base, max_download_bytes=5 * MiB, allow_private_urls=False
        ).get_client()
        assert isinstance(fields, ProviderClient)
        assert fields.options.max_download_bytes == 5 * MiB  # the field wins
    internal.route("GET", "/video", lambda r: r.send(video))
    with pytest.raises(RefusedDestinationError):
        _download(fields, f"{internal.url}/video", tmp_path / "v.mp4")
    _download(from_env, f"{internal.url}/video", tmp_path / "v.mp4")
    with temporary_env(OMNI_MAX_DOWNLOAD_BYTES="lots"), pytest.raises(ValueError, match="OMNI_MAX"):
        APIMartResource(api_key="k", base_url=base).get_client()
