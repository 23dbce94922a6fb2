"""A provider's answer before anyone parses it: size-capped, ids shaped, strings clipped.

A provider (or anything posing as one) can answer with a 100 MB JSON document, a gzip bomb that
expands 1000-fold, a status word of 2 MB, or a task id such as ``../../secret-admin?x#y``. Each
of those once went straight into ``json.loads``, a log line, the registry or a URL.

* **Answers are read with a byte cap** (:func:`read_capped`, :func:`aread_capped`): the raw body
  is streamed and decoded here, 64 KiB of output at a time, and the *decoded* bytes counted, so
  a gzip bomb stops at the cap instead of expanding in memory (httpx's own decoder expands a
  whole chunk at once); a larger answer is an :class:`AnswerTooLargeError`. Only ``gzip`` and
  ``deflate`` are asked for (``Accept-Encoding``); an answer in another encoding is refused.
  The cap is ``ClientOptions.max_answer_bytes`` (4 MiB by default: a provider's JSON answer is a
  few KB; Google's inline videos are skimmed out of the stream before it gets here).
* **Task ids are checked when they arrive** (:func:`check_task_id`): one path segment of at most
  255 characters from a conservative alphabet (letters, digits and ``_ . : = + -``); every
  provider's documented and observed ids fit (``task_01J...``, ``video_...``, UUIDs, ``v1_...``).
  A POST answer with any other id is unusable: the task may exist, so the submission is
  ``unknown`` with the reason.
* **Task ids are percent-encoded in every URL** (:func:`path_segment`), whatever the registry
  holds (a record from before the check, a hand-edited database).
* **Provider strings are clipped** (:func:`clip`) before they reach a log, the registry or an
  exception. Clipping is not redaction (``http.redact`` does that); both are applied.
"""

from __future__ import annotations

import re
import zlib
from typing import Any
from urllib.parse import quote

import httpx

from .errors import ProviderUnavailableError

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_ANSWER_BYTES",
    "MAX_TASK_ID_CHARS",
    "AnswerTooLargeError",
    "InvalidTaskIdError",
    "aread_capped",
    "check_task_id",
    "clip",
    "path_segment",
    "read_capped",
]

DEFAULT_MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_TASK_ID_CHARS = 255  # the registry's task_id column
#: Characters kept whole in logs and error messages; the rest is counted, not shown.
CLIP_CHARS = 300

_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+\-]*")


class AnswerTooLargeError(ProviderUnavailableError):
    """The answer's decoded body passed the cap: refused before parsing (nothing was parsed).

    A ``ProviderUnavailableError``: a status read is tried again later (within its deadline); a
    create whose answer is refused may have made a task (its outcome is unknown). Not retried
    at once: the same request gets the same answer.
    """

    retryable = False


class InvalidTaskIdError(ValueError):
    """A task id that is not one path segment of the documented shape."""


