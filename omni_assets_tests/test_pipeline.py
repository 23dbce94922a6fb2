"""The Dagster layer through its public harnesses: sensors, jobs and the asset, on the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    SensorResult,
    SkipReason,
    build_sensor_context,
    materialize,
)

from omni_assets.assets import VIDEO_ASSET_KEY, omni_video_partitions
from omni_assets.cli.driver import LocalDriver
from omni_assets.registry import RecordState

from .pipeline_env import DEMO_DIR, PipelineEnv, pipeline_env

PRODUCT_PNG = str(DEMO_DIR / "product.png")


@pytest.fixture
def env(tmp_path: Path, fresh_emulator: Any) -> Any:
    with pipeline_env(tmp_path, fresh_emulator.url) as e:
        yield e


def _tick(e: PipelineEnv, name: str, cursor: str | None = None) -> Any:
    sensor = e.defs.resolve_sensor_def(name)
    with build_sensor_context(
        instance=e.instance, resources=e.defs.resources, cursor=cursor, sensor_name=name
    ) as context:
        return sensor(context), context


def _materializations(instance: DagsterInstance, key: str) -> list[Any]:
    records = instance.fetch_materializations(VIDEO_ASSET_KEY, limit=100).records
    return [r for r in records if r.partition_key == key]


@pytest.fixture
def default_defs(monkeypatch: pytest.MonkeyPatch) -> Definitions:
    """The default code location, loaded in emulator mode (it must be asked for: issue 13.5)."""
    import importlib

    monkeypatch.setenv("OMNI_PROVIDER", "emulator")
    import omni_assets.location

    return importlib.reload(omni_assets.location).defs


def test_default_definitions_load(default_defs: Definitions) -> None:
    Definitions.validate_loadable(default_defs)
    names = {s.name for s in default_defs.sensors or []}
    assert names == {
        "omni_requests_sensor",
        "omni_poll_sensor",
        "omni_lineage_sensor",
        "omni_reconcile_sensor",  # re-reports stored videos a new instance lacks (issue 13.2)
    }
    assert default_defs.resolve_assets_def(VIDEO_ASSET_KEY).partitions_def == omni_video_partitions


def test_the_default_location_holds_only_omni_assets_own_assets(
    default_defs: Definitions,
) -> None:
    """The example upstream asset lives in its own location (issue 13 finding 4)."""
    from omni_assets.examples import defs as example_defs

    def asset_names(defs: Definitions) -> set[str]:
        return {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}

    assert asset_names(default_defs) == {
        "omni_video",
        "source_images",
        "omni_requests",
        "omni_lineage",
        "omni_spend",
    }
    Definitions.validate_loadable(example_defs)
    assert asset_names(example_defs) == {
        "omni_video",
        "source_images",
        "omni_lineage",
        "omni_requests",
        "omni_spend",
        "product_catalog_prompts",
        "product_catalog_prompts_video_requests",
    }


def test_requests_sensor_registers_valid_and_reports_invalid(env: PipelineEnv) -> None:
    env.write_requests(
        [
            {
                "id": "ok-text",
                "prompt": "a red apple",
                "provider": "apimart",
                "model": "Omni-Flash-Ext",
                "duration": 4,
            },
            {
                "id": "bad-duration",
                "prompt": "x",
                "provider": "toapis",
                "model": "gemini_omni",
                "duration": 8,
            },
            {"id": "bad-field", "prompt": "x", "colour": "red"},
        ]
    )
    result, context = _tick(env, "omni_requests_sensor")
    assert isinstance(result, SensorResult)
    (add,) = result.dynamic_partitions_requests
    assert list(add.partition_keys) == ["ok-text"]
    assert context.cursor
    record = env.registry.get("ok-text")
    assert record is not None and record.state == RecordState.PENDING
    assert env.registry.get("bad-duration") is None
    # Unchanged file: the next tick skips without work.
    again, _ = _tick(env, "omni_requests_sensor", cursor=context.cursor)
    assert isinstance(again, SkipReason)


def test_sensor_flow_materializes_every_provider_in_batched_runs(env: PipelineEnv) -> None:
    env.write_requests(
        [
            {
                "id": "a-apimart",
                "prompt": "a boat",
                "provider": "apimart",
                "model": "Omni-Flash-Ext",
                "duration": 4,
            },
            {
                "id": "b-jimmy",
                "prompt": "a fox wakes",
                "provider": "jimmyai",
                "images": [PRODUCT_PNG],
                "mode": "frame",
                "duration": 4,
            },
            {
                "id": "c-toapis",
                "prompt": "fusion",
                "provider": "toapis",
                "model": "gemini_omni_flash",
                "images": [PRODUCT_PNG] * 3,
                "duration": 4,
            },
            {
                "id": "d-crun",
                "prompt": "skyline",
                "provider": "crun",
                "aspect_ratio": "9:16",
                "duration": 4,
            },
        ],
        aspect_ratio="16:9",
    )
    driver = LocalDriver(env.defs, env.instance, env.registry)
    result = driver.drive(timeout_s=120, interval_s=0.3)
    states = {r.key: r.state for r in result.records}
    assert states == dict.fromkeys(states, RecordState.MATERIALIZED), states
    # Batched: one materialize run per provider per tick with finished tasks, tagged with it.
    runs = env.instance.get_runs()
    materialize_runs = [r for r in runs if r.job_name == "omni_materialize"]
    assert 1 <= len(materialize_runs) <= 4 * result.ticks
    provider_of = {r.key: r.provider for r in result.records}
    for run in materialize_runs:
        keys = run.run_config["ops"]["materialize_ready_videos"]["config"]["keys"]
        assert {provider_of[k] for k in keys} == {run.tags["omni/provider"]}
    for key in states:
        (event,) = _materializations(env.instance, key)
        meta = event.asset_materialization.metadata
        assert meta["dagster/uri"].value.endswith(f"videos/{key}.mp4")
        assert meta["provider"].value == key.split("-")[1].replace("jimmy", "jimmyai")
        assert meta["task_id"].value
        assert meta["sha256"].value == event.asset_materialization.tags["dagster/data_version"]
        with av.open(str(env.storage.video_path(key))) as container:
            assert container.streams.video[0].frames > 0 or container.duration
        sidecar = env.storage.read_json(env.storage.sidecar_path(key))
        assert sidecar["task_id"] == meta["task_id"].value
    # Each partition's checks were evaluated in the materialize runs.
    evaluations = [
        e.dagster_event.event_specific_data
        for run in materialize_runs
        for e in env.instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    outcomes = {(ev.partition, ev.check_name): ev.passed for ev in evaluations}
    assert outcomes == {(k, c): True for k in states for c in ("plays", "matches_request")}
    crun = _materializations(env.instance, "d-crun")[0].asset_materialization.metadata
    w, h = map(int, crun["resolution"].value.split("x"))
    assert h > w  # 9:16 came back portrait


def test_failed_task_is_recorded_on_its_partition(env: PipelineEnv, emulator: Any) -> None:
    emulator.configure(rate_task_failed=1.0)
    env.write_requests(
        [
            {
                "id": "doomed",
                "prompt": "x",
                "provider": "apimart",
                "model": "Omni-Flash-Ext",
                "duration": 4,
            }
        ]
    )
    driver = LocalDriver(env.defs, env.instance, env.registry)
    result = driver.drive(timeout_s=60, interval_s=0.3)
    (record,) = result.records
    assert record.state == RecordState.FAILED
    assert record.error and record.error.get("message")
    observations = env.instance.fetch_observations(VIDEO_ASSET_KEY, limit=10).records
    (obs,) = [o for o in observations if o.partition_key == "doomed"]
    meta = obs.asset_observation.metadata
    assert meta["task_id"].value == record.task_id
    assert meta["reason"].value == record.error["message"]
    # Not resubmitted on later ticks.
    created = emulator.audit()["tasks"]
    driver.tick("omni_poll_sensor")
    assert emulator.audit()["tasks"] == created


def test_blocking_path_materializes_one_partition(env: PipelineEnv) -> None:
    env.write_requests(
        [
            {
                "id": "blocking",
                "prompt": "a kite",
                "provider": "toapis",
                "model": "gemini_omni",
                "duration": 6,
            }
        ]
    )
    _tick(env, "omni_requests_sensor")
    env.instance.add_dynamic_partitions("omni_video", ["blocking"])
    video = env.defs.resolve_assets_def(VIDEO_ASSET_KEY)
    result = materialize([video], partition_key="blocking", instance=env.instance)
    assert result.success
    (mat,) = result.asset_materializations_for_node("omni_video")
    assert mat.metadata["duration_s"].value == pytest.approx(6, abs=1.0)
    checks = result.get_asset_check_evaluations()
    assert {c.check_name: c.passed for c in checks} == {"plays": True, "matches_request": True}
    assert env.registry.get("blocking").state == RecordState.MATERIALIZED  # type: ignore[union-attr]


def test_changed_request_never_reuses_old_video(env: PipelineEnv) -> None:
    env.write_requests(
        [
            {
                "id": "same-key",
                "prompt": "first version",
                "provider": "apimart",
                "model": "Omni-Flash-Ext",
                "duration": 4,
            }
        ]
    )
    driver = LocalDriver(env.defs, env.instance, env.registry)
    first = driver.drive(timeout_s=60, interval_s=0.3).records[0]
    env.write_requests(
        [
            {
                "id": "same-key",
                "prompt": "second version",
                "provider": "apimart",
                "model": "Omni-Flash-Ext",
                "duration": 4,
            }
        ]
    )
    second = driver.drive(timeout_s=60, interval_s=0.3).records[0]
    assert second.state == RecordState.MATERIALIZED
    assert second.fingerprint != first.fingerprint
    assert second.task_id != first.task_id
    sidecar = env.storage.read_json(env.storage.sidecar_path("same-key"))
    assert sidecar["request"]["prompt"] == "second version"
    # The first video is kept beside it, named by its content fingerprint.
    archived = env.storage.read_json(
        env.storage.sidecar_path("same-key").replace(".json", f"@{first.fingerprint[:12]}.json")
    )
    assert archived["request"]["prompt"] == "first version"
    assert archived["task_id"] == first.task_id


def test_upstream_asset_requests_become_partitions(env: PipelineEnv) -> None:
    from omni_assets.definitions import build_definitions
    from omni_assets.examples import product_catalog_prompts
    from omni_assets.resources import OmniRegistryResource, OmniStorageResource

    defs = build_definitions(
        storage=OmniStorageResource(url=env.env["OMNI_STORAGE_URL"]),
        registry=OmniRegistryResource(url=env.env["OMNI_REGISTRY_URL"]),
        upstream_requests=["product_catalog_prompts"],
        extra_assets=[product_catalog_prompts],
    )
    intake = defs.resolve_assets_def(AssetKey("product_catalog_prompts_video_requests"))
    result = materialize([product_catalog_prompts, intake], instance=env.instance)
    assert result.success
    keys = env.instance.get_dynamic_partitions("omni_video")
    assert set(keys) == {"catalog-teapot", "catalog-sneaker"}
    assert all(env.registry.get(k) is not None for k in keys)


def test_workspace_validates_with_the_dagster_cli() -> None:
    """What `dagster dev` in the repository root loads (in emulator mode, asked for)."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).parent.parent
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            str(repo / "workspace.yaml"),
        ],
        cwd=repo,
        env={**os.environ, "OMNI_PROVIDER": "emulator"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "Validation successful for code location omni_assets.location" in done.stdout + done.stderr
    )


def test_an_idle_poll_tick_logs_nothing(
    env: PipelineEnv, capfd: pytest.CaptureFixture[str]
) -> None:
    """Nothing in flight, nothing to launch: the tick is skipped without a log line (issue 13
    finding 9: "polled 0 in 0.00s" once a second was most of a run's log)."""
    result, _ = _tick(env, "omni_poll_sensor")
    assert isinstance(result, SkipReason) and "polled 0" in (result.skip_message or "")
    assert "polled" not in capfd.readouterr().err
