"""Gemini Omni video generation as partitioned Dagster assets: the public API.

``build_definitions`` (or ``OmniVideoComponent`` in a ``dg`` project) is all most code
locations need; the resources and builders are for composing your own ``Definitions``;
``VideoRequest`` and ``Settings`` describe what to generate and from where; the error tree is
what the provider clients raise. The docs list them all (docs/reference.md, "Public API").

Names are loaded on first use (PEP 562), so ``import omni_assets.providers`` or the emulator
does not load Dagster: only the Dagster layer imports it (the import contracts in
pyproject.toml).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .assets import build_video_asset
    from .components import OmniVideoComponent
    from .definitions import build_definitions
    from .jobs import build_jobs
    from .lineage_assets import build_lineage_asset, lineage_sensor
    from .pipeline.refresh import RefreshConfig
    from .providers.errors import (
        AuthenticationError,
        ContentRejectedError,
        DownloadError,
        InsufficientBalanceError,
        InvalidRequestError,
        OmniError,
        ProviderError,
        ProviderUnavailableError,
        RateLimitedError,
        RequestRejectedError,
        SubmitOutcomeUnknownError,
        TaskFailedError,
        TaskNotFoundError,
        TaskTimeoutError,
        UrlExpiredError,
    )
    from .request import VideoRequest
    from .requests_asset import build_requests_asset
    from .resources import (
        APIMartResource,
        CRUNResource,
        GoogleResource,
        JimmyAIResource,
        OmniRegistryResource,
        OmniStorageResource,
        ProviderResource,
        ToAPIsResource,
    )
    from .schedules import build_refresh_schedule
    from .sensors import build_poll_sensor, build_requests_sensor
    from .settings import Settings
    from .spend_asset import build_spend_asset

__all__ = [
    "APIMartResource",
    "AuthenticationError",
    "CRUNResource",
    "ContentRejectedError",
    "DownloadError",
    "GoogleResource",
    "InsufficientBalanceError",
    "InvalidRequestError",
    "JimmyAIResource",
    "OmniError",
    "OmniRegistryResource",
    "OmniStorageResource",
    "OmniVideoComponent",
    "ProviderError",
    "ProviderResource",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RefreshConfig",
    "RequestRejectedError",
    "Settings",
    "SubmitOutcomeUnknownError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "ToAPIsResource",
    "UrlExpiredError",
    "VideoRequest",
    "build_definitions",
    "build_jobs",
    "build_lineage_asset",
    "build_poll_sensor",
    "build_refresh_schedule",
    "build_requests_asset",
    "build_requests_sensor",
    "build_spend_asset",
    "build_video_asset",
    "lineage_sensor",
]

# Where each public name lives, relative to this package.
_MODULES: dict[str, tuple[str, ...]] = {
    ".definitions": ("build_definitions",),
    ".components": ("OmniVideoComponent",),
    ".resources": (
        "ProviderResource",
        "JimmyAIResource",
        "APIMartResource",
        "ToAPIsResource",
        "CRUNResource",
        "GoogleResource",
        "OmniStorageResource",
        "OmniRegistryResource",
    ),
    ".assets": ("build_video_asset",),
    ".requests_asset": ("build_requests_asset",),
    ".lineage_assets": ("build_lineage_asset", "lineage_sensor"),
    ".spend_asset": ("build_spend_asset",),
    ".jobs": ("build_jobs",),
    ".sensors": ("build_requests_sensor", "build_poll_sensor"),
    ".schedules": ("build_refresh_schedule",),
    ".pipeline.refresh": ("RefreshConfig",),
    ".request": ("VideoRequest",),
    ".settings": ("Settings",),
    ".providers.errors": (
        "OmniError",
        "InvalidRequestError",
        "ProviderError",
        "AuthenticationError",
        "InsufficientBalanceError",
        "RequestRejectedError",
        "ContentRejectedError",
        "TaskNotFoundError",
        "RateLimitedError",
        "ProviderUnavailableError",
        "SubmitOutcomeUnknownError",
        "TaskFailedError",
        "TaskTimeoutError",
        "DownloadError",
        "UrlExpiredError",
    ),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
