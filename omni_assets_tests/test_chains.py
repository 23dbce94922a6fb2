"""Extension chains end to end on the emulator: order, the provider's own mechanism, refusals.

A child is submitted only once its parent is materialized, through the mechanism its model
documents (APIMart ``extend_from_task_id``; the parent's video as the reference video elsewhere:
the parent's provider URL while valid, else a presigned link to our copy), and every video
records ``parent``/``chain_root``/``chain_depth`` in its sidecar and its materialization.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli.driver import LocalDriver
from omni_assets.registry import RecordState
from omni_assets.request import VideoRequest
from omni_assets.resources import runtime_from_definitions
from omni_assets.sensors import register_requests

from .pipeline_env import DEMO_DIR, PipelineEnv, pipeline_env

PRODUCT_PNG = str(DEMO_DIR / "product.png")

# Every provider+model that can extend, and how it does.
EXTENDING = [
    ("jimmyai", "Gemini-Omini", "video_url"),
    ("apimart", "gemini-omni-flash-preview", "task_id"),
    ("apimart", "Omni-Flash-Ext", "video_url"),
    ("crun", "google/gemini-omni", "video_url"),
    ("google", "gemini-omni-flash-preview", "previous_interaction_id"),
]
# Told about the parent by its task id, not by a video: the message each one's lineage shows.
BY_TASK = {
    "task_id": "task_id (parent task {})",
    "previous_interaction_id": ("previous_interaction_id (parent interaction {})"),
}


def _chain(prefix: str, provider: str, model: str, hops: int, **root: Any) -> list[dict[str, Any]]:
    """A root request and ``hops`` requests each extending the previous one."""
    out = [
        {
            "id": f"{prefix}-0",
            "prompt": f"{prefix} opens",
            "provider": provider,
            "model": model,
            **root,
        }
    ]
    for i in range(1, hops + 1):
        out.append(
            {
                "id": f"{prefix}-{i}",
                "prompt": f"{prefix} continues ({i})",
                "provider": provider,
                "model": model,
                "extends": f"{prefix}-{i - 1}",
            }
        )
    return out


def _drive(env: PipelineEnv, timeout_s: float = 240) -> dict[str, Any]:
    driver = LocalDriver(env.defs, env.instance, env.registry, run_log_level="WARNING")
    result = driver.drive(timeout_s=timeout_s, interval_s=0.3)
    assert not result.timed_out, {r.key: r.state.value for r in result.records}
    return {r.key: r for r in result.records}


def _materialization(env: PipelineEnv, key: str) -> Any:
    records = env.instance.fetch_materializations(VIDEO_ASSET_KEY, limit=200).records
    (event,) = [r for r in records if r.partition_key == key]
    return event.asset_materialization.metadata


@pytest.fixture
def env(tmp_path: Path, fresh_emulator: Any) -> Any:
    with pipeline_env(tmp_path, fresh_emulator.url) as e:
        yield e


def test_three_hop_chains_on_every_provider_that_can_extend(env: PipelineEnv) -> None:
    prefixes = {}
    requests: list[dict[str, Any]] = []
    for provider, model, how in EXTENDING:
        prefix = f"{provider[:3]}{'t' if how == 'task_id' else 'v'}"
        prefixes[prefix] = (provider, model, how)
        # CRUN and Google have no upload API, and local storage cannot presign.
        root = {"images": [PRODUCT_PNG]} if provider not in ("crun", "google") else {}
        requests += _chain(prefix, provider, model, hops=3, **root)
    env.write_requests(requests)
    records = _drive(env)
    assert {k: r.state for k, r in records.items()} == dict.fromkeys(
        records, RecordState.MATERIALIZED
    )
    for prefix, (_provider, _model, how) in prefixes.items():
        for depth in range(4):
            key = f"{prefix}-{depth}"
            record, sidecar = records[key], env.storage.read_json(env.storage.sidecar_path(key))
            meta = _materialization(env, key)
            assert sidecar["chain_root"] == f"{prefix}-0"
            assert sidecar["chain_depth"] == depth
            assert meta["chain_depth"].value == depth  # numeric: the UI plots it
            assert f"partition={prefix}-0)" in meta["chain_root"].value
            if depth == 0:
                assert sidecar["parent"] is None and "parent" not in meta
                continue
            parent = records[f"{prefix}-{depth - 1}"]
            assert sidecar["parent"] == parent.key
            assert f"partition={parent.key})" in meta["parent"].value
            assert sidecar["extended_via"] == how
            # Ordering: submitted only once the parent's video was in storage.
            assert record.submitted_at and parent.materialized_at
            assert record.submitted_at >= parent.materialized_at
            video = (record.sources or {}).get("video")
            if how in BY_TASK:
                assert sidecar["parent_task_id"] == parent.task_id
                assert video is None  # the parent travels as its task / interaction id
                assert meta["extended_via"].value == BY_TASK[how].format(parent.task_id)
            else:
                # Local storage cannot presign: the parent's provider URL, still valid, is sent.
                assert video is not None and video["via"] == "url"
                assert video["url"] == parent.video_url
                assert meta["extended_via"].value == "video_url (the parent's provider URL)"


def test_chain_on_s3_presigns_the_parent_when_its_provider_url_is_expiring(
    tmp_path: Path, fresh_emulator: Any, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # APIMart states expires_at: 5 minutes is too short to trust for a queued child (< 1 h).
    fresh_emulator.configure(url_ttl_seconds={"apimart": 300})
    url = s3_server.url(f"chains-{tmp_path.name}")
    with pipeline_env(
        tmp_path, fresh_emulator.url, storage_url=url, storage_options=s3_server.storage_options
    ) as env:
        env.write_requests(_chain("s3", "apimart", "Omni-Flash-Ext", hops=3))
        records = _drive(env)
        assert all(r.state is RecordState.MATERIALIZED for r in records.values()), records
        for depth in range(1, 4):
            child, parent = records[f"s3-{depth}"], records[f"s3-{depth - 1}"]
            video = (child.sources or {})["video"]
            assert video["via"] == "presign"
            assert video["url"].startswith(s3_server.endpoint_url)
            assert video["storage_uri"] == parent.video_uri
            # The link the provider was given really serves the parent's video (signed, valid).
            with httpx.Client() as client:
                body = client.get(video["url"]).content
            assert body == env.storage.read_bytes(env.storage.video_path(parent.key))
            sidecar = env.storage.read_json(env.storage.sidecar_path(child.key))
            assert sidecar["chain_depth"] == depth
            assert "presigned link" in _materialization(env, child.key)["extended_via"].value
    fresh_emulator.reset()


def test_reference_extension_on_local_storage_needs_a_live_parent_url(
    env: PipelineEnv, fresh_emulator: Any
) -> None:
    fresh_emulator.configure(url_ttl_seconds={"apimart": 300})
    env.write_requests(_chain("loc", "apimart", "Omni-Flash-Ext", hops=1))
    records = _drive(env)
    assert records["loc-0"].state is RecordState.MATERIALIZED
    child = records["loc-1"]
    assert child.state is RecordState.FAILED
    message = (child.error or {}).get("message", "")
    assert "presign" in message and "extends" in str(child.error)
    assert len(fresh_emulator.audit()["tasks"]) == 1  # the child was never paid for


def test_failed_parent_fails_its_descendants_with_the_reason(
    env: PipelineEnv, fresh_emulator: Any
) -> None:
    chain = _chain("doom", "apimart", "gemini-omni-flash-preview", hops=2)
    chain[0]["prompt"] = "doomed [emulator:fail]"
    env.write_requests(chain)
    records = _drive(env)
    assert [records[f"doom-{i}"].state for i in range(3)] == [RecordState.FAILED] * 3
    assert "parent 'doom-0' ended failed" in records["doom-1"].error["message"]  # type: ignore[index]
    assert "parent 'doom-1' ended failed" in records["doom-2"].error["message"]  # type: ignore[index]
    assert len(fresh_emulator.audit()["tasks"]) == 1  # only the root was generated
    # The child's partition says why it has no video, and which parent it waited for.
    observations = env.instance.fetch_observations(VIDEO_ASSET_KEY, limit=20).records
    (obs,) = [o for o in observations if o.partition_key == "doom-1"]
    meta = obs.asset_observation.metadata
    assert "doom-0" in meta["reason"].value
    assert "partition=doom-0)" in meta["parent"].value


def test_refused_chains_make_no_http_call(env: PipelineEnv, fresh_emulator: Any) -> None:
    requests = [
        VideoRequest(id="ok-root", prompt="a", provider="apimart"),
        VideoRequest(id="ok-child", prompt="b", provider="apimart", extends="ok-root"),
        VideoRequest(id="loop-a", prompt="c", provider="apimart", extends="loop-b"),
        VideoRequest(id="loop-b", prompt="d", provider="apimart", extends="loop-a"),
        VideoRequest(id="orphan", prompt="e", provider="apimart", extends="nowhere"),
        VideoRequest(id="orphan-kid", prompt="f", provider="apimart", extends="orphan"),
        VideoRequest(id="toapis-kid", prompt="g", provider="toapis", extends="ok-root"),
    ]
    checked, keys = register_requests(runtime_from_definitions(env.defs), requests)
    assert sorted(keys) == ["ok-child", "ok-root"]
    issues = {i.where: i.message for i in checked.issues}
    for member in ("loop-a", "loop-b"):
        message = issues[f"request '{member}'"]
        assert "extension cycle" in message and "loop-a" in message and "loop-b" in message
    assert "'nowhere' is not a known request id" in issues["request 'orphan'"]
    assert "parent 'orphan' is invalid" in issues["request 'orphan-kid'"]
    assert "cannot" in issues["request 'toapis-kid'"]
    # A parent registered earlier (an earlier file) is known.
    later, later_keys = register_requests(
        runtime_from_definitions(env.defs),
        [VideoRequest(id="late-kid", prompt="h", provider="apimart", extends="ok-child")],
    )
    assert later_keys == ["late-kid"] and not later.issues
    assert fresh_emulator.audit()["counts"]["requests"] == 0
