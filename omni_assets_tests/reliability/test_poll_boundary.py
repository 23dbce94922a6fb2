"""Polling a hostile provider: every per-task error stays on that task, the deadline applies
whatever the error, task ids never escape their URL, answers are capped before parsing (issue 12
findings 10, 11, 14; docs/reliability.md, "Trust boundaries" / Provider answers).

The provider is the suite's hostile server on 127.0.0.1 (``hostile.py``), speaking APIMart.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from omni_assets.pipeline.poll import poll_in_flight
from omni_assets.providers import ProviderClient, get_provider
from omni_assets.providers.base import TaskRef
from omni_assets.providers.polling import PollPolicy
from omni_assets.registry import RecordState, RegisterItem, Registry
from omni_assets.request import VideoRequest

from ..hostile import HostileServer, nested_json
from ..test_providers_support import FAST
from .harness import record_figures

pytestmark = pytest.mark.reliability

DEADLINE_S = 600.0
POLICY = {"apimart": PollPolicy(deadline_s=DEADLINE_S, interval_s=1.0)}


@pytest.fixture
def registry(tmp_path: Path) -> Any:
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as reg:
        yield reg


def _client(hostile: HostileServer, **options: Any) -> ProviderClient:
    return get_provider(
        "apimart",
        api_key="sk-hostile-poll",
        base_url=hostile.url,
        options=dataclasses.replace(FAST, **options),
    )


def in_flight(registry: Registry, key: str, task_id: str) -> None:
    """``key`` submitted as ``task_id`` (recorded as it came, as an older registry holds it)."""
    request = VideoRequest(id=key, prompt=f"poll {key}", duration=4)
    registry.register([RegisterItem.for_request(request, "apimart", "Omni-Flash-Ext")])
    assert registry.begin_submit(key, f"idem-{key}")
    registry.record_submitted(key, TaskRef("apimart", task_id, "Omni-Flash-Ext", time.time()))


def _running(r: Any) -> None:
    r.json({"code": 200, "data": {"id": "t-ok", "status": "processing", "progress": 10}})


def test_every_per_task_error_is_recorded_and_the_deadline_applies(
    hostile: HostileServer, registry: Registry
) -> None:
    """A hanging status endpoint, a task id with CR/LF or of 100k characters, deeply nested
    JSON: each tick once spent its budget, logged a traceback and wrote nothing."""
    hostile.route("GET", "/v1/tasks/t-ok", _running)
    hostile.route("GET", "/v1/tasks/t-hang", lambda r: r.hang(30))
    hostile.route("GET", "/v1/tasks/t-nested", lambda r: r.send(nested_json(200_000)))
    in_flight(registry, "ok", "t-ok")
    in_flight(registry, "hang", "t-hang")
    in_flight(registry, "crlf", "t-1\r\nX-Injected: yes")
    in_flight(registry, "long", "t" * 100_000)
    in_flight(registry, "nested", "t-nested")
    client = _client(hostile, read_timeout=0.5)
    providers = {"apimart": client}
    keys = ["hang", "crlf", "long", "nested"]

    started, tick = time.monotonic(), time.time()
    report = poll_in_flight(registry, providers, policies=POLICY, budget_s=2.0)
    assert time.monotonic() - started < 6  # the tick's budget held, with a hanging endpoint
    ok = registry.get("ok")
    assert ok is not None and ok.state is RecordState.IN_FLIGHT and ok.remote_status == "processing"
    for key in keys:  # still within the deadline: polled again later, the error on the task
        record = registry.get(key)
        assert record is not None and record.state is RecordState.IN_FLIGHT, key
        assert record.error and record.error.get("message"), key
        assert (record.next_poll_at or 0) > tick, key
        assert key in report.errors, key
    assert not any(h.headers.get("x-injected") for h in hostile.seen)  # no header injected

    # Past the deadline, whatever the error: failed with the reason, none left in flight.
    later = time.time() + DEADLINE_S + 60
    poll_in_flight(registry, providers, policies=POLICY, budget_s=2.0, now=later)
    for key in keys:
        record = registry.get(key)
        assert record is not None and record.state is RecordState.FAILED, key
        assert record.error is not None and record.error["message"], key
        if key == "crlf":  # the provider does not know the (encoded) id: lost, for good
            assert record.error["error"] == "TaskNotFoundError"
            assert record.error["resumable"] is False
        else:  # timed out; what the last poll ran into is kept
            assert "no result within" in record.error["message"], key
            assert record.error["last_error"]["message"], key
    # Past its deadline nothing stays in flight, the healthy task included (it timed out too).
    assert registry.counts()[RecordState.IN_FLIGHT] == 0


def test_task_ids_cannot_escape_the_base_path(hostile: HostileServer, registry: Registry) -> None:
    """``../../secret-admin?x#y`` once reached /secret-admin?x on the provider's host."""
    hostile.route("GET", "/*", _running)
    in_flight(registry, "escape", "../../secret-admin?x#y")
    poll_in_flight(registry, {"apimart": _client(hostile)}, policies=POLICY, budget_s=5.0)
    paths = [s.path for s in hostile.seen]
    assert paths == ["/v1/tasks/..%2F..%2Fsecret-admin%3Fx%23y"]
    for dots in (".", ".."):  # a dot segment would climb out of /v1/tasks/ too
        hostile.seen.clear()
        _client(hostile).status(TaskRef("apimart", dots, "Omni-Flash-Ext", time.time()))
        assert [s.path for s in hostile.seen] == ["/v1/tasks/" + "%2E" * len(dots)]


