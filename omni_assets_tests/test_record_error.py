"""Stored errors are a frozen record (RecordError), stored as the JSON object the dicts were."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path

import pytest

from omni_assets.providers.errors import InvalidRequestError, RateLimitedError
from omni_assets.registry import RecordError, RegisterItem, Registry


def _registry(tmp_path: Path) -> tuple[Registry, Path]:
    path = tmp_path / "registry.db"
    registry = Registry(f"sqlite:///{path}")
    request = json.dumps({"prompt": "a boat"})
    registry.register([RegisterItem("boat", "fp", "emulator", "omni-1", request, parent_key=None)])
    return registry, path


def _stored(path: Path, key: str) -> dict[str, object]:
    with sqlite3.connect(path) as conn:
        (text,) = conn.execute(
            "SELECT error_json FROM omni_records WHERE key = ?", (key,)
        ).fetchone()
    return json.loads(text)  # type: ignore[no-any-return]


def test_an_old_dict_row_reads_as_a_record(tmp_path: Path) -> None:
    """A row written as a plain dict (nulls included, a key this version does not name)."""
    registry, path = _registry(tmp_path)
    old = {
        "error": "RateLimitedError",
        "message": "slow down",
        "provider": "apimart",
        "task_id": None,
        "request_id": "req-1",
        "status_code": 429,
        "code": None,
        "retry_after": 30,
    }
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE omni_records SET error_json = ? WHERE key = 'boat'", (json.dumps(old),)
        )
    record = registry.get("boat")
    assert record is not None and isinstance(record.error, RecordError)
    error = record.error
    assert (error.kind, error.message, error.provider, error.status_code) == (
        "RateLimitedError",
        "slow down",
        "apimart",
        429,
    )
    assert error.task_id is None and error.extra == {"retry_after": 30}
    assert error["message"] == "slow down" and error == {
        k: v for k, v in old.items() if v is not None
    }
    registry.close()


def test_a_new_row_is_stored_as_the_same_json_object(tmp_path: Path) -> None:
    registry, path = _registry(tmp_path)
    assert registry.begin_submit("boat", "idem-1")
    exc = RateLimitedError("slow down", provider="apimart", request_id="req-1", status_code=429)
    registry.record_submit_error("boat", RecordError.from_exception(exc), "not_created")
    # the object the dict (exc.to_dict()) was stored as, its nulls left out
    assert _stored(path, "boat") == {k: v for k, v in exc.to_dict().items() if v is not None}
    assert _stored(path, "boat") == {
        "error": "RateLimitedError",
        "message": "slow down",
        "provider": "apimart",
        "request_id": "req-1",
        "status_code": 429,
    }
    record = registry.get("boat")
    assert record is not None and record.error == RecordError.from_exception(exc)
    # the history event carries the same object, as JSON
    event = registry.history("boat")[-1]
    assert event.detail["error"] == "RateLimitedError" and event.detail["status_code"] == 429
    registry.close()


def test_fields_for_each_kind_and_frozen() -> None:
    invalid = InvalidRequestError("duration", 99, "4, 6, 8", provider="toapis")
    error = RecordError.from_exception(invalid, field=invalid.field)
    assert (error.kind, error.field, error.provider) == (
        "InvalidRequestError",
        "duration",
        "toapis",
    )
    budget = RecordError("BudgetExceeded", "over", scope="day", limit_usd=8.0, at=time.time())
    assert RecordError.from_dict(budget.to_dict()) == budget
    assert "limit_usd=8.0" in repr(budget) and "task_id" not in repr(budget)
    with pytest.raises(dataclasses.FrozenInstanceError):
        error.message = "changed"  # type: ignore[misc]
    assert RecordError.from_json(None) is None
