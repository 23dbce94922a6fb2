"""What was spent, from the registry's cost rows: per video, per group, in total.

A video's cost is the provider's own figure when it reported one (APIMart, CRUN), else the
reservation made from our estimate; a submission that created nothing costs nothing. Totals are
in USD (credits converted with the price table's rate) and are the sum of the per-video figures,
nothing else. The CLI's tables, ``omni-assets cost`` and the ``omni_spend`` asset all read these.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from ..registry import CostRow, Registry

__all__ = [
    "GROUPS",
    "cost_cell",
    "cost_cells",
    "latest_costs",
    "spend_by",
    "spent_rows",
    "total_line",
    "total_usd",
]

GROUPS = ("provider", "model", "tag", "day")


def spent_rows(rows: Iterable[CostRow]) -> list[CostRow]:
    """The rows that count: reserved (a task may exist) or charged."""
    return [r for r in rows if r.state in ("reserved", "charged")]


def total_usd(rows: Iterable[CostRow]) -> float:
    """The sum of the per-video costs, in USD."""
    return sum(r.spent_usd for r in spent_rows(rows))


def latest_costs(registry: Registry) -> dict[str, list[CostRow]]:
    """key -> its cost rows (one per attempt that was priced), oldest attempt first."""
    out: dict[str, list[CostRow]] = defaultdict(list)
    for row in registry.costs():
        out[row.key].append(row)
    return out


def cost_cell(rows: Sequence[CostRow]) -> str:
    """``0.40 USD`` (reported), ``~0.60 USD`` (our estimate), ``-`` (nothing spent yet)."""
    spent = [r for r in rows if r.state in ("reserved", "charged")]
    if not spent:
        return "-"
    units = {r.unit for r in spent}
    if len(units) > 1:  # attempts on sellers with different units: show USD
        total = sum(r.spent_usd for r in spent)
        mark = "~" if any(r.actual is None for r in spent) else ""
        return f"{mark}{total:.2f} USD"
    amount = sum(r.spent for r in spent)
    mark = "~" if any(r.actual is None for r in spent) else ""
    return f"{mark}{amount:.2f} {units.pop()}"


def total_line(rows: Iterable[CostRow]) -> str:
    """``total: 2.40 USD (3 videos reported by the provider, 2 at our estimate)``."""
    spent = [r for r in rows if r.state in ("reserved", "charged")]
    reported = sum(r.actual is not None for r in spent)
    total = sum(r.spent_usd for r in spent)
    return (
        f"total: {total:.2f} USD ({reported} reported by the provider, "
        f"{len(spent) - reported} at our estimate)"
    )


def spend_by(rows: Iterable[CostRow], group: str) -> dict[str, tuple[int, float]]:
    """group value -> (videos, USD). ``tag`` groups by ``name=value`` (a video in each of its
    tags); ``day`` by the UTC day the submission was booked."""
    if group not in GROUPS:
        raise ValueError(f"group {group!r} is not known; allowed: {', '.join(GROUPS)}")
    out: dict[str, tuple[int, float]] = {}
    for row in rows:
        if row.state not in ("reserved", "charged"):
            continue
        if group == "tag":
            names = [f"{k}={v}" for k, v in sorted(row.tags.items())] or ["(no tags)"]
        elif group == "day":
            names = [row.day or "-"]
        else:
            names = [getattr(row, group)]
        for name in names:
            count, usd = out.get(name, (0, 0.0))
            out[name] = (count + 1, usd + row.spent_usd)
    return out


def cost_cells(registry: Registry, keys: Iterable[str]) -> Mapping[str, str]:
    """key -> its cost cell, for the summary tables."""
    costs = latest_costs(registry)
    return {key: cost_cell(costs.get(key, [])) for key in keys}
