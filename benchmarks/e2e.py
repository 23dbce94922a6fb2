"""End to end: 200 requests, 60 s generation, through the real daemon vs a hand-written script.

    .venv/bin/python -m benchmarks.e2e            # 200 requests, 60 s generation (~4 min)
    .venv/bin/python -m benchmarks.e2e --quick    # 10 requests, 5 s generation

Ours: ``dagster-daemon run`` on a temporary ``DAGSTER_HOME`` with the code location
``benchmarks.e2e_location`` (the default one with APIMart's ``max_in_flight`` raised, see there).
The daemon is started first and left to warm up (code location loaded, first poll tick); the
clock starts when the requests file is written, and stops when the last video is materialized.
``--executor`` picks how the two jobs run: ``in_process`` (as shipped: each job has one op) or
``multiprocess`` (``build_definitions(job_executor=None)``: Dagster's default executor, one more
process start per run; reported, not held to the target).
The baseline is one ``asyncio`` + ``httpx`` script that submits the same 200 requests, polls each
task, and streams each finished mp4 to local disk. Both talk to the same emulator (a separate
process) and have the same settings:

* submissions paced at 20/s (our ``rate_limit_per_s``; the script sleeps between POSTs);
* a status poll every 5 s per task: the script sleeps 5 s between polls; the sensor daemon
  evaluates sensors once per 5 s loop (``MIN_INTERVAL_LOOP_TIME``), and the sensors' own minimum
  intervals (``OMNI_POLL_SENSOR_INTERVAL_S``, ``OMNI_REQUESTS_SENSOR_INTERVAL_S``) are set to 1 s
  so that they tick on every loop; the run queue dequeues every second.

Target: our wall time <= 1.25x the script's. Reported: the overhead by stage (queueing, run
launch, poll lag, download) and CPU seconds per video (the daemon's whole process tree: daemon,
code server, run workers; the emulator excluded on both sides).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import yaml

from omni_assets.registry import Record, RecordState, Registry
from omni_assets_tests.pipeline_env import temporary_env
from omni_assets_tests.servers import ChildProcess, EmulatorProcess

from .common import API_KEY, Row, Scoreboard, cli, command, parser
from .fixtures import MODEL, PROVIDER

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RATE = 20.0
POLL_S = 5
WALL_TARGET = 1.25


def requests_for(n: int, prompt: str | None = None) -> list[dict[str, Any]]:
    """``n`` APIMart requests; ``prompt`` gives them all one prompt (the emulator renders one
    video per distinct scene, so one prompt is one render instead of ``n``)."""
    return [
        {
            "id": f"e2e-{i:04d}",
            "prompt": prompt or f"benchmark video number {i}",
            "provider": PROVIDER,
            "model": MODEL,
            "duration": 4,
        }
        for i in range(n)
    ]


# -- the hand-written baseline -------------------------------------------------------------------


async def _baseline(base_url: str, requests: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Submit (paced), poll every POLL_S, download; per-request timestamps."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    timings: dict[str, dict[str, Any]] = {}
    phases = random.Random(0)
    start = time.time()
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=60, limits=limits
    ) as c:

        async def one(i: int, request: dict[str, Any]) -> None:
            await asyncio.sleep(max(0.0, start + i / RATE - time.time()))
            body = {"model": MODEL, "prompt": request["prompt"], "duration": request["duration"]}
            created = await c.post("/apimart/v1/videos/generations", json=body)
            created.raise_for_status()
            task_id = created.json()["data"][0]["task_id"]
            t = timings[request["id"]] = {"submitted": time.time(), "task_id": task_id}
            # Polls at a random phase, as the sensor's are relative to a task (a script polling
            # exactly every 60 s / 12 would see each fixed-length task finish the instant it polls).
            await asyncio.sleep(phases.uniform(0, POLL_S))
            while True:
                data = (await c.get(f"/apimart/v1/tasks/{task_id}")).json()["data"]
                if data["status"] == "completed":
                    break
                if data["status"] == "failed":
                    raise RuntimeError(f"{task_id} failed: {data}")
                await asyncio.sleep(POLL_S)
            t["noticed"] = time.time()
            url = data["result"]["videos"][0]["url"][0]
            async with c.stream("GET", url) as response:
                response.raise_for_status()
                with open(out / f"{request['id']}.mp4", "wb") as fh:
                    async for chunk in response.aiter_bytes():
                        fh.write(chunk)
            t["done"] = time.time()

        await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    return {"start": start, "end": time.time(), "timings": timings}


def run_baseline(emulator: EmulatorProcess, requests: list[dict[str, Any]], out: Path) -> Any:
    out.mkdir(parents=True, exist_ok=True)
    cpu = time.process_time()
    result = asyncio.run(_baseline(emulator.url, requests, out))
    result["cpu"] = time.process_time() - cpu
    return result


# -- ours: the daemon ------------------------------------------------------------------------------


class TreeCpu:
    """CPU seconds of a process and all its descendants, sampled (dead ones keep their last)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.last: dict[tuple[int, float], float] = {}
        self.roles: dict[tuple[int, float], str] = {}

    def sample(self) -> float:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for proc in procs:
            try:
                key = (proc.pid, proc.create_time())
                if key not in self.roles:
                    self.roles[key] = _role(proc.cmdline())
                times = proc.cpu_times()
                self.last[key] = times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return sum(self.last.values())

    def by_role(self) -> dict[str, tuple[int, float]]:
        """Processes and CPU seconds per role (daemon, code server, run, other) so far."""
        out: dict[str, tuple[int, float]] = {}
        for key, seconds in self.last.items():
            count, total = out.get(self.roles[key], (0, 0.0))
            out[self.roles[key]] = (count + 1, total + seconds)
        return out


