"""Why a record failed, waits or was cancelled: the typed form of its stored ``error_json``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..providers.errors import OmniError

__all__ = ["RecordError"]

# The optional fields, in the order they are stored after ``error`` and ``message``.
_OPTIONAL = (
    "provider",
    "task_id",
    "request_id",
    "status_code",
    "code",
    "remote_status",
    "field",
    "resumable",
    "replay",
    "scope",
    "value",
    "limit_usd",
    "spent_usd",
    "at",
)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class RecordError(Mapping[str, Any]):
    """One stored error, frozen.

    ``kind`` names it (an error class of the provider layer such as ``TaskFailedError``, or a
    registry word: ``BudgetExceeded``, ``ParentFailed``, ``SubmitOutcomeUnknown``, ...). It is
    stored as the JSON object it always was: ``kind`` under ``"error"``, then ``message``, then
    each optional field that is set, then ``extra`` (keys of an older row this class does not
    name). It also reads as that object (``error["message"]``, ``dict(error)``, equality with
    it), so a row written before this class and one written after look the same.
    """

    kind: str
    message: str
    provider: str | None = None
    task_id: str | None = None
    request_id: str | None = None
    status_code: int | None = None
    code: str | None = None
    remote_status: str | None = None
    field: str | None = None  # InvalidRequestError: the request field at fault
    resumable: bool | None = None  # a poll deadline: retry resumes the same task
    replay: bool | None = None  # an unknown outcome, replayed under the same idempotency key
    # BudgetExceeded: the budget (scope=value, its limit, what was spent) and when it was judged.
    scope: str | None = None
    value: str | None = None
    limit_usd: float | None = None
    spent_usd: float | None = None
    at: float | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: OmniError, **fields: Any) -> RecordError:
        """The record of a raised error (its class name, message and context), plus ``fields``."""
        return dataclasses.replace(cls.from_dict(exc.to_dict()), **fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordError:
        """Parse a stored JSON object (also one written as a plain dict by an older version)."""
        known = {name: data[name] for name in _OPTIONAL if data.get(name) is not None}
        extra = {k: v for k, v in data.items() if k not in _OPTIONAL and k not in _OWN_KEYS}
        return cls(
            str(data.get("error") or ""), str(data.get("message") or ""), **known, extra=extra
        )

    @classmethod
    def from_json(cls, text: str | None) -> RecordError | None:
        """Parse an ``error_json`` column (None stays None)."""
        return cls.from_dict(json.loads(text)) if text else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object it is stored as (a fresh dict each call)."""
        return dict(self._stored)

    @cached_property
    def _stored(self) -> dict[str, Any]:
        return {"error": self.kind, "message": self.message, **self._set(), **self.extra}

    def _set(self) -> dict[str, Any]:
        """The optional fields that are not None."""
        values = {name: getattr(self, name) for name in _OPTIONAL}
        return {name: value for name, value in values.items() if value is not None}

    def __getitem__(self, key: str) -> Any:
        return self._stored[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)

    def __repr__(self) -> str:
        shown: dict[str, Any] = {"kind": self.kind, "message": self.message}
        shown |= {
            name: getattr(self, name) for name in _OPTIONAL if getattr(self, name) is not None
        }
        if self.extra:
            shown["extra"] = self.extra
        return f"RecordError({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


_OWN_KEYS = frozenset({"error", "message"})
