"""Sensors: read requests into partitions, and poll in-flight tasks.

``omni_requests_sensor`` reads the requests file, registers valid requests as dynamic partitions
and reports invalid ones in its tick log and on ``omni_requests`` (requests_file.py).
``omni_poll_sensor`` polls every in-flight task within a budget 20 s under the sensor tick
timeout (:func:`tick_budget_s`), records failures on their partitions (an ``omni_report_failure``
run each, so the partition shows FAILED), launches ``omni_materialize`` runs (per provider, up
to 50 videos each) for everything that finished, and launches ``omni_submit`` when requests are
waiting and no submit run is active. Cursors stay tiny; state lives in the registry. The
builders take a ``name`` and a ``default_status``, as dagster-fivetran's do.
"""

import hashlib
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import (
    AssetObservation,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from .assets import VIDEO_ASSET_KEY, omni_video_partitions, report_failure
from .jobs import MATERIALIZE_JOB, REPORT_FAILURE_JOB, SUBMIT_JOB, report_failure_job
from .pipeline.failover import fail_over_unpaid_failures
from .pipeline.intake import Intake, load_requests_file
from .pipeline.poll import poll_in_flight
from .pipeline.runtime import OmniRuntime
from .pipeline.submit import recover_stale_submits
from .registry import RecordState
from .request import VideoRequest
from .requests_file import check_intake, requests_events
from .resources import runtime_from_resources
from .settings import Settings

__all__ = [
    "MAX_VIDEOS_PER_RUN",
    "MAX_VIDEOS_PER_TICK",
    "build_poll_sensor",
    "build_requests_sensor",
    "failure_report_runs",
    "register_requests",
    "tick_budget_s",
]

#: Dagster's limit on one sensor tick when no environment variable sets another.
DEFAULT_TICK_TIMEOUT_S = 60.0
# What a tick does after polling (claims, run requests, logs) and the gRPC round trip.
TICK_MARGIN_S = 20.0
MAX_VIDEOS_PER_RUN = 50
MAX_VIDEOS_PER_TICK = 200
PROGRESS_KEYS = 20  # tasks named in the tick log's progress line; the rest are counted
STALE_SUBMIT_S = 600.0  # a POST never takes this long: the submitter died
# A claim whose run does not exist this long after the tick: the process that should have
# launched it died in between (a run is created within seconds of its tick). Releasing early is
# harmless: a late run re-checks that it still holds each claim before downloading.
STALE_CLAIM_S = 120.0
_ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def tick_budget_s(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds a poll tick may spend polling: the sensor tick timeout less ``TICK_MARGIN_S``.

    The timeout is Dagster's own: ``DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS``, else
    ``DAGSTER_GRPC_TIMEOUT_SECONDS``, else 60 s. A short timeout keeps at least half for polling.
    """
    timeout = DEFAULT_TICK_TIMEOUT_S
    for name in ("DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS", "DAGSTER_GRPC_TIMEOUT_SECONDS"):
        if environ.get(name):
            timeout = float(environ[name])
            break
    return max(timeout / 2, timeout - TICK_MARGIN_S)


def register_requests(
    runtime: OmniRuntime, requests: Sequence[VideoRequest], issues: Intake | None = None
) -> tuple[Intake, list[str]]:
    """Validate and register ``requests``; returns the outcome and the keys to add as partitions."""
    checked = check_intake(runtime, requests, issues)
    result = runtime.register(checked.requests)
    return checked, [*result.new, *result.changed]


def _even_chunks(keys: list[str], most: int) -> list[list[str]]:
    """``keys`` in order, in as few chunks of at most ``most`` as possible, of even sizes."""
    count = -(-len(keys) // most)
    size = -(-len(keys) // count) if count else most
    return [keys[start : start + size] for start in range(0, len(keys), size)]


def _file_digest(path: Path) -> str:
    """The file's sha256 prefix, read a block at a time (a huge file never sits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _active_runs(context: SensorEvaluationContext, job_name: str) -> int:
    return len(
        context.instance.get_run_ids(RunsFilter(job_name=job_name, statuses=_ACTIVE), limit=1)
    )


def build_requests_sensor(
    provider_keys: Sequence[str],
    submit_job: JobDefinition,
    requests_path: str | None = None,
    *,
    minimum_interval_seconds: int = 30,
    name: str = "omni_requests_sensor",
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    """The sensor that registers the requests file's valid requests as ``omni_video`` partitions
    (and launches ``omni_submit`` when some are new)."""

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={"omni_storage", "omni_registry", *provider_keys},
        default_status=default_status,
        job=submit_job,
        description="Registers the requests file's valid requests as omni_video partitions.",
    )
    def omni_requests_sensor(
        context: SensorEvaluationContext, **_resources: Any
    ) -> SensorResult | SkipReason:
        settings = Settings.from_env()
        path = requests_path or settings.requests_path
        if not path:
            return SkipReason("no requests file: set OMNI_REQUESTS (or pass requests_path)")
        try:
            digest = _file_digest(Path(path))
        except OSError as exc:
            return SkipReason(f"cannot read requests file {path}: {exc}")
        if digest == context.cursor:
            return SkipReason(f"{path} unchanged")
        runtime = runtime_from_resources(context.resources, provider_keys)
        intake = load_requests_file(
            path,
            max_requests=settings.max_requests,
            image_roots=settings.allowed_image_roots,
        )
        checked, keys = register_requests(runtime, intake.requests, intake)
        for issue in checked.issues:
            context.log.warning(f"rejected: {issue}")
        # Beyond this tick's log: on omni_requests, and its valid check (red if any is rejected).
        for event in requests_events(path, checked):
            context.instance.report_runless_asset_event(event)
        context.log.info(
            f"{path}: {len(checked.requests)} valid, {len(checked.issues)} rejected, "
            f"{len(keys)} new or changed"
        )
        existing = set(context.instance.get_dynamic_partitions(omni_video_partitions.name or ""))
        new_keys = [r.key for r in checked.requests if r.key not in existing]
        context.update_cursor(digest)
        runs = []
        if keys and not _active_runs(context, SUBMIT_JOB):
            runs.append(RunRequest(run_key=f"submit-{digest}-{int(time.time())}"))
        return SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=(
                [omni_video_partitions.build_add_request(new_keys)] if new_keys else []
            ),
        )

    return omni_requests_sensor


def build_poll_sensor(
    provider_keys: Sequence[str],
    submit_job: JobDefinition,
    materialize_job: JobDefinition,
    report_job: Any = report_failure_job,  # define_asset_job's type is not exported
    *,
    minimum_interval_seconds: int = 15,
    name: str = "omni_poll_sensor",
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    """The sensor that polls in-flight tasks and launches materialize (and submit) runs."""

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={"omni_storage", "omni_registry", *provider_keys},
        default_status=default_status,
        jobs=[submit_job, materialize_job, report_job],
        description="Polls in-flight tasks; batched materialize runs for finished ones, and a "
        "failing omni_report_failure run for each failed one (its partition shows FAILED).",
    )
    def omni_poll_sensor(
        context: SensorEvaluationContext, **_resources: Any
    ) -> SensorResult | SkipReason:
        runtime = runtime_from_resources(context.resources, provider_keys)
        return poll_tick(context, runtime)

    return omni_poll_sensor


def poll_tick(context: SensorEvaluationContext, runtime: OmniRuntime) -> SensorResult | SkipReason:
    """One tick of the poll sensor (a function of its own so the CLI drives the same code)."""
    registry = runtime.registry
    _recover_stale(context, runtime)
    report = poll_in_flight(
        registry, runtime.providers, policies=runtime.policies, budget_s=tick_budget_s()
    )
    if report.progress:
        # One line per tick, whatever the number of tasks: the first few by name, then a count.
        progress = sorted(report.progress.items())
        shown = ", ".join(f"{key} {percent}%" for key, percent in progress[:PROGRESS_KEYS])
        more = len(progress) - PROGRESS_KEYS
        context.log.info(f"progress: {shown}" + (f" (+{more} more)" if more > 0 else ""))
    for key, raw in report.unrecognized.items():
        context.log.warning(f"{key}: unrecognized status {raw!r}, still polling")
    for key, hop in fail_over_unpaid_failures(registry, runtime.router, report.failed).items():
        context.log.warning(f"{key} failed uncharged and moves to another seller: {hop}")
        report.failed.pop(key)
    for key in report.failed:
        record = registry.get(key)
        if record is None:
            continue
        context.log.error(
            f"{key} failed at {record.provider} (task {record.task_id}): {report.failed[key]}"
        )
        context.instance.report_runless_asset_event(
            AssetObservation(
                asset_key=VIDEO_ASSET_KEY, partition=key, metadata=report_failure(runtime, record)
            )
        )
    runs: list[RunRequest] = []
    ready: dict[str, list[str]] = {}
    for record in registry.ready(limit=MAX_VIDEOS_PER_TICK):
        ready.setdefault(record.provider, []).append(record.key)
    # Runs per provider (the omni/provider tag lets the run queue cap concurrent downloads per
    # provider: tag_concurrency_limits in deploy/dagster.yaml) of at most MAX_VIDEOS_PER_RUN:
    # a run writes its videos' events one after another (~0.1 s each on SQLite storage), so a
    # tick's batch split over a few runs lands several times sooner than in one long run. The
    # runs are even (101 videos: 34/34/33, not 50/50/1): the batch lands when its largest does.
    batches = [
        (provider, chunk)
        for provider, keys in sorted(ready.items())
        for chunk in _even_chunks(keys, MAX_VIDEOS_PER_RUN)
    ]
    for provider, keys in batches:
        token = f"materialize-{uuid.uuid4().hex[:12]}"
        claimed = registry.claim(keys, token)
        if claimed:
            runs.append(
                RunRequest(
                    run_key=token,
                    job_name=MATERIALIZE_JOB,
                    run_config={
                        "ops": {
                            "materialize_ready_videos": {
                                "config": {"keys": claimed, "claim_token": token}
                            }
                        }
                    },
                    tags={"omni/provider": provider, "omni/videos": str(len(claimed))},
                )
            )
    runs.extend(failure_report_runs(context.instance, runtime))
    counts = registry.counts()
    if counts.get(RecordState.PENDING, 0) and not _active_runs(context, SUBMIT_JOB):
        runs.append(RunRequest(run_key=f"submit-{int(time.time())}", job_name=SUBMIT_JOB))
    summary = (
        f"polled {report.polled} in {report.seconds:.2f}s; {len(report.ready)} finished, "
        f"{len(report.failed)} failed, {len(report.errors)} errors; "
        f"{counts.get(RecordState.IN_FLIGHT, 0)} in flight, "
        f"{counts.get(RecordState.PENDING, 0)} pending"
    )
    # Only a tick that did something says so: an idle tick every second ("polled 0 in 0.00s")
    # was most of a run's log. The skip reason still shows every tick in the UI.
    if report.polled or runs or report.failed or report.errors:
        context.log.info(summary)
    if report.skipped_for_budget:
        context.log.warning(f"{report.skipped_for_budget} polls left for the next tick (budget)")
    if not runs:
        return SkipReason(summary)
    return SensorResult(run_requests=runs)


def failure_report_runs(instance: DagsterInstance, runtime: OmniRuntime) -> list[RunRequest]:
    """An ``omni_report_failure`` run for each failed request whose partition Dagster does not
    show as failed yet (nor materialized, nor in progress): the failures of this tick's polls,
    and those the submit job recorded (an invalid input, a failed parent) since the last tick.

    Dagster's partition status cache answers which are shown already, so a tick costs one
    registry query for the failed records, not a run lookup per failure. The run key is the
    attempt's: the daemon never launches the same report twice.
    """
    failed = runtime.registry.records(states=[RecordState.FAILED])
    if not failed:
        return []
    live = set(instance.get_dynamic_partitions(omni_video_partitions.name or ""))
    keys = [r.key for r in failed if r.key in live]
    shown = instance.get_status_by_partition(VIDEO_ASSET_KEY, keys, omni_video_partitions) or {}
    return [
        RunRequest(
            run_key=f"report-failure-{record.key}-{record.attempt}",
            job_name=REPORT_FAILURE_JOB,
            partition_key=record.key,
            tags={"omni/provider": record.provider},
        )
        for record in failed
        if record.key in live and shown.get(record.key) is None
    ]


def _recover_stale(context: Any, runtime: OmniRuntime) -> None:
    """Surface crashed submissions, and free claims whose run is gone."""
    registry = runtime.registry
    for key, outcome in recover_stale_submits(registry, STALE_SUBMIT_S).items():
        context.log.warning(f"{key}: its submitter died mid-submission; {outcome}")
    runs_by_token: dict[str, Any] = {}  # one run lookup per claim, not per video claimed
    for record in registry.records(states=[RecordState.MATERIALIZING]):
        token = record.run_id
        if not token:
            continue
        if token not in runs_by_token:
            # The sensor's claims are run keys; the blocking path claims with its run id.
            found = context.instance.get_runs(RunsFilter(tags={"dagster/run_key": token}), limit=1)
            runs_by_token[token] = found[0] if found else context.instance.get_run_by_id(token)
        run = runs_by_token[token]
        if run is not None and run.status in _ACTIVE:
            continue
        if run is not None or (record.claimed_at or 0) < time.time() - STALE_CLAIM_S:
            registry.release(record.key)
