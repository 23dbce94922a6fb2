"""The registry's reads and writes about money and sellers: cost rows, routes, seller health.

A base of :class:`omni_assets.registry.Registry` (use it through that class): the cost rows and
budget ledger (``costs.py``), where routed requests went and every failover hop (history events
``routed``/``failover``), generation times for the ``fastest`` route, and each seller's recent
submission outcomes for the circuit breaker (``health.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from . import costs as ledger
from . import health
from . import store as db
from .model import CostRow, RecordError, RecordState
from .store import RegistryStore

__all__ = ["SpendAndRoutes"]

S = RecordState
_c = db.records_table.c


class SpendAndRoutes(RegistryStore):
    """Cost rows, routes and seller health (see the module docstring)."""

    def costs(self, keys: Iterable[str] | None = None) -> list[CostRow]:
        """The cost rows (estimates, reservations, charges) of ``keys`` (default: all)."""
        query = sa.select(ledger.costs_table).order_by(
            ledger.costs_table.c.key, ledger.costs_table.c.attempt
        )
        with self._read() as conn:
            rows = [CostRow.from_row(r) for r in conn.execute(query)]
        if keys is None:
            return rows
        wanted = set(keys)
        return [r for r in rows if r.key in wanted]

    # -- routing ----------------------------------------------------------------------------------

    def reroute(self, key: str, provider: str, model: str, detail: dict[str, Any]) -> bool:
        """A pending request moves to another seller (a failover hop, in its history)."""
        with self._write() as conn:
            stmt = sa.update(db.records_table).where(_c.key == key, _c.state == S.PENDING.value)
            moved = conn.execute(stmt.values(provider=provider, model=model)).rowcount == 1
            if moved:
                self._log(conn, [(key, "failover", {**detail, "routed_to": provider})])
        return moved

    def routes(self, key: str) -> list[dict[str, Any]]:
        """Where ``key`` was routed and every failover hop since, oldest first."""
        h = db.history_table.c
        query = (
            sa.select(db.history_table)
            .where(h.key == key, h.event.in_(("routed", "failover")))
            .order_by(h.id)
        )
        with self._read() as conn:
            events = [db.history_from_row(row) for row in conn.execute(query)]
        return [{"event": e.event, "at": e.at, **e.detail} for e in events]

    def generation_samples(self, per_provider: int = 100) -> dict[str, list[float]]:
        """provider -> seconds from submission to finished, of its latest finished tasks."""
        done = [S.READY.value, S.MATERIALIZING.value, S.MATERIALIZED.value]
        query = (
            sa.select(_c.provider, _c.remote_done_at - _c.submitted_at)
            .where(_c.state.in_(done), _c.remote_done_at.is_not(None))
            .where(_c.submitted_at.is_not(None))
            .order_by(_c.remote_done_at.desc())
            .limit(per_provider * 8)
        )
        out: dict[str, list[float]] = {}
        with self._read() as conn:
            for provider, seconds in conn.execute(query):
                samples = out.setdefault(provider, [])
                if len(samples) < per_provider:
                    samples.append(max(0.0, float(seconds)))
        return out

    def record_seller(self, provider: str, outcome: str, detail: str = "") -> None:
        """What ``provider`` answered a submission: ok, error (nothing created) or refused."""
        if outcome not in health.OUTCOMES:
            raise ValueError(f"outcome {outcome!r}; allowed: {', '.join(health.OUTCOMES)}")
        now = self._clock()
        with self._write() as conn:
            conn.execute(
                sa.insert(health.seller_events_table).values(
                    provider=provider, at=now, outcome=outcome, detail=detail[:500]
                )
            )
            health.prune(conn, now - 86_400)

    def seller_events(self, provider: str, since: float) -> list[tuple[float, str, str]]:
        """(at, outcome, detail) of ``provider``'s submissions since ``since``, newest first."""
        with self._read() as conn:
            return health.recent(conn, provider, since)

    def hold_pending(self, key: str, error: RecordError) -> bool:
        """Say why a pending request is not submitted now (it stays pending)."""
        with self._write() as conn:
            stmt = sa.update(db.records_table).where(_c.key == key, _c.state == S.PENDING.value)
            return bool(conn.execute(stmt.values(error_json=db.error_json(error))).rowcount)

    def budget_freed_at(self) -> float:
        """When budget was last given back or settled (a waiting request may fit since)."""
        with self._read() as conn:
            return ledger.last_change(conn)

    def cost_of(self, key: str) -> CostRow | None:
        """The cost row of ``key``'s current attempt, if any."""
        c = ledger.costs_table.c
        with self._read() as conn:
            attempt = ledger.current_attempt(conn, key)
            if attempt is None:
                return None
            query = sa.select(ledger.costs_table).where(c.key == key, c.attempt == attempt)
            row = conn.execute(query).first()
        return CostRow.from_row(row) if row is not None else None
