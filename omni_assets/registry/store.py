"""How the task registry is stored: tables, engine, row mapping, compare-and-set, audit log.

Internal to :mod:`omni_assets.registry`, which says what each operation means. SQLAlchemy Core
only, so the same statements run on SQLite and PostgreSQL; what differs (SQLite's locking and
journal, Postgres' advisory lock) is set up here.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.pool import StaticPool

from ..providers.base import TaskRef
from .model import (
    TIMESTAMPS,
    TRANSITIONS,
    HistoryEvent,
    PollUpdate,
    Record,
    RecordError,
    RecordState,
    RegisterItem,
    StateConflictError,
    SupersededEntry,
)

__all__ = [
    "FRESH",
    "RegistryStore",
    "error_json",
    "history_from_row",
    "history_table",
    "identity",
    "make_engine",
    "metadata",
    "new_row",
    "poll_params",
    "poll_statement",
    "record_from_row",
    "records_table",
    "superseded_from_row",
    "superseded_row",
    "superseded_table",
    "task_ref",
    "to_json",
]

_LOCK_ID = zlib.crc32(b"omni_assets.registry")  # Postgres advisory lock: one register() at a time

metadata = sa.MetaData()
_KEY = sa.String(255)
records_table = sa.Table(
    "omni_records",
    metadata,
    sa.Column("key", _KEY, primary_key=True),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("parent_key", _KEY),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("task_id", sa.String(255)),
    sa.Column("task_ref_json", sa.Text),
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("remote_status", sa.String(255)),
    sa.Column("progress", sa.Integer),
    sa.Column("video_url", sa.Text),
    sa.Column("url_expires_at", sa.Float),
    sa.Column("error_json", sa.Text),
    sa.Column("sources_json", sa.Text),
    sa.Column("cost", sa.Float),
    sa.Column("credits", sa.Float),
    *(sa.Column(name, sa.Float) for name in TIMESTAMPS),  # epoch seconds (double precision)
    sa.Column("video_uri", sa.Text),
    sa.Column("sha256", sa.String(64)),
    sa.Column("size", sa.BigInteger),
    sa.Column("run_id", sa.String(255)),
    # The poll query reads in-flight rows only: finished rows never enter its index range.
    sa.Index("ix_omni_records_state_next_poll", "state", "next_poll_at"),
    sa.Index("ix_omni_records_state_provider", "state", "provider"),
)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only
history_table = sa.Table(
    "omni_history",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("key", _KEY, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("detail_json", sa.Text, nullable=False),
    sa.Index("ix_omni_history_key", "key", "id"),
)
superseded_table = sa.Table(
    "omni_superseded",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("key", _KEY, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("new_fingerprint", sa.String(128), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("task_ref_json", sa.Text),
    sa.Column("video_uri", sa.Text),
    sa.Column("sha256", sa.String(64)),
    sa.Index("ix_omni_superseded_key", "key", "id"),
)

# What a request is, as registered; every other column is about a submission and its outcome,
# and is cleared (FRESH) when the key starts over.
_IDENTITY = ("key", "fingerprint", "provider", "model", "request_json", "parent_key")
_KEPT = (*_IDENTITY, "state", "attempt", "registered_at")
FRESH: dict[str, Any] = dict.fromkeys(c.name for c in records_table.columns if c.name not in _KEPT)
_c = records_table.c
_PLAIN = [
    c.name
    for c in records_table.columns
    if c.name not in ("state", "task_ref_json", "error_json", "sources_json")
]


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and explicit BEGIN handling."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # values_plus_batch: an UPDATE executemany goes in pages, not one round trip per row.
        return sa.create_engine(parsed, executemany_mode="values_plus_batch", pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:")
    if in_memory:
        engine = sa.create_engine(parsed, poolclass=StaticPool)
    else:
        if not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling takes the write lock late (and then fails instead
        # of waiting); we issue BEGIN ourselves, IMMEDIATE for writes.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("omni_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def new_row(item: RegisterItem, now: float) -> dict[str, Any]:
    """The row of a newly registered request."""
    return {**FRESH, **identity(item), "state": "pending", "attempt": 1, "registered_at": now}


def identity(item: RegisterItem) -> dict[str, Any]:
    """The columns that say what a request is."""
    return {name: getattr(item, name) for name in _IDENTITY}


def superseded_row(old: Row[Any], new_fingerprint: str, now: float) -> dict[str, Any]:
    """The ``omni_superseded`` row keeping what ``old`` held before a changed request."""
    kept = ("key", "fingerprint", "attempt", "state", "request_json", "task_ref_json")
    return {
        **{name: old._mapping[name] for name in kept},
        "video_uri": old.video_uri,
        "sha256": old.sha256,
        "new_fingerprint": new_fingerprint,
        "at": now,
    }


def superseded_from_row(row: Row[Any]) -> SupersededEntry:
    """Parse one ``omni_superseded`` row."""
    m = row._mapping
    plain = ("key", "at", "fingerprint", "new_fingerprint", "attempt", "video_uri", "sha256")
    return SupersededEntry(
        **{name: m[name] for name in plain},
        state=RecordState(m["state"]),
        request=json.loads(m["request_json"]),
        task_ref=task_ref(m["task_ref_json"]),
    )


def history_from_row(row: Row[Any]) -> HistoryEvent:
    """Parse one ``omni_history`` row."""
    return HistoryEvent(row.key, row.at, row.event, json.loads(row.detail_json))


def poll_statement() -> sa.Update:
    """One UPDATE for every task still running after a poll, for executemany."""
    c = records_table.c
    return (
        sa.update(records_table)
        .where(c.key == sa.bindparam("p_key"), c.state == RecordState.IN_FLIGHT.value)
        .values(
            remote_status=sa.func.coalesce(sa.bindparam("p_remote_status"), c.remote_status),
            progress=sa.func.coalesce(sa.bindparam("p_progress"), c.progress),
            next_poll_at=sa.bindparam("p_next_poll_at"),
            last_polled_at=sa.bindparam("p_now"),
            error_json=sa.bindparam("p_error_json"),
        )
    )


def poll_params(update: PollUpdate, now: float) -> dict[str, Any]:
    """The parameters of ``poll_statement`` for one update."""
    return {
        "p_key": update.key,
        "p_remote_status": update.remote_status,
        "p_progress": update.progress,
        "p_next_poll_at": now if update.next_poll_at is None else update.next_poll_at,
        "p_now": now,
        "p_error_json": error_json(update.error),
    }


def to_json(value: Any) -> str | None:
    """Canonical JSON text, or None for None."""
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def error_json(error: Mapping[str, Any] | None) -> str | None:
    """A record's error as stored: its JSON object (``RecordError`` reads as one)."""
    return None if error is None else to_json(dict(error))


