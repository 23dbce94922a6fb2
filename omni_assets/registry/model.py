"""The values the task registry takes and returns (import them from ``omni_assets.registry``).

Kept apart from the storage code so each module stays readable; everything here is plain,
frozen and JSON-friendly, with no database in sight.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from ..providers.base import TaskRef, TaskState, TaskStatus
from ..providers.errors import OmniError
from ..request import VideoRequest
from .record_error import RecordError

__all__ = [
    "TIMESTAMPS",
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
    "StateConflictError",
    "SupersededEntry",
]

# Epoch seconds; NULL until the step happens. ``polling_since`` restarts when polling resumes.
TIMESTAMPS = (
    "registered_at",
    "submit_started_at",
    "submitted_at",
    "polling_since",
    "remote_done_at",
    "next_poll_at",
    "last_polled_at",
    "claimed_at",
    "materialized_at",
)


class RecordState(str, Enum):
    """Where a request stands; see the state machine in ``omni_assets.registry``."""

    PENDING = "pending"
    SUBMITTING = "submitting"
    IN_FLIGHT = "in_flight"
    READY = "ready"
    MATERIALIZING = "materializing"
    MATERIALIZED = "materialized"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"

    @property
    def retryable(self) -> bool:
        """Ended without a video: ``omni-assets retry`` accepts it (and only it)."""
        return self in _RETRYABLE

    @property
    def settled(self) -> bool:
        """Nothing more happens to it without the user: materialized, or ended without a video."""
        return self is RecordState.MATERIALIZED or self.retryable

    @property
    def outcome_known(self) -> bool:
        """Settled, and we know whether a task exists: not ``unknown`` (a POST whose outcome is
        unknown may have made a paid task, so nothing that would pay for the same content again,
        such as a refresh, goes ahead, and the record is never pruned)."""
        return self.settled and self is not RecordState.UNKNOWN


_S = RecordState
_RETRYABLE = frozenset({_S.FAILED, _S.UNKNOWN, _S.CANCELLED})

# The state machine, as data: event -> (states it may start from, state it leads to). Every
# registry write that changes a state goes through one of these, as a compare-and-set.
TRANSITIONS: dict[str, tuple[tuple[RecordState, ...], RecordState]] = {
    "submit_started": ((_S.PENDING,), _S.SUBMITTING),
    # From unknown too: a submitter declared stale that comes back with its task id.
    "submitted": ((_S.SUBMITTING, _S.UNKNOWN), _S.IN_FLIGHT),
    "submit_not_created": ((_S.SUBMITTING,), _S.PENDING),
    "submit_failed": ((_S.SUBMITTING,), _S.FAILED),
    "submit_unknown": ((_S.SUBMITTING,), _S.UNKNOWN),
    "submit_stale": ((_S.SUBMITTING,), _S.UNKNOWN),
    "remote_succeeded": ((_S.IN_FLIGHT,), _S.READY),
    # A video with this exact content is already in storage (its sidecar says so: a lost or
    # different registry): take over its task instead of paying for a new one.
    "adopted": ((_S.PENDING,), _S.READY),
    "remote_failed": ((_S.IN_FLIGHT,), _S.FAILED),
    "remote_cancelled": ((_S.IN_FLIGHT,), _S.CANCELLED),
    "timed_out": ((_S.IN_FLIGHT,), _S.FAILED),  # we stopped waiting; the task may still finish
    "lost": ((_S.IN_FLIGHT,), _S.FAILED),  # the provider no longer knows the task
    "claimed": ((_S.READY,), _S.MATERIALIZING),
    "released": ((_S.MATERIALIZING,), _S.READY),
    "claim_expired": ((_S.MATERIALIZING,), _S.READY),
    "materialized": ((_S.MATERIALIZING,), _S.MATERIALIZED),
    # The last of a bounded number of download attempts failed; the paid task stays known.
    "download_failed": ((_S.MATERIALIZING,), _S.FAILED),
    # The user asks for that video again (``omni-assets download KEY``): no new task.
    "download_retried": ((_S.FAILED,), _S.READY),
    "retried": (tuple(s for s in _S if s.retryable), _S.PENDING),
    "resumed": ((_S.FAILED,), _S.IN_FLIGHT),
    "cancelled": ((_S.PENDING, _S.IN_FLIGHT, _S.READY, _S.UNKNOWN), _S.CANCELLED),
    # A changed request (new fingerprint); never while a process is submitting/materializing it.
    "superseded": (
        (_S.PENDING, _S.IN_FLIGHT, _S.READY, _S.MATERIALIZED, _S.FAILED, _S.UNKNOWN, _S.CANCELLED),
        _S.PENDING,
    ),
}


class StateConflictError(OmniError):
    """A transition was asked of a record that is not in the state it requires."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Charge:
    """What one submission is expected to cost, and the scopes it is booked to."""

    provider: str
    model: str
    amount: float
    unit: str
    usd: float
    usd_per_unit: float = 1.0
    price_is_estimate: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    run: str | None = None


