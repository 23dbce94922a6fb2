"""Scale: 20,000 registered partitions, on SQLite and on Postgres instance storage.

    .venv/bin/python -m benchmarks.scale            # 20,000 partitions; SQLite, then Postgres
    .venv/bin/python -m benchmarks.scale --quick    # 500 partitions, SQLite only
    .venv/bin/python -m benchmarks.scale --partitions 100000 --backend sqlite
                                                    # 75,001 registered before, 24,999 in the file

For each backend (the Dagster instance's storage and the task registry both on it: SQLite files,
or one PostgreSQL server started for the run, ``postgresql+psycopg2``), reported (no targets):

* **register**: the first ``omni_requests_sensor`` tick over a 20,000-request file (validate,
  register in the registry) plus adding its dynamic partitions (one request, <= 25K keys);
* **requests sensor tick**: the file unchanged (a skip), and with one request added;
* **poll sensor tick** with 20,000 registered (all pending: it counts them and asks for a submit
  run; nothing in flight — ``poll_tick`` covers in-flight scaling);
* 1,000 partitions materialized (runless events), then the GraphQL query behind the asset's
  Partitions tab (``PartitionHealthQuery``, copied from the UI bundle) and one partition's
  detail (``AssetPartitionDetailQuery``), over HTTP to ``dagster-webserver`` on loopback:
  the first (cold) query and the median of 5 more.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from dagster import AssetMaterialization, DagsterInstance, SensorResult, build_sensor_context

from omni_assets.assets import VIDEO_ASSET_KEY, omni_video_partitions
from omni_assets.definitions import build_definitions
from omni_assets.request import MAX_REQUESTS
from omni_assets.resources import OmniRegistryResource, OmniStorageResource
from omni_assets.settings import Settings
from omni_assets_tests.pipeline_env import temporary_env
from omni_assets_tests.servers import ChildProcess, free_ports

from .common import Row, Scoreboard, cli, command, parser
from .fixtures import MODEL, PROVIDER, register_keys

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MATERIALIZED = 1000

PARTITION_HEALTH = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses {
          materializedPartitions materializingPartitions failedPartitions
        }
        ... on MultiPartitionStatuses { primaryDimensionName }
      }
    }
  }
}
"""
PARTITION_DETAIL = """
query AssetPartitionDetailQuery($assetKey: AssetKeyInput!, $partitionKey: String!) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      id
      assetMaterializations(partitions: [$partitionKey]) { runId timestamp partition }
      assetObservations(partitions: [$partitionKey]) { runId timestamp partition }
    }
  }
}
"""


def write_requests(path: Path, n: int, *, start: int = 0) -> None:
    lines = (
        json.dumps(
            {
                "id": f"scale-{i:06d}",
                "prompt": f"scale test video {i}",
                "provider": PROVIDER,
                "model": MODEL,
                "duration": 6,
            }
        )
        for i in range(start, n)
    )
    path.write_text("\n".join(lines) + "\n")


def _timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


@contextlib.contextmanager
def _instance(home: Path, postgres_url: str | None) -> Iterator[DagsterInstance]:
    config: dict[str, Any] = {"telemetry": {"enabled": False}}
    if postgres_url:
        config["storage"] = {"postgres": {"postgres_url": postgres_url}}
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with temporary_env(DAGSTER_HOME=str(home)), DagsterInstance.get() as instance:
        yield instance


@contextlib.contextmanager
def _webserver(home: Path, folder: Path, extra_env: dict[str, str]) -> Iterator[str]:
    (port,) = free_ports(1)
    workspace = folder / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "omni_assets.location",
                            "working_directory": str(REPO),
                        }
                    }
                ]
            }
        )
    )
    proc = ChildProcess(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)],
        folder / "webserver.log",
        cwd=REPO,
        env={**os.environ, **extra_env, "DAGSTER_HOME": str(home)},
        group=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.alive(), proc.log_tail()
            assert time.monotonic() < deadline, "dagster-webserver did not start"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        yield url
    finally:
        proc.stop(timeout=30)


