"""Set-up for pipeline tests: instance, storage and registry in a temp dir, on the emulator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterInstance, Definitions, instance_for_test

from omni_assets.definitions import build_definitions
from omni_assets.registry import Registry
from omni_assets.resources import OmniRegistryResource, OmniStorageResource
from omni_assets.settings import Settings
from omni_assets.storage import VideoStorage

DEMO_DIR = Path(__file__).parent.parent / "omni_assets" / "demo"


@dataclass
class PipelineEnv:
    root: Path
    instance: DagsterInstance
    defs: Definitions
    registry: Registry
    storage: VideoStorage
    requests_path: Path
    env: dict[str, str]

    def write_requests(self, requests: list[dict[str, Any]], **defaults: Any) -> Path:
        doc: dict[str, Any] = {"requests": requests}
        if defaults:
            doc["defaults"] = defaults
        self.requests_path.write_text(yaml.safe_dump(doc))
        return self.requests_path


@contextmanager
def temporary_env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore what was there."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def pipeline_env(
    tmp_path: Path,
    emulator_url: str,
    *,
    storage_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[PipelineEnv]:
    """Env vars, a test instance and Definitions wired to the emulator at ``emulator_url``."""
    storage_url = storage_url or str(tmp_path / "storage")
    requests_path = tmp_path / "requests.yaml"
    env = {
        "OMNI_PROVIDER": "emulator",
        "OMNI_EMULATOR_URL": emulator_url,
        "OMNI_STORAGE_URL": storage_url,
        "OMNI_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "OMNI_REQUESTS": str(requests_path),
    }
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    with (
        temporary_env(**env),
        instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance,
    ):
        storage = OmniStorageResource(url=storage_url, storage_options=storage_options or {})
        registry = OmniRegistryResource(url=env["OMNI_REGISTRY_URL"])
        defs = build_definitions(
            settings=Settings.from_env(), storage=storage, registry=registry, poll_interval_s=1
        )
        yield PipelineEnv(
            tmp_path,
            instance,
            defs,
            registry.get_registry(),
            storage.get_storage(),
            requests_path,
            env,
        )