def _role(cmdline: list[str]) -> str:
    line = " ".join(cmdline)
    if "execute_run" in line or "execute_step" in line:
        return "run"
    if "api grpc" in line:
        return "code server"
    if "dagster-daemon" in line:
        return "daemon"
    return "other"


def _dagster_home(folder: Path) -> Path:
    home = folder / "dagster_home"
    home.mkdir(parents=True)
    config = {
        "telemetry": {"enabled": False},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            # As the repository's dagster.yaml: four run slots, launched by four threads (one
            # launch waits for its run process to load the code location, a few seconds).
            "config": {
                "max_concurrent_runs": 4,
                "dequeue_interval_seconds": 1,
                "dequeue_use_threads": True,
                "dequeue_num_workers": 4,
            },
        },
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    workspace = {
        "load_from": [
            {
                "python_module": {
                    "module_name": "benchmarks.e2e_location",
                    "working_directory": str(REPO),
                }
            }
        ]
    }
    (folder / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    return home


def run_ours(
    emulator: EmulatorProcess,
    requests: list[dict[str, Any]],
    folder: Path,
    timeout_s: float,
    executor: str,
) -> dict[str, Any]:
    home = _dagster_home(folder)
    registry_url = f"sqlite:///{folder / 'registry.db'}"
    requests_path = folder / "requests.yaml"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "OMNI_PROVIDER": "emulator",
        "OMNI_EMULATOR_URL": emulator.url,
        "OMNI_STORAGE_URL": str(folder / "storage"),
        "OMNI_REGISTRY_URL": registry_url,
        "OMNI_REQUESTS": str(requests_path),
        # Below the sensor daemon's own 5 s loop: each sensor ticks on every loop iteration.
        "OMNI_POLL_SENSOR_INTERVAL_S": "1",
        "OMNI_REQUESTS_SENSOR_INTERVAL_S": "1",
        "BENCH_MAX_IN_FLIGHT": str(len(requests) * 2),
        "BENCH_RATE_LIMIT_PER_S": str(RATE),
        "BENCH_EXECUTOR": executor,
    }
    daemon = ChildProcess(
        [str(BIN / "dagster-daemon"), "run", "-w", str(folder / "workspace.yaml")],
        folder / "daemon.log",
        cwd=REPO,
        env=env,
        group=True,
    )
    cpu = TreeCpu(daemon.pid)
    try:
        # Warm: the code location is loaded and the poll sensor has ticked (it opens the registry).
        deadline = time.monotonic() + 180
        while not (folder / "registry.db").exists():
            assert daemon.alive(), daemon.log_tail()
            assert time.monotonic() < deadline, daemon.log_tail()
            cpu.sample()
            time.sleep(0.5)
        time.sleep(2)
        cpu_start = cpu.sample()
        roles_start = cpu.by_role()
        tmp = requests_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"requests": requests}))
        start = time.time()
        tmp.rename(requests_path)
        registry = Registry(registry_url)
        deadline = time.monotonic() + timeout_s
        while True:
            cpu.sample()
            counts = registry.counts()
            if counts[RecordState.MATERIALIZED] == len(requests):
                break
            bad = counts[RecordState.FAILED] + counts[RecordState.UNKNOWN]
            assert not bad, {k.value: v for k, v in counts.items() if v}
            assert daemon.alive(), daemon.log_tail()
            assert time.monotonic() < deadline, {k.value: v for k, v in counts.items() if v}
            time.sleep(0.5)
        records = registry.records()
        end = max(r.materialized_at or 0.0 for r in records)
        cpu_used = cpu.sample() - cpu_start
        roles = {
            role: (count, seconds - roles_start.get(role, (0, 0.0))[1])
            for role, (count, seconds) in cpu.by_role().items()
        }
        noticed = {r.key: _event_at(registry, r.key, "remote_succeeded") for r in records}
        registry.close()
        runs = _runs(home, start)
    finally:
        daemon.stop(timeout=30)
    return {
        "start": start,
        "end": end,
        "records": records,
        "noticed": noticed,
        "cpu": cpu_used,
        "cpu_roles": roles,
        "runs": runs,
    }


