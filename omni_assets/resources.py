"""Dagster resources: configuration only, each handing out a plain client.

One resource per provider (API key through ``dagster.EnvVar``, base URL, model, timeouts, polling,
in-flight budget, rate limit; ``get_client()``), one for storage and one for the task registry.
Keys never appear in run config or logs: Dagster shows an ``EnvVar`` by name, not by value.
:func:`runtime_from_resources` turns the resources an op, asset or sensor was given into the
pipeline's :class:`~omni_assets.pipeline.runtime.OmniRuntime`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

from dagster import ConfigurableResource, EnvVar
from pydantic import BaseModel, Field, PrivateAttr

from .emulator.process import ensure_emulator
from .pipeline.budget import SpendPolicy, parse_budget
from .pipeline.routing import parse_route
from .pipeline.runtime import OmniRuntime
from .pipeline.submit import SubmitLimits
from .providers import ClientOptions, get_provider
from .providers.base import Provider
from .providers.env import BASE_URL_ENV
from .providers.env import api_key_env as default_key_env
from .providers.polling import DEFAULT_DEADLINE_S, DEFAULT_POLL_INTERVAL_S, PollPolicy
from .providers.prices import load_prices
from .registry import Registry, default_registry_url
from .settings import AUTO, EMULATOR_API_KEY, MissingProviderKey, Settings
from .storage import VideoStorage

__all__ = [
    "APIMartResource",
    "CRUNResource",
    "GoogleResource",
    "JimmyAIResource",
    "OmniRegistryResource",
    "OmniStorageResource",
    "ProviderResource",
    "ProviderSettings",
    "ToAPIsResource",
    "provider_resource",
    "provider_resources",
    "runtime_from_definitions",
    "runtime_from_resources",
]


class ProviderSettings(BaseModel):
    """How a provider is used: the fields a provider resource and the component share.

    A setting of a provider is declared here and nowhere else: the component's provider config
    inherits it, as the resource does.
    """

    base_url: str | None = Field(default=None, description="Override the provider's base URL.")
    model: str | None = Field(default=None, description="Default model for this provider.")
    timeout_s: float = Field(default=30.0, description="Per-HTTP-call timeout, seconds.")
    poll_interval_s: float = Field(
        default=DEFAULT_POLL_INTERVAL_S, description="Seconds between status polls."
    )
    deadline_s: float = Field(
        default=DEFAULT_DEADLINE_S, description="Give up polling a task this long after submission."
    )
    max_in_flight: int = Field(default=20, description="Tasks submitted but not finished, at most.")
    rate_limit_per_s: float = Field(default=2.0, description="Submissions per second, at most.")
    max_download_bytes: int | None = Field(
        default=None,
        description="The largest video body accepted; default OMNI_MAX_DOWNLOAD_BYTES (384 MiB).",
    )
    allow_private_urls: bool | None = Field(
        default=None,
        description="Download videos from loopback/private addresses other than the provider's "
        "own host; default OMNI_ALLOW_PRIVATE_URLS (refused).",
    )


class ProviderResource(ConfigurableResource, ProviderSettings):  # type: ignore[type-arg]
    """One provider's client: its key (through ``dagster.EnvVar``) and :class:`ProviderSettings`."""

    provider_name: ClassVar[str]

    api_key: str = Field(description="API key; pass dagster.EnvVar('<PROVIDER>_API_KEY').")
    emulator_url: str | None = Field(
        default=None,
        description="Set in emulator mode: the emulator is started on this URL if not running.",
    )
    is_default: bool = Field(
        default=False,
        description="Requests that name no provider go to this one (overrides OMNI_PROVIDER).",
    )
    _client: Provider | None = PrivateAttr(default=None)

    def get_client(self) -> Provider:
        """A client for this provider, created once per resource instance."""
        if self._client is None:
            if self.emulator_url:
                ensure_emulator(self.emulator_url)
            settings = Settings.from_env()
            options = ClientOptions(
                max_download_bytes=self.max_download_bytes or settings.max_download_bytes,
                allow_private_urls=settings.allow_private_urls
                if self.allow_private_urls is None
                else self.allow_private_urls,
            )
            api_key = _resolved(self.api_key)
            if not api_key:
                # Name the variable (an unresolved EnvVar is its name), never a traceback about
                # "an empty key" that leaves the user guessing which one.
                names = (self.api_key.env_var_name,) if isinstance(self.api_key, EnvVar) else None
                raise MissingProviderKey(self.provider_name, names)
            self._client = get_provider(
                self.provider_name,
                api_key=api_key,
                key_variable=self.api_key.env_var_name
                if isinstance(self.api_key, EnvVar)
                else None,
                base_url=_resolved(self.base_url),
                model=self.model,
                timeout=self.timeout_s,
                options=options,
                **self.client_options(),
            )
        return self._client

    def client_options(self) -> dict[str, Any]:
        """Provider-specific keyword arguments for the client (none by default)."""
        return {}

    @property
    def limits(self) -> SubmitLimits:
        return SubmitLimits(max_in_flight=self.max_in_flight, rate_per_s=self.rate_limit_per_s)

    @property
    def poll_policy(self) -> PollPolicy:
        return PollPolicy(interval_s=self.poll_interval_s, deadline_s=self.deadline_s)

    def teardown_after_execution(self, context: Any) -> None:
        if self._client is not None:
            self._client.close()


