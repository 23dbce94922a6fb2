"""What every benchmark shares: timing, and the verdict.

The emulator runs as its own process (``omni_assets_tests.servers.EmulatorProcess``) so that the
client measured and the server do not share a GIL; both our code and the baseline talk to the
same one. Results are rows (benchmark, N, ours, baseline, ratio, target, pass/fail) printed as
a table and, with ``--json PATH``, appended to a JSON-lines file that ``docs/benchmarks.md`` is
written from.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Row",
    "Scoreboard",
    "cli",
    "median_time",
    "parser",
]

API_KEY = "bench-not-a-secret"


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall seconds of ``fn()`` over ``repeats`` runs, and every run's time."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


@dataclass
class Row:
    """One line of the results table; ``ok`` is None for numbers that are reported only."""

    benchmark: str
    n: str
    ours: str
    baseline: str
    ratio: str
    target: str
    ok: bool | None
    notes: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "reported"}[self.ok]


@dataclass
class Scoreboard:
    """Collects rows; prints them; ``exit_code`` is 1 when any target was missed."""

    name: str
    command: str
    rows: list[Row] = field(default_factory=list)
    json_path: str | None = None

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(
            f"[{self.name}] {row.benchmark} N={row.n}: ours {row.ours}, baseline {row.baseline}, "
            f"ratio {row.ratio} (target {row.target}) -> {row.verdict}"
            + (f"  [{row.notes}]" if row.notes else ""),
            flush=True,
        )
        return row

    def finish(self) -> int:
        print()
        print(self.table())
        if self.json_path:
            with open(self.json_path, "a", encoding="utf-8") as out:
                for row in self.rows:
                    out.write(json.dumps({"command": self.command, **asdict(row)}) + "\n")
        return 1 if any(row.ok is False for row in self.rows) else 0

    def table(self) -> str:
        head = "| benchmark | N | ours | baseline | ratio | target | result |"
        lines = [head, "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(
                f"| {r.benchmark} | {r.n} | {r.ours} | {r.baseline} | {r.ratio} | {r.target} "
                f"| {r.verdict} |"
            )
        return "\n".join(lines)


def cli(main: Callable[[], int]) -> None:
    """Run a benchmark as a command: quieter logs (only the verdicts matter), exit with its code."""
    logging.disable(logging.INFO)
    raise SystemExit(main())


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a tiny smoke run (seconds)")
    p.add_argument("--json", metavar="PATH", help="append result rows to this JSON-lines file")
    return p


def command(module: str, argv: Sequence[str]) -> str:
    """The command line that ran this benchmark (for the results file)."""
    return " ".join([".venv/bin/python", "-m", module, *argv])


def seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
