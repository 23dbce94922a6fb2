"""Budgets (OMNI_BUDGET): reserved with the submit intent, held by two submitter processes at once,
visible in ``status``, and settled with the cost the provider reports."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli import main as cli_main
from omni_assets.cli.driver import LocalDriver
from omni_assets.pipeline.budget import Budget, SpendPolicy, parse_budget
from omni_assets.pipeline.poll import poll_in_flight
from omni_assets.pipeline.submit import SubmitLimits, submit_pending
from omni_assets.providers import get_provider
from omni_assets.providers.polling import PollPolicy
from omni_assets.providers.prices import DEFAULT_PRICES, Price, PriceTable
from omni_assets.registry import RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest
from omni_assets.storage import VideoStorage

from .pipeline_env import pipeline_env, temporary_env
from .servers import PostgresServer

MODEL = "Omni-Flash-Ext"
# Our estimate is 0.5 USD a second; the emulator's APIMart reports 0.1 a second at 720p, so
# settling with the reported cost gives budget back.
PRICES = DEFAULT_PRICES.with_overrides(
    [Price("apimart", MODEL, "USD", "test", "2026-12-04", per_second={"720p": 0.5})]
)
ESTIMATE = 2.0  # 4 s x 0.5
N = 4


def _requests(count: int) -> list[VideoRequest]:
    return [VideoRequest(id=f"b-{i:02d}", prompt=f"budget {i}", duration=4) for i in range(count)]


def _register(registry: Registry, requests: list[VideoRequest], spend: SpendPolicy) -> None:
    registry.register(
        RegisterItem.for_request(r, "apimart", MODEL, spend.charge(r, "apimart", MODEL))
        for r in requests
    )


def _client(base_url: str) -> Any:
    return get_provider("apimart", api_key="sk-budget", base_url=base_url, model=MODEL)


def _submit(
    registry_url: str, base_url: str, storage: str, budget: str, barrier: Any, keys: list[str]
) -> int:
    """One submitter process: waits for the other, then submits what it can of ``keys``."""
    registry = Registry(registry_url)
    spend = SpendPolicy(PRICES, parse_budget(budget), run=None)
    barrier.wait(timeout=60)
    report = submit_pending(
        registry,
        {"apimart": _client(base_url)},
        VideoStorage(storage),
        limits={"apimart": SubmitLimits(max_in_flight=100, rate_per_s=1000)},
        spend=spend,
        keys=keys,
    )
    registry.close()
    return len(report.submitted)


def test_budget_parsing() -> None:
    budget = parse_budget("day=12.50, run=5, team=3, team.ml=8")
    assert budget == Budget(per_day=12.5, per_run=5.0, per_tag={"team": {"*": 3.0, "ml": 8.0}})
    assert parse_budget('{"day": 12.5, "tags": {"team": {"*": 3}}}') == Budget(
        per_day=12.5, per_tag={"team": {"*": 3.0}}
    )
    assert parse_budget(None) is None and parse_budget(" ") is None
    with pytest.raises(ValueError, match="day must be an amount in USD"):
        parse_budget("day=lots")
    with pytest.raises(ValueError, match="unknown key"):
        parse_budget('{"week": 3}')


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"b_{uuid.uuid4().hex[:16]}")


def test_two_submitter_processes_stop_at_exactly_n(
    tmp_path: Path, fresh_emulator: Any, registry_url: str
) -> None:
    url = registry_url
    budget = f"day={N * ESTIMATE}"
    registry = Registry(url)
    _register(registry, _requests(10), SpendPolicy(PRICES))
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        barrier = manager.Barrier(2)
        args = (url, fresh_emulator.base_url("apimart"), str(tmp_path / "s"), budget, barrier)
        # Each process its own half of the keys: they book at the same time, never the same key.
        halves = [[f"b-{i:02d}" for i in range(10) if i % 2 == p] for p in (0, 1)]
        counts = [f.result(timeout=120) for f in [pool.submit(_submit, *args, h) for h in halves]]
    assert sum(counts) == N, counts
    states = [r.state for r in registry.records()]
    assert states.count(RecordState.IN_FLIGHT) == N
    assert states.count(RecordState.PENDING) == 10 - N
    # The emulator created exactly N tasks: nothing over budget was paid for.
    assert fresh_emulator.audit()["counts"]["tasks"] == N
    booked = sum(r.spent_usd for r in registry.costs())
    assert booked == pytest.approx(N * ESTIMATE)
    waiting = [r for r in registry.records() if r.state is RecordState.PENDING]
    assert all((r.error or {}).get("error") == "BudgetExceeded" for r in waiting)
    assert waiting[0].error is not None
    assert waiting[0].error["message"].startswith("budget: 8.00 of 8.00 USD spent today")


def test_waiting_reason_in_status_and_settled_with_the_reported_cost(
    tmp_path: Path, fresh_emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    spend = SpendPolicy(PRICES, Budget(per_day=N * ESTIMATE))
    registry = Registry(url)
    _register(registry, _requests(10), spend)
    providers = {"apimart": _client(fresh_emulator.base_url("apimart"))}
    storage = VideoStorage(str(tmp_path / "s"))
    first = submit_pending(registry, providers, storage, spend=spend)
    assert len(first.submitted) == N and len(first.over_budget) == 10 - N
    with temporary_env(OMNI_REGISTRY_URL=url, OMNI_STORAGE_URL=str(tmp_path / "s")):
        assert cli_main(["status"]) == 0
    out = capsys.readouterr().out
    assert "budget: 8.00 of 8.00 USD spent today" in out
    # The tasks finish; the emulator reports 0.4 USD each, so 1.6 of 8.0 is spent.
    time.sleep(0.5)
    deadline = time.monotonic() + 30
    while registry.counts()[RecordState.IN_FLIGHT] and time.monotonic() < deadline:
        poll_in_flight(registry, providers, policies={"apimart": PollPolicy(interval_s=0.2)})
        time.sleep(0.1)
    settled = [r for r in registry.costs() if r.state == "charged"]
    assert [(r.actual, r.actual_usd) for r in settled] == [(0.4, 0.4)] * N
    # (8.0 - 1.6) / 2.0: three more fit.
    second = submit_pending(registry, providers, storage, spend=spend)
    assert len(second.submitted) == 3
    assert fresh_emulator.audit()["counts"]["tasks"] == N + 3


def test_tag_and_run_limits(tmp_path: Path, fresh_emulator: Any) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    requests = [
        VideoRequest(id=f"t-{team}-{i}", prompt=f"{team} {i}", duration=4, tags={"team": team})
        for team in ("ml", "ads")
        for i in range(3)
    ]
    budget = Budget(per_run=10.0, per_tag={"team": {"*": ESTIMATE, "ml": 2 * ESTIMATE}})
    _register(registry, requests, SpendPolicy(PRICES))
    providers = {"apimart": _client(fresh_emulator.base_url("apimart"))}
    storage = VideoStorage(str(tmp_path / "s"))
    report = submit_pending(
        registry, providers, storage, spend=SpendPolicy(PRICES, budget, run="run-1")
    )
    assert sorted(report.submitted) == ["t-ads-0", "t-ml-0", "t-ml-1"]
    assert "today by team=ads" in report.over_budget["t-ads-1"]
    # A run limit: a new run gets its own; the day (no day limit here) does not stop it.
    small = Budget(per_run=ESTIMATE)
    more = [VideoRequest(id=f"r-{i}", prompt=f"run {i}", duration=4) for i in range(3)]
    _register(registry, more, SpendPolicy(PRICES))
    one = submit_pending(
        registry,
        providers,
        storage,
        spend=SpendPolicy(PRICES, small, run="run-2"),
        keys=["r-0", "r-1"],
    )
    assert one.submitted == ["r-0"] and "in run run-2" in one.over_budget["r-1"]
    other = submit_pending(
        registry, providers, storage, spend=SpendPolicy(PRICES, small, run="run-3"), keys=["r-1"]
    )
    assert other.submitted == ["r-1"]


def test_nothing_created_gives_the_reservation_back(tmp_path: Path, fresh_emulator: Any) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    spend = SpendPolicy(PRICES, Budget(per_day=ESTIMATE))
    _register(registry, _requests(2), spend)
    fresh_emulator.configure(rate_429=1.0)  # refused before any work: nothing created
    client = get_provider(
        "apimart", api_key="sk-budget", base_url=fresh_emulator.base_url("apimart"), model=MODEL
    )
    storage = VideoStorage(str(tmp_path / "s"))
    report = submit_pending(registry, {"apimart": client}, storage, spend=spend)
    assert not report.submitted
    assert {r.state for r in registry.costs()} <= {"released", "estimated"}
    fresh_emulator.configure(rate_429=0.0)
    again = submit_pending(registry, {"apimart": client}, storage, spend=spend)
    assert len(again.submitted) == 1  # the whole day's budget was free again


def test_the_partition_says_why_it_waits(tmp_path: Path, fresh_emulator: Any) -> None:
    # APIMart's flash preview: 1.00 USD per video (seed 001); a day of 2.00 admits two.
    with (
        temporary_env(OMNI_BUDGET="day=2"),
        pipeline_env(tmp_path, fresh_emulator.url) as env,
    ):
        env.write_requests(
            [{"id": f"u-{i}", "prompt": f"ui {i}", "provider": "apimart"} for i in range(3)]
        )
        driver = LocalDriver(env.defs, env.instance, env.registry)
        driver.tick("omni_requests_sensor")  # registers and launches omni_submit
        states = {r.key: r.state for r in env.registry.records()}
        assert sorted(states.values()) == [RecordState.IN_FLIGHT] * 2 + [RecordState.PENDING]
        (waiting,) = [k for k, s in states.items() if s is RecordState.PENDING]
        records = env.instance.fetch_observations(VIDEO_ASSET_KEY, limit=10).records
        seen = [r.asset_observation for r in records if r.partition_key == waiting]
        assert seen and seen[0] is not None
        assert seen[0].metadata["waiting"].value.startswith("budget: 2.00 of 2.00 USD spent today")
        # The submit run of this drive books to the drive's own budget run.
        (run,) = [r for r in env.instance.get_runs() if r.job_name == "omni_submit"]
        assert run.tags["omni/budget_run"] == driver.budget_run
        assert {c.run for c in env.registry.costs() if c.state == "reserved"} == {driver.budget_run}
        # A drive does not wait out its timeout on a budget that cannot move: it stops, saying so.
        result = driver.drive(timeout_s=120, interval_s=0.3)
        assert not result.timed_out and list(result.over_budget) == [waiting]
        assert sum(r.state is RecordState.MATERIALIZED for r in result.records) == 2


def test_an_unpriced_model_waits_under_a_budget(tmp_path: Path, fresh_emulator: Any) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    unpriced = PriceTable([p for p in PRICES if p.model != MODEL])
    _register(registry, _requests(1), SpendPolicy(unpriced))
    providers = {"apimart": _client(fresh_emulator.base_url("apimart"))}
    storage = VideoStorage(str(tmp_path / "s"))
    held = submit_pending(registry, providers, storage, spend=SpendPolicy(unpriced, Budget(50)))
    assert not held.submitted and "has no price" in held.over_budget["b-00"]
    record = registry.get("b-00")
    assert record is not None and "OMNI_PRICES" in (record.error or {})["message"]
    assert fresh_emulator.audit()["counts"]["tasks"] == 0
    # Without a budget there is nothing to hold it to.
    assert submit_pending(registry, providers, storage, spend=SpendPolicy(unpriced)).submitted
