"""Build an :class:`OmniRuntime` from the resources an op, asset or sensor was given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .pipeline.runtime import OmniRuntime
from .resources import OmniRegistryResource, OmniStorageResource, ProviderResource
from .settings import Settings

__all__ = ["runtime_from_definitions", "runtime_from_resources"]


def runtime_from_resources(resources: Any, provider_keys: Sequence[str]) -> OmniRuntime:
    """``resources`` is ``context.resources``; ``provider_keys`` the provider resources in use."""
    storage: OmniStorageResource = resources.omni_storage
    registry: OmniRegistryResource = resources.omni_registry
    providers: dict[str, ProviderResource] = {k: getattr(resources, k) for k in provider_keys}
    chosen = [k for k, r in providers.items() if r.is_default]
    default = chosen[0] if chosen else Settings.from_env().default_provider
    return OmniRuntime(
        registry=registry.get_registry(),
        storage=storage.get_storage(),
        providers={k: r.get_client() for k, r in providers.items()},
        default_provider=default if default in providers else next(iter(providers), default),
        limits={k: r.limits for k, r in providers.items()},
        policies={k: r.poll_policy for k, r in providers.items()},
    )


class _Namespace:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def runtime_from_definitions(defs: Any) -> OmniRuntime:
    """The runtime of a ``Definitions`` built by :func:`omni_assets.build_definitions`."""
    resources = dict(defs.resources or {})
    keys = [k for k, v in resources.items() if isinstance(v, ProviderResource)]
    return runtime_from_resources(_Namespace(resources), keys)
