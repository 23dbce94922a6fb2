"""``omni-assets cost``: what was spent, grouped by provider, model, tag or day."""

from __future__ import annotations

import argparse

from ..pipeline.spend import GROUPS, spend_by, total_line
from ..registry import Registry

__all__ = ["add_cost_parser", "cmd_cost"]


def add_cost_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``omni-assets cost [--by provider|model|tag|day]``."""
    cost = sub.add_parser("cost", help="what was spent, grouped by provider, model, tag or day")
    cost.add_argument("--by", choices=GROUPS, default="provider")


def cmd_cost(args: argparse.Namespace) -> int:
    from ..registry import default_registry_url
    from . import _table, say_state

    say_state()
    registry = Registry(default_registry_url())
    rows = registry.costs()
    groups = spend_by(rows, args.by)
    print(
        _table(
            [[name, str(n), f"{usd:.2f}"] for name, (n, usd) in sorted(groups.items())],
            [args.by, "videos", "USD"],
        )
    )
    print(total_line(rows))
    return 0
