"""A hostile provider on 127.0.0.1: a small programmable HTTP server for trust-boundary tests.

The emulator (``omni_assets/emulator``) plays the providers as documented; this server plays
them broken or malicious. It is the standard library's ``ThreadingHTTPServer`` in a thread, so a
handler has the raw socket: it can send a ``Content-Length`` that lies, stream without end, hang
before or after the headers, answer with a gzip bomb, redirect anywhere, or echo a request's
headers (the API key among them) back into the body.

Use it through the ``hostile`` fixture (``omni_assets_tests/conftest.py``), which starts one
server per test and stops it afterwards. Each test registers its own handlers per path::

    def test_x(hostile: HostileServer) -> None:
        hostile.route("POST", "/v1/videos", lambda r: r.json({"task_id": "t-1"}))
        hostile.route("GET", "/v1/videos/*", lambda r: r.gzip_bomb(1 << 30))
        client = make_client(base_url=hostile.url)          # real HTTP, real client
        ...
        assert hostile.seen[0].headers["authorization"] == "Bearer sk-..."

A pattern matches a path exactly, or by prefix when it ends with ``*``; the last registered
route that matches wins, so a test can override a default. An unmatched request gets a 404 JSON
answer. Every request is recorded in ``seen`` (method, path with query, headers, body) before its
handler runs. Handlers run on the server's threads; a handler that raises closes the connection
(the client sees a broken answer, which is a hostile answer too).

The ``Reply`` helpers cover the cases the suite needs; add one here when a new attack needs it,
with a line in its docstring, rather than writing raw bytes in a test.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "HostileServer",
    "Reply",
    "Seen",
    "endless",
    "gzip_bomb_bytes",
    "nested_json",
    "slow_bytes",
]


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str  # as sent on the request line: the raw path and query, not decoded
    headers: dict[str, str]  # names lower-cased
    body: bytes


Handler = Callable[["Reply"], None]


def gzip_bomb_bytes(decompressed: int) -> bytes:
    """A gzip stream of ``decompressed`` zero bytes (~1000x smaller than what it expands to)."""
    out = io.BytesIO()
    chunk = b"\0" * (1 << 20)
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        left = decompressed
        while left > 0:
            gz.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    return out.getvalue()


def nested_json(depth: int) -> bytes:
    """``{"a": {"a": ... }}`` nested ``depth`` deep: valid JSON that exhausts a recursive parser."""
    return b'{"a":' * depth + b"1" + b"}" * depth


_BOMB_CACHE: dict[int, bytes] = {}


@dataclass
class Reply:
    """The request being answered and the ways to answer it (exactly one per request)."""

    request: Seen
    _handler: BaseHTTPRequestHandler
    _server: HostileServer
    _sent: bool = field(default=False, init=False)

    # -- the raw tools ------------------------------------------------------------------------

    def head(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Send the status line and ``headers`` as given (no Content-Length added).

        ``Connection: close`` is added unless ``headers`` has a ``Connection``: each answer gets
        its own connection, so a lying answer never poisons the client's next request.
        """
        self._sent = True
        h = self._handler
        h.send_response_only(status)
        headers = dict(headers or {})
        if not any(name.lower() == "connection" for name in headers):
            headers["Connection"] = "close"
        for name, value in headers.items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.flush()

    def write(self, data: bytes) -> None:
        """Write body bytes on the socket as they are (after :meth:`head`)."""
        self._handler.wfile.write(data)
        self._handler.wfile.flush()

    def raw(self, data: bytes) -> None:
        """Write ``data`` as the whole answer, status line and headers included (or garbage)."""
        self._sent = True
        self.write(data)

    # -- whole answers ------------------------------------------------------------------------

    def send(
        self,
        body: bytes,
        status: int = 200,
        headers: dict[str, str] | None = None,
        *,
        content_length: int | None = None,
    ) -> None:
        """An answer with ``body``; ``content_length`` overrides the true length (a lie)."""
        length = len(body) if content_length is None else content_length
        self.head(status, {"Content-Length": str(length), **(headers or {})})
        self.write(body)

    def json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """A JSON answer."""
        body = json.dumps(payload).encode()
        self.send(body, status, {"Content-Type": "application/json", **(headers or {})})

    def echo_headers(self, status: int = 401) -> None:
        """A JSON error that repeats every request header back: the key in ``message``,
        ``code``, ``type`` and a ``X-Request-Id`` header, as a careless provider would."""
        auth = " ".join(self.request.headers.values())
        error = {"message": f"bad key {auth}", "code": auth, "type": auth}
        self.json({"error": error, "headers": self.request.headers}, status, {"X-Request-Id": auth})

    def redirect(self, location: str, status: int = 302) -> None:
        """A redirect to ``location`` (anything: another port, ``file://``, itself)."""
        self.send(b"", status, {"Location": location})

    def gzip_bomb(self, decompressed: int, content_type: str = "application/json") -> None:
        """``Content-Encoding: gzip`` whose body expands to ``decompressed`` bytes."""
        body = _BOMB_CACHE.get(decompressed)
        if body is None:
            body = _BOMB_CACHE.setdefault(decompressed, gzip_bomb_bytes(decompressed))
        self.send(body, 200, {"Content-Type": content_type, "Content-Encoding": "gzip"})

    def deflate(self, data: bytes) -> None:
        """``Content-Encoding: deflate`` of ``data``."""
        self.send(zlib.compress(data, 9), 200, {"Content-Encoding": "deflate"})

    # -- time and length ----------------------------------------------------------------------

    def stream(
        self,
        chunks: Iterable[bytes],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """A chunked (no Content-Length) answer from ``chunks``, ``delay`` seconds apart.

        An endless iterator makes an endless body; the stream ends when the client hangs up or
        the server stops.
        """
        self.head(status, {"Transfer-Encoding": "chunked", **(headers or {})})
        try:
            for chunk in chunks:
                if self._server.stopping.is_set():
                    return
                if chunk:
                    self.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                if delay:
                    self._server.stopping.wait(delay)
            self.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return

    def hang(self, seconds: float = 3600.0, *, after_headers: bool = False) -> None:
        """Say nothing for ``seconds`` (or until the server stops), then close.

        ``after_headers=True`` sends a 200 with a Content-Length first, then never the body.
        """
        if after_headers:
            self.head(200, {"Content-Type": "application/json", "Content-Length": "100"})
        self._sent = True
        self._server.stopping.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the tests read ``seen``

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        owner = self.server.owner
        with owner.lock:
            owner.seen.append(seen)
        reply = Reply(seen, self, owner)
        handler = owner.handler_for(self.command, self.path)
        if handler is None:
            reply.json({"error": {"message": f"no route {self.command} {self.path}"}}, 404)
            return
        handler(reply)
        if not reply._sent:
            reply.send(b"", 204)
        self.close_connection = True  # see Reply.head

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HostileServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A handler that raised (or a client that hung up mid-answer): kept for the test to
        # inspect in ``errors`` instead of a traceback on stderr.
        with self.owner.lock:
            self.owner.errors.append(sys.exc_info()[1])


class HostileServer:
    """The server: ``route`` handlers, ``start``/``stop`` (or the ``hostile`` fixture), ``seen``."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, str, Handler]] = []
        self.seen: list[Seen] = []
        self.errors: list[BaseException | None] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, the base URL to give a client."""
        return f"http://127.0.0.1:{self.port}"

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Answer ``method pattern`` (exact path, or a prefix ending in ``*``) with ``handler``."""
        with self.lock:
            self._routes.append((method.upper(), pattern, handler))

    def handler_for(self, method: str, path: str) -> Handler | None:
        bare = path.split("?", 1)[0]
        with self.lock:
            routes = list(self._routes)
        for want_method, pattern, handler in reversed(routes):
            if want_method != method:
                continue
            if pattern.endswith("*") and path.startswith(pattern[:-1]):
                return handler
            if bare == pattern or path == pattern:
                return handler
        return None

    def requests_to(self, prefix: str, method: str | None = None) -> list[Seen]:
        """The requests received whose path starts with ``prefix`` (and of ``method``)."""
        with self.lock:
            return [
                s
                for s in self.seen
                if s.path.startswith(prefix) and (method is None or s.method == method)
            ]

    def start(self) -> HostileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake hanging handlers, end streams, close the socket."""
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def endless(chunk: bytes = b"\0" * 65536) -> Iterable[bytes]:
    """The same chunk for ever (for :meth:`Reply.stream`)."""
    while True:
        yield chunk


def slow_bytes(data: bytes, per_chunk: int = 1) -> Iterable[bytes]:
    """``data`` a few bytes at a time (for :meth:`Reply.stream` with a ``delay``)."""
    for i in range(0, len(data), per_chunk):
        yield data[i : i + per_chunk]
