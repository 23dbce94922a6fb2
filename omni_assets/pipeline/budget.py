"""Budgets (``OMNI_BUDGET``) and the charge each submission books against them.

A budget has limits in USD: per UTC day (``day``), per run (``run``: one ``omni-assets run``, or
one Dagster run of the submit job) and per value of a request tag per day (``team`` limits each
value of the ``team`` tag; ``team.ml`` only the value ``ml``). ``OMNI_BUDGET`` is either the path
of a YAML/JSON file, inline YAML/JSON, or a short list::

    OMNI_BUDGET="day=12.50, run=5, team=3, team.ml=8"
    OMNI_BUDGET='{"day": 12.5, "tags": {"team": {"*": 3, "ml": 8}}}'

The estimate of each video (``providers/prices.py``) is reserved in the registry in the same
transaction as its submission intent (:meth:`Registry.begin_submit`), so two submitters running
at once cannot book past a limit together; a request that would go over waits, pending, with the
reason as its error (``budget: 12.40 of 12.50 USD spent today; ...``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..providers.prices import DEFAULT_PRICES, PriceTable
from ..registry import BudgetLimit, Charge
from ..registry.costs import utc_day
from ..request import VideoRequest

__all__ = ["RUN_TAG", "Budget", "SpendPolicy", "charge_for", "parse_budget"]

_ANY = "*"
#: The Dagster run tag naming the run a submission is booked to (``omni-assets run`` sets one
#: for all the runs it launches); without it, the Dagster run id.
RUN_TAG = "omni/budget_run"


@dataclass(frozen=True)
class Budget:
    """Limits in USD; None: no limit of that kind."""

    per_day: float | None = None
    per_run: float | None = None
    #: tag name -> tag value (``*`` for every value) -> limit per day.
    per_tag: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def limits_for(self, charge: Charge, now: float | None = None) -> list[BudgetLimit]:
        """The limits ``charge`` is checked against, with the scope values it is booked to."""
        day = utc_day(time.time() if now is None else now)
        out: list[BudgetLimit] = []
        if self.per_day is not None:
            out.append(BudgetLimit("day", day, self.per_day, "today"))
        if self.per_run is not None and charge.run:
            out.append(BudgetLimit("run", charge.run, self.per_run, f"in run {charge.run}"))
        for name, value in sorted(charge.tags.items()):
            limits = self.per_tag.get(name, {})
            limit = limits.get(value, limits.get(_ANY))
            if limit is not None:
                label = f"today by {name}={value}"
                out.append(BudgetLimit(f"tag:{name}", f"{value}@{day}", limit, label))
        return out

    def describe(self) -> str:
        """One line for people: ``12.50 USD a day, 5.00 USD a run, team=* 3.00 USD a day``."""
        parts = []
        if self.per_day is not None:
            parts.append(f"{self.per_day:.2f} USD a day")
        if self.per_run is not None:
            parts.append(f"{self.per_run:.2f} USD a run")
        for name, values in sorted(self.per_tag.items()):
            parts += [f"{name}={v} {amount:.2f} USD a day" for v, amount in sorted(values.items())]
        return ", ".join(parts) or "no limits"


@dataclass(frozen=True)
class SpendPolicy:
    """What submit needs to price and budget a submission: prices, budget, the run label."""

    prices: PriceTable = DEFAULT_PRICES
    budget: Budget | None = None
    run: str | None = None

    def for_run(self, run: str | None) -> SpendPolicy:
        """The same policy, booking to ``run``."""
        return SpendPolicy(self.prices, self.budget, run)

    def charge(self, request: VideoRequest, provider: str, model: str) -> Charge | None:
        """:func:`charge_for` with these prices and this run."""
        return charge_for(self.prices, request, provider, model, run=self.run)

    def limits(self, charge: Charge | None, now: float | None = None) -> list[BudgetLimit]:
        """The limits a submission with ``charge`` must fit (none without a budget)."""
        if self.budget is None or charge is None:
            return []
        return self.budget.limits_for(charge, now)


def charge_for(
    prices: PriceTable,
    request: VideoRequest,
    provider: str,
    model: str,
    *,
    run: str | None = None,
) -> Charge | None:
    """What submitting ``request`` to ``provider``/``model`` should cost (None: unpriced)."""
    estimate = prices.estimate(
        provider,
        model,
        duration=request.duration,
        resolution=request.resolution,
        has_video=request.video is not None or request.extends is not None,
    )
    if estimate is None:
        return None
    return Charge(
        provider=provider,
        model=estimate.model,
        amount=estimate.amount,
        unit=estimate.unit,
        usd=estimate.usd,
        usd_per_unit=estimate.usd_per_unit,
        price_is_estimate=estimate.estimate,
        tags=dict(request.tags),
        run=run,
    )


def parse_budget(text: str | None) -> Budget | None:
    """The budget ``OMNI_BUDGET`` describes (file path, YAML/JSON or ``k=v`` pairs); None: unset.

    Raises ValueError naming what is wrong.
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    path = Path(text)
    if not text.startswith("{") and "=" not in text and path.is_file():
        text = path.read_text(encoding="utf-8")
    if text.startswith("{") or "\n" in text or text.endswith((".yaml", ".yml", ".json")):
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"OMNI_BUDGET: not valid YAML/JSON: {exc}") from exc
        if not isinstance(doc, Mapping):
            raise ValueError("OMNI_BUDGET: expected a mapping with day, run and/or tags")
        return _from_mapping(doc)
    pairs: dict[str, Any] = {"tags": {}}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"OMNI_BUDGET: {part!r} is not name=amount")
        name = name.strip()
        if name in ("day", "run"):
            pairs[name] = value
        else:
            tag, _, tag_value = name.partition(".")
            pairs["tags"].setdefault(tag, {})[tag_value or _ANY] = value
    return _from_mapping(pairs)


def _amount(value: Any, where: str) -> float:
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"OMNI_BUDGET: {where} must be an amount in USD, got {value!r}") from None
    if amount < 0:
        raise ValueError(f"OMNI_BUDGET: {where} must be >= 0, got {value!r}")
    return amount


def _from_mapping(doc: Mapping[str, Any]) -> Budget:
    unknown = sorted(set(map(str, doc)) - {"day", "run", "tags", "currency"})
    if unknown:
        raise ValueError(
            f"OMNI_BUDGET: unknown key(s) {', '.join(unknown)}; allowed: day, run, tags, currency"
        )
    currency = str(doc.get("currency", "USD"))
    if currency != "USD":
        raise ValueError(f"OMNI_BUDGET: currency {currency!r} is not supported; allowed: USD")
    tags: dict[str, dict[str, float]] = {}
    raw_tags = doc.get("tags") or {}
    if not isinstance(raw_tags, Mapping):
        raise ValueError("OMNI_BUDGET: tags must map a tag name to {value: amount}")
    for name, values in raw_tags.items():
        if not isinstance(values, Mapping):
            values = {_ANY: values}
        tags[str(name)] = {
            str(v): _amount(a, f"tags.{name}.{v}") for v, a in values.items() if a is not None
        }
    return Budget(
        per_day=_amount(doc["day"], "day") if doc.get("day") is not None else None,
        per_run=_amount(doc["run"], "run") if doc.get("run") is not None else None,
        per_tag=tags,
    )
