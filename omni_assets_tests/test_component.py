"""OmniVideoComponent through Dagster's component harnesses and the ``dg`` command line.

A user declares providers, storage, requests and a schedule in ``defs.yaml``; the component must
build what ``build_definitions`` builds, keep API keys out of its config, point relative paths
at its own folder, refuse a bad declaration with a clear message, and run end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import Definitions, instance_for_test
from dagster.components.testing import create_defs_folder_sandbox

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli.driver import LocalDriver
from omni_assets.components import OmniProviderConfig, OmniVideoComponent
from omni_assets.definitions import build_definitions
from omni_assets.registry import RecordState, Registry
from omni_assets.resources import (
    OmniRegistryResource,
    OmniStorageResource,
    ProviderResource,
    ProviderSettings,
)

TYPE = "omni_assets.components.OmniVideoComponent"
BIN = Path(sys.executable).parent


def _names(defs: Definitions) -> dict[str, set[str]]:
    """What a user sees in the UI: assets, checks, jobs, sensors, schedules, resources."""
    repo = defs.get_repository_def()
    return {
        "assets": {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()},
        "checks": {k.to_user_string() for k in repo.asset_graph.asset_check_keys},
        "jobs": {j.name for j in defs.jobs or []},
        "sensors": {s.name for s in defs.sensors or []},
        "schedules": {s.name for s in defs.schedules or []},
        "resources": set(defs.resources or {}),
    }


def _attributes(storage: Path, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {
            "apimart": {"model": "Omni-Flash-Ext", "max_in_flight": 5},
            "crun": {"api_key_env": "MY_CRUN_KEY", "rate_limit_per_s": 0.5},
        },
        "default_provider": "crun",
        "storage": {"url": str(storage)},
        "requests": "requests.yaml",
        "poll_interval_seconds": 5,
        **extra,
    }


def test_defs_yaml_builds_what_build_definitions_builds(tmp_path: Path) -> None:
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            OmniVideoComponent,
            defs_yaml_contents={
                "type": TYPE,
                "attributes": _attributes(
                    tmp_path / "videos",
                    schedule={"cron": "0 6 * * *", "requests": ["catalog-*"], "keep": 3},
                ),
            },
        )
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, OmniVideoComponent)
            Definitions.validate_loadable(defs)
            names = _names(defs)
            resources = dict(defs.resources or {})
            requests_path = component.requests_path(path)
    reference = build_definitions(
        providers=component.provider_resources(),
        storage=OmniStorageResource(url=str(tmp_path / "videos")),
        registry=OmniRegistryResource(),
    )
    expected = _names(reference)
    assert names["schedules"] == {"omni_refresh_schedule"}
    names["schedules"] = expected["schedules"] = set()  # the reference has no schedule here
    assert names == expected
    assert {"omni_video", "source_images"} <= names["assets"]
    assert {"omni_video:plays", "omni_video:matches_request"} <= names["checks"]
    assert names["jobs"] == {"omni_submit", "omni_materialize", "omni_report_failure"}
    assert "omni_requests:valid" in names["checks"]
    assert {"omni_requests_sensor", "omni_poll_sensor"} <= names["sensors"]
    assert {"apimart", "crun", "omni_storage", "omni_registry"} <= names["resources"]
    # Declared settings reach the resources; relative paths are relative to defs.yaml.
    apimart, crun = resources["apimart"], resources["crun"]
    assert isinstance(apimart, ProviderResource) and isinstance(crun, ProviderResource)
    assert (apimart.model, apimart.max_in_flight) == ("Omni-Flash-Ext", 5)
    assert not apimart.is_default
    assert (crun.rate_limit_per_s, crun.is_default) == (0.5, True)
    assert resources["omni_storage"].url == str(tmp_path / "videos")
    assert requests_path == str(path / "requests.yaml")


def test_api_keys_are_read_from_the_environment_never_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APIMART_API_KEY", "sk-apimart-component-secret")
    monkeypatch.setenv("MY_CRUN_KEY", "sk-crun-component-secret")
    component = OmniVideoComponent.from_attributes_dict(attributes=_attributes(Path("/tmp/v")))
    for name, env_name in (("apimart", "APIMART_API_KEY"), ("crun", "MY_CRUN_KEY")):
        resource = component.provider_resources()[name]
        # What the UI and run config show: the variable's name.
        shown = str(resource.get_resource_definition().config_schema.default_value)
        assert env_name in shown
        assert "secret" not in shown
        assert resource.api_key == env_name  # an EnvVar: resolved only when the run starts
    assert "secret" not in component.model_dump_json()


def test_a_provider_takes_every_setting_of_its_resource() -> None:
    """The component declares no provider setting of its own: it has the resource's fields."""
    shared = set(ProviderSettings.model_fields)
    # what a resource has beyond the shared settings: its key and how the component wires it
    assert set(ProviderResource.model_fields) - shared == {"api_key", "emulator_url", "is_default"}
    assert set(OmniProviderConfig.model_fields) == shared | {"api_key_env"}
    settings = {"deadline_s": 60.0, "max_download_bytes": 1024, "allow_private_urls": True}
    attributes = {**_attributes(Path("/tmp/v")), "providers": {"crun": settings}}
    component = OmniVideoComponent.from_attributes_dict(attributes=attributes)
    resource = component.provider_resources()["crun"]
    assert {name: getattr(resource, name) for name in settings} == settings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"providers": {"runway": {}}}, "unknown provider(s) ['runway']"),
        ({"providers": {}}, "declare at least one provider"),
        ({"default_provider": "toapis"}, "default_provider 'toapis' is not among"),
        ({"providers": {"apimart": {"api_key": "sk-inline"}}}, "api_key"),
    ],
)
def test_bad_declarations_are_refused_clearly(change: dict[str, Any], message: str) -> None:
    attributes = {**_attributes(Path("/tmp/v")), **change}
    with pytest.raises(Exception) as info:
        OmniVideoComponent.from_attributes_dict(attributes=attributes)
    assert message in str(info.value)


