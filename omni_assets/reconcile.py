"""Reconcile the Dagster instance (a view) with the registry and storage (the truth).

A new or temporary instance (``dagster dev`` without ``DAGSTER_HOME`` deletes its instance on
exit) knows nothing of the videos made before it: their partitions would show "Missing" although
the registry says materialized and storage holds each video and its sidecar. The
``omni_reconcile_sensor`` (and ``omni-assets run``, once at its start) reports every such
partition again: the partition is added if the instance lacks it, and an ``AssetMaterialization``
is recorded with the metadata it had when the video was stored (rebuilt from the registry record
and the sidecar, the thumbnail from the stored file) plus ``re_reported: true``, with its check
results. Nothing is paid or downloaded. Reported runless (``report_runless_asset_event``), so
it shows whether or not a run could be launched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from .assets import (
    RE_REPORTED,
    VIDEO_ASSET_KEY,
    check_evaluations,
    omni_video_partitions,
    re_reported_metadata,
)
from .pipeline.materialize import MaterializedVideo
from .pipeline.reuse import stored_sidecar, stored_video
from .pipeline.runtime import OmniRuntime
from .registry import Record, RecordState
from .resources import runtime_from_resources

__all__ = [
    "MAX_REPORTS_PER_TICK",
    "RECONCILE_SENSOR",
    "RE_REPORTED",
    "ReconcileReport",
    "build_reconcile_sensor",
    "re_reported_metadata",
    "reconcile_instance",
]

RECONCILE_SENSOR = "omni_reconcile_sensor"
# Each report decodes a thumbnail from the stored video (~50 ms): a few hundred per tick keep
# the tick well inside its limit; the rest follow on the next ticks.
MAX_REPORTS_PER_TICK = 200
# Records looked at per report at most, so that many unreportable ones (pruned refreshes, lost
# videos: a sidecar read each) cannot make a tick long.
_EXAMINED_PER_REPORT = 5


@dataclass
class ReconcileReport:
    reported: list[str] = field(default_factory=list)
    #: materialized in the registry, but storage has no whole video for it: said, not reported
    missing: list[str] = field(default_factory=list)
    left: int = 0  # over this call's limit: the next call reports them


def reconcile_instance(
    instance: DagsterInstance, runtime: OmniRuntime, *, limit: int = MAX_REPORTS_PER_TICK
) -> ReconcileReport:
    """Report again every materialized video whose partition the instance shows no
    materialization for (at most ``limit`` now; ``left`` says how many wait)."""
    report = ReconcileReport()
    shown = instance.get_materialized_partitions(VIDEO_ASSET_KEY)
    wanted = [k for k in runtime.registry.keys([RecordState.MATERIALIZED]) if k not in shown]
    if not wanted:
        return report
    why = (
        "this Dagster instance had no materialization for the partition (a new or temporary "
        "instance); reported again from the registry and the video's sidecar, nothing was paid"
    )
    found: list[tuple[Record, MaterializedVideo]] = []
    examined = 0
    for start in range(0, len(wanted), limit):
        for record in runtime.registry.get_many(wanted[start : start + limit]):
            examined += 1
            video = stored_video(runtime.storage, record)
            if video is not None:
                found.append((record, video))
            elif not (stored_sidecar(runtime.storage, record.key) or {}).get("pruned_at"):
                report.missing.append(record.key)  # a pruned refresh is gone on purpose
            if len(found) >= limit:
                break
        if len(found) >= limit or examined >= limit * _EXAMINED_PER_REPORT:
            break
    report.left = len(wanted) - examined
    name = omni_video_partitions.name or ""
    known = set(instance.get_dynamic_partitions(name))
    if missing := [r.key for r, _ in found if r.key not in known]:
        instance.add_dynamic_partitions(name, missing)  # the UI shows events of known keys only
    for record, video in found:
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=VIDEO_ASSET_KEY,
                partition=record.key,
                metadata=re_reported_metadata(runtime, record, video, why),
                tags={"dagster/data_version": video.sha256},
            )
        )
        for evaluation in check_evaluations(runtime, record, video):
            instance.report_runless_asset_event(evaluation)
        report.reported.append(record.key)
    return report


def build_reconcile_sensor(
    *,
    minimum_interval_seconds: int = 60,
    name: str = RECONCILE_SENSOR,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    provider_keys: Sequence[str] = (),
) -> SensorDefinition:
    """The sensor that shows every finished video in this instance, whatever the instance."""

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        required_resource_keys={"omni_storage", "omni_registry", *provider_keys},
        default_status=default_status,
        description="Reports again (re_reported) every video the registry and storage hold "
        "that this Dagster instance does not show, e.g. after a temporary instance was lost.",
    )
    def omni_reconcile_sensor(context: SensorEvaluationContext, **_resources: Any) -> SkipReason:
        runtime = runtime_from_resources(context.resources, ())
        report = reconcile_instance(context.instance, runtime)
        if report.missing:
            shown = ", ".join(report.missing[:10])
            context.log.warning(
                f"{len(report.missing)} videos the registry says are materialized have no whole "
                f"video in storage ({shown}); they are not reported"
            )
        summary = (
            f"{len(report.reported)} videos reported again, {len(report.missing)} missing "
            f"from storage, {report.left} left for the next tick"
        )
        if report.reported:
            context.log.info(summary)
        return SkipReason(summary)

    return omni_reconcile_sensor
