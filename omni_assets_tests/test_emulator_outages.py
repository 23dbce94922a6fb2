"""Outage windows per dialect (down, 402, 455) and the prices each dialect reports."""

from __future__ import annotations

import time

import pytest

from omni_assets.emulator import EmulatorConfig, EmulatorServer

from .test_emulator_support import create, query, run_task, task_id_of


def test_down_answers_every_call_with_a_503_and_creates_nothing(
    fresh_emulator: EmulatorServer,
) -> None:
    task_id = task_id_of("apimart", create(fresh_emulator, "apimart").json())
    fresh_emulator.configure(outages={"apimart": [{"kind": "down"}]})
    refused = create(fresh_emulator, "apimart")
    assert refused.status_code == 503 and refused.headers["content-type"].startswith("text/html")
    assert query(fresh_emulator, "apimart", task_id).status_code == 503
    # Only that dialect is down.
    assert create(fresh_emulator, "toapis").status_code == 200
    assert fresh_emulator.audit()["counts"]["tasks"] == 2


def test_402_refuses_creates_only_and_455_is_crun_maintenance(
    fresh_emulator: EmulatorServer,
) -> None:
    task_id = task_id_of("jimmyai", create(fresh_emulator, "jimmyai").json())
    fresh_emulator.configure(
        outages={"jimmyai": [{"kind": "402"}], "crun": {"kind": "455", "start": 0, "end": None}}
    )
    assert create(fresh_emulator, "jimmyai").status_code == 402
    assert query(fresh_emulator, "jimmyai", task_id).status_code == 200  # status still answers
    crun = create(fresh_emulator, "crun")
    assert crun.status_code == 455 and crun.json()["code"] == 455
    assert fresh_emulator.audit()["counts"]["tasks"] == 1


def test_windows_open_and_close_on_the_clock(fresh_emulator: EmulatorServer) -> None:
    now = time.time()
    fresh_emulator.configure(
        outages={"toapis": [{"kind": "down", "start": now + 0.5, "end": now + 1.0}]}
    )
    assert create(fresh_emulator, "toapis").status_code == 200
    time.sleep(max(0.0, now + 0.6 - time.time()))
    assert create(fresh_emulator, "toapis").status_code == 503
    time.sleep(max(0.0, now + 1.1 - time.time()))
    assert create(fresh_emulator, "toapis").status_code == 200


@pytest.mark.parametrize(
    "outages",
    [
        {"apimart": [{"kind": "455"}]},  # 455 is CRUN's code only
        {"nobody": [{"kind": "down"}]},
        {"crun": [{"kind": "flood"}]},
        {"crun": [{"kind": "down", "until": 3}]},
    ],
)
def test_bad_outage_windows_are_refused(outages: object) -> None:
    with pytest.raises(ValueError, match="outages"):
        EmulatorConfig(outages=outages)  # type: ignore[arg-type]


def test_prices_are_reported_where_the_provider_reports_them(
    fresh_emulator: EmulatorServer,
) -> None:
    apimart, _ = run_task(fresh_emulator, "apimart")
    assert apimart["cost"] > 0 and apimart["credits_cost"] == round(apimart["cost"] * 10)
    crun, _ = run_task(fresh_emulator, "crun")
    assert crun["credits"] > 0
    for provider in ("jimmyai", "toapis"):  # neither documents a cost field
        data, _ = run_task(fresh_emulator, provider)
        assert not {"cost", "credits", "credits_cost"} & set(data)
