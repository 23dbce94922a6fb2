"""The ``source_images`` asset: one partition per distinct ingested image (its sha256).

It is *reported*, not computed: the submit op (and the blocking path of ``omni_video``) records a
materialization for each image it sent in that run, with the image's own metadata: a thumbnail,
where it came from, its dimensions and the provider URLs it was uploaded or presigned to, and
until when they are valid. Its data version is the sha256, so reporting an image again never
makes anything downstream look stale.

Why partitions keyed by sha256, reported by the op: an image is a thing with its own history (new
uploads as URLs expire), which a partition shows; distinct images grow far slower than videos,
so Dagster's dynamic-partition guidance (under ~100K per asset, ≤25K added per tick) holds for a
long time; and the op that ingests an image is the one that knows it happened.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DynamicPartitionsDefinition,
    MetadataValue,
)

from .lineage.render import video_link
from .pipeline.media import inline_thumbnail_md
from .pipeline.runtime import OmniRuntime
from .pipeline.sources import describe_image, image_path, uploads_of

__all__ = [
    "SOURCE_IMAGES_KEY",
    "report_source_images",
    "source_image_events",
    "source_image_partitions",
    "source_images_dep",
    "source_images_spec",
]

SOURCE_IMAGES_KEY = AssetKey("source_images")
source_image_partitions = DynamicPartitionsDefinition(name="source_images")

source_images_spec = AssetSpec(
    SOURCE_IMAGES_KEY,
    partitions_def=source_image_partitions,
    group_name="omni",
    kinds={"image"},
    description="Source images, one partition per sha256. Reported by the submit job when it "
    "ingests an image (copy to sources/{sha256}.{ext}, upload or presign), not computed.",
)

#: For ``omni_video``'s deps. A video uses a few of all the images: no partition mapping can say
#: which (each video's metadata does), and the default would pair partition keys by name.
source_images_dep = AssetDep(SOURCE_IMAGES_KEY, partition_mapping=AllPartitionMapping())


def source_image_events(runtime: OmniRuntime, keys: Iterable[str]) -> list[AssetMaterialization]:
    """One materialization per distinct ingested image among the inputs of ``keys``."""
    used: dict[str, dict[str, Any]] = {}
    for record in runtime.registry.get_many(keys):
        for source in (record.sources or {}).get("images") or []:
            sha = source.get("sha256")
            if not sha:
                continue  # a URL given by the user: nothing was ingested
            item = used.setdefault(sha, {"source": source, "origins": set(), "videos": []})
            item["origins"].add(str(source.get("origin")))
            item["videos"].append(record.key)
    return [
        AssetMaterialization(
            asset_key=SOURCE_IMAGES_KEY,
            partition=sha,
            metadata=_image_metadata(runtime, sha, item),
            tags={"dagster/data_version": sha},
        )
        for sha, item in sorted(used.items())
    ]


def report_source_images(context: Any, runtime: OmniRuntime, keys: Iterable[str]) -> int:
    """Register and report the images behind ``keys`` from an op or asset; returns how many."""
    events = source_image_events(runtime, keys)
    if not events:
        return 0
    name = source_image_partitions.name or ""
    shas = [e.partition for e in events if isinstance(e.partition, str)]
    new = [s for s in shas if not context.instance.has_dynamic_partition(name, s)]
    if new:
        context.instance.add_dynamic_partitions(name, new)
    for event in events:
        context.log_event(event)
    return len(events)


def _image_metadata(runtime: OmniRuntime, sha: str, item: Mapping[str, Any]) -> dict[str, Any]:
    storage = runtime.storage
    source = item["source"]
    info = describe_image(storage, sha, source.get("storage_uri"), item["origins"])
    path = image_path(storage, sha, source.get("storage_uri"))
    meta: dict[str, Any] = {}
    try:
        meta["thumbnail"] = MetadataValue.md(inline_thumbnail_md(storage.fs, path))
    except Exception as exc:  # a courtesy: never fail a submit run (money spent) for it
        meta["thumbnail_error"] = MetadataValue.text(str(exc)[:200])
    meta["sha256"] = MetadataValue.text(sha)
    meta["origin"] = MetadataValue.text(", ".join(info.get("origins") or []))
    meta["dagster/uri"] = MetadataValue.text(str(info.get("storage_uri")))
    meta["stored"] = MetadataValue.url(storage.http_url(path))
    if info.get("width"):
        meta["width"] = MetadataValue.int(int(info["width"]))
        meta["height"] = MetadataValue.int(int(info["height"]))
    if info.get("size") is not None:
        meta["size_bytes"] = MetadataValue.int(int(info["size"]))
    meta["format"] = MetadataValue.text(str(info.get("format")))
    uploads = uploads_of(storage, sha)
    if uploads:
        meta["uploads"] = MetadataValue.md(
            "\n".join(
                f"- **{provider}** ({u.get('via')}) until {_utc(u.get('expires_at'))}: "
                f"{u.get('url')}"
                for provider, u in sorted(uploads.items())
            )
        )
        meta["uploads_json"] = MetadataValue.json(uploads)
    meta["used_by"] = MetadataValue.md(", ".join(video_link(k) for k in sorted(item["videos"])))
    return meta


def _utc(epoch: Any) -> str:
    if not epoch:
        return "no expiry given"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(epoch)))