def _runs(home: Path, start: float) -> list[str]:
    """One line per run: job, videos, queued / started / ended (seconds after the file)."""
    from dagster import DagsterInstance

    lines = []
    with temporary_env(DAGSTER_HOME=str(home)), DagsterInstance.get() as instance:
        for record in sorted(instance.get_run_records(), key=lambda r: r.create_timestamp):
            t = [
                record.create_timestamp.timestamp(),
                record.start_time or float("nan"),
                record.end_time or float("nan"),
            ]
            videos = record.dagster_run.tags.get("omni/videos", "-")
            lines.append(
                f"{record.dagster_run.job_name} ({videos} videos): queued {t[0] - start:.1f} s, "
                f"started {t[1] - start:.1f} s, ended {t[2] - start:.1f} s"
            )
    return lines


def _event_at(registry: Registry, key: str, event: str) -> float:
    return next(e.at for e in registry.history(key) if e.event == event)


# -- report ----------------------------------------------------------------------------------------


def _stage(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.1f} s, max {max(values):.1f} s"


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--executor",
        choices=["in_process", "multiprocess"],
        default="in_process",
        help="in_process as shipped; multiprocess = Dagster's default executor (reported only)",
    )
    args = p.parse_args(argv)
    n, generation = (10, 5.0) if args.quick else (200, 60.0)
    board = Scoreboard("e2e", command("benchmarks.e2e", argv or sys.argv[1:]))
    board.json_path = args.json
    requests = requests_for(n)
    with (
        EmulatorProcess(generation_seconds=generation) as emulator,
        tempfile.TemporaryDirectory(prefix="omni-bench-e2e-") as tmp,
    ):
        print(f"[e2e] baseline: {n} requests, {generation:g} s generation", flush=True)
        base = run_baseline(emulator, requests, Path(tmp) / "baseline")
        created = {t["task_id"]: t["time"] for t in emulator.audit()["tasks"]}
        emulator.reset()
        print("[e2e] ours: dagster-daemon", flush=True)
        ours = run_ours(emulator, requests, Path(tmp) / "ours", generation * 4 + 300, args.executor)
        created.update({t["task_id"]: t["time"] for t in emulator.audit()["tasks"]})
    ours_wall, base_wall = ours["end"] - ours["start"], base["end"] - base["start"]
    ratio = ours_wall / base_wall
    board.add(
        Row(
            f"end to end through dagster-daemon ({args.executor} executor)",
            f"{n} requests, {generation:g} s generation",
            f"{ours_wall:.1f} s",
            f"{base_wall:.1f} s (asyncio + httpx)",
            f"{ratio:.2f}x",
            f"<= {WALL_TARGET:g}x" if args.executor == "in_process" else "reported",
            ratio <= WALL_TARGET if args.executor == "in_process" else None,
        )
    )
    for row in stage_rows(ours, base, created, generation, n):
        board.add(row)
    board.add(
        Row(
            "CPU seconds per video",
            f"{n} videos",
            f"{ours['cpu'] / n:.3f} s (daemon, code server, runs)",
            f"{base['cpu'] / n:.3f} s (the script)",
            f"{ours['cpu'] / max(base['cpu'], 1e-9):.1f}x",
            "reported",
            None,
        )
    )
    roles = roles_text(ours["cpu_roles"])
    board.add(Row("CPU seconds by process", f"{n} videos", roles, "-", "-", "reported", None))
    for line in ours["runs"]:
        print(f"[e2e] run: {line}")
    return board.finish()


