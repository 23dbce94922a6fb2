"""Crash injection: pipeline processes SIGKILLed at seeded random points, then resumed.

Each trial gives six requests (all four dialects, a local image upload, an APIMart extension
chain) to ``crash_driver`` processes: one or two runs killed by ``OMNI_CRASHPOINT`` at a point
drawn from a seeded RNG, then a resume after the stale period. The emulator runs as its own
process; its audit says how many tasks each prompt created. Per request the suite asserts:
created at most once at the provider; ended materialized, or ``unknown`` where a crash left a
non-idempotent POST's outcome open (never silently resubmitted; APIMart, whose Idempotency-Key
makes a replay safe, is replayed and must end materialized); nothing but a complete, verified
video and its sidecar at a final path.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni_assets._crashpoints import CRASHPOINTS
from omni_assets.registry import RecordState, Registry

from ..pipeline_env import DEMO_DIR
from .harness import EmulatorProcess, final_path_problems, record_figures, tasks_by_prompt

TRIALS = int(os.environ.get("OMNI_CRASH_TRIALS", "50"))
SEED = int(os.environ.get("OMNI_CRASH_SEED", "5"))
REPO = Path(__file__).resolve().parents[2]
# How often each point is reached in one undisturbed run of a trial's six requests (a 2.5 MB
# video is flushed twice mid-body); the N-th hit to crash on is drawn from 1..these.
HITS = {
    "before_post": 6,
    "after_post": 6,
    "mid_download": 12,
    "before_commit": 6,
    "before_sidecar": 6,
    "before_record": 6,
}
SUBMIT_POINTS = {"before_post", "after_post"}


@pytest.fixture(scope="module")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The emulator as its own process, with 2.5 MB videos (two mid-body flushes each)."""
    log_dir = tmp_path_factory.mktemp("emulator")
    with EmulatorProcess(
        log_dir, generation_seconds=0.2, video_padding_bytes=2_500_000, seed=7
    ) as emulator:
        yield emulator


def trial_requests(trial: int) -> list[dict[str, Any]]:
    t = f"trial-{trial:03d}"
    return [
        {
            "id": "text-apimart",
            "prompt": f"{t} a paper boat on a rainy street",
            "provider": "apimart",
            "model": "Omni-Flash-Ext",
            "duration": 4,
        },
        {
            "id": "image-jimmyai",
            "prompt": f"{t} the product turns under studio light",
            "provider": "jimmyai",
            "images": ["product.png"],
            "mode": "frame",
            "duration": 4,
        },
        {
            "id": "text-toapis",
            "prompt": f"{t} a lighthouse in a storm",
            "provider": "toapis",
            "model": "gemini_omni_flash",
            "duration": 4,
        },
        {
            "id": "text-crun",
            "prompt": f"{t} a city skyline from day to night",
            "provider": "crun",
            "aspect_ratio": "9:16",
            "duration": 4,
        },
        {
            "id": "parent-apimart",
            "prompt": f"{t} a fox wakes in the snow",
            "provider": "apimart",
            "model": "gemini-omni-flash-preview",
        },
        {
            "id": "child-apimart",
            "prompt": f"{t} the fox runs into the forest",
            "provider": "apimart",
            "model": "gemini-omni-flash-preview",
            "extends": "parent-apimart",
        },
    ]


@dataclass
class Trial:
    number: int
    crashes: list[str]
    killed: list[str] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    partials: int = 0
    replays: int = 0


def run_driver(workdir: Path, url: str, *, crash: str | None, recover: bool) -> Any:
    env = {k: v for k, v in os.environ.items() if k != "OMNI_CRASHPOINT"}
    if crash:
        env["OMNI_CRASHPOINT"] = crash
    argv = [sys.executable, "-m", "omni_assets_tests.reliability.crash_driver", str(workdir), url]
    if recover:
        argv.append("--recover")
    return subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=180, check=False
    )


