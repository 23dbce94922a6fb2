"""Benchmarks of omni_assets against hand-written baselines (see docs/benchmarks.md).

Each module is one command, e.g. ``.venv/bin/python -m benchmarks.poll_tick``; each prints its
ratios and exits non-zero when a target is missed. ``--quick`` runs a tiny smoke version.
"""
