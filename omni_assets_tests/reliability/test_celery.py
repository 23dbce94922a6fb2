"""The Celery profile (deploy/celery/) with two real workers, on Redis, PostgreSQL and S3.

Everything runs as it would across machines, on 127.0.0.1: redis-server as the broker,
PostgreSQL for the Dagster instance and the registry, SeaweedFS for the videos, the emulator as
the providers, a gRPC code server, dagster-daemon, and two ``dagster-celery`` workers, each with
its own working directory, TMPDIR and DAGSTER_HOME (:mod:`omni_assets_tests.celery_deployment`).

1. 40 requests go through; the step events show both workers materialized videos, and the
   emulator's audit shows no generation was created twice.
2. The worker running a download is killed with SIGKILL: its step's message was never
   acknowledged, so Redis hands it to the other worker once the visibility timeout passes, and
   that worker downloads the videos again under the same claim. Nothing is lost, nothing paid
   twice.
3. Redis restarts (losing everything: no persistence) in the middle of a run: the run rides it
   out, or fails and the next poll tick's run finishes the videos; nothing is paid twice.

The visibility timeout is the profile's 900 s shortened to :data:`VISIBILITY_S`; it must stay
above the longest step (up to ~20 s here at a load average of 20: 40 submissions), or that step
is handed to a second worker while it still runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from omni_assets.registry import RecordState, Registry

from ..celery_deployment import CeleryDeployment
from ..servers import EmulatorProcess, PostgresServer, RedisServer, SeaweedS3, require_system
from .harness import record_figures, tasks_by_prompt

# Generous timeouts: every run is a process start (~4 CPU-s), and on a loaded 2-core machine a
# run waits tens of seconds to start; on a quiet one each case takes well under a minute.
pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

VISIBILITY_S = 45.0
# Each provider on the emulator; apimart's default model takes no duration, so name one.
DIALECTS: list[dict[str, Any]] = [
    {"provider": "jimmyai"},
    {"provider": "crun"},
    {"provider": "toapis"},
    {"provider": "apimart", "model": "Omni-Flash-Ext"},
]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require_system("redis-server (Debian package)", RedisServer.binary() is not None)
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    log_dir = tmp_path_factory.mktemp("celery-emulator")
    with EmulatorProcess(log_dir, generation_seconds=1.0, queue_fraction=0.2, seed=15) as emu:
        yield emu


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    s3_server: SeaweedS3,
    redis_server: RedisServer,
    providers: EmulatorProcess,
) -> Iterator[CeleryDeployment]:
    root = tmp_path_factory.mktemp("celery")
    started = time.monotonic()
    with CeleryDeployment(
        root,
        postgres=postgres_server,
        s3=s3_server,
        redis=redis_server,
        emulator_url=providers.url,
        visibility_timeout_s=VISIBILITY_S,
    ) as deployment:
        deployment.start(workers=2)
        record_figures("celery", startup_s=round(time.monotonic() - started, 1))
        yield deployment


def _requests(case: str, count: int, dialects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{case}-{i:02d}",
            "prompt": f"celery {case} {i}",
            "duration": 4,
            **dialects[i % len(dialects)],
        }
        for i in range(count)
    ]


def _wait_materialized(
    deployment: CeleryDeployment, registry: Registry, keys: set[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = [r for r in registry.records() if r.key in keys]
        if len(records) == len(keys) and all(r.state == RecordState.MATERIALIZED for r in records):
            return
        deployment.alive_or_fail()
        time.sleep(0.5)
    states = {r.key: r.state.value for r in registry.records() if r.key in keys}
    pytest.fail(f"not materialized in {timeout:.0f} s: {states}\n{deployment.logs()}")


def _wait(check: Any, timeout: float, what: str, deployment: CeleryDeployment) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout:.0f} s\n{deployment.logs()}")
        time.sleep(0.1)


def _materialize_runs(instance: DagsterInstance, keys: set[str]) -> list[Any]:
    """The omni_materialize runs asked for any of ``keys``, oldest first."""
    records = instance.get_run_records(RunsFilter(job_name="omni_materialize"))
    runs = []
    for record in sorted(records, key=lambda r: r.create_timestamp):
        asked = record.dagster_run.run_config["ops"]["materialize_ready_videos"]["config"]["keys"]
        if keys & set(asked):
            runs.append(record.dagster_run)
    return runs


def _wait_runs_finished(instance: DagsterInstance, runs: list[Any], timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        latest = [instance.get_run_by_id(r.run_id) for r in runs]
        if all(r is not None and r.is_finished for r in latest) or time.monotonic() > deadline:
            return latest
        time.sleep(0.5)


def _paid_once(providers: EmulatorProcess, requests: list[dict[str, Any]]) -> dict[str, int]:
    """Generations the emulator created per prompt of ``requests`` (each must be 1)."""
    created = tasks_by_prompt(providers.audit())
    return {r["prompt"]: created[r["prompt"]] for r in requests}


def _storage_problems(deployment: CeleryDeployment, keys: set[str]) -> list[str]:
    """Each key's video on S3 matches its sidecar (size and sha256)."""
    fs = deployment.s3.filesystem()
    base = deployment.storage_url.removeprefix("s3://")
    problems = []
    for key in sorted(keys):
        try:
            data = fs.cat(f"{base}/videos/{key}.mp4")
            sidecar = json.loads(fs.cat(f"{base}/videos/{key}.json"))
        except FileNotFoundError as exc:
            problems.append(f"{key}: {exc}")
            continue
        if (
            sidecar.get("size") != len(data)
            or sidecar.get("sha256") != hashlib.sha256(data).hexdigest()
        ):
            problems.append(f"{key}: video does not match its sidecar")
    return problems


