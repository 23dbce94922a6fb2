"""Tolerant reading of provider JSON, and the one place a status reading is assembled.

Provider bodies drift between doc versions (providers.md §5): numbers arrive as strings, URLs as
a string or a list, envelopes come and go. These helpers never raise on a surprising shape; they
return None and let the dialect try the next documented location.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from .answers import clip
from .base import TaskState, TaskStatus
from .http import ErrorInfo, parse_retry_after
from .redaction import redact, redact_opt

__all__ = [
    "as_float",
    "as_int",
    "as_str",
    "data_object",
    "dig",
    "error_answer",
    "first",
    "json_object",
    "make_status",
    "request_id_of",
    "url_from",
]

logger = logging.getLogger("omni_assets.providers")

#: A status word is a word: what is kept of a longer one (logged, stored, compared).
STATUS_WORD_CHARS = 64


def _clipped(text: str | None, limit: int = 2000) -> str | None:
    return None if text is None else clip(text, limit)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object; ``{}`` when it is empty, not JSON or not an object."""
    try:
        data = response.json()
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the stack
        return {}
    return data if isinstance(data, dict) else {}


def dig(obj: Any, *path: str | int) -> Any:
    """``obj[p0][p1]...`` or None as soon as a step is missing or of the wrong type."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or not -len(obj) <= step < len(obj):
                return None
            obj = obj[step]
        elif isinstance(obj, Mapping):
            obj = obj.get(step)
        else:
            return None
        if obj is None:
            return None
    return obj


def first(*values: Any) -> Any:
    """The first value that is neither None nor empty."""
    for value in values:
        if value is not None and value != "" and value != [] and value != {}:
            return value
    return None


def as_str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_int(value: Any) -> int | None:
    number = as_float(value)
    return int(number) if number is not None else None


def url_from(value: Any) -> str | None:
    """A URL from a string, a list of strings, or objects with ``url`` (APIMart sends a list)."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        for item in value:
            found = url_from(item)
            if found:
                return found
    if isinstance(value, Mapping):
        return url_from(value.get("url"))
    return None


def data_object(body: dict[str, Any]) -> dict[str, Any]:
    """The object under ``data`` (the first item of a list, as legacy create answers have it),
    else the body itself: the envelope APIMart and ToAPIs wrap a task in."""
    data = body.get("data")
    if isinstance(data, list):
        data = data[0] if data else None
    return data if isinstance(data, dict) else body


def request_id_of(response: httpx.Response, body: Mapping[str, Any] | None = None) -> str | None:
    """The provider's request id: a ``request_id`` body field or an ``X-Request-Id`` header,
    redacted (a careless provider echoes the request's headers, the key among them)."""
    found = as_str((body or {}).get("request_id")) or response.headers.get("x-request-id")
    return redact_opt(found)


def error_answer(
    response: httpx.Response,
    body: Mapping[str, Any],
    *,
    status: int | None,
    message: str | None,
    code: str | None,
    retry_after: float | None = None,
) -> ErrorInfo:
    """A dialect's reading of an error answer, with what every answer carries the same way:
    the message (else the reason phrase, else ``HTTP <status>``), ``Retry-After`` (else
    ``retry_after``, a dialect's own hint), the request id and the HTTP status."""
    return ErrorInfo(
        status=status,
        message=message or response.reason_phrase or f"HTTP {response.status_code}",
        code=code,
        retry_after=first(parse_retry_after(response.headers.get("retry-after")), retry_after),
        request_id=request_id_of(response, body),
        http_status=response.status_code,
    )


def make_status(
    *,
    provider: str,
    task_id: str,
    raw_status: Any,
    states: Mapping[str, TaskState],
    video_url: str | None = None,
    progress: Any = None,
    expires_at: Any = None,
    error_message: Any = None,
    error_code: Any = None,
    cost: Any = None,
    credits: Any = None,
    created_at: Any = None,
    completed_at: Any = None,
    retry_after: float | None = None,
    url_ttl: float,
    raw: dict[str, Any],
    now: float | None = None,
) -> TaskStatus:
    """Assemble a :class:`TaskStatus`, applying the rules every provider shares.

    An unknown status word is RUNNING with ``recognized=False`` (logged; the caller keeps polling
    until its deadline). "Completed" without a usable ``http(s)`` video URL is FAILED: JimmyAI's
    older responses carried a relative OSS key instead of a URL (providers.md §1.2) that no one
    can download, and marking it succeeded would only move the failure to the download.
    Without an ``expires_at`` the URL is assumed to live ``url_ttl`` seconds from completion.
    """
    # Redacted (the one redactor), then clipped: a provider's strings reach logs and the
    # registry (a 2 MB status word once did).
    word = clip(redact(as_str(raw_status) or "").lower(), STATUS_WORD_CHARS)
    state = states.get(word)
    recognized = state is not None
    if state is None:
        state = TaskState.RUNNING
        logger.warning(
            "%s task %s: unknown status %r; polling on until the deadline",
            provider,
            task_id,
            word,
        )
    message = _clipped(redact_opt(as_str(error_message)))
    code = _clipped(redact_opt(as_str(error_code)), 120)
    if state is TaskState.SUCCEEDED:
        if not video_url:
            state, code = TaskState.FAILED, code or "no_video_url"
            message = f"{provider} reported the task completed but returned no video URL"
        elif not video_url.startswith(("http://", "https://")):
            state, code = TaskState.FAILED, "relative_video_url"
            message = (
                f"{provider} reported the task completed but the video location "
                f"{clip(repr(video_url), 200)} is not an http(s) URL (a relative storage key); "
                "it cannot be downloaded: query again later or ask the provider for the file"
            )
    created = as_float(created_at)
    completed = as_float(completed_at)
    expires = as_float(expires_at)
    if expires is None and state is TaskState.SUCCEEDED:
        base = completed or created or (time.time() if now is None else now)
        expires = base + url_ttl
    percent = as_int(progress)
    return TaskStatus(
        provider=provider,
        task_id=task_id,
        state=state,
        raw_status=word,
        recognized=recognized,
        progress=max(0, min(100, percent)) if percent is not None else None,
        video_url=video_url if state is TaskState.SUCCEEDED else None,
        expires_at=expires,
        error_message=message,
        error_code=code,
        cost=as_float(cost),
        credits=as_float(credits),
        created_at=created,
        completed_at=completed,
        retry_after=retry_after,
        raw=raw,
    )
