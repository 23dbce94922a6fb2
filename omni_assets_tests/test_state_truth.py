"""The registry and storage are the truth, the Dagster instance a view (issue 13 findings 1-3).

* a new instance is reconciled: every finished video is reported again, same metadata, marked;
* "Materialize" on a finished partition reports its stored video again, without paying; on a
  failed one it says how to retry, without paying;
* a lost registry takes the stored video (or its task) over instead of paying again.

All on the emulator over real HTTP; its audit counts the tasks created and the downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, build_sensor_context, instance_for_test, materialize

from omni_assets.assets import RE_REPORTED, VIDEO_ASSET_KEY
from omni_assets.cli.driver import LocalDriver
from omni_assets.definitions import build_definitions
from omni_assets.reconcile import RECONCILE_SENSOR
from omni_assets.registry import RecordState
from omni_assets.resources import OmniRegistryResource, OmniStorageResource
from omni_assets.settings import Settings

from .pipeline_env import DEMO_DIR, PipelineEnv, pipeline_env, temporary_env

REQUESTS = [
    {"id": "kite", "prompt": "a kite", "provider": "toapis", "model": "gemini_omni", "duration": 6},
    {
        "id": "shoe",
        "prompt": "a shoe turning",
        "provider": "apimart",
        "model": "Omni-Flash-Ext",
        "images": [str(DEMO_DIR / "product.png")],
        "duration": 4,
    },
]
MARKERS = {RE_REPORTED, "re_reported_because"}


@pytest.fixture
def env(tmp_path: Path, fresh_emulator: Any) -> Any:
    with pipeline_env(tmp_path, fresh_emulator.url) as e:
        e.write_requests(REQUESTS)
        yield e


def _drive(e: PipelineEnv, instance: DagsterInstance | None = None) -> None:
    driver = LocalDriver(e.defs, instance or e.instance, e.registry, run_log_level="WARNING")
    result = driver.drive(timeout_s=90, interval_s=0.3)
    assert result.ok, [(r.key, r.state, r.error) for r in result.records]


def _latest_metadata(instance: DagsterInstance) -> dict[str, dict[str, Any]]:
    records = instance.fetch_materializations(VIDEO_ASSET_KEY, limit=100).records
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: r.storage_id):
        assert r.partition_key is not None and r.asset_materialization is not None
        out[r.partition_key] = dict(r.asset_materialization.metadata)
    return out


def _counts(emulator: Any) -> tuple[int, int]:
    audit = emulator.audit()
    return len(audit["tasks"]), len(audit["downloads"])


def test_a_new_instance_shows_every_finished_video_again(
    env: PipelineEnv, fresh_emulator: Any
) -> None:
    _drive(env)
    before = _latest_metadata(env.instance)
    assert set(before) == {"kite", "shoe"}
    paid = _counts(fresh_emulator)

    # The instance is deleted (a `dagster dev` temporary home); registry and storage stay.
    with instance_for_test() as fresh:
        assert fresh.get_materialized_partitions(VIDEO_ASSET_KEY) == set()
        sensor = env.defs.resolve_sensor_def(RECONCILE_SENSOR)
        with build_sensor_context(
            instance=fresh, resources=env.defs.resources, sensor_name=RECONCILE_SENSOR
        ) as context:
            tick = sensor(context)
        assert "2 videos reported again" in str(tick.skip_message)  # type: ignore[union-attr]
        assert fresh.get_materialized_partitions(VIDEO_ASSET_KEY) == {"kite", "shoe"}
        assert set(fresh.get_dynamic_partitions("omni_video")) == {"kite", "shoe"}
        after = _latest_metadata(fresh)
        for key, meta in before.items():
            assert after[key][RE_REPORTED].value is True
            assert {k: v for k, v in after[key].items() if k not in MARKERS} == meta, key
        # Once shown, nothing more to report; and nothing was paid or downloaded.
        with build_sensor_context(
            instance=fresh, resources=env.defs.resources, sensor_name=RECONCILE_SENSOR
        ) as context:
            assert "0 videos reported again" in str(sensor(context).skip_message)  # type: ignore[union-attr]
    assert _counts(fresh_emulator) == paid


def test_materialize_on_a_finished_partition_reports_it_again_without_paying(
    env: PipelineEnv, fresh_emulator: Any
) -> None:
    _drive(env)
    before = _latest_metadata(env.instance)["kite"]
    paid = _counts(fresh_emulator)
    video = env.defs.resolve_assets_def(VIDEO_ASSET_KEY)
    result = materialize([video], partition_key="kite", instance=env.instance)
    assert result.success
    (mat,) = result.asset_materializations_for_node("omni_video")
    assert mat.metadata[RE_REPORTED].value is True
    assert mat.metadata["sha256"] == before["sha256"]
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()} == {
        "plays": True,
        "matches_request": True,
    }
    assert _counts(fresh_emulator) == paid  # no new task, no download
    assert env.registry.get("kite").state is RecordState.MATERIALIZED  # type: ignore[union-attr]


def test_materialize_on_a_failed_partition_says_how_to_retry_without_paying(
    env: PipelineEnv, fresh_emulator: Any
) -> None:
    fresh_emulator.configure(rate_task_failed=1.0)
    env.write_requests(REQUESTS[:1])
    driver = LocalDriver(env.defs, env.instance, env.registry, run_log_level="WARNING")
    driver.drive(timeout_s=60, interval_s=0.3)
    assert env.registry.get("kite").state is RecordState.FAILED  # type: ignore[union-attr]
    paid = _counts(fresh_emulator)
    video = env.defs.resolve_assets_def(VIDEO_ASSET_KEY)
    result = materialize([video], partition_key="kite", instance=env.instance, raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "omni-assets retry kite" in message
    assert _counts(fresh_emulator) == paid


def _defs_on_new_registry(e: PipelineEnv, url: str) -> Any:
    return build_definitions(
        settings=Settings.from_env(),
        storage=OmniStorageResource(url=str(e.storage.url)),
        registry=OmniRegistryResource(url=url),
        poll_interval_s=1,
    )


def test_a_lost_registry_reuses_the_stored_video_in_the_blocking_path(
    env: PipelineEnv, fresh_emulator: Any, tmp_path: Path
) -> None:
    _drive(env)
    paid = _counts(fresh_emulator)
    # Another registry (lost, or another DAGSTER_HOME): the UI's "Materialize" on each partition.
    url = f"sqlite:///{tmp_path / 'other-registry.db'}"
    with temporary_env(OMNI_REGISTRY_URL=url):
        defs = _defs_on_new_registry(env, url)
        sensor = defs.resolve_sensor_def("omni_requests_sensor")
        with build_sensor_context(
            instance=env.instance, resources=defs.resources, sensor_name="omni_requests_sensor"
        ) as context:
            sensor(context)
        video = defs.resolve_assets_def(VIDEO_ASSET_KEY)
        for key in ("kite", "shoe"):
            result = materialize([video], partition_key=key, instance=env.instance)
            assert result.success, key
    assert _counts(fresh_emulator) == paid  # 0 new tasks, 0 downloads


def test_a_lost_registry_takes_over_the_task_of_a_deleted_video(
    env: PipelineEnv, fresh_emulator: Any, tmp_path: Path
) -> None:
    _drive(env)
    tasks, downloads = _counts(fresh_emulator)
    kite = env.registry.get("kite")
    assert kite is not None
    Path(env.storage.video_path("kite")).unlink()  # the sidecar stays
    url = f"sqlite:///{tmp_path / 'other-registry.db'}"
    with temporary_env(OMNI_REGISTRY_URL=url):
        defs = _defs_on_new_registry(env, url)
        other = defs.resources["omni_registry"].get_registry()
        _drive(PipelineEnv(**{**env.__dict__, "defs": defs, "registry": other}))
        record = other.get("kite")
        assert record is not None and record.state is RecordState.MATERIALIZED
        assert record.task_id == kite.task_id  # the earlier task, not a new one
        assert other.get("shoe").task_id == env.registry.get("shoe").task_id  # type: ignore[union-attr]
    # No new task; the deleted video downloaded again from its task, the other one reused.
    assert _counts(fresh_emulator) == (tasks, downloads + 1)
    assert Path(env.storage.video_path("kite")).exists()
