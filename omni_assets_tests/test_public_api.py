"""The package's public API: ``__all__`` is what it should be (as httpx's test_exported_members),
every name imports and is documented, and importing the non-Dagster layers leaves Dagster out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import omni_assets

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"

PUBLIC = [
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


def test_all_is_what_it_should_be() -> None:
    assert omni_assets.__all__ == PUBLIC
    assert set(PUBLIC) <= set(dir(omni_assets))


def _documented() -> set[str]:
    text = REFERENCE.read_text()
    section = text.split("\n## The Python API\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(\w+)`", section))


@pytest.mark.parametrize("name", PUBLIC)
def test_every_name_imports_and_is_documented(name: str) -> None:
    value = getattr(omni_assets, name)
    home = sys.modules[value.__module__]
    assert getattr(home, name) is value  # the object itself, not a copy
    assert name in getattr(home, "__all__", [name]), f"{value.__module__} does not export {name}"
    assert (value.__doc__ or "").strip(), f"{name} has no docstring"
    assert name in _documented(), f"{name} is not in docs/reference.md's Python API table"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'build_everything'"):
        omni_assets.build_everything  # noqa: B018
    with pytest.raises(ImportError):
        from omni_assets import build_everything  # type: ignore[attr-defined]  # noqa: F401


def test_the_layers_below_dagster_import_without_it() -> None:
    """The names load lazily: the clients and the emulator stay usable without Dagster."""
    code = (
        "import omni_assets.emulator, omni_assets.providers, sys; "
        "assert 'dagster' not in sys.modules, 'dagster was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
