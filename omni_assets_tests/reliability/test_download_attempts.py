"""A video URL that never yields a video: a bounded number of download attempts across ticks, then
``failed`` with the reason and the task id; the paid task stays downloadable by hand (issue 12
finding 9; docs/reliability.md, "Trust boundaries" / Downloads).

Each tick does what the poll sensor and the materialize op do for a ready video: offer what
``Registry.ready`` returns, claim it, ``materialize_record``, and on a failure
``record_failed_download``. The provider is the suite's hostile server on 127.0.0.1.
"""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from omni_assets.cli import main
from omni_assets.emulator.video import render_mp4
from omni_assets.pipeline.materialize import (
    DOWNLOAD_ATTEMPTS,
    STORAGE_ATTEMPTS,
    materialize_record,
    record_failed_download,
)
from omni_assets.providers import get_provider
from omni_assets.providers.base import TaskRef
from omni_assets.registry import PollUpdate, RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest
from omni_assets.storage import VideoStorage

from ..hostile import HostileServer
from ..pipeline_env import temporary_env
from ..test_providers_support import FAST
from .harness import record_figures

pytestmark = pytest.mark.reliability

TICK_S = 10.0
TICKS = 60  # 10 minutes of ticks: past the last back-off (0+30+60+120 s)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    render_mp4(path, 4, "16:9")
    return path.read_bytes()


def _ready(registry: Registry, key: str, url: str) -> None:
    request = VideoRequest(id=key, prompt=f"attempts {key}", duration=4, model="Omni-Flash-Ext")
    registry.register([RegisterItem.for_request(request, "apimart", "Omni-Flash-Ext")])
    assert registry.begin_submit(key, f"idem-{key}")
    registry.record_submitted(key, TaskRef("apimart", f"task-{key}", "Omni-Flash-Ext", time.time()))
    update = PollUpdate(key, RecordState.READY, video_url=url, url_expires_at=time.time() + 86400)
    registry.record_polls([update])


HOSTILE = {
    "html": lambda hostile: (
        lambda r: r.send(b"<html>Please log in</html>" * 20, headers={"Content-Type": "text/html"})
    ),
    "loop": lambda hostile: lambda r: r.redirect(f"{hostile.url}/v/loop"),
    "file": lambda hostile: lambda r: r.redirect("file:///etc/passwd"),
}
GETS_PER_ATTEMPT = {"html": 1, "loop": 6, "file": 1}  # a loop is followed 5 times, then refused


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_downloads_get_a_bounded_number_of_attempts_then_the_cli_fetches_the_video(
    hostile: HostileServer, tmp_path: Path, video: bytes, kind: str
) -> None:
    """An HTML page, a redirect loop or a redirect to file:// was fetched on every tick for
    ever (779 GETs in 60 s); the state stayed ``ready`` and ``status`` showed no reason."""
    path = f"/v/{kind}"
    hostile.route("GET", path, HOSTILE[kind](hostile))
    clock = Clock()
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    storage = VideoStorage(str(tmp_path / "storage"))
    client = get_provider("apimart", api_key="sk-hostile-dl", base_url=hostile.url, options=FAST)
    with Registry(db, clock=clock) as registry:
        _ready(registry, kind, hostile.url + path)
        for _tick in range(TICKS):
            for record in registry.ready():
                assert registry.claim([record.key], "tick") == [record.key]
                claimed = registry.get(record.key)
                assert claimed is not None
                try:
                    materialize_record(registry, client, storage, claimed)
                except Exception as exc:
                    record_failed_download(registry, record.key, exc)
            clock.now += TICK_S
        record = registry.get(kind)
        assert record is not None and record.state is RecordState.FAILED
        assert record.error is not None
        assert f"gave up after {DOWNLOAD_ATTEMPTS} download attempts" in record.error["message"]
        assert (
            f"task-{kind}" in record.error["message"] and record.error["task_id"] == f"task-{kind}"
        )
        assert record.error["downloadable"] is True
        gets = len(hostile.requests_to("/v/", "GET"))
        assert gets == DOWNLOAD_ATTEMPTS * GETS_PER_ATTEMPT[kind]
        record_figures("trust_boundaries", **{f"download_gets_{kind}_in_{TICKS}_ticks": gets})
    assert not (tmp_path / "storage" / "videos").exists() or not list(
        (tmp_path / "storage" / "videos").iterdir()
    )

    # The server serves a real video now: the explicit command fetches it (no new task).
    hostile.route("GET", path, lambda r: r.send(video, headers={"Content-Type": "video/mp4"}))
    env = {
        "OMNI_PROVIDER": "apimart",
        "APIMART_API_KEY": "sk-hostile-dl",
        "APIMART_BASE_URL": hostile.url,
        "OMNI_STORAGE_URL": str(tmp_path / "storage"),
        "OMNI_REGISTRY_URL": db,
    }
    with temporary_env(**env):
        assert main(["download", kind]) == 0
    with Registry(db) as registry:
        done: Any = registry.get(kind)
        assert done.state is RecordState.MATERIALIZED and done.task_id == f"task-{kind}"
    assert (tmp_path / "storage" / "videos" / f"{kind}.mp4").read_bytes() == video
    assert hostile.requests_to("/v1/", "POST") == []  # nothing was paid again


