"""Submitting to a hostile provider, or with storage that fails: each request alone, none stuck
``submitting``, nothing paid before storage is known to be writable, no create re-posted without
bound (issue 12 findings 12, 13, 20; docs/reliability.md, "Trust boundaries").

The provider is the suite's hostile server on 127.0.0.1 (``hostile.py``); storage is an
in-memory filesystem that refuses the writes a test names.
"""

from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from omni_assets.pipeline.submit import MAX_SUBMIT_TRIES, submit_pending
from omni_assets.providers import ProviderClient, get_provider
from omni_assets.registry import RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest
from omni_assets.storage import VideoStorage

from ..hostile import HostileServer, nested_json
from ..test_providers_support import FAST
from .harness import record_figures

pytestmark = pytest.mark.reliability

DEMO_PNG = Path(__file__).parents[2] / "omni_assets" / "demo" / "product.png"
MODELS = {"apimart": "Omni-Flash-Ext", "toapis": "gemini_omni", "crun": "google/gemini-omni"}
BASES = {"apimart": "", "toapis": "", "crun": ""}


class RefusingFileSystem(MemoryFileSystem):
    """In-memory storage that refuses every write to a path holding ``refuse`` (EROFS)."""

    protocol = "refusing"
    refuse: str | None = None

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        refuse = type(self).refuse
        if refuse is not None and ("w" in mode or "a" in mode) and refuse in path:
            raise OSError(errno.EROFS, "Read-only file system", path)
        return super()._open(path, mode, **kwargs)


fsspec.register_implementation("refusing", RefusingFileSystem, clobber=True)


@pytest.fixture
def registry(tmp_path: Path) -> Any:
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as reg:
        yield reg


@pytest.fixture
def storage(monkeypatch: pytest.MonkeyPatch) -> VideoStorage:
    monkeypatch.setattr(RefusingFileSystem, "refuse", None)
    return VideoStorage(f"refusing:///submit-{time.time_ns()}")


def _client(hostile: HostileServer, provider: str) -> ProviderClient:
    return get_provider(
        provider, api_key="sk-hostile-submit", base_url=hostile.url + BASES[provider], options=FAST
    )


def register(registry: Registry, provider: str, key: str, **fields: Any) -> None:
    fields.setdefault("prompt", f"boundary {key}")
    fields.setdefault("model", MODELS[provider])
    request = VideoRequest(id=key, **fields)
    registry.register([RegisterItem.for_request(request, provider, MODELS[provider])])


def _apimart_created(r: Any) -> None:
    r.json(
        {"code": 200, "data": [{"status": "submitted", "task_id": f"task_{len(r.request.body)}"}]}
    )


def _state(registry: Registry, key: str) -> RecordState:
    record = registry.get(key)
    assert record is not None
    return record.state


def _error(registry: Registry, key: str) -> dict[str, Any]:
    record = registry.get(key)
    assert record is not None and record.error, key
    return record.error


def test_one_requests_storage_error_does_not_stop_the_others(
    hostile: HostileServer, registry: Registry, storage: VideoStorage, tmp_path: Path
) -> None:
    """A storage OSError while one request's image was copied failed the whole op, every run."""
    hostile.route("POST", "/v1/videos/generations", _apimart_created)
    image = tmp_path / "product.png"
    shutil.copy(DEMO_PNG, image)
    register(registry, "apimart", "with-image", duration=4, images=[str(image)])
    register(registry, "apimart", "text", duration=4)
    RefusingFileSystem.refuse = "/sources/"  # the image cannot be copied into storage
    report = submit_pending(registry, {"apimart": _client(hostile, "apimart")}, storage)
    assert report.submitted == ["text"]
    assert _state(registry, "text") is RecordState.IN_FLIGHT
    # Transient (storage): it waits, with the reason, and nothing was posted for it.
    assert _state(registry, "with-image") is RecordState.PENDING
    assert "Read-only file system" in _error(registry, "with-image")["message"]
    assert len(hostile.requests_to("/v1/videos/generations", "POST")) == 1


def test_nothing_is_paid_before_storage_is_known_to_be_writable(
    hostile: HostileServer, registry: Registry, storage: VideoStorage
) -> None:
    hostile.route("POST", "/v1/videos/generations", _apimart_created)
    for key in ("a", "b"):
        register(registry, "apimart", key, duration=4)
    RefusingFileSystem.refuse = ""  # read-only storage: nowhere to put what we pay for
    report = submit_pending(registry, {"apimart": _client(hostile, "apimart")}, storage)
    assert report.submitted == [] and sorted(report.deferred) == ["a", "b"]
    assert hostile.requests_to("/", "POST") == []  # not one paid POST
    for key in ("a", "b"):
        assert _state(registry, key) is RecordState.PENDING
        assert "not writable" in _error(registry, key)["message"]
    RefusingFileSystem.refuse = None  # writable again: they go
    report = submit_pending(registry, {"apimart": _client(hostile, "apimart")}, storage)
    assert sorted(report.submitted) == ["a", "b"]


