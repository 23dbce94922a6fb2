"""Start the built-in emulator as a background process when emulator mode needs it.

In emulator mode the code location, the sensors and every run process talk to one emulator, so it
must be a process of its own (not a thread inside one of them). The first process that finds it
missing starts it; a lock file keeps two processes from starting it at once.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

__all__ = ["emulator_is_up", "ensure_emulator"]


def emulator_is_up(url: str) -> bool:
    # Plain HTTP on loopback: no TLS context (building one loads the CA bundle, ~40 ms, and this
    # runs for every provider resource of every run and sensor tick in emulator mode).
    try:
        response = httpx.get(f"{url}/_emulator/health", timeout=1.0, verify=False, trust_env=False)
        return response.status_code == 200
    except httpx.HTTPError:
        return False


def ensure_emulator(url: str, *, timeout_s: float = 30.0) -> None:
    """Make sure an emulator answers at ``url`` (a loopback address), starting one if needed."""
    if emulator_is_up(url):
        return
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost") or parsed.port is None:
        raise ValueError(
            f"OMNI_EMULATOR_URL={url!r}: the emulator is only started on 127.0.0.1 with a port"
        )
    lock_path = Path(tempfile.gettempdir()) / f"omni-emulator-{parsed.port}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if emulator_is_up(url):
            return
        log_path = Path(tempfile.gettempdir()) / f"omni-emulator-{parsed.port}.log"
        with open(log_path, "ab") as log:
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "omni_assets.emulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(parsed.port),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the process that started it
                env={**os.environ},
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if emulator_is_up(url):
                return
            time.sleep(0.2)
    raise RuntimeError(f"the emulator did not start at {url}; see {log_path}")
