"""The `omni-assets` command line, run as a user runs it: a subprocess with env variables."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import fsspec
import pytest
import yaml
from dagster import DagsterInstance

from .pipeline_env import DEMO_DIR

CLI = [sys.executable, "-m", "omni_assets.cli"]


def _cli(
    args: list[str], env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=env.get("HOME_DIR"),
    )


def _env(tmp_path: Path, emulator: Any, storage_url: str) -> dict[str, str]:
    return {
        "DAGSTER_HOME": str(tmp_path / "home"),
        "OMNI_PROVIDER": "emulator",
        "OMNI_EMULATOR_URL": emulator.url,
        "OMNI_STORAGE_URL": storage_url,
        "OMNI_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "OMNI_POLL_SENSOR_INTERVAL_S": "1",
    }


def _requests(tmp_path: Path, extra: list[dict[str, Any]] | None = None) -> Path:
    path = tmp_path / "requests.yaml"
    requests = [
        {
            "id": "cli-apimart",
            "prompt": "a boat",
            "provider": "apimart",
            "model": "Omni-Flash-Ext",
            "duration": 4,
        },
        {
            "id": "cli-jimmyai",
            "prompt": "a product",
            "provider": "jimmyai",
            "images": [str(DEMO_DIR / "product.png")],
            "mode": "frame",
            "duration": 4,
        },
        *(extra or []),
    ]
    path.write_text(yaml.safe_dump({"requests": requests}))
    return path


def test_demo_prints_table_and_leaves_playable_videos(tmp_path: Path) -> None:
    storage = tmp_path / "demo"
    done = _cli(["demo", "--storage", str(storage)], {})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("key "))
    assert lines[header].split() == [
        "key",
        "provider",
        "status",
        "path",
        "duration",
        "cost",
        "sha256",
    ]
    rows = [re.split(r"\s{2,}", line) for line in lines[header + 2 :] if line.strip()][:4]
    # The emulator's videos say so (issue 13 finding 5).
    assert {r[1] for r in rows} == {
        f"{p} (emulator)" for p in ("apimart", "jimmyai", "toapis", "crun")
    }
    assert all(r[2] == "materialized" for r in rows)
    for mp4 in (storage / "videos").glob("*.mp4"):
        with av.open(str(mp4)) as container:
            assert container.duration and container.streams.video[0].width > 0
    # The follow-up commands it prints run as printed (in the same folder), with neither
    # dagster nor omni-assets on PATH (issue 13 finding 9); `ui` (dagster dev on the demo's
    # home, issue 13 finding 2) would serve forever, so it is run with --help for dagster dev,
    # and the same environment validates the location it would load.
    printed = dict(line.split(":", 1) for line in lines if line.startswith(("browse", "their")))
    browse, lineage = printed["browse them"].strip(), printed["their lineage"].strip()
    assert browse.endswith("omni-assets ui")
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("OMNI_", "DAGSTER_"))}
    bare["PATH"] = "/usr/bin:/bin"
    validate = browse.replace(
        "omni-assets ui", "dagster definitions validate -m omni_assets.location"
    )
    outputs = []
    for command in (lineage, browse + " -- --help", validate):
        ran = subprocess.run(["bash", "-c", command], env=bare, capture_output=True, text=True)
        assert ran.returncode == 0, command + "\n" + ran.stdout + ran.stderr
        outputs.append(ran.stdout)
    assert "story-dawn" in outputs[0]  # the chain's root, from the registry beside the home
    # The instance it made shows no telemetry prompt and no community pop-up.
    home = storage.with_name(storage.name + "-home")
    with DagsterInstance.from_config(str(home)) as instance:
        assert not instance.telemetry_enabled and not instance.nux_enabled


def test_run_resumes_without_paying_or_downloading_twice(
    tmp_path: Path, fresh_emulator: Any
) -> None:
    env = _env(tmp_path, fresh_emulator, str(tmp_path / "storage"))
    requests = _requests(tmp_path)
    first = _cli(["run", str(requests)], env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2/2 materialized" in first.stdout
    assert "] 2/2 done" in first.stdout  # the progress line, one per change in a log
    audit = fresh_emulator.audit()
    tasks, downloads = len(audit["tasks"]), len(audit["downloads"])
    assert tasks == 2
    again = _cli(["run", str(requests)], env)
    assert again.returncode == 0, again.stdout + again.stderr
    audit = fresh_emulator.audit()
    assert len(audit["tasks"]) == tasks  # nothing resubmitted
    assert len(audit["downloads"]) == downloads  # nothing downloaded twice


def test_run_reports_invalid_requests_and_exits_nonzero(
    tmp_path: Path, fresh_emulator: Any
) -> None:
    env = _env(tmp_path, fresh_emulator, str(tmp_path / "storage"))
    requests = _requests(
        tmp_path,
        [
            {
                "id": "cli-bad",
                "prompt": "x",
                "provider": "toapis",
                "model": "gemini_omni",
                "duration": 8,
            },
        ],
    )
    done = _cli(["run", str(requests)], env)
    assert done.returncode == 1
    # Out of the 3 asked for (issue 13 finding 9: it said 2/2).
    assert "2/3 materialized, 1 rejected" in done.stdout
    assert "cli-bad" in done.stdout and "duration" in done.stdout and "6, 10" in done.stdout


def test_run_failed_request_then_retry(tmp_path: Path, fresh_emulator: Any) -> None:
    env = _env(tmp_path, fresh_emulator, str(tmp_path / "storage"))
    requests = tmp_path / "one.yaml"
    requests.write_text(
        yaml.safe_dump(
            {
                "requests": [
                    {
                        "id": "cli-fails",
                        "prompt": "x",
                        "provider": "apimart",
                        "model": "Omni-Flash-Ext",
                        "duration": 4,
                    }
                ]
            }
        )
    )
    fresh_emulator.configure(rate_task_failed=1.0)
    failed = _cli(["run", str(requests)], env)
    assert failed.returncode == 1
    assert "failed" in failed.stdout
    # The path column holds paths only; the reason is under the table (issue 13 finding 9).
    lines = failed.stdout.splitlines()
    header = next(line for line in lines if line.startswith("key "))
    row = next(line for line in lines if line.startswith("cli-fails "))
    start = header.index("path")
    assert row[start : header.index("duration")].strip() == "", row
    assert any(line.startswith("  cli-fails (failed): ") for line in lines), failed.stdout
    fresh_emulator.configure(rate_task_failed=0.0)
    # Running again does not pay again...
    assert _cli(["run", str(requests)], env).returncode == 1
    assert len(fresh_emulator.audit()["tasks"]) == 1
    # ...until the user asks.
    retried = _cli(["retry", "cli-fails"], env)
    assert retried.returncode == 0, retried.stderr
    done = _cli(["run", str(requests)], env)
    assert done.returncode == 0, done.stdout
    assert len(fresh_emulator.audit()["tasks"]) == 2


def test_run_on_s3_storage(tmp_path: Path, fresh_emulator: Any, s3_server: Any) -> None:
    url = f"s3://{s3_server.bucket}/cli-{tmp_path.name}"
    env = {
        **_env(tmp_path, fresh_emulator, url),
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = _cli(["run", str(_requests(tmp_path))], env)
    assert done.returncode == 0, done.stdout + done.stderr
    fs = fsspec.filesystem("s3", **s3_server.storage_options)
    for key in ("cli-apimart", "cli-jimmyai"):
        with fs.open(f"{url}/videos/{key}.mp4", "rb") as fh, av.open(fh) as container:
            assert container.duration
        assert fs.exists(f"{url}/videos/{key}.json")
    # The local image was ingested content-addressed next to the videos.
    assert fs.glob(f"{url}/sources/*.png")


@pytest.mark.parametrize("args", [["--help"], ["emulator", "--help"]])
def test_help(args: list[str]) -> None:
    done = _cli(args, {})
    assert done.returncode == 0
    assert "usage" in done.stdout.lower()
