"""What a video partition shows someone auditing it in the Dagster UI, beyond the basics.

A thumbnail first (a small ``data:`` image the UI renders in place; the UI strips ``<video>``),
then, after the basics of :func:`omni_assets.assets.video_metadata`, the lineage fields: the
source images with links to their ``source_images`` partitions, the parent, chain root and depth
of an extension, and the request a scheduled refresh regenerates. Links point at the UI's own
pages, so an auditor can walk the chain without leaving it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import av
from dagster import MetadataValue

from .lineage.render import image_link, iso_times, video_link
from .pipeline.chain import chain_fields
from .pipeline.materialize import MaterializedVideo
from .pipeline.media import InvalidVideoError, thumbnail_and_preview_md
from .pipeline.runtime import OmniRuntime
from .registry import Record

__all__ = ["with_audit_fields"]

log = logging.getLogger("omni_assets.metadata")


def with_audit_fields(
    runtime: OmniRuntime, record: Record, video: MaterializedVideo, basics: Mapping[str, Any]
) -> dict[str, Any]:
    """``basics`` reordered for an auditor, with the thumbnail and the lineage fields added.

    First what it is and where it came from (thumbnail, link, prompt, provider, model, task,
    cost, source images, parent, chain), then the rest of ``basics``, then the bulky entries.
    """
    head: dict[str, Any] = {}
    preview: dict[str, Any] = {}
    path = runtime.storage.video_path(record.key)
    try:
        inline, larger = thumbnail_and_preview_md(runtime.storage.fs, path)
        head["thumbnail"] = MetadataValue.md(inline)
        preview["preview"] = MetadataValue.md(larger)
    except (InvalidVideoError, OSError, av.FFmpegError) as exc:
        # The checks report an unplayable video; a missing thumbnail must not hide it.
        log.warning("no thumbnail for %s: %s", record.key, exc)
    head.update({k: basics[k] for k in _FIRST if k in basics})
    lineage: dict[str, Any] = {}
    images = (record.sources or {}).get("images") or []
    if images:
        lineage["source_images"] = MetadataValue.md(
            "\n".join(
                f"- {image_link(s.get('sha256') or s['url'], _name(s))}"
                + (f" · sha256 `{s['sha256'][:16]}`" if s.get("sha256") else "")
                + f" · sent by {s.get('via', 'url')}"
                for s in images
            )
        )
    chain = chain_fields(runtime.registry.get, record)
    if chain["parent"]:
        lineage["parent"] = MetadataValue.md(video_link(chain["parent"]))
        lineage["extended_via"] = MetadataValue.text(_extension(chain, record))
    lineage["chain_root"] = MetadataValue.md(video_link(chain["chain_root"]))
    lineage["chain_depth"] = MetadataValue.int(chain["chain_depth"])
    if chain["refresh_of"]:
        lineage["refresh_of"] = MetadataValue.md(video_link(chain["refresh_of"]))
    tail: dict[str, Any] = {}
    if images:
        tail["source_image_sha256"] = MetadataValue.json(
            [s.get("sha256") or s.get("url") for s in images]
        )
    if record.sources:
        tail["sources"] = MetadataValue.json(iso_times(record.sources))  # expires_at as ISO
    rest = {k: v for k, v in basics.items() if k not in head and k not in lineage}
    return {**head, **lineage, **rest, **preview, **tail}


_FIRST = ("video", "emulated", "prompt", "provider", "model", "task_id", "cost")


def _extension(chain: Mapping[str, Any], record: Record) -> str:
    """How the provider was told about the parent, in words."""
    how = str(chain.get("extended_via"))
    if how == "task_id":
        return f"task_id (parent task {chain.get('parent_task_id')})"
    if how == "previous_interaction_id":
        return f"previous_interaction_id (parent interaction {chain.get('parent_task_id')})"
    video = (record.sources or {}).get("video") or {}
    if video.get("via") == "presign":
        return f"{how} (a presigned link to the stored parent video)"
    if video.get("via") == "url":
        return f"{how} (the parent's provider URL)"
    return how


def _name(source: Mapping[str, Any]) -> str:
    return str(source.get("origin") or source.get("url") or "").rsplit("/", 1)[-1]
