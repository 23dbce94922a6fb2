"""Scheduled refresh through ``build_schedule_context``: new partitions, history, retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    DagsterInstance,
    Definitions,
    RunRequest,
    SkipReason,
    build_schedule_context,
)

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli.driver import LocalDriver
from omni_assets.definitions import build_definitions
from omni_assets.lineage.graph import build_graph
from omni_assets.pipeline.chain import REFRESH_TAG
from omni_assets.pipeline.refresh import RefreshConfig, plan_refresh, refresh_key
from omni_assets.registry import RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest
from omni_assets.resources import OmniRegistryResource, OmniStorageResource
from omni_assets.schedules import REFRESH_SCHEDULE
from omni_assets.settings import Settings

from .pipeline_env import PipelineEnv, pipeline_env

CONFIG = RefreshConfig(cron="0 * * * *", keys=("cat-*", "gone"), keep=1)


def _at(hour: int) -> datetime:
    return datetime(2026, 9, 22, hour, 0, tzinfo=timezone.utc)


@pytest.fixture
def env(tmp_path: Path, fresh_emulator: Any) -> Iterator[PipelineEnv]:
    with pipeline_env(tmp_path, fresh_emulator.url) as e:
        e.defs = build_definitions(
            settings=Settings.from_env(),
            storage=OmniStorageResource(url=e.env["OMNI_STORAGE_URL"]),
            registry=OmniRegistryResource(url=e.env["OMNI_REGISTRY_URL"]),
            poll_interval_s=1,
            refresh=CONFIG,
        )
        yield e


def _tick(defs: Definitions, instance: DagsterInstance, when: datetime) -> Any:
    schedule = defs.resolve_schedule_def(REFRESH_SCHEDULE)
    with build_schedule_context(
        instance=instance, resources=defs.resources, scheduled_execution_time=when
    ) as context:
        return schedule(context)


def _drive(env: PipelineEnv) -> None:
    driver = LocalDriver(env.defs, env.instance, env.registry, run_log_level="WARNING")
    result = driver.drive(timeout_s=120, interval_s=0.3)
    assert result.ok, {r.key: r.state.value for r in result.records}


def test_refresh_schedule_adds_versions_and_keeps_history(
    env: PipelineEnv, fresh_emulator: Any
) -> None:
    env.write_requests(
        [
            {"id": "cat-walk", "prompt": "a cat walks", "provider": "apimart"},
            {"id": "dog-walk", "prompt": "a dog walks", "provider": "apimart"},
        ]
    )
    _drive(env)
    base = env.registry.get("cat-walk")
    assert base is not None

    first = _tick(env.defs, env.instance, _at(6))
    assert isinstance(first, RunRequest)
    assert first.run_key == "refresh-202609220600"
    v1 = refresh_key("cat-walk", _at(6))
    assert v1 == "cat-walk.r202609220600"
    record = env.registry.get(v1)
    assert record is not None and record.state is RecordState.PENDING
    assert record.request["tags"] == {REFRESH_TAG: "cat-walk"}
    assert record.fingerprint == base.fingerprint  # same request, regenerated
    assert env.instance.has_dynamic_partition("omni_video", v1)
    assert env.registry.get(refresh_key("dog-walk", _at(6))) is None  # not named

    # The same tick evaluated again (a daemon restart) adds nothing.
    assert isinstance(_tick(env.defs, env.instance, _at(6)), SkipReason)

    tasks_before = len(fresh_emulator.audit()["tasks"])
    _drive(env)
    refreshed = env.registry.get(v1)
    assert refreshed is not None and refreshed.state is RecordState.MATERIALIZED
    # A new paid generation, not a replay of the original task (same content, other key).
    assert len(fresh_emulator.audit()["tasks"]) == tasks_before + 1
    assert refreshed.task_id != base.task_id
    records = env.instance.fetch_materializations(VIDEO_ASSET_KEY, limit=20).records
    (event,) = [r for r in records if r.partition_key == v1]
    assert "(/assets/omni_video?partition=cat-walk)" in (
        event.asset_materialization.metadata["refresh_of"].value
    )
    assert env.storage.read_json(env.storage.sidecar_path(v1))["refresh_of"] == "cat-walk"

    # 07:00 registers v2; 08:00 comes while v2 is still pending: no pile-up of paid tasks.
    assert isinstance(_tick(env.defs, env.instance, _at(7)), RunRequest)
    v2 = refresh_key("cat-walk", _at(7))
    skipped = _tick(env.defs, env.instance, _at(8))
    assert isinstance(skipped, SkipReason)
    assert f"{v2} is still pending" in str(skipped.skip_message)
    _drive(env)

    # 09:00: v3 is registered; keep=1 keeps v2 (the newest materialized) and prunes v1.
    assert isinstance(_tick(env.defs, env.instance, _at(9)), RunRequest)
    v3 = refresh_key("cat-walk", _at(9))
    assert not env.storage.exists(env.storage.video_path(v1))
    assert "pruned_at" in env.storage.read_json(env.storage.sidecar_path(v1))
    assert not env.instance.has_dynamic_partition("omni_video", v1)
    assert env.registry.get(v1) is not None  # the registry keeps the record and its history
    for kept in ("cat-walk", v2):
        assert env.storage.exists(env.storage.video_path(kept))
        assert env.instance.has_dynamic_partition("omni_video", kept)
    # Dagster's event log keeps v1's materialization (thumbnail and all).
    records = env.instance.fetch_materializations(VIDEO_ASSET_KEY, limit=50).records
    assert any(r.partition_key == v1 for r in records)

    # The lineage shows every version, the pruned one marked.
    graph = build_graph(
        env.registry.records(), env.storage, env.instance.get_dynamic_partitions("omni_video")
    )
    versions = graph.versions("cat-walk")
    assert [v.key for v in versions] == ["cat-walk", v1, v2, v3]
    assert [v.pruned for v in versions] == [False, True, False, False]


def test_refresh_config_from_env() -> None:
    assert RefreshConfig.from_env({}) is None
    config = RefreshConfig.from_env(
        {
            "OMNI_REFRESH_CRON": "0 6 * * *",
            "OMNI_REFRESH_KEYS": " a, b-* ,",
            "OMNI_REFRESH_KEEP": "3",
        }
    )
    assert config == RefreshConfig(cron="0 6 * * *", keys=("a", "b-*"), keep=3)
    assert config.matches("b-7") and not config.matches("c")
    with pytest.raises(ValueError, match="OMNI_REFRESH_KEYS is empty"):
        RefreshConfig.from_env({"OMNI_REFRESH_CRON": "0 6 * * *"})
    with pytest.raises(ValueError, match="OMNI_REFRESH_KEEP='-1'"):
        RefreshConfig.from_env(
            {"OMNI_REFRESH_CRON": "0 6 * * *", "OMNI_REFRESH_KEYS": "a", "OMNI_REFRESH_KEEP": "-1"}
        )


def test_default_definitions_take_the_schedule_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMNI_PROVIDER", "emulator")
    monkeypatch.setenv("OMNI_REFRESH_CRON", "30 5 * * 1")
    monkeypatch.setenv("OMNI_REFRESH_KEYS", "catalog-*")
    defs = build_definitions(storage=OmniStorageResource(url="/tmp/unused"))
    Definitions.validate_loadable(defs)
    schedule = defs.resolve_schedule_def(REFRESH_SCHEDULE)
    assert schedule.cron_schedule == "30 5 * * 1"
    assert schedule.job_name == "omni_submit"
    monkeypatch.delenv("OMNI_REFRESH_CRON")
    assert not list(
        build_definitions(storage=OmniStorageResource(url="/tmp/unused")).schedules or []
    )


def test_unmatched_and_too_long_keys_are_reported(env: PipelineEnv) -> None:
    long_key = "cat-" + "x" * 70
    env.write_requests([{"id": long_key, "prompt": "long", "provider": "apimart"}])
    _drive(env)
    result = _tick(env.defs, env.instance, _at(6))
    assert isinstance(result, SkipReason)
    message = str(result.skip_message)
    assert "gone" in message and "no registered request has this id" in message
    assert "longer than 66 characters" in message


def test_a_request_whose_last_submit_has_an_unknown_outcome_is_not_refreshed(
    tmp_path: Path,
) -> None:
    """Its POST may have made a paid task: a refresh would pay for the same content again."""
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    request = VideoRequest(id="cat-walk", prompt="a cat walking", provider="crun")
    registry.register([RegisterItem.for_request(request, "crun", "google/gemini-omni")])
    assert registry.begin_submit("cat-walk", "idem")
    registry.record_submit_error("cat-walk", {"error": "SubmitOutcomeUnknown"}, "unknown")
    (record,) = registry.records()
    assert record.state is RecordState.UNKNOWN and record.state.settled
    plan = plan_refresh([record], CONFIG, _at(6))
    assert plan.requests == []
    assert plan.skipped["cat-walk"] == "cat-walk is still unknown"
