"""Requests files that try to exhaust memory: a YAML alias bomb, a file of 100,000 requests
(issue 12 findings 15, 18).

Each file is loaded in a child process (``load_requests_file``, what the requests sensor and
``omni-assets run`` call) under a 1.5 GB address-space limit, so the code before the fixes fails
the test with a MemoryError or the timeout instead of taking the machine down; the child reports
its own peak RSS and the time the load took.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from omni_assets.pipeline.intake import (
    MAX_REQUEST_FILE_BYTES,
    MAX_REQUESTS,
    load_requests_file,
    parse_requests,
)
from omni_assets.settings import Settings

from .harness import record_figures

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
ADDRESS_SPACE = 1536 * 1024 * 1024

# The billion laughs: nine lists of nine references to the list before, 9**9 = 387,420,489
# strings once expanded. Each level is also a request's prompt, so any code that expands it
# (an error message's repr of the given value) runs out of memory.
BOMB = (
    'requests:\n  - {id: a, prompt: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]}\n'
)
for _prev, _name in zip("abcdefgh", "bcdefghi", strict=True):
    BOMB += f"  - {{id: {_name}, prompt: &{_name} [{','.join(['*' + _prev] * 9)}]}}\n"
BOMB += "  - {id: *i, prompt: *i, tags: *i}\n"

_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from omni_assets.pipeline.intake import load_requests_file
    kwargs = json.loads(sys.argv[2])
    start = time.perf_counter()
    intake = load_requests_file(sys.argv[1], **kwargs)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "requests": len(intake.requests),
        "issues": [str(i)[:2000] for i in intake.issues[:5]],
        "issue_chars": sum(len(str(i)) for i in intake.issues),
    }))
    """
)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def load_in_child(path: Path, timeout: float = 20.0, **kwargs: Any) -> dict[str, Any]:
    """``load_requests_file(path, **kwargs)`` in a child process with bounded memory."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), json.dumps(kwargs)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_limit_memory,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {path.name} took more than {timeout} s")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- finding 15: the YAML alias bomb -------------------------------------------------------------


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    assert len(BOMB) < 900
    path = tmp_path / "requests.yaml"
    path.write_text(BOMB)
    result = load_in_child(path)
    assert result["requests"] == 0
    assert len(result["issues"]) == 1, result["issues"]
    assert "aliases" in result["issues"][0] and "expand" in result["issues"][0], result
    assert result["issue_chars"] < 1000  # nothing of the expanded value is repeated back
    assert result["seconds"] < 1.0, result
    assert result["peak_rss_mb"] < 400, result
    record_figures(
        "requests_file_limits",
        yaml_bomb_bytes=len(BOMB),
        yaml_bomb_seconds=round(result["seconds"], 3),
        yaml_bomb_peak_rss_mb=round(result["peak_rss_mb"]),
    )


def test_aliases_that_expand_a_little_still_work() -> None:
    text = textwrap.dedent(
        """
        requests:
          - {id: one, prompt: &p a lighthouse at dusk, tags: &t {team: ads, env: prod}}
          - {id: two, prompt: *p, tags: *t, duration: 6}
        """
    )
    intake = parse_requests(text, fmt="yaml")
    assert intake.ok, [str(i) for i in intake.issues]
    assert [r.prompt for r in intake.requests] == ["a lighthouse at dusk"] * 2


def test_a_recursive_alias_is_refused() -> None:
    intake = parse_requests("requests: &r [{id: a, prompt: x, tags: *r}]", fmt="yaml")
    assert not intake.requests
    assert len(intake.issues) == 1 and "refers to itself" in str(intake.issues[0])


def test_an_error_never_repeats_a_huge_value() -> None:
    """A value given where another type belongs is quoted clipped, not whole (a list of 20,000)."""
    items = ", ".join(["'lol'"] * 20_000)
    intake = parse_requests(f"requests: [{{id: big, prompt: [{items}]}}]", fmt="yaml")
    assert len(intake.issues) == 1
    assert len(str(intake.issues[0])) < 400, str(intake.issues[0])[:500]
    assert "request #1 (id 'big')" in str(intake.issues[0])


def test_a_requests_file_past_the_byte_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "requests.yaml"
    with open(path, "wb") as fh:  # sparse: big on paper, nothing on disk
        fh.write(b"requests: []\n")
        fh.truncate(MAX_REQUEST_FILE_BYTES + 1)
    intake = load_requests_file(path)
    assert not intake.requests and len(intake.issues) == 1
    assert f"at most {MAX_REQUEST_FILE_BYTES:,} bytes" in str(intake.issues[0])


# -- finding 18: the request limit -----------------------------------------------------------------

_LINE = '{"id": "r%06d", "prompt": "request number %d", "duration": 6}\n'


def _jsonl(path: Path, count: int) -> Path:
    with open(path, "w") as fh:
        fh.writelines(_LINE % (i, i) for i in range(count))
    return path


def test_a_file_just_over_a_configured_limit_is_refused(tmp_path: Path) -> None:
    under = load_requests_file(_jsonl(tmp_path / "ten.jsonl", 10), max_requests=10)
    assert under.ok and len(under.requests) == 10
    over = load_requests_file(_jsonl(tmp_path / "eleven.jsonl", 11), max_requests=10)
    assert not over.requests and len(over.issues) == 1
    message = str(over.issues[0])
    assert "more than 10 requests" in message and "OMNI_MAX_REQUESTS" in message, message
    assert "split" in message
    yaml_over = tmp_path / "eleven.yaml"
    yaml_over.write_text(
        "requests:\n" + "".join(f"  - {{id: y{i}, prompt: p{i}}}\n" for i in range(11))
    )
    refused = load_requests_file(yaml_over, max_requests=10)
    assert not refused.requests and "more than 10 requests" in str(refused.issues[0])


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().max_requests == MAX_REQUESTS == 25_000
    monkeypatch.setenv("OMNI_MAX_REQUESTS", "500")
    assert Settings.from_env().max_requests == 500
    for bad in ("0", "many", "25001"):
        monkeypatch.setenv("OMNI_MAX_REQUESTS", bad)
        with pytest.raises(ValueError, match="OMNI_MAX_REQUESTS"):
            Settings.from_env()


def test_the_default_limit_is_applied_at_its_boundary(tmp_path: Path) -> None:
    """25,001 requests are refused before any of them is parsed; memory stays flat on 100,000."""
    start = time.perf_counter()
    over = load_requests_file(_jsonl(tmp_path / "over.jsonl", MAX_REQUESTS + 1))
    assert time.perf_counter() - start < 2.0
    assert not over.requests and len(over.issues) == 1
    assert f"more than {MAX_REQUESTS:,} requests" in str(over.issues[0])
    big = load_in_child(_jsonl(tmp_path / "big.jsonl", 100_000))
    assert big["requests"] == 0 and f"more than {MAX_REQUESTS:,}" in big["issues"][0]
    assert big["peak_rss_mb"] < 300, big
    record_figures(
        "requests_file_limits",
        over_limit_lines=100_000,
        over_limit_seconds=round(big["seconds"], 3),
        over_limit_peak_rss_mb=round(big["peak_rss_mb"]),
    )


def test_a_file_at_the_default_limit_loads_with_flat_memory(tmp_path: Path) -> None:
    """Exactly 25,000 requests: all accepted, the file streamed (no copy of the whole text)."""
    result = load_in_child(_jsonl(tmp_path / "at.jsonl", MAX_REQUESTS), timeout=60)
    assert result["requests"] == MAX_REQUESTS and result["issues"] == []
    assert result["peak_rss_mb"] < 400, result
    record_figures(
        "requests_file_limits",
        at_limit_seconds=round(result["seconds"], 1),
        at_limit_peak_rss_mb=round(result["peak_rss_mb"]),
    )
