"""A provider-style rate limit: a token bucket per (provider, API key).

Under ``rate_limit_per_s`` each account may make that many API calls a second, in bursts of up
to one second's worth; a call beyond it is answered 429 with ``Retry-After`` (whole seconds,
as HTTP has it) and has no effect. Only API calls count: file downloads do not.
"""

from __future__ import annotations

__all__ = ["TokenBuckets"]


class TokenBuckets:
    """Token buckets by account, driven by the caller's clock (no threads, no timers)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def clear(self) -> None:
        """Forget every account's bucket (all start full again)."""
        self._buckets.clear()

    def take(self, account: tuple[str, str], rate: float, now: float) -> float:
        """Take a token for ``account``: 0.0 if one was free, else seconds until one will be.

        ``rate`` <= 0 means no limit. Capacity is ``max(1, rate)`` tokens.
        """
        if rate <= 0:
            return 0.0
        capacity = max(1.0, rate)
        tokens, last = self._buckets.get(account, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - last) * rate)
        if tokens >= 1.0:
            self._buckets[account] = (tokens - 1.0, now)
            return 0.0
        self._buckets[account] = (tokens, now)
        return (1.0 - tokens) / rate