def run_trial(number: int, rng: random.Random, root: Path, emulator: EmulatorProcess) -> Trial:
    crashes = [
        f"{point}:{rng.randint(1, HITS[point])}"
        for point in rng.sample(CRASHPOINTS, rng.choice((1, 2)))
    ]
    trial = Trial(number, crashes)
    workdir = root / f"trial-{number:03d}"
    workdir.mkdir()
    shutil.copy(DEMO_DIR / "product.png", workdir / "product.png")
    requests = trial_requests(number)
    (workdir / "requests.yaml").write_text(yaml.safe_dump({"requests": requests}))
    for round_, crash in enumerate(crashes):
        done = run_driver(workdir, emulator.url, crash=crash, recover=round_ > 0)
        if done.returncode == -9:
            trial.killed.append(crash)
        elif done.returncode != 0:
            trial.problems.append(f"run with {crash} exited {done.returncode}: {done.stderr}")
    final = run_driver(workdir, emulator.url, crash=None, recover=True)
    if final.returncode != 0:
        trial.problems.append(f"resume exited {final.returncode}: {final.stdout} {final.stderr}")
        return trial
    trial.states = json.loads(final.stdout.strip().splitlines()[-1])["states"]
    audit = emulator.audit()
    by_prompt = tasks_by_prompt(audit)
    task_prompts = {t["task_id"]: t["prompt"] for t in audit["tasks"]}
    prompts = {r["id"]: r["prompt"] for r in requests}
    trial.created = {key: by_prompt.get(prompt, 0) for key, prompt in prompts.items()}
    trial.replays = sum(
        task_prompts.get(r["task_id"]) in prompts.values() for r in audit["replays"]
    )
    registry = Registry(f"sqlite:///{workdir / 'registry.db'}")
    try:
        judge(trial, registry)
    finally:
        registry.close()
    trial.problems += final_path_problems(workdir / "storage" / "videos")[0]
    trial.partials = final_path_problems(workdir / "storage" / "videos")[1]
    if trial.partials:
        trial.problems.append(f"trial {number}: {trial.partials} temporary files left behind")
    shutil.rmtree(workdir / "storage" / "videos", ignore_errors=True)  # 15 MB a trial
    return trial


def judge(trial: Trial, registry: Registry) -> None:
    """Every request settled the way the promises say, given where the crashes were."""
    killed_submitting = any(c.split(":")[0] in SUBMIT_POINTS for c in trial.killed)
    for record in registry.records():
        created = trial.created[record.key]
        where = f"trial {trial.number} ({', '.join(trial.crashes)}) {record.key}"
        if created > 1:
            trial.problems.append(f"{where}: created {created} times at {record.provider}")
        if record.state is RecordState.MATERIALIZED:
            if created != 1:
                trial.problems.append(f"{where}: materialized with {created} tasks at provider")
        elif record.state is RecordState.UNKNOWN:
            if record.provider == "apimart" or not killed_submitting:
                trial.problems.append(f"{where}: unknown without a reason to be ({record.error})")
            if "retry" not in str((record.error or {}).get("message")):
                trial.problems.append(f"{where}: unknown without advice: {record.error}")
        else:
            trial.problems.append(f"{where}: ended {record.state.value}: {record.error}")


