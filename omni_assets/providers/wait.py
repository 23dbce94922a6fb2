"""Block until a task finishes, within a hard deadline.

Peers poll ``while True`` (openai-python ``poll()``, Veo ``while not operation.done``) and spin
forever on a status word they do not know (providers.md §7). Here every wait ends: success
returns the status, failure raises :class:`TaskFailedError`, and the deadline raises
:class:`TaskTimeoutError` — the task may still finish (and is still paid for), so the caller keeps
its task id and can resume later.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from .base import Provider, TaskRef, TaskState, TaskStatus
from .errors import (
    ProviderUnavailableError,
    RateLimitedError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
)

__all__ = ["wait"]

logger = logging.getLogger("omni_assets.providers")


def wait(
    provider: Provider,
    ref: TaskRef,
    *,
    deadline: float,
    interval: float = 10.0,
    jitter: float = 0.2,
    first_delay: float = 0.0,
    max_backoff: float = 120.0,
    not_found_grace: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_status: Callable[[TaskStatus], None] | None = None,
    rng: Callable[[], float] = random.random,
) -> TaskStatus:
    """Poll ``provider.status(ref)`` until the task ends; return the SUCCEEDED status.

    ``deadline`` is the budget in seconds from now (measured with ``clock``). Between polls:
    ``interval`` ± ``jitter`` (a fraction), or the server's ``retry_after`` hint when it gave
    one. Rate limiting and unavailability back off exponentially (up to ``max_backoff``) instead
    of failing; a 404 within ``not_found_grace`` seconds of the first poll is treated as a not
    yet visible task. An unknown status word is polled on (``make_status`` logs it).

    Raises :class:`TaskFailedError` (FAILED/CANCELLED, with the provider's reason and code),
    :class:`TaskTimeoutError` (deadline passed), :class:`TaskNotFoundError` after the grace.
    """
    start = clock()
    end = start + deadline
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
            hint = exc.retry_after
            delay = hint if hint is not None else min(max_backoff, interval * 2 ** (failures - 1))
            logger.info("%s task %s: %s; next poll in %.1fs", ref.provider, ref.task_id, exc, delay)
        except TaskNotFoundError:
            if clock() - start >= not_found_grace:
                raise
            failures += 1
            delay = interval
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
            if status.retry_after is not None:
                delay = status.retry_after
            else:
                delay = interval * (1 + jitter * (2 * rng() - 1))
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
