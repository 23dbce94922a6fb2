"""How often the sensors tick is a deployment setting, read from the environment."""

from __future__ import annotations

import pytest

from omni_assets.definitions import build_definitions
from omni_assets.settings import Settings


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
