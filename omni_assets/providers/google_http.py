"""The two things Google's API needs from the transport: a scoped key and skimmed status bodies.

* **The key goes to Google's origin only.** Gemini API keys travel in ``x-goog-api-key``, and
  Google's own file URIs (``/v1beta/files/...:download``) need the key too, so a video URI on the
  API's origin gets it added here; every request to any *other* origin has it removed. httpx
  strips only ``Authorization`` on a cross-origin redirect, not a custom header, so without this
  a redirect from Google to a CDN would carry the key along.
* **Status answers are skimmed.** A finished interaction holds its video inline as base64 (100 MB
  and more); a request marked with the ``omni_skim`` extension has its answer passed through
  :class:`~omni_assets.providers.jsonskim.JsonSkimmer`, so the client parses a small document and
  memory stays flat. The video itself is read later, by ``google_inline.py``, straight into
  storage.

Both work for the sync pool and for the async (aiohttp) transport of concurrent polling.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

import httpx

from .http import Secret
from .jsonskim import JsonSkimmer

__all__ = ["KEY_HEADER", "SKIM", "AsyncGoogleTransport", "GoogleTransport", "same_origin"]

KEY_HEADER = "x-goog-api-key"
#: Request extension: skim the big strings out of this request's answer.
SKIM = "omni_skim"


def same_origin(url: httpx.URL, origin: httpx.URL) -> bool:
    """Scheme, host and port match (``httpx.URL.port`` is None for the scheme's default)."""
    return (url.scheme, url.host, url.port) == (origin.scheme, origin.host, origin.port)


def _scope_key(request: httpx.Request, origin: httpx.URL, secret: Secret) -> None:
    if same_origin(request.url, origin):
        if KEY_HEADER not in request.headers:
            request.headers[KEY_HEADER] = secret.reveal()
    else:
        request.headers.pop(KEY_HEADER, None)


def _skimmed_headers(response: httpx.Response) -> tuple[httpx.Headers, bool]:
    headers = httpx.Headers(response.headers)
    headers.pop("content-length", None)
    gzipped = headers.get("content-encoding", "").lower() in ("gzip", "x-gzip")
    if gzipped:
        headers.pop("content-encoding", None)
    return headers, gzipped


class _Skim:
    """Raw answer bytes in, skimmed JSON bytes out (gunzipped first when the server gzipped)."""

    def __init__(self, gzipped: bool) -> None:
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self._skimmer = JsonSkimmer()

    def feed(self, raw: bytes) -> bytes:
        return self._skimmer.feed(self._inflate.decompress(raw) if self._inflate else raw)

    def close(self) -> bytes:
        return self._skimmer.close()


class _SkimmedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, gzipped: bool) -> None:
        self._inner = inner
        self._gzipped = gzipped

    def __iter__(self) -> Iterator[bytes]:
        skim = _Skim(self._gzipped)
        for raw in self._inner:
            if out := skim.feed(raw):
                yield out
        if out := skim.close():
            yield out

    def close(self) -> None:
        self._inner.close()


class _AsyncSkimmedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, gzipped: bool) -> None:
        self._inner = inner
        self._gzipped = gzipped

    async def __aiter__(self) -> AsyncIterator[bytes]:
        skim = _Skim(self._gzipped)
        async for raw in self._inner:
            if out := skim.feed(raw):
                yield out
        if out := skim.close():
            yield out

    async def aclose(self) -> None:
        await self._inner.aclose()


class GoogleTransport(httpx.BaseTransport):
    """Wraps the sync transport: key scoped to ``origin``, ``omni_skim`` answers skimmed."""

    def __init__(self, inner: httpx.BaseTransport, origin: httpx.URL, secret: Secret) -> None:
        self._inner = inner
        self._origin = origin
        self._secret = secret

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _scope_key(request, self._origin, self._secret)
        response = self._inner.handle_request(request)
        if not request.extensions.get(SKIM):
            return response
        assert isinstance(response.stream, httpx.SyncByteStream)
        headers, gzipped = _skimmed_headers(response)
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_SkimmedStream(response.stream, gzipped),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


class AsyncGoogleTransport(httpx.AsyncBaseTransport):
    """:class:`GoogleTransport` for the async transport used by concurrent polling."""

    def __init__(self, inner: httpx.AsyncBaseTransport, origin: httpx.URL, secret: Secret) -> None:
        self._inner = inner
        self._origin = origin
        self._secret = secret

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _scope_key(request, self._origin, self._secret)
        response = await self._inner.handle_async_request(request)
        if not request.extensions.get(SKIM):
            return response
        assert isinstance(response.stream, httpx.AsyncByteStream)
        headers, gzipped = _skimmed_headers(response)
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_AsyncSkimmedStream(response.stream, gzipped),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
