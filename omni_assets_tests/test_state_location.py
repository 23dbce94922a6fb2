"""Where the state lives (issue 13 finding 1): one answer for every entry point, and storage as
the second line of defence, so that following the README never pays for a video twice.

Each scenario runs as a user runs it: in a folder of its own, with no ``DAGSTER_HOME``,
``OMNI_REGISTRY_URL`` or ``OMNI_STORAGE_URL`` set, the CLI as a subprocess and the UI flow as
``dagster dev`` does it (the default code location's definitions, a temporary instance).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import build_sensor_context, instance_for_test, materialize

from omni_assets.assets import VIDEO_ASSET_KEY
from omni_assets.cli import main
from omni_assets.definitions import build_definitions

from .pipeline_env import DEMO_DIR, temporary_env

CLI = [sys.executable, "-m", "omni_assets.cli"]
STATE_VARS = ("DAGSTER_HOME", "OMNI_REGISTRY_URL", "OMNI_STORAGE_URL", "OMNI_REQUESTS")


def _ui_flow(folder: Path, requests: Path) -> int:
    """The README's UI flow the way `dagster dev` runs it without DAGSTER_HOME: the default code
    location's definitions built from the environment, a temporary instance (DAGSTER_HOME is not
    set for the code server), the requests sensor registering the partitions, and "Materialize"
    on each partition running the blocking omni_video asset. Returns the partitions done."""
    with (
        temporary_env(OMNI_REQUESTS=str(requests)),
        instance_for_test(set_dagster_home=False) as instance,
    ):
        defs = build_definitions()  # what omni_assets/location.py does
        sensor = defs.resolve_sensor_def("omni_requests_sensor")
        with build_sensor_context(
            instance=instance, resources=defs.resources, sensor_name="omni_requests_sensor"
        ) as context:
            result = sensor(context)
        keys = list(result.dynamic_partitions_requests[0].partition_keys)
        instance.add_dynamic_partitions("omni_video", keys)
        video = defs.resolve_assets_def(VIDEO_ASSET_KEY)
        for key in keys:
            assert materialize([video], partition_key=key, instance=instance).success, key
    return len(keys)


def _clean_env(emulator: Any, monkeypatch: pytest.MonkeyPatch, folder: Path) -> dict[str, str]:
    """This process and the subprocesses: in ``folder``, no state variable set, the emulator."""
    monkeypatch.chdir(folder)
    values = {
        "OMNI_PROVIDER": "emulator",
        "OMNI_EMULATOR_URL": emulator.url,
        "OMNI_POLL_SENSOR_INTERVAL_S": "1",
    }
    for name in STATE_VARS:
        monkeypatch.setenv(name, "")  # recorded, so that the test's end restores it
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def _run(args: list[str], folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=folder, capture_output=True, text=True, timeout=240, check=False
    )


def _requests(folder: Path) -> Path:
    path = folder / "requests.yaml"
    requests = [
        {"id": "boat", "prompt": "a boat", "provider": "jimmyai", "duration": 10},
        {
            "id": "product",
            "prompt": "a product",
            "provider": "apimart",
            "model": "Omni-Flash-Ext",
            "images": [str(DEMO_DIR / "product.png")],
            "duration": 4,
        },
    ]
    path.write_text(yaml.safe_dump({"requests": requests}))
    return path


def _state_line(output: str) -> str:
    (line,) = [x for x in output.splitlines() if x.startswith("state: ")]
    return line


def test_ui_flow_then_run_then_status_share_one_registry(
    tmp_path: Path, fresh_emulator: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    env = _clean_env(fresh_emulator, monkeypatch, tmp_path)
    requests = _requests(tmp_path)
    assert _ui_flow(tmp_path, requests) == 2
    tasks = len(fresh_emulator.audit()["tasks"])
    assert tasks == 2

    run = _run([*CLI, "run", "requests.yaml"], tmp_path, env)
    assert run.returncode == 0, run.stdout + run.stderr
    new = len(fresh_emulator.audit()["tasks"]) - tasks
    assert new == 0, f"{new} new tasks: paid twice"  # the UI flow's videos are reused
    assert "2/2 materialized" in run.stdout

    capsys.readouterr()
    assert main(["status"]) == 0
    status = capsys.readouterr()
    rows = {line.split()[0]: line.split() for line in status.out.splitlines() if line.strip()}
    assert "materialized" in rows["boat"] and "materialized" in rows["product"]
    # Every command says where the state lives, and they all say the same.
    home = (tmp_path / ".omni" / "dagster_home").resolve()
    line = _state_line(run.stderr)
    assert line == _state_line(status.err)
    assert f"sqlite:///{home / 'omni_registry.db'}" in line
    assert str((tmp_path / ".omni" / "storage").resolve()) in line
    assert main(["lineage", "boat"]) == 0
    assert _state_line(capsys.readouterr().err) == line


def test_a_lost_registry_never_pays_again(
    tmp_path: Path, fresh_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _clean_env(fresh_emulator, monkeypatch, tmp_path)
    _requests(tmp_path)
    assert main(["run", "requests.yaml", "--timeout", "120"]) == 0
    monkeypatch.delenv("DAGSTER_HOME")  # `run` set it for itself
    audit = fresh_emulator.audit()
    tasks, downloads = len(audit["tasks"]), len(audit["downloads"])
    assert tasks == 2
    db = tmp_path / ".omni" / "dagster_home" / "omni_registry.db"
    assert db.exists()
    for path in db.parent.glob("omni_registry.db*"):
        path.unlink()

    again = _run([*CLI, "run", "requests.yaml"], tmp_path, env)
    assert again.returncode == 0, again.stdout + again.stderr
    audit = fresh_emulator.audit()
    new = len(audit["tasks"]) - tasks
    assert new == 0, f"{new} new tasks: paid again"  # reused from the sidecars in storage
    assert len(audit["downloads"]) == downloads  # and not downloaded again either
    assert "2/2 materialized" in again.stdout


def test_ui_starts_dagster_dev_on_the_persistent_home(
    tmp_path: Path, fresh_emulator: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    _clean_env(fresh_emulator, monkeypatch, tmp_path)
    started: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(os, "execve", lambda _path, argv, env: started.append((argv, env)))
    assert main(["ui", "requests.yaml", "--", "-p", "3001"]) == 0
    ((argv, env),) = started
    assert argv == [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        "omni_assets.location",
        "-p",
        "3001",
    ]
    home = tmp_path / ".omni" / "dagster_home"
    assert env["DAGSTER_HOME"] == str(home)  # never dagster dev's temporary instance
    assert "nux" in (home / "dagster.yaml").read_text()
    assert env["OMNI_REQUESTS"] == str(tmp_path / "requests.yaml")
    assert f"dagster home {home}" in _state_line(capsys.readouterr().err)
    # In a folder with a workspace.yaml (the repository root), that workspace is used.
    (tmp_path / "workspace.yaml").write_text("load_from: []\n")
    started.clear()
    assert main(["ui"]) == 0
    assert started[0][0] == [sys.executable, "-m", "dagster", "dev"]
