"""The partitioned video asset, its checks, and the metadata each partition shows in the UI.

Two paths lead to a materialized partition:

* the sensor path (the main one): the poll sensor sees finished tasks and launches batched
  ``omni_materialize`` runs, whose op reports an ``AssetMaterialization`` (and check
  evaluations) per partition;
* the blocking path: "Materialize" on a partition runs :func:`omni_video` itself, which submits
  the request (or resumes its registered task), waits within the deadline and downloads.

Both end in :func:`omni_assets.pipeline.materialize.materialize_record` and :func:`video_metadata`.
"""

import time
from collections.abc import Iterable, Sequence
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    DataVersion,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from .metadata import with_audit_fields
from .pipeline.budget import RUN_TAG
from .pipeline.checks import CHECK_MATCHES_REQUEST, CHECK_PLAYS, CheckOutcome, evaluate_checks
from .pipeline.materialize import MaterializedVideo, materialize_record, record_failed_download
from .pipeline.reuse import stored_video
from .pipeline.runtime import OmniRuntime
from .pipeline.submit import submit_pending
from .providers import capabilities
from .providers.errors import TaskFailedError, TaskTimeoutError
from .providers.polling import PollPolicy
from .providers.wait import wait
from .registry import Record, RecordState
from .request import VideoRequest
from .resources import runtime_from_resources
from .source_images import report_source_images

__all__ = [
    "REPORT_FAILURE_TAG",
    "RE_REPORTED",
    "VIDEO_ASSET_KEY",
    "build_video_asset",
    "check_evaluations",
    "materialization_event",
    "omni_video_partitions",
    "re_reported_metadata",
    "report_failure",
    "video_metadata",
]

VIDEO_ASSET_KEY = AssetKey("omni_video")
#: Tags the runs that only show a failed generation as a failed partition (jobs.py).
REPORT_FAILURE_TAG = "omni/report_failure"
#: Metadata marker of a materialization reported again from storage, without paying.
RE_REPORTED = "re_reported"
omni_video_partitions = DynamicPartitionsDefinition(name="omni_video")

_CHECK_SPECS = [
    AssetCheckSpec(
        CHECK_PLAYS,
        asset=VIDEO_ASSET_KEY,
        description="The mp4 decodes: a video stream with frames and a duration.",
    ),
    AssetCheckSpec(
        CHECK_MATCHES_REQUEST,
        asset=VIDEO_ASSET_KEY,
        description="Duration (within 1 s) and aspect ratio (within 5%) match the request.",
    ),
]


def video_metadata(
    runtime: OmniRuntime, record: Record, video: MaterializedVideo
) -> dict[str, Any]:
    """What a person auditing this partition in the UI wants to see."""
    request = VideoRequest.model_validate_json(record.request_json)
    timings = video.sidecar.get("timings", {})
    meta: dict[str, Any] = {
        "dagster/uri": MetadataValue.text(video.uri),
        "video": MetadataValue.url(
            runtime.storage.http_url(runtime.storage.video_path(record.key))
        ),
        "prompt": MetadataValue.text(request.prompt),
        "provider": MetadataValue.text(record.provider),
        "model": MetadataValue.text(record.model),
        "task_id": MetadataValue.text(record.task_id or ""),
        "attempt": MetadataValue.int(record.attempt),
        "sha256": MetadataValue.text(video.sha256),
        "size_bytes": MetadataValue.int(video.size),
        "duration_s": MetadataValue.float(round(video.probe.duration_s, 3)),
        "resolution": MetadataValue.text(f"{video.probe.width}x{video.probe.height}"),
        "codec": MetadataValue.text(f"{video.probe.video_codec}/{video.probe.audio_codec or '-'}"),
        "download_s": MetadataValue.float(round(video.download_s, 3)),
        "fingerprint": MetadataValue.text(record.fingerprint),
    }
    if video.sidecar.get("emulated"):
        meta["emulated"] = MetadataValue.bool(True)
    for name in ("queue_s", "generation_s"):
        if name in timings:
            meta[name] = MetadataValue.float(float(timings[name]))
    meta.update(cost_metadata(runtime, record))
    meta.update(route_metadata(runtime, record))
    if record.credits is not None:
        meta["credits"] = MetadataValue.float(float(record.credits))
    if request.tags:
        meta["tags"] = MetadataValue.json(dict(request.tags))
    # Thumbnail first; source images, parent, chain root/depth, refresh_of after.
    return with_audit_fields(runtime, record, video, meta)


