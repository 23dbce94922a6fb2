"""Shared by the reliability tests: the emulator as a process, audits, storage checks, figures.

Figures: each test adds its numbers with :func:`record_figures`; at the end of the session they
are printed and written to ``$OMNI_RELIABILITY_FIGURES`` (default
``.omni/reliability/figures.json``), which is where ``docs/reliability.md`` takes them from.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from ..servers import ChildProcess, _wait_for, free_ports

__all__ = [
    "FIGURES",
    "EmulatorProcess",
    "final_path_problems",
    "record_figures",
    "tasks_by_prompt",
]

FIGURES: dict[str, dict[str, Any]] = {}


def record_figures(section: str, **figures: Any) -> None:
    """Remember ``figures`` under ``section`` for the session's report."""
    FIGURES.setdefault(section, {}).update(figures)


def figures_path() -> Path:
    default = Path(__file__).resolve().parents[2] / ".omni" / "reliability" / "figures.json"
    return Path(os.environ.get("OMNI_RELIABILITY_FIGURES") or default)


class EmulatorProcess:
    """``python -m omni_assets.emulator`` in its own process on a free loopback port."""

    def __init__(self, log_dir: Path, **settings: Any) -> None:
        self.port = free_ports(1)[0]
        argv = [sys.executable, "-m", "omni_assets.emulator", "--port", str(self.port)]
        for name, value in settings.items():
            argv += ["--" + name.replace("_", "-"), str(value)]
        self._argv = argv
        self._log_path = log_dir / f"emulator-{self.port}.log"
        self._proc: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EmulatorProcess:
        self._proc = ChildProcess(self._argv, self._log_path)
        _wait_for("emulator", lambda: self._control("GET", "health") is not None, self._proc, 60)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(signal.SIGINT)
            self._proc = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _control(self, method: str, name: str, payload: Any = None) -> Any:
        with httpx.Client(base_url=self.url, trust_env=False, timeout=30) as client:
            response = client.request(method, f"/_emulator/{name}", json=payload)
        response.raise_for_status()
        return response.json()

    def audit(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "audit")
        return result

    def configure(self, **changes: Any) -> None:
        self._control("POST", "config", changes)

    def reset(self) -> None:
        self._control("POST", "reset")


def tasks_by_prompt(audit: dict[str, Any]) -> Counter[str]:
    """How many tasks the emulator created for each prompt."""
    return Counter(str(task["prompt"]) for task in audit["tasks"])


def final_path_problems(videos_dir: Path) -> tuple[list[str], int]:
    """Anything wrong at a final path under ``videos/``, and how many temporary files remain.

    A final ``{key}.mp4`` must have a sidecar whose size and sha256 it matches; a sidecar must
    parse and point at its video. Temporary ``.partial-`` files are counted, not judged.
    """
    problems: list[str] = []
    partials = 0
    if not videos_dir.exists():
        return problems, partials
    for path in sorted(videos_dir.iterdir()):
        if ".partial-" in path.name:
            partials += 1
            continue
        if path.suffix == ".json":
            try:
                sidecar = json.loads(path.read_text())
            except ValueError as exc:
                problems.append(f"{path.name}: sidecar does not parse: {exc}")
                continue
            if not path.with_suffix(".mp4").exists():
                problems.append(f"{path.name}: sidecar without its video")
            elif sidecar.get("size") != path.with_suffix(".mp4").stat().st_size:
                problems.append(f"{path.name}: sidecar size differs from the video's")
        elif path.suffix == ".mp4":
            sidecar_path = path.with_suffix(".json")
            data = path.read_bytes()
            if not sidecar_path.exists():
                # A committed video whose sidecar was not written yet is complete (it was
                # verified before the move), but it must not be the request's final state.
                problems.append(f"{path.name}: video without a sidecar")
                continue
            sidecar = json.loads(sidecar_path.read_text())
            if hashlib.sha256(data).hexdigest() != sidecar.get("sha256"):
                problems.append(f"{path.name}: content does not match its sidecar's sha256")
    return problems, partials


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)
