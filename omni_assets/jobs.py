"""The jobs the sensors launch: submit pending requests, materialize finished videos, and show
a failed generation as a failed ``omni_video`` partition (:data:`report_failure_job`)."""

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    AssetObservation,
    Config,
    ExecutorDefinition,
    Failure,
    JobDefinition,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    define_asset_job,
    job,
    op,
)
from pydantic import Field

from .assets import (
    REPORT_FAILURE_TAG,
    VIDEO_ASSET_KEY,
    check_evaluations,
    materialization_event,
)
from .lineage_assets import failure_observations
from .pipeline.budget import RUN_TAG
from .pipeline.materialize import (
    MaterializedVideo,
    commit_materialized,
    materialize_record,
    record_failed_download,
)
from .pipeline.runtime import OmniRuntime
from .pipeline.submit import submit_pending
from .registry import RecordState
from .resources import runtime_from_resources
from .source_images import report_source_images

__all__ = [
    "MATERIALIZE_JOB",
    "REPORT_FAILURE_JOB",
    "SUBMIT_JOB",
    "MaterializeConfig",
    "build_jobs",
    "report_failure_job",
]

SUBMIT_JOB = "omni_submit"
MATERIALIZE_JOB = "omni_materialize"
REPORT_FAILURE_JOB = "omni_report_failure"

#: One run per failed generation, of the ``omni_video`` asset for its partition, which raises a
#: ``dagster.Failure`` with the reason. Open-source Dagster stores no "failed to materialize"
#: event of its own (``can_store_asset_failure_events`` is False on SQLite and PostgreSQL): a
#: partition is FAILED in the UI when the latest run that planned it failed. So the poll sensor
#: launches this for a partition whose request failed, and the partition view says "Failed",
#: links the run, and its step failure holds the reason.
report_failure_job = define_asset_job(
    REPORT_FAILURE_JOB,
    selection=[VIDEO_ASSET_KEY],
    tags={"omni/job": "report_failure", REPORT_FAILURE_TAG: "true"},
    description="Shows a failed generation as a failed omni_video partition, with its reason "
    "(launched by omni_poll_sensor; pays for nothing).",
)
# Downloads are network-bound; a few at once fill the pipe without starving a 2-core machine.
DOWNLOAD_WORKERS = 4
# The ops' outputs carry only metadata: Nothing, so no IO manager writes them anywhere (step
# workers on other machines, e.g. Celery's, share no disk; everything goes through storage).
_NO_VALUE = Out(Nothing)


class MaterializeConfig(Config):
    keys: list[str] = Field(description="Partition keys whose finished videos to download.")
    claim_token: str | None = Field(
        default=None, description="Set by the sensor, which claimed the keys under this token."
    )


