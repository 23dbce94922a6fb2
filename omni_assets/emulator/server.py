"""Running the emulator: blocking (:func:`run_emulator`) or in a background thread
(:class:`EmulatorServer`, for tests and the embedded demo). Both bind to loopback only.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from .app import CONTROL_PREFIX, create_app
from .config import PROVIDERS, EmulatorConfig

__all__ = ["LOOPBACK_HOSTS", "EmulatorServer", "quiet_uvicorn", "run_emulator"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_DROP_MESSAGE = "returned without completing response"


class _HideInjectedDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _DROP_MESSAGE not in record.getMessage()


@contextmanager
def quiet_uvicorn() -> Iterator[None]:
    """Hide uvicorn's error line for the mid-body drops ``rate_drop_download`` causes on purpose.

    Ending an ASGI response early is the only way to make uvicorn close a connection mid-body,
    and uvicorn logs each one as an application error.
    """
    logger = logging.getLogger("uvicorn.error")
    hide = _HideInjectedDrops()
    logger.addFilter(hide)
    try:
        yield
    finally:
        logger.removeFilter(hide)


def _server(app: Starlette, host: str, port: int) -> uvicorn.Server:
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the emulator only binds to loopback ({', '.join(LOOPBACK_HOSTS)})")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


def run_emulator(
    host: str = "127.0.0.1",
    port: int = 8765,
    config: EmulatorConfig | None = None,
    *,
    on_server: Callable[[uvicorn.Server], None] | None = None,
) -> None:
    """Serve the emulator on ``host:port`` until interrupted (blocking).

    ``on_server`` sees the server before it starts (to stop it from elsewhere: ``should_exit``).
    """
    server = _server(create_app(config), host, port)
    if on_server is not None:
        on_server(server)
    with quiet_uvicorn():
        server.run()


class EmulatorServer:
    """The emulator on 127.0.0.1 and an ephemeral port, served from a background thread.

    Use as a context manager::

        with EmulatorServer(EmulatorConfig(generation_seconds=0.3)) as emulator:
            base = emulator.base_url("apimart")   # http://127.0.0.1:PORT/apimart
            emulator.configure(rate_429=0.2)
            emulator.audit()["counts"]

    ``audit``, ``configure`` and ``reset`` go through the HTTP control endpoints, so they are
    safe to call from any thread while the server runs.
    """

    def __init__(self, config: EmulatorConfig | None = None, *, port: int = 0) -> None:
        self.initial_config = config or EmulatorConfig()
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._quiet = ExitStack()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, provider: str) -> str:
        """The base URL a client of ``provider`` should use, e.g. ``.../apimart``."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")
        return f"{self.url}/{provider}"

    def start(self) -> EmulatorServer:
        """Bind, start serving in a daemon thread and wait until it accepts connections."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        server = _server(create_app(self.initial_config), "127.0.0.1", self.port)
        self._quiet.enter_context(quiet_uvicorn())
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="omni-emulator", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=30)
        self._server = self._thread = None
        self._quiet.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _control(self, method: str, name: str, payload: Any = None) -> Any:
        # Plain HTTP on loopback: skip building a TLS context (it loads the CA bundle).
        with httpx.Client(base_url=self.url, trust_env=False, verify=False, timeout=30) as client:
            response = client.request(method, f"{CONTROL_PREFIX}/{name}", json=payload)
        if response.status_code == 400:
            raise ValueError(response.json()["error"])
        response.raise_for_status()
        return response.json()

    def audit(self) -> dict[str, Any]:
        """The audit record (see ``GET /_emulator/audit``)."""
        result: dict[str, Any] = self._control("GET", "audit")
        return result

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change settings at runtime; returns the resulting config."""
        return EmulatorConfig(**self._control("POST", "config", changes))

    def config(self) -> EmulatorConfig:
        """The settings in force."""
        return EmulatorConfig(**self._control("GET", "config"))

    def reset(self) -> None:
        """Back to the start-up config, with no tasks, files or audit."""
        self._control("POST", "reset")
