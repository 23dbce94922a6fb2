"""Per-provider submission limits: how many tasks in flight, how many creates a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter", "SubmitLimits"]


@dataclass(frozen=True)
class SubmitLimits:
    """Per-provider submission limits."""

    max_in_flight: int = 20
    rate_per_s: float = 2.0


class RateLimiter:
    """A token bucket: at most ``rate`` acquisitions per second, bursts of ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._clock, self._sleep = burst, clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                wait = (1 - self._tokens) / self.rate
                self._sleep(wait)
                self._last = self._clock()
                self._tokens = 0.0
            else:
                self._tokens -= 1
