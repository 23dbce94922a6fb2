"""One PollPolicy: the pure next-delay function, and the one 404 rule of wait() and the sensor."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from omni_assets.pipeline.poll import poll_in_flight
from omni_assets.providers import TaskRef, wait
from omni_assets.providers.errors import TaskNotFoundError
from omni_assets.providers.polling import PollOutcome, PollPolicy
from omni_assets.registry import RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest

from .test_providers_support import client_for, js
from .test_providers_wait import FakeClock

MISSING = js(404, {"error": {"code": 404, "message": "Task not found"}})
POLICY = PollPolicy(interval_s=10, jitter=0.2, max_backoff_s=60, deadline_s=600)


def test_a_status_waits_the_interval_spread_by_the_jitter() -> None:
    assert POLICY.next_delay(PollOutcome.STATUS, draw=0.0) == pytest.approx(8.0)
    assert POLICY.next_delay(PollOutcome.STATUS, draw=0.5) == pytest.approx(10.0)
    assert POLICY.next_delay(PollOutcome.STATUS, draw=1.0) == pytest.approx(12.0)


def test_the_servers_hint_wins_whatever_the_outcome() -> None:
    for outcome in PollOutcome:
        assert POLICY.next_delay(outcome, failures=5, hint=42, draw=0.0) == 42
    assert POLICY.next_delay(PollOutcome.STATUS, hint=0) > 0  # never a tight loop


@pytest.mark.parametrize("outcome", [PollOutcome.BUSY, PollOutcome.NOT_FOUND])
def test_failures_back_off_exponentially_up_to_the_cap(outcome: PollOutcome) -> None:
    delays = [POLICY.next_delay(outcome, failures=n) for n in range(1, 6)]
    assert delays == [10, 20, 40, 60, 60]


def test_wait_polls_a_404_until_the_deadline_then_says_not_found() -> None:
    clock = FakeClock()
    client, recorder = client_for("toapis", MISSING)
    ref = TaskRef("toapis", "video_1", "gemini_omni_flash", 0.0)
    with pytest.raises(TaskNotFoundError):
        wait(client, ref, deadline=100, interval=10, max_backoff=60, clock=clock, sleep=clock.sleep)
    assert clock.now == 100  # not given up early: a paid task may be answered 404 for a while
    assert clock.sleeps == [10, 20, 40, 30]
    assert len(recorder.calls) == 5  # a 404 is not retried within one poll


def _in_flight(tmp_path: Path) -> Registry:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    request = VideoRequest(id="lost-task", prompt="a cat", provider="toapis")
    registry.register([RegisterItem.for_request(request, "toapis", "gemini_omni_flash")])
    registry.begin_submit("lost-task", "idem")
    registry.record_submitted("lost-task", TaskRef("toapis", "video_1", "gemini_omni_flash", 0.0))
    return registry


def test_the_sensor_keeps_a_404_in_flight_until_the_deadline_then_records_it_lost(
    tmp_path: Path,
) -> None:
    registry = _in_flight(tmp_path)
    client, _ = client_for("toapis", MISSING)
    policies = {"toapis": POLICY}
    now = time.time() + 60
    poll_in_flight(registry, {"toapis": client}, policies=policies, now=now)
    record = registry.get("lost-task")
    assert record is not None and record.state is RecordState.IN_FLIGHT
    assert record.next_poll_at == pytest.approx(
        now + POLICY.next_delay(PollOutcome.NOT_FOUND, failures=2)
    )
    poll_in_flight(registry, {"toapis": client}, policies=policies, now=now + 600)
    record = registry.get("lost-task")
    assert record is not None and record.state is RecordState.FAILED
    assert record.error is not None and record.error["resumable"] is False
