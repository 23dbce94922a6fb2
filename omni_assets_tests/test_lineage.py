"""The lineage graph for a known set of records: its questions, its JSON, what people read."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dagster import materialize

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli.driver import LocalDriver
from omni_assets.lineage.graph import LineageGraph
from omni_assets.lineage.render import (
    chains_summary_md,
    describe_ancestry,
    describe_reverse,
    lineage_markdown,
)
from omni_assets.lineage_assets import LINEAGE_ASSET_KEY
from omni_assets.pipeline.chain import REFRESH_TAG, chain_fields
from omni_assets.pipeline.media import INLINE_MD_LIMIT
from omni_assets.registry import Record, RecordError, RecordState
from omni_assets.source_images import SOURCE_IMAGES_KEY

from .pipeline_env import DEMO_DIR, pipeline_env

PRODUCT_PNG = str(DEMO_DIR / "product.png")

T0 = 1_790_000_000.0  # 2026-09-21 14:13 UTC
CAT = b"not really a png, but bytes with a hash"
CAT_SHA = hashlib.sha256(CAT).hexdigest()
REF_URL = "https://example.com/ref.jpg"


def _record(
    key: str,
    *,
    state: str = "materialized",
    parent: str | None = None,
    images: tuple[str, ...] = (),
    ingested: bool = True,
    provider: str = "apimart",
    model: str = "gemini-omni-flash-preview",
    cost: float | None = None,
    tags: dict[str, str] | None = None,
    at: float = 0.0,
    error: str | None = None,
) -> Record:
    """A registry record as the pipeline leaves it (sources as ``submit`` records them)."""
    origins = ["/data/cat.png" if i == CAT_SHA else i for i in images]
    request = {
        "id": key,
        "prompt": f"the {key} scene",
        "images": origins,
        "extends": parent,
        "tags": tags or {},
    }
    sources = None
    if ingested and state != "pending":
        sources = {
            "video": None,
            "images": [
                {
                    "origin": "/data/cat.png",
                    "url": "https://files.apimart.example/cat",
                    "sha256": CAT_SHA,
                    "storage_uri": f"file:///s/sources/{CAT_SHA}.png",
                    "via": "upload",
                    "expires_at": T0 + 72 * 3600,
                }
                if i == CAT_SHA
                else {
                    "origin": i,
                    "url": i,
                    "sha256": None,
                    "storage_uri": None,
                    "via": "url",
                    "expires_at": None,
                }
                for i in images
            ],
        }
    done = state == "materialized"
    return Record(
        key=key,
        fingerprint="f" * 64,
        provider=provider,
        model=model,
        request_json=json.dumps(request),
        request=request,
        parent_key=parent,
        state=RecordState(state),
        attempt=1,
        task_id=None if state == "pending" else f"task-{key}",
        task_ref=None,
        idempotency_key=None,
        remote_status=None,
        progress=None,
        video_url=None,
        url_expires_at=None,
        error=RecordError("TaskFailedError", error) if error else None,
        sources=sources,
        cost=cost,
        credits=None,
        video_uri=f"file:///s/videos/{key}.mp4" if done else None,
        sha256=f"{len(key):064x}" if done else None,
        size=1000 if done else None,
        run_id=None,
        registered_at=T0 + at,
        submit_started_at=None,
        submitted_at=None,
        polling_since=None,
        remote_done_at=None,
        next_poll_at=None,
        last_polled_at=None,
        claimed_at=None,
        materialized_at=T0 + at + 60 if done else None,
    )


RECORDS = [
    _record("harbour", images=(CAT_SHA,), cost=1.5),
    _record("harbour-2", parent="harbour", at=1, cost=1.5),
    _record("harbour-3", parent="harbour-2", at=2, cost=1.5),
    _record("cat-walk", images=(CAT_SHA, REF_URL), provider="jimmyai", model="Gemini-Omini", at=3),
    _record(
        "cat-walk.r202609220600",
        images=(CAT_SHA, REF_URL),
        provider="jimmyai",
        model="Gemini-Omini",
        tags={REFRESH_TAG: "cat-walk"},
        at=4,
    ),
    _record("doomed", state="failed", parent="harbour-3", at=5, error="parent 'x' ended failed"),
    _record("queued", state="pending", images=("/data/new.png",), at=6),
]


@pytest.fixture
def graph() -> LineageGraph:
    info = {
        CAT_SHA: {
            "width": 640,
            "height": 480,
            "format": "png",
            "size": len(CAT),
            "origins": ["/data/cat.png", "/elsewhere/kitty.png"],
        }
    }
    return LineageGraph.from_records(
        RECORDS, image_info=info, pruned=["cat-walk.r202609220600"], now=T0 + 3600
    )


def test_chain_fields_walk_to_the_root() -> None:
    by_key = {r.key: r for r in RECORDS}
    fields = chain_fields(by_key.get, by_key["harbour-3"])
    assert fields == {
        "parent": "harbour-2",
        "chain_root": "harbour",
        "chain_depth": 2,
        "refresh_of": None,
        "extended_via": "task_id",
        "parent_task_id": "task-harbour-2",
    }
    assert chain_fields(by_key.get, by_key["harbour"])["chain_depth"] == 0
    refreshed = chain_fields(by_key.get, by_key["cat-walk.r202609220600"])
    assert refreshed["refresh_of"] == "cat-walk"


def test_graph_answers_ancestry_reverse_versions(graph: LineageGraph, tmp_path: Path) -> None:
    assert [v.key for v in graph.ancestry("doomed")] == [
        "harbour",
        "harbour-2",
        "harbour-3",
        "doomed",
    ]
    assert [v.key for v in graph.children("harbour-2")] == ["harbour-3"]
    assert [v.key for v in graph.versions("cat-walk.r202609220600")] == [
        "cat-walk",
        "cat-walk.r202609220600",
    ]
    image = tmp_path / "cat-copy.png"
    image.write_bytes(CAT)
    expected = ["cat-walk", "cat-walk.r202609220600", "harbour"]
    for query in (str(image), CAT_SHA, CAT_SHA[:10], "/elsewhere/kitty.png"):
        assert [v.key for v in graph.videos_using(query)] == expected, query
    assert [v.key for v in graph.videos_using(REF_URL)] == ["cat-walk", "cat-walk.r202609220600"]
    assert [v.key for v in graph.videos_using("/data/new.png")] == ["queued"]
    assert graph.videos_using("0000000000") == []
    assert [[v.key for v in c] for c in graph.chains()] == [
        ["harbour", "harbour-2", "harbour-3", "doomed"]
    ]


def test_graph_json_round_trip_and_edges(graph: LineageGraph) -> None:
    data = json.loads(json.dumps(graph.to_dict()))
    assert LineageGraph.from_dict(data) == graph
    edges = {(e["from"], e["to"], e["kind"]) for e in data["edges"]}
    assert ("video:harbour", "video:harbour-2", "extends") in edges
    assert (f"image:{CAT_SHA}", "video:harbour", "input") in edges
    assert (f"image:{REF_URL}", "video:cat-walk", "input") in edges
    assert ("video:cat-walk", "video:cat-walk.r202609220600", "refresh") in edges
    assert ("image:/data/new.png", "video:queued", "input") in edges
    assert len(edges) == len(data["edges"]) == 10  # 6 inputs, 3 extensions, 1 refresh
    cat = data["images"][CAT_SHA]
    upload = {
        "url": "https://files.apimart.example/cat",
        "via": "upload",
        "expires_at": T0 + 72 * 3600,
    }
    assert cat["uploads"] == {"apimart": upload, "jimmyai": upload}
    assert cat["origins"] == ["/data/cat.png", "/elsewhere/kitty.png"]
    assert data["videos"]["cat-walk.r202609220600"]["pruned"] is True


def test_ancestry_text(graph: LineageGraph) -> None:
    assert describe_ancestry(graph, "harbour-3") == "\n".join(
        [
            "harbour-3: materialized",
            "  extension chain: depth 2, root harbour",
            "",
            "ancestry (root first):",
            "harbour  [materialized]  apimart/gemini-omni-flash-preview, task task-harbour,"
            " cost 1.5 USD",
            "prompt: the harbour scene",
            "video: file:///s/videos/harbour.mp4  sha256 0000000000000000",
            "image: cat.png, kitty.png",
            f"  sha256 {CAT_SHA}  640x480 png",
            f"  stored: file:///s/sources/{CAT_SHA}.png",
            "  upload for apimart, valid until 2026-09-24 14:13 UTC",
            "  upload for jimmyai, valid until 2026-09-24 14:13 UTC",
            "└─ harbour-2  [materialized]  apimart/gemini-omni-flash-preview, task task-harbour-2,"
            " cost 1.5 USD, extends harbour by task_id",
            "   prompt: the harbour-2 scene",
            "   video: file:///s/videos/harbour-2.mp4  sha256 0000000000000000",
            "   └─ harbour-3  [materialized]  apimart/gemini-omni-flash-preview,"
            " task task-harbour-3, cost 1.5 USD, extends harbour-2 by task_id",
            "      prompt: the harbour-3 scene",
            "      video: file:///s/videos/harbour-3.mp4  sha256 0000000000000000",
            "",
            "extended by: doomed",
        ]
    )


def test_versions_and_reverse_text(graph: LineageGraph) -> None:
    text = describe_ancestry(graph, "cat-walk")
    assert text.endswith(
        "\n".join(
            [
                "versions (scheduled refreshes, oldest first):",
                "  cat-walk: materialized",
                "  cat-walk.r202609220600: materialized (pruned)",
            ]
        )
    )
    assert describe_reverse(graph, CAT_SHA[:12]) == "\n".join(
        [
            "image cat.png, kitty.png",
            f"  sha256 {CAT_SHA}  640x480 png",
            f"  stored: file:///s/sources/{CAT_SHA}.png",
            "  upload for apimart, valid until 2026-09-24 14:13 UTC",
            "  upload for jimmyai, valid until 2026-09-24 14:13 UTC",
            "",
            "used by 3 video(s):",
            "  cat-walk: materialized, jimmyai/Gemini-Omini, task task-cat-walk",
            "  cat-walk.r202609220600: materialized, jimmyai/Gemini-Omini,"
            " task task-cat-walk.r202609220600",
            "  harbour: materialized, apimart/gemini-omni-flash-preview, task task-harbour",
        ]
    )
    with pytest.raises(KeyError):
        describe_reverse(graph, "ffffffffff")
    with pytest.raises(KeyError):
        describe_ancestry(graph, "nope")


def test_markdown_links_to_the_ui(graph: LineageGraph) -> None:
    md = lineage_markdown(graph)
    assert md.startswith("**7 videos, 3 images, 1 extension chains**")
    assert "- [harbour](/assets/omni_video?partition=harbour) · apimart · materialized" in md
    assert (
        "      - [doomed](/assets/omni_video?partition=doomed) · apimart · failed — extends "
        "by task_id"
    ) in md
    assert "| video | state | provider / model | task | cost |" in md
    assert (
        f"| [cat.png, kitty.png](/assets/source_images?partition={CAT_SHA}) "
        f"| `{CAT_SHA[:16]}` | 640x480 png |"
    ) in md
    assert "materialized (pruned)" in md
    # Tables are capped; the rest is in graph.json.
    capped = lineage_markdown(graph, max_rows=2)
    assert "… and 5 older videos (see graph.json)." in capped


def test_a_cycle_in_the_registry_cannot_hang_lineage() -> None:
    # check_requests refuses cycles; records edited by hand must still not loop forever.
    loop = [_record("a", parent="b"), _record("b", parent="a")]
    graph = LineageGraph.from_records(loop)
    assert [v.key for v in graph.ancestry("a")] == ["b", "a"]
    assert chain_fields({r.key: r for r in loop}.get, loop[0])["chain_depth"] == 1


def test_sidecar_like_dict_is_plain_json(graph: Any) -> None:
    text = json.dumps(graph.to_dict(), allow_nan=False)
    assert '"format": 1' in text


# -- end to end: the pipeline, the assets, the CLI ------------------------------------------------


def test_lineage_end_to_end(tmp_path: Path, fresh_emulator: Any) -> None:
    with pipeline_env(tmp_path, fresh_emulator.url) as env:
        env.write_requests(
            [
                {"id": "img-a", "prompt": "a", "provider": "apimart", "images": [PRODUCT_PNG]},
                {
                    "id": "img-b",
                    "prompt": "b",
                    "provider": "jimmyai",
                    "images": [PRODUCT_PNG],
                    "mode": "frame",
                    "duration": 4,
                },
                {"id": "ext-1", "prompt": "c", "provider": "apimart", "extends": "img-a"},
                {"id": "ext-2", "prompt": "d", "provider": "apimart", "extends": "ext-1"},
            ]
        )
        driver = LocalDriver(env.defs, env.instance, env.registry, run_log_level="WARNING")
        result = driver.drive(timeout_s=180, interval_s=0.3)
        assert result.ok, {r.key: r.state.value for r in result.records}
        sha = hashlib.sha256(Path(PRODUCT_PNG).read_bytes()).hexdigest()

        # The image is a partition of source_images, with its own metadata.
        assert env.instance.get_dynamic_partitions("source_images") == [sha]
        events = env.instance.fetch_materializations(SOURCE_IMAGES_KEY, limit=10).records
        image = events[0].asset_materialization.metadata
        assert events[0].partition_key == sha
        assert (image["width"].value, image["height"].value) == (96, 64)
        assert image["thumbnail"].value.startswith("![thumbnail](data:image/")
        assert len(image["thumbnail"].value) < INLINE_MD_LIMIT
        assert "**apimart** (upload) until 20" in image["uploads"].value
        assert "**jimmyai** (upload) until 20" in image["uploads"].value
        assert image["origin"].value == PRODUCT_PNG
        assert env.storage.read_json(env.storage.source_path(sha, "json"))["width"] == 96

        # Each video names its image and chain; its thumbnail renders in place.
        videos = env.instance.fetch_materializations(VIDEO_ASSET_KEY, limit=10).records
        meta = {e.partition_key: e.asset_materialization.metadata for e in videos}
        assert f"(/assets/source_images?partition={sha})" in meta["img-b"]["source_images"].value
        assert meta["img-b"]["source_image_sha256"].value == [sha]
        assert meta["ext-2"]["chain_depth"].value == 2
        assert len(meta["ext-2"]["thumbnail"].value) < INLINE_MD_LIMIT
        assert next(iter(meta["ext-2"])) == "thumbnail"

        # omni_lineage stores the graph and shows it.
        lineage = env.defs.resolve_assets_def(LINEAGE_ASSET_KEY)
        done = materialize([lineage], instance=env.instance)
        assert done.success
        shown = done.asset_materializations_for_node("omni_lineage")[0].metadata
        assert (shown["videos"].value, shown["images"].value, shown["chains"].value) == (4, 1, 1)
        assert shown["deepest_chain"].value == 2
        stored = env.storage.read_json(env.storage.lineage_path("graph.json"))
        assert stored["videos"]["ext-2"]["chain_root"] == "img-a"

        # The CLI, as a user runs it.
        cli_env = {**os.environ, **env.env}
        cli_env.pop("DAGSTER_HOME", None)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "omni_assets.cli", "lineage", *args],
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        ancestry = cli("ext-2")
        assert ancestry.returncode == 0, ancestry.stderr
        lines = ancestry.stdout.splitlines()
        assert lines[0] == "ext-2: materialized"
        assert lines[1] == "  extension chain: depth 2, root img-a"
        assert any(line.startswith("img-a  [materialized]  apimart/") for line in lines)
        assert ", cost 1 USD" in ancestry.stdout  # a cost says its unit
        assert any(line.startswith("└─ ext-1  [materialized]") for line in lines)
        assert any(line.startswith("   └─ ext-2  [materialized]") for line in lines)
        assert "image: product.png" in ancestry.stdout and f"sha256 {sha}" in ancestry.stdout
        reverse = cli("--reverse", PRODUCT_PNG)
        assert reverse.returncode == 0, reverse.stderr
        assert "used by 2 video(s):" in reverse.stdout
        assert "  img-a: materialized" in reverse.stdout
        assert "  img-b: materialized" in reverse.stdout
        snapshot = cli("--snapshot", "--json", "ext-2")
        assert snapshot.returncode == 0, snapshot.stderr
        data = json.loads(snapshot.stdout)
        assert [v["key"] for v in data["ancestry"]] == ["img-a", "ext-1", "ext-2"]
        assert [i["sha256"] for i in data["images"]] == [sha]
        # Times as ISO 8601, not raw epochs (issue 13 finding 9).
        iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
        assert iso.match(data["ancestry"][0]["registered_at"])
        uploads = data["images"][0]["uploads"]
        assert uploads and all(iso.match(u["expires_at"]) for u in uploads.values())
        # `omni-assets lineage ext-2 | head -1`: the reader goes away before the output comes.
        piped = subprocess.Popen(
            [sys.executable, "-m", "omni_assets.cli", "lineage", "ext-2"],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert piped.stdout is not None and piped.stderr is not None
        piped.stdout.close()
        errors = piped.stderr.read().decode()
        assert piped.wait(60) == 0, errors
        assert "BrokenPipeError" not in errors and "Traceback" not in errors
        missing = cli("no-such-video")
        assert missing.returncode == 1
        assert "no request 'no-such-video' is known (4 videos, 1 images)" in missing.stderr


def test_chain_summary_is_short_and_exact_for_branches() -> None:
    branching = [
        _record("r"),
        _record("r-a", parent="r"),
        _record("r-b", parent="r"),
        _record("r-a-1", parent="r-a"),
    ]
    md = chains_summary_md(LineageGraph.from_records(branching))
    assert md.splitlines() == [
        "- [r](/assets/omni_video?partition=r) → [r-a](/assets/omni_video?partition=r-a) → "
        "[r-a-1](/assets/omni_video?partition=r-a-1)",
        "- [r](/assets/omni_video?partition=r) → [r-b](/assets/omni_video?partition=r-b)",
    ]
    many = [_record(f"c{i}") for i in range(40)] + [
        _record(f"c{i}-x", parent=f"c{i}") for i in range(40)
    ]
    short = chains_summary_md(LineageGraph.from_records(many))
    assert len(short) < INLINE_MD_LIMIT
    assert short.endswith("more (see graph)")


def test_rebuilding_omni_lineage_removes_temporary_files_a_crash_left(
    tmp_path: Path, fresh_emulator: Any
) -> None:
    with pipeline_env(tmp_path, fresh_emulator.url) as env:
        storage = env.storage
        stale = storage.temp_path_for(storage.video_path("crashed"))
        young = storage.temp_path_for(storage.source_path("a" * 64, "png"))
        for path in (stale, young):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Path(path).write_bytes(b"half a file")
        two_days_ago = time.time() - 2 * 86400
        os.utime(stale, (two_days_ago, two_days_ago))
        done = materialize([env.defs.resolve_assets_def(LINEAGE_ASSET_KEY)], instance=env.instance)
        assert done.success
        assert not os.path.exists(stale)
        assert os.path.exists(young)  # may still be being written
        shown = done.asset_materializations_for_node("omni_lineage")[0].metadata
        assert shown["partials_removed"].value == 1
