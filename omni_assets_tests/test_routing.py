"""``provider: auto``: routing, failover only where nothing was paid, documented create retries
and the hold/resubmit choice for unknown creates — over the emulator, real HTTP."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli import main as cli_main
from omni_assets.cli.driver import LocalDriver
from omni_assets.emulator import EmulatorServer
from omni_assets.pipeline.routing import RoutePolicy, Router, parse_route
from omni_assets.pipeline.submit import submit_pending
from omni_assets.providers import get_provider
from omni_assets.providers.errors import SubmitOutcomeUnknownError
from omni_assets.registry import RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest
from omni_assets.storage import VideoStorage

from .pipeline_env import PipelineEnv, pipeline_env, temporary_env


def _clients(emulator: EmulatorServer, names: tuple[str, ...] = ("crun", "apimart")) -> Any:
    return {
        n: get_provider(n, api_key=f"sk-route-{n}", base_url=emulator.base_url(n)) for n in names
    }


def test_parse_route() -> None:
    assert parse_route(None) == RoutePolicy()
    assert parse_route("apimart, crun cheapest") == RoutePolicy(("apimart", "crun"), "cheapest")
    assert parse_route("fastest") == RoutePolicy(strategy="fastest")
    with pytest.raises(ValueError, match="nobody"):
        parse_route("nobody,crun")


def test_candidates_translate_neutral_fields_into_each_sellers_model(
    fresh_emulator: EmulatorServer,
) -> None:
    providers = _clients(fresh_emulator, ("jimmyai", "apimart", "toapis", "crun"))
    router = Router(providers)
    # 8 s: APIMart's default model takes no duration, its Omni-Flash-Ext does; ToAPIs has no 8 s.
    found, why = router.candidates(VideoRequest(prompt="x", duration=8, provider="auto"))
    assert [(c.provider, c.model) for c in found] == [
        ("jimmyai", "Gemini-Omini"),
        ("apimart", "Omni-Flash-Ext"),
        ("crun", "google/gemini-omni"),
    ]
    assert "duration=8" in why["toapis"]
    # No duration: everyone's default model.
    found, _ = router.candidates(VideoRequest(prompt="x", provider="auto"))
    assert [c.model for c in found] == [
        "Gemini-Omini",
        "gemini-omni-flash-preview",
        "gemini_omni_flash",
        "google/gemini-omni",
    ]


def test_cheapest_and_fastest(fresh_emulator: EmulatorServer) -> None:
    providers = _clients(fresh_emulator, ("jimmyai", "apimart", "toapis", "crun"))
    request = VideoRequest(prompt="x", duration=6, provider="auto")
    cheap = Router(providers, RoutePolicy(strategy="cheapest")).route(request)
    # ToAPIs 0.08/s = 0.48; JimmyAI and Omni-Flash-Ext 0.60; CRUN 30 credits = 0.60; flash 1.00.
    assert cheap is not None and cheap.routed_to == "toapis"
    assert cheap.reason.startswith("cheapest estimate: 0.48 USD")
    measured = {"crun": (40.0, 12), "jimmyai": (90.0, 3)}
    fast = Router(providers, RoutePolicy(strategy="fastest"), measured=lambda: measured)
    route = fast.route(request)
    assert route is not None and route.routed_to == "crun"
    assert route.reason == "fastest measured: median 40 s over 12 videos"
    assert [c.provider for c in route.candidates][:2] == ["crun", "jimmyai"]


def _auto_requests(n: int, prefix: str = "f") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i:02d}", "prompt": f"{prefix} video {i}"} for i in range(n)]


def _drive(env: PipelineEnv) -> Any:
    return LocalDriver(env.defs, env.instance, env.registry).drive(timeout_s=240, interval_s=0.3)


@pytest.mark.parametrize("outage", ["down", "455", "402"])
def test_failover_moves_20_requests_to_the_other_seller_and_pays_once(
    tmp_path: Path, fresh_emulator: EmulatorServer, outage: str
) -> None:
    fresh_emulator.configure(outages={"crun": [{"kind": outage}]})
    with (
        temporary_env(OMNI_ROUTE="crun,apimart"),
        pipeline_env(tmp_path, fresh_emulator.url) as env,
    ):
        env.write_requests(_auto_requests(20), provider="auto")
        result = _drive(env)
        assert {r.state for r in result.records} == {RecordState.MATERIALIZED}
        assert {r.provider for r in result.records} == {"apimart"}
        tasks = fresh_emulator.audit()["tasks"]
        # Every video created exactly once, all on APIMart; CRUN created (and billed) nothing.
        assert Counter(t["provider"] for t in tasks) == {"apimart": 20}
        assert set(Counter(t["prompt"] for t in tasks).values()) == {1}
        routed = env.registry.routes("f-00")
        assert routed[0]["event"] == "routed" and routed[0]["routed_to"] == "crun"
        assert any(r["event"] == "failover" and r["routed_to"] == "apimart" for r in routed)
        records = env.instance.fetch_materializations(VIDEO_ASSET_KEY, limit=100).records
        meta = next(r for r in records if r.partition_key == "f-00").asset_materialization
        assert meta is not None
        assert meta.metadata["routed_to"].value == "apimart"
        assert meta.metadata["provider"].value == "apimart"
        assert meta.metadata["failover_hops"].value[0]["from"] == "crun"


def test_no_failover_after_an_unknown_outcome(
    tmp_path: Path, fresh_emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # CRUN answers its creates with a 500: the task may exist, so the request must not move.
    fresh_emulator.configure(outages={"crun": [{"kind": "500"}]})
    with (
        temporary_env(OMNI_ROUTE="crun,apimart"),
        pipeline_env(tmp_path, fresh_emulator.url) as env,
    ):
        env.write_requests(_auto_requests(3, "u"), provider="auto")
        result = _drive(env)
        assert {(r.state, r.provider) for r in result.records} == {(RecordState.UNKNOWN, "crun")}
        assert fresh_emulator.audit()["counts"]["tasks"] == 0  # APIMart was never asked
        assert not any(r["event"] == "failover" for r in env.registry.routes("u-00"))
        assert cli_main(["status"]) == 0
        out = capsys.readouterr().out
        assert "3 requests wait on your decision" in out and "(crun: hold)" in out
        assert "omni-assets retry --unknown" in out
        assert cli_main(["retry", "--unknown"]) == 0
        assert {r.state for r in env.registry.records()} == {RecordState.PENDING}


def _register(registry: Registry, provider: str, n: int = 1) -> None:
    registry.register(
        RegisterItem.for_request(
            VideoRequest(id=f"r-{i}", prompt=f"retry {i}", duration=6), provider, "-"
        )
        for i in range(n)
    )


def test_toapis_500_on_create_is_retried_as_documented(fresh_emulator: EmulatorServer) -> None:
    client = get_provider("toapis", api_key="sk-t", base_url=fresh_emulator.base_url("toapis"))
    fresh_emulator.configure(outages={"toapis": [{"kind": "500", "count": 2}]})
    ref = client.submit(VideoRequest(prompt="retried", duration=6))
    audit = fresh_emulator.audit()
    assert [f["fault"] for f in audit["faults"]] == ["outage:500", "outage:500"]
    assert audit["counts"]["tasks"] == 1 and audit["tasks"][0]["task_id"] == ref.task_id
    # Persistent: 3 attempts in all ("retry 2-3 times"), then unknown, nothing created.
    fresh_emulator.reset()
    fresh_emulator.configure(outages={"toapis": [{"kind": "500"}]})
    with pytest.raises(SubmitOutcomeUnknownError):
        client.submit(VideoRequest(prompt="persistent", duration=6))
    audit = fresh_emulator.audit()
    assert audit["counts"]["faults"] == 3 and audit["counts"]["tasks"] == 0
    # Where nothing is documented (JimmyAI), a 500 is unknown at once: one attempt.
    fresh_emulator.reset()
    fresh_emulator.configure(outages={"jimmyai": [{"kind": "500", "count": 1}]})
    jimmy = get_provider("jimmyai", api_key="sk-j", base_url=fresh_emulator.base_url("jimmyai"))
    with pytest.raises(SubmitOutcomeUnknownError):
        jimmy.submit(VideoRequest(prompt="undocumented", duration=6))
    assert fresh_emulator.audit()["counts"]["faults"] == 1


def test_resubmit_choice_for_unknown_creates_is_bounded(
    tmp_path: Path, fresh_emulator: EmulatorServer
) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    _register(registry, "jimmyai", 2)
    providers = _clients(fresh_emulator, ("jimmyai",))
    storage = VideoStorage(str(tmp_path / "s"))
    fresh_emulator.configure(outages={"jimmyai": [{"kind": "500", "count": 1}]})
    held = submit_pending(registry, providers, storage, keys=["r-0"])
    assert list(held.unknown) == ["r-0"]  # hold: the default
    chosen = {"jimmyai": "resubmit"}
    fresh_emulator.configure(outages={"jimmyai": [{"kind": "500", "count": 1}]})
    report = submit_pending(registry, providers, storage, keys=["r-1"], on_unknown=chosen)
    assert list(report.resubmitted) == ["r-1"]
    again = submit_pending(registry, providers, storage, keys=["r-1"], on_unknown=chosen)
    assert again.submitted == ["r-1"]
    assert registry.get("r-1").attempt == 2  # type: ignore[union-attr]
    # Bounded: a seller that always answers 500 is resubmitted at most 3 times.
    fresh_emulator.configure(outages={"jimmyai": [{"kind": "500"}]})
    registry.register(
        [
            RegisterItem.for_request(
                VideoRequest(id="r-9", prompt="always", duration=6), "jimmyai", "-"
            )
        ]
    )
    for _ in range(6):
        submit_pending(registry, providers, storage, keys=["r-9"], on_unknown=chosen)
    record = registry.get("r-9")
    assert record is not None and record.state is RecordState.UNKNOWN and record.attempt == 4


def test_failover_after_a_failure_the_seller_did_not_charge(
    tmp_path: Path, fresh_emulator: EmulatorServer
) -> None:
    from omni_assets.pipeline.failover import fail_over_unpaid_failures
    from omni_assets.pipeline.poll import poll_in_flight
    from omni_assets.pipeline.runtime import OmniRuntime
    from omni_assets.providers.polling import PollPolicy

    registry = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    providers = _clients(fresh_emulator, ("apimart", "crun"))
    runtime = OmniRuntime(
        registry,
        VideoStorage(str(tmp_path / "s")),
        providers,
        "auto",
        route=RoutePolicy(("apimart", "crun")),
    )
    runtime.register([VideoRequest(id="x-1", prompt="uncharged", provider="auto")])
    fresh_emulator.configure(rate_task_failed=1.0)  # decided at creation: this task will fail
    first = submit_pending(registry, providers, runtime.storage, router=runtime.router)
    assert first.submitted == ["x-1"] and registry.get("x-1").provider == "apimart"  # type: ignore[union-attr]
    fresh_emulator.configure(rate_task_failed=0.0)

    fast = {name: PollPolicy(interval_s=0.2) for name in providers}

    def settle() -> None:
        deadline = time.monotonic() + 30
        while registry.counts()[RecordState.IN_FLIGHT] and time.monotonic() < deadline:
            poll_in_flight(registry, providers, policies=fast)
            time.sleep(0.1)

    settle()
    record = registry.get("x-1")
    assert record is not None and record.state is RecordState.FAILED
    failure = (record.error or {}).get("message", "")
    assert "content policy" not in failure, failure  # seed 1: a generic upstream failure
    # APIMart reported cost 0 for the failed task: moving on cannot pay twice.
    assert fail_over_unpaid_failures(registry, runtime.router, ["x-1"]) == {"x-1": "apimart->crun"}
    again = submit_pending(registry, providers, runtime.storage, router=runtime.router)
    assert again.submitted == ["x-1"]
    settle()
    record = registry.get("x-1")
    assert record is not None and record.state is RecordState.READY and record.provider == "crun"
    tasks = fresh_emulator.audit()["tasks"]
    assert [t["provider"] for t in tasks] == ["apimart", "crun"]
    paid = [c for c in registry.costs() if c.spent_usd > 0]
    assert [(c.provider, c.attempt) for c in paid] == [("crun", 2)]
    # Only failed requests move: this one is done.
    assert fail_over_unpaid_failures(registry, runtime.router, ["x-1"]) == {}


def test_omni_provider_auto_with_real_keys_through_omni_assets_run(
    tmp_path: Path, fresh_emulator: EmulatorServer
) -> None:
    """``OMNI_PROVIDER=auto`` outside emulator mode: the sellers are those with a key."""
    import os
    import subprocess
    import sys

    import yaml

    requests = tmp_path / "requests.yaml"
    requests.write_text(
        yaml.safe_dump({"requests": [{"id": f"cli-{i}", "prompt": f"cli {i}"} for i in range(3)]})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNI_") and "_API_KEY" not in k}
    env.update(
        {
            "DAGSTER_HOME": str(tmp_path / "home"),
            "OMNI_PROVIDER": "auto",
            "OMNI_ROUTE": "crun,toapis cheapest",
            "OMNI_STORAGE_URL": str(tmp_path / "storage"),
            "OMNI_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
            "TOAPIS_API_KEY": "sk-cli-toapis",
            "TOAPIS_BASE_URL": fresh_emulator.base_url("toapis"),
            "CRUN_API_KEY": "sk-cli-crun",
            "CRUN_BASE_URL": fresh_emulator.base_url("crun"),
            "OMNI_POLL_SENSOR_INTERVAL_S": "1",
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "omni_assets.cli", "run", str(requests), "--timeout", "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Defaults: ToAPIs 6 s at 0.08/s = 0.48 USD, CRUN 4 s at 5 credits/s = 0.40 USD: CRUN wins,
    # and the table shows its reported cost in credits.
    rows = [ln.split() for ln in done.stdout.splitlines() if ln.startswith("cli-")]
    assert [r[1] for r in rows] == ["crun"] * 3, done.stdout
    assert all("credits" in r for r in rows)
    assert "total: 1.20 USD (3 reported by the provider, 0 at our estimate)" in done.stdout
    assert {t["provider"] for t in fresh_emulator.audit()["tasks"]} == {"crun"}