@dataclass(frozen=True)
class BudgetLimit:
    """At most ``limit_usd`` booked to ``scope``=``value`` (``label`` words it for people)."""

    scope: str
    value: str
    limit_usd: float
    label: str


class BudgetExceededError(OmniError):
    """Submitting would take a budget past its limit: the request waits (nothing was sent)."""

    def __init__(
        self, message: str, *, key: str, limit: BudgetLimit, spent_usd: float, at: float
    ) -> None:
        super().__init__(message)
        self.key = key
        self.limit = limit
        self.spent_usd = spent_usd
        self.at = at

    def record_error(self) -> RecordError:
        """What the waiting record says: the budget, its limit, what was spent, when."""
        return RecordError(
            "BudgetExceeded",
            self.message,
            scope=self.limit.scope,
            value=self.limit.value,
            limit_usd=self.limit.limit_usd,
            spent_usd=round(self.spent_usd, 6),
            at=self.at,
        )


@dataclass(frozen=True)
class CostRow:
    """One ``omni_costs`` row, parsed."""

    key: str
    attempt: int
    provider: str
    model: str
    unit: str
    usd_per_unit: float
    estimated: float
    estimated_usd: float
    price_is_estimate: bool
    actual: float | None
    actual_usd: float | None
    state: str
    day: str | None
    run: str | None
    tags: dict[str, str]
    updated_at: float

    @property
    def spent_usd(self) -> float:
        """What this row counts for: the actual cost when known, else the estimate; 0 released."""
        if self.state in ("released", "estimated"):
            return 0.0
        return self.actual_usd if self.actual_usd is not None else self.estimated_usd

    @property
    def spent(self) -> float:
        """:attr:`spent_usd` in the row's own unit."""
        if self.state in ("released", "estimated"):
            return 0.0
        return self.actual if self.actual is not None else self.estimated

    @classmethod
    def from_row(cls, row: Any) -> CostRow:
        m = dict(row._mapping)
        m["tags"] = json.loads(m.pop("tags_json") or "{}")
        m["price_is_estimate"] = bool(m["price_is_estimate"])
        return cls(**m)


