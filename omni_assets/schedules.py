"""``omni_refresh_schedule``: regenerate a named set of requests on a cron (see refresh.py).

Each tick registers the refreshes (validated like any request), adds them as ``omni_video``
partitions, applies retention, and launches ``omni_submit``; the poll sensor does the rest.
Schedules cannot return dynamic-partition requests as sensors do, so the tick adds the
partitions through the instance itself (before the run that needs them is requested).
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from .assets import omni_video_partitions
from .pipeline.refresh import RefreshConfig, plan_refresh, prunable, prune_video
from .pipeline.runtime import OmniRuntime
from .resources import runtime_from_resources
from .sensors import register_requests

__all__ = ["REFRESH_SCHEDULE", "RefreshTick", "build_refresh_schedule", "refresh_tick"]

REFRESH_SCHEDULE = "omni_refresh_schedule"


@dataclass
class RefreshTick:
    """What one tick did."""

    registered: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)


def refresh_tick(
    instance: DagsterInstance, runtime: OmniRuntime, config: RefreshConfig, when: datetime
) -> RefreshTick:
    """Register this tick's refreshes as partitions, then apply retention."""
    out = RefreshTick()
    plan = plan_refresh(runtime.registry.records(), config, when)
    out.skipped = plan.skipped
    if plan.requests:
        checked, keys = register_requests(runtime, plan.requests)
        out.rejected = [str(issue) for issue in checked.issues]
        name = omni_video_partitions.name or ""
        new = [k for k in keys if not instance.has_dynamic_partition(name, k)]
        if new:
            instance.add_dynamic_partitions(name, new)
        out.registered = keys
    now = time.time()
    for record in prunable(runtime.registry.records(), config.keep):
        prune_video(runtime.storage, record.key, now=now)
        if instance.has_dynamic_partition(omni_video_partitions.name or "", record.key):
            instance.delete_dynamic_partition(omni_video_partitions.name or "", record.key)
            out.pruned.append(record.key)
    return out


def build_refresh_schedule(
    config: RefreshConfig, provider_keys: Sequence[str], submit_job: JobDefinition
) -> ScheduleDefinition:
    """The schedule for ``config`` (running by default: setting the cron is the opt-in)."""

    @schedule(
        name=REFRESH_SCHEDULE,
        cron_schedule=config.cron,
        execution_timezone=config.timezone,
        job=submit_job,
        default_status=DefaultScheduleStatus.RUNNING,
        required_resource_keys={"omni_storage", "omni_registry", *provider_keys},
        description=f"Regenerates {', '.join(config.keys)} as new partitions "
        f"(keep {config.keep or 'all'} refreshes of each).",
    )
    def omni_refresh_schedule(context: ScheduleEvaluationContext, **_resources: Any) -> Any:
        runtime = runtime_from_resources(context.resources, provider_keys)
        when = context.scheduled_execution_time or datetime.now(timezone.utc)
        tick = refresh_tick(context.instance, runtime, config, when)
        for key, why in tick.skipped.items():
            context.log.info(f"not refreshed: {key}: {why}")
        for issue in tick.rejected:
            context.log.warning(f"refresh rejected: {issue}")
        if tick.pruned:
            context.log.info(f"retention removed {len(tick.pruned)}: {', '.join(tick.pruned)}")
        if not tick.registered:
            return SkipReason(f"nothing to refresh: {tick.skipped or 'no named request'}")
        stamp = f"{when:%Y%m%d%H%M}"
        return RunRequest(
            run_key=f"refresh-{stamp}",
            tags={"omni/refresh": stamp, "omni/videos": str(len(tick.registered))},
        )

    return omni_refresh_schedule
