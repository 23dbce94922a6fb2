"""The background emulator that emulator mode starts (issue 12 finding 3, issue 13 finding 8).

It gets none of the parent's secrets, it dies with the process that started it (even a SIGKILL),
its lock and log files cannot be redirected by a planted symlink, and a second
``omni-assets emulator`` on its port says that one is already running instead of crashing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from omni_assets.emulator.process import emulator_pid, ensure_emulator, private_dir

from ..servers import free_ports

pytestmark = pytest.mark.reliability

SECRETS = {
    "APIMART_API_KEY": "sk-LEAK-apimart",
    "GEMINI_API_KEY": "AIza-LEAK-gemini",
    "GOOGLE_API_KEY": "AIza-LEAK-google",
    "CRUN_API_KEY": "LEAK-crun",
    "AWS_SECRET_ACCESS_KEY": "LEAK-aws-secret",
    "AWS_SESSION_TOKEN": "LEAK-aws-token",
    "DATABASE_PASSWORD": "LEAK-db",
}

# A parent that starts the emulator the way a sensor or run process does, then waits.
PARENT = textwrap.dedent(
    """
    import sys, time
    from omni_assets.emulator.process import ensure_emulator
    ensure_emulator(sys.argv[1])
    print("up", flush=True)
    time.sleep(600)
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$TMPDIR (and tempfile's cache of it) in this test's folder: its own private dir."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp_path


def test_child_gets_no_secret_and_dies_with_its_parent(private_tmp: Path) -> None:
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    env = {**os.environ, **SECRETS}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "up", parent.stderr
        child = emulator_pid(url)
        assert child, "the emulator reports its pid"
        environ = Path(f"/proc/{child}/environ").read_bytes().decode(errors="replace")
        names = {entry.split("=", 1)[0] for entry in environ.split("\0") if entry}
        assert not names & set(SECRETS), names & set(SECRETS)
        assert not any(value in environ for value in SECRETS.values())
        assert not any(n.endswith(("_API_KEY", "_TOKEN", "_SECRET")) for n in names)
        # SIGKILL: the parent runs no clean-up at all; the child must notice by itself.
        killed_at = time.monotonic()
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _wait(lambda: _gone(child), 8), "the emulator outlived its parent"
        took = time.monotonic() - killed_at
        assert emulator_pid(url) is None
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
    print(f"emulator gone {took:.1f}s after its parent's SIGKILL")


def test_a_planted_symlink_at_the_lock_path_is_neither_followed_nor_truncated(
    private_tmp: Path,
) -> None:
    port = free_ports(1)[0]
    victim = private_tmp / "victim.txt"
    victim.write_text("precious\n")
    # The old, shared location: no longer used at all.
    legacy = private_tmp / f"omni-emulator-{port}.lock"
    legacy.symlink_to(victim)
    folder = private_dir()
    assert folder.parent == private_tmp and oct(folder.stat().st_mode & 0o777) == "0o700"
    (folder / f"{port}.lock").symlink_to(victim)
    with pytest.raises(RuntimeError, match="refusing"):
        ensure_emulator(f"http://127.0.0.1:{port}", timeout_s=5)
    assert victim.read_text() == "precious\n"
    assert emulator_pid(f"http://127.0.0.1:{port}") is None  # nothing was started


def test_a_private_dir_that_is_a_symlink_is_refused(private_tmp: Path) -> None:
    elsewhere = private_tmp / "elsewhere"
    elsewhere.mkdir()
    (private_tmp / f"omni-emulator-{os.getuid()}").symlink_to(elsewhere)
    with pytest.raises(RuntimeError, match="not a directory owned by you"):
        private_dir()
    assert not list(elsewhere.iterdir())


def _emulator_cli(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omni_assets.cli", "emulator", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_emulator_on_the_port_says_one_is_running(emulator: Any) -> None:
    port = int(emulator.url.rsplit(":", 1)[1])
    done = _emulator_cli(port)
    assert done.returncode == 1
    assert "already running" in done.stderr and emulator.url in done.stderr
    assert f"pid {os.getpid()}" in done.stderr  # the fixture's emulator is a thread of ours
    assert "omni_assets emulator on" not in done.stderr  # no banner before failing
    assert "address already in use" not in done.stderr.lower()


def test_a_port_held_by_another_program_is_named() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = _emulator_cli(port)
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use by another program" in done.stderr
    assert "Traceback" not in done.stderr