@dataclass(frozen=True)
class RegisterItem:
    """One request to register under its partition key."""

    key: str
    fingerprint: str
    provider: str
    model: str
    request_json: str
    parent_key: str | None = None
    #: What the video is expected to cost there (None: the model has no price).
    estimate: Charge | None = field(default=None, compare=False)
    #: ``provider: auto``: where it was routed and why (``routed_to``, ``route_reason``...).
    route: Mapping[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def for_request(
        cls,
        request: VideoRequest,
        provider: str,
        model: str,
        estimate: Charge | None = None,
        route: Mapping[str, Any] | None = None,
    ) -> RegisterItem:
        """``request`` under its own key, going to ``provider``/``model``."""
        return cls(
            key=request.key,
            fingerprint=request.fingerprint(),
            provider=provider,
            model=model,
            request_json=request.model_dump_json(),
            parent_key=request.extends,
            estimate=estimate,
            route=route,
        )


@dataclass
class RegisterResult:
    """What ``register`` did with each key."""

    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # content changed: reset to pending
    unchanged: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # changed, but busy: register again later


@dataclass(frozen=True)
class Record:
    """One registry row, parsed."""

    key: str
    fingerprint: str
    provider: str
    model: str
    request_json: str
    request: dict[str, Any]
    parent_key: str | None
    state: RecordState
    attempt: int
    task_id: str | None
    task_ref: TaskRef | None
    idempotency_key: str | None
    remote_status: str | None
    progress: int | None
    video_url: str | None
    url_expires_at: float | None
    error: RecordError | None
    sources: dict[str, Any] | None
    cost: float | None
    credits: float | None
    video_uri: str | None
    sha256: str | None
    size: int | None
    run_id: str | None
    registered_at: float
    submit_started_at: float | None
    submitted_at: float | None
    polling_since: float | None
    remote_done_at: float | None
    next_poll_at: float | None
    last_polled_at: float | None
    claimed_at: float | None
    materialized_at: float | None


@dataclass(frozen=True)
class HistoryEvent:
    """One audited event: a transition (``detail`` has ``from``/``to``) or a notable fact."""

    key: str
    at: float
    event: str
    detail: Any


@dataclass(frozen=True)
class SupersededEntry:
    """What a key held before a changed request replaced it."""

    key: str
    at: float
    fingerprint: str
    new_fingerprint: str
    attempt: int
    state: RecordState
    request: dict[str, Any]
    task_ref: TaskRef | None
    video_uri: str | None
    sha256: str | None


@dataclass(frozen=True)
class PollUpdate:
    """One task's polling outcome, as ``Registry.record_polls`` stores it.

    ``state`` is IN_FLIGHT (poll again at ``next_poll_at``), READY, FAILED or CANCELLED. Build one
    with the constructors below rather than by hand.
    """

    key: str
    state: RecordState
    next_poll_at: float | None = None
    remote_status: str | None = None
    progress: int | None = None
    video_url: str | None = None
    url_expires_at: float | None = None
    cost: float | None = None
    credits: float | None = None
    remote_done_at: float | None = None
    error: RecordError | None = None
    event: str = ""  # the history event of a transition; by default from ``state``

    @classmethod
    def from_status(
        cls,
        key: str,
        status: TaskStatus,
        *,
        next_poll_at: float | None = None,
        now: float | None = None,
    ) -> PollUpdate:
        """Map a status reading: succeeded -> ready, failed/cancelled -> so, else keep polling."""
        common: dict[str, Any] = {"remote_status": status.raw_status, "progress": status.progress}
        if not status.terminal:
            return cls(key, RecordState.IN_FLIGHT, next_poll_at=next_poll_at, **common)
        done_at = status.completed_at or (time.time() if now is None else now)
        common |= {"cost": status.cost, "credits": status.credits, "remote_done_at": done_at}
        if status.state is TaskState.SUCCEEDED and status.video_url:
            return cls(
                key,
                RecordState.READY,
                video_url=status.video_url,
                url_expires_at=status.expires_at,
                **common,
            )
        if status.state is TaskState.SUCCEEDED:
            error = _remote_error(status, "the provider reported success without a video URL")
            return cls(key, RecordState.FAILED, error=error, **common)
        target = (
            RecordState.CANCELLED if status.state is TaskState.CANCELLED else RecordState.FAILED
        )
        message = status.error_message or f"the task ended {status.raw_status!r}"
        return cls(key, target, error=_remote_error(status, message), **common)

    @classmethod
    def retry_later(
        cls, key: str, *, next_poll_at: float, error: RecordError | None = None
    ) -> PollUpdate:
        """The poll itself failed (network, 429, 5xx): keep the task, poll again later."""
        return cls(key, RecordState.IN_FLIGHT, next_poll_at=next_poll_at, error=error)

    @classmethod
    def timed_out(
        cls,
        key: str,
        status: TaskStatus | None,
        deadline_s: float,
        *,
        last_error: Mapping[str, Any] | None = None,
    ) -> PollUpdate:
        """We stopped waiting; the task may still finish (and is paid): ``retry`` resumes it.

        ``last_error`` is what the last poll ran into, when it could not read a status at all.
        """
        error = RecordError(
            "TaskTimeoutError",
            f"no result within {deadline_s:.0f} s of submission; the task may still "
            "finish at the provider (and is paid for): retry resumes polling it",
            remote_status=status.raw_status if status else None,
            resumable=True,
            extra={"last_error": dict(last_error)} if last_error is not None else {},
        )
        return cls(
            key,
            RecordState.FAILED,
            remote_status=status.raw_status if status else None,
            progress=status.progress if status else None,
            error=error,
            event="timed_out",
        )

    @classmethod
    def lost(cls, key: str, error: RecordError) -> PollUpdate:
        """The provider no longer knows the task (e.g. a persistent 404): failed for good."""
        error = replace(error, resumable=False)
        return cls(key, RecordState.FAILED, error=error, event="lost")


def _remote_error(status: TaskStatus, message: str) -> RecordError:
    return RecordError(
        "TaskFailedError",
        message,
        code=status.error_code,
        remote_status=status.raw_status,
        provider=status.provider,
        task_id=status.task_id,
    )
