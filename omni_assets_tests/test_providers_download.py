"""Streaming downloads: sha256 on the way, resume after a drop, atomic commit, expired URLs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omni_assets.providers.errors import DownloadError, UrlExpiredError

from .test_providers_support import FAST, client_for

DATA = bytes(range(256)) * 4096  # 1 MiB of a pattern
SHA = hashlib.sha256(DATA).hexdigest()
URL = "https://cdn.example.com/videos/v.mp4?Expires=1&Signature=SECRETSIG"


class Dropping(httpx.SyncByteStream):
    """A body that breaks off after ``upto`` bytes, as a dropped connection does."""

    def __init__(self, data: bytes, upto: int) -> None:
        self.data, self.upto = data, upto

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: self.upto]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


def serve(
    *, drops: list[int] | None = None, honour_range: bool = True, etag: str | None = '"v1"'
) -> Any:
    """A handler serving DATA with Range support; ``drops`` cut the first responses short."""
    pending = list(drops or [])

    def handler(request: httpx.Request) -> httpx.Response:
        start = 0
        match = re.match(r"bytes=(\d+)-", request.headers.get("range", ""))
        headers = {"content-type": "video/mp4", "accept-ranges": "bytes"}
        if etag:
            headers["etag"] = etag
        status = 200
        if match and honour_range:
            start, status = int(match.group(1)), 206
            headers["content-range"] = f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"
        body = DATA[start:]
        headers["content-length"] = str(len(body))
        if pending:
            return httpx.Response(status, headers=headers, stream=Dropping(body, pending.pop(0)))
        return httpx.Response(status, headers=headers, content=body)

    return handler


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_plain_download(tmp_path: Path) -> None:
    client, recorder = client_for("apimart", serve())
    target = tmp_path / "out" / "v.mp4"
    result = client.download(URL, str(target))
    assert (result.sha256, result.size, result.uri) == (SHA, len(DATA), str(target))
    assert target.read_bytes() == DATA and result.seconds >= 0
    assert leftovers(target.parent) == ["v.mp4"]
    sent = recorder.calls[0]
    assert "authorization" not in sent.headers  # the API key never goes to a CDN
    assert sent.headers["accept-encoding"] == "identity"


def test_resume_after_drops_uses_range_and_if_range(tmp_path: Path) -> None:
    client, recorder = client_for("toapis", serve(drops=[300_000, 200_000]))
    result = client.download(URL, str(tmp_path / "v.mp4"))
    assert result.sha256 == SHA and (tmp_path / "v.mp4").read_bytes() == DATA
    ranges = [c.headers.get("range") for c in recorder.calls]
    assert ranges == [None, "bytes=300000-", "bytes=500000-"]
    assert recorder.calls[1].headers["if-range"] == '"v1"'


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path) -> None:
    client, recorder = client_for("crun", serve(drops=[400_000], honour_range=False))
    result = client.download(URL, str(tmp_path / "v.mp4"))
    assert result.sha256 == SHA and result.size == len(DATA)
    assert len(recorder.calls) == 2


def test_too_many_drops_fail_without_leaving_anything(tmp_path: Path) -> None:
    client, recorder = client_for("jimmyai", serve(drops=[1000] * 50))
    target = tmp_path / "v.mp4"
    with pytest.raises(DownloadError, match="broke off") as caught:
        client.download(URL, str(target))
    assert "SECRETSIG" not in str(caught.value)  # signed query strings stay out of messages
    assert leftovers(tmp_path) == []
    assert len(recorder.calls) == FAST.resume_attempts + 1


def test_existing_file_survives_a_failed_download(tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    target.write_bytes(b"previous good video")
    client, _ = client_for("jimmyai", serve(drops=[10] * 50))
    with pytest.raises(DownloadError):
        client.download(URL, str(target))
    assert target.read_bytes() == b"previous good video"
    assert leftovers(tmp_path) == ["v.mp4"]


def test_short_body_without_error_is_resumed(tmp_path: Path) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:  # claims the full size in Content-Range but sends less, cleanly
            return httpx.Response(
                206,
                headers={"content-range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}"},
                content=DATA[:1000],
            )
        return serve()(request)

    client, _ = client_for("apimart", handler)
    assert client.download(URL, str(tmp_path / "v.mp4")).sha256 == SHA


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(403, text="<Error><Code>AccessDenied</Code>Request has expired</Error>"),
        httpx.Response(410, text="gone"),
        httpx.Response(404, text="not found"),
        httpx.Response(400, text="signature expired"),
    ],
    ids=["403", "410", "404", "400-expired"],
)
def test_expired_url(tmp_path: Path, response: httpx.Response) -> None:
    client, recorder = client_for("apimart", response)
    with pytest.raises(UrlExpiredError) as caught:
        client.download(URL, str(tmp_path / "v.mp4"))
    assert isinstance(caught.value, DownloadError) and "SECRETSIG" not in str(caught.value)
    assert len(recorder.calls) == 1 and leftovers(tmp_path) == []


def test_transient_errors_before_the_body_are_retried(tmp_path: Path) -> None:
    handler = serve()
    script: list[Any] = [httpx.Response(503), httpx.ConnectError("refused"), handler]
    client, recorder = client_for("toapis", *script)
    assert client.download(URL, str(tmp_path / "v.mp4")).sha256 == SHA
    assert len(recorder.calls) == 3


def test_persistent_server_errors_become_download_errors(tmp_path: Path) -> None:
    client, _ = client_for("toapis", httpx.Response(500, text="oops"))
    with pytest.raises(DownloadError) as caught:
        client.download(URL, str(tmp_path / "v.mp4"))
    assert not isinstance(caught.value, UrlExpiredError)
    assert leftovers(tmp_path) == []


def test_fsspec_memory_filesystem() -> None:
    import fsspec

    client, _ = client_for("crun", serve(drops=[123_456]))
    result = client.download(URL, "memory://bucket/videos/v.mp4")
    fs = fsspec.filesystem("memory")
    assert fs.cat("/bucket/videos/v.mp4") == DATA and result.sha256 == SHA
    assert fs.ls("/bucket/videos", detail=False) == ["/bucket/videos/v.mp4"]
    fs.rm("/bucket", recursive=True)


def test_download_to_s3(tmp_path: Path, s3_server: Any) -> None:
    client, _ = client_for("apimart", serve(drops=[500_000]))
    target = s3_server.url("videos/v.mp4")
    result = client.download(URL, target, **s3_server.storage_options)
    import fsspec

    fs = fsspec.filesystem("s3", **s3_server.storage_options)
    assert fs.cat(target) == DATA and result.sha256 == SHA
    assert [p for p in fs.ls(s3_server.url("videos"), detail=False) if "partial" in p] == []
