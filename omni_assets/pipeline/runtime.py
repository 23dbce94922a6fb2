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

    def provider_for(self, request: VideoRequest) -> str:
        return request.provider or self.default_provider

    def model_for(self, request: VideoRequest) -> str:
        name = self.provider_for(request)
        client = self.providers.get(name)
        return capabilities.resolve_model(name, request.model or (client.model if client else None))

    def validate(self, request: VideoRequest, provider: str) -> None:
        """Capability check (no HTTP) for ``provider``, with the configured default model."""
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
        return capabilities.get(provider, self.model_for(request)).extension is not None

    def register(self, requests: list[VideoRequest]) -> RegisterResult:
        """Register ``requests``, each with the estimate of what it will cost where it goes."""
        items = []
        for r in requests:
            provider, model = self.provider_for(r), self.model_for(r)
            estimate = self.spend.charge(r, provider, model)
            items.append(RegisterItem.for_request(r, provider, model, estimate))
        return self.registry.register(items)