def test_forty_requests_spread_over_two_workers(
    deployment: CeleryDeployment, providers: EmulatorProcess
) -> None:
    # Two dialects: each poll tick launches one omni_materialize run per provider, so two runs
    # at a time, one per worker (a busy solo worker takes no second message).
    requests = _requests("spread", 40, DIALECTS[:2])
    keys = {r["id"] for r in requests}
    registry = Registry(deployment.registry_url)
    started = time.monotonic()
    try:
        deployment.write_requests(requests)
        _wait_materialized(deployment, registry, keys, timeout=400)
        wall = time.monotonic() - started
    finally:
        registry.close()
    with deployment.instance() as instance:
        runs = _wait_runs_finished(instance, _materialize_runs(instance, keys), 60)
        assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
        by_worker = deployment.videos_by_worker(instance, [r.run_id for r in runs])
        hosts = {h for r in runs for h in deployment.step_hosts(instance, r.run_id)}
        submits = [r for r in instance.get_runs() if r.job_name == "omni_submit"]
        submit_hosts = {h for r in submits for h in deployment.step_hosts(instance, r.run_id)}
    # Both workers materialized videos, and no other process did (every step ran on a worker).
    assert sum(by_worker.values()) == 40, by_worker
    assert set(by_worker) == {"worker-a", "worker-b"}, by_worker
    assert hosts == {"worker-a", "worker-b"}
    assert submit_hosts <= {"worker-a", "worker-b"} and submit_hosts
    paid = _paid_once(providers, requests)
    assert set(paid.values()) == {1}, {p: n for p, n in paid.items() if n != 1}
    assert _storage_problems(deployment, keys) == []
    record_figures(
        "celery",
        forty_requests_s=round(wall, 1),
        forty_videos_per_worker=dict(sorted(by_worker.items())),
        forty_materialize_runs=len(runs),
        forty_duplicate_generations=sum(n - 1 for n in paid.values()),
    )


# Downloads that take a while: ~0.66 MB videos at 150 kB/s a connection, ~4.4 s each.
SLOW_DOWNLOADS = {"download_bytes_per_second": 150_000, "video_padding_bytes": 600_000}
FAST_DOWNLOADS = {"download_bytes_per_second": 0, "video_padding_bytes": 0}


def _running_step_host(deployment: CeleryDeployment, keys: set[str]) -> tuple[Any, str] | None:
    """A started omni_materialize run for ``keys`` and the worker running its step."""
    with deployment.instance() as instance:
        for run in _materialize_runs(instance, keys):
            hosts = deployment.step_hosts(instance, run.run_id)
            if run.status == DagsterRunStatus.STARTED and hosts:
                return run, hosts[-1]
    return None


def _downloads_of(providers: EmulatorProcess, requests: list[dict[str, Any]]) -> list[Any]:
    audit = providers.audit()
    prompts = {r["prompt"] for r in requests}
    tasks = {t["task_id"] for t in audit["tasks"] if t["prompt"] in prompts}
    return [d for d in audit["downloads"] if d["task_id"] in tasks]


