"""Seeded randomness for fault injection, one independent stream per fault kind.

Separate streams keep each fault's sequence of decisions reproducible on its own: turning on
``rate_quirks`` does not change which requests ``rate_429`` hits for the same seed. A stream is
only drawn from when its rate is above zero.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["Faults"]

T = TypeVar("T")


class Faults:
    """Per-kind ``random.Random`` streams derived from one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def stream(self, kind: str) -> random.Random:
        """The stream for ``kind`` (created on first use from ``seed`` and ``kind``)."""
        rng = self._streams.get(kind)
        if rng is None:
            rng = self._streams[kind] = random.Random(f"{self.seed}:{kind}")
        return rng

    def roll(self, kind: str, rate: float) -> bool:
        """True with probability ``rate``; draws nothing when ``rate`` is zero."""
        if rate <= 0:
            return False
        return self.stream(kind).random() < rate

    def choice(self, kind: str, options: Sequence[T]) -> T:
        """One of ``options``, drawn from the ``kind`` stream."""
        return self.stream(kind).choice(options)

    def randint(self, kind: str, low: int, high: int) -> int:
        """An integer in ``[low, high]`` drawn from the ``kind`` stream."""
        return self.stream(kind).randint(low, high)
