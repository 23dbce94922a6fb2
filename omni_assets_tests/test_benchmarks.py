"""The benchmarks (``benchmarks/``, docs/benchmarks.md) still run, each at its ``--quick`` size.

Only that they run end to end and report their rows is checked here; whether targets are met
is for the full runs on a quiet machine (a tiny N on a busy CI box says nothing about ratios).
The daemon, webserver and Celery ones (``e2e``, ``scale``, ``celery_scale``) take a minute or more
each even at tiny N, so they are only imported and parsed here.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

QUICK = ["poll_tick", "submit_rate", "download"]
ALL = [*QUICK, "e2e", "scale", "celery_scale"]


@pytest.mark.parametrize("name", QUICK)
def test_quick_benchmark_runs_and_reports(name: str, tmp_path: Path) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    results = tmp_path / "results.jsonl"
    code = module.main(["--quick", "--json", str(results)])
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert code in (0, 1)
    assert rows and all(
        r["command"].endswith(f"benchmarks.{name} --quick --json {results}") for r in rows
    )
    assert code == (1 if any(r["ok"] is False for r in rows) else 0)


@pytest.mark.parametrize("name", ALL)
def test_every_benchmark_is_a_documented_command(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert f"python -m benchmarks.{name}" in (module.__doc__ or "")
    docs = (Path(__file__).parent.parent / "docs" / "benchmarks.md").read_text()
    assert f"python -m benchmarks.{name}" in docs
