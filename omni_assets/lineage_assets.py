"""The ``omni_lineage`` asset, the sensor that keeps it current, and failure notes for chains.

The asset graph shows ``source_images → omni_video → omni_lineage`` at asset level (Dagster cannot
link one dynamic partition to another, design.md). Exact lineage is in each video's metadata and
in ``omni_lineage``, a non-partitioned asset holding the whole image → video → extension graph
as ``lineage/graph.json`` in storage plus a markdown rendering for the UI. It rebuilds itself
after videos or images were materialized (an automation condition that ``omni_lineage_sensor``
evaluates at most once a minute).
"""

import json
import warnings
from collections.abc import Mapping

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetsDefinition,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    BetaWarning,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    asset,
)

from .assets import VIDEO_ASSET_KEY, report_failure
from .lineage.graph import GRAPH_FILE, build_graph
from .lineage.render import chains_summary_md, lineage_markdown, video_link
from .pipeline.runtime import OmniRuntime
from .registry import RecordState
from .source_images import source_images_dep

__all__ = [
    "LINEAGE_ASSET_KEY",
    "LINEAGE_CONDITION",
    "build_lineage_asset",
    "failure_observations",
    "lineage_sensor",
]

LINEAGE_ASSET_KEY = AssetKey("omni_lineage")
#: A ``.partial-`` file older than this is left by a crash: no write takes a day.
PARTIAL_MAX_AGE_S = 24 * 3600.0

#: Rebuild after any video or image was materialized, unless a rebuild is already running.
LINEAGE_CONDITION = (
    AutomationCondition.any_deps_updated().since_last_handled() & ~AutomationCondition.in_progress()
)


def build_lineage_asset() -> AssetsDefinition:
    """``omni_lineage``: the whole image → video → extension graph, as JSON and as markdown."""

    @asset(
        key=LINEAGE_ASSET_KEY,
        deps=[
            source_images_dep,
            AssetDep(VIDEO_ASSET_KEY, partition_mapping=AllPartitionMapping()),
        ],
        required_resource_keys={"omni_storage", "omni_registry"},
        automation_condition=LINEAGE_CONDITION,
        group_name="omni",
        kinds={"json"},
        description="Every video's inputs, extension parent and refresh history as one graph: "
        "lineage/graph.json in storage, and a readable table here.",
    )
    def omni_lineage(context: AssetExecutionContext) -> MaterializeResult:  # type: ignore[type-arg]
        registry = context.resources.omni_registry.get_registry()
        storage = context.resources.omni_storage.get_storage()
        live = set(context.instance.get_dynamic_partitions(VIDEO_ASSET_KEY.path[-1]))
        graph = build_graph(registry.records(), storage, live)
        # Compact: ~700 bytes a video; indenting 100K videos would add a quarter and seconds.
        data = json.dumps(graph.to_dict(), separators=(",", ":"), ensure_ascii=False)
        uri = storage.write_bytes_atomic(storage.lineage_path(GRAPH_FILE), data.encode())
        # Housekeeping that rides on the rebuild: temporary files a crash left (a claimed
        # video's own are removed when it is downloaded again; sources and lineage have none).
        removed = storage.cleanup_partials(PARTIAL_MAX_AGE_S)
        for path in removed:
            context.log.info(f"removed {path}, left by an interrupted write")
        chains = graph.chains()
        return MaterializeResult(
            metadata={
                "graph": MetadataValue.md(lineage_markdown(graph)),
                "dagster/uri": MetadataValue.text(uri),
                "videos": MetadataValue.int(len(graph.videos)),
                "images": MetadataValue.int(len(graph.images)),
                "extension_chains": MetadataValue.md(chains_summary_md(graph)),
                "chains": MetadataValue.int(len(chains)),
                "deepest_chain": MetadataValue.int(max((len(c) - 1 for c in chains), default=0)),
                "refreshes": MetadataValue.int(
                    sum(1 for v in graph.videos.values() if v.refresh_of)
                ),
                "pruned": MetadataValue.int(sum(1 for v in graph.videos.values() if v.pruned)),
                "partials_removed": MetadataValue.int(len(removed)),
            }
        )

    return omni_lineage


def lineage_sensor(
    *,
    name: str = "omni_lineage_sensor",
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> AutomationConditionSensorDefinition:
    """Evaluates ``omni_lineage``'s automation condition (running by default, every 60 s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)  # its `owners` parameter, which we don't use
        return AutomationConditionSensorDefinition(
            name,
            target=[LINEAGE_ASSET_KEY],
            default_status=default_status,
            minimum_interval_seconds=60,
            description="Rebuilds omni_lineage after videos or source images were materialized.",
        )


def failure_observations(runtime: OmniRuntime, failed: Mapping[str, str]) -> list[AssetObservation]:
    """Why each request that failed before generation (a failed parent, an invalid input) has
    no video, on its own partition, with its parent when it extends one."""
    out = []
    for record in runtime.registry.get_many(failed):
        if record.state is not RecordState.FAILED:
            continue
        metadata = report_failure(runtime, record)
        if record.parent_key:
            metadata["parent"] = MetadataValue.md(video_link(record.parent_key))
        out.append(
            AssetObservation(asset_key=VIDEO_ASSET_KEY, partition=record.key, metadata=metadata)
        )
    return out