def _graphql(url: str, query: str, variables: dict[str, Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, timeout=300
    )
    seconds = time.perf_counter() - started
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return seconds, body["data"]


def run_backend(name: str, n: int, folder: Path, postgres: Any | None) -> list[Row]:
    rows: list[Row] = []
    registry_url = f"sqlite:///{folder / 'registry.db'}"
    instance_url = None
    if postgres is not None:
        registry_url = postgres.create_database(f"registry_{int(time.time())}")
        instance_url = postgres.create_database(f"dagster_{int(time.time())}")
    requests_path = folder / "requests.jsonl"
    # A requests file holds at most MAX_REQUESTS (25,000): past that, the partitions of earlier
    # files are already registered (registry API + add_dynamic_partitions, as their ticks left
    # them) and the file holds the newest requests, one short of the cap (one is added below).
    earlier = max(0, n - (MAX_REQUESTS - 1))
    write_requests(requests_path, n, start=earlier)
    omni_env = {
        "OMNI_PROVIDER": "emulator",
        "OMNI_EMULATOR_URL": "http://127.0.0.1:9",  # never reached: nothing is submitted
        "OMNI_STORAGE_URL": str(folder / "storage"),
        "OMNI_REGISTRY_URL": registry_url,
        "OMNI_REQUESTS": str(requests_path),
    }
    home = folder / "dagster_home"
    with temporary_env(**omni_env), _instance(home, instance_url) as instance:
        registry = OmniRegistryResource(url=registry_url)
        defs = build_definitions(
            settings=Settings.from_env(),
            storage=OmniStorageResource(url=str(folder / "storage")),
            registry=registry,
        )
        cursors: dict[str, str | None] = {}

        def tick(sensor_name: str) -> Any:
            sensor = defs.resolve_sensor_def(sensor_name)
            with build_sensor_context(
                instance=instance,
                resources=defs.resources,
                sensor_name=sensor_name,
                cursor=cursors.get(sensor_name),
            ) as context:
                result = sensor(context)
                cursors[sensor_name] = context.cursor
            return result

        def register() -> int:
            result = tick("omni_requests_sensor")
            assert isinstance(result, SensorResult)
            added = 0
            for request in result.dynamic_partitions_requests or []:
                keys = list(getattr(request, "partition_keys", []) or [])
                instance.add_dynamic_partitions(omni_video_partitions.name or "", keys)
                added += len(keys)
            return added

        if earlier:
            old_keys = [f"scale-{i:06d}" for i in range(earlier)]

            def preregister() -> None:
                register_keys(registry.get_registry(), old_keys)
                for start in range(0, earlier, 20_000):
                    instance.add_dynamic_partitions(
                        omni_video_partitions.name or "", old_keys[start : start + 20_000]
                    )

            seconds, _ = _timed(preregister)
            what = "earlier files' partitions (registry API + add partitions)"
            rows.append(_row(name, what, earlier, seconds))
        seconds, added = _timed(register)
        assert added == n - earlier, added
        rows.append(_row(name, "register (requests sensor + add partitions)", n, seconds))
        seconds, _ = _timed(lambda: tick("omni_requests_sensor"))
        rows.append(_row(name, "requests sensor tick, file unchanged", n, seconds))
        write_requests(requests_path, n + 1, start=earlier)
        seconds, added = _timed(register)
        assert added == 1, added
        rows.append(_row(name, "requests sensor tick, one request added", n + 1, seconds))
        seconds, result = _timed(lambda: tick("omni_poll_sensor"))
        assert isinstance(result, SensorResult) and result.run_requests, result
        rows.append(_row(name, "poll sensor tick (all pending)", n + 1, seconds))
        keys = instance.get_dynamic_partitions(omni_video_partitions.name or "")
        assert len(keys) == n + 1

        def materialize() -> None:
            for key in keys[:MATERIALIZED]:
                instance.report_runless_asset_event(
                    AssetMaterialization(asset_key=VIDEO_ASSET_KEY, partition=key)
                )

        seconds, _ = _timed(materialize)
        count = min(MATERIALIZED, len(keys))
        rows.append(_row(name, f"record {count:,} materializations (runless)", n + 1, seconds))
        registry.get_registry().close()
    with _webserver(home, folder, omni_env) as url:
        asset = {"assetKey": {"path": VIDEO_ASSET_KEY.path}}
        cold, data = _graphql(url, PARTITION_HEALTH, asset)
        node = data["assetNodeOrError"]
        assert len(node["partitionKeysByDimension"][0]["partitionKeys"]) == n + 1
        materialized = node["assetPartitionStatuses"]["materializedPartitions"]
        assert len(materialized) == min(MATERIALIZED, n + 1), len(materialized)
        warm = statistics.median(_graphql(url, PARTITION_HEALTH, asset)[0] for _ in range(5))
        rows.append(_row(name, "GraphQL PartitionHealthQuery (partitions tab)", n + 1, warm, cold))
        detail = {**asset, "partitionKey": keys[0]}
        cold, _ = _graphql(url, PARTITION_DETAIL, detail)
        warm = statistics.median(_graphql(url, PARTITION_DETAIL, detail)[0] for _ in range(5))
        rows.append(_row(name, "GraphQL AssetPartitionDetailQuery", n + 1, warm, cold))
    return rows


def _row(backend: str, what: str, n: int, seconds: float, cold: float | None = None) -> Row:
    ours = f"{seconds:.3f} s" if cold is None else f"{seconds:.3f} s (first: {cold:.3f} s)"
    return Row(f"{what} [{backend}]", f"{n:,} partitions", ours, "-", "-", "reported", None)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--partitions", type=int, help="registered partitions (default 20,000)")
    p.add_argument("--backend", choices=["sqlite", "postgres"], action="append")
    args = p.parse_args(argv)
    n = args.partitions or (500 if args.quick else 20_000)
    backends = args.backend or (["sqlite"] if args.quick else ["sqlite", "postgres"])
    board = Scoreboard("scale", command("benchmarks.scale", argv or sys.argv[1:]))
    board.json_path = args.json
    with tempfile.TemporaryDirectory(prefix="omni-bench-scale-") as tmp:
        for backend in backends:
            folder = Path(tmp) / backend
            folder.mkdir()
            if backend == "postgres":
                from omni_assets_tests.servers import PostgresServer

                if not PostgresServer.available():
                    print("[scale] PostgreSQL is not installed: apt-get install -y postgresql")
                    return 1
                with PostgresServer() as postgres:
                    rows = run_backend(backend, n, folder, postgres)
            else:
                rows = run_backend(backend, n, folder, None)
            for row in rows:
                board.add(row)
    return board.finish()


if __name__ == "__main__":
    cli(main)
