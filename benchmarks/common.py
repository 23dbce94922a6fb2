"""What every benchmark shares: the emulator as a separate process, timing, and the verdict.

The emulator runs as its own process (``python -m omni_assets.emulator``) so that the client
measured and the server do not share a GIL; both our code and the baseline talk to the same one.
Results are rows (benchmark, N, ours, baseline, ratio, target, pass/fail) printed as a table and,
with ``--json PATH``, appended to a JSON-lines file that ``docs/benchmarks.md`` is written from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "EmulatorProcess",
    "Row",
    "Scoreboard",
    "cli",
    "free_port",
    "median_time",
    "parser",
]

API_KEY = "bench-not-a-secret"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


class EmulatorProcess:
    """``python -m omni_assets.emulator`` on a free loopback port, stopped by pid on exit."""

    def __init__(self, *flags: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.flags = list(flags)
        self.log_path = Path(tempfile.mkstemp(prefix="omni-bench-emulator-", suffix=".log")[1])
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, provider: str) -> str:
        return f"{self.url}/{provider}"

    def start(self) -> EmulatorProcess:
        argv = [sys.executable, "-m", "omni_assets.emulator", "--port", str(self.port), *self.flags]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_default_signals,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"emulator exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/_emulator/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the emulator did not start within 30 s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/_emulator/config", json=changes, timeout=30)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def audit(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_emulator/audit", timeout=60)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reset(self) -> None:
        httpx.post(f"{self.url}/_emulator/reset", timeout=30).raise_for_status()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


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
