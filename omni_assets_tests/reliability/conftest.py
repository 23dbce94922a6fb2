"""Reliability suite: the figures report at the end of the session."""

from __future__ import annotations

import json
from typing import Any

from .harness import FIGURES, figures_path


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
