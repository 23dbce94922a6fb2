"""Shared by the reliability tests: the emulator as a process, audits, storage checks, figures.

Figures: each test adds its numbers with :func:`record_figures`; at the end of the session they
are printed and written to ``$OMNI_RELIABILITY_FIGURES`` (default
``.omni/reliability/figures.json``), which is where ``docs/reliability.md`` takes them from.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, serialize_value

from ..servers import EmulatorProcess

__all__ = [
    "FIGURES",
    "EmulatorProcess",
    "final_path_problems",
    "record_figures",
    "run_cli",
    "secrets_left",
    "tasks_by_prompt",
]

FIGURES: dict[str, dict[str, Any]] = {}
REPO = Path(__file__).resolve().parents[2]


def record_figures(section: str, **figures: Any) -> None:
    """Remember ``figures`` under ``section`` for the session's report."""
    FIGURES.setdefault(section, {}).update(figures)


def figures_path() -> Path:
    default = Path(__file__).resolve().parents[2] / ".omni" / "reliability" / "figures.json"
    return Path(os.environ.get("OMNI_RELIABILITY_FIGURES") or default)


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


def run_cli(
    args: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``omni-assets ARGS`` as its own process with exactly ``env``, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "omni_assets.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class SecretsLeft:
    """Where any of the needles was found, and how much was searched."""

    hits: list[str]
    runs_searched: int
    files_searched: int


def secrets_left(home: Path, storage: Path, output: str, needles: list[str]) -> SecretsLeft:
    """Search every file under ``home`` and ``storage``, the processes' ``output``, and every
    run record and event the Dagster instance at ``home`` reads back, for each needle."""
    hits: list[str] = []
    files = sorted(p for root in (home, storage) for p in root.rglob("*") if p.is_file())
    for path in files:
        data = path.read_bytes()
        hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    hits += [f"output: {n}" for n in needles if n in output]
    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        for run in runs:
            text = serialize_value(run) + "".join(
                serialize_value(e) for e in instance.all_logs(run.run_id)
            )
            hits += [f"run {run.run_id}: {n}" for n in needles if n in text]
    return SecretsLeft(hits, len(runs), len(files))