def task_ref(text: str | None) -> TaskRef | None:
    """Parse a stored TaskRef."""
    return TaskRef.from_json(text) if text else None


def record_from_row(row: Row[Any]) -> Record:
    """Parse one ``omni_records`` row."""
    m = row._mapping
    return Record(
        **{name: m[name] for name in _PLAIN},
        state=RecordState(m["state"]),
        request=json.loads(m["request_json"]),
        task_ref=task_ref(m["task_ref_json"]),
        error=RecordError.from_json(m["error_json"]),
        sources=json.loads(m["sources_json"]) if m["sources_json"] else None,
    )


class RegistryStore:
    """Connections, transactions, the compare-and-set primitive and the audit log.

    The base of :class:`omni_assets.registry.Registry`, which says what each operation means.
    """

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._clock = clock
        self._engine = make_engine(url)
        self._sqlite = self._engine.dialect.name == "sqlite"
        # Same pool; its transactions take SQLite's write lock up front (BEGIN IMMEDIATE), so a
        # read-then-write never fails half way with "database is locked".
        self._writer = self._engine.execution_options(omni_write=True)
        with self._write(serialize=True) as conn:
            metadata.create_all(conn, checkfirst=True)

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    # -- internals ------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self, *, serialize: bool = False) -> Iterator[Connection]:
        with self._writer.begin() as conn:
            if serialize and not self._sqlite:  # SQLite's BEGIN IMMEDIATE already serializes
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_ID)))
            yield conn

    def _select(self, query: sa.Select[Any]) -> list[Record]:
        with self._read() as conn:
            return [record_from_row(row) for row in conn.execute(query)]

    def _move(
        self,
        key: str,
        event: str,
        values: dict[str, Any],
        detail: Mapping[str, Any] | None = None,
        guard: dict[str, Any] | None = None,
    ) -> bool:
        """Apply transition ``event`` to ``key`` in its own transaction, from whichever state."""
        with self._write() as conn:
            return any(
                self._cas(conn, key, source, event, values, detail, None, guard)
                for source in TRANSITIONS[event][0]
            )

    def _cas(
        self,
        conn: Connection,
        key: str,
        source: RecordState,
        event: str,
        values: dict[str, Any],
        detail: Mapping[str, Any] | None,
        now: float | None = None,
        guard: dict[str, Any] | None = None,
    ) -> bool:
        """UPDATE ... WHERE key AND state = source (AND guard); history only if a row changed."""
        sources, target = TRANSITIONS[event]
        assert source in sources, f"{event} does not start from {source}"
        where = [_c.key == key, _c.state == source.value]
        where += [_c[name] == value for name, value in (guard or {}).items()]
        stmt = sa.update(records_table).where(*where).values({**values, "state": target.value})
        if conn.execute(stmt).rowcount != 1:
            return False
        self._log(
            conn, [(key, event, {"from": source.value, "to": target.value, **(detail or {})})], now
        )
        return True

    def _log(
        self, conn: Connection, events: list[tuple[str, str, Any]], now: float | None = None
    ) -> None:
        at = self._clock() if now is None else now
        rows = [
            {"key": key, "at": at, "event": event, "detail_json": to_json(detail) or "null"}
            for key, event, detail in events
        ]
        conn.execute(sa.insert(history_table), rows)

    def _conflict(self, key: str, event: str, detail: Mapping[str, Any]) -> None:
        found = self._select(sa.select(records_table).where(_c.key == key))
        actual = found[0].state.value if found else "not registered"
        expected = " or ".join(s.value for s in TRANSITIONS[event][0])
        with self._write() as conn:  # the refused call stays auditable (e.g. a late task id)
            self._log(conn, [(key, "conflict", {"refused": event, "state": actual, **detail})])
        raise StateConflictError(
            f"{key!r}: cannot apply {event!r} in state {actual} (needs {expected})", key=key
        )
