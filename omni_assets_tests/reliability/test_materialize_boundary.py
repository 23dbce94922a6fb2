"""Materializing a video from a hostile provider: verified before commit, committed with its
sidecar as one unit, never into another request's name (issue 12 findings 5, 16, 17).

``materialize_record`` is the step every path runs (the sensor's runs, the blocking asset, the
``download`` command); the provider is the suite's hostile server on 127.0.0.1.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from omni_assets.emulator.video import render_mp4
from omni_assets.pipeline.materialize import materialize_record
from omni_assets.pipeline.media import InvalidVideoError
from omni_assets.providers import ProviderClient, get_provider
from omni_assets.providers.base import TaskRef
from omni_assets.registry import PollUpdate, Record, RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest
from omni_assets.storage import VideoStorage

from ..hostile import HostileServer
from ..test_providers_support import FAST

pytestmark = pytest.mark.reliability


class FullDiskFileSystem(MemoryFileSystem):
    """In-memory storage whose disk is full for JSON files: the video fits, its sidecar not."""

    protocol = "fulldisk"
    full = True

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" in mode and ".json" in path and type(self).full:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return super()._open(path, mode, **kwargs)


fsspec.register_implementation("fulldisk", FullDiskFileSystem, clobber=True)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    render_mp4(path, 4, "16:9")
    return path.read_bytes()


@pytest.fixture
def registry(tmp_path: Path) -> Any:
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as reg:
        yield reg


def _client(hostile: HostileServer) -> ProviderClient:
    return get_provider("apimart", api_key="sk-hostile", base_url=f"{hostile.url}/v1", options=FAST)


def ready(registry: Registry, key: str, url: str) -> Record:
    """``key`` finished at the provider with its video at ``url``, claimed for materializing."""
    request = VideoRequest(id=key, prompt=f"boundary {key}", duration=4)
    registry.register([RegisterItem.for_request(request, "apimart", "Omni-Flash-Ext")])
    assert registry.begin_submit(key, f"idem-{key}")
    registry.record_submitted(key, TaskRef("apimart", f"task-{key}", "Omni-Flash-Ext", time.time()))
    registry.record_polls([PollUpdate(key, RecordState.READY, video_url=url, remote_done_at=1.0)])
    assert registry.claim([key], "test-run") == [key]
    record = registry.get(key)
    assert record is not None
    return record


def test_a_non_video_never_reaches_a_final_path(
    hostile: HostileServer, registry: Registry, tmp_path: Path
) -> None:
    page = b"<html>Access denied</html>" * 50
    hostile.route("GET", "/v.mp4", lambda r: r.send(page, headers={"Content-Type": "video/mp4"}))
    storage = VideoStorage(str(tmp_path / "storage"))
    record = ready(registry, "page", f"{hostile.url}/v.mp4")
    with pytest.raises(InvalidVideoError, match="not a video"):
        materialize_record(registry, _client(hostile), storage, record)
    videos = tmp_path / "storage" / "videos"
    assert not videos.exists() or list(videos.iterdir()) == []  # not even a temporary file


def test_the_video_and_its_sidecar_are_committed_as_one_unit(
    hostile: HostileServer, registry: Registry, video: bytes
) -> None:
    """A full disk at sidecar time once left the mp4 at its final path without a sidecar."""
    hostile.route("GET", "/v.mp4", lambda r: r.send(video, headers={"Content-Type": "video/mp4"}))
    storage = VideoStorage(f"fulldisk:///unit-{time.time_ns()}")
    record = ready(registry, "unit", f"{hostile.url}/v.mp4")
    with pytest.raises(OSError, match="No space left"):
        materialize_record(registry, _client(hostile), storage, record)
    assert not storage.exists(storage.video_path("unit"))
    assert not storage.exists(storage.sidecar_path("unit"))
    assert storage.fs.find(storage.root) == []  # no temporary file either
    FullDiskFileSystem.full = False  # room again: the next attempt stores both
    try:
        done = materialize_record(registry, _client(hostile), storage, record)
    finally:
        FullDiskFileSystem.full = True
    assert storage.read_bytes(storage.video_path("unit")) == video
    assert storage.read_json(storage.sidecar_path("unit"))["sha256"] == done.sha256
    assert storage.fs.find(storage.root) == sorted(
        [storage.video_path("unit"), storage.sidecar_path("unit")]
    )


def test_one_requests_clean_up_never_deletes_another_requests_video(
    hostile: HostileServer, registry: Registry, video: bytes, tmp_path: Path
) -> None:
    hostile.route("GET", "/v.mp4", lambda r: r.send(video, headers={"Content-Type": "video/mp4"}))
    storage = VideoStorage(str(tmp_path / "storage"))
    client = _client(hostile)
    victim = "boat.mp4.partial-victim"
    materialize_record(registry, client, storage, ready(registry, victim, f"{hostile.url}/v.mp4"))
    materialize_record(registry, client, storage, ready(registry, "boat", f"{hostile.url}/v.mp4"))
    for key in (victim, "boat"):
        assert storage.read_bytes(storage.video_path(key)) == video
        assert storage.read_json(storage.sidecar_path(key))["key"] == key
        record = registry.get(key)
        assert record is not None and record.state is RecordState.MATERIALIZED
