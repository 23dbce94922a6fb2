"""When a routed request may move to another seller: only where nothing was paid.

A request with ``provider: auto`` moves on (a *hop*, in its registry history) only

* **before the POST**, when its seller is unhealthy: the circuit breaker below is open over the
  seller's recent 5xx/429/455/connect failures, or the seller answered 401 or 402 lately;
* **after an answer that proves nothing was created**: the provider-error table
  (``providers/http.py``: connect errors, 429, 503, CRUN 455) and the refusals 401/402 — the
  request is pending again with its reservation given back, and tries the next seller at once;
* **after a definitive failure that was not charged**: the task ended ``failed`` (not for its
  content, which another seller would refuse too) and the provider reported a cost of 0 for it,
  or documents that failed tasks are not charged (``providers/guidance.py``): the request
  becomes a new attempt on the next seller.

It never moves after an ``unknown`` outcome (a POST that may have created a task): that request
is not pending, and only the user settles it. Requests that name a provider never move.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ..providers.errors import (
    AuthenticationError,
    InsufficientBalanceError,
    ProviderError,
    RateLimitedError,
)
from ..providers.guidance import NOT_CHARGED_ON_FAILURE
from ..providers.http import is_moderation
from ..registry import Record, RecordState, Registry
from ..request import VideoRequest
from .routing import Router

__all__ = [
    "BreakerPolicy",
    "SellerHealth",
    "fail_over_unpaid_failures",
    "healthy_seller",
    "seller_block",
    "seller_outcome",
]

log = logging.getLogger("omni_assets.pipeline.failover")


@dataclass(frozen=True)
class BreakerPolicy:
    """The circuit breaker over a seller's recent submissions (shared through the registry).

    ``errors`` failed submissions in a row (each already after the client's own bounded retries)
    within ``window_s`` open it for ``cooldown_s`` after the last; then one submission may try
    the seller again (half-open). A 401/402 keeps the seller out for ``refused_s``.
    """

    errors: int = 2
    window_s: float = 300.0
    cooldown_s: float = 60.0
    refused_s: float = 600.0


def seller_outcome(exc: ProviderError) -> str | None:
    """``refused`` (401/402), ``error`` (5xx/429/455/connect: nothing created) or None."""
    if isinstance(exc, AuthenticationError | InsufficientBalanceError):
        return "refused"
    if exc.retryable or isinstance(exc, RateLimitedError):
        return "error"
    return None


def seller_block(
    registry: Registry, provider: str, policy: BreakerPolicy, now: float
) -> str | None:
    """Why ``provider`` should not be sent a submission now, or None when it may be."""
    since = now - max(policy.window_s, policy.refused_s)
    events = registry.seller_events(provider, since)
    if not events:
        return None
    at, outcome, detail = events[0]
    if outcome == "refused" and now - at < policy.refused_s:
        return f"{provider} refused submissions {now - at:.0f} s ago ({detail})"
    streak = []
    for event in events:
        if event[1] != "error" or now - event[0] > policy.window_s:
            break
        streak.append(event)
    if len(streak) >= policy.errors and now - streak[0][0] < policy.cooldown_s:
        return (
            f"circuit open for {provider}: {len(streak)} failed submissions in a row, the last "
            f"{now - streak[0][0]:.0f} s ago ({streak[0][2]})"
        )
    return None


class SellerHealth:
    """One submit pass's view of which sellers to avoid: refused in this pass, or blocked by the
    breaker (read from the registry once per seller, again after each new event)."""

    def __init__(self, registry: Registry, policy: BreakerPolicy, now: float) -> None:
        self.registry, self.policy, self.now = registry, policy, now
        self.refused: dict[str, str] = {}  # seller -> why, this pass
        self._blocks: dict[str, str | None] = {}
        self._last: dict[str, str] = {}

    def block(self, provider: str) -> str | None:
        """Why not to send ``provider`` a submission now (None: go ahead)."""
        if provider in self.refused:
            return self.refused[provider]
        if provider not in self._blocks:
            self._blocks[provider] = seller_block(self.registry, provider, self.policy, self.now)
        return self._blocks[provider]

    def record(self, provider: str, exc: ProviderError | None) -> None:
        """What ``provider`` answered a submission (None: a task was created)."""
        outcome = "ok" if exc is None else seller_outcome(exc)
        if outcome is None or (outcome == "ok" and self._last.get(provider) == "ok"):
            return
        self.registry.record_seller(provider, outcome, "" if exc is None else str(exc)[:200])
        self._last[provider] = outcome
        self._blocks.pop(provider, None)
        if exc is not None:
            self.refused[provider] = str(exc)


def healthy_seller(
    registry: Registry, router: Router, record: Record, health: SellerHealth
) -> Record | str:
    """``record``, moved first to a healthy candidate (a ``failover`` hop in its history) if
    its seller should not be sent a submission now; or why no candidate is left."""
    why = health.block(record.provider)
    if why is None:
        return record
    blocked = {p for p in router.policy.providers if health.block(p) is not None}
    request = VideoRequest.model_validate_json(record.request_json)
    route = router.route(request, exclude=blocked)
    if route is None:
        return f"every candidate seller is unavailable ({why})"
    detail = {"from": record.provider, "because": why, **route.to_dict()}
    if not registry.reroute(record.key, route.routed_to, route.model, detail):
        return "it changed state meanwhile"
    log.warning("%s: failover %s -> %s (%s)", record.key, record.provider, route.routed_to, why)
    moved = registry.get(record.key)
    return moved if moved is not None else "it is no longer registered"


def _not_charged(registry: Registry, record: Record) -> str | None:
    """Why the failed task of ``record`` cost nothing, or None when that is not known."""
    cost = registry.cost_of(record.key)
    if cost is not None and cost.actual == 0:
        return f"{record.provider} reported a cost of 0 for the failed task"
    return NOT_CHARGED_ON_FAILURE.get(record.provider)


def fail_over_unpaid_failures(
    registry: Registry, router: Router, keys: Iterable[str]
) -> dict[str, str]:
    """Routed requests among ``keys`` whose task failed uncharged -> a new attempt elsewhere.

    Returns ``{key: "crun->apimart"}`` for each request moved. At most one hop per seller.
    """
    moved: dict[str, str] = {}
    for record in registry.get_many(keys):
        if record.state is not RecordState.FAILED or record.request.get("provider") != "auto":
            continue
        error = record.error
        if error is None or error.kind != "TaskFailedError":
            continue
        if is_moderation(f"{error.code or ''} {error.message}"):
            continue  # refused for its content: another seller would refuse it too
        why = _not_charged(registry, record)
        routes = registry.routes(record.key)
        hops = sum(r["event"] == "failover" for r in routes)
        if why is None or hops >= len(router.policy.providers):
            continue
        tried = {str(r.get("from")) for r in routes if r["event"] == "failover"}
        tried.add(record.provider)
        route = router.route(VideoRequest.model_validate_json(record.request_json), exclude=tried)
        if route is None:
            continue
        because = f"task failed uncharged ({why}): {error.message}"
        registry.retry(record.key, {"failover": True, "because": because})
        detail = {"from": record.provider, "because": because, **route.to_dict()}
        if registry.reroute(record.key, route.routed_to, route.model, detail):
            moved[record.key] = f"{record.provider}->{route.routed_to}"
            log.warning("%s: failover after an uncharged failure: %s", record.key, because)
    return moved
