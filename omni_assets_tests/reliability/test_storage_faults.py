"""Storage faults: the S3 server down and restarted mid-run; a full local disk (a small tmpfs).

Both run through the real sensors and jobs (:class:`LocalDriver`). While storage is failing the
materialize runs fail with an error that says what happened, no request is lost (each goes back
to ``ready``), and nothing incomplete appears at a final path; once storage is back a later run
completes every video.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from omni_assets.cli.driver import LocalDriver
from omni_assets.jobs import MATERIALIZE_JOB
from omni_assets.registry import RecordState
from omni_assets.storage import VideoStorage

from ..pipeline_env import PipelineEnv, pipeline_env
from ..servers import SeaweedS3, require_system
from .harness import EmulatorProcess, final_path_problems, record_figures

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """1.5 MB videos: big enough to fill a small disk, quick to move."""
    log_dir = tmp_path_factory.mktemp("emulator")
    with EmulatorProcess(
        log_dir, generation_seconds=0.3, video_padding_bytes=1_500_000, seed=3
    ) as emu:
        yield emu


def _requests(tag: str, count: int) -> list[dict[str, Any]]:
    shapes: list[dict[str, Any]] = [
        {"provider": "apimart", "model": "Omni-Flash-Ext", "duration": 4},
        {"provider": "crun", "duration": 4},
        {"provider": "toapis", "model": "gemini_omni_flash", "duration": 4},
        {"provider": "jimmyai", "duration": 4},
    ]
    return [
        {"id": f"{tag}-{i}", "prompt": f"{tag} {i}: a quiet harbour", **shapes[i % 4]}
        for i in range(count)
    ]


def _failed_materialize_errors(instance: DagsterInstance) -> list[str]:
    """What each failed omni_materialize run told the user: its error logs and step failure."""
    runs = instance.get_runs(
        RunsFilter(job_name=MATERIALIZE_JOB, statuses=[DagsterRunStatus.FAILURE])
    )
    out = []
    for run in runs:
        said = []
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is not None and event.event_type_value == "STEP_FAILURE":
                error = event.step_failure_data.error
                said.append(error.message if error else "")
            elif entry.level >= logging.ERROR:
                said.append(entry.user_message)
        out.append(" | ".join(said))
    return out


def _settle_to_ready(env: PipelineEnv, driver: LocalDriver, ticks: int) -> None:
    """Submit and poll until every request is ready (or further), without storage."""
    driver.tick("omni_requests_sensor")
    for _ in range(ticks):
        records = env.registry.records()
        if (
            records
            and all(r.state is not RecordState.PENDING for r in records)
            and all(r.state is not RecordState.IN_FLIGHT for r in records)
        ):
            return
        driver.tick("omni_poll_sensor")


def _submit_all(env: PipelineEnv, driver: LocalDriver, ticks: int) -> None:
    """Submit every request (nothing is paid for while storage is known to be down)."""
    driver.tick("omni_requests_sensor")
    for _ in range(ticks):
        records = env.registry.records()
        if records and all(r.state is not RecordState.PENDING for r in records):
            return
        driver.tick("omni_poll_sensor")


def _s3_problems(storage: VideoStorage) -> list[str]:
    """Every final video object must have its sidecar and match its sha256."""
    import hashlib
    import json

    fs, folder = storage.fs, f"{storage.root}/videos"
    if not fs.exists(folder):
        return []
    problems = []
    for path in fs.find(folder):
        if ".partial-" in path:
            problems.append(f"{path}: temporary object left behind")
        elif path.endswith(".mp4"):
            sidecar = path[: -len(".mp4")] + ".json"
            if not fs.exists(sidecar):
                continue  # complete (verified before the move); its sidecar comes with a retry
            meta = json.loads(fs.cat_file(sidecar))
            if hashlib.sha256(fs.cat_file(path)).hexdigest() != meta["sha256"]:
                problems.append(f"{path}: content does not match its sidecar")
    return problems


def test_s3_down_mid_run_then_back(
    s3_server: SeaweedS3, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    url = s3_server.url(f"storage-faults-{uuid.uuid4().hex[:8]}")
    options = dict(s3_server.storage_options)
    # Fail fast while the server is down (botocore's default: 5 attempts over ~10 s).
    options["config_kwargs"] = {**options["config_kwargs"], "retries": {"max_attempts": 2}}
    with pipeline_env(tmp_path, emulator.url, storage_url=url, storage_options=options) as env:
        env.write_requests(_requests("s3", 8))
        driver = LocalDriver(env.defs, env.instance, env.registry, run_log_level="CRITICAL")
        # Submitted while storage is up: a submit run checks storage before paying.
        _submit_all(env, driver, ticks=40)
        try:
            s3_server.kill()  # the object store goes away while tasks are generating
            _settle_to_ready(env, driver, ticks=40)
            driver.tick("omni_poll_sensor")  # claims the finished videos: a materialize run
            during = {r.key: r.state for r in env.registry.records()}
        finally:
            s3_server.start()
        errors = _failed_materialize_errors(env.instance)
        # Nothing lost: every video is waiting to be downloaded again.
        assert set(during.values()) <= {RecordState.READY, RecordState.MATERIALIZING}, during
        assert errors and all("Could not connect to the endpoint URL" in e for e in errors)
        assert not _s3_problems(env.storage)
        result = driver.drive(timeout_s=120, interval_s=0.5)
        assert result.ok, [(r.key, r.state.value, r.error) for r in result.records]
        assert not _s3_problems(env.storage)
        for record in result.records:
            assert env.storage.exists(env.storage.sidecar_path(record.key))
    record_figures(
        "s3_outage",
        requests=len(result.records),
        failed_runs_while_down=len(errors),
        lost=0,
        materialized_after_restart=sum(r.state is RecordState.MATERIALIZED for r in result.records),
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (root only): room for two 1.5 MB videos, not four."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    require_system("mount -t tmpfs (root with CAP_SYS_ADMIN)", mounted.returncode == 0)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_full_disk_then_space_again(
    small_disk: Path, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    with pipeline_env(tmp_path, emulator.url, storage_url=str(small_disk)) as env:
        env.write_requests(_requests("disk", 6))
        driver = LocalDriver(env.defs, env.instance, env.registry, run_log_level="CRITICAL")
        _settle_to_ready(env, driver, ticks=40)
        driver.tick("omni_poll_sensor")  # one materialize run for all six: the disk fills up
        during = {r.key: r.state for r in env.registry.records()}
        errors = _failed_materialize_errors(env.instance)
        problems, partials = final_path_problems(small_disk / "videos")
        stored = sum(s is RecordState.MATERIALIZED for s in during.values())
        assert 0 < stored < 6, during
        assert set(during.values()) <= {RecordState.MATERIALIZED, RecordState.READY}, during
        assert errors and all("No space left on device" in e for e in errors)
        assert not [p for p in problems if "without a sidecar" not in p] and partials == 0
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        result = driver.drive(timeout_s=120, interval_s=0.5)
        assert result.ok, [(r.key, r.state.value, r.error) for r in result.records]
        assert final_path_problems(small_disk / "videos") == ([], 0)
    record_figures(
        "full_disk",
        requests=6,
        stored_before_full=stored,
        lost=0,
        materialized_after_space=sum(r.state is RecordState.MATERIALIZED for r in result.records),
    )