def _resolved(value: str | None) -> str | None:
    """An unresolved ``EnvVar`` (a resource used outside a run) is its variable's *name*."""
    if isinstance(value, EnvVar):
        return value.get_value()
    return value


class JimmyAIResource(ProviderResource):
    """JimmyAI (``Gemini-Omini``, ``omni-10s``); key from ``JIMMYAI_API_KEY``."""

    provider_name: ClassVar[str] = "jimmyai"


class APIMartResource(ProviderResource):
    """APIMart (``gemini-omni-flash-preview``, ``Omni-Flash-Ext``); key from ``APIMART_API_KEY``."""

    provider_name: ClassVar[str] = "apimart"


class ToAPIsResource(ProviderResource):
    """ToAPIs (``gemini_omni_flash``, ``gemini_omni``); key from ``TOAPIS_API_KEY``."""

    provider_name: ClassVar[str] = "toapis"


class CRUNResource(ProviderResource):
    """CRUN (``google/gemini-omni``); key from ``CRUN_API_KEY`` (sent as ``x-api-key``)."""

    provider_name: ClassVar[str] = "crun"


class GoogleResource(ProviderResource):
    """Google's Gemini API (``gemini-omni-flash-preview`` and its GA successors) over the
    Interactions API; key from ``GEMINI_API_KEY`` (or ``GOOGLE_API_KEY``)."""

    provider_name: ClassVar[str] = "google"

    video_delivery: str = Field(
        default="inline",
        description="How Google hands the video over: inline (base64 in the interaction, "
        "Google's default) or uri (a file URI, downloaded like any video).",
    )

    def client_options(self) -> dict[str, Any]:
        return {"delivery": self.video_delivery}


PROVIDER_RESOURCES: dict[str, type[ProviderResource]] = {
    cls.provider_name: cls
    for cls in (JimmyAIResource, APIMartResource, ToAPIsResource, CRUNResource, GoogleResource)
}


def provider_resource(
    name: str, *, emulator_url: str | None = None, api_key_env: str | None = None, **fields: Any
) -> ProviderResource:
    """The resource of provider ``name``, the one place that decides where its key comes from.

    With ``emulator_url`` it talks to the built-in emulator there (started in the background
    the first time a client is needed; no key is read, ``base_url`` is the emulator's); else
    its key comes from the environment variable ``api_key_env`` (default ``<NAME>_API_KEY``;
    Google: ``GEMINI_API_KEY``, else ``GOOGLE_API_KEY``)
    through ``dagster.EnvVar``. ``fields`` are :class:`ProviderSettings` fields and
    ``is_default``.
    """
    cls = PROVIDER_RESOURCES[name]
    if emulator_url:
        url = emulator_url.rstrip("/")
        fields["base_url"] = f"{url}/{name}"
        return cls(api_key=EMULATOR_API_KEY, emulator_url=url, **fields)
    return cls(api_key=EnvVar(api_key_env or default_key_env(name)), **fields)


