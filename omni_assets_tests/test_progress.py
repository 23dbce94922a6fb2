"""Progress as people see it: the CLI's progress line, and the poll sensor's tick log."""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dagster._utils.log import create_console_logger

from omni_assets.cli.driver import LocalDriver
from omni_assets.cli.progress import ProgressLine, render_progress
from omni_assets.registry import Record, RecordState, RegisterItem, Registry

from .pipeline_env import pipeline_env


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


def _lines(text: str) -> list[str]:
    """What a terminal shows, roughly: the text split at line ends and carriage returns, with
    escape sequences removed."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return [line for line in re.split(r"[\r\n]", plain) if line.strip()]


def test_on_a_terminal_log_lines_go_above_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster's log lines (to sys.stderr, the same terminal) never land on the bar's line
    (issue 13 finding 9); notes neither."""
    out = _Terminal()
    monkeypatch.setattr(sys, "stderr", out)  # one terminal for both streams, as in a shell
    dagster_log = create_console_logger("dagster", logging.INFO)  # what sensors and runs log to
    bar = ProgressLine(out)
    records = _records((RecordState.IN_FLIGHT, 10), (RecordState.PENDING, None))
    bar(records)
    dagster_log.info("a dagster log line")
    bar.note("  k0: ready")
    bar([dataclasses.replace(records[0], state=RecordState.MATERIALIZED), records[1]])
    bar.close()
    assert sys.stderr is out  # the redirection ends with the bar
    lines = _lines(out.getvalue())
    logged = [line for line in lines if "a dagster log line" in line]
    assert logged and all("done" not in line for line in logged), lines
    assert "  k0: ready" in lines
    assert any("1/2 done" in line and "1 pending" in line for line in lines), lines


def test_poll_tick_log_shows_each_task_progress(
    tmp_path: Path, fresh_emulator: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """What the omni_poll_sensor tick log in the UI shows while videos are being generated."""
    fresh_emulator.configure(generation_seconds=20.0, queue_fraction=0.0)
    with pipeline_env(tmp_path, fresh_emulator.url) as env:
        env.write_requests(
            [
                {"id": f"slow-{i}", "prompt": "a slow sunrise", "provider": "apimart"}
                for i in range(3)
            ]
        )
        driver = LocalDriver(env.defs, env.instance, env.registry, run_log_level="WARNING")
        driver.tick("omni_requests_sensor")  # registers and runs omni_submit
        assert {r.state for r in env.registry.records()} == {RecordState.IN_FLIGHT}
        time.sleep(1.5)
        capfd.readouterr()
        driver.tick("omni_poll_sensor")
        out = capfd.readouterr()
    # The tick's log lines (printed by Dagster's console logger, as in the daemon's log).
    lines = [line for line in (out.out + out.err).splitlines() if "progress:" in line]
    assert lines, out
    assert re.search(r"progress: slow-0 \d+%, slow-1 \d+%, slow-2 \d+%", lines[-1]), lines
