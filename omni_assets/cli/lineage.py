"""``omni-assets lineage``: a video's ancestry and inputs, or every video that used an image.

By default the graph is built live from the task registry and the storage, found as every
command finds them (:mod:`omni_assets.state`), like ``omni-assets status``; with
``--snapshot`` it is read from ``lineage/graph.json`` in storage, the copy the ``omni_lineage``
asset keeps (no registry needed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module on every call: keep start-up light
    from dagster import DagsterInstance, Definitions

    from ..lineage.graph import LineageGraph

__all__ = ["add_lineage_parser", "cmd_lineage", "load_graph", "materialize_lineage"]


def add_lineage_parser(sub: Any) -> None:
    """Add the ``lineage`` subcommand to ``omni-assets``' subparsers."""
    parser = sub.add_parser(
        "lineage",
        help="a video's ancestry and inputs; --reverse IMAGE: the videos that used an image",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target",
        help="a partition key, or with --reverse an image: a path, "
        "a sha256 (or 8+ hex digits of it) or a URL",
    )
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="list every video whose inputs include the image TARGET",
    )
    parser.add_argument("--storage", help="storage URL (default: OMNI_STORAGE_URL)")
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="read lineage/graph.json from storage instead of the registry",
    )
    parser.add_argument("--json", action="store_true", help="print the matching nodes as JSON")


def load_graph(storage_url: str | None, *, snapshot: bool) -> LineageGraph:
    """The lineage graph: from the registry (live) or from the stored snapshot."""
    from ..lineage.graph import GRAPH_FILE, LineageGraph, build_graph
    from ..registry import Registry, default_registry_url
    from ..settings import Settings
    from ..storage import VideoStorage

    storage = VideoStorage(storage_url or Settings.from_env().storage_url)
    if snapshot:
        path = storage.lineage_path(GRAPH_FILE)
        if not storage.exists(path):
            raise FileNotFoundError(
                f"no {storage.uri(path)}: materialize omni_lineage first (or drop --snapshot)"
            )
        return LineageGraph.from_dict(storage.read_json(path))
    with Registry(default_registry_url()) as registry:
        return build_graph(registry.records(), storage, _live_partitions())


def _live_partitions() -> list[str] | None:
    """The instance's omni_video partitions when the Dagster home holds one (marks pruning)."""
    from ..state import resolve_state

    home = str(resolve_state().home)
    if not os.path.exists(os.path.join(home, "dagster.yaml")):
        return None
    from dagster import DagsterInstance

    with DagsterInstance.from_config(home) as instance:
        return list(instance.get_dynamic_partitions("omni_video"))


def materialize_lineage(defs: Definitions, instance: DagsterInstance) -> str:
    """Materialize ``omni_lineage`` (what its sensor does in ``dagster dev``); a summary line."""
    from dagster import materialize

    from ..lineage_assets import LINEAGE_ASSET_KEY

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = materialize(
        [defs.resolve_assets_def(LINEAGE_ASSET_KEY)],
        instance=instance,
        run_config=quiet,
        raise_on_error=False,
    )
    if not result.success:
        return "lineage: omni_lineage failed (see the run in the Dagster instance)"
    meta = result.asset_materializations_for_node(LINEAGE_ASSET_KEY.path[-1])[0].metadata
    return (
        f"lineage: {meta['videos'].value} videos, {meta['images'].value} images, "
        f"{meta['chains'].value} extension chains -> {meta['dagster/uri'].value}"
    )


def cmd_lineage(args: argparse.Namespace) -> int:
    """Print the ancestry of ``args.target`` (or, with ``--reverse``, the videos using it)."""
    from ..lineage.render import describe_ancestry, describe_reverse, iso_times
    from . import say_state

    say_state()
    try:
        graph = load_graph(args.storage, snapshot=args.snapshot)
    except (OSError, ValueError) as exc:
        print(f"lineage: {exc}", file=sys.stderr)
        return 1
    try:
        if args.json:
            # Times as ISO 8601 (expires_at, registered_at...), not raw epochs.
            found = iso_times(_as_json(graph, args.target, args.reverse))
            print(json.dumps(found, indent=2, default=str))
        elif args.reverse:
            print(describe_reverse(graph, args.target))
        else:
            print(describe_ancestry(graph, args.target))
    except KeyError:
        what = "image" if args.reverse else "request"
        print(
            f"lineage: no {what} {args.target!r} is known "
            f"({len(graph.videos)} videos, {len(graph.images)} images)",
            file=sys.stderr,
        )
        return 1
    return 0


def _as_json(graph: LineageGraph, target: str, reverse: bool) -> dict[str, Any]:
    data = graph.to_dict()
    if reverse:
        images = graph.find_images(target)
        if not images:
            raise KeyError(target)
        return {
            "images": [data["images"][i.id] for i in images],
            "videos": [data["videos"][v.key] for v in graph.videos_using(target)],
        }
    chain = graph.ancestry(target)
    if not chain:
        raise KeyError(target)
    ids = {i for v in chain for i in v.images}
    return {
        "ancestry": [data["videos"][v.key] for v in chain],
        "images": [data["images"][i] for i in sorted(ids) if i in data["images"]],
        "children": [v.key for v in graph.children(target)],
        "versions": [v.key for v in graph.versions(target)],
    }
