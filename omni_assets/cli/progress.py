"""A one-line progress bar for ``omni-assets run`` / ``demo`` (no dependency).

On a terminal the line is redrawn in place every tick; in a log (CI, ``| tee``) a new line is
printed only when a count changes, or at most every ``heartbeat_s`` while nothing changes, so a
long run leaves a readable trace instead of thousands of lines.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TextIO

from ..registry import Record, RecordState

__all__ = ["ProgressLine", "render_progress"]

_DONE = (RecordState.MATERIALIZED,)


def render_progress(records: Sequence[Record], elapsed_s: float, width: int = 24) -> str:
    """``[#####.....] 3/10 done | 4 generating (avg 40%) | 2 pending | 1 failed | 1m05s``."""
    counts = Counter(r.state for r in records)
    total = len(records)
    done = sum(counts[s] for s in _DONE)
    ended = sum(n for state, n in counts.items() if state.retryable)
    in_flight = [r for r in records if r.state == RecordState.IN_FLIGHT]
    # A task reporting progress counts for its fraction, so the bar moves during generation.
    partial = sum((r.progress or 0) / 100 for r in in_flight)
    filled = round(width * (done + ended + partial) / total) if total else width
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} done"]
    if in_flight:
        reporting = [r.progress for r in in_flight if r.progress is not None]
        average = f" (avg {sum(reporting) / len(reporting):.0f}%)" if reporting else ""
        parts.append(f"{len(in_flight)} generating{average}")
    waiting = counts[RecordState.PENDING] + counts[RecordState.SUBMITTING]
    if waiting:
        parts.append(f"{waiting} pending")
    downloading = counts[RecordState.READY] + counts[RecordState.MATERIALIZING]
    if downloading:
        parts.append(f"{downloading} downloading")
    if ended:
        parts.append(f"{ended} failed")
    minutes, seconds = divmod(int(elapsed_s), 60)
    parts.append(f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s")
    return " | ".join(parts)


class ProgressLine:
    """Call with each tick's records; writes the bar to ``stream``."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        heartbeat_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stdout
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self.started = clock()
        self._last_counts: Counter[RecordState] | None = None
        self._last_print = 0.0
        self._drawn = False

    @property
    def interactive(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, records: Sequence[Record]) -> None:
        now = self.clock()
        line = render_progress(records, now - self.started)
        if self.interactive:
            self.stream.write(f"\r\x1b[2K{line}")
            self._drawn = True
        else:
            counts = Counter(r.state for r in records)
            if counts == self._last_counts and now - self._last_print < self.heartbeat_s:
                return
            self._last_counts, self._last_print = counts, now
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """Print ``text`` on a line of its own (above the bar on a terminal)."""
        self.stream.write(("\r\x1b[2K" if self._drawn else "") + text + "\n")
        self._drawn = False
        self.stream.flush()

    def close(self) -> None:
        """End the redrawn line so what follows starts on a line of its own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
