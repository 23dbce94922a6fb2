"""How often the sensors tick, and how long a tick may poll, are deployment settings."""

from __future__ import annotations

import pytest
from dagster import DefaultSensorStatus

from omni_assets.definitions import build_definitions
from omni_assets.jobs import build_jobs
from omni_assets.lineage_assets import lineage_sensor
from omni_assets.sensors import build_poll_sensor, build_requests_sensor, tick_budget_s
from omni_assets.settings import Settings

STOPPED = DefaultSensorStatus.STOPPED


def test_sensor_intervals_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNI_PROVIDER", "emulator")
    monkeypatch.setenv("OMNI_REQUESTS_SENSOR_INTERVAL_S", "5")
    monkeypatch.setenv("OMNI_POLL_SENSOR_INTERVAL_S", "7")
    defs = build_definitions(settings=Settings.from_env())
    assert defs.resolve_sensor_def("omni_requests_sensor").minimum_interval_seconds == 5
    assert defs.resolve_sensor_def("omni_poll_sensor").minimum_interval_seconds == 7


def test_sensor_intervals_default_to_30_and_15_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNI_REQUESTS_SENSOR_INTERVAL_S", raising=False)
    monkeypatch.delenv("OMNI_POLL_SENSOR_INTERVAL_S", raising=False)
    settings = Settings.from_env()
    assert (settings.requests_sensor_interval_s, settings.poll_sensor_interval_s) == (30, 15)


def test_the_poll_budget_follows_the_sensor_tick_timeout() -> None:
    assert tick_budget_s({}) == 40  # Dagster's default tick timeout is 60 s
    assert tick_budget_s({"DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS": "180"}) == 160
    assert tick_budget_s({"DAGSTER_GRPC_TIMEOUT_SECONDS": "90"}) == 70
    assert tick_budget_s({"DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS": "20"}) == 10  # half, at least


def test_sensor_builders_take_a_name_and_a_default_status() -> None:
    jobs = build_jobs(["apimart"], None)
    built = [
        build_requests_sensor(["apimart"], jobs[0], name="a", default_status=STOPPED),
        build_poll_sensor(["apimart"], *jobs, name="b", default_status=STOPPED),
        lineage_sensor(name="c", default_status=STOPPED),
    ]
    assert [(s.name, s.default_status) for s in built] == [(n, STOPPED) for n in "abc"]
