"""Reliability suite fixtures, and the figures report at the end of the session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import FIGURES, EmulatorProcess, figures_path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**old, **FIGURES}, indent=2, sort_keys=True) + "\n")
    terminalreporter.section("reliability figures")
    for section, figures in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{section}: {json.dumps(figures, sort_keys=True)}")
    terminalreporter.write_line(f"(written to {path})")


@pytest.fixture(scope="module")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The emulator as its own process (``python -m omni_assets.emulator``), 2.5 MB videos."""
    log_dir: Path = tmp_path_factory.mktemp("emulator")
    with EmulatorProcess(
        log_dir, generation_seconds=0.3, video_padding_bytes=2_500_000, seed=7
    ) as emulator:
        yield emulator
