"""``GET /files/{name}``: signed, expiring downloads with HTTP Range and injected drops.

The route plays a storage CDN in front of all four providers: 403 for a bad signature or an
expired URL, 416 for an unsatisfiable range, 206 with ``Content-Range`` for a single byte range
(several ranges are ignored and the whole file is sent, as RFC 9110 allows). Under
``rate_drop_download`` the connection is closed after part of the body, with the full
``Content-Length`` already promised, so the client sees a truncated transfer. Under
``download_bytes_per_second`` each connection is paced to that speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import anyio
import anyio.lowlevel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .common import gateway_response
from .state import EmulatorState
from .video import iter_padded

__all__ = ["files_route", "parse_range"]

_UNSATISFIABLE = (-1, -1)


def parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range`` header asks of ``total`` bytes.

    None means "send everything" (no header, another unit, several ranges, or bad syntax);
    ``(-1, -1)`` means the range cannot be satisfied (416).
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or "," in spec or not dash:
        return None
    try:
        if not first:
            suffix = int(last)
            return (max(0, total - suffix), total - 1) if suffix > 0 else _UNSATISFIABLE
        start = int(first)
        end = int(last) if last else total - 1
    except ValueError:
        return None
    if end < start and last:
        return None
    if start >= total:
        return _UNSATISFIABLE
    return start, min(end, total - 1)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"code": status, "message": message}}, status)


def files_route(state: EmulatorState) -> Route:
    """The ``/files/{name}`` route serving videos and uploads of ``state``."""

    async def download(request: Request) -> Response:
        served = state.files.lookup(request.path_params["name"])
        if served is None:
            return _error(404, "file not found")
        try:
            expires = int(request.query_params["expires"])
            signature = request.query_params["signature"]
        except (KeyError, ValueError):
            return _error(403, "missing or malformed expires/signature")
        if not state.files.verify(served.token, expires, signature):
            return _error(403, "signature does not match")
        now = state.clock()
        if now >= expires:
            message = f"URL expired at {expires} (now {int(now)}); query the task for a fresh URL"
            return _error(403, message)
        config, faults = state.config, state.faults
        if faults.roll("5xx", config.rate_5xx):
            state.record_fault("5xx:503", served.provider, request.url.path)
            return gateway_response(503)
        path = served.path
        if path is None:
            path = await anyio.to_thread.run_sync(
                state.renderer.path, served.duration, served.aspect, served.scene
            )
        total = path.stat().st_size + served.padding
        range_header = request.headers.get("range")
        wanted = parse_range(range_header, total)
        if wanted == _UNSATISFIABLE:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{total}"})
        start, end = wanted or (0, total - 1)
        headers = {
            "Content-Type": served.content_type,
            "Content-Length": str(end + 1 - start),
            "Accept-Ranges": "bytes",
        }
        if wanted is not None:
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        drop_at = None
        if request.method == "GET" and faults.roll("drop_download", config.rate_drop_download):
            state.record_fault("drop_download", served.provider, request.url.path)
            drop_at = faults.randint("drop_download", 1, max(1, end - start))

        def started() -> None:
            state.audit.downloads_in_progress += 1

        def done(sent: int, outcome: str) -> None:
            state.audit.downloads_in_progress -= 1
            state.audit.record(
                "downloads",
                provider=served.provider,
                task_id=served.task_id,
                file=served.name,
                range=range_header,
                bytes_sent=sent,
                bytes_expected=end + 1 - start,
                outcome=outcome,
                complete=outcome == "complete",
                time=state.clock(),
            )

        return _Stream(
            iter_padded(path, served.padding, start, end),
            status=206 if wanted is not None else 200,
            headers=headers,
            drop_at=drop_at,
            on_start=started,
            on_done=done,
            bytes_per_second=config.download_bytes_per_second,
        )

    return Route("/files/{name}", download, methods=["GET"])


class _Stream(Response):
    """Streams the body from a generator, noticing client disconnects and injected drops."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        *,
        status: int,
        headers: dict[str, str],
        drop_at: int | None,
        on_start: Callable[[], None],
        on_done: Callable[[int, str], None],
        bytes_per_second: float = 0.0,
    ) -> None:
        super().__init__(status_code=status, headers=headers)
        self._chunks = _paced(chunks, bytes_per_second) if bytes_per_second else chunks
        self._rate = bytes_per_second
        self._started = time.monotonic()
        self._drop_at = drop_at
        self._on_start = on_start
        self._on_done = on_done
        self._sent = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        outcome = "aborted"
        self._on_start()
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            try:
                outcome = await self._send_body(send)
            finally:
                # Recorded before leaving the task group: a client that has the whole body may
                # already be reading the audit while the watcher is being cancelled.
                self._on_done(self._sent, outcome)
            group.cancel_scope.cancel()

    async def _send_body(self, send: Send) -> str:
        for chunk in self._chunks:
            if self._drop_at is not None and self._sent + len(chunk) >= self._drop_at:
                await self._send_chunk(send, chunk[: self._drop_at - self._sent])
                # Returning without the final body message makes the server close the
                # connection mid-body (see server.quiet_uvicorn for the log noise).
                return "dropped"
            await self._send_chunk(send, chunk)
            if self._rate:
                # Sleep until this connection is back under its cap (other connections go on).
                ahead = self._sent / self._rate - (time.monotonic() - self._started)
                if ahead > 0:
                    await anyio.sleep(ahead)
            # uvicorn's send() returns at once, without yielding, once the client is gone:
            # give watch_disconnect a chance to run and cancel the transfer.
            await anyio.lowlevel.checkpoint()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return "complete"

    async def _send_chunk(self, send: Send, chunk: bytes) -> None:
        if chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self._sent += len(chunk)


def _paced(chunks: Iterator[bytes], bytes_per_second: float) -> Iterator[bytes]:
    """``chunks`` cut into pieces of at most a twentieth of a second's worth, so a capped
    transfer advances smoothly instead of one large chunk at a time."""
    size = max(1024, int(bytes_per_second / 20))
    for chunk in chunks:
        for i in range(0, len(chunk), size):
            yield chunk[i : i + size]
