"""``wait()`` with a fake clock: deadlines, hints, back-off, unknown statuses, failures."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from omni_assets.providers import TaskRef, TaskState, wait
from omni_assets.providers.errors import TaskFailedError, TaskNotFoundError, TaskTimeoutError

from .test_providers_support import client_for, js

REF = TaskRef("toapis", "video_1", "gemini_omni_flash", 0.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def st(status: str, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    return js(
        200, {"id": "video_1", "object": "generation.task", "status": status, **extra}, **headers
    )


def run(*script: Any, clock: FakeClock | None = None, **kw: Any) -> tuple[Any, FakeClock, Any]:
    clock = clock or FakeClock()
    client, recorder = client_for("toapis", *script)
    kw.setdefault("deadline", 600)
    result = wait(client, REF, clock=clock, sleep=clock.sleep, rng=lambda: 0.5, **kw)
    return result, clock, recorder


DONE = st("completed", result={"data": [{"url": "https://cdn/x.mp4"}]})


def test_polls_until_success_with_jittered_interval() -> None:
    seen: list[TaskState] = []
    clock = FakeClock()
    client, recorder = client_for("toapis", st("queued"), st("in_progress"), DONE)
    draws = iter([0.0, 1.0])
    status = wait(
        client,
        REF,
        deadline=600,
        interval=10,
        jitter=0.2,
        clock=clock,
        sleep=clock.sleep,
        on_status=lambda s: seen.append(s.state),
        rng=lambda: next(draws),
    )
    assert status.state is TaskState.SUCCEEDED and status.video_url == "https://cdn/x.mp4"
    assert seen == [TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED]
    assert clock.sleeps == pytest.approx([8.0, 12.0])
    assert len(recorder.calls) == 3


def test_deadline_is_hard() -> None:
    with pytest.raises(TaskTimeoutError) as caught:
        run(st("in_progress"), deadline=35, interval=10, jitter=0)
    error = caught.value
    assert error.task_id == "video_1" and error.provider == "toapis"
    assert "in_progress" in str(error)


def test_last_poll_happens_at_the_deadline_not_after() -> None:
    clock = FakeClock()
    with pytest.raises(TaskTimeoutError):
        run(st("in_progress"), clock=clock, deadline=25, interval=10, jitter=0)
    assert clock.sleeps == [10, 10, 5] and clock.now == 25


def test_unknown_status_is_logged_and_polled_until_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="omni_assets.providers"),
        pytest.raises(TaskTimeoutError) as caught,
    ):
        run(st("rendering"), deadline=60, interval=10, jitter=0)
    assert "rendering" in caplog.text and "rendering" in str(caught.value)


def test_server_hint_is_honoured() -> None:
    _, clock, _ = run(st("in_progress", headers={"retry-after": "42"}), DONE, interval=5)
    assert clock.sleeps == [42]


def test_rate_limit_backs_off_instead_of_failing() -> None:
    limited = js(429, {"error": {"message": "slow down"}}, **{"retry-after": "90"})
    status, clock, _ = run(limited, limited, DONE, interval=5)
    assert status.state is TaskState.SUCCEEDED
    assert clock.sleeps == [90, 90]


def test_unavailable_backs_off_exponentially() -> None:
    down = httpx.Response(503)
    # each status() call makes 4 attempts (FAST policy) before wait() sees the error
    status, clock, _ = run(*[down] * 12, DONE, interval=5, max_backoff=15)
    assert status.state is TaskState.SUCCEEDED
    assert clock.sleeps == [5, 10, 15]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            st("failed", error={"code": "generation_failed", "message": "content policy"}),
            "generation_failed",
        ),
        (st("failed", fail_reason="nsfw"), None),
    ],
)
def test_failure_raises_with_reason_and_code(body: httpx.Response, code: str | None) -> None:
    with pytest.raises(TaskFailedError) as caught:
        run(st("queued"), body)
    assert caught.value.code == code and caught.value.task_id == "video_1"
    assert "failed" in str(caught.value)


def test_cancelled_raises() -> None:
    client, _ = client_for("apimart", js(200, {"code": 200, "data": {"status": "cancelled"}}))
    clock = FakeClock()
    ref = TaskRef("apimart", "t", "gemini-omni-flash-preview", 0.0)
    with pytest.raises(TaskFailedError, match="cancelled"):
        wait(client, ref, deadline=60, clock=clock, sleep=clock.sleep)


def test_not_found_is_polled_on_until_the_deadline() -> None:
    missing = js(404, {"error": {"code": 404, "message": "Task not found"}})
    status, _clock, _ = run(missing, DONE, interval=5)
    assert status.state is TaskState.SUCCEEDED
    with pytest.raises(TaskNotFoundError):
        run(missing, interval=5, deadline=60)


def test_first_delay() -> None:
    _, clock, _ = run(DONE, first_delay=7)
    assert clock.sleeps == [7]
