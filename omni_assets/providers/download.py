"""Stream a video from a provider URL into any fsspec location, atomically.

The body is streamed, piece by piece as it arrives (memory stays flat for any size), into a
sink (``sinks.py``) while its sha256 is computed; only a complete, verified file appears at the
final path (a temporary sibling then ``os.replace`` locally, a multipart upload completed only
at the end on S3, a temporary sibling then ``fs.mv`` elsewhere), and everything is removed on
any failure, so the final path either holds the whole video or nothing.

Nothing is committed unverified: the body must match its ``Content-Length`` and stay under the
size cap (``ClientOptions.max_download_bytes``); an HTML or JSON page is refused as soon as its
headers arrive; and the caller's ``verify`` hook (the pipeline decodes the whole video) runs on a
local copy of the complete temporary file before the commit. Every hop is checked before it is
fetched (http(s) only, at most ``max_redirects`` redirects, no internal address: ``urlguard.py``).

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
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import fsspec
import httpx

from .._crashpoints import crashpoint
from ..storage.sinks import Sink, open_sink
from .base import DownloadResult, StagedDownload
from .errors import (
    DownloadError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    UrlExpiredError,
)
from .http import ClientOptions, parse_retry_after, transport_error
from .redaction import scrub_exception
from .urlguard import RefusedDestinationError, check_url

__all__ = ["download_to", "safe_url"]

logger = logging.getLogger("omni_assets.providers")

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_EXPIRED_STATUSES = (403, 404, 410)
# Mid-body failures worth a resume: the server answered, then the stream broke.
_BODY_ERRORS = (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError)
_MAX_RESUMES = 100
_REDIRECTS = (301, 302, 303, 307, 308)
# Answers that are a page, not a video: refused before their body is read.
_NOT_VIDEO_TYPES = ("text/", "application/json", "application/xml", "application/xhtml")

#: Called with the complete temporary file before it is committed; raising discards it.
Verify = Callable[[StagedDownload], None]


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
    verify: Verify | None = None,
    allowed: Iterable[tuple[str, int]] = (),
) -> DownloadResult:
    """Download ``url`` to ``fs_url`` (local path or any fsspec URL) and return what landed.

    ``verify`` sees the whole file (a local copy) before it is committed; ``allowed`` are the
    origins that may be internal addresses (the provider's own).
    """
    started = time.monotonic()
    fs, path = fsspec.core.url_to_fs(fs_url, **(storage_options or {}))
    sink = open_sink(fs, path)
    spool = _Spool(sink) if verify is not None else None
    try:
        digest, size = _fetch(client, url, spool or sink, options, provider, tuple(allowed))
        if spool is not None and verify is not None:
            verify(StagedDownload(path=spool.local_path(), sha256=digest, size=size))
        crashpoint("before_commit")
        sink.commit()
    except BaseException:
        sink.discard()
        raise
    finally:
        if spool is not None:
            spool.close()
    return DownloadResult(uri=fs_url, sha256=digest, size=size, seconds=time.monotonic() - started)


class _Spool:
    """The sink, plus a local copy of what was written when the sink keeps none of its own
    (S3, other fsspec filesystems): what ``verify`` decodes is exactly what will be committed."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._copy = None
        if sink.local_path is None:
            self._copy = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by close()
                prefix="omni-download-", suffix=".mp4"
            )

    def write(self, data: bytes) -> None:
        self._sink.write(data)
        if self._copy is not None:
            self._copy.write(data)

    def restart(self) -> None:
        self._sink.restart()
        if self._copy is not None:
            self._copy.seek(0)
            self._copy.truncate()

    def local_path(self) -> str:
        if self._copy is None:
            self._sink.flush()
            assert self._sink.local_path is not None
            return self._sink.local_path
        self._copy.flush()
        return self._copy.name

    def close(self) -> None:
        if self._copy is not None:
            with contextlib.suppress(OSError):
                self._copy.close()


def _fetch(
    client: httpx.Client,
    url: str,
    sink: Sink | _Spool,
    options: ClientOptions,
    provider: str | None,
    allowed: tuple[tuple[str, int], ...],
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
            with _open(client, url, headers, options, provider, allowed) as response:
                if written and not _resumes_at(response, written):
                    # Range ignored (200) or answered from elsewhere: start over cleanly.
                    logger.info("download %s: server ignored Range; restarting", safe_url(url))
                    sink.restart()
                    hasher, written, before = hashlib.sha256(), 0, 0
                if not written:
                    total = _length(response)
                    etag = response.headers.get("etag")
                    _check_headers(response, total, url, options, provider)
                # Each piece goes on as it arrives (no re-buffering: the sink batches what its
                # storage needs), so whatever arrived before a drop is kept.
                for piece in response.iter_bytes():
                    if written + len(piece) > options.max_download_bytes:
                        raise DownloadError(
                            _too_large(url, options, "the body went past it"), provider=provider
                        )
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
                scrub_exception(exc)  # chained under ours: Dagster prints the whole chain
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


def _check_headers(
    response: httpx.Response,
    total: int | None,
    url: str,
    options: ClientOptions,
    provider: str | None,
) -> None:
    """Refuse, before reading the body, an answer that says it is too large or not a video."""
    if total is not None and total > options.max_download_bytes:
        raise DownloadError(
            _too_large(url, options, f"Content-Length says {total:,} bytes"), provider=provider
        )
    kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind.startswith(_NOT_VIDEO_TYPES):
        raise DownloadError(
            f"download of {safe_url(url)} answered a {kind} page, not a video", provider=provider
        )


def _too_large(url: str, options: ClientOptions, why: str) -> str:
    return (
        f"download of {safe_url(url)} refused: larger than the {options.max_download_bytes:,}-"
        f"byte limit ({why}; OMNI_MAX_DOWNLOAD_BYTES raises it)"
    )


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
    allowed: tuple[tuple[str, int], ...],
) -> Iterator[httpx.Response]:
    """A streaming GET whose headers arrived, connection/5xx failures retried."""
    try:
        for attempt in options.download_retry.context():
            with attempt:
                response = _follow(client, url, headers, options, provider, allowed)
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


def _follow(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    options: ClientOptions,
    provider: str | None,
    allowed: tuple[tuple[str, int], ...],
) -> httpx.Response:
    """GET ``url``, following at most ``max_redirects`` redirects, each hop checked first."""
    hop = url
    for _ in range(options.max_redirects + 1):
        check_url(hop, allowed=allowed, allow_private=options.allow_private_urls)
        response = _send(client, hop, headers, options, provider)
        location = response.headers.get("location")
        if response.status_code not in _REDIRECTS or not location:
            return response
        response.close()
        hop = urljoin(hop, location)
    raise RefusedDestinationError(
        f"download of {safe_url(url)} redirected more than {options.max_redirects} times "
        f"(last to {safe_url(hop)})",
        provider=provider,
    )


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
        response = client.send(request, stream=True, follow_redirects=False)
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
