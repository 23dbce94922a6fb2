"""Poll every in-flight task once, concurrently, within a time budget.

The cost of a round grows with the number of tasks in flight (an indexed registry query), not with
the number already finished. Each task's next poll time follows the provider's hint, backs off on
429/5xx, and a task past its deadline is recorded as failed with a timeout (it may still finish at
the provider: the reason says so, and ``retry`` resumes polling instead of paying again).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..providers.base import Provider, TaskState, TaskStatus
from ..providers.errors import (
    OmniError,
    ProviderError,
    RateLimitedError,
    TaskNotFoundError,
)
from ..registry import PollUpdate, Record, Registry

__all__ = ["PollPolicy", "PollReport", "poll_in_flight"]

log = logging.getLogger("omni_assets.pipeline.poll")


@dataclass(frozen=True)
class PollPolicy:
    """How often to poll and when to give up on a task."""

    interval_s: float = 10.0
    jitter: float = 0.2  # +/- fraction of the interval, so tasks spread out
    max_backoff_s: float = 120.0
    deadline_s: float = 30 * 60.0  # from submission
    concurrency: int = 32


@dataclass
class PollReport:
    polled: int = 0
    ready: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unrecognized: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    progress: dict[str, int] = field(default_factory=dict)
    skipped_for_budget: int = 0
    seconds: float = 0.0


def poll_in_flight(
    registry: Registry,
    providers: Mapping[str, Provider],
    *,
    policies: Mapping[str, PollPolicy] | None = None,
    budget_s: float = 30.0,
    now: float | None = None,
    limit: int | None = None,
) -> PollReport:
    """Poll the tasks that are due, record every reading in one registry write, report."""
    started = time.monotonic()
    now = time.time() if now is None else now
    due = [r for r in registry.due_for_poll(now, limit=limit) if r.provider in providers]
    report = PollReport()
    if due:
        updates = asyncio.run(_poll_all(due, providers, policies or {}, budget_s, now, report))
        registry.record_polls(updates)
    report.seconds = time.monotonic() - started
    return report


async def _poll_all(
    due: list[Record],
    providers: Mapping[str, Provider],
    policies: Mapping[str, PollPolicy],
    budget_s: float,
    now: float,
    report: PollReport,
) -> list[PollUpdate]:
    semaphores = {
        name: asyncio.Semaphore(policies.get(name, PollPolicy()).concurrency) for name in providers
    }

    async def one(record: Record) -> PollUpdate:
        policy = policies.get(record.provider, PollPolicy())
        async with semaphores[record.provider]:
            try:
                status = await providers[record.provider].astatus(record.task_ref)  # type: ignore[arg-type]
            except OmniError as exc:
                return _on_error(record, exc, policy, now, report)
        return _on_status(record, status, policy, now, report)

    tasks = [asyncio.ensure_future(one(r)) for r in due]
    done, pending = await asyncio.wait(tasks, timeout=budget_s) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    report.skipped_for_budget = len(pending)
    report.polled = len(done)
    updates = []
    for task in done:
        exc = task.exception()
        if exc is None:
            updates.append(task.result())
        else:  # a bug or an unexpected transport error: keep polling later, say why
            log.exception("polling failed unexpectedly", exc_info=exc)
    return updates


def _next_poll(policy: PollPolicy, now: float, hint: float | None = None) -> float:
    spread = policy.interval_s * policy.jitter
    base = hint if hint is not None else policy.interval_s + random.uniform(-spread, spread)
    return now + max(0.05, base)


def _past_deadline(record: Record, policy: PollPolicy, now: float) -> bool:
    # A retried timed-out task resumes polling: its clock restarts at polling_since.
    since = record.polling_since or record.submitted_at
    return since is not None and now - since > policy.deadline_s


def _on_status(
    record: Record, status: TaskStatus, policy: PollPolicy, now: float, report: PollReport
) -> PollUpdate:
    if status.progress is not None:
        report.progress[record.key] = status.progress
    if status.state == TaskState.SUCCEEDED:
        report.ready.append(record.key)
    elif status.state in (TaskState.FAILED, TaskState.CANCELLED):
        report.failed[record.key] = status.error_message or status.raw_status
    elif not status.recognized:
        report.unrecognized[record.key] = status.raw_status
        log.warning(
            "task %s (%s) has unrecognized status %r; polling until the deadline",
            record.task_id,
            record.key,
            status.raw_status,
        )
    if not status.terminal and _past_deadline(record, policy, now):
        return PollUpdate.timed_out(record.key, status, policy.deadline_s)
    return PollUpdate.from_status(
        record.key, status, next_poll_at=_next_poll(policy, now, status.retry_after)
    )


def _on_error(
    record: Record, exc: OmniError, policy: PollPolicy, now: float, report: PollReport
) -> PollUpdate:
    report.errors[record.key] = str(exc)
    if isinstance(exc, TaskNotFoundError) and _past_deadline(record, policy, now):
        return PollUpdate.lost(record.key, exc.to_dict())
    if _past_deadline(record, policy, now):
        return PollUpdate.timed_out(record.key, None, policy.deadline_s)
    hint = exc.retry_after if isinstance(exc, RateLimitedError) else None
    if hint is None and isinstance(exc, ProviderError):
        hint = min(policy.max_backoff_s, policy.interval_s * 3)
    return PollUpdate.retry_later(record.key, next_poll_at=_next_poll(policy, now, hint))
