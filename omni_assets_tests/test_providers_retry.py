"""Retries: GETs retried on transient errors; a paid submit only where it cannot pay twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
from stamina.instrumentation import RetryDetails, get_on_retry_hooks, set_on_retry_hooks

from omni_assets.providers import ClientOptions, RetryPolicy, TaskRef, TaskState
from omni_assets.providers.errors import (
    ProviderUnavailableError,
    RateLimitedError,
    SubmitOutcomeUnknownError,
)
from omni_assets.providers.http import maybe_created, retry_hook
from omni_assets.request import VideoRequest

from .test_providers_support import FAST, client_for, js

CREATED = {
    "jimmyai": {"code": "20000", "msg": "ok", "data": {"task_id": "T1", "status": "queued"}},
    "apimart": {"data": {"object": "generation.task", "id": "T1", "status": "submitted"}},
    "toapis": {"id": "T1", "object": "generation.task", "status": "queued"},
    "crun": {"code": 200, "message": "success", "data": {"task_id": "T1"}},
}
RUNNING = {"id": "T1", "status": "in_progress"}
REQ = VideoRequest(prompt="a lighthouse at dusk")
NON_IDEMPOTENT = ["jimmyai", "toapis", "crun"]


@pytest.fixture
def waits() -> Iterator[list[RetryDetails]]:
    """The waits stamina schedules (its instrumentation hook), restored afterwards."""
    seen: list[RetryDetails] = []
    old = get_on_retry_hooks()
    set_on_retry_hooks([seen.append])
    try:
        yield seen
    finally:
        set_on_retry_hooks(old)


def test_status_retries_transient_errors() -> None:
    client, recorder = client_for(
        "toapis", js(500, None), httpx.ConnectError("refused"), js(502, None), js(200, RUNNING)
    )
    status = client.status(TaskRef("toapis", "T1", "gemini_omni_flash", 0.0))
    assert status.state is TaskState.RUNNING
    assert len(recorder.calls) == 4


def test_status_gives_up_within_the_policy() -> None:
    client, recorder = client_for("crun", js(200, {"code": 500, "message": "Server Error"}))
    with pytest.raises(ProviderUnavailableError):
        client.status(TaskRef("crun", "T1", "google/gemini-omni", 0.0))
    assert len(recorder.calls) == FAST.status_retry.attempts


def test_status_is_not_retried_on_client_errors() -> None:
    client, recorder = client_for("toapis", js(401, {"error": {"message": "no"}}))
    with pytest.raises(Exception, match="no"):
        client.status(TaskRef("toapis", "T1", "gemini_omni_flash", 0.0))
    assert len(recorder.calls) == 1


def test_stamina_testing_mode_is_respected() -> None:
    client, recorder = client_for("toapis", js(503, None))
    with stamina.set_testing(True, attempts=2), pytest.raises(ProviderUnavailableError):
        client.status(TaskRef("toapis", "T1", "gemini_omni_flash", 0.0))
    assert len(recorder.calls) == 2


def _status_both_ways(script: tuple[Any, ...], asynchronous: bool) -> tuple[Any, int]:
    """The outcome (a state, or the exception raised) of one status call, and requests made."""
    client, recorder = client_for("toapis", *script)
    ref = TaskRef("toapis", "T1", "gemini_omni_flash", 0.0)
    try:
        if asynchronous:
            outcome: Any = asyncio.run(client.astatus(ref)).state
        else:
            outcome = client.status(ref).state
    except Exception as exc:
        outcome = type(exc)
    return outcome, len(recorder.calls)


@pytest.mark.parametrize(
    "script",
    [
        (js(429, {"error": {"message": "slow"}}, **{"retry-after": "0.05"}), js(200, RUNNING)),
        (httpx.ConnectError("refused"), js(502, None), js(200, RUNNING)),
        (js(500, None),),
        (js(401, {"error": {"message": "no"}}),),
        (js(429, {"error": {"message": "slow"}}, **{"retry-after": "3600"}),),
    ],
    ids=["retry-after", "transient", "gives-up", "client-error", "long-retry-after"],
)
def test_async_status_retries_exactly_like_status(
    script: tuple[Any, ...], waits: list[RetryDetails]
) -> None:
    """astatus skips the retry machinery until a first failure; what it retries is unchanged."""
    sync = _status_both_ways(script, asynchronous=False)
    sync_waits = [round(w.wait_for, 3) for w in waits if w.retry_num]
    waits.clear()
    assert _status_both_ways(script, asynchronous=True) == sync
    assert [round(w.wait_for, 3) for w in waits if w.retry_num] == sync_waits


# -- paid submits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", NON_IDEMPOTENT)
@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("peer closed connection"),
        httpx.WriteError("broken pipe"),
        js(500, {"code": 500, "message": "Server Error"}),
        js(504, None),
    ],
    ids=["read-timeout", "dropped", "write-error", "500", "504"],
)
def test_submit_after_bytes_left_is_never_retried(provider: str, failure: Any) -> None:
    client, recorder = client_for(provider, failure, js(200, CREATED[provider]))
    if isinstance(failure, httpx.Response) and failure.status_code == 500 and provider == "toapis":
        # Except where the provider documents it: ToAPIs "500 ... Retry 2-3 times" (seed 004;
        # omni_assets/providers/guidance.py, and test_routing.py over the emulator).
        assert client.submit(REQ).task_id == "T1" and len(recorder.calls) == 2
        return
    with pytest.raises(SubmitOutcomeUnknownError) as caught:
        client.submit(REQ)
    assert len(recorder.calls) == 1
    assert caught.value.provider == provider and caught.value.idempotency_key is None
    assert "may or may not" in str(caught.value)


@pytest.mark.parametrize("provider", NON_IDEMPOTENT)
@pytest.mark.parametrize(
    "refusal",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        js(429, {"error": {"message": "slow down"}}),
        js(503, None),
        js(455, {"code": 455, "message": "maintenance"}),
    ],
    ids=["connect-error", "connect-timeout", "429", "503", "455"],
)
def test_submit_retried_when_provably_not_created(provider: str, refusal: Any) -> None:
    client, recorder = client_for(provider, refusal, js(200, CREATED[provider]))
    ref = client.submit(REQ)
    assert ref.task_id == "T1"
    assert len(recorder.calls) == 2
    assert recorder.bodies[0] == recorder.bodies[1] or isinstance(refusal, Exception)


def test_crun_body_code_455_is_a_refusal() -> None:
    client, recorder = client_for(
        "crun", js(200, {"code": 455, "message": "maintenance"}), js(200, CREATED["crun"])
    )
    assert client.submit(REQ).task_id == "T1" and len(recorder.calls) == 2


def test_submit_refusals_exhausted_are_not_outcome_unknown() -> None:
    client, recorder = client_for("toapis", httpx.ConnectError("down"))
    with pytest.raises(ProviderUnavailableError) as caught:
        client.submit(REQ)
    assert not isinstance(caught.value, SubmitOutcomeUnknownError)
    assert len(recorder.calls) == FAST.submit_retry.attempts


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("slow"), js(500, None), httpx.RemoteProtocolError("dropped"), js(502, None)],
    ids=["read-timeout", "500", "dropped", "502"],
)
def test_apimart_replays_with_the_same_idempotency_key(failure: Any) -> None:
    created = js(200, CREATED["apimart"], **{"idempotency-replayed": "true"})
    client, recorder = client_for("apimart", failure, failure, created)
    ref = client.submit(REQ, idempotency_key="key-123")
    assert ref.task_id == "T1" and ref.idempotency_key == "key-123"
    assert len(recorder.calls) == 3
    assert {c.headers["idempotency-key"] for c in recorder.calls} == {"key-123"}
    assert len(set(recorder.bodies)) == 1  # the identical request each time


def test_apimart_outcome_unknown_keeps_the_key() -> None:
    client, recorder = client_for("apimart", httpx.ReadTimeout("slow"))
    with pytest.raises(SubmitOutcomeUnknownError) as caught:
        client.submit(REQ)
    assert len(recorder.calls) == FAST.submit_retry.attempts
    key = recorder.calls[0].headers["idempotency-key"]
    assert caught.value.idempotency_key == key and key in str(caught.value)


# -- Retry-After -----------------------------------------------------------------------------------


def test_retry_after_is_the_wait(waits: list[RetryDetails]) -> None:
    client, recorder = client_for(
        "toapis",
        js(429, {"error": {"message": "slow"}}, **{"retry-after": "0.25"}),
        js(503, None, **{"retry-after": "0.05"}),
        js(200, RUNNING),
    )
    client.status(TaskRef("toapis", "T1", "gemini_omni_flash", 0.0))
    assert [round(w.wait_for, 3) for w in waits] == [0.25, 0.05]
    assert len(recorder.calls) == 3


def test_long_retry_after_is_handed_to_the_caller(waits: list[RetryDetails]) -> None:
    client, recorder = client_for(
        "apimart", js(429, {"error": {"message": "slow"}}, **{"retry-after": "3600"})
    )
    with pytest.raises(RateLimitedError) as caught:
        client.status(TaskRef("apimart", "T1", "gemini-omni-flash-preview", 0.0))
    assert caught.value.retry_after == 3600
    assert len(recorder.calls) == 1 and waits == []


def test_retry_hook_semantics() -> None:
    policy = RetryPolicy(max_retry_after=10)
    hook = retry_hook(policy)
    assert hook(RateLimitedError("x", retry_after=2.5)) == 2.5
    assert hook(RateLimitedError("x")) is True
    assert hook(RateLimitedError("x", retry_after=11)) is False
    assert hook(ProviderUnavailableError("x")) is True
    assert hook(SubmitOutcomeUnknownError("x")) is False
    assert hook(ValueError("x")) is False
    refused = ProviderUnavailableError("x", status_code=503)
    assert not maybe_created(refused)
    assert maybe_created(ProviderUnavailableError("x", status_code=500))


# -- uploads ---------------------------------------------------------------------------------------


def _png(tmp_path: Path) -> str:
    path = tmp_path / "ref.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    return str(path)


def test_upload_retried_on_connect_failure_only(tmp_path: Path) -> None:
    ok = js(200, {"success": True, "data": {"url": "https://files.toapis.com/u/1.png"}})
    client, recorder = client_for("toapis", httpx.ConnectError("refused"), ok)
    uploaded = client.upload_image(_png(tmp_path))
    assert uploaded.url.endswith("1.png") and len(recorder.calls) == 2
    assert uploaded.size == 108 and uploaded.expires_at is not None

    client, recorder = client_for("toapis", httpx.ReadTimeout("slow"), ok)
    with pytest.raises(ProviderUnavailableError):
        client.upload_image(_png(tmp_path))
    assert len(recorder.calls) == 1


def test_options_are_per_client() -> None:
    slow = ClientOptions(status_retry=RetryPolicy(attempts=2, timeout=1, wait_initial=0.001))
    client, recorder = client_for("toapis", js(500, None), options=slow)
    with pytest.raises(ProviderUnavailableError):
        client.status(TaskRef("toapis", "T1", "gemini_omni_flash", 0.0))
    assert len(recorder.calls) == 2
