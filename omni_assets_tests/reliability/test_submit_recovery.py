"""A paid POST whose outcome is unknown: replayed where an Idempotency-Key makes that safe, else
surfaced as ``unknown`` and never resubmitted; and two requests are never folded into one task.

The lost responses are real: the POST reaches the emulator (which creates the task) and the
transport then drops the answer, as a reset connection would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from omni_assets.emulator import EmulatorServer
from omni_assets.pipeline.submit import recover_stale_submits, submit_pending
from omni_assets.providers import get_provider
from omni_assets.registry import RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest
from omni_assets.storage import VideoStorage

from ..test_providers_support import FAST

pytestmark = pytest.mark.reliability


class LoseCreateResponses(httpx.BaseTransport):
    """Forwards to the server; drops the answer of the first ``lose`` create POSTs."""

    def __init__(self, lose: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.lose = lose

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        create = request.method == "POST" and "upload" not in request.url.path
        if create and self.lose > 0:
            self.lose -= 1
            response.read()
            response.close()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


def _setup(tmp_path: Path, emulator: EmulatorServer, provider: str, lose: int) -> Any:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    storage = VideoStorage(str(tmp_path / "storage"))
    transport = LoseCreateResponses(lose)
    client = get_provider(
        provider,
        api_key="sk-test",
        base_url=emulator.base_url(provider),
        transport=transport,
        options=FAST,
    )
    return registry, storage, {provider: client}, transport


def _register(registry: Registry, provider: str, model: str, **requests: VideoRequest) -> None:
    registry.register(
        RegisterItem(
            key=key,
            fingerprint=r.fingerprint(),
            provider=provider,
            model=model,
            request_json=r.model_dump_json(),
        )
        for key, r in requests.items()
    )


def test_same_content_under_two_ids_is_two_videos(
    tmp_path: Path, fresh_emulator: EmulatorServer
) -> None:
    registry, storage, providers, _ = _setup(tmp_path, fresh_emulator, "apimart", lose=0)
    same = {"prompt": "two takes of the same shot", "duration": 4, "model": "Omni-Flash-Ext"}
    _register(
        registry,
        "apimart",
        "Omni-Flash-Ext",
        **{
            "take-1": VideoRequest(id="take-1", **same),
            "take-2": VideoRequest(id="take-2", **same),
        },
    )
    report = submit_pending(registry, providers, storage)
    assert sorted(report.submitted) == ["take-1", "take-2"]
    tasks = {r.task_id for r in registry.records()}
    assert len(tasks) == 2
    assert fresh_emulator.audit()["counts"]["tasks"] == 2


def test_apimart_lost_answer_is_replayed_with_the_same_key(
    tmp_path: Path, fresh_emulator: EmulatorServer
) -> None:
    # Every attempt of the first submit run loses its answer: the outcome is unknown.
    registry, storage, providers, transport = _setup(tmp_path, fresh_emulator, "apimart", 99)
    _register(
        registry,
        "apimart",
        "Omni-Flash-Ext",
        boat=VideoRequest(prompt="a boat", duration=4, model="Omni-Flash-Ext"),
    )
    first = submit_pending(registry, providers, storage)
    record = registry.get("boat")
    assert record is not None and record.state is RecordState.PENDING  # to be replayed
    assert first.deferred == ["boat"] and not first.unknown
    assert record.error is not None and record.error["replay"] is True
    assert fresh_emulator.audit()["counts"]["tasks"] == 1  # the first attempt made it
    # The next submit run replays under the same Idempotency-Key and gets that task back.
    transport.lose = 0
    second = submit_pending(registry, providers, storage)
    record = registry.get("boat")
    assert second.submitted == ["boat"] and record is not None
    assert record.state is RecordState.IN_FLIGHT
    audit = fresh_emulator.audit()
    assert audit["counts"]["tasks"] == 1
    assert audit["tasks"][0]["task_id"] == record.task_id
    keys = {r["idempotency_key"] for r in audit["replays"]} | {audit["tasks"][0]["idempotency_key"]}
    assert keys == {record.idempotency_key}


@pytest.mark.parametrize("provider", ["jimmyai", "toapis", "crun"])
def test_lost_answer_without_idempotency_is_unknown_and_never_resent(
    tmp_path: Path, fresh_emulator: EmulatorServer, provider: str
) -> None:
    registry, storage, providers, _ = _setup(tmp_path, fresh_emulator, provider, lose=1)
    model = providers[provider].model
    _register(registry, provider, model, fox=VideoRequest(prompt="a fox", duration=6))
    report = submit_pending(registry, providers, storage)
    assert list(report.unknown) == ["fox"]
    record = registry.get("fox")
    assert record is not None and record.state is RecordState.UNKNOWN
    assert "may or may not have been created" in str(record.error)
    # Later submit runs and recovery leave it alone: only `omni-assets retry` pays again.
    submit_pending(registry, providers, storage)
    assert recover_stale_submits(registry, 0.0) == {}
    assert fresh_emulator.audit()["counts"]["tasks"] == 1
    assert registry.get("fox").state is RecordState.UNKNOWN  # type: ignore[union-attr]


def test_interrupted_submissions_are_settled_by_provider(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    request = VideoRequest(prompt="a lighthouse", duration=6)
    for provider in ("apimart", "crun"):
        _register(registry, provider, "m", **{provider: request})
        assert registry.begin_submit(provider, f"idem-{provider}")
    assert recover_stale_submits(registry, 3600.0) == {}  # not stale yet
    assert recover_stale_submits(registry, 0.0) == {"apimart": "replay", "crun": "unknown"}
    apimart, crun = registry.get("apimart"), registry.get("crun")
    assert apimart is not None and apimart.state is RecordState.PENDING
    assert apimart.attempt == 1  # same attempt: the same Idempotency-Key on the replay
    assert crun is not None and crun.state is RecordState.UNKNOWN
    assert "omni-assets retry crun" in crun.error["message"]  # type: ignore[index]