def stage_rows(
    ours: dict[str, Any], base: dict[str, Any], created: dict[str, float], generation: float, n: int
) -> list[Row]:
    """One reported row per stage, ours beside the script's (also for benchmarks.celery_scale)."""
    stages_ours = _stages_ours(ours, created, generation)
    stages_base = _stages_base(base, created, generation)
    return [
        Row(
            f"stage: {name}",
            f"{n:,} videos",
            _stage(values),
            _stage(stages_base[name]) if name in stages_base else "-",
            "-",
            "reported",
            None,
        )
        for name, values in stages_ours.items()
    ]


def roles_text(roles: dict[str, tuple[int, float]]) -> str:
    """``role 1.2 s (3 processes), ...`` from processes and CPU seconds per role."""
    return ", ".join(
        f"{role} {cpu_s:.1f} s ({count} process{'es' if count > 1 else ''})"
        for role, (count, cpu_s) in sorted(roles.items())
    )


def _stages_ours(
    ours: dict[str, Any], created: dict[str, float], generation: float
) -> dict[str, list[float]]:
    records: list[Record] = ours["records"]
    start = ours["start"]
    out: dict[str, list[float]] = {k: [] for k in _STAGES}
    for r in records:
        assert r.task_id and r.submit_started_at and r.materialized_at
        finished = created[r.task_id] + generation
        noticed = ours["noticed"][r.key]
        out["queueing (file written -> registered)"].append(r.registered_at - start)
        out["submit run launch (registered -> first POST)"].append(
            min(x.submit_started_at or 0 for x in records) - r.registered_at
        )
        out["submitted (file written -> task created)"].append(created[r.task_id] - start)
        out["poll lag (task done -> noticed)"].append(noticed - finished)
        out["materialize (noticed -> materialized)"].append(r.materialized_at - noticed)
    return out


def _stages_base(
    base: dict[str, Any], created: dict[str, float], generation: float
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in _STAGES}
    for t in base["timings"].values():
        finished = created[t["task_id"]] + generation
        out["submitted (file written -> task created)"].append(
            created[t["task_id"]] - base["start"]
        )
        out["poll lag (task done -> noticed)"].append(t["noticed"] - finished)
        out["materialize (noticed -> materialized)"].append(t["done"] - t["noticed"])
    return {k: v for k, v in out.items() if v}


_STAGES = (
    "queueing (file written -> registered)",
    "submit run launch (registered -> first POST)",
    "submitted (file written -> task created)",
    "poll lag (task done -> noticed)",
    "materialize (noticed -> materialized)",
)


if __name__ == "__main__":
    cli(main)
