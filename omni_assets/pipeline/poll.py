"""Poll every in-flight task once, concurrently, within a time budget.

The cost of a round grows with the number of tasks in flight (an indexed registry query), not with
the number already finished. Each task's next poll time is the
:class:`~omni_assets.providers.polling.PollPolicy`'s (the provider's hint, back-off on 429/5xx and
404, the same as ``wait()``), and a task past its deadline is recorded as failed with a timeout
(it may still finish at the provider: the reason says so, and ``retry`` resumes polling instead
of paying again), or as lost when the provider still answers 404.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..providers.answers import clip
from ..providers.base import Provider, TaskState, TaskStatus
from ..providers.errors import (
    OmniError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    TaskNotFoundError,
)
from ..providers.polling import PollOutcome, PollPolicy
from ..providers.redaction import redact
from ..registry import PollUpdate, Record, RecordError, Registry

__all__ = ["PollReport", "poll_in_flight"]

log = logging.getLogger("omni_assets.pipeline.poll")


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

    started: set[str] = set()

    async def one(record: Record) -> PollUpdate:
        policy = policies.get(record.provider, PollPolicy())
        async with semaphores[record.provider]:
            started.add(record.key)
            try:
                status = await providers[record.provider].astatus(record.task_ref)  # type: ignore[arg-type]
            except Exception as exc:
                return _on_error(record, exc, policy, now, report)
            # Parsing happened inside astatus; what is left cannot raise on a hostile answer.
            return _on_status(record, status, policy, now, report)

    tasks = {asyncio.ensure_future(one(r)): r for r in due}
    done, pending = await asyncio.wait(tasks, timeout=budget_s) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)  # let each cancelled poll close its connection
    report.skipped_for_budget = sum(1 for t in pending if tasks[t].key not in started)
    report.polled = len(done)
    updates = []
    for task in done:
        exc = task.exception()
        if exc is None:
            updates.append(task.result())
        else:  # _on_error itself failed (a bug): still this task's, still under its deadline
            record = tasks[task]
            policy = policies.get(record.provider, PollPolicy())
            updates.append(_on_error(record, exc, policy, now, report))
    for task in pending:
        record = tasks[task]
        policy = policies.get(record.provider, PollPolicy())
        if record.key in started:  # its status request outlived the tick's budget
            error: Exception = TimeoutError(
                f"the status request did not finish within the tick's budget ({budget_s:.0f} s)"
            )
            updates.append(_on_error(record, error, policy, now, report))
        elif _past_deadline(record, policy, now):  # never reached: the deadline still applies
            updates.append(PollUpdate.timed_out(record.key, None, policy.deadline_s))
    return updates


# The sensor keeps no count of failed polls in a row across ticks: each failed poll backs off as
# the second in a row would (twice the interval, within the policy's cap).
_FAILURES_ACROSS_TICKS = 2


def _next_poll(
    policy: PollPolicy, now: float, outcome: PollOutcome, hint: float | None = None
) -> float:
    failures = 0 if outcome is PollOutcome.STATUS else _FAILURES_ACROSS_TICKS
    return now + policy.next_delay(outcome, failures=failures, hint=hint, draw=random.random())


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
        record.key,
        status,
        next_poll_at=_next_poll(policy, now, PollOutcome.STATUS, status.retry_after),
    )


def _error_of(exc: BaseException) -> dict[str, Any]:
    """What a failed poll ran into, as stored on the task (clipped: it may echo the answer)."""
    if isinstance(exc, OmniError):
        error = exc.to_dict()
    else:  # not the provider's answer as such: our transport, a parser, a bug
        error = {"error": type(exc).__name__, "message": redact(str(exc)) or type(exc).__name__}
    return {k: clip(v) if isinstance(v, str) else v for k, v in error.items()}


def _on_error(
    record: Record, exc: BaseException, policy: PollPolicy, now: float, report: PollReport
) -> PollUpdate:
    error = _error_of(exc)
    report.errors[record.key] = f"{error['error']}: {error['message']}"
    if isinstance(exc, TaskNotFoundError) and _past_deadline(record, policy, now):
        return PollUpdate.lost(record.key, RecordError.from_dict(error))
    if _past_deadline(record, policy, now):
        return PollUpdate.timed_out(record.key, None, policy.deadline_s, last_error=error)
    log.warning("polling %s failed (will poll again): %s", record.key, report.errors[record.key])
    if isinstance(exc, TaskNotFoundError):
        outcome, hint = PollOutcome.NOT_FOUND, None
    elif isinstance(exc, (RateLimitedError, ProviderUnavailableError)):
        outcome, hint = PollOutcome.BUSY, exc.retry_after
    elif isinstance(exc, ProviderError):
        outcome, hint = PollOutcome.BUSY, None
    else:  # not the provider's answer (e.g. our own transport code): poll again as usual
        outcome, hint = PollOutcome.STATUS, None
    next_poll_at = _next_poll(policy, now, outcome, hint)
    return PollUpdate.retry_later(
        record.key, next_poll_at=next_poll_at, error=RecordError.from_dict(error)
    )
