"""The lineage graph for people: markdown for the Dagster UI, plain text for the terminal.

Links in the markdown are the UI's own asset pages (``/assets/omni_video?partition=KEY``), so a
reader moves from the lineage table to a video, its parent or an image without leaving the UI.
Tables are capped (the newest rows first); the whole graph is always in ``lineage/graph.json``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from ..providers.prices import DEFAULT_PRICES
from .graph import ImageNode, LineageGraph, VideoNode

__all__ = [
    "chains_summary_md",
    "cost_unit",
    "describe_ancestry",
    "describe_reverse",
    "image_link",
    "iso_times",
    "lineage_markdown",
    "video_link",
]

MAX_ROWS = 200


def video_link(key: str) -> str:
    """Markdown link to the video partition's page in the Dagster UI."""
    return f"[{key}](/assets/omni_video?partition={quote(key)})"


def image_link(image_id: str, label: str | None = None) -> str:
    """Markdown link to a source image's partition page (ingested images), else the label."""
    text = label or _short(image_id)
    if len(image_id) == 64 and all(c in "0123456789abcdef" for c in image_id):
        return f"[{text}](/assets/source_images?partition={image_id})"
    return text


def chains_summary_md(graph: LineageGraph, limit: int = 999) -> str:
    """One line per extension path (``a → b → c``, linked), cut to stay under ``limit``
    characters so the UI shows it in place (see thumbnails.INLINE_MD_LIMIT)."""
    parents = {v.parent for v in graph.videos.values() if v.parent}
    leaves = [v for v in graph.videos.values() if v.chain_depth > 0 and v.key not in parents]
    # One line per path from a root to a leaf: exact even where a video has several children.
    chains = [graph.ancestry(v.key) for v in sorted(leaves, key=lambda v: (-v.chain_depth, v.key))]
    if not chains:
        return "no extension chains"
    lines: list[str] = []
    for n, chain in enumerate(chains):
        line = "- " + " → ".join(video_link(v.key) for v in chain)
        more = f"\n- … and {len(chains) - n} more (see graph)"
        if len("\n".join([*lines, line])) + len(more) >= limit:
            lines.append(more.strip("\n"))
            break
        lines.append(line)
    return "\n".join(lines)


def lineage_markdown(graph: LineageGraph, max_rows: int = MAX_ROWS) -> str:
    """Chains as nested lists, then a videos table and an images table, with links."""
    chains = graph.chains()
    parts = [
        f"**{len(graph.videos)} videos, {len(graph.images)} images, "
        f"{len(chains)} extension chains** — as of {_when(graph.generated_at)}; "
        "the whole graph is in `lineage/graph.json` in storage.",
    ]
    if chains:
        parts.append("### Extension chains")
        lines: list[str] = []
        for chain in chains[:max_rows]:
            for video in chain:
                via = f" — extends by {video.extended_via}" if video.extended_via else ""
                lines.append(
                    "  " * video.chain_depth + f"- {video_link(video.key)} · {video.provider} · "
                    f"{video.state}{via}"
                )
        parts.append("\n".join(lines))
    videos = sorted(graph.videos.values(), key=lambda v: -(v.registered_at or 0))
    parts.append("### Videos")
    parts.append(
        _table(
            [
                "video",
                "state",
                "provider / model",
                "task",
                "cost",
                "extends",
                "depth",
                "images",
                "refresh of",
            ],
            [
                [
                    video_link(v.key),
                    v.state + (" (pruned)" if v.pruned else ""),
                    f"{v.provider} / {v.model}",
                    f"`{v.task_id}`" if v.task_id else "",
                    f"{_num(v.cost)} {cost_unit(v)}" if v.cost is not None else "",
                    video_link(v.parent) if v.parent else "",
                    str(v.chain_depth),
                    ", ".join(image_link(i, _image_label(graph, i)) for i in v.images),
                    video_link(v.refresh_of) if v.refresh_of else "",
                ]
                for v in videos[:max_rows]
            ],
        )
    )
    if len(videos) > max_rows:
        parts.append(f"… and {len(videos) - max_rows} older videos (see graph.json).")
    if graph.images:
        users: dict[str, list[str]] = {}
        for video in graph.videos.values():
            for image in video.images:
                users.setdefault(image, []).append(video.key)
        images = sorted(graph.images.values(), key=lambda i: i.id)
        parts.append("### Source images")
        parts.append(
            _table(
                ["image", "sha256", "size", "used by"],
                [
                    [
                        image_link(i.id, _image_label(graph, i.id)),
                        f"`{(i.sha256 or '')[:16]}`",
                        _dims(i),
                        _some_links(sorted(users.get(i.id, []))),
                    ]
                    for i in images[:max_rows]
                ],
            )
        )
    return "\n\n".join(parts)