MiB = 1024 * 1024
BOMB = 64 * MiB  # 16 times the cap (1 GiB takes a minute to compress on a busy machine)
_STATUS_HEAD = b'{"code": 200, "data": {"id": "t", "status": "'


def _hostile_answers(hostile: HostileServer) -> None:
    """A 100 MB status answer, a gzip bomb (64 MiB decompressed), a 2 MB status word."""
    big = [_STATUS_HEAD, *(b"x" * MiB for _ in range(100)), b'"}}']
    hostile.route("GET", "/v1/tasks/t-big", lambda r: r.stream(big))
    hostile.route("GET", "/v1/tasks/t-bomb", lambda r: r.gzip_bomb(BOMB))
    word = {"code": 200, "data": {"id": "t-word", "status": "W" * (2 * MiB)}}
    hostile.route("GET", "/v1/tasks/t-word", lambda r: r.json(word))


_CHILD = """
import resource, sys, time
from omni_assets.providers import get_provider
from omni_assets.providers.base import TaskRef
client = get_provider("apimart", api_key="sk-hostile-rss", base_url=sys.argv[1])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)  # imports, TLS context
for task in ("t-big", "t-bomb", "t-word"):
    try:
        client.status(TaskRef("apimart", task, "Omni-Flash-Ext", time.time()))
    except Exception as exc:
        print(type(exc).__name__, str(exc)[:200], file=sys.stderr)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_answers_are_capped_before_parsing(
    hostile: HostileServer, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """A 100 MB status answer once raised RSS to 541 MB and a 0.3 MB gzip bomb to 1.07 GB; a
    2 MB status word was logged in full on every poll (75 MB of stderr in 150 s)."""
    _hostile_answers(hostile)
    in_flight(registry, "big", "t-big")
    in_flight(registry, "bomb", "t-bomb")
    in_flight(registry, "word", "t-word")
    caplog.set_level(logging.INFO)
    poll_in_flight(registry, {"apimart": _client(hostile)}, policies=POLICY, budget_s=15.0)
    for key in ("big", "bomb"):  # refused before parsing, recorded on the task, polled later
        record = registry.get(key)
        assert record is not None and record.state is RecordState.IN_FLIGHT
        assert record.error and "larger than 4,194,304 bytes" in record.error["message"], key
    word = registry.get("word")
    assert word is not None and word.state is RecordState.IN_FLIGHT
    assert word.remote_status is not None and len(word.remote_status) < 200  # clipped
    assert "clipped: 2097152 characters" in word.remote_status
    assert max(len(r.getMessage()) for r in caplog.records) < 2000  # no line holds the word

    # Peak memory of a client reading the three answers (its own process, so it is measured).
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, hostile.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    base_mib, peak_mib = (int(n) for n in child.stdout.split()[-2:])
    assert child.stderr.count("AnswerTooLargeError") == 2, child.stderr
    record_figures(
        "trust_boundaries",
        peak_rss_mib_hostile_answers=peak_mib,
        rss_mib_before_the_answers=base_mib,
    )
    assert peak_mib - base_mib < 40, child.stderr  # was +486 MB (100 MB answer), +1 GB (bomb)
