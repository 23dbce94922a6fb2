"""Drive the code location's real sensors and jobs in this process, until every request settles.

This is what ``omni-assets demo`` and ``omni-assets run`` use: the same sensor functions the
daemon evaluates, and the same jobs, executed in-process against a persistent Dagster instance.
Every run launched is a real run in that instance (visible in ``dagster dev`` pointed at it).
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunRequest,
    RunsFilter,
    SensorResult,
    SkipReason,
    build_sensor_context,
)
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from ..assets import omni_video_partitions
from ..jobs import REPORT_FAILURE_JOB
from ..pipeline.budget import RUN_TAG
from ..pipeline.submit import PROVIDER_REFUSALS, recover_stale_submits
from ..reconcile import RECONCILE_SENSOR
from ..registry import Record, RecordState, Registry

__all__ = ["DriveResult", "LocalDriver"]

# "host:pid" of the process that executes a run in-process: if that process is gone, so is the run.
DRIVER_TAG = "omni/driver"
#: The code location ``dagster dev`` loads from the repository's workspace.yaml.
DEFAULT_LOCATION = "omni_assets.location"
_UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.NOT_STARTED]


@dataclass
class DriveResult:
    records: list[Record] = field(default_factory=list)
    runs: int = 0
    ticks: int = 0
    timed_out: bool = False
    #: provider -> its refusal ("AuthenticationError: ..."), when the drive stopped on one.
    refused: dict[str, str] = field(default_factory=dict)
    #: key -> "budget: ... spent today", when the drive stopped because the rest waits on budget.
    over_budget: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not self.timed_out
            and not self.refused
            and not self.over_budget
            and all(r.state == RecordState.MATERIALIZED for r in self.records)
        )


class LocalDriver:
    """Evaluates ``omni_requests_sensor`` and ``omni_poll_sensor`` and executes their runs."""

    def __init__(
        self,
        defs: Definitions,
        instance: DagsterInstance,
        registry: Registry,
        *,
        run_log_level: str = "INFO",
        location: str = DEFAULT_LOCATION,
    ) -> None:
        self.defs, self.instance, self.registry = defs, instance, registry
        self.run_log_level = run_log_level
        self.location = location
        self.cursors: dict[str, str | None] = {}
        self.runs = 0
        self.budget_run = f"drive-{uuid.uuid4().hex[:12]}"

    def tick(self, sensor_name: str) -> list[str]:
        """Evaluate one sensor once and execute the runs it asks for; returns their job names."""
        sensor = self.defs.resolve_sensor_def(sensor_name)
        with build_sensor_context(
            instance=self.instance,
            resources=self.defs.resources,
            sensor_name=sensor_name,
            cursor=self.cursors.get(sensor_name),
        ) as context:
            result = sensor(context)
            self.cursors[sensor_name] = context.cursor
        if isinstance(result, SkipReason) or result is None:
            return []
        assert isinstance(result, SensorResult)
        for request in result.dynamic_partitions_requests or []:
            keys = list(getattr(request, "partition_keys", []) or [])
            if keys:
                self.instance.add_dynamic_partitions(omni_video_partitions.name or "", keys)
        launched = []
        for run in result.run_requests or []:
            launched.append(
                self._execute(run, sensor.job_name if not run.job_name else run.job_name)
            )
        return launched

    def _execute(self, run: RunRequest, job_name: str | None) -> str:
        assert job_name is not None
        job = self.defs.resolve_job_def(job_name)
        tags = dict(run.tags or {})
        if run.run_key:
            tags["dagster/run_key"] = run.run_key
        tags[DRIVER_TAG] = f"{socket.gethostname()}:{os.getpid()}"
        # One budget run for the whole drive: OMNI_BUDGET's ``run`` limit is per invocation.
        tags.setdefault(RUN_TAG, self.budget_run)
        run_config = {
            **(run.run_config or {}),
            "loggers": {"console": {"config": {"log_level": self.run_log_level}}},
        }
        if job_name == REPORT_FAILURE_JOB:
            # A run that fails on purpose (the partition shows FAILED): the CLI's own table
            # already says why, so its step failure's traceback stays out of the terminal.
            run_config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
        with _runs_of_location(self.instance, self.location, job_name):
            job.execute_in_process(
                run_config=run_config,
                instance=self.instance,
                tags=tags,
                raise_on_error=False,
                partition_key=run.partition_key,
            )
        self.runs += 1
        return job_name

    def fail_orphaned_runs(self) -> list[str]:
        """Mark failed the runs a driver on this host started whose process has died.

        A run executed in-process dies with its process (a kill, a crash, Ctrl-C twice) and
        would stay "started" in the instance forever; the poll sensor would then never free
        the videos it had claimed. Returns the run ids marked failed.
        """
        host = socket.gethostname()
        failed = []
        for run in self.instance.get_runs(RunsFilter(statuses=_UNFINISHED)):
            owner = run.tags.get(DRIVER_TAG, "")
            owner_host, _, pid = owner.rpartition(":")
            if owner_host != host or not pid.isdigit() or _alive(int(pid)):
                continue
            self.instance.report_run_failed(
                run, f"the process that was running it ({owner}) is gone: killed or crashed"
            )
            failed.append(run.run_id)
        return failed

    def drive(
        self,
        keys: list[str] | None = None,
        *,
        timeout_s: float = 600.0,
        interval_s: float = 1.0,
        on_tick: Callable[[list[Record]], None] | None = None,
        stop_on_refusal: bool = True,
    ) -> DriveResult:
        """Tick until every request in ``keys`` (default: all registered) has settled.

        With ``stop_on_refusal``, also stop when everything unsettled waits on a provider that
        refused a submission during this drive (bad key, no balance, not configured): the daemon
        would try again on a later tick, but a one-shot drive has nothing left to wait for.
        ``result.refused`` says which and why; nothing was created for those requests.
        """
        deadline = time.monotonic() + timeout_s
        since = time.time()
        result = DriveResult()
        if self.fail_orphaned_runs() and not self.instance.get_runs(
            RunsFilter(statuses=_UNFINISHED), limit=1
        ):
            # A driver died inside a run and nothing runs now: whatever is still "submitting"
            # was that run's, so settle it at once (replay under the same idempotency key, or
            # unknown) instead of after the sensor's STALE_SUBMIT_S.
            recover_stale_submits(self.registry, older_than_s=0)
        self.tick("omni_requests_sensor")
        if any(s.name == RECONCILE_SENSOR for s in self.defs.sensors or ()):
            # This instance may be new (a deleted home): show what the registry already holds.
            self.tick(RECONCILE_SENSOR)
        while True:
            result.ticks += 1
            self.tick("omni_poll_sensor")
            records = self._records(keys)
            if on_tick:
                on_tick(records)
            if all(r.state.settled for r in records):
                break
            if stop_on_refusal:
                result.refused = self._blocking_refusals(records, since)
                result.over_budget = _waiting_on_budget(records, self.registry.budget_freed_at())
                if result.refused or result.over_budget:
                    break
            if time.monotonic() > deadline:
                result.timed_out = True
                break
            time.sleep(interval_s)
        result.records, result.runs = self._records(keys), self.runs
        return result

    def _blocking_refusals(self, records: list[Record], since: float) -> dict[str, str]:
        """provider -> reason, if every unsettled record is pending behind a refusal since
        ``since``; else empty."""
        unsettled = [r for r in records if not r.state.settled]
        refused: dict[str, str] = {}
        for r in unsettled:
            if r.state is not RecordState.PENDING:
                return {}
            error = r.error
            if r.provider in refused or error is None or error.kind not in PROVIDER_REFUSALS:
                continue
            history = self.registry.history(r.key)
            if history and history[-1].at >= since:  # refused now, not in an earlier drive
                refused[r.provider] = f"{error.kind}: {error.message}"
        if not all(r.provider in refused for r in unsettled):
            return {}
        return refused

    def _records(self, keys: list[str] | None) -> list[Record]:
        if keys is None:
            return self.registry.records()
        return self.registry.get_many(keys)


def _waiting_on_budget(records: list[Record], freed_at: float) -> dict[str, str]:
    """key -> reason, if everything unsettled is pending over budget, judged after the budget
    last changed (so nothing can move any more in this drive)."""
    unsettled = [r for r in records if not r.state.settled]
    waiting = {
        r.key: r.error.message
        for r in unsettled
        if r.state is RecordState.PENDING
        and r.error is not None
        and r.error.kind == "BudgetExceeded"
        and (r.error.at or 0) > freed_at
    }
    return waiting if unsettled and len(waiting) == len(unsettled) else {}


@contextmanager
def _runs_of_location(instance: DagsterInstance, location: str, job_name: str) -> Iterator[None]:
    """Runs created meanwhile belong to ``job_name`` of code location ``location``.

    ``execute_in_process`` records a run without an origin, and the UI's Overview timeline
    leaves out every run without one (it draws a row per code location job). With the origin
    of the location ``dagster dev`` loads (workspace.yaml, ``-m omni_assets.location``), the
    CLI's runs appear in its row, with their start and end.
    """
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=ManagedGrpcPythonEnvCodeLocationOrigin(
                loadable_target_origin=LoadableTargetOrigin(
                    executable_path=sys.executable, module_name=location
                ),
                location_name=location,
            ),
            repository_name=SINGLETON_REPOSITORY_NAME,
        ),
        job_name=job_name,
    )
    create = instance.create_run_for_job

    def create_with_origin(*args: Any, **kwargs: Any) -> DagsterRun:
        kwargs.setdefault("remote_job_origin", origin)
        return create(*args, **kwargs)

    # On this instance object only, for this one call: execute_in_process has no origin option.
    instance.create_run_for_job = create_with_origin  # type: ignore[method-assign]
    try:
        yield
    finally:
        del instance.create_run_for_job


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
