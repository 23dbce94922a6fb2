"""Submit pending requests: the only place money is spent.

For each pending request (oldest first) within its provider's in-flight budget and rate limit:
check that storage does not already hold its video (reuse.py: a lost or different registry never
means paying again), resolve its inputs to URLs, write the *intent* to the registry, POST, then
write the task id.
A crash between the two writes leaves the record ``submitting``; it is later surfaced as
``unknown`` (or replayed, where the provider's idempotency key makes a replay safe), never
silently resubmitted. Errors that prove no task was created put the request back to pending.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._crashpoints import crashpoint
from ..providers import PROVIDERS
from ..providers.answers import clip
from ..providers.base import Provider, TaskRef
from ..providers.capabilities import Extension
from ..providers.errors import (
    AuthenticationError,
    DownloadError,
    InsufficientBalanceError,
    InvalidRequestError,
    OmniError,
    ProviderError,
    RateLimitedError,
    SubmitOutcomeUnknownError,
)
from ..providers.redaction import redact
from ..registry import (
    BudgetExceededError,
    Record,
    RecordError,
    RecordState,
    Registry,
    StateConflictError,
)
from ..request import VideoRequest
from ..storage import VideoStorage
from .budget import SpendPolicy
from .failover import BreakerPolicy, SellerHealth, healthy_seller
from .limits import RateLimiter, SubmitLimits
from .reuse import adopt_from_storage
from .routing import AUTO, Router, translate
from .sources import ResolvedSource, resolve_source

__all__ = [
    "HOLD",
    "MAX_SUBMIT_TRIES",
    "PROVIDER_REFUSALS",
    "RESUBMIT",
    "UNKNOWN_CHOICES",
    "RateLimiter",
    "SubmitLimits",
    "SubmitReport",
    "idempotency_key",
    "recover_stale_submits",
    "submit_pending",
]

log = logging.getLogger("omni_assets.pipeline.submit")

HOLD, RESUBMIT = "hold", "resubmit"
#: What to do with an ``unknown`` create where the provider documents nothing: ``hold`` (the
#: default: wait for the user) or ``resubmit`` (the user accepts that it may pay twice).
UNKNOWN_CHOICES = (HOLD, RESUBMIT)
MAX_RESUBMITS = 3  # per request: resubmitting is bounded like every other retry
#: Submit runs in which one request may fail for a reason that may pass (its storage, its
#: reference video, a create answered with an error APIMart's Idempotency-Key lets us replay):
#: counted in the record's error (``tries``), with a back-off between runs, then ``failed``.
MAX_SUBMIT_TRIES = 4
#: The back-off after the second failed try; it doubles after each later one. The first failed
#: try is tried again in the next run (a lost answer is replayed at once): 0, 30, 60 s, failed.
SUBMIT_BACKOFF_S = 30.0
STORAGE_NOT_WRITABLE = "StorageNotWritable"
NOT_CONFIGURED = "ProviderNotConfigured"
# Refusals of a whole provider until someone acts (a key, a top-up, the configuration): its
# requests stay pending. As named in a record's ``error.kind``.
PROVIDER_REFUSALS = frozenset(
    {AuthenticationError.__name__, InsufficientBalanceError.__name__, NOT_CONFIGURED}
)


@dataclass
class SubmitReport:
    submitted: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # waiting for budget, parent, or retry
    failed: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    blocked_providers: dict[str, str] = field(default_factory=dict)  # auth/balance problems
    over_budget: dict[str, str] = field(default_factory=dict)  # key -> "budget: ... spent today"
    newly_over_budget: list[str] = field(default_factory=list)  # not waiting on budget before
    hops: dict[str, list[str]] = field(default_factory=dict)  # key -> ["crun->apimart", ...]
    resubmitted: dict[str, str] = field(default_factory=dict)  # unknown, resubmitted as chosen
    # key -> "video" | "task": storage already had this content's video (reuse.py); not POSTed
    reused: dict[str, str] = field(default_factory=dict)
    no_seller: dict[str, str] = field(default_factory=dict)  # routed, and every seller is out
    waiting: dict[str, str] = field(default_factory=dict)  # key -> why it waits (a try failed)
    storage_error: str | None = None  # storage is not writable: nothing was submitted


def idempotency_key(record: Record) -> str:
    """Stable per (key, content, attempt): replaying one attempt can never create a second task.

    The partition key is part of it: two requests with the same content under different ids
    are two videos the user asked for, not one task replayed for both.
    """
    digest = hashlib.sha256(f"{record.key}\n{record.fingerprint}".encode()).hexdigest()
    return f"omni-{digest[:40]}-{record.attempt}"


def recover_stale_submits(registry: Registry, older_than_s: float) -> dict[str, str]:
    """Settle records left ``submitting`` longer than ``older_than_s`` (the submitter died).

    The POST may or may not have created a task. Where the provider honours the idempotency key
    (its dialect's ``idempotent_submit``) the record goes back to pending with the
    same attempt, so the next submit replays the identical POST under the same key and gets the
    task it already made (or makes it, once). Elsewhere it becomes ``unknown`` and is never
    resubmitted without the user.
    Returns ``{key: "replay" | "unknown"}``.
    """
    out: dict[str, str] = {}
    for record in registry.stuck_submitting(older_than_s):
        replay = _replay_safe(record.provider)
        error = RecordError(
            "SubmitInterrupted" if replay else "SubmitOutcomeUnknown",
            "the submitting process stopped after recording its intent and before "
            "recording a task id (the paid POST may have gone out); "
            + (
                "replaying it with the same idempotency key"
                if replay
                else "it was not resubmitted. Check the provider's console, then "
                f"`omni-assets retry {record.key}` if no task exists."
            ),
        )
        try:
            registry.record_submit_error(record.key, error, "not_created" if replay else "unknown")
        except StateConflictError:
            continue  # the submitter was only slow: it recorded its task meanwhile
        out[record.key] = "replay" if replay else "unknown"
        log.warning("%s: interrupted submission -> %s", record.key, out[record.key])
    return out


def _replay_safe(provider: str) -> bool:
    client = PROVIDERS.get(provider)
    return client is not None and client.dialect.idempotent_submit


def submit_pending(
    registry: Registry,
    providers: Mapping[str, Provider],
    storage: VideoStorage,
    *,
    limits: Mapping[str, SubmitLimits] | None = None,
    rate_limiters: Mapping[str, RateLimiter] | None = None,
    max_submissions: int | None = None,
    keys: Iterable[str] | None = None,
    spend: SpendPolicy | None = None,
    router: Router | None = None,
    breaker: BreakerPolicy | None = None,
    on_unknown: Mapping[str, str] | None = None,
    now: float | None = None,
) -> SubmitReport:
    """Submit what the budgets allow (only ``keys`` when given); report what happened to each.

    ``spend`` prices each submission and books its estimate against the budget (``OMNI_BUDGET``)
    in the same registry transaction as the intent; over budget, a request stays pending.
    ``router`` lets ``provider: auto`` requests fail over to another seller where nothing was
    paid (``failover.py``); ``breaker`` tunes when a seller counts as unhealthy. ``on_unknown``
    maps a provider to ``hold`` (default) or ``resubmit`` for creates whose outcome is unknown.

    Each request is submitted on its own: whatever fails for one is recorded on it (it waits
    with the reason, or ends ``failed`` / ``unknown``) and the others go on. Before the first
    paid POST, storage is checked once to be writable; if it is not, nothing is submitted and
    every request waits with the reason. ``now`` (default: the clock) decides which back-offs
    are over.
    """
    now = time.time() if now is None else now
    run = _Pass(
        registry,
        providers,
        storage,
        SubmitReport(),
        spend or SpendPolicy(),
        limits or {},
        dict(rate_limiters or {}),
        SellerHealth(registry, breaker or BreakerPolicy(), time.time()),
        on_unknown or {},
        now=now,
    )
    report = run.report
    wanted = set(keys) if keys is not None else None
    todo = [r for r in registry.pending() if wanted is None or r.key in wanted]
    if todo and not _storage_writable(registry, storage, todo, report, now):
        return report
    for record in todo:
        retry_at = dict(record.error or {}).get("retry_at")
        if isinstance(retry_at, (int, float)) and retry_at > now:  # backing off after a try
            report.deferred.append(record.key)
            report.waiting[record.key] = str(dict(record.error or {}).get("message"))
            continue
        if max_submissions is not None and len(report.submitted) >= max_submissions:
            report.deferred.append(record.key)
            continue
        if router is None or record.request.get("provider") != AUTO:
            run.submit(record)
            continue
        # Routed: one hop per seller at most, each after an answer that created nothing.
        for _hop in router.policy.providers:
            moved = healthy_seller(registry, router, record, run.health)
            if isinstance(moved, str):
                report.deferred.append(record.key)
                report.no_seller[record.key] = moved
                break
            if moved.provider != record.provider:
                report.hops.setdefault(record.key, []).append(
                    f"{record.provider}->{moved.provider}"
                )
            record = moved
            if run.submit(record):
                break
            after = registry.get(record.key)
            if after is None or after.state is not RecordState.PENDING:
                break
            if not run.health.block(record.provider):
                break
            record = after
    return report


@dataclass
class _Pass:
    """One submit pass: what it works with, what it found, what it did."""

    registry: Registry
    providers: Mapping[str, Provider]
    storage: VideoStorage
    report: SubmitReport
    spend: SpendPolicy
    limits: Mapping[str, SubmitLimits]
    limiters: dict[str, RateLimiter]
    health: SellerHealth
    on_unknown: Mapping[str, str]
    budget: dict[str, int] = field(default_factory=dict)
    now: float = field(default_factory=time.time)

    def submit(self, record: Record) -> bool:
        """Submit ``record`` to its seller within its limits; True if a task may exist."""
        registry, report, name = self.registry, self.report, record.provider
        if name in report.blocked_providers:
            report.deferred.append(record.key)
            return False
        provider = self.providers.get(name)
        if provider is None:
            registry.record_submit_error(
                record.key,
                RecordError(
                    NOT_CONFIGURED,
                    f"provider {name!r} is not configured "
                    f"here; configured: {', '.join(sorted(self.providers)) or 'none'}",
                ),
                "not_created",
            )
            report.blocked_providers[name] = "not configured"
            report.deferred.append(record.key)
            return False
        limit = self.limits.get(name, SubmitLimits())
        if name not in self.budget:
            self.budget[name] = limit.max_in_flight - registry.in_flight_count(name)
        if self.budget[name] <= 0:
            report.deferred.append(record.key)
            return False
        parent = _parent_ready(registry, record, report)
        if parent is False or parent is True:
            return False
        # Right before anything is paid: does storage already hold this content's video?
        reused = adopt_from_storage(registry, self.providers, self.storage, record)
        if reused:
            report.reused[record.key] = reused
            return True
        limiter = self.limiters.setdefault(name, RateLimiter(limit.rate_per_s))
        outcome = _submit_one(self, provider, record, parent, limiter)
        if outcome:
            self.budget[name] -= 1
        return outcome


def _storage_writable(
    registry: Registry,
    storage: VideoStorage,
    todo: list[Record],
    report: SubmitReport,
    now: float,
) -> bool:
    """Whether storage takes a write; if not, every request waits with the reason (not a try:
    the request is not at fault, and it goes as soon as storage is back)."""
    try:
        storage.check_writable()
    except Exception as exc:
        reason = (
            f"storage {storage.root} is not writable "
            f"({type(exc).__name__}: {clip(redact(str(exc)))}); "
            "nothing is submitted until it is (a video that cannot be stored is paid for nothing)"
        )
        log.error(reason)
        report.storage_error = reason
        for record in todo:
            kept = {k: v for k, v in dict(record.error or {}).items() if k in ("tries", "retry_at")}
            error = {**kept, "error": STORAGE_NOT_WRITABLE, "message": reason, "at": now}
            registry.hold_pending(record.key, RecordError.from_dict(error))
            report.deferred.append(record.key)
            report.waiting[record.key] = reason
        return False
    return True


def _error_dict(exc: BaseException, what: str) -> dict[str, Any]:
    """``exc`` as a record's error: the error tree's own, or its type and (clipped) message."""
    if isinstance(exc, OmniError):
        return {k: clip(v) if isinstance(v, str) else v for k, v in exc.to_dict().items()}
    message = f"{what}: {type(exc).__name__}: {clip(redact(str(exc)))}"
    return {"error": type(exc).__name__, "message": message}


def _backoff(tries: int) -> float:
    """Seconds before the next try after ``tries`` failed ones (0, 30, 60, ...)."""
    return 0.0 if tries <= 1 else SUBMIT_BACKOFF_S * 2 ** (tries - 2)


def _failed_try(
    run: _Pass,
    record: Record,
    error: dict[str, Any],
    *,
    after_intent: bool,
    replay: bool = False,
) -> bool:
    """One try of ``record`` failed for a reason that may pass (nothing created, or an
    idempotent replay): it waits, backing off, for :data:`MAX_SUBMIT_TRIES` runs, then it is
    ``failed`` with the reason. Returns True when a task may exist (a replay is pending)."""
    registry, report, key = run.registry, run.report, record.key
    tries = int(dict(record.error or {}).get("tries") or 0) + 1
    error = {**error, "tries": tries, "at": run.now}
    if tries >= MAX_SUBMIT_TRIES:
        error["message"] = f"{error.get('message')} (gave up after {tries} tries)"
        if not after_intent:
            registry.begin_submit(key, idempotency_key(record))
        registry.record_submit_error(key, RecordError.from_dict(error), "failed")
        report.failed[key] = str(error["message"])
        log.error("%s: failed after %d tries: %s", key, tries, error["message"])
        return False
    error["retry_at"] = run.now + _backoff(tries)
    if replay:
        error["replay"] = True
    if after_intent:
        registry.record_submit_error(key, RecordError.from_dict(error), "not_created")
    else:
        registry.hold_pending(key, RecordError.from_dict(error))
    report.deferred.append(key)
    report.waiting[key] = str(error.get("message"))
    log.warning(
        "%s: try %d of %d failed (next after a back-off): %s",
        key,
        tries,
        MAX_SUBMIT_TRIES,
        error.get("message"),
    )
    return replay


def _parent_ready(registry: Registry, record: Record, report: SubmitReport) -> Record | bool | None:
    """The parent record when the child may go (None: no parent); False: wait or failed."""
    if record.parent_key is None:
        return None
    parent = registry.get(record.parent_key)
    if parent is None or parent.state.retryable:
        reason = (
            f"parent {record.parent_key!r} is not registered"
            if parent is None
            else f"parent {record.parent_key!r} ended {parent.state.value}"
        )
        if registry.begin_submit(record.key, idempotency_key(record)):
            registry.record_submit_error(record.key, RecordError("ParentFailed", reason), "failed")
        report.failed[record.key] = reason
        return False
    if parent.state != RecordState.MATERIALIZED:
        report.deferred.append(record.key)
        return False
    return parent


def _submit_one(
    run: _Pass,
    provider: Provider,
    record: Record,
    parent: Record | None,
    limiter: RateLimiter,
) -> bool:
    registry, storage, report, spend, health = (
        run.registry,
        run.storage,
        run.report,
        run.spend,
        run.health,
    )
    request = VideoRequest.model_validate_json(record.request_json)
    if request.provider == AUTO:  # routed: the seller's own model, neutral fields unchanged
        request = translate(request, record.provider, record.model)
    key = record.key
    try:
        provider.validate(request)
        images = [
            resolve_source(origin, provider, storage, field=f"images[{i}]", key=key)
            for i, origin in enumerate(request.images)
        ]
        video = _video_source(request, provider, storage, parent, key)
    except InvalidRequestError as exc:
        error = RecordError.from_exception(exc, field=exc.field)
        _fail_before_post(registry, record, error, report)
        return False
    except ProviderError as exc:  # an upload failed: nothing was paid for yet
        health.record(provider.name, exc)
        return _provider_refused(registry, record, provider, exc, report)
    except Exception as exc:
        what = "preparing the request's sources failed before anything was paid"
        return _failed_try(run, record, _error_dict(exc, what), after_intent=False)
    extend_from = _extend_from(provider, request, parent)
    idem = idempotency_key(record)
    charge = spend.charge(request, provider.name, record.model)
    if charge is None and spend.budget is not None:
        reason = (
            f"budget: {provider.name} {record.model} has no price, so no budget can hold it; "
            "add it to OMNI_PRICES"
        )
        registry.hold_pending(key, RecordError("BudgetExceeded", reason, at=time.time()))
        report.over_budget[key] = reason
        report.deferred.append(key)
        return False
    try:
        if not registry.begin_submit(key, idem, charge=charge, limits=spend.limits(charge)):
            return False  # another process got there first
    except BudgetExceededError as exc:
        report.over_budget[key] = exc.message
        if not (record.error and record.error.kind == "BudgetExceeded"):
            report.newly_over_budget.append(key)
        report.deferred.append(key)
        return False
    try:
        registry.record_sources(
            key, [s.to_dict() for s in images], video.to_dict() if video else None
        )
        limiter.acquire()
    except Exception as exc:
        return _failed_try(run, record, _error_dict(exc, "before the POST"), after_intent=True)
    crashpoint("before_post")
    try:
        ref = provider.submit(
            request,
            image_urls=tuple(s.url for s in images),
            video_url=video.url if video else None,
            extend_from=extend_from,
            idempotency_key=idem,
        )
    except SubmitOutcomeUnknownError as exc:
        if exc.idempotency_key:
            # Replaying under the same key returns the task if the POST made one: try again
            # later with the same attempt (``retry`` would change the key and could pay twice),
            # after a back-off, for a bounded number of runs (a 200 with an error inside was
            # once re-posted 40 times a minute).
            log.warning("submit outcome unknown for %s; will replay: %s", key, exc)
            return _failed_try(run, record, _error_dict(exc, ""), after_intent=True, replay=True)
        registry.record_submit_error(key, RecordError.from_dict(_error_dict(exc, "")), "unknown")
        if _resubmit_unknown(registry, key, run.on_unknown.get(provider.name, HOLD)):
            report.resubmitted[key] = str(exc)
            log.warning("submit outcome unknown for %s; resubmitting as asked: %s", key, exc)
            return True
        report.unknown[key] = str(exc)
        log.warning("submit outcome unknown for %s: %s", key, exc)
        return True  # it may be running: it counts against the budget
    except ProviderError as exc:
        health.record(provider.name, exc)
        return _provider_refused(registry, record, provider, exc, report, after_intent=True)
    except InvalidRequestError as exc:  # checked again by the client, before any HTTP call
        registry.record_submit_error(
            key, RecordError.from_exception(exc, field=exc.field), "failed"
        )
        report.failed[key] = str(exc)
        return False
    except DownloadError as exc:
        # The client measures a reference video (CRUN) before its POST: nothing was sent.
        return _failed_try(run, record, _error_dict(exc, ""), after_intent=True)
    except Exception as exc:
        unexpected = _error_dict(exc, "the create call failed unexpectedly; the task may exist")
        registry.record_submit_error(key, RecordError.from_dict(unexpected), "unknown")
        report.unknown[key] = str(unexpected["message"])
        log.exception("submit of %s failed unexpectedly; marked unknown", key)
        return True
    crashpoint("after_post")
    registry.record_submitted(key, ref)
    health.record(provider.name, None)
    report.submitted.append(key)
    log.info("submitted %s to %s as task %s", key, provider.name, ref.task_id)
    return True


def _resubmit_unknown(registry: Registry, key: str, choice: str) -> bool:
    """With ``resubmit`` chosen for this provider, put an unknown submission back to pending
    (a new attempt; the old one keeps its reservation: it may have been paid), at most
    :data:`MAX_RESUBMITS` times per request."""
    if choice != RESUBMIT:
        return False
    done = sum(1 for e in registry.history(key) if e.event == "retried" and e.detail.get(RESUBMIT))
    if done >= MAX_RESUBMITS:
        return False
    registry.retry(key, {RESUBMIT: True, "by": "OMNI_ON_UNKNOWN"})
    return True


def _provider_refused(
    registry: Registry,
    record: Record,
    provider: Provider,
    exc: ProviderError,
    report: SubmitReport,
    *,
    after_intent: bool = False,
) -> bool:
    """The provider answered with an error: no task exists. Retry later, or fail the request."""
    transient = exc.retryable or isinstance(
        exc, AuthenticationError | InsufficientBalanceError | RateLimitedError
    )
    if transient:
        if after_intent:
            registry.record_submit_error(record.key, RecordError.from_exception(exc), "not_created")
        report.deferred.append(record.key)
        report.blocked_providers[provider.name] = str(exc)
        log.warning("%s refused %s (will try again later): %s", provider.name, record.key, exc)
        return False
    if not after_intent:
        registry.begin_submit(record.key, idempotency_key(record))
    registry.record_submit_error(record.key, RecordError.from_exception(exc), "failed")
    report.failed[record.key] = str(exc)
    return False


def _fail_before_post(
    registry: Registry, record: Record, error: RecordError, report: SubmitReport
) -> None:
    if registry.begin_submit(record.key, idempotency_key(record)):
        registry.record_submit_error(record.key, error, "failed")
    report.failed[record.key] = error.message


def _video_source(
    request: VideoRequest,
    provider: Provider,
    storage: VideoStorage,
    parent: Record | None,
    key: str,
) -> ResolvedSource | None:
    if request.video is not None:
        return resolve_source(request.video, provider, storage, field="video", key=key)
    if parent is None or _extension_mode(provider, request) != "video_url":
        return None
    # Extending by reference video: the parent's provider URL while it is valid, else a presigned
    # link to our own copy (the provider URL may have expired hours ago).
    if parent.video_url and (parent.url_expires_at or 0) > time.time() + 3600:
        return ResolvedSource(
            origin=f"video of {parent.key}",
            url=parent.video_url,
            sha256=parent.sha256,
            storage_uri=parent.video_uri,
        )
    assert parent.video_uri is not None
    try:
        url = storage.presign(storage.video_path(parent.key), 3 * 24 * 3600)
    except NotImplementedError as exc:
        raise InvalidRequestError(
            "extends",
            parent.key,
            f"a parent whose provider URL is still valid, or storage that can presign ({exc})",
            provider=provider.name,
            request_key=key,
        ) from exc
    return ResolvedSource(
        origin=f"video of {parent.key}",
        url=url,
        sha256=parent.sha256,
        storage_uri=parent.video_uri,
        via="presign",
    )


def _extension_mode(provider: Provider, request: VideoRequest) -> str | None:
    return provider.capabilities(request.model).extension


def _extend_from(
    provider: Provider, request: VideoRequest, parent: Record | None
) -> TaskRef | None:
    mode = _extension_mode(provider, request)
    if parent is None or mode is None or not Extension(mode).by_task:
        return None
    return parent.task_ref
