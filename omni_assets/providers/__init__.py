"""The provider layer: capability tables, validation and the five HTTP clients.

Plain typed clients over httpx; nothing here imports dagster. The Dagster layer reaches a provider
only through :class:`~omni_assets.providers.base.Provider`, built by :func:`get_provider`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .apimart import APIMartClient
from .base import (
    DownloadResult,
    Provider,
    TaskRef,
    TaskState,
    TaskStatus,
    UploadedFile,
)
from .capabilities import CAPABILITIES, DEFAULT_MODELS, PROVIDER_NAMES, ModelCapabilities
from .client import ProviderClient
from .crun import CRUNClient
from .errors import InvalidRequestError
from .google import GoogleClient
from .http import ClientOptions, RetryPolicy
from .inputs import derive_idempotency_key
from .jimmyai import JimmyAIClient
from .toapis import ToAPIsClient
from .validation import validate
from .wait import wait

__all__ = [
    "CAPABILITIES",
    "DEFAULT_MODELS",
    "PROVIDERS",
    "PROVIDER_NAMES",
    "APIMartClient",
    "CRUNClient",
    "ClientOptions",
    "DownloadResult",
    "GoogleClient",
    "JimmyAIClient",
    "ModelCapabilities",
    "Provider",
    "ProviderClient",
    "RetryPolicy",
    "TaskRef",
    "TaskState",
    "TaskStatus",
    "ToAPIsClient",
    "UploadedFile",
    "derive_idempotency_key",
    "get_provider",
    "validate",
    "wait",
]

#: provider name -> client class.
PROVIDERS: Mapping[str, type[ProviderClient]] = MappingProxyType(
    {
        "jimmyai": JimmyAIClient,
        "apimart": APIMartClient,
        "toapis": ToAPIsClient,
        "crun": CRUNClient,
        "google": GoogleClient,
    }
)


def get_provider(
    name: str,
    *,
    api_key: str,
    base_url: str | None = None,
    model: str | None = None,
    timeout: float | None = None,
    **opts: Any,
) -> ProviderClient:
    """A client for provider ``name`` (``jimmyai``, ``apimart``, ``toapis``, ``crun``, ``google``).

    ``timeout`` (seconds) sets the read timeout of status calls; ``opts`` go to the client
    (``options=ClientOptions(...)``, ``transport=`` for tests).
    """
    cls = PROVIDERS.get(name.lower())
    if cls is None:
        raise InvalidRequestError("provider", name, ", ".join(PROVIDERS))
    if timeout is not None:
        base = opts.pop("options", None) or ClientOptions()
        opts["options"] = _with_timeout(base, timeout)
    return cls(api_key, base_url=base_url, model=model, **opts)


def _with_timeout(options: ClientOptions, timeout: float) -> ClientOptions:
    return dataclasses.replace(options, read_timeout=timeout)