def test_component_runs_end_to_end_on_the_emulator(
    tmp_path: Path, fresh_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEO_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    storage = tmp_path / "videos"
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(
            OmniVideoComponent,
            defs_yaml_contents={
                "type": TYPE,
                "attributes": _attributes(
                    storage,
                    registry_url_env="VIDEO_REGISTRY_URL",
                    emulator_url=fresh_emulator.url,
                ),
            },
        )
        # No provider named: goes to the declared default (crun).
        (path / "requests.yaml").write_text(
            yaml.safe_dump(
                {
                    "requests": [
                        {"id": "comp-default", "prompt": "a lighthouse", "duration": 4},
                        {
                            "id": "comp-apimart",
                            "prompt": "a boat",
                            "provider": "apimart",
                            "duration": 4,
                        },
                    ]
                }
            )
        )
        with (
            sandbox.load_component_and_build_defs(defs_path=path) as (_, defs),
            instance_for_test() as instance,
        ):
            # The resource reads VIDEO_REGISTRY_URL when a run or tick starts; the same here.
            registry = Registry(os.environ["VIDEO_REGISTRY_URL"])
            result = LocalDriver(defs, instance, registry, run_log_level="WARNING").drive(
                timeout_s=90, interval_s=0.3
            )
            events = instance.fetch_materializations(VIDEO_ASSET_KEY, limit=10).records
    assert {r.key: r.state for r in result.records} == {
        "comp-default": RecordState.MATERIALIZED,
        "comp-apimart": RecordState.MATERIALIZED,
    }
    assert {r.key: r.provider for r in result.records} == {
        "comp-default": "crun",
        "comp-apimart": "apimart",
    }
    assert {e.partition_key for e in events} == {"comp-default", "comp-apimart"}
    # A storage folder named videos holds the videos itself (issue 13 finding 9).
    assert (storage / "comp-default.mp4").stat().st_size > 0


# -- the dg command line, in a scaffolded project ------------------------------------------------


def _dg(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # A real project is installed in its venv; here its src/ is put on the path instead.
        "PYTHONPATH": str(project / "src"),
        "DAGSTER_HOME": str(project / ".dagster_home"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    (project / ".dagster_home").mkdir(exist_ok=True)
    (project / ".dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run(
        [str(BIN / "dg"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_dg_scaffold_and_check_defs(tmp_path: Path) -> None:
    project = tmp_path / "videoproj"
    package = project / "src" / "videoproj"
    (package / "defs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "definitions.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            from dagster import definitions, load_from_defs_folder


            @definitions
            def defs():
                return load_from_defs_folder(path_within_project=Path(__file__).parent)
            """
        )
    )
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "videoproj"
            version = "0.1.0"

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "videoproj"
            """
        )
    )
    # Found through the entry point, without naming omni_assets in the project.
    listed = _dg(project, "list", "components")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert TYPE in listed.stdout
    scaffolded = _dg(project, "scaffold", "defs", TYPE, "videos")
    assert scaffolded.returncode == 0, scaffolded.stdout + scaffolded.stderr
    folder = package / "defs" / "videos"
    assert (folder / "requests.yaml").exists()
    checked = _dg(project, "check", "defs")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    # A mistake in defs.yaml is reported by `dg check defs`, naming it.
    doc = yaml.safe_load((folder / "defs.yaml").read_text())
    doc["attributes"]["providers"] = {"runway": {}}
    (folder / "defs.yaml").write_text(yaml.safe_dump(doc))
    broken = _dg(project, "check", "defs")
    assert broken.returncode != 0
    assert "runway" in broken.stdout + broken.stderr