def re_reported_metadata(
    runtime: OmniRuntime, record: Record, video: MaterializedVideo, why: str
) -> dict[str, Any]:
    """The stored video's own metadata again, plus ``re_reported: true`` and why."""
    return {
        **video_metadata(runtime, record, video),
        RE_REPORTED: MetadataValue.bool(True),
        "re_reported_because": MetadataValue.text(why),
    }


def route_metadata(runtime: OmniRuntime, record: Record) -> dict[str, Any]:
    """For ``provider: auto``: ``routed_to``, ``route_reason``, ``candidates`` and every hop."""
    routes = runtime.registry.routes(record.key)
    if not routes:
        return {}
    last = routes[-1]
    meta: dict[str, Any] = {
        "routed_to": MetadataValue.text(str(last.get("routed_to"))),
        "route_reason": MetadataValue.text(str(last.get("route_reason"))),
        "candidates": MetadataValue.json(last.get("candidates") or []),
    }
    hops = [r for r in routes if r["event"] == "failover"]
    if hops:
        meta["failover_hops"] = MetadataValue.json(
            [
                {"from": h.get("from"), "to": h.get("routed_to"), "because": h.get("because")}
                for h in hops
            ]
        )
    return meta


def cost_metadata(runtime: OmniRuntime, record: Record) -> dict[str, Any]:
    """``estimated_cost`` and ``cost`` (numeric, in ``cost_unit``), and both in USD.

    ``cost`` is the provider's own figure where it reports one (APIMart ``cost``, CRUN
    ``credits``); ``cost_is_estimate`` says when the price used for the estimate is ours.
    """
    row = runtime.registry.cost_of(record.key)
    if row is None:
        if record.cost is None:
            return {}
        return {"cost": MetadataValue.float(float(record.cost))}
    meta: dict[str, Any] = {
        "estimated_cost": MetadataValue.float(row.estimated),
        "cost_unit": MetadataValue.text(row.unit),
        "estimated_cost_usd": MetadataValue.float(row.estimated_usd),
        "price_is_estimate": MetadataValue.bool(row.price_is_estimate),
    }
    if row.actual is not None:
        meta["cost"] = MetadataValue.float(row.actual)
        meta["cost_usd"] = MetadataValue.float(float(row.actual_usd or 0.0))
    return meta


def _outcomes(runtime: OmniRuntime, record: Record, video: MaterializedVideo) -> list[CheckOutcome]:
    request = VideoRequest.model_validate_json(record.request_json)
    caps = capabilities.get(record.provider, record.model)
    return evaluate_checks(
        request,
        video.probe,
        expected_duration=caps.fixed_duration,
        expected_aspect=caps.ratio_of(request.aspect_ratio),
    )


def check_evaluations(
    runtime: OmniRuntime, record: Record, video: MaterializedVideo
) -> list[AssetCheckEvaluation]:
    """Partitioned check evaluations, for runs that report materializations from an op."""
    return [
        AssetCheckEvaluation(
            asset_key=VIDEO_ASSET_KEY,
            check_name=o.name,
            passed=o.passed,
            metadata={**o.metadata, "detail": o.description},
            severity=AssetCheckSeverity.WARN,
            description=o.description,
            partition=record.key,
        )
        for o in _outcomes(runtime, record, video)
    ]


