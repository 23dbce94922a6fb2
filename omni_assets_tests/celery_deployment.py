"""The Celery profile (``deploy/celery/``) as real processes here, for tests and benchmarks.

:class:`CeleryDeployment` starts what a team with several machines runs, each process with its
own working directory, ``TMPDIR`` and ``DAGSTER_HOME`` (holding ``deploy/celery/dagster.yaml``),
so nothing is shared through a local disk:

* a code server, ``dagster api grpc --module-name omni_assets.location`` with
  ``OMNI_CELERY_CONFIG`` set, which launches each run as a process (the default run launcher);
* ``dagster-daemon`` on ``deploy/celery/workspace.yaml`` (sensors, run queue, monitoring);
* Celery workers, ``dagster-celery worker start -y celery.yaml -A dagster_celery.app`` (with
  ``--includes omni_assets.location``: the code location is loaded at start), one
  process each (``--pool=solo``), which run the steps of ``omni_submit`` and ``omni_materialize``.

The servers (PostgreSQL, S3, Redis, the emulator) are the caller's: see :mod:`.servers`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import yaml
from dagster import DagsterEventType, DagsterInstance

from omni_assets.assets import VIDEO_ASSET_KEY

from .pipeline_env import temporary_env
from .servers import ChildProcess, PostgresServer, RedisServer, SeaweedS3, free_ports

__all__ = ["PROFILE", "CeleryDeployment"]

REPO = Path(__file__).resolve().parent.parent
PROFILE = REPO / "deploy" / "celery"
BIN = Path(sys.executable).parent


class CeleryDeployment:
    """The profile's processes on fresh state: a new database on ``postgres``, a new prefix in
    ``s3``'s bucket. ``visibility_timeout_s`` shortens the profile's (so a test does not wait
    15 minutes for a killed worker's step); ``extra_env`` reaches every process; ``location``
    is the code location module the code server serves and the workers load (a module outside
    the installed packages needs its folder on ``PYTHONPATH`` in ``extra_env``)."""

    def __init__(
        self,
        root: Path,
        *,
        postgres: PostgresServer,
        s3: SeaweedS3,
        redis: RedisServer,
        emulator_url: str,
        visibility_timeout_s: float | None = None,
        extra_env: dict[str, str] | None = None,
        location: str = "omni_assets.location",
    ) -> None:
        self.root = root
        self.location = location
        self.redis = redis
        self.s3 = s3
        self.database = f"omni_celery_{uuid.uuid4().hex[:8]}"
        self.registry_url = postgres.create_database(self.database)
        self.storage_url = s3.url(f"celery-{uuid.uuid4().hex[:8]}")
        self.requests_path = root / "requests.yaml"
        self.requests: list[dict[str, Any]] = []
        self.write_requests([])
        self.celery_config = self._celery_config(visibility_timeout_s)
        (self.code_port,) = free_ports(1)
        self.pg_env = {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(postgres.port),
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_USERNAME": postgres.user,
            "DAGSTER_PG_PASSWORD": postgres.password,
        }
        # What docs/production.md lists for every process of the profile.
        self.env: dict[str, str] = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OMNI_", "DAGSTER_"))},
            **self.pg_env,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "OMNI_CELERY_CONFIG": str(self.celery_config),
            "OMNI_CELERY_BROKER_URL": redis.url,
            "OMNI_PROVIDER": "emulator",
            "OMNI_EMULATOR_URL": emulator_url,
            "OMNI_REGISTRY_URL": self.registry_url,
            "OMNI_STORAGE_URL": self.storage_url,
            "OMNI_REQUESTS": str(self.requests_path),
            "OMNI_POLL_SENSOR_INTERVAL_S": "1",
            "OMNI_REQUESTS_SENSOR_INTERVAL_S": "1",
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "OMNI_CODE_SERVER_HOST": "127.0.0.1",
            "OMNI_CODE_SERVER_PORT": str(self.code_port),
            **(extra_env or {}),
        }
        self.code_server: ChildProcess | None = None
        self.daemon: ChildProcess | None = None
        self.workers: dict[str, ChildProcess] = {}
        self._starts: dict[str, int] = {}
        #: Every worker process seen (the dagster-celery wrapper and its celery child) -> name,
        #: kept after a worker is killed: events carry the pid of the process that wrote them.
        self.worker_of_pid: dict[int, str] = {}

    # -- files ----------------------------------------------------------------------------------

    def _celery_config(self, visibility_timeout_s: float | None) -> Path:
        document = yaml.safe_load((PROFILE / "celery.yaml").read_text())
        if visibility_timeout_s is not None:
            options = document["execution"]["config"]["config_source"]
            options["broker_transport_options"].update(
                visibility_timeout=visibility_timeout_s, unacked_restore_interval=1
            )
        path = self.root / "celery.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def write_requests(self, requests: list[dict[str, Any]]) -> None:
        """Add ``requests`` to the requests file (the requests sensor registers them).

        Written whole and renamed into place: a sensor tick never reads half a file."""
        self.requests += requests
        partial = self.requests_path.with_suffix(".partial")
        partial.write_text(yaml.safe_dump({"requests": self.requests}))
        partial.replace(self.requests_path)

    def _machine(self, name: str) -> dict[str, str]:
        """A directory of its own for one process: cwd, TMPDIR and DAGSTER_HOME."""
        place = self.root / name
        home, tmp = place / "dagster_home", place / "tmp"
        for path in (home, tmp):
            path.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROFILE / "dagster.yaml", home / "dagster.yaml")
        return {**self.env, "DAGSTER_HOME": str(home), "TMPDIR": str(tmp)}

    # -- processes ------------------------------------------------------------------------------

    def start(self, workers: int = 2) -> CeleryDeployment:
        """Code server, then the daemon and ``workers`` workers (named worker-a, worker-b...)."""
        # The schema first, from one process (what `dagster instance migrate` does in a deploy):
        # processes starting at once on an empty database collide creating its tables.
        with self.instance() as instance:
            instance.get_runs(limit=1)
        env = self._machine("code_server")
        self.code_server = ChildProcess(
            [
                str(BIN / "dagster"),
                *("api", "grpc", "--module-name", self.location),
                *("--host", "127.0.0.1", "--port", str(self.code_port)),
            ],
            self.root / "code_server.log",
            cwd=self.root / "code_server",
            env=env,
            group=True,
        )
        for i in range(workers):
            self.start_worker(f"worker-{chr(ord('a') + i)}")
        _wait_port(self.code_port, self.code_server, 120)
        env = self._machine("daemon")
        self.daemon = ChildProcess(
            [str(BIN / "dagster-daemon"), "run", "-w", str(PROFILE / "workspace.yaml")],
            self.root / "daemon.log",
            cwd=self.root / "daemon",
            env=env,
            group=True,
        )
        self.wait_workers_ready(120)
        return self

    def start_worker(self, name: str) -> ChildProcess:
        """One worker process (``--pool=solo``: the step runs in the worker process itself)."""
        env = self._machine(name)
        self._starts[name] = self._starts.get(name, 0) + 1
        log = self.root / f"{name}-{self._starts[name]}.log"  # a restarted worker: a new log
        worker = ChildProcess(
            [
                str(BIN / "dagster-celery"),
                *("worker", "start", "-y", str(self.celery_config), "-A", "dagster_celery.app"),
                # Loads the code location at start: a step never waits for that import.
                *("--includes", self.location),
                *("--name", name, "--loglevel", "INFO", "--"),
                *("--pool=solo", "--without-gossip", "--without-mingle"),
            ],
            log,
            cwd=self.root / name,
            env=env,
            group=True,  # dagster-celery starts `celery worker` as its child
        )
        self.workers[name] = worker
        return worker

    def wait_workers_ready(self, timeout: float) -> None:
        """Until every worker says it is ready (connected to the broker, consuming)."""
        deadline = time.monotonic() + timeout
        for name, worker in self.workers.items():
            while " ready." not in worker.log_path.read_text(errors="replace"):
                if not worker.alive():
                    raise RuntimeError(f"{name} exited:\n{worker.log_tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready:\n{worker.log_tail()}")
                time.sleep(0.2)
            for pid in _process_tree(worker.pid):
                self.worker_of_pid[pid] = name

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group, as an OOM kill or a lost machine would."""
        self.workers.pop(name).stop(signal.SIGKILL)

    def stop(self) -> None:
        for proc in [self.daemon, *self.workers.values(), self.code_server]:
            if proc is not None:
                proc.stop(timeout=20)

    def __enter__(self) -> CeleryDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive_or_fail(self) -> None:
        for name, proc in [("daemon", self.daemon), ("code server", self.code_server)]:
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{name} exited:\n{proc.log_tail()}")

    def logs(self, lines: int = 30) -> str:
        procs = {"daemon": self.daemon, "code server": self.code_server, **self.workers}
        return "\n".join(
            f"--- {name}:\n{proc.log_tail(lines)}" for name, proc in procs.items() if proc
        )

    # -- reading what happened ------------------------------------------------------------------

    @contextmanager
    def instance(self) -> Iterator[DagsterInstance]:
        """The deployment's Dagster instance, opened from this process."""
        home = self._machine("observer")["DAGSTER_HOME"]
        with temporary_env(**self.pg_env):
            instance = DagsterInstance.from_config(home)
        try:
            yield instance
        finally:
            instance.dispose()

    def step_hosts(self, instance: DagsterInstance, run_id: str) -> list[str]:
        """Which workers took the run's steps (the Celery hostnames dagster-celery logs)."""
        hosts = []
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
            event = entry.dagster_event
            data = event.engine_event_data if event else None
            host = data.metadata.get("Celery worker") if data else None
            if host is not None:
                hosts.append(str(host.value).split("@", 1)[0])
        return hosts

    def videos_by_worker(
        self, instance: DagsterInstance, run_ids: list[str] | None = None
    ) -> Counter[str]:
        """How many ``omni_video`` materializations each worker wrote (by the pid on each
        event); anything written by another process counts under its pid."""
        counts: Counter[str] = Counter()
        runs = run_ids if run_ids is not None else [r.run_id for r in instance.get_runs()]
        for run_id in runs:
            for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
                event = entry.dagster_event
                if event is None or event.asset_key != VIDEO_ASSET_KEY:
                    continue
                counts[self.worker_of_pid.get(event.pid or 0, f"pid {event.pid}")] += 1
        return counts


def _process_tree(pid: int) -> set[int]:
    try:
        return {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _wait_port(port: int, proc: ChildProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"exited before listening on {port}:\n{proc.log_tail()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s:\n{proc.log_tail()}")
