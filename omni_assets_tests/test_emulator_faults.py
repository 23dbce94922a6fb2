"""Fault injection at its configured rates, quirks, the audit, the control API and the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

import omni_assets.emulator as emulator_package
from omni_assets.emulator import EmulatorServer
from omni_assets.emulator.__main__ import main

from .test_emulator_support import (
    BODIES,
    TERMINAL,
    client,
    create,
    query,
    run_task,
    task_data,
    task_id_of,
    video_url_of,
)

N = 200


def _bounds(rate: float, n: int = N) -> tuple[float, float]:
    """A generous (about 4.5 sigma) interval for a binomial count."""
    sigma = (n * rate * (1 - rate)) ** 0.5
    return n * rate - 4.5 * sigma, n * rate + 4.5 * sigma


def _statuses(emulator: EmulatorServer, provider: str, task_id: str, n: int = N) -> list[int]:
    return [query(emulator, provider, task_id).status_code for _ in range(n)]


def test_429_fires_at_its_rate_with_retry_after_and_is_reproducible(
    fresh_emulator: EmulatorServer,
) -> None:
    task_id = task_id_of("toapis", create(fresh_emulator, "toapis").json())
    fresh_emulator.configure(rate_429=0.25, retry_after_seconds=3)
    with client() as http:
        url = fresh_emulator.base_url("toapis") + f"/v1/videos/generations/{task_id}"
        headers = {"Authorization": "Bearer test-key"}
        responses = [http.get(url, headers=headers) for _ in range(N)]
    limited = [r for r in responses if r.status_code == 429]
    low, high = _bounds(0.25)
    assert low <= len(limited) <= high
    assert {r.headers["retry-after"] for r in limited} == {"3"}
    assert {r.json()["error"]["type"] for r in limited} == {"rate_limit_exceeded"}
    assert {r.status_code for r in responses} == {200, 429}
    assert fresh_emulator.audit()["counts"]["faults"] == len(limited)
    pattern = [r.status_code for r in responses]

    # Same seed, same sequence of decisions.
    fresh_emulator.reset()
    task_id = task_id_of("toapis", create(fresh_emulator, "toapis").json())
    fresh_emulator.configure(rate_429=0.25, retry_after_seconds=3)
    assert _statuses(fresh_emulator, "toapis", task_id) == pattern


@pytest.mark.parametrize("provider", ["jimmyai", "apimart", "toapis", "crun"])
def test_refused_creates_create_no_task(fresh_emulator: EmulatorServer, provider: str) -> None:
    fresh_emulator.configure(rate_429=1.0)
    assert create(fresh_emulator, provider).status_code == 429
    fresh_emulator.configure(rate_429=0.0, rate_5xx=1.0)
    assert create(fresh_emulator, provider).status_code in (500, 502, 503)
    assert fresh_emulator.audit()["counts"]["tasks"] == 0


def test_5xx_mixes_provider_errors_and_gateway_pages(fresh_emulator: EmulatorServer) -> None:
    task_id = task_id_of("crun", create(fresh_emulator, "crun").json())
    fresh_emulator.configure(rate_5xx=0.3)
    with client() as http:
        url = fresh_emulator.base_url("crun") + "/api/v1/client/job/TaskInfo"
        responses = [
            http.get(url, params={"task_id": task_id}, headers={"x-api-key": "k"}) for _ in range(N)
        ]
    failed = [r for r in responses if r.status_code >= 500]
    low, high = _bounds(0.3)
    assert low <= len(failed) <= high
    assert {r.status_code for r in failed} == {500, 502, 503}
    for response in failed:
        if response.status_code == 500:
            assert response.json() == {
                "code": 500,
                "message": response.json()["message"],
                "data": None,
            }
        else:
            assert response.headers["content-type"].startswith("text/html")


def test_crun_maintenance(fresh_emulator: EmulatorServer) -> None:
    fresh_emulator.configure(rate_crun_maintenance=0.5)
    codes = Counter(create(fresh_emulator, "crun").status_code for _ in range(60))
    assert set(codes) == {200, 455}
    low, high = _bounds(0.5, 60)
    assert low <= codes[455] <= high
    assert fresh_emulator.audit()["counts"]["tasks"] == codes[200]
    # Other providers never answer 455.
    assert create(fresh_emulator, "apimart").status_code == 200


def test_task_failures_are_provider_shaped(fresh_emulator: EmulatorServer) -> None:
    fresh_emulator.configure(rate_task_failed=1.0)
    messages: list[str] = []
    for _ in range(6):
        jimmy, _ = run_task(fresh_emulator, "jimmyai")
        assert jimmy["status"] == "failed" and jimmy["progress"] == 0
        assert "result" not in jimmy
        messages.append(jimmy["error_message"])
    assert any("content policy" in m for m in messages)
    assert any("content policy" not in m for m in messages)

    apimart, _ = run_task(fresh_emulator, "apimart")
    assert apimart["status"] == "failed" and apimart["cost"] == 0
    assert set(apimart["error"]) == {"code", "message", "type"}
    assert isinstance(apimart["error"]["code"], int)

    toapis, _ = run_task(fresh_emulator, "toapis")
    assert toapis["error"]["code"] == "generation_failed"
    assert toapis["error"]["message"].startswith("Generation failed: ")

    crun, _ = run_task(fresh_emulator, "crun")
    assert crun["status"] == "failed" and crun["result"]["code"] == 501
    assert crun["credits"] == 0


def test_task_failure_rate_and_prompt_markers(fresh_emulator: EmulatorServer) -> None:
    fresh_emulator.configure(rate_task_failed=0.4)
    for _ in range(50):
        create(fresh_emulator, "apimart")
    fails = sum(t["fails"] for t in fresh_emulator.audit()["tasks"])
    low, high = _bounds(0.4, 50)
    assert low <= fails <= high

    fresh_emulator.configure(rate_task_failed=0.0)
    marked, _ = run_task(
        fresh_emulator,
        "crun",
        {"model": "google/gemini-omni", "input": {"prompt": "x [emulator:fail]"}},
    )
    assert marked["status"] == "failed"
    policy = create(fresh_emulator, "toapis", {**BODIES["toapis"], "prompt": "[emulator:policy]"})
    assert policy.status_code == 422
    assert policy.json()["error"]["type"] == "content_policy_violation"


def test_expired_url_fault(fresh_emulator: EmulatorServer) -> None:
    fresh_emulator.configure(rate_expired_url=1.0)
    data, _ = run_task(fresh_emulator, "toapis")
    assert data["expires_at"] < time.time()
    with client() as http:
        response = http.get(video_url_of("toapis", data) or "")
    assert response.status_code == 403 and "expired" in response.text
    fresh_emulator.configure(rate_expired_url=0.0)
    fresh = task_data("toapis", query(fresh_emulator, "toapis", data["id"]).json())
    with client() as http:
        assert http.get(video_url_of("toapis", fresh) or "").status_code == 200


def test_dropped_downloads(fresh_emulator: EmulatorServer) -> None:
    data, _ = run_task(fresh_emulator, "jimmyai")
    url = video_url_of("jimmyai", data) or ""
    fresh_emulator.configure(rate_drop_download=0.5)
    outcomes = []
    with client() as http:
        for _ in range(40):
            try:
                response = http.get(url)
                outcomes.append("complete" if response.status_code == 200 else "other")
            except httpx.RemoteProtocolError:
                outcomes.append("dropped")
    counts = Counter(outcomes)
    low, high = _bounds(0.5, 40)
    assert set(counts) == {"complete", "dropped"} and low <= counts["dropped"] <= high
    audited = fresh_emulator.audit()["downloads"]
    assert Counter(d["outcome"] for d in audited) == counts
    for download in audited:
        if download["outcome"] == "dropped":
            assert 0 < download["bytes_sent"] < download["bytes_expected"]


def test_unknown_status_words_while_running(fresh_emulator: EmulatorServer) -> None:
    fresh_emulator.configure(rate_unknown_status=1.0, generation_seconds=0.6, queue_fraction=0.0)
    for provider in ("jimmyai", "apimart", "toapis", "crun"):
        data, seen = run_task(fresh_emulator, provider)
        assert data["status"] in TERMINAL[provider]
        assert set(seen[:-1]) <= {"rendering", "upscaling", "post_processing"}, seen


def test_quirk_variants(fresh_emulator: EmulatorServer) -> None:
    fresh_emulator.configure(rate_quirks=1.0)
    jimmy_shapes: set[str] = set()
    for _ in range(20):
        body = create(fresh_emulator, "jimmyai").json()
        if "task_id" in body:
            jimmy_shapes.add("no_envelope")
        elif isinstance(body["code"], int):
            jimmy_shapes.add("int_code")
        else:
            jimmy_shapes.add(body["data"]["status"])
    assert {"no_envelope", "int_code", "pending", "submitted"} <= jimmy_shapes

    apimart, _ = run_task(fresh_emulator, "apimart")
    assert isinstance(apimart["result"]["videos"][0]["url"], str)

    locations = set()
    for _ in range(12):
        toapis, _ = run_task(fresh_emulator, "toapis")
        result = toapis.get("result", {})
        locations.add(
            "result.data"
            if "data" in result
            else "result.url"
            if "url" in result
            else "video_url"
            if "video_url" in toapis
            else "url"
            if "url" in toapis
            else "?"
        )
        assert video_url_of("toapis", toapis)
    assert {"result.data", "result.url", "video_url", "url"} == locations

    # Errors: JimmyAI and CRUN sometimes answer HTTP 200 with only the body code.
    jimmy_error = create(fresh_emulator, "jimmyai", key="invalid")
    assert jimmy_error.status_code == 200 and jimmy_error.json()["code"] == "20001"
    crun_error = create(fresh_emulator, "crun", key="invalid")
    assert crun_error.status_code == 200 and crun_error.json()["code"] == 401


def test_audit_records_requests_tasks_and_fingerprints(
    fresh_emulator: EmulatorServer, tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    fresh_emulator.configure(audit_log=str(log))
    first = create(fresh_emulator, "toapis")
    create(fresh_emulator, "toapis")
    create(fresh_emulator, "toapis", {**BODIES["toapis"], "duration": 4})
    query(fresh_emulator, "toapis", task_id_of("toapis", first.json()))
    audit = fresh_emulator.audit()
    assert audit["counts"]["tasks"] == 3
    assert sorted(audit["fingerprints"].values()) == [1, 2]
    request = audit["requests"][0]
    assert request["provider"] == "toapis" and request["method"] == "POST"
    assert request["status"] == 200 and request["path"] == "/toapis/v1/videos/generations"
    assert audit["counts"]["requests"] == 4  # control-plane calls are not recorded
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert Counter(line["kind"] for line in lines) == {"requests": 4, "tasks": 3}


def test_control_api_rejects_bad_config(fresh_emulator: EmulatorServer) -> None:
    with pytest.raises(ValueError, match="unknown config key"):
        fresh_emulator.configure(rate_teapot=0.5)
    with pytest.raises(ValueError, match="rate_429"):
        fresh_emulator.configure(rate_429=1.5)
    with client() as http:
        health = http.get(fresh_emulator.url + "/_emulator/health").json()
        assert health == {"status": "ok", "pid": os.getpid()}
        index = http.get(fresh_emulator.url + "/").json()
        assert index["providers"]["crun"] == fresh_emulator.base_url("crun")


def test_cli_rejects_bad_settings() -> None:
    assert main(["--rate-429", "2"]) == 2
    assert main(["--host", "0.0.0.0"]) == 2
    assert main(["--set", "nonsense=1"]) == 2


def test_cli_serves_until_interrupted() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(emulator_package.__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "omni_assets.emulator", "--port", str(port)]
    command += ["--generation-seconds", "2", "--seed", "1"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_emulator/health", trust_env=False)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert health.json() == {"status": "ok", "pid": process.pid}
        config = httpx.get(f"http://127.0.0.1:{port}/_emulator/config", trust_env=False).json()
        assert config["generation_seconds"] == 2 and config["seed"] == 1
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0
    assert f"http://127.0.0.1:{port}/apimart" in stderr.decode()


def test_public_api() -> None:
    assert sorted(emulator_package.__all__) == [
        "EmulatorConfig",
        "EmulatorServer",
        "create_app",
        "run_emulator",
    ]
