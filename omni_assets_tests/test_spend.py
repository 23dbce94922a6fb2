"""Spend you can see: the omni_spend asset, ``omni-assets cost``, the tables' costs and totals —
and that every total is the sum of the per-video costs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from dagster import materialize

from omni_assets.cli import main as cli_main
from omni_assets.cli.driver import LocalDriver
from omni_assets.pipeline.spend import spend_by, total_usd
from omni_assets.registry import RecordState
from omni_assets.spend_asset import build_spend_asset

from .pipeline_env import pipeline_env

ML, ADS = {"team": "ml"}, {"team": "ads"}


def test_totals_equal_the_sum_of_per_video_costs(
    tmp_path: Path, fresh_emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pipeline_env(tmp_path, fresh_emulator.url) as env:
        env.write_requests(
            [
                # APIMart reports USD; CRUN reports credits; JimmyAI and ToAPIs report nothing.
                {"id": "s-apimart", "prompt": "a", "provider": "apimart", "tags": ML},
                {"id": "s-crun", "prompt": "b", "provider": "crun", "duration": 6, "tags": ADS},
                {"id": "s-jimmy", "prompt": "c", "provider": "jimmyai", "duration": 6, "tags": ML},
                {"id": "s-toapis", "prompt": "d", "provider": "toapis", "duration": 6},
                # Fails at the provider: APIMart reports a cost of 0 for it.
                {"id": "s-fail", "prompt": "[emulator:fail] e", "provider": "apimart"},
            ]
        )
        result = LocalDriver(env.defs, env.instance, env.registry).drive(
            timeout_s=120, interval_s=0.3
        )
        states = {r.key: r.state for r in result.records}
        assert states.pop("s-fail") is RecordState.FAILED
        assert set(states.values()) == {RecordState.MATERIALIZED}
        rows = env.registry.costs()
        per_video = {r.key: r.spent_usd for r in rows}
        assert per_video["s-fail"] == 0.0  # settled with the provider's own 0
        assert per_video["s-apimart"] == 1.0 and per_video["s-crun"] == pytest.approx(0.6)
        total = total_usd(rows)
        assert total == pytest.approx(sum(per_video.values()))
        for group in ("provider", "model", "day"):
            assert sum(usd for _, usd in spend_by(rows, group).values()) == pytest.approx(total)
        tags = spend_by(rows, "tag")
        assert tags["team=ml"][1] == pytest.approx(per_video["s-apimart"] + per_video["s-jimmy"])

        # The status table: each video's cost, and a total that is their sum.
        assert cli_main(["status"]) == 0
        out = capsys.readouterr().out
        shown = re.findall(r"^(s-\w+)\s.*?\s(~?\d+\.\d\d) (USD|credits)\s", out, re.M)
        cells = {k: (amount, unit) for k, amount, unit in shown}
        assert set(cells) == set(per_video)
        assert cells["s-fail"] == ("0.00", "USD") and cells["s-crun"] == ("30.00", "credits")
        assert cells["s-jimmy"] == ("~0.60", "USD")  # JimmyAI reports nothing: our estimate
        assert f"total: {total:.2f} USD" in out
        # omni-assets cost, by provider and by tag.
        assert cli_main(["cost", "--by", "provider"]) == 0
        out = capsys.readouterr().out
        lines = [ln.split() for ln in out.splitlines() if ln.split()[:1] in (["apimart"], ["crun"])]
        assert {ln[0]: float(ln[2]) for ln in lines} == pytest.approx({"apimart": 1.0, "crun": 0.6})
        assert f"total: {total:.2f} USD" in out

        # The omni_spend asset: today's partition, numbers per provider, model and tag.
        (day,) = {r.day for r in rows}
        done = materialize([build_spend_asset()], resources=env.defs.resources, partition_key=day)
        meta = {
            k: v.value
            for k, v in done.asset_materializations_for_node("omni_spend")[0].metadata.items()
        }
        assert meta["total_usd"] == pytest.approx(total)
        assert meta["videos"] == 5
        assert meta["usd/provider/apimart"] == 1.0
        assert meta["usd/model/google/gemini-omni"] == pytest.approx(0.6)
        assert meta["usd/tag/team=ml"] == pytest.approx(tags["team=ml"][1])
        providers = sum(v for k, v in meta.items() if k.startswith("usd/provider/"))
        assert providers == pytest.approx(meta["total_usd"])
