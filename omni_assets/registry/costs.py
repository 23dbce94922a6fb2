"""What each submission is expected to cost, what it did cost, and the budget ledger.

Internal to :mod:`omni_assets.registry` (import the names from there). Two tables, created beside
the others by the store's ``create_all``:

* ``omni_costs``: one row per (key, attempt): the provider and model it went to, the estimate (in
  the price's unit and in USD), the actual cost once the provider reports one, and where the row
  stands: ``estimated`` (registered, not submitted), ``reserved`` (the paid POST is under way or
  its task is running), ``charged`` (the task ended; ``actual`` when the provider said) or
  ``released`` (nothing was created: the reservation is given back).
* ``omni_budget_ledger``: the amounts booked against each budget scope (``day`` = the UTC
  date, ``run`` = the run label, ``tag:<name>`` = ``<value>@<UTC date>``), one row per scope per
  submission, so "how much has today spent" is one indexed sum. The reservation is written in
  the same transaction as the submission's intent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .model import BudgetExceededError, BudgetLimit, Charge
from .store import metadata, records_table

__all__ = [
    "book_reservation",
    "check_limits",
    "costs_table",
    "current_attempt",
    "last_change",
    "ledger_table",
    "record_estimate",
    "record_estimates",
    "release",
    "settle",
    "utc_day",
]

_KEY = sa.String(255)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
costs_table = sa.Table(
    "omni_costs",
    metadata,
    sa.Column("key", _KEY, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("unit", sa.String(32), nullable=False),
    sa.Column("usd_per_unit", sa.Float, nullable=False),
    sa.Column("estimated", sa.Float, nullable=False),
    sa.Column("estimated_usd", sa.Float, nullable=False),
    sa.Column("price_is_estimate", sa.Boolean, nullable=False),
    sa.Column("actual", sa.Float),
    sa.Column("actual_usd", sa.Float),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("day", sa.String(10)),
    sa.Column("run", sa.String(255)),
    sa.Column("tags_json", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_omni_costs_day", "day"),
)
ledger_table = sa.Table(
    "omni_budget_ledger",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("key", _KEY, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("scope", sa.String(64), nullable=False),
    sa.Column("value", sa.String(255), nullable=False),
    sa.Column("usd", sa.Float, nullable=False),
    sa.Index("ix_omni_budget_ledger_scope", "scope", "value"),
    sa.Index("ix_omni_budget_ledger_key", "key", "attempt"),
)
_k = costs_table.c
_l = ledger_table.c
_EPSILON = 1e-9  # float sums: a budget of exactly N estimates admits exactly N


def utc_day(at: float) -> str:
    """``YYYY-MM-DD`` of ``at`` (epoch seconds) in UTC: the ``day`` budget scope."""
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def last_change(conn: Connection) -> float:
    """When a reservation was last settled or given back (0: never)."""
    settled = _k.state.in_(("charged", "released"))
    query = sa.select(sa.func.coalesce(sa.func.max(_k.updated_at), 0.0)).where(settled)
    return float(conn.execute(query).scalar_one())


def _spent(conn: Connection, scope: str, value: str) -> float:
    query = sa.select(sa.func.coalesce(sa.func.sum(_l.usd), 0.0)).where(
        _l.scope == scope, _l.value == value
    )
    return float(conn.execute(query).scalar_one())


def check_limits(
    conn: Connection, key: str, charge: Charge, limits: Sequence[BudgetLimit], now: float
) -> BudgetExceededError | None:
    """The first limit ``charge`` would take past its amount, as an error; None if all fit."""
    for limit in limits:
        spent = _spent(conn, limit.scope, limit.value)
        if spent + charge.usd > limit.limit_usd + _EPSILON:
            message = (
                f"budget: {spent:.2f} of {limit.limit_usd:.2f} USD spent {limit.label}; "
                f"this video is estimated at {charge.usd:.2f} USD ({charge.provider}), so it "
                "waits until the budget allows it (raise OMNI_BUDGET, or wait for the next "
                "period)"
            )
            return BudgetExceededError(message, key=key, limit=limit, spent_usd=spent, at=now)
    return None


def _scopes(charge: Charge, day: str) -> list[tuple[str, str]]:
    scopes = [("day", day)]
    if charge.run:
        scopes.append(("run", charge.run))
    # Tag budgets are per day too: the value is booked as "<tag value>@<day>".
    scopes += [(f"tag:{name}", f"{value}@{day}") for name, value in sorted(charge.tags.items())]
    return scopes


def _cost_values(charge: Charge, state: str, now: float, day: str | None) -> dict[str, Any]:
    return {
        "provider": charge.provider,
        "model": charge.model,
        "unit": charge.unit,
        "usd_per_unit": charge.usd_per_unit,
        "estimated": charge.amount,
        "estimated_usd": charge.usd,
        "price_is_estimate": charge.price_is_estimate,
        "actual": None,
        "actual_usd": None,
        "state": state,
        "day": day,
        "run": charge.run,
        "tags_json": json.dumps(dict(charge.tags), sort_keys=True),
        "updated_at": now,
    }


def _upsert(conn: Connection, key: str, attempt: int, values: dict[str, Any]) -> None:
    where = (_k.key == key, _k.attempt == attempt)
    if conn.execute(sa.update(costs_table).where(*where).values(values)).rowcount == 0:
        conn.execute(sa.insert(costs_table).values(key=key, attempt=attempt, **values))


def record_estimate(conn: Connection, key: str, attempt: int, charge: Charge, now: float) -> None:
    """The estimate of a registered, not yet submitted attempt (counts against no budget)."""
    record_estimates(conn, [(key, attempt, charge)], now)


def record_estimates(
    conn: Connection, estimates: Sequence[tuple[str, int, Charge]], now: float
) -> None:
    """:func:`record_estimate` for many (key, attempt) at once: one read of the rows already
    there, one multi-row insert for the new ones (registering 100,000 requests issued three
    statements per request before: minutes; docs/benchmarks.md, issue 15). A row past
    ``estimated`` (reserved, charged, released) is left as it is."""
    if not estimates:
        return
    found = conn.execute(
        sa.select(_k.key, _k.attempt, _k.state).where(_k.key.in_({k for k, _, _ in estimates}))
    )
    states = {(row.key, row.attempt): row.state for row in found}
    fresh = []
    for key, attempt, charge in estimates:
        values = _cost_values(charge, "estimated", now, None)
        state = states.get((key, attempt))
        if state is None:
            fresh.append({"key": key, "attempt": attempt, **values})
        elif state == "estimated":
            where = (_k.key == key, _k.attempt == attempt)
            conn.execute(sa.update(costs_table).where(*where).values(values))
    if fresh:
        conn.execute(sa.insert(costs_table), fresh)


def book_reservation(conn: Connection, key: str, attempt: int, charge: Charge, now: float) -> None:
    """Reserve ``charge`` for this attempt in every scope it belongs to (same transaction)."""
    day = utc_day(now)
    _upsert(conn, key, attempt, _cost_values(charge, "reserved", now, day))
    conn.execute(sa.delete(ledger_table).where(_l.key == key, _l.attempt == attempt))
    rows = [
        {"key": key, "attempt": attempt, "scope": scope, "value": value, "usd": charge.usd}
        for scope, value in _scopes(charge, day)
    ]
    conn.execute(sa.insert(ledger_table), rows)


def current_attempt(conn: Connection, key: str) -> int | None:
    """The record's attempt number, read inside the caller's transaction."""
    query = sa.select(records_table.c.attempt).where(records_table.c.key == key)
    value = conn.execute(query).scalar_one_or_none()
    return None if value is None else int(value)


def release(conn: Connection, key: str, now: float) -> None:
    """Nothing was created for the current attempt: give its reservation back."""
    attempt = current_attempt(conn, key)
    if attempt is None:
        return
    where = (_k.key == key, _k.attempt == attempt, _k.state == "reserved")
    stmt = sa.update(costs_table).where(*where).values(state="released", updated_at=now)
    if conn.execute(stmt).rowcount:
        conn.execute(sa.delete(ledger_table).where(_l.key == key, _l.attempt == attempt))


def settle(
    conn: Connection, key: str, cost: float | None, credits: float | None, now: float
) -> None:
    """The task ended: record the provider's own figure (in the price's unit) where it gave one.

    Without a figure the reservation stands as the cost (the estimate). The ledger follows the
    actual cost, so budgets count what was really spent.
    """
    attempt = current_attempt(conn, key)
    if attempt is None:
        return
    where = (_k.key == key, _k.attempt == attempt, _k.state == "reserved")
    row = conn.execute(sa.select(_k.unit, _k.usd_per_unit).where(*where)).first()
    if row is None:
        return
    actual = credits if row.unit == "credits" else cost
    values: dict[str, Any] = {"state": "charged", "updated_at": now}
    if actual is not None:
        actual_usd = round(actual * row.usd_per_unit, 6)
        values |= {"actual": actual, "actual_usd": actual_usd}
        ledger_where = (_l.key == key, _l.attempt == attempt)
        conn.execute(sa.update(ledger_table).where(*ledger_where).values(usd=actual_usd))
    conn.execute(sa.update(costs_table).where(*where).values(values))
