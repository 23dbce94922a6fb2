"""``omni-assets run`` refuses a missing provider or key before anything is sent (issue 13, 5-6).

Run as a user runs it (a subprocess) with an environment that holds no ``OMNI_*`` and no key, as a
forgotten variable in a cron job would leave it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from omni_assets.settings import ProviderNotConfigured, Settings

PROVIDERS = ("jimmyai", "apimart", "toapis", "crun", "google")
KEY_VARIABLES = (
    "JIMMYAI_API_KEY",
    "APIMART_API_KEY",
    "TOAPIS_API_KEY",
    "CRUN_API_KEY",
    "GEMINI_API_KEY",
)


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """PATH and HOME only (no OMNI_*, no keys), plus ``extra``."""
    kept = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return {**kept, "DAGSTER_HOME": str(tmp_path / "home"), **extra}


def _run(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    requests = tmp_path / "requests.yaml"
    requests.write_text(yaml.safe_dump({"requests": [{"id": "boat", "prompt": "a boat"}]}))
    return subprocess.run(
        [sys.executable, "-m", "omni_assets.cli", "run", str(requests), "--timeout", "20"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_provider_is_an_error_naming_every_provider_and_variable(tmp_path: Path) -> None:
    done = _run(tmp_path, _bare_env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "OMNI_PROVIDER" in done.stderr
    for word in (*PROVIDERS, *KEY_VARIABLES, "OMNI_PROVIDER=emulator"):
        assert word in done.stderr, word
    # Nothing was registered, stored or sent: no registry, no storage.
    assert not (tmp_path / ".omni").exists()
    assert not (tmp_path / "home" / "omni_registry.db").exists()


def test_settings_never_imply_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNI_PROVIDER", raising=False)
    settings = Settings.from_env()
    assert not settings.emulated
    with pytest.raises(ProviderNotConfigured):
        settings.configured_providers()


@pytest.mark.parametrize(
    ("provider", "variable"),
    [("apimart", "APIMART_API_KEY"), ("google", "GEMINI_API_KEY or GOOGLE_API_KEY")],
)
def test_missing_key_names_variable_and_provider(
    tmp_path: Path, provider: str, variable: str
) -> None:
    done = _run(tmp_path, _bare_env(tmp_path, OMNI_PROVIDER=provider))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert variable in done.stderr and provider in done.stderr
    assert not (tmp_path / ".omni").exists()


def test_missing_key_through_the_resource_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A code location with a provider resource whose variable is unset: the error names it."""
    from omni_assets.resources import provider_resource
    from omni_assets.settings import MissingProviderKey

    monkeypatch.delenv("CRUN_API_KEY", raising=False)
    with pytest.raises(MissingProviderKey, match="CRUN_API_KEY"):
        provider_resource("crun").get_client()


def test_emulator_videos_say_so(tmp_path: Path, fresh_emulator: Any) -> None:
    """Asked for, the emulator is announced, and its videos are marked in the table and sidecar."""
    env = _bare_env(
        tmp_path,
        OMNI_PROVIDER="emulator",
        OMNI_EMULATOR_URL=fresh_emulator.url,
        OMNI_STORAGE_URL=str(tmp_path / "storage"),
        OMNI_POLL_SENSOR_INTERVAL_S="1",
    )
    requests = tmp_path / "requests.yaml"
    done = _run(tmp_path, env)
    assert requests.exists()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "provider: emulator" in done.stdout and "fake videos" in done.stdout
    assert "apimart (emulator)" in done.stdout
    sidecar = yaml.safe_load((tmp_path / "storage" / "videos" / "boat.json").read_text())
    assert sidecar["emulated"] is True
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        event = instance.get_latest_materialization_event(AssetKey("omni_video"))
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.metadata["emulated"].value is True
    # issue 13 finding 9: the instance run made has telemetry and the community pop-up off...
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert not instance.telemetry_enabled and not instance.nux_enabled
        # ...and its runs are the default location's, with a start and an end: what the
        # Overview timeline needs to draw them (it leaves out runs without a repository origin).
        # (omni_lineage's own materialization at the end is an ad hoc asset run.)
        records = [
            r for r in instance.get_run_records() if r.dagster_run.job_name.startswith("omni_")
        ]
        assert {r.dagster_run.job_name for r in records} == {"omni_submit", "omni_materialize"}
        for record in records:
            origin = record.dagster_run.remote_job_origin
            assert origin is not None, record.dagster_run.job_name
            assert origin.location_name == "omni_assets.location"
            assert origin.repository_origin.repository_name == "__repository__"
            assert record.start_time and record.end_time and record.end_time >= record.start_time
    # ...the first run says what it registered, and an idle poll tick says nothing.
    assert "1 valid, 0 rejected, 1 new or changed" in done.stderr, done.stderr
    assert "polled 0 in" not in done.stderr
