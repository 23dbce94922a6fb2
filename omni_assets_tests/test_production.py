"""The production deployment of docs/production.md, on real servers.

``deploy/dagster.yaml`` is loaded verbatim (its Postgres address and credentials come from the
environment, as in a deployment) against a PostgreSQL server started on 127.0.0.1, with the omni
task registry in the same database. Two tests:

* the whole flow driven in this process (the same sensors and jobs ``omni-assets run`` drives):
  requests -> submitted -> polled -> materialized videos, every record in Postgres;
* the deployment shape: ``dagster api grpc`` serving ``omni_assets.location`` as its own
  process, ``dagster-daemon`` loading ``deploy/workspace.yaml`` that points at it, runs going
  through the queued run coordinator with its tag limits, each job's one op in its run's process
  (no step worker processes), videos on the SeaweedFS S3 server.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import fsspec
import pytest
import sqlalchemy as sa
import yaml
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    FloatMetadataValue,
    IntMetadataValue,
)

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli.driver import LocalDriver
from omni_assets.definitions import build_definitions
from omni_assets.registry import RecordState, Registry
from omni_assets.resources import OmniRegistryResource, OmniStorageResource
from omni_assets.settings import Settings

from .pipeline_env import DEMO_DIR
from .servers import ChildProcess, PostgresServer, free_ports

REPO = Path(__file__).parent.parent
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent

REQUESTS = [
    {
        "id": "prod-apimart",
        "prompt": "a paper boat on a rainy street",
        "provider": "apimart",
        "model": "Omni-Flash-Ext",
        "duration": 4,
    },
    {
        "id": "prod-jimmyai",
        "prompt": "the product turns slowly",
        "provider": "jimmyai",
        "images": [str(DEMO_DIR / "product.png")],
        "mode": "frame",
        "duration": 4,
    },
    {
        "id": "prod-crun",
        "prompt": "a skyline from day to night",
        "provider": "crun",
        "aspect_ratio": "9:16",
        "duration": 4,
    },
]


def _instance_env(server: PostgresServer, database: str) -> dict[str, str]:
    """The variables deploy/dagster.yaml reads (a K8s Secret would provide them)."""
    return {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(server.port),
        "DAGSTER_PG_DB": database,
        "DAGSTER_PG_USERNAME": server.user,
        "DAGSTER_PG_PASSWORD": server.password,
    }


@pytest.fixture
def deployment(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """A fresh database, DAGSTER_HOME holding deploy/dagster.yaml, and the documented env."""
    database = f"omni_{uuid.uuid4().hex[:8]}"
    registry_url = postgres_server.create_database(database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    requests = tmp_path / "requests.yaml"
    requests.write_text(yaml.safe_dump({"requests": REQUESTS}))
    env = {
        **_instance_env(postgres_server, database),
        "DAGSTER_HOME": str(home),
        "OMNI_REGISTRY_URL": registry_url,
        "OMNI_REQUESTS": str(requests),
        "OMNI_PROVIDER": "emulator",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env


def test_production_instance_config(deployment: dict[str, str]) -> None:
    """What the example dagster.yaml promises: Postgres, a queue with per-provider limits."""
    instance = DagsterInstance.get()
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        by_key = {limit["key"]: limit for limit in limits}
        assert by_key["omni/job"] == {"key": "omni/job", "value": "submit", "limit": 1}
        assert by_key["omni/provider"]["value"] == {"applyLimitPerUniqueValue": True}
        assert instance.run_monitoring_enabled
        assert instance.run_retries_enabled
        assert not instance.run_retries_retry_on_asset_or_op_failure
    finally:
        instance.dispose()


def test_full_flow_on_postgres(
    tmp_path: Path, deployment: dict[str, str], fresh_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests to materialized videos with the Dagster instance and the registry on Postgres."""
    storage_url = str(tmp_path / "storage")
    monkeypatch.setenv("OMNI_EMULATOR_URL", fresh_emulator.url)
    monkeypatch.setenv("OMNI_STORAGE_URL", storage_url)
    registry = OmniRegistryResource()  # from OMNI_REGISTRY_URL, as deployed
    defs = build_definitions(
        settings=Settings.from_env(),
        storage=OmniStorageResource(url=storage_url),
        registry=registry,
        poll_interval_s=1,
    )
    instance = DagsterInstance.get()
    try:
        driver = LocalDriver(defs, instance, registry.get_registry(), run_log_level="WARNING")
        result = driver.drive(timeout_s=120, interval_s=0.3)
        states = {r.key: r.state for r in result.records}
        assert states == dict.fromkeys((r["id"] for r in REQUESTS), RecordState.MATERIALIZED)
        events = instance.fetch_materializations(VIDEO_ASSET_KEY, limit=10).records
        assert {e.partition_key for e in events} == set(states)
        for event in events:
            # Numeric, so the UI plots latency, size and cost across partitions.
            meta = event.asset_materialization.metadata
            for name in ("queue_s", "generation_s", "download_s", "duration_s"):
                assert isinstance(meta[name], FloatMetadataValue), name
            assert isinstance(meta["size_bytes"], IntMetadataValue)
        for key in states:
            with av.open(f"{storage_url}/videos/{key}.mp4") as container:
                assert container.streams.video and container.duration
    finally:
        instance.dispose()
    # Everything lives in the one Postgres database: Dagster's tables next to the registry's.
    engine = sa.create_engine(deployment["OMNI_REGISTRY_URL"])
    try:
        tables = set(sa.inspect(engine).get_table_names())
        assert {"runs", "event_logs", "omni_records", "omni_history"} <= tables
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT key, state FROM omni_records")).all()
            runs = conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
        assert dict(rows) == dict.fromkeys(states, "materialized")
        assert runs >= 2  # at least one submit and one materialize run
    finally:
        engine.dispose()


