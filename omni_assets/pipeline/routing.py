"""``provider: auto``: choose a seller for a request, and another one when that one cannot serve.

A request with ``provider: auto`` (per request, in ``defaults``, or ``OMNI_PROVIDER=auto``) goes
to one of the sellers named by ``OMNI_ROUTE`` (default: all four, in the order ``jimmyai``,
``apimart``, ``toapis``, ``crun``). A seller is a *candidate* when it is configured here (it has a
key) and one of its models accepts the request's neutral fields; that model is the seller's
default model when it accepts them, else the first of its other models that does (so a request
for 8 s goes to APIMart's ``Omni-Flash-Ext``, its default ``gemini-omni-flash-preview`` having no
duration). The neutral fields are turned into each seller's own parameters by its client (the
table is in docs/routing.md). Then the strategy picks:

* ``ordered``  the first candidate in ``OMNI_ROUTE`` order;
* ``cheapest`` the lowest estimate in USD (``providers/prices.py``), ties in route order;
* ``fastest``  the lowest median generation time the registry measured for the seller (submitted
  to finished, its last 100 videos); sellers without a measurement come after, in route order.

``OMNI_ROUTE="apimart,crun,toapis cheapest"``: sellers in order, then the strategy (any separator
of commas, spaces or a colon). The choice and its reasons (``routed_to``, ``route_reason``,
``candidates``) are written to the request's registry history and shown in its metadata.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..providers.base import Provider
from ..providers.capabilities import CAPABILITIES, PROVIDER_NAMES, Extension
from ..providers.errors import InvalidRequestError
from ..providers.prices import DEFAULT_PRICES, PriceTable
from ..providers.validation import validate
from ..request import VideoRequest

__all__ = [
    "AUTO",
    "STRATEGIES",
    "Candidate",
    "Route",
    "RoutePolicy",
    "Router",
    "parse_route",
    "translate",
]

AUTO = "auto"  # the same word as settings.AUTO (settings reads the environment, not this)
STRATEGIES = ("ordered", "cheapest", "fastest")


@dataclass(frozen=True)
class RoutePolicy:
    """Which sellers ``auto`` may use, in order, and how to choose among them."""

    providers: tuple[str, ...] = PROVIDER_NAMES
    strategy: str = "ordered"

    def describe(self) -> str:
        return f"{self.strategy} over {', '.join(self.providers)}"


def parse_route(text: str | None) -> RoutePolicy:
    """``OMNI_ROUTE``: provider names in order and/or one strategy word; None/empty: defaults."""
    if not text or not text.strip():
        return RoutePolicy()
    words = [w for w in re.split(r"[\s,:;]+", text.strip().lower()) if w]
    strategies = [w for w in words if w in STRATEGIES]
    names = [w for w in words if w not in STRATEGIES]
    unknown = [w for w in names if w not in PROVIDER_NAMES]
    if unknown or len(strategies) > 1:
        raise ValueError(
            f"OMNI_ROUTE={text!r}: {', '.join(unknown) or 'two strategies'} not understood; "
            f"give providers ({', '.join(PROVIDER_NAMES)}) in order and at most one of "
            f"{', '.join(STRATEGIES)}"
        )
    return RoutePolicy(
        providers=tuple(dict.fromkeys(names)) or PROVIDER_NAMES,
        strategy=strategies[0] if strategies else "ordered",
    )


def translate(request: VideoRequest, provider: str, model: str) -> VideoRequest:
    """The request as ``provider``'s ``model`` takes it (neutral fields unchanged)."""
    return request.model_copy(update={"provider": provider, "model": model})


@dataclass(frozen=True)
class Candidate:
    """A seller that can serve the request, with what the strategies compare."""

    provider: str
    model: str
    usd: float | None = None
    median_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "estimate_usd": self.usd,
            "median_generation_s": self.median_s,
        }


