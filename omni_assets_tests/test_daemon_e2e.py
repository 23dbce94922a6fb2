"""End to end through the real Dagster daemon: sensors tick, runs launch as processes, videos land.

The daemon loads the repository's own ``workspace.yaml`` and ``omni_assets.location``; the
test only sets the documented environment variables and watches the outcome, as a user would.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import av
import fsspec
import pytest
import yaml
from dagster import DagsterInstance

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.registry import RecordState, Registry

from .pipeline_env import DEMO_DIR
from .servers import ChildProcess

REPO = Path(__file__).parent.parent
BIN = Path(sys.executable).parent

REQUESTS = [
    {
        "id": "e2e-apimart",
        "prompt": "a paper boat",
        "provider": "apimart",
        "model": "Omni-Flash-Ext",
        "duration": 4,
    },
    {
        "id": "e2e-jimmyai",
        "prompt": "the product turns",
        "provider": "jimmyai",
        "images": [str(DEMO_DIR / "product.png")],
        "mode": "frame",
        "duration": 4,
    },
    {
        "id": "e2e-crun",
        "prompt": "a skyline",
        "provider": "crun",
        "aspect_ratio": "9:16",
        "duration": 4,
    },
]


def _run_daemon(tmp_path: Path, env_extra: dict[str, str], timeout_s: float = 240) -> Registry:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    requests = tmp_path / "requests.yaml"
    requests.write_text(yaml.safe_dump({"requests": REQUESTS}))
    registry_url = f"sqlite:///{tmp_path / 'registry.db'}"
    env = {
        **os.environ,
        **env_extra,
        "DAGSTER_HOME": str(home),
        "OMNI_REQUESTS": str(requests),
        "OMNI_REGISTRY_URL": registry_url,
        "OMNI_PROVIDER": "emulator",
        "OMNI_POLL_SENSOR_INTERVAL_S": "1",
    }
    proc = ChildProcess(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        tmp_path / "daemon.log",
        cwd=REPO,
        env=env,
        group=True,
    )
    registry = Registry(registry_url)
    instance = DagsterInstance.from_config(str(home))
    wanted = {r["id"] for r in REQUESTS}
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = registry.records()
            events = instance.fetch_materializations(VIDEO_ASSET_KEY, limit=50).records
            if (
                len(records) == len(REQUESTS)
                and all(r.state == RecordState.MATERIALIZED for r in records)
                and {e.partition_key for e in events} == wanted
            ):
                break
            assert proc.alive(), proc.log_tail()
            time.sleep(1)
        else:
            states = {r.key: r.state.value for r in registry.records()}
            pytest.fail(f"not materialized in {timeout_s}s: {states}\n" + proc.log_tail())
    finally:
        proc.stop(timeout=20)
    # The registry is marked only after Dagster recorded the event: both agree.
    runs = instance.get_runs()
    assert any(r.job_name == "omni_materialize" for r in runs)
    assert any(r.job_name == "omni_submit" for r in runs)
    instance.dispose()
    return registry


@pytest.mark.slow
def test_daemon_local_storage(tmp_path: Path, emulator: Any) -> None:
    storage = tmp_path / "storage"
    registry = _run_daemon(
        tmp_path, {"OMNI_EMULATOR_URL": emulator.url, "OMNI_STORAGE_URL": str(storage)}
    )
    for record in registry.records():
        with av.open(str(storage / "videos" / f"{record.key}.mp4")) as container:
            assert container.duration and container.streams.video
        assert (storage / "videos" / f"{record.key}.json").exists()
    assert not list(storage.rglob("*.partial-*"))


@pytest.mark.slow
def test_daemon_s3_storage(tmp_path: Path, emulator: Any, s3_server: Any) -> None:
    url = f"s3://{s3_server.bucket}/e2e-{tmp_path.name}"
    registry = _run_daemon(
        tmp_path,
        {
            "OMNI_EMULATOR_URL": emulator.url,
            "OMNI_STORAGE_URL": url,
            # What a user sets for S3 credentials: the standard AWS variables, nothing of ours.
            "AWS_ACCESS_KEY_ID": s3_server.access_key,
            "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
            "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )
    fs = fsspec.filesystem("s3", **s3_server.storage_options)
    for record in registry.records():
        assert record.video_uri == f"{url}/videos/{record.key}.mp4"
        with fs.open(f"{url}/videos/{record.key}.mp4", "rb") as fh, av.open(fh) as container:
            assert container.duration