def test_a_worker_killed_mid_download_loses_nothing_and_pays_nothing_twice(
    deployment: CeleryDeployment, providers: EmulatorProcess
) -> None:
    requests = _requests("kill", 2, [{"provider": "crun"}])
    keys = {r["id"] for r in requests}
    registry = Registry(deployment.registry_url)
    providers.configure(**SLOW_DOWNLOADS)
    victim = None
    try:
        deployment.write_requests(requests)
        found: list[tuple[Any, str]] = []

        def downloading() -> bool:
            if (
                not _downloads_of(providers, requests)
                and providers.audit()["downloads_in_progress"]
            ):
                hit = _running_step_host(deployment, keys)
                if hit is not None:
                    found.append(hit)
                    return True
            return False

        _wait(downloading, 400, "a download of the kill case", deployment)
        run, victim = found[0]
        killed_at = time.monotonic()
        deployment.kill_worker(victim)
        _wait_materialized(deployment, registry, keys, timeout=400)
        recovered_s = time.monotonic() - killed_at
        history = {key: [e.event for e in registry.history(key)] for key in keys}
    finally:
        providers.configure(**FAST_DOWNLOADS)
        registry.close()
        if victim is not None:  # the next case wants two workers again
            deployment.start_worker(victim)
            deployment.wait_workers_ready(300)
    (survivor,) = {"worker-a", "worker-b"} - {victim}
    with deployment.instance() as instance:
        (finished,) = _wait_runs_finished(instance, [run], 120)
        hosts = deployment.step_hosts(instance, run.run_id)
        by_worker = deployment.videos_by_worker(instance, [run.run_id])
        # The two videos may become ready in different ticks: two runs, one of them killed.
        runs_of_keys = [r.run_id for r in _materialize_runs(instance, keys)]
        in_all_runs = deployment.videos_by_worker(instance, runs_of_keys)
    # The same step, taken by the survivor once Redis handed the unacknowledged message back.
    assert hosts == [victim, survivor], hosts
    assert finished.status == DagsterRunStatus.SUCCESS
    assert set(by_worker) == {survivor} and by_worker[survivor] >= 1, by_worker
    assert sum(in_all_runs.values()) == len(keys), in_all_runs
    # The killed downloads never completed; each video was then downloaded in full once.
    downloads = _downloads_of(providers, requests)
    assert any(not d["complete"] for d in downloads), downloads
    assert sum(d["complete"] for d in downloads) == len(keys), downloads
    # The claim stayed with the run (it was alive, waiting for its step) and was never
    # taken by anyone else: claimed once, then materialized.
    for key, events in history.items():
        assert events.count("claimed") == 1 and events[-1] == "materialized", (key, events)
    paid = _paid_once(providers, requests)
    assert set(paid.values()) == {1}, paid
    assert _storage_problems(deployment, keys) == []
    record_figures(
        "celery",
        kill_recovered_s=round(recovered_s, 1),
        kill_visibility_timeout_s=VISIBILITY_S,
        kill_duplicate_generations=sum(n - 1 for n in paid.values()),
    )


def test_a_redis_restart_mid_run_pays_nothing_twice(
    deployment: CeleryDeployment, providers: EmulatorProcess, redis_server: RedisServer
) -> None:
    requests = _requests("redis", 2, [{"provider": "jimmyai"}])
    keys = {r["id"] for r in requests}
    registry = Registry(deployment.registry_url)
    providers.configure(**SLOW_DOWNLOADS)
    try:
        deployment.write_requests(requests)

        def downloading() -> bool:
            return bool(
                providers.audit()["downloads_in_progress"]
                and _running_step_host(deployment, keys) is not None
            )

        _wait(downloading, 400, "a download of the Redis case", deployment)
        restarted_at = time.monotonic()
        # Stopped, down 2 s, started empty (no persistence): queues, unacknowledged messages and
        # results are gone.
        redis_server.restart(down_s=2)
        _wait_materialized(deployment, registry, keys, timeout=400)
        recovered_s = time.monotonic() - restarted_at
        providers.configure(**FAST_DOWNLOADS)
        # After the restart the deployment takes new work as before.
        after = _requests("after-redis", 2, [{"provider": "toapis"}])
        deployment.write_requests(after)
        _wait_materialized(deployment, registry, {r["id"] for r in after}, timeout=400)
    finally:
        providers.configure(**FAST_DOWNLOADS)
        registry.close()
    with deployment.instance() as instance:
        runs = _wait_runs_finished(instance, _materialize_runs(instance, keys), 120)
        statuses = [r.status for r in runs]
    # Recovered (the run rode out the restart), or failed cleanly and a later run finished.
    assert all(r.is_finished for r in runs), statuses
    assert statuses[-1] == DagsterRunStatus.SUCCESS, statuses
    paid = _paid_once(providers, [*requests, *after])
    assert set(paid.values()) == {1}, paid
    assert _storage_problems(deployment, keys | {r["id"] for r in after}) == []
    record_figures(
        "celery",
        redis_restart_recovered_s=round(recovered_s, 1),
        redis_restart_runs=[s.value for s in statuses],
        redis_restart_duplicate_generations=sum(n - 1 for n in paid.values()),
    )
