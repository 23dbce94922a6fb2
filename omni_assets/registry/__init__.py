"""The durable task registry: request -> submitted task -> outcome.

It is the single source of truth for "did we pay for this already". One row per partition key, in
SQLite (WAL; safe for a sensor process and several run processes at once) or PostgreSQL, through
the same SQLAlchemy Core code. Every transition is a compare-and-set (``UPDATE ... WHERE key=? AND
state=?``, rowcount checked), so two processes can never both submit or both materialize one key,
and every transition appends an event to the key's ``history``::

    pending ──begin_submit──► submitting ──record_submitted──► in_flight ──poll: succeeded──► ready
     ▲  ▲                      │  │    (intent before the POST,     │  │                       │
     │  └──── not_created ─────┘  │     task id after it)           │  └─► failed | cancelled  claim
     │                            ├── failed ───────────► failed    │      (remote, or timed out) ▼
     │                            └── unknown, or stale ► unknown   │            materializing ◄┘
     │                                                              │     release ─► ready │
     └── retry(): failed | unknown | cancelled, attempt + 1         │  record_materialized ▼
                                                                    └─ cancel()     materialized

``unknown`` means a paid POST may have created a task we never heard of: it is never resubmitted
automatically. ``retry`` is the only way a failed generation goes back to ``pending``; the other is
a content change: registering a key with a new fingerprint resets it (attempt + 1) and records the
old fingerprint, task and video in ``superseded``, so an old video is never silently reused. A
failure that only means "we stopped waiting" (a poll deadline) keeps its task: ``retry`` then
resumes polling it instead of paying again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from ..providers.base import TaskRef, TaskStatus
from ..state import resolve_state
from . import costs as ledger
from . import store as db
from .model import (
    TRANSITIONS,
    BudgetExceededError,
    BudgetLimit,
    Charge,
    CostRow,
    HistoryEvent,
    PollUpdate,
    Record,
    RecordError,
    RecordState,
    RegisterItem,
    RegisterResult,
    StateConflictError,
    SupersededEntry,
)
from .spend import SpendAndRoutes

__all__ = [
    "TRANSITIONS",
    "BudgetExceededError",
    "BudgetLimit",
    "Charge",
    "CostRow",
    "HistoryEvent",
    "PollUpdate",
    "Record",
    "RecordError",
    "RecordState",
    "RegisterItem",
    "RegisterResult",
    "Registry",
    "StateConflictError",
    "SupersededEntry",
    "default_registry_url",
]

S = RecordState
_CHUNK = 500  # keys per IN (...) list: far below SQLite's bound-parameter limit
# A claimed video's failed materializations, counted apart: the provider's file, our storage.
_FAILURE_COUNTERS = ("download_failures", "storage_failures")
_c = db.records_table.c


def default_registry_url() -> str:
    """``$OMNI_REGISTRY_URL``, else SQLite in the Dagster home (:mod:`omni_assets.state`)."""
    state = resolve_state()
    if not state.registry_from_env:
        state.home.mkdir(parents=True, exist_ok=True)
    return state.registry_url


class Registry(SpendAndRoutes):
    """Durable record of every request, its submission and its outcome (see the module doc).

    ``url`` is a SQLAlchemy URL: ``sqlite:///path/to/file.db`` or ``postgresql+psycopg2://...``.
    Tables are created on first use. ``clock`` (epoch seconds) is a parameter for tests. A
    transition asked of a record in the wrong state returns False where losing a race is normal
    (``begin_submit``, ``claim``...) and raises StateConflictError where it means a bug.
    """

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({self._engine.url.render_as_string(hide_password=True)!r})"

    # -- registration ---------------------------------------------------------------------------

    def register(self, items: Iterable[RegisterItem]) -> RegisterResult:
        """Add new keys and reset keys whose content (fingerprint) changed, in one transaction.

        A changed key that a process is submitting or materializing right now is left alone and
        reported in ``deferred``: register it again later.
        """
        batch: dict[str, RegisterItem] = {}
        for item in items:
            if batch.setdefault(item.key, item) != item:
                raise ValueError(f"key {item.key!r} appears twice with different content")
        result, now, keys = RegisterResult(), self._clock(), list(batch)
        with self._write(serialize=True) as conn:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                rows = conn.execute(sa.select(db.records_table).where(_c.key.in_(chunk)))
                existing = {row.key: row for row in rows}
                fresh = [batch[key] for key in chunk if key not in existing]
                if fresh:
                    conn.execute(sa.insert(db.records_table), [db.new_row(i, now) for i in fresh])
                    events = [(i.key, "registered", {"fingerprint": i.fingerprint}) for i in fresh]
                    self._log(conn, events, now)
                    result.new.extend(i.key for i in fresh)
                    estimates = [(i.key, 1, i.estimate) for i in fresh if i.estimate is not None]
                    ledger.record_estimates(conn, estimates, now)
                    routed = [(i.key, "routed", dict(i.route)) for i in fresh if i.route]
                    if routed:
                        self._log(conn, routed, now)
                for key, row in existing.items():
                    if row.fingerprint == batch[key].fingerprint:
                        result.unchanged.append(key)
                    elif self._supersede(conn, row, batch[key], now):
                        result.changed.append(key)
                        estimate, route = batch[key].estimate, batch[key].route
                        if estimate is not None:
                            ledger.record_estimate(conn, key, row.attempt + 1, estimate, now)
                        if route:
                            self._log(conn, [(key, "routed", dict(route))], now)
                    else:
                        result.deferred.append(key)
        return result

    def _supersede(self, conn: Connection, old: Row[Any], item: RegisterItem, now: float) -> bool:
        if S(old.state) not in TRANSITIONS["superseded"][0]:
            return False
        values = {**db.FRESH, **db.identity(item), "attempt": old.attempt + 1}
        detail = {
            "old_fingerprint": old.fingerprint,
            "fingerprint": item.fingerprint,
            "old_task_id": old.task_id,
            "old_video_uri": old.video_uri,
        }
        guard = {"fingerprint": old.fingerprint, "attempt": old.attempt}
        if not self._cas(conn, old.key, S(old.state), "superseded", values, detail, now, guard):
            return False
        conn.execute(sa.insert(db.superseded_table), db.superseded_row(old, item.fingerprint, now))
        return True

    # -- reads ----------------------------------------------------------------------------------

    def get(self, key: str) -> Record | None:
        """The record for ``key``, or None."""
        found = self._select(sa.select(db.records_table).where(_c.key == key))
        return found[0] if found else None

    def get_many(self, keys: Iterable[str]) -> list[Record]:
        """The records that exist among ``keys``, in the order given (missing ones left out)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Record] = {}
        for start in range(0, len(wanted), _CHUNK):
            query = sa.select(db.records_table).where(_c.key.in_(wanted[start : start + _CHUNK]))
            found.update((r.key, r) for r in self._select(query))
        return [found[key] for key in wanted if key in found]

    def records(
        self, states: Iterable[RecordState] | None = None, provider: str | None = None
    ) -> list[Record]:
        """Every record (optionally only in ``states``, for ``provider``), oldest first."""
        query = sa.select(db.records_table).order_by(_c.registered_at, _c.key)
        if states is not None:
            query = query.where(_c.state.in_([S(s).value for s in states]))
        if provider is not None:
            query = query.where(_c.provider == provider)
        return self._select(query)

    def keys(self, states: Iterable[RecordState]) -> list[str]:
        """The keys of the records in ``states``, oldest first (keys only: a light read)."""
        query = sa.select(_c.key).where(_c.state.in_([S(s).value for s in states]))
        with self._read() as conn:
            return list(conn.execute(query.order_by(_c.registered_at, _c.key)).scalars())

    def counts(self) -> dict[RecordState, int]:
        """How many records are in each state (every state present, zeros included)."""
        out = dict.fromkeys(S, 0)
        with self._read() as conn:
            for state, n in conn.execute(sa.select(_c.state, sa.func.count()).group_by(_c.state)):
                out[S(state)] = n
        return out

    def in_flight_count(self, provider: str) -> int:
        """Tasks that count against ``provider``'s in-flight budget: submitting or in flight."""
        busy = [S.SUBMITTING.value, S.IN_FLIGHT.value]
        query = sa.select(sa.func.count()).where(_c.state.in_(busy), _c.provider == provider)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def pending(self, provider: str | None = None, limit: int | None = None) -> list[Record]:
        """Records waiting to be submitted, oldest registration first."""
        query = sa.select(db.records_table).where(_c.state == S.PENDING.value)
        if provider is not None:
            query = query.where(_c.provider == provider)
        return self._select(query.order_by(_c.registered_at, _c.key).limit(limit))

    def due_for_poll(self, now: float | None = None, limit: int | None = None) -> list[Record]:
        """In-flight records whose next poll time has come, most overdue first.

        An index range scan on (state, next_poll_at): its cost grows with the tasks in flight,
        never with the ones already finished.
        """
        now = self._clock() if now is None else now
        due = sa.select(db.records_table).where(
            _c.state == S.IN_FLIGHT.value, _c.next_poll_at <= now
        )
        return self._select(due.order_by(_c.next_poll_at).limit(limit))

    def ready(self, limit: int | None = None, now: float | None = None) -> list[Record]:
        """Records whose remote task succeeded and that nobody is materializing yet, except
        those backing off after a failed download (``next_poll_at`` still to come)."""
        now = self._clock() if now is None else now
        due = sa.or_(_c.next_poll_at.is_(None), _c.next_poll_at <= now)
        query = sa.select(db.records_table).where(_c.state == S.READY.value, due)
        return self._select(query.order_by(_c.remote_done_at, _c.key).limit(limit))

    def stuck_submitting(self, older_than_s: float) -> list[Record]:
        """Records left in ``submitting`` longer than ``older_than_s`` (a crashed submitter)."""
        cutoff = self._clock() - older_than_s
        where = (_c.state == S.SUBMITTING.value, _c.submit_started_at < cutoff)
        return self._select(
            sa.select(db.records_table).where(*where).order_by(_c.submit_started_at)
        )

    def history(self, key: str) -> list[HistoryEvent]:
        """Every event recorded for ``key``, oldest first."""
        h = db.history_table.c
        with self._read() as conn:
            rows = conn.execute(sa.select(db.history_table).where(h.key == key).order_by(h.id))
            return [db.history_from_row(row) for row in rows]

    def claims(self, key: str) -> int:
        """How many times ``key`` was claimed for materialization (its ``claimed`` events)."""
        h = db.history_table.c
        query = sa.select(sa.func.count()).where(h.key == key, h.event == "claimed")
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def superseded(self, key: str) -> list[SupersededEntry]:
        """What ``key`` held (fingerprint, task, video) before changed requests replaced it."""
        t = db.superseded_table.c
        with self._read() as conn:
            rows = conn.execute(sa.select(db.superseded_table).where(t.key == key).order_by(t.id))
            return [db.superseded_from_row(row) for row in rows]

    # -- submission -----------------------------------------------------------------------------

    def begin_submit(
        self,
        key: str,
        idempotency_key: str,
        *,
        charge: Charge | None = None,
        limits: Sequence[BudgetLimit] = (),
    ) -> bool:
        """pending -> submitting: write the intent BEFORE the paid POST. False if not pending.

        With ``charge``, its estimate is reserved in the budget ledger in the SAME transaction
        as the intent, after checking every one of ``limits`` (serialized across processes), so
        concurrent submitters can never book past a limit together. Over a limit, the request
        stays pending with the reason as its error and BudgetExceededError is raised.
        """
        now = self._clock()
        values = {"idempotency_key": idempotency_key, "submit_started_at": now}
        detail: dict[str, Any] = {"idempotency_key": idempotency_key}
        if charge is not None:
            detail["reserved_usd"] = charge.usd
        over: BudgetExceededError | None = None
        with self._write(serialize=bool(limits)) as conn:
            if charge is not None and limits:
                over = ledger.check_limits(conn, key, charge, limits, now)
            if over is not None:
                waiting = sa.update(db.records_table).where(
                    _c.key == key, _c.state == S.PENDING.value
                )
                conn.execute(waiting.values(error_json=db.error_json(over.record_error())))
                moved = False
            else:
                moved = self._cas(conn, key, S.PENDING, "submit_started", values, detail, now)
                attempt = ledger.current_attempt(conn, key) if moved else None
                if charge is not None and attempt is not None:
                    ledger.book_reservation(conn, key, attempt, charge, now)
        if over is not None:
            raise over
        return moved

    def record_sources(
        self, key: str, images: Sequence[dict[str, Any]], video: dict[str, Any] | None
    ) -> None:
        """Remember how the request's inputs were sent (URLs, hashes), for the sidecar."""
        sources = db.to_json({"images": list(images), "video": video})
        with self._write() as conn:
            conn.execute(
                sa.update(db.records_table).where(_c.key == key).values(sources_json=sources)
            )

    def record_submitted(self, key: str, ref: TaskRef) -> None:
        """submitting -> in_flight: the task id, written right AFTER the POST returned.

        Also accepted from ``unknown`` (a submitter declared stale that comes back with its task
        id resolves the doubt). Raises StateConflictError otherwise, after logging the task.
        """
        now = self._clock()
        values = {
            "task_id": ref.task_id,
            "task_ref_json": ref.to_json(),
            "model": ref.model,
            "submitted_at": ref.submitted_at,
            "polling_since": now,
            "next_poll_at": now,
            "error_json": None,
        }
        guard = {"idempotency_key": ref.idempotency_key} if ref.idempotency_key else {}
        if not self._move(key, "submitted", values, {"task_id": ref.task_id}, guard):
            self._conflict(key, "submitted", {"task_ref": ref.to_json()})

    def record_submit_error(
        self, key: str, error: RecordError, outcome: Literal["not_created", "failed", "unknown"]
    ) -> None:
        """submitting -> pending (nothing was created), failed, or unknown (maybe created)."""
        values: dict[str, Any] = {"error_json": db.error_json(error)}
        if outcome == "not_created":
            values |= {"idempotency_key": None, "submit_started_at": None}
        event, now = f"submit_{outcome}", self._clock()
        with self._write() as conn:
            moved = any(
                self._cas(conn, key, source, event, values, error, now)
                for source in TRANSITIONS[event][0]
            )
            if moved and outcome != "unknown":  # nothing was created: nothing is owed
                ledger.release(conn, key, now)
        if not moved:
            self._conflict(key, event, error)

    def mark_unknown_stale_submits(self, older_than_s: float) -> list[str]:
        """Records stuck in ``submitting`` (a crashed submitter) -> unknown; returns their keys.

        Whether a replay with the same idempotency key is safe is for the caller to decide (see
        ``stuck_submitting``); the registry never resubmits anything on its own.
        """
        error = RecordError(
            "SubmitOutcomeUnknown",
            "the submitting process recorded no "
            f"task id within {older_than_s:.0f} s (crashed?); the provider may have created "
            "the task: check there, then retry or cancel",
        )
        values = {"error_json": db.error_json(error)}
        return [
            r.key
            for r in self.stuck_submitting(older_than_s)
            if self._move(r.key, "submit_stale", values, error, {"attempt": r.attempt})
        ]

    # -- polling --------------------------------------------------------------------------------

    def record_polls(self, updates: Sequence[PollUpdate]) -> dict[str, RecordState]:
        """Record one polling round in ONE transaction; returns the keys that left in_flight.

        Tasks still running are one executemany and no history (only transitions are events).
        Rows no longer in flight (cancelled meanwhile) are left alone.
        """
        now, moved = self._clock(), {}
        running = [db.poll_params(u, now) for u in updates if u.state is S.IN_FLIGHT]
        with self._write() as conn:
            if running:
                conn.execute(db.poll_statement(), running)
            for u in (u for u in updates if u.state is not S.IN_FLIGHT):
                event = u.event or _REMOTE_EVENTS[u.state]
                values = {name: getattr(u, name) for name in _POLL_FIELDS}
                values |= {
                    "error_json": db.error_json(u.error),
                    "last_polled_at": now,
                    "next_poll_at": None,
                }
                error = u.error.to_dict() if u.error else None
                detail = {"remote_status": u.remote_status, "error": error}
                if self._cas(conn, u.key, S.IN_FLIGHT, event, values, detail, now):
                    moved[u.key] = u.state
                    ledger.settle(conn, u.key, u.cost, u.credits, now)
        return moved

    def record_status(
        self, key: str, status: TaskStatus, *, next_poll_at: float | None = None
    ) -> RecordState | None:
        """Record one status reading of an in-flight task (the blocking path); its new state.

        None when the record was not in flight (nothing recorded).
        """
        update = PollUpdate.from_status(key, status, next_poll_at=next_poll_at, now=self._clock())
        moved = self.record_polls([update])
        record = self.get(key)
        return moved.get(key) or (record.state if record else None)

    def update_url(self, key: str, url: str, expires_at: float | None) -> bool:
        """A fresh download URL for a ready or materializing record; False in other states."""
        busy = [S.READY.value, S.MATERIALIZING.value]
        with self._write() as conn:
            stmt = sa.update(db.records_table).where(_c.key == key, _c.state.in_(busy))
            done = conn.execute(stmt.values(video_url=url, url_expires_at=expires_at)).rowcount
            if done:
                self._log(conn, [(key, "url_refreshed", {"expires_at": expires_at})])
        return bool(done)

    def adopt_stored(
        self,
        key: str,
        ref: TaskRef,
        *,
        fingerprint: str,
        video_url: str | None = None,
        url_expires_at: float | None = None,
        cost: float | None = None,
        credits: float | None = None,
        remote_done_at: float | None = None,
        sources: dict[str, Any] | None = None,
        found: str = "",
    ) -> bool:
        """pending -> ready with the task of a video already in storage for this content.

        The second line of defence against paying twice: a lost or different registry knows
        nothing of a video that its sidecar in storage describes. Nothing is reserved in the
        budget ledger (nothing is paid); ``found`` (the sidecar's URI) goes into the history.
        False when the record is not pending with ``fingerprint`` any more.
        """
        values: dict[str, Any] = {
            "provider": ref.provider,
            "model": ref.model,
            "task_id": ref.task_id,
            "task_ref_json": ref.to_json(),
            "submitted_at": ref.submitted_at,
            "video_url": video_url,
            "url_expires_at": url_expires_at,
            "cost": cost,
            "credits": credits,
            "remote_done_at": remote_done_at or self._clock(),
            "remote_status": "reused from storage",
            "error_json": None,
            "next_poll_at": None,
        }
        if sources is not None:
            values["sources_json"] = db.to_json(sources)
        detail = {"task_id": ref.task_id, "provider": ref.provider, "sidecar": found}
        return self._move(key, "adopted", values, detail, {"fingerprint": fingerprint})

    # -- materialization ------------------------------------------------------------------------

    def claim(self, keys: Iterable[str], run_id: str) -> list[str]:
        """ready -> materializing for each key; returns the keys THIS caller got."""
        now = self._clock()
        values, detail = {"run_id": run_id, "claimed_at": now}, {"run_id": run_id}
        with self._write() as conn:
            return [
                key
                for key in dict.fromkeys(keys)
                if self._cas(conn, key, S.READY, "claimed", values, detail, now)
            ]

    def release(self, key: str, error: dict[str, Any] | None = None) -> bool:
        """materializing -> ready, after a recoverable download failure (``error`` says why)."""
        return self._move(key, "released", {"run_id": None, "claimed_at": None}, error)

    def download_failed(
        self,
        key: str,
        error: dict[str, Any],
        *,
        max_attempts: int,
        backoff_s: float,
        max_backoff_s: float = float("inf"),
        counter: str = "download_failures",
        what: str = "download attempts",
    ) -> RecordState | None:
        """A download attempt of a claimed record failed: counted (``error[counter]``).

        ``counter`` is ``download_failures`` (the provider's file) or ``storage_failures`` (our
        own storage); each keeps its own count. Before the last of ``max_attempts``:
        materializing -> ready, offered again on the next tick after the first failure, then
        only after ``backoff_s`` (doubling, at most ``max_backoff_s``) has passed. The last one:
        -> failed, with the reason and the task id; the task is paid and its video may still be
        fetched (:meth:`retry_download`). Returns the new state (None: the record was not
        claimed).
        """
        record = self.get(key)
        if record is None or record.state is not S.MATERIALIZING:
            return None
        now = self._clock()
        before = dict(record.error or {})
        failures = int(before.get(counter) or 0) + 1
        counts = {c: before[c] for c in _FAILURE_COUNTERS if c != counter and before.get(c)}
        error = {**error, **counts, counter: failures, "task_id": record.task_id, "at": now}
        values: dict[str, Any] = {"run_id": None, "claimed_at": None}
        if failures >= max_attempts:
            error["message"] = (
                f"{error.get('message')} (gave up after {failures} {what}; task "
                f"{record.task_id} at {record.provider} is paid for: `omni-assets download "
                f"{key}` fetches its video while the provider's URL is valid)"
            )
            error["downloadable"] = True
            values["error_json"] = db.to_json(error)
            moved = self._move(key, "download_failed", values, error, {"attempt": record.attempt})
            return S.FAILED if moved else None
        # The first failure is tried again on the next tick (a drop that resuming could not
        # ride out is usually gone by then); later ones back off: backoff_s, doubling.
        delay = min(backoff_s * 2 ** (failures - 2), max_backoff_s) if failures > 1 else 0.0
        error["retry_at"] = now + delay
        values |= {"error_json": db.to_json(error), "next_poll_at": error["retry_at"]}
        moved = self._move(key, "released", values, error, {"attempt": record.attempt})
        return S.READY if moved else None

    def retry_download(self, key: str) -> Record:
        """A request whose downloads all failed -> ready again, now (its task is not paid again).

        Only for a failure that kept its task and URL (``error["downloadable"]``).
        """
        record = self.get(key)
        if record is None:
            raise ValueError(f"cannot download {key!r}: no such request is registered")
        downloadable = bool(dict(record.error or {}).get("downloadable"))
        if record.state is not S.FAILED or not downloadable or not record.task_ref:
            raise ValueError(
                f"cannot download {key!r}: it is {record.state.value}; only a request whose "
                "video could not be downloaded (failed after its download attempts) can be"
            )
        values = {"next_poll_at": None}
        guard = {"attempt": record.attempt}
        if not self._move(key, "download_retried", values, {"by": "user"}, guard):
            raise ValueError(f"cannot download {key!r}: it changed state meanwhile; look again")
        return self.get(key)  # type: ignore[return-value]

    def release_stale_claims(self, older_than_s: float) -> list[str]:
        """Claims older than ``older_than_s`` (a crashed run) -> ready; returns their keys."""
        cutoff = self._clock() - older_than_s
        where = (_c.state == S.MATERIALIZING.value, _c.claimed_at < cutoff)
        with self._read() as conn:
            stale = list(conn.execute(sa.select(_c.key, _c.run_id).where(*where)))
        values = {"run_id": None, "claimed_at": None}
        return [
            key
            for key, run_id in stale
            if self._move(key, "claim_expired", values, {"run_id": run_id}, {"run_id": run_id})
        ]

    def record_materialized(self, key: str, uri: str, sha256: str, size: int) -> None:
        """materializing -> materialized: the video is committed to storage."""
        detail = {"video_uri": uri, "sha256": sha256, "size": size}
        values = {**detail, "error_json": None, "materialized_at": self._clock()}
        if not self._move(key, "materialized", values, detail):
            self._conflict(key, "materialized", detail)

    # -- user actions ---------------------------------------------------------------------------

    def retry(self, key: str, reason: dict[str, Any] | None = None) -> Record:
        """Try a failed, unknown or cancelled request again: the ONLY way one is resubmitted.

        -> pending with attempt + 1 (a new idempotency key, a new paid task). A failure that was
        only a poll deadline (``error.resumable``) keeps its task and goes back to in_flight.
        ``reason`` goes into the history event (who asked, and why).
        """
        record = self.get(key)
        if record is None:
            raise ValueError(f"cannot retry {key!r}: no such request is registered")
        if not record.state.retryable:
            raise ValueError(
                f"cannot retry {key!r}: it is {record.state.value}; only failed, unknown or "
                "cancelled requests can be retried (change the request to make a new video)"
            )
        guard = {"attempt": record.attempt}
        if record.task_ref and record.state is S.FAILED and record.error and record.error.resumable:
            now = self._clock()
            values = {"polling_since": now, "next_poll_at": now, "error_json": None}
            moved = self._move(key, "resumed", values, {"task_id": record.task_id}, guard)
        else:
            attempt = {"attempt": record.attempt + 1}
            detail = {**attempt, **(reason or {})}
            moved = self._move(key, "retried", {**db.FRESH, **attempt}, detail, guard)
        if not moved:
            raise ValueError(f"cannot retry {key!r}: it changed state meanwhile; look again")
        return self.get(key)  # type: ignore[return-value]

    def cancel(self, key: str, reason: RecordError | None = None) -> bool:
        """pending, in_flight, ready or unknown -> cancelled (the caller cancels the task)."""
        return self._move(
            key, "cancelled", {"error_json": db.error_json(reason), "next_poll_at": None}, reason
        )


_REMOTE_EVENTS = {
    S.READY: "remote_succeeded",
    S.FAILED: "remote_failed",
    S.CANCELLED: "remote_cancelled",
}
_POLL_FIELDS = (
    "remote_status",
    "progress",
    "video_url",
    "url_expires_at",
    "cost",
    "credits",
    "remote_done_at",
)
