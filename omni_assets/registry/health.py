"""What each seller answered to recent submissions, for the submit circuit breaker.

Internal to :mod:`omni_assets.registry`. One row per submission outcome that says something about
the seller's health: ``ok`` (a task was created), ``error`` (5xx, 429, 455 or a connect failure,
after the client's own bounded retries: nothing was created) and ``refused`` (401/402: nothing
will be created until someone acts). Kept in the registry, so every submitter process sees it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .store import metadata

__all__ = ["OUTCOMES", "prune", "recent", "seller_events_table"]

OUTCOMES = ("ok", "error", "refused")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
seller_events_table = sa.Table(
    "omni_seller_events",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_omni_seller_events_provider_at", "provider", "at"),
)
_s = seller_events_table.c


def recent(conn: Connection, provider: str, since: float) -> list[tuple[float, str, str]]:
    """(at, outcome, detail) of ``provider`` since ``since``, newest first."""
    query = (
        sa.select(_s.at, _s.outcome, _s.detail)
        .where(_s.provider == provider, _s.at >= since)
        .order_by(_s.at.desc(), _s.id.desc())
        .limit(50)
    )
    return [(float(at), str(o), str(d)) for at, o, d in conn.execute(query)]


def prune(conn: Connection, before: float) -> None:
    """Forget events older than ``before`` (the breaker never looks that far back)."""
    conn.execute(sa.delete(seller_events_table).where(_s.at < before))
