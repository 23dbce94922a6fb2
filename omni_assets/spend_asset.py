"""``omni_spend``: what was spent each UTC day, as numeric metadata the UI plots.

One partition per day (the day a submission was booked to the budget). Each materialization
reads the registry's cost rows of that day (``pipeline/spend.py``) and records the total in USD,
the number of videos, and the spend per provider, per model and per tag value, each a number,
so the asset's Plots tab charts them across days, plus a table to read.
"""

from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from .pipeline.spend import spend_by, spent_rows, total_usd
from .resources import OmniRegistryResource

__all__ = ["SPEND_ASSET_KEY", "build_spend_asset", "spend_metadata", "spend_partitions"]

SPEND_ASSET_KEY = AssetKey("omni_spend")
#: Days in UTC, like the budget's; today's partition exists (end_offset=1).
spend_partitions = DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)


def spend_metadata(rows: list[Any]) -> dict[str, Any]:
    """The metadata of one day's partition, from that day's cost rows."""
    spent = spent_rows(rows)
    meta: dict[str, Any] = {
        "total_usd": MetadataValue.float(round(total_usd(spent), 6)),
        "videos": MetadataValue.int(len(spent)),
        "reported_by_provider": MetadataValue.int(sum(r.actual is not None for r in spent)),
    }
    lines = ["| group | value | videos | USD |", "|---|---|---|---|"]
    for group in ("provider", "model", "tag"):
        for name, (count, usd) in sorted(spend_by(spent, group).items()):
            meta[f"usd/{group}/{name}"] = MetadataValue.float(round(usd, 6))
            lines.append(f"| {group} | {name} | {count} | {usd:.2f} |")
    meta["spend"] = MetadataValue.md("\n".join(lines))
    return meta


def build_spend_asset() -> AssetsDefinition:
    """The ``omni_spend`` asset (daily partitions, reads the registry only)."""

    @asset(
        key=SPEND_ASSET_KEY,
        partitions_def=spend_partitions,
        required_resource_keys={"omni_registry"},
        group_name="omni",
        kinds={"python"},
        description="What was spent each UTC day: total, per provider, per model and per tag "
        "value, in USD (the provider's reported cost, else our estimate).",
    )
    def omni_spend(context: AssetExecutionContext) -> MaterializeResult:  # type: ignore[type-arg]
        registry_resource: OmniRegistryResource = context.resources.omni_registry
        day = context.partition_key
        rows = [r for r in registry_resource.get_registry().costs() if r.day == day]
        return MaterializeResult(metadata=spend_metadata(rows))

    return omni_spend
