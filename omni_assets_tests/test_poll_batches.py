"""A tick's finished videos go into a few bounded runs, so a big batch lands sooner."""

from __future__ import annotations

from pathlib import Path

from dagster import SensorResult, build_sensor_context, instance_for_test

from omni_assets.jobs import MATERIALIZE_JOB
from omni_assets.pipeline.runtime import OmniRuntime
from omni_assets.providers import get_provider
from omni_assets.providers.base import TaskRef, TaskState, TaskStatus
from omni_assets.registry import PollUpdate, RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest
from omni_assets.sensors import MAX_VIDEOS_PER_RUN, poll_tick
from omni_assets.storage import VideoStorage


def _ready(registry: Registry, n: int) -> list[str]:
    """``n`` APIMart requests whose tasks have finished (ready to download)."""
    keys = [f"v{i:03d}" for i in range(n)]
    registry.register(
        RegisterItem.for_request(
            VideoRequest(id=key, prompt=f"video {key}", provider="apimart"),
            "apimart",
            "Omni-Flash-Ext",
        )
        for key in keys
    )
    done = TaskStatus("apimart", "-", TaskState.SUCCEEDED, "completed", video_url="http://x/v.mp4")
    for key in keys:
        registry.begin_submit(key, f"idem-{key}")
        ref = TaskRef(
            "apimart", f"task-{key}", "Omni-Flash-Ext", 0.0, idempotency_key=f"idem-{key}"
        )
        registry.record_submitted(key, ref)
    registry.record_polls([PollUpdate.from_status(k, done) for k in keys])
    return keys


def test_finished_videos_are_split_into_even_runs_of_at_most_50(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    keys = _ready(registry, 2 * MAX_VIDEOS_PER_RUN + 1)
    client = get_provider("apimart", api_key="k", base_url="http://127.0.0.1:9/apimart")
    runtime = OmniRuntime(
        registry, VideoStorage(str(tmp_path / "s")), {"apimart": client}, "apimart"
    )
    with (
        instance_for_test(temp_dir=str(tmp_path)) as instance,
        build_sensor_context(instance=instance, sensor_name="omni_poll_sensor") as context,
    ):
        result = poll_tick(context, runtime)
    assert isinstance(result, SensorResult)
    runs = [r for r in result.run_requests or [] if r.job_name == MATERIALIZE_JOB]
    batches = [r.run_config["ops"]["materialize_ready_videos"]["config"] for r in runs]
    # 101 videos: three runs of 34/34/33 (not 50/50/1, which would land when a 50 does).
    assert [len(b["keys"]) for b in batches] == [34, 34, 33]
    assert sorted(k for b in batches for k in b["keys"]) == keys  # each video in one run
    for run, batch in zip(runs, batches, strict=True):
        assert run.tags["omni/videos"] == str(len(batch["keys"]))
        assert run.run_key == batch["claim_token"]
        for record in registry.get_many(batch["keys"]):
            assert (record.state, record.run_id) == (RecordState.MATERIALIZING, run.run_key)
