"""What one step of the pipeline works with: registry, storage, clients and their limits.

Built from Dagster resources by the Dagster layer, or directly by scripts and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..providers import capabilities
from ..providers.base import Provider
from ..providers.errors import InvalidRequestError
from ..providers.polling import PollPolicy
from ..providers.validation import validate
from ..registry import RegisterItem, RegisterResult, Registry
from ..request import VideoRequest
from ..storage import VideoStorage
from .budget import SpendPolicy
from .routing import AUTO, Route, RoutePolicy, Router, median_generation_times
from .submit import SubmitLimits

__all__ = ["OmniRuntime"]


@dataclass
class OmniRuntime:
    registry: Registry
    storage: VideoStorage
    providers: Mapping[str, Provider]
    default_provider: str
    limits: Mapping[str, SubmitLimits] = field(default_factory=dict)
    policies: Mapping[str, PollPolicy] = field(default_factory=dict)
    spend: SpendPolicy = field(default_factory=SpendPolicy)
    route: RoutePolicy = field(default_factory=RoutePolicy)
    #: provider -> ``hold`` | ``resubmit`` for creates whose outcome is unknown (OMNI_ON_UNKNOWN).
    on_unknown: Mapping[str, str] = field(default_factory=dict)
    #: providers whose client talks to the built-in emulator: their videos are fake, and say so.
    emulated: frozenset[str] = frozenset()

    @property
    def router(self) -> Router:
        """Routes ``provider: auto`` requests over the configured sellers."""
        return Router(
            self.providers,
            self.route,
            self.spend.prices,
            measured=lambda: median_generation_times(self.registry.generation_samples()),
            can_send_local=lambda client: client.can_upload or not self.storage.is_local,
        )

    def provider_for(self, request: VideoRequest) -> str:
        return request.provider or self.default_provider

    def routed(self, request: VideoRequest) -> Route | None:
        """Where an ``auto`` request goes (None: it names its provider, or nothing fits)."""
        if self.provider_for(request) != AUTO:
            return None
        return self.router.route(request)

    def model_for(self, request: VideoRequest) -> str:
        name = self.provider_for(request)
        if name == AUTO:
            route = self.routed(request)
            return route.model if route else ""
        client = self.providers.get(name)
        return capabilities.resolve_model(name, request.model or (client.model if client else None))

    def validate(self, request: VideoRequest, provider: str) -> None:
        """Capability check (no HTTP) for ``provider``, with the configured default model."""
        if provider == AUTO:
            if self.routed(request) is None:
                raise InvalidRequestError(
                    "provider",
                    AUTO,
                    f"a request some configured seller accepts ({self.router.explain(request)})",
                    request_key=request.key,
                )
            return
        client = self.providers.get(provider)
        if client is None:
            raise InvalidRequestError(
                "provider",
                provider,
                ", ".join(sorted(self.providers)) + " (configured here)",
                request_key=request.key,
            )
        model = request.model or client.model
        validate(
            request, provider, model, resolve_local=client.can_upload or not self.storage.is_local
        )

    def can_extend(self, request: VideoRequest, provider: str) -> bool:
        if provider == AUTO:  # candidates are only sellers that can take the parent's video
            return self.routed(request) is not None
        return capabilities.get(provider, self.model_for(request)).extension is not None

    def register(self, requests: list[VideoRequest]) -> RegisterResult:
        """Register ``requests``, each with the estimate of what it will cost where it goes;
        ``auto`` ones routed (``routed_to``, ``route_reason``, ``candidates`` in the history)."""
        items = []
        for r in requests:
            route = self.routed(r)
            if route is not None:
                provider, model = route.routed_to, route.model
            else:
                provider, model = self.provider_for(r), self.model_for(r)
            estimate = self.spend.charge(r, provider, model)
            detail = route.to_dict() if route else None
            items.append(RegisterItem.for_request(r, provider, model, estimate, detail))
        return self.registry.register(items)
