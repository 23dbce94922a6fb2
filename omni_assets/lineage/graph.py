"""The image → video → extension graph, as data.

Dagster draws asset-level edges only (``source_images → omni_video``): it cannot link one dynamic
partition to another. The exact lineage lives here, built from the task registry, which knows
every request whatever its state:

* an **image** node per input image: content-addressed by sha256 once ingested (a local file
  copied to ``sources/{sha256}.{ext}``), else its URL (given by the user) or its path (a local
  file not submitted yet);
* a **video** node per request (partition key), with its provider, model, task, cost, state;
* edges ``input`` (image → video), ``extends`` (parent → child video) and ``refresh``
  (a request → each scheduled regeneration of it, see :mod:`omni_assets.pipeline.refresh`).

:func:`omni_assets.pipeline.chain.chain_fields` gives one video's ``parent``/``chain_root``/
``chain_depth``, written into its sidecar and its materialization. The ``omni_lineage`` asset
stores the whole graph as ``lineage/graph.json``; ``omni-assets lineage`` prints from it (see
:mod:`omni_assets.lineage.render`). No Dagster import here.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..pipeline.chain import chain_fields
from ..pipeline.sources import load_image_info
from ..registry import Record, RecordState
from ..storage import VideoStorage

__all__ = [
    "GRAPH_FILE",
    "ImageNode",
    "LineageGraph",
    "VideoNode",
    "build_graph",
    "image_ids",
]

GRAPH_FILE = "graph.json"
_SHA_RE = re.compile(r"^[0-9a-f]{8,64}$")
_FORMAT = 1


def image_ids(record: Record) -> list[tuple[str, dict[str, Any]]]:
    """(node id, what is known of it) for each input image of ``record``, in request order."""
    sources = (record.sources or {}).get("images")
    if sources:
        return [(s.get("sha256") or s["url"], s) for s in sources]
    return [(origin, {"origin": origin}) for origin in record.request.get("images") or ()]


@dataclass(frozen=True)
class VideoNode:
    """One request / partition and where it came from."""

    key: str
    state: str
    provider: str
    model: str
    prompt: str
    task_id: str | None = None
    attempt: int = 1
    cost: float | None = None
    credits: float | None = None
    parent: str | None = None
    chain_root: str = ""
    chain_depth: int = 0
    extended_via: str | None = None
    refresh_of: str | None = None
    images: tuple[str, ...] = ()
    video_uri: str | None = None
    sha256: str | None = None
    size: int | None = None
    error: str | None = None
    registered_at: float | None = None
    materialized_at: float | None = None
    pruned: bool = False


@dataclass(frozen=True)
class ImageNode:
    """One input image: content-addressed when ingested, else its URL or local path."""

    id: str
    sha256: str | None = None
    origins: tuple[str, ...] = ()
    storage_uri: str | None = None
    #: provider -> {"url", "via" (upload | presign | url), "expires_at"}: the newest seen.
    uploads: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    size: int | None = None
    format: str | None = None


@dataclass
class LineageGraph:
    """Every video and image known to the registry, and how they connect."""

    videos: dict[str, VideoNode] = field(default_factory=dict)
    images: dict[str, ImageNode] = field(default_factory=dict)
    generated_at: float = 0.0

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def from_records(
        cls,
        records: Iterable[Record],
        *,
        image_info: Mapping[str, Mapping[str, Any]] | None = None,
        pruned: Iterable[str] = (),
        now: float | None = None,
    ) -> LineageGraph:
        """The graph of ``records``; ``image_info`` adds facts per sha256 (width, height...);
        ``pruned`` names videos whose file and partition retention removed."""
        by_key = {r.key: r for r in records}
        gone, info = set(pruned), image_info or {}
        images: dict[str, dict[str, Any]] = {}
        videos: dict[str, VideoNode] = {}
        for record in by_key.values():
            ids = []
            for node_id, source in image_ids(record):
                ids.append(node_id)
                _merge_image(images.setdefault(node_id, {"id": node_id}), record, source)
            videos[record.key] = _video_node(record, by_key, tuple(ids), record.key in gone)
        nodes = {}
        for node_id, data in images.items():
            extra = info.get(data.get("sha256") or "", {})
            facts = {k: extra[k] for k in ("width", "height", "size", "format") if k in extra}
            origins = tuple(sorted({*data.pop("origins", ()), *extra.get("origins", ())}))
            nodes[node_id] = ImageNode(**data, **facts, origins=origins)
        return cls(videos, nodes, time.time() if now is None else now)

    # -- serialization --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"format", "generated_at", "videos", "images", "edges"}``."""
        return {
            "format": _FORMAT,
            "generated_at": self.generated_at,
            "videos": {k: _plain(v) for k, v in sorted(self.videos.items())},
            "images": {k: _plain(v) for k, v in sorted(self.images.items())},
            "edges": self.edges(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LineageGraph:
        """The inverse of :meth:`to_dict`."""
        if data.get("format") != _FORMAT:
            raise ValueError(f"lineage graph format {data.get('format')!r} is not {_FORMAT}")
        videos = {
            k: VideoNode(**{**v, "images": tuple(v.get("images") or ())})
            for k, v in data["videos"].items()
        }
        images = {
            k: ImageNode(**{**v, "origins": tuple(v.get("origins") or ())})
            for k, v in data["images"].items()
        }
        return cls(videos, images, float(data.get("generated_at") or 0.0))

    def edges(self) -> list[dict[str, str]]:
        """``{"from", "to", "kind"}`` with ids ``image:<id>`` / ``video:<key>``."""
        out = []
        for video in sorted(self.videos.values(), key=lambda v: v.key):
            to = f"video:{video.key}"
            out += [{"from": f"image:{i}", "to": to, "kind": "input"} for i in video.images]
            if video.parent:
                out.append({"from": f"video:{video.parent}", "to": to, "kind": "extends"})
            if video.refresh_of:
                out.append({"from": f"video:{video.refresh_of}", "to": to, "kind": "refresh"})
        return out

    # -- questions ------------------------------------------------------------------------------

    def ancestry(self, key: str) -> list[VideoNode]:
        """``key``'s extension chain, root first, ``key`` last (parents not known are skipped)."""
        chain: list[VideoNode] = []
        seen: set[str] = set()
        current: str | None = key
        while current is not None and current not in seen and current in self.videos:
            seen.add(current)
            chain.append(self.videos[current])
            current = self.videos[current].parent
        return chain[::-1]

    def children(self, key: str) -> list[VideoNode]:
        """Videos that extend ``key``."""
        return sorted((v for v in self.videos.values() if v.parent == key), key=lambda v: v.key)

    def versions(self, key: str) -> list[VideoNode]:
        """The request behind ``key`` and each scheduled refresh of it, oldest first."""
        base = self.videos.get(key)
        root = base.refresh_of if base and base.refresh_of else key
        found = [v for v in self.videos.values() if v.refresh_of == root]
        first = [self.videos[root]] if root in self.videos else []
        return first + sorted(found, key=lambda v: v.key)

    def find_images(self, query: str) -> list[ImageNode]:
        """Images matching ``query``: a local file (hashed), a sha256 (or a prefix of 8+ hex
        digits), a URL, or a path as it was written in a request."""
        wanted: set[str] = set()
        path = Path(query).expanduser()
        if path.is_file():
            wanted.add(_sha256_file(path))
            query = str(path.absolute())
        out = []
        for image in self.images.values():
            sha = image.sha256 or ""
            if (
                sha in wanted
                or (_SHA_RE.match(query) and sha.startswith(query))
                or image.id == query
                or query in image.origins
            ):
                out.append(image)
        return sorted(out, key=lambda i: i.id)

    def videos_using(self, query: str) -> list[VideoNode]:
        """Every video whose inputs include an image matching ``query`` (see find_images)."""
        ids = {i.id for i in self.find_images(query)}
        found = (v for v in self.videos.values() if ids.intersection(v.images))
        return sorted(found, key=lambda v: v.key)

    def chains(self) -> list[list[VideoNode]]:
        """Every extension chain with at least one hop, as root-first lists of its members."""
        by_root: dict[str, list[VideoNode]] = {}
        for video in self.videos.values():
            by_root.setdefault(video.chain_root, []).append(video)
        return [
            sorted(members, key=lambda v: (v.chain_depth, v.key))
            for _, members in sorted(by_root.items())
            if any(v.chain_depth > 0 for v in members)
        ]


def build_graph(
    records: Iterable[Record], storage: VideoStorage, live_partitions: Iterable[str] | None = None
) -> LineageGraph:
    """The graph of ``records`` with the stored facts of their images.

    ``live_partitions`` (the instance's ``omni_video`` partitions) marks as pruned the videos that
    retention removed; without it nothing is marked.
    """
    records = list(records)
    shas = {
        s["sha256"]
        for r in records
        for s in (r.sources or {}).get("images") or []
        if s.get("sha256")
    }
    pruned: list[str] = []
    if live_partitions is not None:
        live = set(live_partitions)
        pruned = [
            r.key for r in records if r.state is RecordState.MATERIALIZED and r.key not in live
        ]
    return LineageGraph.from_records(
        records, image_info=load_image_info(storage, shas), pruned=pruned
    )


def _video_node(
    record: Record, by_key: Mapping[str, Record], images: tuple[str, ...], pruned: bool
) -> VideoNode:
    chain = chain_fields(by_key.get, record)
    return VideoNode(
        key=record.key,
        state=record.state.value,
        provider=record.provider,
        model=record.model,
        prompt=str(record.request.get("prompt", "")),
        task_id=record.task_id,
        attempt=record.attempt,
        cost=record.cost,
        credits=record.credits,
        parent=record.parent_key,
        chain_root=chain["chain_root"],
        chain_depth=chain["chain_depth"],
        extended_via=chain.get("extended_via"),
        refresh_of=chain["refresh_of"],
        images=images,
        video_uri=record.video_uri,
        sha256=record.sha256,
        size=record.size,
        error=(record.error and record.error.message) or None,
        registered_at=record.registered_at,
        materialized_at=record.materialized_at,
        pruned=pruned,
    )


def _merge_image(node: dict[str, Any], record: Record, source: Mapping[str, Any]) -> None:
    node.setdefault("origins", set()).add(str(source.get("origin", node["id"])))
    if source.get("sha256"):
        node["sha256"] = source["sha256"]
    if source.get("storage_uri"):
        node["storage_uri"] = source["storage_uri"]
    via = source.get("via")
    if via in ("upload", "presign"):
        uploads = node.setdefault("uploads", {})
        seen = uploads.get(record.provider)
        expires = source.get("expires_at")
        if seen is None or (expires or 0) >= (seen.get("expires_at") or 0):
            uploads[record.provider] = {"url": source.get("url"), "via": via, "expires_at": expires}


def _plain(node: VideoNode | ImageNode) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies, 3x slower on a 100K-video graph; json writes the
    # tuples as lists.
    return dict(vars(node))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