def test_storage_failures_are_bounded_too_then_the_cli_stores_the_video(
    hostile: HostileServer, tmp_path: Path, video: bytes
) -> None:
    """A full disk or S3 down at materialize time was offered again on every tick for ever
    (issue 12 finding 17: the same video downloaded again each time). Now: counted apart from
    the provider's failures, the next tick, then 5 s doubling to 10 min, then ``failed`` with
    the reason and the task id, and ``omni-assets download`` stores it once storage works."""
    hostile.route("GET", "/v/good", lambda r: r.send(video, headers={"Content-Type": "video/mp4"}))
    clock = Clock()
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    root = tmp_path / "storage"
    root.write_text("a file where the storage folder should be: every write fails")
    storage = VideoStorage(str(root))
    client = get_provider("apimart", api_key="sk-hostile-dl", base_url=hostile.url, options=FAST)
    attempts_at: list[float] = []
    with Registry(db, clock=clock) as registry:
        _ready(registry, "disk", hostile.url + "/v/good")
        for _tick in range(600):  # 100 minutes of 10 s ticks
            for record in registry.ready():
                assert registry.claim([record.key], "tick") == [record.key]
                claimed = registry.get(record.key)
                assert claimed is not None
                attempts_at.append(clock.now)
                try:
                    materialize_record(registry, client, storage, claimed)
                except Exception as exc:
                    assert not isinstance(exc, AssertionError)
                    record_failed_download(registry, record.key, exc)
            clock.now += TICK_S
        record = registry.get("disk")
        assert record is not None and record.state is RecordState.FAILED
        assert record.error is not None
        message = record.error["message"]
        assert f"gave up after {STORAGE_ATTEMPTS} attempts to store its video" in message
        assert "task-disk" in message and record.error["downloadable"] is True
    gaps = [b - a for a, b in pairwise(attempts_at)]
    assert len(attempts_at) == STORAGE_ATTEMPTS
    assert gaps[0] == TICK_S  # the first retry on the next tick: storage is often back by then
    assert max(gaps) <= 600 + TICK_S and sum(gaps) < 60 * 60  # bounded, about 50 minutes
    record_figures("trust_boundaries", storage_attempts=len(attempts_at), storage_span_s=sum(gaps))

    root.unlink()  # storage works again: the paid task's video is stored by hand, not paid twice
    env = {
        "OMNI_PROVIDER": "apimart",
        "APIMART_API_KEY": "sk-hostile-dl",
        "APIMART_BASE_URL": hostile.url,
        "OMNI_STORAGE_URL": str(root),
        "OMNI_REGISTRY_URL": db,
    }
    with temporary_env(**env):
        assert main(["download", "disk"]) == 0
    with Registry(db) as registry:
        done: Any = registry.get("disk")
        assert done.state is RecordState.MATERIALIZED
    assert (root / "videos" / "disk.mp4").read_bytes() == video
    assert hostile.requests_to("/v1/", "POST") == []