def materialization_event(
    runtime: OmniRuntime, record: Record, video: MaterializedVideo
) -> AssetMaterialization:
    return AssetMaterialization(
        asset_key=VIDEO_ASSET_KEY,
        partition=record.key,
        metadata=video_metadata(runtime, record, video),
        tags={"dagster/data_version": video.sha256},
    )


def build_video_asset(
    provider_keys: Sequence[str], *, deps: Iterable[Any] = ()
) -> AssetsDefinition:
    """The ``omni_video`` asset, needing the given provider resources plus storage and registry."""

    @asset(
        key=VIDEO_ASSET_KEY,
        partitions_def=omni_video_partitions,
        required_resource_keys={"omni_storage", "omni_registry", *provider_keys},
        check_specs=_CHECK_SPECS,
        deps=list(deps),
        group_name="omni",
        kinds={"video"},
        # Blocking-path runs wait on the provider while holding a slot: a platform team caps
        # them with `dagster instance concurrency set omni_video N` (docs/production.md).
        pool="omni_video",
        description="Gemini Omni videos, one partition per request. Materializing a partition "
        "submits it (or resumes its registered task), waits and downloads.",
    )
    def omni_video(context: AssetExecutionContext) -> MaterializeResult:  # type: ignore[type-arg]
        runtime = runtime_from_resources(context.resources, provider_keys)
        record = _ready_record(context, runtime, context.partition_key)
        if record.state is not RecordState.MATERIALIZED and not runtime.registry.claim(
            [record.key], context.run.run_id
        ):
            record = runtime.registry.get(record.key) or record
            if record.state != RecordState.MATERIALIZED:
                raise Failure(f"{record.key} is being materialized by run {record.run_id}")
        if record.state is RecordState.MATERIALIZED:
            # Finished already: report the stored video again; nothing is paid or downloaded.
            return _stored_result(context, runtime, record)
        client = runtime.providers[record.provider]
        try:
            video = materialize_record(
                runtime.registry,
                client,
                runtime.storage,
                runtime.registry.get(record.key) or record,
                emulated=record.provider in runtime.emulated,
            )
        except Exception as exc:
            record_failed_download(runtime.registry, record.key, exc)  # counted, bounded
            raise
        except BaseException:  # the run was stopped: not the download's fault
            runtime.registry.release(record.key)
            raise
        record = runtime.registry.get(record.key) or record
        return MaterializeResult(
            metadata=video_metadata(runtime, record, video),
            data_version=DataVersion(video.sha256),
            check_results=_check_results(runtime, record, video),
        )

    return omni_video


def _stored_result(
    context: AssetExecutionContext, runtime: OmniRuntime, record: Record
) -> MaterializeResult:  # type: ignore[type-arg]
    """The result of "Materialize" on a finished partition: its stored video, reported again."""
    video = stored_video(runtime.storage, record)
    if video is None:
        raise Failure(
            f"{record.key} was materialized ({record.video_uri}), but storage no longer holds "
            "that video whole; restore it there (nothing is paid for again), or change the "
            "request to make a new video"
        )
    context.log.info(f"{record.key} is materialized already: reporting {video.uri} again")
    why = "Materialize on a finished partition: its stored video, reported again, not paid again"
    return MaterializeResult(
        metadata=re_reported_metadata(runtime, record, video, why),
        data_version=DataVersion(video.sha256),
        check_results=_check_results(runtime, record, video),
    )


def _check_results(
    runtime: OmniRuntime, record: Record, video: MaterializedVideo
) -> list[AssetCheckResult]:
    return [
        AssetCheckResult(
            check_name=o.name,
            passed=o.passed,
            description=o.description,
            metadata=o.metadata,
            severity=AssetCheckSeverity.WARN,
        )
        for o in _outcomes(runtime, record, video)
    ]


