"""Secrets: a full ``omni-assets run`` with a recognizable fake key per provider leaves no trace.

Keys ``sk-LEAKCHECK-<provider>-<random>`` come from ``<PROVIDER>_API_KEY`` (``GEMINI_API_KEY``
for google; through
``dagster.EnvVar``, as ``resources.provider_resources`` wires them) and reach the emulator,
which accepts any key. The run covers every dialect, an upload, a provider-side failure, an
invalid request and a provider refusing the key (401). Then every byte Dagster, the registry and
the storage wrote, every run's event log and config read back through the instance API, and all
output of the processes are searched for the keys: zero hits.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import EnvVar

from omni_assets.providers import PROVIDER_NAMES
from omni_assets.providers.env import API_KEY_ENV, BASE_URL_ENV
from omni_assets.resources import provider_resources
from omni_assets.settings import Settings

from ..pipeline_env import DEMO_DIR
from .harness import EmulatorProcess, record_figures, run_cli, secrets_left

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("emulator"), generation_seconds=0.3) as emu:
        yield emu


def test_no_key_is_written_or_printed_anywhere(emulator: EmulatorProcess, tmp_path: Path) -> None:
    keys = {p: f"sk-LEAKCHECK-{p}-{secrets.token_hex(12)}" for p in PROVIDER_NAMES}
    home, storage = tmp_path / "dagster_home", tmp_path / "storage"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNI_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "OMNI_PROVIDER": "apimart",
        "OMNI_STORAGE_URL": str(storage),
        **{API_KEY_ENV[p][0]: key for p, key in keys.items()},
        **{BASE_URL_ENV[p]: f"{emulator.url}/{p}" for p in PROVIDER_NAMES},
    }
    (tmp_path / "product.png").write_bytes((DEMO_DIR / "product.png").read_bytes())
    requests: list[dict[str, Any]] = [
        {"id": "apimart", "prompt": "a boat", "model": "Omni-Flash-Ext", "duration": 4},
        {
            "id": "jimmyai-upload",
            "prompt": "a product",
            "provider": "jimmyai",
            "images": ["product.png"],
            "mode": "frame",
            "duration": 4,
        },
        {"id": "toapis", "prompt": "a storm", "provider": "toapis", "duration": 6},
        {"id": "crun", "prompt": "a skyline", "provider": "crun", "duration": 4},
        {"id": "google", "prompt": "a meadow", "provider": "google", "duration": 4},
        {
            "id": "fails",
            "prompt": "this one fails [emulator:fail]",
            "provider": "crun",
            "duration": 4,
        },
        {"id": "invalid", "prompt": "x", "provider": "toapis", "duration": 99},
    ]
    first = tmp_path / "requests.yaml"
    first.write_text(yaml.safe_dump({"requests": requests}))
    full = run_cli(["run", str(first), "--timeout", "120"], env, timeout=240)
    assert "6/7 materialized" not in full.stdout  # one fails at the provider, on purpose
    assert "5/7 materialized, 1 rejected" in full.stdout, full.stdout + full.stderr
    # The provider refuses a key (401): the error path most likely to echo one.
    refused = tmp_path / "refused.yaml"
    refused.write_text(yaml.safe_dump({"requests": [{"id": "refused", "prompt": "y"}]}))
    bad_key = f"invalid-sk-LEAKCHECK-apimart-{secrets.token_hex(12)}"
    keys["apimart-refused"] = bad_key
    rejected = run_cli(
        ["run", str(refused), "--timeout", "6"], env | {"APIMART_API_KEY": bad_key}, timeout=120
    )
    assert rejected.returncode != 0

    needles = [k for key in keys.values() for k in (key, key.rsplit("-", 1)[1])]
    output = full.stdout + full.stderr + rejected.stdout + rejected.stderr
    left = secrets_left(home, storage, output, needles)
    hits, runs, scanned = left.hits, left.runs_searched, left.files_searched
    record_figures(
        "secrets",
        keys=len(keys),
        runs_searched=runs,
        files_searched=scanned,
        output_bytes_searched=len(output),
        leaked=len(hits),
    )
    assert runs >= 2
    used = {t["provider"] for t in emulator.audit()["tasks"]}
    assert used == set(PROVIDER_NAMES)  # every key was used for real
    assert not hits, "\n".join(hits)


def test_keys_come_through_envvar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNI_PROVIDER", "apimart")
    for name in PROVIDER_NAMES:
        monkeypatch.setenv(f"{name.upper()}_API_KEY", f"sk-LEAKCHECK-{name}-envvar")
    resources = provider_resources(Settings.from_env())
    assert sorted(resources) == sorted(PROVIDER_NAMES)
    for name, resource in resources.items():
        assert isinstance(resource.__dict__["api_key"], EnvVar)  # Dagster shows its name only
        assert "LEAKCHECK" not in repr(resource), name