def test_an_unreadable_create_answer_is_unknown_never_stuck_submitting(
    hostile: HostileServer, registry: Registry, storage: VideoStorage
) -> None:
    """Deeply nested JSON after the paid POST raised RecursionError: the op failed, the task
    id was lost and the record stayed ``submitting`` for good."""
    answers = iter([nested_json(200_000), b'{"id": "video_ok", "status": "queued"}'])
    hostile.route("POST", "/v1/videos/generations", lambda r: r.send(next(answers)))
    register(registry, "toapis", "nested", duration=6)
    register(registry, "toapis", "fine", duration=6)
    report = submit_pending(registry, {"toapis": _client(hostile, "toapis")}, storage)
    assert _state(registry, "nested") is RecordState.UNKNOWN
    assert "task id" in _error(registry, "nested")["message"]
    assert report.submitted == ["fine"] and _state(registry, "fine") is RecordState.IN_FLIGHT
    assert registry.counts()[RecordState.SUBMITTING] == 0


def test_a_cut_off_reference_video_probe_is_a_failure_before_the_post(
    hostile: HostileServer, registry: Registry, storage: VideoStorage
) -> None:
    """CRUN measures the reference video before its POST; cut off, that DownloadError escaped
    ``submit`` after the intent: stuck ``submitting``, then ``unknown`` though nothing was sent."""
    hostile.route("GET", "/ref.mp4", lambda r: r.send(b"\0" * 100, content_length=100_000))
    register(registry, "crun", "ext", video=f"{hostile.url}/ref.mp4")
    client = _client(hostile, "crun")
    later, skipped = time.time(), 0
    for attempt in range(1, MAX_SUBMIT_TRIES + 1):
        submit_pending(registry, {"crun": client}, storage, now=later)
        assert registry.counts()[RecordState.SUBMITTING] == 0
        if attempt < MAX_SUBMIT_TRIES:  # waits, with the reason, retried after a back-off
            assert _state(registry, "ext") is RecordState.PENDING
            error = _error(registry, "ext")
            assert "reference video" in error["message"] and error["tries"] == attempt
            if error["retry_at"] > later:
                submit_pending(registry, {"crun": client}, storage, now=later)  # too soon
                assert error == _error(registry, "ext")
                skipped += 1
            later = max(later, error["retry_at"]) + 1
    assert skipped == MAX_SUBMIT_TRIES - 2  # every back-off but the first (0 s) was kept
    assert _state(registry, "ext") is RecordState.FAILED
    assert "reference video" in _error(registry, "ext")["message"]
    assert hostile.requests_to("/api/v1/client/job/CreateTask") == []  # nothing was paid
    assert len(hostile.requests_to("/ref.mp4")) >= MAX_SUBMIT_TRIES


def test_an_error_inside_a_200_is_not_re_posted_without_bound(
    hostile: HostileServer, registry: Registry, storage: VideoStorage
) -> None:
    """APIMart answering 200 with an error body got 40 POSTs in 60 s under one Idempotency-Key,
    with no back-off between submit runs."""
    error = {"error": {"code": 500, "message": "upstream overloaded", "type": "server_error"}}
    hostile.route("POST", "/v1/videos/generations", lambda r: r.json(error))
    register(registry, "apimart", "err200", duration=4)
    client = _client(hostile, "apimart")
    now, runs = time.time(), 0
    while _state(registry, "err200") is RecordState.PENDING and runs < 200:
        submit_pending(registry, {"apimart": client}, storage, now=now)
        runs += 1
        now += 10.0  # a submit run every 10 s, as a busy sensor would
    posts = hostile.requests_to("/v1/videos/generations", "POST")
    keys = {p.headers.get("idempotency-key") for p in posts}
    assert len(keys) == 1  # one attempt, replayed under its own key
    assert _state(registry, "err200") is RecordState.FAILED
    failed = _error(registry, "err200")
    assert "upstream overloaded" in failed["message"] and failed["tries"] == MAX_SUBMIT_TRIES
    per_run = FAST.submit_retry.attempts
    assert len(posts) == MAX_SUBMIT_TRIES * per_run  # 16, then never again
    record_figures("trust_boundaries", apimart_200_error_posts=len(posts), submit_runs=runs)
    # Back-off between runs: not one POST per run; the runs in between were skipped.
    assert runs > MAX_SUBMIT_TRIES


@pytest.mark.parametrize(
    "task_id", ["../../secret-admin?x#y", "t-1\r\nX-Injected: yes", "t" * 100_000, ".."]
)
def test_a_task_id_of_the_wrong_shape_is_refused_when_it_arrives(
    hostile: HostileServer, registry: Registry, storage: VideoStorage, task_id: str
) -> None:
    """The id is checked in the POST answer: the task may exist, but its id cannot be used in
    a URL, so the request is ``unknown`` with the reason and nothing is polled with it."""
    answer = {"id": task_id, "status": "queued"}
    hostile.route("POST", "/v1/videos/generations", lambda r: r.json(answer))
    register(registry, "toapis", "odd-id", duration=6)
    submit_pending(registry, {"toapis": _client(hostile, "toapis")}, storage)
    record = registry.get("odd-id")
    assert record is not None and record.state is RecordState.UNKNOWN
    assert record.task_id is None and "not one" in _error(registry, "odd-id")["message"]
    assert len(_error(registry, "odd-id")["message"]) < 1000  # the id is clipped, not stored
    assert [s.method for s in hostile.seen] == ["POST"]