def describe_ancestry(graph: LineageGraph, key: str) -> str:
    """What ``omni-assets lineage KEY`` prints: the chain root first, each hop's inputs."""
    chain = graph.ancestry(key)
    if not chain:
        raise KeyError(key)
    video = chain[-1]
    lines = [
        f"{video.key}: {video.state}" + (" (video pruned by retention)" if video.pruned else "")
    ]
    if video.chain_depth:
        lines.append(f"  extension chain: depth {video.chain_depth}, root {video.chain_root}")
    if video.refresh_of:
        lines.append(f"  refresh of: {video.refresh_of}")
    lines.append("")
    lines.append("ancestry (root first):")
    for depth, node in enumerate(chain):
        lead = "   " * (depth - 1) + "└─ " if depth else ""
        lines.extend(_video_lines(graph, node, lead))
    children = graph.children(key)
    if children:
        lines.append("")
        lines.append("extended by: " + ", ".join(c.key for c in children))
    versions = graph.versions(key)
    if len(versions) > 1:
        lines.append("")
        lines.append("versions (scheduled refreshes, oldest first):")
        lines.extend(f"  {v.key}: {v.state}" + (" (pruned)" if v.pruned else "") for v in versions)
    return "\n".join(lines)


def describe_reverse(graph: LineageGraph, query: str) -> str:
    """What ``omni-assets lineage --reverse IMAGE`` prints: the image, then every video using it."""
    images = graph.find_images(query)
    if not images:
        raise KeyError(query)
    lines = []
    for image in images:
        lines.append(f"image {_image_label(graph, image.id)}")
        lines.extend(_image_lines(image, "  "))
    videos = graph.videos_using(query)
    lines.append("")
    lines.append(f"used by {len(videos)} video(s):")
    for video in videos:
        parent = f", extends {video.parent}" if video.parent else ""
        lines.append(
            f"  {video.key}: {video.state}, {video.provider}/{video.model}"
            f"{', task ' + video.task_id if video.task_id else ''}{parent}"
        )
    return "\n".join(lines)


def _video_lines(graph: LineageGraph, video: VideoNode, lead: str) -> list[str]:
    pad = " " * len(lead)
    cost = f", cost {_num(video.cost)} {cost_unit(video)}" if video.cost is not None else ""
    via = f", extends {video.parent} by {video.extended_via}" if video.parent else ""
    lines = [
        f"{lead}{video.key}  [{video.state}]  {video.provider}/{video.model}"
        f"{', task ' + video.task_id if video.task_id else ''}{cost}{via}",
        f"{pad}prompt: {_clip(video.prompt, 100)}",
    ]
    if video.video_uri:
        lines.append(
            f"{pad}video: {video.video_uri}"
            + (f"  sha256 {video.sha256[:16]}" if video.sha256 else "")
        )
    if video.error and video.state != "materialized":
        lines.append(f"{pad}error: {video.error}")
    for image_id in video.images:
        image = graph.images.get(image_id)
        lines.append(f"{pad}image: {_image_label(graph, image_id)}")
        if image is not None:
            lines.extend(_image_lines(image, pad + "  "))
    return lines


def _image_lines(image: ImageNode, pad: str) -> list[str]:
    lines = []
    if image.sha256:
        lines.append(f"{pad}sha256 {image.sha256}" + (f"  {_dims(image)}" if image.width else ""))
    if image.storage_uri:
        lines.append(f"{pad}stored: {image.storage_uri}")
    for provider, upload in sorted(image.uploads.items()):
        until = upload.get("expires_at")
        lines.append(
            f"{pad}{upload.get('via')} for {provider}"
            + (f", valid until {_when(until)}" if until else "")
        )
    return lines


def _some_links(keys: Sequence[str], limit: int = 10) -> str:
    links = ", ".join(video_link(k) for k in keys[:limit])
    return links + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")


def _image_label(graph: LineageGraph, image_id: str) -> str:
    image = graph.images.get(image_id)
    names = sorted({o.rsplit("/", 1)[-1] for o in (image.origins if image else ())})
    return ", ".join(names) or _short(image_id)


def _dims(image: ImageNode) -> str:
    if image.width and image.height:
        return f"{image.width}x{image.height} {image.format or ''}".strip()
    return ""


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cost_unit(video: VideoNode) -> str:
    """The unit of a video's reported ``cost``: its price's (USD, or the provider's credits)."""
    price = DEFAULT_PRICES.get(video.provider, video.model)
    return price.unit if price is not None else "USD"


def iso_times(value: Any) -> Any:
    """``value`` with every ``*_at`` epoch number (``expires_at``...) as an ISO 8601 UTC time."""
    if isinstance(value, dict):
        return {
            k: _iso(v) if k.endswith("_at") and isinstance(v, int | float) else iso_times(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [iso_times(v) for v in value]
    return value


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _short(text: str) -> str:
    return text if len(text) <= 24 else text[:12] + "…" + text[-8:]


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _when(epoch: float | None) -> str:
    if not epoch:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
