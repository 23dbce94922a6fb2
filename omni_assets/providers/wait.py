"""Block until a task finishes, within a hard deadline.

Peers poll ``while True`` (openai-python ``poll()``, Veo ``while not operation.done``) and spin
forever on a status word they do not know (providers.md §7). Here every wait ends: success
returns the status, failure raises :class:`TaskFailedError`, and the deadline raises
:class:`TaskTimeoutError` — the task may still finish (and is still paid for), so the caller keeps
its task id and can resume later. How long to wait between polls, and what a 404 means, is the
:class:`~omni_assets.providers.polling.PollPolicy` the poll sensor uses too.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace

from .base import Provider, TaskRef, TaskState, TaskStatus
from .errors import (
    ProviderUnavailableError,
    RateLimitedError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
)
from .polling import PollOutcome, PollPolicy

__all__ = ["wait"]

logger = logging.getLogger("omni_assets.providers")


def wait(
    provider: Provider,
    ref: TaskRef,
    *,
    deadline: float,
    policy: PollPolicy | None = None,
    interval: float | None = None,
    jitter: float | None = None,
    max_backoff: float | None = None,
    first_delay: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_status: Callable[[TaskStatus], None] | None = None,
    rng: Callable[[], float] = random.random,
) -> TaskStatus:
    """Poll ``provider.status(ref)`` until the task ends; return the SUCCEEDED status.

    ``deadline`` is the budget in seconds from now (measured with ``clock``). Between polls,
    ``policy`` (default :class:`PollPolicy`) decides; ``interval``, ``jitter`` and
    ``max_backoff`` override its fields. Rate limiting, unavailability and 404s back off instead
    of failing, and a server's ``retry_after`` hint is honoured. An unknown status word is polled
    on (``make_status`` logs it).

    Raises :class:`TaskFailedError` (FAILED/CANCELLED, with the provider's reason and code),
    :class:`TaskTimeoutError` (deadline passed), :class:`TaskNotFoundError` (deadline passed and
    the provider still answers 404).
    """
    policy = _with_overrides(policy or PollPolicy(), interval, jitter, max_backoff)
    end = clock() + deadline
    failures = 0
    last: TaskStatus | None = None
    if first_delay > 0:
        sleep(min(first_delay, deadline))
    while True:
        delay: float
        try:
            status = provider.status(ref)
        except (RateLimitedError, ProviderUnavailableError) as exc:
            failures += 1
            delay = policy.next_delay(PollOutcome.BUSY, failures=failures, hint=exc.retry_after)
            logger.info("%s task %s: %s; next poll in %.1fs", ref.provider, ref.task_id, exc, delay)
        except TaskNotFoundError:
            if clock() >= end:
                raise
            failures += 1
            delay = policy.next_delay(PollOutcome.NOT_FOUND, failures=failures)
        else:
            failures = 0
            last = status
            if on_status is not None:
                on_status(status)
            if status.state is TaskState.SUCCEEDED:
                return status
            if status.state in (TaskState.FAILED, TaskState.CANCELLED):
                raise TaskFailedError(
                    f"{ref.provider} task {ref.task_id} {status.state.value}: "
                    f"{status.error_message or 'no reason given'}",
                    provider=ref.provider,
                    task_id=ref.task_id,
                    code=status.error_code,
                )
            delay = policy.next_delay(PollOutcome.STATUS, hint=status.retry_after, draw=rng())
        now = clock()
        if now >= end:
            seen = f"last status {last.raw_status!r}" if last else "no status read"
            raise TaskTimeoutError(
                f"{ref.provider} task {ref.task_id} not finished after {deadline:.0f}s ({seen}); "
                "it may still complete: resume waiting with the same task id",
                provider=ref.provider,
                task_id=ref.task_id,
            )
        # The last poll happens at the deadline itself, never after it.
        sleep(max(0.0, min(delay, end - now)))


def _with_overrides(
    policy: PollPolicy, interval: float | None, jitter: float | None, max_backoff: float | None
) -> PollPolicy:
    return replace(
        policy,
        interval_s=policy.interval_s if interval is None else interval,
        jitter=policy.jitter if jitter is None else jitter,
        max_backoff_s=policy.max_backoff_s if max_backoff is None else max_backoff,
    )