@pytest.mark.reliability
@pytest.mark.timeout(1200)
def test_crashes_lose_nothing_and_pay_nothing_twice(
    emulator_process: EmulatorProcess, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    plans = [random.Random(rng.random()) for _ in range(TRIALS)]
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:  # the trials mostly wait on each other's I/O
        trials = list(
            pool.map(lambda i: run_trial(i, plans[i], tmp_path, emulator_process), range(TRIALS))
        )
    seconds = time.monotonic() - started
    problems = [p for t in trials for p in t.problems]
    states = Counter(s for t in trials for s in t.states.values())
    kills = Counter(c.split(":")[0] for t in trials for c in t.killed)
    created = [n for t in trials for n in t.created.values()]
    unknown_with_task = sum(
        t.created[k] for t in trials for k, s in t.states.items() if s == "unknown"
    )
    record_figures(
        "crash",
        trials=TRIALS,
        seed=SEED,
        kills=sum(kills.values()),
        kills_by_point=dict(sorted(kills.items())),
        requests=sum(len(t.states) for t in trials),
        materialized=states["materialized"],
        unknown=states["unknown"],
        unknown_with_a_task=unknown_with_task,
        apimart_replays=sum(t.replays for t in trials),
        duplicated=sum(max(0, n - 1) for n in created),
        lost=sum(
            1
            for t in trials
            for k, s in t.states.items()
            if t.created.get(k) and s not in ("materialized", "unknown")
        ),
        partial_at_final_path=sum(1 for p in problems if "sidecar" in p or "sha256" in p),
        leftover_temp_files=sum(t.partials for t in trials),
        wall_s=round(seconds, 1),
    )
    assert not problems, "\n".join(problems)
    assert sum(kills.values()) >= 50, kills


def _cli_run(
    tmp_path: Path, emulator: EmulatorProcess, requests: dict[str, Any], *args: str
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``omni-assets run`` of ``requests`` on the emulator, in a fresh Dagster home; each call
    runs it once more (keyword arguments are extra environment variables)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNI_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "OMNI_PROVIDER": "emulator",
        "OMNI_EMULATOR_URL": emulator.url,
        "OMNI_STORAGE_URL": str(tmp_path / "storage"),
    }
    path = tmp_path / "requests.yaml"
    path.write_text(yaml.safe_dump(requests))
    argv = [sys.executable, "-m", "omni_assets.cli", "run", str(path), *args]

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env=env | extra, cwd=REPO, capture_output=True, text=True, timeout=180
        )

    return run


@pytest.mark.reliability
def test_cli_run_resumes_after_being_killed_mid_download(
    emulator_process: EmulatorProcess, tmp_path: Path
) -> None:
    """``omni-assets run`` (the real sensors and jobs) SIGKILLed inside a materialize run."""
    requests = [
        {"id": f"cli-{i}", "prompt": f"cli resume {i}", "model": "Omni-Flash-Ext", "duration": 4}
        for i in range(3)
    ]
    run = _cli_run(
        tmp_path,
        emulator_process,
        {"requests": requests, "defaults": {"provider": "apimart"}},
        "--timeout",
        "90",
    )
    killed = run(OMNI_CRASHPOINT="mid_download:2")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    started = time.monotonic()
    resumed = run()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "3/3 materialized" in resumed.stdout
    assert time.monotonic() - started < 60  # the dead run's claims are freed at once
    created = tasks_by_prompt(emulator_process.audit())
    assert [created[r["prompt"]] for r in requests] == [1, 1, 1]
    assert final_path_problems(tmp_path / "storage" / "videos")[0] == []


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("provider", "settled"), [("toapis", "unknown"), ("apimart", "materialized")]
)
def test_cli_run_killed_after_a_post_settles_it_at_once_when_resumed(
    emulator_process: EmulatorProcess, tmp_path: Path, provider: str, settled: str
) -> None:
    """Killed between the paid POST and recording its task id: the resumed ``run`` does not wait
    out the sensor's 10 minutes. APIMart replays under the same idempotency key (one task);
    elsewhere the request becomes ``unknown``, never paid twice."""
    prompt = f"killed after the post on {provider} {tmp_path.name}"
    request = {"id": "lost-id", "prompt": prompt, "provider": provider}
    run = _cli_run(tmp_path, emulator_process, {"requests": [request]})  # --timeout: 1 h
    killed = run(OMNI_CRASHPOINT="after_post:1")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    started = time.monotonic()
    resumed = run()
    output = resumed.stdout + resumed.stderr
    assert time.monotonic() - started < 90, output
    assert re.search(
        rf"^lost-id\s+{provider}(?: \(emulator\))?\s+{settled}\s", resumed.stdout, re.M
    ), output
    assert tasks_by_prompt(emulator_process.audit())[prompt] == 1  # never paid twice
