"""The progress bar of ``omni-assets run`` / ``demo``.

On a terminal it is a ``rich`` progress bar (rich comes with Dagster) drawn below the output:
whatever is printed or logged meanwhile — the per-request notes, and Dagster's own log lines,
which go to ``sys.stderr`` — is redirected by rich to appear above it, instead of being written
over the bar. In a log (CI, ``| tee``) a plain line is printed only when a count changes, or at
most every ``heartbeat_s`` while nothing changes, so a long run leaves a readable trace instead
of thousands of lines.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

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


def _fraction_done(records: Sequence[Record]) -> float:
    """Settled requests, plus each generating task's reported fraction (the bar moves)."""
    done = sum(r.state in _DONE or r.state.retryable for r in records)
    partial = sum((r.progress or 0) / 100 for r in records if r.state == RecordState.IN_FLIGHT)
    return done + partial


class ProgressLine:
    """Call with each tick's records; shows the bar on ``stream``."""

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
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    @property
    def interactive(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, records: Sequence[Record]) -> None:
        now = self.clock()
        if self.interactive:
            self._draw(records)
            return
        counts = Counter(r.state for r in records)
        if counts == self._last_counts and now - self._last_print < self.heartbeat_s:
            return
        self._last_counts, self._last_print = counts, now
        self.stream.write(render_progress(records, now - self.started) + "\n")
        self.stream.flush()

    def _draw(self, records: Sequence[Record]) -> None:
        if self._bar is None:
            console = Console(file=self.stream, force_terminal=True, highlight=False)
            self._bar = Progress(
                BarColumn(),
                TextColumn("{task.fields[done]}/{task.total:.0f} done"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                redirect_stdout=True,  # prints and Dagster's stderr log lines go above the bar
                redirect_stderr=True,
                auto_refresh=False,  # drawn on each tick, from this thread only
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=max(len(records), 1), done=0)
        assert self._task is not None
        done = sum(r.state in _DONE for r in records)
        # The rest of the plain line ("2 generating (avg 40%) | 1 pending"), without its own
        # bar, count and clock, which rich draws.
        detail = render_progress(records, 0).split(" | ")[1:-1]
        self._bar.update(
            self._task,
            total=max(len(records), 1),
            completed=_fraction_done(records),
            done=done,
            description=" | ".join(detail),
        )
        self._bar.refresh()

    def note(self, text: str) -> None:
        """Print ``text`` on a line of its own (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Stop the bar (it stays on screen, finished) so what follows starts below it."""
        if self._bar is not None:
            self._bar.refresh()
            self._bar.stop()
            self._bar = None