def build_jobs(
    provider_keys: Sequence[str], executor: ExecutorDefinition | None = None
) -> tuple[JobDefinition, JobDefinition]:
    """``omni_submit`` and ``omni_materialize``; ``executor=None`` leaves them on the code
    location's executor."""
    resource_keys = {"omni_storage", "omni_registry", *provider_keys}

    @op(required_resource_keys=resource_keys, tags={"kind": "omni"}, out=_NO_VALUE)
    def submit_pending_videos(context: OpExecutionContext) -> Iterator[Output[None]]:
        """Submit pending requests within each provider's in-flight budget and rate limit."""
        runtime = runtime_from_resources(context.resources, provider_keys)
        run = context.run.tags.get(RUN_TAG) or context.run_id
        report = submit_pending(
            runtime.registry,
            runtime.providers,
            runtime.storage,
            limits=runtime.limits,
            spend=runtime.spend.for_run(run),
            router=runtime.router,
            on_unknown=runtime.on_unknown,
        )
        for key in report.submitted:
            context.log.info(f"submitted {key}")
        for key, how in report.reused.items():
            context.log.info(f"{key}: storage already holds this video ({how}); nothing was paid")
        for key, reason in report.failed.items():
            context.log.error(f"{key} failed before generation: {reason}")
        for key, reason in report.unknown.items():
            context.log.error(f"{key}: submission outcome unknown, not resubmitted: {reason}")
        for name, reason in report.blocked_providers.items():
            context.log.warning(f"{name} refused submissions for now: {reason}")
        for key, reason in report.over_budget.items():
            context.log.warning(f"{key} waits: {reason}")
        for key, hops in report.hops.items():
            context.log.warning(f"{key} failed over: {', '.join(hops)} (nothing was created)")
        for key, reason in report.no_seller.items():
            context.log.warning(f"{key} waits: {reason}")
        for key in report.newly_over_budget:
            # On the partition itself, so the UI says why it has no video yet.
            context.log_event(
                AssetObservation(
                    asset_key=VIDEO_ASSET_KEY,
                    partition=key,
                    metadata={"waiting": MetadataValue.text(report.over_budget[key])},
                )
            )
        images = report_source_images(context, runtime, report.submitted)
        for event in failure_observations(runtime, report.failed):
            context.log_event(event)
        yield Output(
            None,
            metadata={
                "submitted": MetadataValue.int(len(report.submitted)),
                "reused_from_storage": MetadataValue.int(len(report.reused)),
                "source_images": MetadataValue.int(images),
                "deferred": MetadataValue.int(len(report.deferred)),
                "failed": MetadataValue.int(len(report.failed)),
                "unknown": MetadataValue.int(len(report.unknown)),
                "over_budget": MetadataValue.int(len(report.over_budget)),
            },
        )

    @op(required_resource_keys=resource_keys, tags={"kind": "omni"}, out=_NO_VALUE)
    def materialize_ready_videos(
        context: OpExecutionContext, config: MaterializeConfig
    ) -> Iterator[Any]:
        """Download, verify and record each finished video; one run for a whole tick's worth."""
        runtime = runtime_from_resources(context.resources, provider_keys)
        registry = runtime.registry
        # The sensor claimed these keys for this run; a manual run claims what is still ready.
        claimed = registry.claim(config.keys, context.run_id)
        keys = [
            k
            for k in config.keys
            if k in set(claimed) or _claimed_by(runtime, k, config.claim_token)
        ]
        failures: dict[str, str] = {}
        stored = 0
        with ThreadPoolExecutor(DOWNLOAD_WORKERS) as pool:
            futures = {key: pool.submit(_materialize, runtime, key) for key in keys}
            for key, future in futures.items():
                try:
                    done = future.result()
                except Exception as exc:  # storage backends raise their own types (botocore...)
                    # Counted and backed off (failed after the last attempt), or released at
                    # once for a storage failure (materialize.record_failed_download).
                    state = record_failed_download(registry, key, exc)
                    failures[key] = str(exc)
                    then = "failed for good" if state == "failed" else "will be tried again"
                    context.log.error(f"{key}: download failed, {then}: {exc}")
                    continue
                context.log_event(done.event)
                commit_materialized(registry, done.video)
                for evaluation in done.evaluations:
                    # Accepted at run time (a partitioned check result for the video asset);
                    # the stub's union predates asset checks.
                    context.log_event(evaluation)  # type: ignore[arg-type]
                stored += done.video.size
        # One line for the run: each video already has its materialization event in the log.
        context.log.info(f"materialized {len(keys) - len(failures)} videos ({stored:,} bytes)")
        yield Output(
            None,
            metadata={
                "materialized": MetadataValue.int(len(keys) - len(failures)),
                "failed": MetadataValue.int(len(failures)),
            },
        )
        if failures:
            raise Failure(
                f"{len(failures)} of {len(keys)} downloads failed",
                metadata={"errors": MetadataValue.json(failures)},
            )

    @job(
        name=SUBMIT_JOB,
        executor_def=executor,
        tags={"omni/job": "submit"},
        description="Submit pending video requests to their providers.",
    )
    def submit_job() -> None:
        submit_pending_videos()

    @job(
        name=MATERIALIZE_JOB,
        executor_def=executor,
        tags={"omni/job": "materialize"},
        description="Download and record finished videos (launched by omni_poll_sensor).",
    )
    def materialize_job() -> None:
        materialize_ready_videos()

    return submit_job, materialize_job


def _claimed_by(runtime: OmniRuntime, key: str, token: str | None) -> bool:
    record = runtime.registry.get(key)
    return (
        token is not None
        and record is not None
        and record.state == RecordState.MATERIALIZING
        and record.run_id == token
    )


@dataclass(frozen=True)
class _Done:
    video: MaterializedVideo
    event: AssetMaterialization
    evaluations: list[AssetCheckEvaluation]


def _materialize(runtime: OmniRuntime, key: str) -> _Done:
    """Download and verify one video, and build its events (thumbnail included), off the op's
    thread: the op's own thread only writes events, one video after another."""
    record = runtime.registry.get(key)
    assert record is not None
    video = materialize_record(
        runtime.registry,
        runtime.providers[record.provider],
        runtime.storage,
        record,
        commit=False,
        emulated=record.provider in runtime.emulated,
    )
    record = runtime.registry.get(key)
    assert record is not None
    return _Done(
        video,
        materialization_event(runtime, record, video),
        check_evaluations(runtime, record, video),
    )
