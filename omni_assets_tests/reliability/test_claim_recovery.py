"""Claims left by a process that died between the poll sensor's tick and launching its runs.

The sensor claims finished videos for a run it asks for; if the run is never created (the
process driving it was killed right after the tick) the claim must not hold the video for
long: two minutes on, the next tick frees it and claims it for a run of its own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from dagster import SensorResult, build_sensor_context

from omni_assets.providers.base import TaskRef
from omni_assets.registry import PollUpdate, RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest

from ..pipeline_env import PipelineEnv, pipeline_env

pytestmark = pytest.mark.reliability


def _ready(registry: Registry, key: str) -> None:
    request = VideoRequest(id=key, prompt=f"claims {key}", duration=4)
    registry.register([RegisterItem.for_request(request, "apimart", "Omni-Flash-Ext")])
    assert registry.begin_submit(key, f"idem-{key}")
    registry.record_submitted(key, TaskRef("apimart", f"task-{key}", "Omni-Flash-Ext", time.time()))
    update = PollUpdate(
        key, RecordState.READY, video_url="http://127.0.0.1:9/v.mp4", remote_done_at=1.0
    )
    registry.record_polls([update])


def _poll_tick(env: PipelineEnv) -> Any:
    sensor = env.defs.resolve_sensor_def("omni_poll_sensor")
    with build_sensor_context(
        instance=env.instance, resources=env.defs.resources, sensor_name="omni_poll_sensor"
    ) as context:
        return sensor(context)


def test_a_claim_whose_run_never_started_is_freed(tmp_path: Path, fresh_emulator: Any) -> None:
    with pipeline_env(tmp_path, fresh_emulator.url) as env:
        for key in ("orphaned", "fresh"):
            _ready(env.registry, key)
        past = Registry(env.env["OMNI_REGISTRY_URL"], clock=lambda: time.time() - 125)
        assert past.claim(["orphaned"], "materialize-never-launched") == ["orphaned"]
        assert env.registry.claim(["fresh"], "materialize-launching-now") == ["fresh"]
        result = _poll_tick(env)
        assert isinstance(result, SensorResult)
        (run,) = result.run_requests
        assert run.run_config["ops"]["materialize_ready_videos"]["config"]["keys"] == ["orphaned"]
        fresh = env.registry.get("fresh")
        assert fresh is not None and fresh.run_id == "materialize-launching-now"
        past.close()
