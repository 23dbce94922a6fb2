"""A video's place in its extension chain and refresh history, as the pipeline records it.

The sidecar and the materialization of each video carry :func:`chain_fields`; the lineage graph
(:mod:`omni_assets.lineage.graph`) reads the same fields. :data:`REFRESH_TAG` is the request tag a
scheduled refresh (:mod:`omni_assets.pipeline.refresh`) writes. No Dagster import here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..providers import capabilities
from ..registry import Record

__all__ = ["REFRESH_TAG", "chain_fields"]

#: The request tag naming the request a scheduled refresh regenerates (see refresh.py).
REFRESH_TAG = "omni.refresh_of"


def chain_fields(get: Callable[[str], Record | None], record: Record) -> dict[str, Any]:
    """``record``'s place in its extension chain and refresh history.

    ``chain_root`` is the topmost ancestor (the record itself when it extends nothing),
    ``chain_depth`` the number of hops to it; ``extended_via`` says how the provider was told
    about the parent: ``task_id`` (APIMart ``extend_from_task_id``), ``previous_interaction_id``
    (Google's Interactions API edits the parent interaction) or ``video_url`` (the parent's
    video as the reference video).
    """
    root, depth, seen = record.key, 0, {record.key}
    parent = get(record.parent_key) if record.parent_key else None
    key = record.parent_key
    while key is not None and key not in seen:
        seen.add(key)
        root, depth = key, depth + 1
        above = get(key)
        key = above.parent_key if above is not None else None
    out: dict[str, Any] = {
        "parent": record.parent_key,
        "chain_root": root,
        "chain_depth": depth,
        "refresh_of": (record.request.get("tags") or {}).get(REFRESH_TAG),
    }
    if record.parent_key:
        out["extended_via"] = _extension(record.provider, record.model)
        out["parent_task_id"] = parent.task_id if parent else None
    return out


@functools.lru_cache(maxsize=64)
def _extension(provider: str, model: str) -> str | None:
    caps = capabilities.find(provider, model)
    return caps.extension.value if caps and caps.extension else None