# -- the deployment shape: gRPC code server + daemon + queue + S3 -------------------------------


def _wait_port(port: int, proc: ChildProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.alive(), proc.log_tail()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"nothing listening on {port} after {timeout}s:\n{proc.log_tail()}")


def _finished_runs(instance: DagsterInstance, timeout: float) -> list[Any]:
    """Every run, once none is queued or in progress (the last ones may still be closing)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = instance.get_runs()
        if all(r.is_finished for r in runs) or time.monotonic() > deadline:
            return list(runs)
        time.sleep(0.5)


@pytest.mark.slow
def test_code_server_over_grpc_with_queue_on_postgres_and_s3(
    tmp_path: Path, deployment: dict[str, str], emulator: Any, s3_server: Any
) -> None:
    (port,) = free_ports(1)
    storage_url = f"s3://{s3_server.bucket}/prod-{tmp_path.name}"
    env = {
        **os.environ,
        **deployment,
        "OMNI_EMULATOR_URL": emulator.url,
        "OMNI_STORAGE_URL": storage_url,
        "OMNI_POLL_SENSOR_INTERVAL_S": "1",
        # S3 credentials the standard way (a K8s Secret -> env vars), nothing of ours.
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "OMNI_CODE_SERVER_HOST": "127.0.0.1",
        "OMNI_CODE_SERVER_PORT": str(port),
    }
    code_server = ChildProcess(
        [
            str(BIN / "dagster"),
            *("api", "grpc", "--module-name", "omni_assets.location"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        tmp_path / "code_server.log",
        cwd=tmp_path,
        env=env,
        group=True,
    )
    daemon = None
    instance = DagsterInstance.get()
    registry = Registry(deployment["OMNI_REGISTRY_URL"])
    wanted = {r["id"] for r in REQUESTS}
    try:
        _wait_port(port, code_server, timeout=90)
        daemon = ChildProcess(
            [str(BIN / "dagster-daemon"), "run", "-w", str(DEPLOY / "workspace.yaml")],
            tmp_path / "daemon.log",
            cwd=tmp_path,
            env=env,
            group=True,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            records = registry.records()
            events = instance.fetch_materializations(VIDEO_ASSET_KEY, limit=50).records
            if (
                {r.key for r in records} == wanted
                and all(r.state == RecordState.MATERIALIZED for r in records)
                and {e.partition_key for e in events} == wanted
            ):
                break
            assert daemon.alive(), daemon.log_tail()
            assert code_server.alive(), code_server.log_tail()
            time.sleep(1)
        else:
            states = {r.key: r.state.value for r in registry.records()}
            pytest.fail(
                f"not materialized in time: {states}\n"
                f"daemon:\n{daemon.log_tail()}\n"
                f"code server:\n{code_server.log_tail()}"
            )
        runs = _finished_runs(instance, timeout=60)
        assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), [
            (r.job_name, r.status) for r in runs
        ]
        materialize = [r for r in runs if r.job_name == "omni_materialize"]
        assert any(r.job_name == "omni_submit" for r in runs)
        # One download run per provider per tick, each tagged for the per-provider limit.
        assert {r.tags["omni/provider"] for r in materialize} == {"apimart", "jimmyai", "crun"}
        for run in runs:
            # Through the queue, launched as its own process from the code server; the one op
            # runs in that process (build_definitions' job_executor): no step worker process.
            types = {
                e.dagster_event.event_type
                for e in instance.all_logs(run.run_id)
                if e.dagster_event is not None
            }
            assert DagsterEventType.RUN_ENQUEUED in types
            assert DagsterEventType.RUN_SUCCESS in types
            assert DagsterEventType.STEP_WORKER_STARTING not in types
            assert run.remote_job_origin is not None
            assert run.remote_job_origin.location_name == "omni_assets"
    finally:
        if daemon is not None:
            daemon.stop(timeout=20)
        code_server.stop(timeout=20)
        instance.dispose()
    fs = fsspec.filesystem("s3", **s3_server.storage_options)
    for record in registry.records():
        assert record.video_uri == f"{storage_url}/videos/{record.key}.mp4"
        with fs.open(record.video_uri, "rb") as fh, av.open(fh) as container:
            assert container.duration
    registry.close()
