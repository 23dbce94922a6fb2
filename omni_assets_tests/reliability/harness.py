"""Shared by the reliability tests: the emulator as a process, audits, storage checks, figures.

Figures: each test adds its numbers with :func:`record_figures`; at the end of the session they
are printed and written to ``$OMNI_RELIABILITY_FIGURES`` (default
``.omni/reliability/figures.json``), which is where ``docs/reliability.md`` takes them from.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..servers import EmulatorProcess

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
