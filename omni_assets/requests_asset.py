"""Requests from the user's own pipeline: an asset whose output is a list or table of requests.

:func:`build_requests_asset` makes an asset downstream of the user's asset (e.g. prompts built
from a product catalog). Each materialization validates the upstream value, registers the valid
requests as ``omni_video`` partitions and reports the invalid ones in its metadata; the poll
sensor then submits and materializes them like requests from a file.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dagster import AssetExecutionContext, AssetIn, AssetKey, AssetsDefinition, MetadataValue, asset

from .assets import omni_video_partitions
from .pipeline.intake import Intake, RequestIssue
from .request import VideoRequest
from .resources import runtime_from_resources
from .sensors import register_requests

__all__ = ["build_requests_asset", "coerce_requests"]


def coerce_requests(value: Any) -> Intake:
    """Accept a list of dicts or VideoRequests, or anything with ``to_dict("records")``."""
    from .pipeline.intake import _from_objects, _where  # the same parser the requests file uses
    from .pipeline.local_files import allowed_roots
    from .settings import Settings

    if hasattr(value, "to_dict"):  # a pandas DataFrame, without importing pandas
        value = value.to_dict("records")
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        return Intake(
            issues=[
                RequestIssue(
                    "upstream value",
                    None,
                    "expected a list of requests (dicts or VideoRequest), "
                    f"got {type(value).__name__}",
                )
            ]
        )
    items = [
        v.model_dump(exclude_defaults=True) if isinstance(v, VideoRequest) else v for v in value
    ]
    items = [
        {k: v for k, v in item.items() if v is not None} if isinstance(item, Mapping) else item
        for item in items
    ]
    # No requests file: local files must be under OMNI_ALLOWED_IMAGE_ROOTS, else the current dir.
    roots = allowed_roots(None, Settings.from_env().allowed_image_roots)
    return _from_objects(items, {}, None, _where, roots)


def build_requests_asset(
    upstream: str | AssetKey,
    provider_keys: Sequence[str],
    *,
    name: str | None = None,
    group_name: str = "omni",
) -> AssetsDefinition:
    """An asset that turns ``upstream``'s output into registered ``omni_video`` partitions."""
    upstream_key = AssetKey.from_coercible(upstream)
    asset_name = name or f"{upstream_key.path[-1]}_video_requests"

    @asset(
        name=asset_name,
        ins={"requests": AssetIn(key=upstream_key)},
        required_resource_keys={"omni_storage", "omni_registry", *provider_keys},
        group_name=group_name,
        description=f"Registers the video requests produced by {upstream_key.to_user_string()}.",
    )
    def _requests_asset(context: AssetExecutionContext, requests: Any) -> dict[str, Any]:
        runtime = runtime_from_resources(context.resources, provider_keys)
        intake = coerce_requests(requests)
        checked, changed = register_requests(runtime, intake.requests, intake)
        keys = [r.key for r in checked.requests]
        existing = set(context.instance.get_dynamic_partitions(omni_video_partitions.name or ""))
        missing = [k for k in keys if k not in existing]
        if missing:
            context.instance.add_dynamic_partitions(omni_video_partitions.name or "", missing)
        for issue in checked.issues:
            context.log.warning(f"rejected: {issue}")
        context.add_output_metadata(
            {
                "valid": MetadataValue.int(len(keys)),
                "rejected": MetadataValue.int(len(checked.issues)),
                "new_or_changed": MetadataValue.int(len(changed)),
                "issues": MetadataValue.md("\n".join(f"- {i}" for i in checked.issues) or "none"),
            }
        )
        return {"keys": keys, "issues": [str(i) for i in checked.issues]}

    return _requests_asset