def _ready_record(context: AssetExecutionContext, runtime: OmniRuntime, key: str) -> Record:
    """Submit (or resume) ``key`` and wait until its video can be downloaded."""
    registry = runtime.registry
    record = registry.get(key)
    if record is None:
        raise Failure(f"partition {key!r} is not a registered request; add it to the requests file")
    if record.state.retryable:
        # The partition's FAILED status in the UI comes from this: the reason is the step
        # failure's description, the metadata the same fields as the failure's observation.
        raise Failure(
            f"{key} ended {record.state.value}: {record.error.message if record.error else None}. "
            f"A failed generation is not paid for again unless you ask: `omni-assets retry {key}`",
            metadata={
                **report_failure(runtime, record),
                "error": MetadataValue.json(record.error.to_dict() if record.error else {}),
            },
        )
    if context.run.tags.get(REPORT_FAILURE_TAG):
        # Retried since the poll sensor asked for this run: it goes on as a blocking run would.
        context.log.info(f"{key} is {record.state.value} now, no longer failed")
    if record.state == RecordState.PENDING:
        context.log.info(f"submitting {key}")
        report = submit_pending(
            registry,
            runtime.providers,
            runtime.storage,
            limits=runtime.limits,
            keys=[key],
            spend=runtime.spend.for_run(context.run.tags.get(RUN_TAG) or context.run_id),
            router=runtime.router,
            on_unknown=runtime.on_unknown,
        )
        report_source_images(context, runtime, report.submitted)
        record = registry.get(key) or record
        if record.state not in (RecordState.IN_FLIGHT, RecordState.READY):
            reason = (
                report.failed.get(key)
                or report.unknown.get(key)
                or report.over_budget.get(key)
                or (
                    report.blocked_providers.get(record.provider)
                    or "waiting for its parent or budget"
                )
            )
            raise Failure(f"{key} was not submitted: {reason}")
    if record.state == RecordState.IN_FLIGHT:
        assert record.task_ref is not None
        client = runtime.providers[record.provider]
        policy = runtime.policies.get(record.provider) or PollPolicy()
        remaining = policy.deadline_s - (
            time.time() - (record.polling_since or record.submitted_at or 0)
        )
        context.log.info(f"waiting for task {record.task_id} at {record.provider}")
        try:
            status = wait(
                client,
                record.task_ref,
                deadline=max(1.0, remaining),
                policy=policy,
                on_status=lambda s: context.log.info(
                    f"{key}: {s.raw_status}" + (f" {s.progress}%" if s.progress is not None else "")
                ),
            )
        except TaskFailedError as exc:
            # Recorded like the sensor would: never resubmitted unless the user asks.
            registry.record_status(key, client.status(record.task_ref))
            raise Failure(str(exc), metadata={"task_id": record.task_id or ""}) from exc
        except TaskTimeoutError as exc:
            raise Failure(
                f"{exc}; the task keeps running and the poll sensor will pick it up",
                metadata={"task_id": record.task_id or ""},
            ) from exc
        except BaseException:
            # Terminated: the task is paid for and keeps running. Cancel where the provider can;
            # otherwise the poll sensor finds it finished and materializes it later.
            if client.can_cancel:
                client.cancel(record.task_ref)
            raise
        registry.record_status(key, status)
        record = registry.get(key) or record
    if record.state not in (RecordState.READY, RecordState.MATERIALIZED, RecordState.MATERIALIZING):
        raise Failure(f"{key} is {record.state.value}, not ready to download")
    return record


def report_failure(runtime: OmniRuntime, record: Record) -> dict[str, Any]:
    """Metadata for an observation that tells the UI why a partition has no video."""
    return {
        "status": MetadataValue.text(record.state.value),
        "reason": MetadataValue.text((record.error and record.error.message) or "unknown"),
        "task_id": MetadataValue.text(record.task_id or ""),
        "provider": MetadataValue.text(record.provider),
        "model": MetadataValue.text(record.model),
        "retry": MetadataValue.text(f"omni-assets retry {record.key}"),
    }