def clip(text: str, limit: int = CLIP_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [clipped: {len(text)} characters]"


def check_task_id(task_id: str, provider: str) -> str:
    """``task_id`` when it has the shape every provider's ids have; InvalidTaskIdError if not."""
    if len(task_id) <= MAX_TASK_ID_CHARS and _TASK_ID.fullmatch(task_id):
        return task_id
    raise InvalidTaskIdError(
        f"{provider} answered with a task id that is not one: {clip(repr(task_id), 80)} "
        f"({len(task_id)} characters; expected at most {MAX_TASK_ID_CHARS} of letters, digits "
        "and _ . : = + -)"
    )


def path_segment(value: str) -> str:
    """``value`` as ONE URL path segment: every reserved character encoded, dot segments too."""
    if value in (".", ".."):
        return "%2E" * len(value)
    return quote(value, safe="")


def _too_large(limit: int, provider: str, task_id: str | None) -> AnswerTooLargeError:
    return AnswerTooLargeError(
        f"the answer is larger than {limit:,} bytes (decompressed); refused before parsing",
        provider=provider,
        task_id=task_id,
    )


#: Encodings an answer may come in (asked for with ``Accept-Encoding``); each is decoded here,
#: a bounded step at a time, so that no single chunk can expand past the cap in memory.
ACCEPT_ENCODING = "gzip, deflate"
_STEP = 64 * 1024


class _Decoder:
    """Decodes a Content-Encoding (identity, gzip, deflate) chunk by chunk, ``_STEP`` bytes of
    output at a time (httpx's own decoders expand a whole chunk at once: 64 KB of a bomb is
    64 MB), counting what comes out against ``limit``."""

    def __init__(self, encoding: str, limit: int, provider: str, task_id: str | None) -> None:
        self.limit, self.provider, self.task_id = limit, provider, task_id
        self.size = 0
        self.parts: list[bytes] = []
        names = [e.strip().lower() for e in encoding.split(",") if e.strip()]
        names = [n for n in names if n != "identity"]
        if len(names) > 1 or (names and names[0] not in ("gzip", "x-gzip", "deflate")):
            raise ProviderUnavailableError(
                f"the answer came in an encoding that was not asked for: {clip(encoding, 60)!r}",
                provider=provider,
                task_id=task_id,
            )
        self.name = names[0] if names else None
        self.inflate: Any = None
        if self.name in ("gzip", "x-gzip"):
            self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.name == "deflate":
            self.first = True

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise _too_large(self.limit, self.provider, self.task_id)
        if data:
            self.parts.append(data)

    def feed(self, raw: bytes) -> None:
        if self.name is None:
            self._keep(raw)
            return
        if self.name == "deflate" and self.inflate is None:
            # RFC 9110 says zlib-wrapped; some servers send raw deflate (httpx accepts both).
            wrapped = len(raw) >= 2 and (raw[0] & 0x0F) == 8 and (raw[0] << 8 | raw[1]) % 31 == 0
            self.inflate = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        try:
            data = raw
            while data:
                self._keep(self.inflate.decompress(data, _STEP))
                data = self.inflate.unconsumed_tail
        except zlib.error as exc:
            raise _undecodable(exc, self.provider, self.task_id) from exc

    def body(self) -> bytes:
        if self.inflate is not None:
            try:
                self._keep(self.inflate.flush(_STEP))
            except zlib.error as exc:
                raise _undecodable(exc, self.provider, self.task_id) from exc
        return b"".join(self.parts)


def _undecodable(exc: Exception, provider: str, task_id: str | None) -> ProviderUnavailableError:
    return ProviderUnavailableError(
        f"the answer's encoding is broken ({clip(str(exc), 120)})",
        provider=provider,
        task_id=task_id,
    )


def _decoder(response: httpx.Response, limit: int, provider: str, task_id: str | None) -> _Decoder:
    encoding = response.headers.get("content-encoding", "")
    decoder = _Decoder(encoding, limit, provider, task_id)
    if decoder.name is None:  # not encoded: a declared length over the cap is refused unread
        try:
            declared = int(response.headers["content-length"])
        except (KeyError, ValueError):
            declared = None
        if declared is not None and declared > limit:
            raise _too_large(limit, provider, task_id)
    return decoder


def _already_read(response: httpx.Response, limit: int, provider: str, task_id: str | None) -> bool:
    """A response built in memory (a test's transport) is read already: only its size counts."""
    if not hasattr(response, "_content"):
        return False
    if len(response.content) > limit:
        raise _too_large(limit, provider, task_id)
    return True


def read_capped(
    response: httpx.Response, limit: int, *, provider: str, task_id: str | None = None
) -> httpx.Response:
    """Read a streamed ``response`` whole, at most ``limit`` decoded bytes; closed either way."""
    if _already_read(response, limit, provider, task_id):
        return response
    try:
        decoder = _decoder(response, limit, provider, task_id)
        for raw in response.iter_raw():
            decoder.feed(raw)
        body = decoder.body()
    finally:
        response.close()
    # What response.read() would have stored (decoded): .content, .text, .json() as usual.
    response._content = body
    return response


async def aread_capped(
    response: httpx.Response, limit: int, *, provider: str, task_id: str | None = None
) -> httpx.Response:
    """:func:`read_capped` for an async response."""
    if _already_read(response, limit, provider, task_id):
        return response
    try:
        decoder = _decoder(response, limit, provider, task_id)
        async for raw in response.aiter_raw():
            decoder.feed(raw)
        body = decoder.body()
    finally:
        await response.aclose()
    response._content = body
    return response
