"""The README's quick start, for each provider, as a user types it.

The only difference from a real account: ``<PROVIDER>_BASE_URL`` points at the emulator, which
speaks that provider's API. Everything else is the documented path: ``OMNI_PROVIDER``, the key in
``<PROVIDER>_API_KEY`` (read through ``EnvVar``, not the emulator's built-in key), a relative
storage folder, ``omni-assets run requests.yaml`` in a fresh directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni_assets.providers.env import api_key_env

from .pipeline_env import DEMO_DIR

# The README's example request for each provider ("Quick start with one provider").
README_REQUESTS: dict[str, dict[str, Any]] = {
    "apimart": {
        "defaults": {"model": "Omni-Flash-Ext", "aspect_ratio": "16:9"},
        "requests": [
            {
                "id": "boat",
                "prompt": "A paper boat drifting down a rain-soaked street at dusk",
                "duration": 6,
            }
        ],
    },
    "jimmyai": {
        "requests": [
            {
                "id": "spin",
                "prompt": "The product turns",
                "images": ["product.png"],
                "mode": "frame",
                "duration": 4,
            }
        ]
    },
    "toapis": {"requests": [{"id": "fox", "prompt": "A fox wakes in the snow", "duration": 6}]},
    "google": {
        "requests": [
            {
                "id": "lantern",
                "prompt": "A paper lantern rising over a dark lake",
                "aspect_ratio": "9:16",
                "duration": 5,
            }
        ]
    },
    "crun": {
        "requests": [
            {
                "id": "skyline",
                "prompt": "A skyline from day to night",
                "aspect_ratio": "9:16",
                "duration": 8,
            }
        ]
    },
}


def _run(
    provider: str, key: str, tmp_path: Path, emulator: Any, *args: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "requests.yaml").write_text(yaml.safe_dump(README_REQUESTS[provider]))
    shutil.copy(DEMO_DIR / "product.png", tmp_path / "product.png")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OMNI_", "DAGSTER_")) and not k.endswith(("_API_KEY", "_BASE_URL"))
    }
    env.update(
        {
            "OMNI_PROVIDER": provider,
            api_key_env(provider, {}): key,  # Google's is GEMINI_API_KEY
            f"{provider.upper()}_BASE_URL": emulator.base_url(provider),
            "OMNI_STORAGE_URL": "./videos",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "omni_assets.cli", "run", "requests.yaml", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize("provider", sorted(README_REQUESTS))
def test_readme_quick_start(provider: str, tmp_path: Path, fresh_emulator: Any) -> None:
    key = f"sk-readme-{provider}-0123456789abcdef"
    done = _run(provider, key, tmp_path, fresh_emulator)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    (request_id,) = [r["id"] for r in README_REQUESTS[provider]["requests"]]
    assert "1/1 materialized" in done.stdout
    # ./videos holds the videos themselves, never videos/videos/ (issue 13 finding 9).
    assert not (tmp_path / "videos" / "videos").exists()
    video = tmp_path / "videos" / f"{request_id}.mp4"
    assert video.stat().st_size > 0
    sidecar = json.loads(video.with_suffix(".json").read_text())
    assert sidecar["provider"] == provider
    # The key went to the provider and nowhere else.
    assert key not in output
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]


def test_a_wrong_key_is_reported_and_nothing_is_failed_or_paid(
    tmp_path: Path, fresh_emulator: Any
) -> None:
    """The troubleshooting table's first provider error: fix the key, nothing else."""
    key = "invalid-readme-key-0123456789"  # the emulator answers 401, as a provider would
    started = time.monotonic()
    done = _run("apimart", key, tmp_path, fresh_emulator)  # the default --timeout is an hour
    output = done.stdout + done.stderr
    assert done.returncode != 0
    # It stops as soon as the refusal is all that is left, saying why, instead of waiting.
    assert time.monotonic() - started < 120, output
    assert "stopped: apimart refused submissions (AuthenticationError" in done.stdout, output
    assert "timed out" not in done.stdout
    assert "0/1 materialized" in done.stdout
    assert not fresh_emulator.audit()["tasks"]  # no task created: nothing paid
    assert key not in output
