"""The CLI's progress line: what a person watching ``omni-assets run`` sees."""

from __future__ import annotations

import dataclasses
import io

from omni_assets.progress import ProgressLine, render_progress
from omni_assets.registry import Record, RecordState, RegisterItem, Registry


def _records(*states: tuple[RecordState, int | None]) -> list[Record]:
    registry = Registry("sqlite://")
    registry.register(
        [
            RegisterItem(
                key=f"k{i}", fingerprint=f"f{i}", provider="apimart", model="m", request_json="{}"
            )
            for i in range(len(states))
        ]
    )
    base = registry.records()
    return [
        dataclasses.replace(r, state=state, progress=progress)
        for r, (state, progress) in zip(base, states, strict=True)
    ]


def test_the_bar_counts_every_state_and_moves_with_generation_progress() -> None:
    records = _records(
        (RecordState.MATERIALIZED, None),
        (RecordState.IN_FLIGHT, 50),
        (RecordState.IN_FLIGHT, 30),
        (RecordState.PENDING, None),
        (RecordState.FAILED, None),
    )
    line = render_progress(records, elapsed_s=65, width=10)
    # 1 done + 1 failed + 0.8 of generation = 2.8 of 5 -> 6 of 10 cells.
    assert line == ("[######....] 1/5 done | 2 generating (avg 40%) | 1 pending | 1 failed | 1m05s")


def test_in_a_log_a_line_is_written_only_when_something_changes() -> None:
    out = io.StringIO()
    now = [0.0]
    bar = ProgressLine(out, heartbeat_s=30, clock=lambda: now[0])
    pending = _records((RecordState.PENDING, None), (RecordState.PENDING, None))
    for _ in range(5):
        now[0] += 1
        bar(pending)
    generating = [dataclasses.replace(r, state=RecordState.IN_FLIGHT) for r in pending]
    bar(generating)
    now[0] += 40  # nothing changed for longer than the heartbeat: one line to show it is alive
    bar(generating)
    bar.note("  k0: materialized")
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("[") and "0/2 done | 2 pending" in lines[0]
    assert "2 generating" in lines[1] and "2 generating" in lines[2]
    assert lines[3] == "  k0: materialized"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_redrawn_in_place() -> None:
    out = _Terminal()
    bar = ProgressLine(out)
    records = _records((RecordState.IN_FLIGHT, 10))
    bar(records)
    bar(records)
    bar.note("  k0: ready")
    bar(records)
    bar.close()
    text = out.getvalue()
    assert text.count("\r\x1b[2K") == 4  # three draws over the line, and the note clearing it
    assert text.endswith("\n") and "  k0: ready\n" in text