@dataclass(frozen=True)
class Route:
    """Where a request goes and why."""

    routed_to: str
    model: str
    reason: str
    candidates: tuple[Candidate, ...]

    def to_dict(self) -> dict[str, Any]:
        """What the registry history and the metadata record."""
        return {
            "routed_to": self.routed_to,
            "model": self.model,
            "route_reason": self.reason,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def _models_in_order(provider: str, default: str) -> list[str]:
    models = list(CAPABILITIES.get(provider, {}))
    return [default, *[m for m in models if m != default]]


@dataclass
class Router:
    """Routes ``auto`` requests over the configured sellers (``providers``)."""

    providers: Mapping[str, Provider]
    policy: RoutePolicy = field(default_factory=RoutePolicy)
    prices: PriceTable = DEFAULT_PRICES
    #: provider -> (median generation seconds, videos measured), for ``fastest``.
    measured: Callable[[], Mapping[str, tuple[float, int]]] = dict
    #: Whether local files can be sent to this seller (its upload API, or presigned storage).
    can_send_local: Callable[[Provider], bool] = lambda provider: provider.can_upload

    def candidates(
        self, request: VideoRequest, exclude: Iterable[str] = ()
    ) -> tuple[list[Candidate], dict[str, str]]:
        """The sellers that can serve ``request`` (not in ``exclude``), in route order, and why
        each other seller cannot."""
        out: list[Candidate] = []
        why: dict[str, str] = {}
        skip = set(exclude)
        for name in self.policy.providers:
            client = self.providers.get(name)
            if client is None:
                why[name] = "not configured here (no key)"
                continue
            if name in skip:
                continue
            chosen, reason = self._model_for(request, name, client)
            if chosen is None:
                why[name] = reason
                continue
            estimate = self.prices.estimate(
                name,
                chosen,
                duration=request.duration,
                resolution=request.resolution,
                has_video=request.video is not None or request.extends is not None,
            )
            out.append(Candidate(name, chosen, estimate.usd if estimate else None))
        return out, why

    def _model_for(
        self, request: VideoRequest, name: str, client: Provider
    ) -> tuple[str | None, str]:
        reason = "no model accepts the request"
        wanted = request.model
        for model in _models_in_order(name, client.model):
            if wanted is not None and wanted.lower() not in (
                n.lower() for n in CAPABILITIES[name][model].names
            ):
                continue
            caps = CAPABILITIES[name][model]
            if request.extends is not None and caps.extension is not Extension.VIDEO_URL:
                # Across sellers an extension can only be sent as the parent's video URL.
                reason = f"{model} cannot extend a video made elsewhere"
                continue
            try:
                validate(
                    translate(request, name, model),
                    name,
                    model,
                    resolve_local=self.can_send_local(client),
                )
            except InvalidRequestError as exc:
                reason = exc.message.split(": ", 1)[-1]
                continue
            return model, ""
        return None, reason

    def route(self, request: VideoRequest, exclude: Iterable[str] = ()) -> Route | None:
        """The seller ``request`` goes to (None: no candidate left)."""
        found, _ = self.candidates(request, exclude)
        if not found:
            return None
        measured = self.measured() if self.policy.strategy == "fastest" else {}
        found = [
            Candidate(c.provider, c.model, c.usd, measured.get(c.provider, (None, 0))[0])
            for c in found
        ]
        ranked, reason = _rank(found, self.policy, measured)
        best = ranked[0]
        return Route(best.provider, best.model, reason, tuple(ranked))

    def explain(self, request: VideoRequest) -> str:
        """Why no seller can serve ``request``, one reason per seller."""
        _, why = self.candidates(request)
        return "; ".join(f"{name}: {reason}" for name, reason in why.items()) or "no sellers"


def _rank(
    found: Sequence[Candidate], policy: RoutePolicy, measured: Mapping[str, tuple[float, int]]
) -> tuple[list[Candidate], str]:
    order = list(found)
    if policy.strategy == "cheapest":
        order.sort(key=lambda c: float("inf") if c.usd is None else c.usd)
        best = order[0]
        others = ", ".join(f"{c.provider} {c.usd:.2f}" for c in order[1:] if c.usd is not None)
        price = f"{best.usd:.2f} USD" if best.usd is not None else "unpriced"
        return order, f"cheapest estimate: {price}" + (f" (then {others})" if others else "")
    if policy.strategy == "fastest":
        order.sort(key=lambda c: float("inf") if c.median_s is None else c.median_s)
        best = order[0]
        if best.median_s is None:
            return order, "fastest: no generation times measured yet, so route order"
        n = measured[best.provider][1]
        return order, f"fastest measured: median {best.median_s:.0f} s over {n} videos"
    return order, f"first candidate in route order ({', '.join(policy.providers)})"


def median_generation_times(samples: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, int]]:
    """provider -> (median seconds, count) of its measured generation times."""
    return {p: (statistics.median(v), len(v)) for p, v in samples.items() if v}
