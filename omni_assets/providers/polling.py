"""How often a task is polled and when polling stops: one :class:`PollPolicy` for everyone.

:func:`omni_assets.providers.wait` (one task, blocking) and the poll sensor
(:mod:`omni_assets.pipeline.poll`, every task in flight, one round per tick) read the same policy
and ask it the same question, :meth:`PollPolicy.next_delay`: a pure function of what the last
poll saw, so both wait alike and a test can check the numbers without a clock.

What the last poll saw decides the wait before the next one:

* a status (the task is still queued or running): ``interval_s`` ± ``jitter``, so that tasks
  submitted together spread out;
* the server's own hint (``Retry-After``, or a hint in the body), whatever the outcome: honoured;
* the provider busy or unreachable (429, 5xx, network): back off exponentially, ``interval_s``
  doubling with each failure in a row, up to ``max_backoff_s``;
* the task not found (404): the same back-off. A task id the provider returned is paid for, and
  a provider may answer 404 for a while (a task not yet visible, a replica behind), so a 404 never
  ends polling before the deadline; at the deadline it does, as "lost" (``TaskNotFoundError``)
  instead of a resumable timeout.

The deadline is ``deadline_s`` after submission (the sensor) or the budget given to ``wait()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["DEFAULT_DEADLINE_S", "DEFAULT_POLL_INTERVAL_S", "PollOutcome", "PollPolicy"]

#: Seconds between status polls of one task.
DEFAULT_POLL_INTERVAL_S = 10.0
#: Give up polling a task this long after it was submitted (the task may still finish).
DEFAULT_DEADLINE_S = 30 * 60.0
# Never poll in a tight loop, whatever a hint says.
_MIN_DELAY_S = 0.05


class PollOutcome(Enum):
    """What one status poll saw, as far as the next poll's timing is concerned."""

    STATUS = "status"  # a status was read; the task is not finished
    BUSY = "busy"  # rate limited, unavailable or unreachable
    NOT_FOUND = "not_found"  # 404: the provider does not know the task (yet, or any more)


@dataclass(frozen=True)
class PollPolicy:
    """How often to poll and when to give up on a task (see the module docstring)."""

    interval_s: float = DEFAULT_POLL_INTERVAL_S
    jitter: float = 0.2  # +/- fraction of the interval, so tasks spread out
    max_backoff_s: float = 120.0
    deadline_s: float = DEFAULT_DEADLINE_S  # from submission
    concurrency: int = 32  # polls in flight at once per provider (the sensor)

    def next_delay(
        self,
        outcome: PollOutcome,
        *,
        failures: int = 1,
        hint: float | None = None,
        draw: float = 0.5,
    ) -> float:
        """Seconds to wait before the next poll.

        ``failures`` counts the failed polls in a row, this one included (BUSY, NOT_FOUND);
        ``hint`` is the server's own wait, if it gave one; ``draw`` is a random number in
        [0, 1) that places the jitter (0.5: none).
        """
        if hint is not None:
            return max(_MIN_DELAY_S, hint)
        if outcome is PollOutcome.STATUS:
            return max(_MIN_DELAY_S, self.interval_s * (1 + self.jitter * (2 * draw - 1)))
        backoff = self.interval_s * 2.0 ** max(0, failures - 1)
        return max(_MIN_DELAY_S, min(self.max_backoff_s, backoff))
