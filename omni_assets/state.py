"""Where the state lives: the one place that decides it, for every entry point.

The registry (what was asked, paid for and delivered) and the storage (the videos and their
sidecars) are the truth; the Dagster instance in ``DAGSTER_HOME`` is a view of them. The CLI
commands, the code location, the component and the sensors all find them here, the same way:

* Dagster home: ``$DAGSTER_HOME``, else ``./.omni/dagster_home`` (persistent, never a temporary
  folder: ``omni-assets run`` and ``omni-assets ui`` use it as the instance);
* registry: ``$OMNI_REGISTRY_URL``, else SQLite ``omni_registry.db`` in that Dagster home;
* storage: ``$OMNI_STORAGE_URL``, else ``./.omni/storage``.

Relative defaults are taken from the current folder, so every command run in one folder agrees.
Nothing here imports dagster.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_HOME",
    "DEFAULT_STORAGE",
    "REGISTRY_FILE",
    "StateLocation",
    "ensure_home",
    "resolve_state",
]

DEFAULT_HOME = Path(".omni") / "dagster_home"
DEFAULT_STORAGE = Path(".omni") / "storage"
REGISTRY_FILE = "omni_registry.db"
# What a home this package creates holds: no telemetry, no welcome pop-up in the UI.
HOME_DAGSTER_YAML = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"


@dataclass(frozen=True)
class StateLocation:
    """The Dagster home, the registry URL and the storage URL, and where each came from."""

    home: Path
    registry_url: str
    storage_url: str
    home_from_env: bool
    registry_from_env: bool
    storage_from_env: bool

    @staticmethod
    def describe_url(url: str) -> str:
        """A database URL as shown to people: any password hidden."""
        return _shown(url)

    def describe(self) -> str:
        """One line for people: ``state: registry ... · storage ... · dagster home ...``."""
        return (
            f"state: registry {_shown(self.registry_url)} · storage {self.storage_url} · "
            f"dagster home {self.home}" + ("" if self.home_from_env else " (default)")
        )


def resolve_state(environ: Mapping[str, str] | None = None) -> StateLocation:
    """Where the state lives, from ``environ`` (default ``os.environ``); creates nothing."""
    env = os.environ if environ is None else environ
    home_env = env.get("DAGSTER_HOME", "").strip()
    home = Path(home_env).expanduser() if home_env else DEFAULT_HOME
    home = home.absolute()
    registry = env.get("OMNI_REGISTRY_URL", "").strip()
    storage = env.get("OMNI_STORAGE_URL", "").strip()
    return StateLocation(
        home=home,
        registry_url=registry or f"sqlite:///{home / REGISTRY_FILE}",
        storage_url=_storage_url(storage or str(DEFAULT_STORAGE)),
        home_from_env=bool(home_env),
        registry_from_env=bool(registry),
        storage_from_env=bool(storage),
    )


def ensure_home(state: StateLocation) -> Path:
    """Create the Dagster home (and a ``dagster.yaml`` there when it has none); returns it."""
    state.home.mkdir(parents=True, exist_ok=True)
    config = state.home / "dagster.yaml"
    # Ours (absent, or what an earlier version wrote): telemetry and the community pop-up off.
    old = not config.exists() or config.read_text() == "telemetry:\n  enabled: false\n"
    if old and not (state.home / "dagster.yml").exists():
        config.write_text(HOME_DAGSTER_YAML)
    return state.home


def _storage_url(raw: str) -> str:
    """A local folder as an absolute path: the code location, its runs and the CLI may each run
    in another directory, and must all mean the same folder. URLs (``s3://``...) are kept."""
    if "://" in raw:
        return raw
    return str(Path(raw).expanduser().absolute())


def _shown(url: str) -> str:
    """``url`` with any password hidden (a PostgreSQL URL may hold one)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
