"""The Starlette application: every provider under its own prefix, files, control endpoints.

Control endpoints (not provider traffic, so left out of the request audit):

* ``GET /_emulator/health`` → ``{"status": "ok"}``
* ``GET /_emulator/audit`` → requests, tasks, per-fingerprint counts, downloads, uploads,
  callbacks, injected faults, and totals
* ``GET /_emulator/config`` → the current config; ``POST`` a JSON object of changes to apply
  them at runtime (400 on an unknown key or a bad value)
* ``POST /_emulator/reset`` → back to the start-up config, forgetting tasks, files and audit
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .apimart import APIMart
from .common import Dialect, origin
from .config import PROVIDERS, EmulatorConfig
from .crun import Crun
from .downloads import files_route
from .errors import ApiError
from .google import Google
from .jimmyai import JimmyAI
from .state import Clock, EmulatorState
from .toapis import ToAPIs
from .validate import json_object

__all__ = ["CONTROL_PREFIX", "create_app"]

CONTROL_PREFIX = "/_emulator"
DIALECTS: tuple[type[Dialect], ...] = (JimmyAI, APIMart, ToAPIs, Crun, Google)


class AuditMiddleware:
    """Records method, path, provider, HTTP status and time of every provider/file request."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(CONTROL_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        status = 500
        clock = self.state.clock

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = clock()
        try:
            await self.app(scope, receive, capture)
        finally:
            first = path.strip("/").split("/", 1)[0]
            self.state.audit.record(
                "requests",
                method=scope["method"],
                path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                provider=first if first in PROVIDERS else None,
                status=status,
                time=started,
                duration_ms=round((clock() - started) * 1000, 3),
            )


def create_app(config: EmulatorConfig | None = None, *, clock: Clock = time.time) -> Starlette:
    """A fresh emulator application (its own tasks, files and audit) for ``config``.

    ``clock`` (epoch seconds) drives task progress and URL expiry; tests may pass a fake one.
    """
    state = EmulatorState(config or EmulatorConfig(), clock)
    routes: list[BaseRoute] = [
        Mount(f"/{dialect.name}", routes=dialect(state).routes()) for dialect in DIALECTS
    ]
    routes.append(files_route(state))
    routes.extend(_control_routes(state))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(AuditMiddleware, state=state)],
        lifespan=lifespan,
    )
    app.state.emulator = state
    return app


def _control_routes(state: EmulatorState) -> list[BaseRoute]:
    async def index(request: Request) -> Response:
        base = origin(request)
        providers = {name: f"{base}/{name}" for name in PROVIDERS}
        return JSONResponse({"service": "omni_assets emulator", "providers": providers})

    async def health(request: Request) -> Response:
        # The pid lets `omni-assets emulator` say which process already holds the port.
        return JSONResponse({"status": "ok", "pid": os.getpid()})

    async def audit(request: Request) -> Response:
        return JSONResponse(state.audit.snapshot())

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                state.configure(json_object(await request.body()))
            except (ValueError, ApiError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(state.config.to_json())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"status": "reset"})

    return [
        Route("/", index, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/health", health, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/audit", audit, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/config", config, methods=["GET", "POST"]),
        Route(f"{CONTROL_PREFIX}/reset", reset, methods=["POST"]),
    ]