def provider_resources(settings: Settings) -> dict[str, ProviderResource]:
    """One resource per usable provider, configured from the environment (``OMNI_*``).

    In emulator mode (``OMNI_PROVIDER=emulator``, never implied) every provider points at the
    emulator on ``OMNI_EMULATOR_URL`` and polls every second; else ``<NAME>_BASE_URL``, when
    set, overrides a provider's base URL. ``OMNI_PROVIDER`` unset: :class:`ProviderNotConfigured`.
    """
    out: dict[str, ProviderResource] = {}
    for name in settings.configured_providers():
        extra: dict[str, Any] = {}
        if name == "google":
            extra["video_delivery"] = settings.google_video_delivery
        if settings.emulated:
            out[name] = provider_resource(
                name, emulator_url=settings.emulator_url, poll_interval_s=1.0, **extra
            )
        else:
            base_url = BASE_URL_ENV[name]
            out[name] = provider_resource(
                name, base_url=EnvVar(base_url) if os.environ.get(base_url) else None, **extra
            )
    return out


class OmniStorageResource(ConfigurableResource):  # type: ignore[type-arg]
    """Where videos, sidecars and sources go: any fsspec URL (local folder, ``s3://``...)."""

    url: str = Field(description="fsspec URL of the storage root, e.g. s3://bucket/videos.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options (for S3: endpoint_url via client_kwargs, etc.). Credentials "
        "are best left to the environment (AWS_ACCESS_KEY_ID...), not put here.",
    )

    def get_storage(self) -> VideoStorage:
        return VideoStorage(self.url, dict(self.storage_options))


class OmniRegistryResource(ConfigurableResource):  # type: ignore[type-arg]
    """The durable task registry: SQLite in the Dagster home by default (state.py), or Postgres."""

    url: str | None = Field(
        default=None, description="SQLAlchemy URL; default $OMNI_REGISTRY_URL or SQLite."
    )

    _registry: Registry | None = PrivateAttr(default=None)

    def get_registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.url or default_registry_url())
        return self._registry


def runtime_from_resources(resources: Any, provider_keys: Sequence[str]) -> OmniRuntime:
    """``resources`` is ``context.resources``; ``provider_keys`` the provider resources in use."""
    storage: OmniStorageResource = resources.omni_storage
    registry: OmniRegistryResource = resources.omni_registry
    providers: dict[str, ProviderResource] = {k: getattr(resources, k) for k in provider_keys}
    chosen = [k for k, r in providers.items() if r.is_default]
    settings = Settings.from_env()
    default = chosen[0] if chosen else settings.default_provider
    spend = SpendPolicy(load_prices(settings.prices_path), parse_budget(settings.budget))
    if default != AUTO and default not in providers:
        default = next(iter(providers), default)
    return OmniRuntime(
        registry=registry.get_registry(),
        storage=storage.get_storage(),
        providers={k: r.get_client() for k, r in providers.items()},
        default_provider=default,
        route=parse_route(settings.route),
        on_unknown=dict(settings.on_unknown),
        limits={k: r.limits for k, r in providers.items()},
        policies={k: r.poll_policy for k, r in providers.items()},
        spend=spend,
        emulated=frozenset(k for k, r in providers.items() if r.emulator_url),
    )


class _Namespace:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def runtime_from_definitions(defs: Any) -> OmniRuntime:
    """The runtime of a ``Definitions`` built by :func:`omni_assets.build_definitions`."""
    resources = dict(defs.resources or {})
    keys = [k for k, v in resources.items() if isinstance(v, ProviderResource)]
    return runtime_from_resources(_Namespace(resources), keys)
