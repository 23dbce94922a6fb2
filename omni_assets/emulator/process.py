"""Start the built-in emulator as a background process when emulator mode needs it.

In emulator mode the code location, the sensors and every run process talk to one emulator, so it
must be a process of its own (not a thread inside one of them). The first process that finds it
missing starts it; a lock file keeps two processes from starting it at once.

The child is started so that it can do no harm (issue 12 finding 3, issue 13 finding 8):

* with a scrubbed environment: an allowlist (:data:`CHILD_ENV`), so no ``*_API_KEY``, Gemini or
  Google key, AWS secret or anything else of the parent's reaches it;
* with its lifetime tied to the process that started it: it holds the read end of a pipe on its
  stdin and also watches its parent's pid (``--exit-with-parent``), and stops when either goes
  away, a SIGKILL of the parent included. ``prctl(PR_SET_PDEATHSIG)`` is not used: it fires when
  the *thread* that forked exits, and sensors and runs call this from worker threads;
* its lock and log files live in a private directory (``$TMPDIR/omni-emulator-<uid>``, 0700,
  owned by the user, checked), opened with ``O_NOFOLLOW`` and without truncation, so a planted
  symlink is refused instead of followed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

import httpx

__all__ = [
    "CHILD_ENV",
    "child_environment",
    "emulator_is_up",
    "emulator_pid",
    "ensure_emulator",
    "private_dir",
    "watch_parent",
]

#: The only variables the background emulator inherits (plus ``LC_*``): what Python needs to start.
CHILD_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "SYSTEMROOT",
)

# Children started by this process. Their Popen objects hold the write end of each child's stdin
# pipe: kept here, the pipe closes only when this process ends (garbage collection would close it
# and stop the emulator early).
_CHILDREN: list[subprocess.Popen[bytes]] = []


def emulator_is_up(url: str) -> bool:
    # Plain HTTP on loopback: no TLS context (building one loads the CA bundle, ~40 ms, and this
    # runs for every provider resource of every run and sensor tick in emulator mode).
    return emulator_pid(url) is not None


def emulator_pid(url: str) -> int | None:
    """The pid an emulator answering at ``url`` reports (0 if it reports none); None if none."""
    try:
        response = httpx.get(f"{url}/_emulator/health", timeout=1.0, verify=False, trust_env=False)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return int(response.json().get("pid") or 0)
    except (ValueError, AttributeError):
        return 0


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the background emulator gets: :data:`CHILD_ENV` and ``LC_*`` only."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k in CHILD_ENV or k.startswith("LC_")}


def private_dir() -> Path:
    """``$TMPDIR/omni-emulator-<uid>``: created 0700, and refused unless it is a real directory
    owned by this user (a symlink or someone else's directory could redirect our files)."""
    path = Path(tempfile.gettempdir()) / f"omni-emulator-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(
            f"{path} is not a directory owned by you (a symlink, or someone else's): refusing "
            "to put the emulator's lock and log there; remove it"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def _open_private(path: Path, flags: int) -> int:
    """Open (creating, never truncating) a regular file of ours; a symlink is refused."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise RuntimeError(f"refusing to open {path}: {exc.strerror} (a symlink?)") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        os.close(fd)
        raise RuntimeError(f"refusing to use {path}: not a regular file owned by you")
    return fd


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = _open_private(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure_emulator(url: str, *, timeout_s: float = 30.0) -> None:
    """Make sure an emulator answers at ``url`` (a loopback address), starting one if needed.

    One started here lives as long as this process (see the module docstring).
    """
    if emulator_is_up(url):
        return
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost") or parsed.port is None:
        raise ValueError(
            f"OMNI_EMULATOR_URL={url!r}: the emulator is only started on 127.0.0.1 with a port"
        )
    folder = private_dir()
    log_path = folder / f"{parsed.port}.log"
    with _locked(folder / f"{parsed.port}.lock"):
        if emulator_is_up(url):
            return
        log_fd = _open_private(log_path, os.O_WRONLY | os.O_APPEND)
        try:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "omni_assets.emulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(parsed.port),
                    "--exit-with-parent",
                ],
                stdout=log_fd,
                stderr=log_fd,
                stdin=subprocess.PIPE,  # its EOF tells the child this process is gone
                start_new_session=True,  # a Ctrl-C in the terminal is for us; we end it
                env=child_environment(),
            )
        finally:
            os.close(log_fd)
        _CHILDREN.append(child)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if emulator_is_up(url):
                return
            if child.poll() is not None:  # it refused to start (the port is taken...): say why
                break
            time.sleep(0.2)
    raise RuntimeError(f"the emulator did not start at {url}: {_tail(log_path)}")


def _tail(path: Path, limit: int = 600) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return f"see {path}"
    return (text[-limit:] or "no output") + f" (log: {path})"


def watch_parent(stop: Callable[[], None], stdin: IO[bytes] | None = None) -> None:
    """In the child: call ``stop`` when the parent process is gone.

    Two signs, each watched by a daemon thread: EOF on ``stdin`` (the pipe's write end closes
    with the parent, however it dies) and a change of ``os.getppid()`` (re-parented to init).
    """
    parent = os.getppid()
    stream = stdin if stdin is not None else sys.stdin.buffer
    fired = threading.Event()

    def fire() -> None:
        if not fired.is_set():
            fired.set()
            stop()

    def read_until_eof() -> None:
        with contextlib.suppress(OSError, ValueError):
            while stream.read(1024):
                pass
        fire()

    def poll_ppid() -> None:
        while not fired.wait(0.5):
            if os.getppid() != parent:
                fire()

    for target in (read_until_eof, poll_ppid):
        threading.Thread(target=target, name=f"emulator-{target.__name__}", daemon=True).start()
