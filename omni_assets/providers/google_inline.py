"""Stream a video held inline (base64 inside an interaction's JSON) into storage, flat in memory.

Google's Interactions API can return the finished video as ``{"type": "video", "data":
"<base64>"}`` inside the interaction (docs/providers-google.md). The status reading names where
(:func:`inline_url`: the interaction's URL with the JSON path in its fragment); here that
interaction is fetched again and read as it arrives: :class:`~.jsonskim.JsonSkimmer` diverts the
one base64 string to a streaming decoder, the decoded bytes go into the same atomic sink every
other download uses (``storage/sinks.py``) while their sha256 is computed, and the rest of the
document is skimmed and dropped. Memory stays at a few chunks whatever the video's size.

A JSON body cannot be resumed with ``Range``: a connection that drops mid-body starts over into
a clean sink, at most ``ClientOptions.resume_attempts`` times.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import fsspec
import httpx

from .._crashpoints import crashpoint
from ..storage.sinks import open_sink
from .base import DownloadResult, StagedDownload
from .download import _BODY_ERRORS, _open, _Spool, _too_large, safe_url
from .errors import DownloadError
from .http import ClientOptions
from .jsonskim import JsonPath, JsonSkimmer

__all__ = ["INLINE_MARK", "download_inline", "inline_path", "inline_url"]

logger = logging.getLogger("omni_assets.providers")

#: The fragment that marks an interaction URL as "the video is inline, at this path".
INLINE_MARK = "omni-inline="
_URLSAFE = bytes.maketrans(b"-_", b"+/")


def inline_url(interaction_url: httpx.URL, path: JsonPath) -> str:
    """``https://…/interactions/ID#omni-inline=steps/1/content/0/data``."""
    where = "/".join(str(step) for step in path)
    return str(interaction_url.copy_with(query=None, fragment=INLINE_MARK + where))


def inline_path(url: str) -> tuple[str, JsonPath] | None:
    """(the interaction's URL, the JSON path of its video) for an :func:`inline_url`, else None."""
    location, _, fragment = url.partition("#")
    if not fragment.startswith(INLINE_MARK):
        return None
    steps = fragment[len(INLINE_MARK) :].split("/")
    path: JsonPath = tuple(int(s) if s.isdigit() else s for s in steps if s)
    return location, path


class _Writable(Protocol):
    def write(self, data: bytes) -> None: ...

    def restart(self) -> None: ...


class _Base64Sink:
    """Decodes base64 text arriving in arbitrary pieces; writes and hashes the bytes.

    More than ``limit`` decoded bytes is refused (``ClientOptions.max_download_bytes``).
    """

    def __init__(self, sink: _Writable, limit: int) -> None:
        self._sink = sink
        self._limit = limit
        self._pending = bytearray()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def feed(self, text: bytes) -> None:
        self._pending.extend(text)
        whole = len(self._pending) - len(self._pending) % 4
        if whole >= 64 * 1024:
            self._write(bytes(self._pending[:whole]))
            del self._pending[:whole]

    def close(self) -> None:
        rest = bytes(self._pending).rstrip(b"=")
        self._pending.clear()
        if len(rest) % 4 == 1:
            raise ValueError("the base64 video ends in the middle of a character group")
        if rest:
            self._write(rest + b"=" * (-len(rest) % 4))

    def _write(self, text: bytes) -> None:
        # Standard or URL-safe alphabet, as proto3 JSON allows for bytes fields.
        if b"-" in text or b"_" in text:
            text = text.translate(_URLSAFE)
        data = binascii.a2b_base64(text, strict_mode=True)
        if self.size + len(data) > self._limit:
            raise _TooLarge
        self._sink.write(data)
        self.sha256.update(data)
        self.size += len(data)


def download_inline(
    client: httpx.Client,
    url: str,
    fs_url: str,
    *,
    options: ClientOptions,
    provider: str,
    storage_options: dict[str, Any] | None = None,
    verify: Callable[[StagedDownload], None] | None = None,
    allowed: Iterable[tuple[str, int]] = (),
) -> DownloadResult:
    """Decode the inline video that ``url`` (an :func:`inline_url`) names into ``fs_url``.

    As ``download.download_to``: ``verify`` sees the whole file before it is committed;
    ``allowed`` are the origins that may be internal addresses (the provider's own).
    """
    found = inline_path(url)
    if found is None:
        raise ValueError(f"not an inline video URL: {safe_url(url)}")
    location, path = found
    started = time.monotonic()
    fs, target = fsspec.core.url_to_fs(fs_url, **(storage_options or {}))
    sink = open_sink(fs, target)
    spool = _Spool(sink)
    try:
        digest, size = _fetch(client, location, path, spool, options, provider, tuple(allowed))
        if verify is not None:
            verify(StagedDownload(path=spool.local_path(), sha256=digest, size=size))
        crashpoint("before_commit")
        sink.commit()
    except BaseException:
        sink.discard()
        raise
    finally:
        spool.close()
    return DownloadResult(uri=fs_url, sha256=digest, size=size, seconds=time.monotonic() - started)


def _fetch(
    client: httpx.Client,
    location: str,
    path: JsonPath,
    sink: _Writable,
    options: ClientOptions,
    provider: str,
    allowed: tuple[tuple[str, int], ...],
) -> tuple[str, int]:
    where = "/".join(str(p) for p in path)
    for attempt in range(options.resume_attempts + 1):
        if attempt:
            sink.restart()
        decoder = _Base64Sink(sink, options.max_download_bytes)
        skimmer = JsonSkimmer(divert=path, on_divert=decoder.feed)
        headers = {"Accept": "application/json"}
        try:
            with _open(client, location, headers, options, provider, allowed) as r:
                for piece in r.iter_bytes():
                    skimmer.feed(piece)
                    if skimmer.error:
                        break
        except _BODY_ERRORS as exc:
            logger.info(
                "inline video of %s: %s after %d bytes; starting over (%d)",
                safe_url(location),
                type(exc).__name__,
                decoder.size,
                attempt + 1,
            )
            continue
        except _TooLarge:
            raise DownloadError(
                _too_large(location, options, "the decoded inline video went past it"),
                provider=provider,
            ) from None
        except (ValueError, binascii.Error) as exc:
            raise DownloadError(
                f"the inline video at {where} of {safe_url(location)} is not valid base64: {exc}",
                provider=provider,
            ) from exc
        skimmer.close()
        if skimmer.error or not skimmer.diverted:
            why = skimmer.error or f"it holds no string at {where}"
            raise DownloadError(
                f"the interaction {safe_url(location)} has no inline video: {why}",
                provider=provider,
            )
        try:
            decoder.close()
        except (ValueError, binascii.Error) as exc:
            raise DownloadError(
                f"the inline video of {safe_url(location)} is cut short: {exc}", provider=provider
            ) from exc
        if decoder.size == 0:
            raise DownloadError(
                f"the inline video of {safe_url(location)} is empty", provider=provider
            )
        return decoder.sha256.hexdigest(), decoder.size
    raise DownloadError(
        f"the inline video of {safe_url(location)} broke off {options.resume_attempts + 1} times",
        provider=provider,
    )


class _TooLarge(Exception):
    """The decoded video passed ``max_download_bytes``."""
