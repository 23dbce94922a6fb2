"""Provider faults: 200 requests over the four dialects through the real sensors and jobs.

The emulator (its own process) answers 10% of calls with a 5xx, 5% with a 429 and Retry-After,
drops 20% of downloads part-way, hands out expired URLs, fails tasks, sends undocumented status
words, CRUN maintenance (455) and documented quirky shapes; :class:`LocalDriver` evaluates
``omni_requests_sensor`` and ``omni_poll_sensor`` and executes the runs they ask for, exactly as
``omni-assets run`` does. Afterwards, from the emulator's audit and the registry: nothing lost,
nothing created twice, every failure carries the provider's reason, all within a stated bound.
A second test covers 402 (no balance): nothing is created, nothing is failed, and the requests
go ahead once the account is topped up (a new key).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, Definitions, instance_for_test

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli.driver import LocalDriver
from omni_assets.definitions import build_definitions
from omni_assets.emulator.tasks import POLICY_MESSAGE
from omni_assets.registry import RecordState, Registry
from omni_assets.resources import (
    PROVIDER_RESOURCES,
    OmniRegistryResource,
    OmniStorageResource,
    ProviderResource,
)
from omni_assets.settings import Settings

from ..pipeline_env import DEMO_DIR
from .harness import EmulatorProcess, final_path_problems, record_figures, tasks_by_prompt

pytestmark = pytest.mark.reliability

REQUESTS = 200
BOUND_S = 420.0  # the stated bound for the whole faulty run (typically ~2 minutes)
FAULTS = {
    "rate_5xx": 0.10,
    "rate_429": 0.05,
    "rate_drop_download": 0.20,
    "rate_expired_url": 0.10,
    "rate_task_failed": 0.05,
    "rate_unknown_status": 0.05,
    "rate_crun_maintenance": 0.05,
    "rate_quirks": 0.10,
}
REASONS = (
    POLICY_MESSAGE,
    "Upstream generation timed out",
    "Upstream quota exhausted, please try again later",
)


@pytest.fixture(scope="module")
def faulty_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    log_dir = tmp_path_factory.mktemp("faulty-emulator")
    with EmulatorProcess(
        log_dir, generation_seconds=0.5, seed=11, retry_after_seconds=1, **FAULTS
    ) as emulator:
        yield emulator


def provider_resources(emulator: EmulatorProcess, keys: dict[str, str]) -> dict[str, Any]:
    return {
        name: cls(
            api_key=keys.get(name, "sk-faults"),
            base_url=f"{emulator.url}/{name}",
            poll_interval_s=0.5,
            deadline_s=300.0,
            max_in_flight=40,
            rate_limit_per_s=20.0,
        )
        for name, cls in PROVIDER_RESOURCES.items()
    }


def make_defs(
    root: Path, providers: dict[str, ProviderResource], requests_path: Path
) -> Definitions:
    return build_definitions(
        settings=Settings.from_env(),
        providers=providers,
        storage=OmniStorageResource(url=str(root / "storage")),
        registry=OmniRegistryResource(url=f"sqlite:///{root / 'registry.db'}"),
        requests_path=str(requests_path),
        poll_interval_s=1,
    )


def many_requests(count: int, image: str) -> list[dict[str, Any]]:
    """``count`` distinct requests over the four dialects: text, images, and extension chains."""
    shapes: list[dict[str, Any]] = [
        {"provider": "apimart", "model": "Omni-Flash-Ext", "duration": 4},
        {"provider": "jimmyai", "duration": 4, "images": [image], "mode": "frame"},
        {"provider": "toapis", "model": "gemini_omni_flash", "duration": 4},
        {"provider": "crun", "duration": 4, "aspect_ratio": "9:16"},
        {"provider": "apimart", "model": "gemini-omni-flash-preview", "images": [image]},
        {"provider": "jimmyai", "duration": 6},
        {"provider": "toapis", "model": "gemini_omni_flash", "duration": 6, "images": [image]},
        {"provider": "crun", "duration": 6},
    ]
    out = []
    for i in range(count):
        request = {"id": f"r{i:03d}", "prompt": f"faults {i:03d}: a scene", **shapes[i % 8]}
        if i % 16 == 12:  # APIMart extends an earlier preview video by its task id
            request = {**request, "extends": f"r{i - 8:03d}"}
            request.pop("images")
        out.append(request)
    return out


def _observed_reasons(instance: DagsterInstance) -> dict[str, str]:
    records = instance.fetch_observations(VIDEO_ASSET_KEY, limit=10_000).records
    out = {}
    for record in records:
        observation = record.asset_observation
        if observation is not None and observation.partition:
            out[observation.partition] = str(observation.metadata["reason"].value)
    return out


def test_two_hundred_requests_under_provider_faults(
    faulty_emulator: EmulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    monkeypatch.setenv("OMNI_PROVIDER", "emulator")
    (tmp_path / "product.png").write_bytes((DEMO_DIR / "product.png").read_bytes())
    requests = many_requests(REQUESTS, "product.png")
    requests_path = tmp_path / "requests.yaml"
    requests_path.write_text(yaml.safe_dump({"requests": requests}))
    defs = make_defs(tmp_path, provider_resources(faulty_emulator, {}), requests_path)
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    started = time.monotonic()
    (tmp_path / "dagster_home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        driver = LocalDriver(defs, instance, registry, run_log_level="ERROR")
        result = driver.drive(timeout_s=BOUND_S, interval_s=0.5)
        seconds = time.monotonic() - started
        observed = _observed_reasons(instance)
    audit = faulty_emulator.audit()
    registry.close()

    assert not result.timed_out, Counter(r.state.value for r in result.records)
    by_prompt = tasks_by_prompt(audit)
    failing = {t["prompt"] for t in audit["tasks"] if t["fails"]}
    states = Counter(r.state.value for r in result.records)
    problems: list[str] = []
    for record in result.records:
        prompt = record.request["prompt"]
        created = by_prompt.get(prompt, 0)
        error = record.error or {}
        if created > 1:
            problems.append(f"{record.key}: created {created} times")
        if record.state is RecordState.MATERIALIZED:
            continue
        if record.state is RecordState.FAILED:
            reason = str(error.get("message"))
            if prompt in failing:  # the provider failed the task: its reason is shown
                if not any(r in reason for r in REASONS):
                    problems.append(f"{record.key}: failed without the provider's reason: {error}")
                if observed.get(record.key) != reason:
                    problems.append(f"{record.key}: no observation with the reason in Dagster")
            elif "parent" not in reason:  # a child whose parent failed is failed too
                problems.append(f"{record.key}: failed though its task did not: {error}")
        elif record.state is RecordState.UNKNOWN:
            if record.provider == "apimart" or "may or may not" not in str(error.get("message")):
                problems.append(f"{record.key}: unknown without cause: {error}")
        else:
            problems.append(f"{record.key}: ended {record.state.value}")
        if created and prompt not in failing and record.state is not RecordState.UNKNOWN:
            problems.append(f"{record.key}: LOST: a task succeeded but no video ({error})")
    problems += final_path_problems(tmp_path / "storage" / "videos")[0]
    faults = Counter(f["fault"].split(":")[0] for f in audit["faults"])
    record_figures(
        "provider_faults",
        requests=REQUESTS,
        fault_rates=FAULTS,
        faults_injected=sum(faults.values()),
        faults_by_kind=dict(sorted(faults.items())),
        tasks_created=audit["counts"]["tasks"],
        downloads=audit["counts"]["downloads"],
        materialized=states["materialized"],
        failed_by_provider=sum(1 for r in result.records if r.request["prompt"] in failing),
        failed_after_parent=sum(
            1 for r in result.records if "parent" in str((r.error or {}).get("message"))
        ),
        unknown=states["unknown"],
        unknown_with_a_task=sum(
            by_prompt.get(r.request["prompt"], 0)
            for r in result.records
            if r.state is RecordState.UNKNOWN
        ),
        tasks_failed_at_provider=sum(1 for t in audit["tasks"] if t["fails"]),
        duplicated=sum(max(0, n - 1) for n in by_prompt.values()),
        lost=sum(1 for p in problems if "LOST" in p),
        runs=result.runs,
        callbacks=audit["counts"]["callbacks"],
        wall_s=round(seconds, 1),
        bound_s=BOUND_S,
    )
    assert not problems, "\n".join(problems)
    assert audit["counts"]["callbacks"] == 0  # we poll; CRUN is never given a callback_url
    assert seconds < BOUND_S
    assert states["materialized"] >= REQUESTS * 0.75, states


def test_no_balance_blocks_submission_without_losing_anything(
    faulty_emulator: EmulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    monkeypatch.setenv("OMNI_PROVIDER", "emulator")
    faulty_emulator.configure(**dict.fromkeys(FAULTS, 0.0))
    requests = [
        {"id": f"broke-{i}", "prompt": f"no balance {i}", "provider": "toapis", "duration": 6}
        for i in range(3)
    ]
    requests_path = tmp_path / "requests.yaml"
    requests_path.write_text(yaml.safe_dump({"requests": requests}))
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    broke = provider_resources(faulty_emulator, {"toapis": "nobalance-account"})
    try:
        (tmp_path / "dagster_home").mkdir()
        with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
            driver = LocalDriver(make_defs(tmp_path, broke, requests_path), instance, registry)
            # A one-shot drive stops on the refusal; the daemon's sensors would keep the
            # requests for a later tick (a top-up), which the second drive stands for.
            stalled = driver.drive(timeout_s=60.0, interval_s=0.5)
            assert not stalled.timed_out
            assert list(stalled.refused) == ["toapis"]
            assert "InsufficientBalanceError" in stalled.refused["toapis"]
            assert {r.state for r in stalled.records} == {RecordState.PENDING}
            # The first refused request carries the reason; the others were not even tried.
            reasons = [str(r.error) for r in stalled.records if r.error]
            assert reasons and all("insufficient balance" in r for r in reasons), reasons
            assert not [t for t in faulty_emulator.audit()["tasks"] if "no balance" in t["prompt"]]
            topped_up = provider_resources(faulty_emulator, {"toapis": "sk-topped-up"})
            driver = LocalDriver(make_defs(tmp_path, topped_up, requests_path), instance, registry)
            done = driver.drive(timeout_s=60.0, interval_s=0.5)
    finally:
        faulty_emulator.configure(**FAULTS)
        registry.close()
    assert done.ok, [(r.key, r.state.value, r.error) for r in done.records]
    created = [t for t in faulty_emulator.audit()["tasks"] if "no balance" in t["prompt"]]
    assert len(created) == 3
    record_figures("insufficient_balance", requests=3, created_while_broke=0, after_top_up=3)
