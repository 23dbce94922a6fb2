"""Prices as data: the shipped table, OMNI_PRICES overrides, and the cost every video carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli.driver import LocalDriver
from omni_assets.pipeline.intake import load_requests_file
from omni_assets.providers.capabilities import CAPABILITIES
from omni_assets.providers.prices import DEFAULT_PRICES, load_prices
from omni_assets.registry import RecordState
from omni_assets.resources import runtime_from_definitions

from .pipeline_env import PipelineEnv, pipeline_env, temporary_env


def test_every_model_has_a_dated_sourced_price() -> None:
    for provider, models in CAPABILITIES.items():
        for model, caps in models.items():
            price = DEFAULT_PRICES.get(provider, model)
            assert price is not None, f"{provider}/{model} has no price"
            assert price.source and price.date and price.unit in ("USD", "credits")
            # Every resolution the model renders is priced.
            for resolution in caps.resolutions:
                assert DEFAULT_PRICES.estimate(
                    provider, model, duration=None, resolution=resolution
                )
    # Only APIMart's flash preview has a published number; the rest say they are ours.
    published = [p for p in DEFAULT_PRICES if not p.estimate]
    assert [(p.provider, p.model) for p in published] == [("apimart", "gemini-omni-flash-preview")]
    assert all(p.source.startswith("estimate") for p in DEFAULT_PRICES if p.estimate)


def test_estimate_is_duration_times_resolution_with_the_models_defaults() -> None:
    est = DEFAULT_PRICES.estimate("apimart", "Omni-Flash-Ext", duration=8, resolution="1080p")
    assert est is not None and (est.amount, est.unit, est.usd) == (1.2, "USD", 1.2)
    # No duration given: the model's default (6 s); aliases resolve to the canonical model.
    est = DEFAULT_PRICES.estimate("jimmyai", "gemini-omni", duration=None, resolution=None)
    assert est is not None and (est.model, est.amount) == ("Gemini-Omini", 0.6)
    # A fixed-length model and a model without a duration parameter: one price per video.
    est = DEFAULT_PRICES.estimate("jimmyai", "omni-10s", duration=None, resolution=None)
    assert est is not None and est.amount == 1.0
    # CRUN's credits convert to USD for budgets and routing.
    est = DEFAULT_PRICES.estimate("crun", "google/gemini-omni", duration=4, resolution="720p")
    assert est is not None and (est.amount, est.unit, est.usd) == (20.0, "credits", 0.4)


def test_price_file_overrides_one_entry_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "prices:\n"
        "  - provider: toapis\n"
        "    model: gemini_omni_flash\n"
        "    unit: USD\n"
        "    per_second: {720p: 0.05, 1080P: 0.09}\n"
        "    source: our invoice\n"
        "    date: 2026-11-30\n"
    )
    table = load_prices(path)
    est = table.estimate("toapis", "gemini_omni_flash", duration=10, resolution="1080p")
    assert est is not None and (est.amount, est.estimate, est.source) == (0.9, False, "our invoice")
    crun = ("crun", "google/gemini-omni")
    assert table.get(*crun) == DEFAULT_PRICES.get(*crun)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{provider: toapis, model: gemini_omni, unit: USD, source: s}", "missing date"),
        (
            "{provider: toapis, model: nope, unit: USD, source: s, date: d, per_video: {720p: 1}}",
            "unknown provider/model toapis/nope",
        ),
        (
            "{provider: toapis, model: gemini_omni, unit: USD, source: s, date: d, "
            "per_second: {720p: -1}}",
            "per_second[720p] must be a number >= 0",
        ),
        ("{provider: toapis, model: gemini_omni, prize: 3}", "unknown field(s) prize"),
    ],
)
def test_bad_price_files_name_the_entry_and_field(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(f"prices:\n  - {entry}\n")
    with pytest.raises(ValueError, match="entry #1") as info:
        load_prices(path)
    assert message in str(info.value)


EXT = "Omni-Flash-Ext"


def _metadata(env: PipelineEnv, key: str) -> dict[str, Any]:
    records = env.instance.fetch_materializations(VIDEO_ASSET_KEY, limit=100).records
    (event,) = [r for r in records if r.partition_key == key]
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_videos_carry_estimated_cost_before_and_cost_after(
    tmp_path: Path, fresh_emulator: Any
) -> None:
    prices = tmp_path / "prices.yaml"
    # The emulator's APIMart answers 0.1 USD a second for Omni-Flash-Ext 720p; estimate 0.2.
    prices.write_text(
        "prices:\n  - {provider: apimart, model: Omni-Flash-Ext, unit: USD, source: test, "
        "date: 2026-12-04, per_second: {720p: 0.2}}\n"
    )
    with temporary_env(OMNI_PRICES=str(prices)), pipeline_env(tmp_path, fresh_emulator.url) as env:
        env.write_requests(
            [
                {"id": "p-apimart", "prompt": "a", "provider": "apimart", "model": EXT},
                {"id": "p-crun", "prompt": "b", "provider": "crun", "duration": 6},
                {"id": "p-jimmy", "prompt": "c", "provider": "jimmyai", "duration": 4},
            ],
            duration=4,
        )
        runtime = runtime_from_definitions(env.defs)
        runtime.register(load_requests_file(env.requests_path).requests)
        # Registered, not submitted: the estimate is already there.
        before = {r.key: r for r in env.registry.costs()}
        assert {k: (r.state, r.estimated, r.unit) for k, r in before.items()} == {
            "p-apimart": ("estimated", 0.8, "USD"),
            "p-crun": ("estimated", 30.0, "credits"),
            "p-jimmy": ("estimated", 0.4, "USD"),
        }
        driver = LocalDriver(env.defs, env.instance, env.registry)
        result = driver.drive(timeout_s=120, interval_s=0.3)
        assert {r.state for r in result.records} == {RecordState.MATERIALIZED}
        apimart = _metadata(env, "p-apimart")
        assert (apimart["estimated_cost"], apimart["cost"], apimart["cost_unit"]) == (
            0.8,
            0.4,
            "USD",
        )
        crun = _metadata(env, "p-crun")  # the emulator's CRUN: 5 credits a second at 720p
        assert (crun["estimated_cost"], crun["cost"], crun["cost_unit"]) == (30.0, 30.0, "credits")
        assert crun["cost_usd"] == pytest.approx(0.6)
        jimmy = _metadata(env, "p-jimmy")  # JimmyAI reports no cost: the estimate only
        assert jimmy["estimated_cost"] == 0.4 and "cost" not in jimmy
        assert jimmy["price_is_estimate"] is True
