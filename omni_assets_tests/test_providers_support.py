"""Helpers for the provider tests (no tests here): a recording MockTransport, fast options."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from omni_assets.providers import ClientOptions, ProviderClient, RetryPolicy, get_provider

__all__ = ["FAST", "KEY", "Recorder", "client_for", "js"]

KEY = "sk-test-SECRET-0123456789abcdef"

_FAST_POLICY = RetryPolicy(
    attempts=4, timeout=5.0, wait_initial=0.001, wait_max=0.005, wait_jitter=0.0
)
FAST = ClientOptions(
    status_retry=_FAST_POLICY,
    submit_retry=_FAST_POLICY,
    upload_retry=_FAST_POLICY,
    download_retry=_FAST_POLICY,
)

Handler = Callable[[httpx.Request], httpx.Response]


def js(status: int = 200, body: Any = None, **headers: str) -> httpx.Response:
    """A JSON response."""
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
    )


class Recorder:
    """A MockTransport that records every request and answers from a script.

    ``script`` items are responses, exceptions (raised as transport errors) or handlers; the last
    item repeats once the script is used up.
    """

    def __init__(self, *script: httpx.Response | Exception | Handler) -> None:
        self.script = list(script)
        self.calls: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        self.bodies.append(request.read())
        item = (
            self.script.pop(0) if len(self.script) > 1 else self.script[0] if self.script else None
        )
        if item is None:
            raise AssertionError(f"unexpected HTTP call: {request.method} {request.url}")
        if isinstance(item, Exception):
            raise item
        if isinstance(item, httpx.Response):
            return httpx.Response(item.status_code, headers=item.headers, content=item.content)
        return item(request)

    def json(self, index: int = -1) -> Any:
        return json.loads(self.bodies[index])


def client_for(
    provider: str,
    *script: httpx.Response | Exception | Handler,
    model: str | None = None,
    options: ClientOptions = FAST,
    **kw: Any,
) -> tuple[ProviderClient, Recorder]:
    recorder = Recorder(*script)
    client = get_provider(
        provider, api_key=KEY, model=model, transport=recorder.transport, options=options, **kw
    )
    return client, recorder


def requests_made(recorders: Iterable[Recorder]) -> int:
    return sum(len(r.calls) for r in recorders)
