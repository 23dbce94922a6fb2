"""Stream a video from a provider URL into any fsspec location, atomically.

The body is streamed, piece by piece as it arrives (memory stays flat for any size), into a
sink (``sinks.py``) while its sha256 is computed; only a complete, verified file appears at the
final path (a temporary sibling then ``os.replace`` locally, a multipart upload completed only
at the end on S3, a temporary sibling then ``fs.mv`` elsewhere), and everything is removed on
any failure, so the final path either holds the whole video or nothing.

A connection that drops mid-body is resumed with ``Range: bytes=N-`` into the same open file and
running hash (``If-Range`` guards against the object changing meanwhile); a server that ignores
the range gets a clean restart. Provider URLs are short-lived (JimmyAI 3 days, APIMart/ToAPIs
24 h: providers.md §0): a 403/404/410 or an "expired" body raises :class:`UrlExpiredError` so the
caller can query the task again for a fresh URL instead of failing the video.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import fsspec
import httpx

from .._crashpoints import crashpoint
from ..storage.sinks import Sink, open_sink
from .base import DownloadResult
from .errors import (
    DownloadError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    UrlExpiredError,
)
from .http import ClientOptions, parse_retry_after, transport_error

__all__ = ["download_to", "safe_url"]

logger = logging.getLogger("omni_assets.providers")

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_EXPIRED_STATUSES = (403, 404, 410)
# Mid-body failures worth a resume: the server answered, then the stream broke.
_BODY_ERRORS = (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError)
_MAX_RESUMES = 100


def safe_url(url: str) -> str:
    """``url`` without its query string: signed URLs carry short-lived credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def download_to(
    client: httpx.Client,
    url: str,
    fs_url: str,
    *,
    options: ClientOptions,
    provider: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> DownloadResult:
    """Download ``url`` to ``fs_url`` (local path or any fsspec URL) and return what landed."""
    started = time.monotonic()
    fs, path = fsspec.core.url_to_fs(fs_url, **(storage_options or {}))
    sink = open_sink(fs, path)
    try:
        digest, size = _fetch(client, url, sink, options, provider)
        crashpoint("before_commit")
        sink.commit()
    except BaseException:
        sink.discard()
        raise
    return DownloadResult(uri=fs_url, sha256=digest, size=size, seconds=time.monotonic() - started)


def _fetch(
    client: httpx.Client,
    url: str,
    sink: Sink,
    options: ClientOptions,
    provider: str | None,
) -> tuple[str, int]:
    hasher = hashlib.sha256()
    written = unmarked = 0
    total: int | None = None
    etag: str | None = None
    stalls = resumes = 0
    while True:
        before = written
        headers = {"Accept-Encoding": "identity"}
        if written:
            headers["Range"] = f"bytes={written}-"
            if etag and not etag.startswith("W/"):
                headers["If-Range"] = etag
        try:
            with _open(client, url, headers, options, provider) as response:
                if written and not _resumes_at(response, written):
                    # Range ignored (200) or answered from elsewhere: start over cleanly.
                    logger.info("download %s: server ignored Range; restarting", safe_url(url))
                    sink.restart()
                    hasher, written, before = hashlib.sha256(), 0, 0
                if not written:
                    total = _length(response)
                    etag = response.headers.get("etag")
                # Each piece goes on as it arrives (no re-buffering: the sink batches what its
                # storage needs), so whatever arrived before a drop is kept.
                for piece in response.iter_bytes():
                    sink.write(piece)
                    hasher.update(piece)
                    written += len(piece)
                    unmarked += len(piece)
                    if unmarked >= options.chunk_size:
                        unmarked = 0
                        crashpoint("mid_download")
        except _BODY_ERRORS as exc:
            # A drop after real progress does not count against the budget; drops that
            # deliver (almost) nothing do, and the total is capped whatever happens.
            stalls = 0 if written - before >= options.chunk_size else stalls + 1
            resumes += 1
            if stalls > options.resume_attempts or resumes > _MAX_RESUMES:
                raise DownloadError(
                    f"download of {safe_url(url)} broke off {resumes} times "
                    f"({type(exc).__name__}: {exc})",
                    provider=provider,
                ) from exc
            logger.info(
                "download %s: %s at byte %d; resuming (%d)",
                safe_url(url),
                type(exc).__name__,
                written,
                resumes,
            )
            continue
        if total is not None and before < written < total and resumes < _MAX_RESUMES:
            resumes += 1
            continue
        break
    if total is not None and written != total:
        raise DownloadError(
            f"download of {safe_url(url)} ended at {written} of {total} bytes", provider=provider
        )
    if written == 0:
        raise DownloadError(f"download of {safe_url(url)} was empty", provider=provider)
    return hasher.hexdigest(), written


def _resumes_at(response: httpx.Response, offset: int) -> bool:
    if response.status_code != 206:
        return False
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    return match is not None and int(match.group(1)) == offset


def _length(response: httpx.Response) -> int | None:
    """The full size of the object, when the response says it."""
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    if match and match.group(3) != "*":
        return int(match.group(3))
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


@contextlib.contextmanager
def _open(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    options: ClientOptions,
    provider: str | None,
) -> Iterator[httpx.Response]:
    """A streaming GET whose headers arrived, connection/5xx failures retried."""
    try:
        for attempt in options.download_retry.context():
            with attempt:
                response = _send(client, url, headers, options, provider)
        try:
            yield response
        finally:
            response.close()
    except ProviderError as exc:
        raise DownloadError(
            f"download of {safe_url(url)} failed: {exc.message}",
            provider=provider,
            status_code=exc.status_code,
        ) from exc


def _send(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    options: ClientOptions,
    provider: str | None,
) -> httpx.Response:
    request = client.build_request(
        "GET", url, headers=headers, timeout=options.timeout(options.download_read_timeout)
    )
    try:
        response = client.send(request, stream=True, follow_redirects=True)
    except httpx.TransportError as exc:
        raise transport_error(exc, provider=provider or "download", op="download") from exc
    status = response.status_code
    if status < 400:
        return response
    body = response.read()[:2000].decode("utf-8", "replace")
    response.close()
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429:
        raise RateLimitedError(body or "rate limited", retry_after=retry_after, status_code=429)
    if status >= 500:
        raise ProviderUnavailableError(
            body or "server error", retry_after=retry_after, status_code=status
        )
    if status in _EXPIRED_STATUSES or "expire" in body.lower():
        raise UrlExpiredError(
            f"the video URL {safe_url(url)} has expired or is gone (HTTP {status}); "
            "query the task again for a fresh URL",
            provider=provider,
            status_code=status,
        )
    raise DownloadError(
        f"download of {safe_url(url)} refused (HTTP {status}): {body[:300]}",
        provider=provider,
        status_code=status,
    )
