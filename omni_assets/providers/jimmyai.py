"""JimmyAI (seed 000, docs.jimmyai.cn): Gemini Omni create, the shared video query, uploads.

Wire contract (providers.md §1):

* ``POST /api/open-api/v1/gemini/omni/videos`` with ``Authorization: Bearer``; answers
  ``{"code": "20000", "msg": "ok", "data": {"task_id", ...}}`` (code a *string* there).
* ``GET /api/open-api/v1/videos/{taskId}``: ``data.status`` ∈ queued/pending/submitted,
  processing, completed, failed; the video in ``data.result.video_url``, valid 3 days.
* ``POST /api/open-api/v1/files/upload`` (multipart ``file``, ≤100 MB): ``data.url``
  (code an *integer* there).
* Body codes ``20000`` ok, ``20001`` auth, ``20002`` bad parameters, ``-1`` server error
  ([3P] jimiskills); HTTP status codes for errors were not found, so both are read.
"""

from __future__ import annotations

from typing import IO, Any

import httpx

from ..request import GenerationMode, VideoRequest
from ._parse import (
    as_str,
    dig,
    error_answer,
    first,
    json_object,
    make_status,
    url_from,
)
from .answers import path_segment
from .base import TaskState, TaskStatus
from .capabilities import ModelCapabilities
from .client import Dialect, Endpoint, ProviderClient, Submitted
from .errors import ProviderError
from .http import ErrorInfo, Op
from .inputs import Sources

__all__ = ["DIALECT", "JimmyAIClient", "build_body", "parse_status", "parse_submit"]

CREATE_PATH = "/api/open-api/v1/gemini/omni/videos"
QUERY_PATH = "/api/open-api/v1/videos/{task_id}"
UPLOAD_PATH = "/api/open-api/v1/files/upload"

# Query status table (providers.md §1.2); `success` from the FAQ, canceled/cancelled from the
# community CLI's terminal set.
STATES = {
    "queued": TaskState.QUEUED,
    "pending": TaskState.QUEUED,
    "submitted": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "success": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
    "canceled": TaskState.CANCELLED,
    "cancelled": TaskState.CANCELLED,
}

_OK_CODES = {"20000", "200", "0"}
# Body codes mapped onto HTTP-like statuses for the shared classification.
_BODY_CODES = {"20001": 401, "20002": 400, "-1": 500}


def _headers(ep: Endpoint) -> dict[str, str]:
    return {"Authorization": f"Bearer {ep.secret.reveal()}", "Accept": "application/json"}


def build_body(request: VideoRequest, caps: ModelCapabilities, src: Sources) -> dict[str, Any]:
    """The create body: only fields the JimmyAI page documents for this model."""
    body: dict[str, Any] = {"model": caps.model, "prompt": request.prompt}
    has_video = src.video_url is not None
    duration = caps.duration_for(request.duration, has_video=has_video)
    if duration is not None:
        body["duration"] = duration
    resolution = caps.resolution_for(request.resolution)
    if resolution is not None:
        body["resolution"] = resolution
    aspect_key, aspect = caps.aspect_field(request.aspect_ratio)
    body[aspect_key] = aspect
    # generation_type exists on the standard model only ("the standard version of Gemini-Omini
    # supports the following advanced parameters", seed 000).
    if GenerationMode.FRAME in caps.modes and (src.image_urls or request.mode is not None):
        body["generation_type"] = (request.mode or GenerationMode.REFERENCE).value
    if src.image_urls:
        body["image_urls"] = list(src.image_urls)
    if has_video:
        body["video_urls"] = [src.video_url]
    return body


def submit_request(
    ep: Endpoint, body: dict[str, Any], idempotency_key: str | None
) -> httpx.Request:
    """``POST`` the create body (JimmyAI documents no idempotency key; none is sent)."""
    return httpx.Request("POST", ep.url(CREATE_PATH), headers=_headers(ep), json=body)


def _envelope(body: dict[str, Any]) -> dict[str, Any]:
    # The en page wraps the task in {code,msg,data}; the zh snapshot does not (§1.2).
    data = body.get("data")
    return data if isinstance(data, dict) else body


def parse_submit(response: httpx.Response) -> Submitted:
    body = json_object(response)
    data = _envelope(body)
    task_id = as_str(first(data.get("task_id"), data.get("id"), body.get("task_id")))
    return Submitted.of("jimmyai", response, body, task_id, as_str(data.get("status")))


def status_request(ep: Endpoint, task_id: str) -> httpx.Request:
    return httpx.Request(
        "GET", ep.url(QUERY_PATH.format(task_id=path_segment(task_id))), headers=_headers(ep)
    )


def parse_status(response: httpx.Response, task_id: str, caps: ModelCapabilities) -> TaskStatus:
    """Read the query answer, with or without envelope, in every documented spelling."""
    body = json_object(response)
    data = _envelope(body)
    result = data.get("result")
    # result.video_url per the query page; `url`/`mediaUrl` per the FAQ's generic wording.
    video_url = url_from(
        first(
            dig(result, "video_url"),
            dig(result, "url"),
            dig(result, "mediaUrl"),
            data.get("video_url"),
            data.get("url"),
            data.get("mediaUrl"),
        )
    )
    error = data.get("error")
    return make_status(
        provider="jimmyai",
        task_id=as_str(data.get("task_id")) or task_id,
        raw_status=data.get("status"),
        states=STATES,
        video_url=video_url,
        progress=data.get("progress"),
        # error_message per the query page; error_msg/reason per the FAQ.
        error_message=first(
            data.get("error_message"),
            data.get("error_msg"),
            data.get("reason"),
            dig(error, "message") if isinstance(error, dict) else error,
        ),
        error_code=dig(error, "code") if isinstance(error, dict) else None,
        created_at=data.get("created_at"),
        completed_at=data.get("completed_at"),
        url_ttl=caps.video_url_ttl,
        raw=body,
    )


def upload_request(ep: Endpoint, filename: str, content: IO[bytes], mime: str) -> httpx.Request:
    return httpx.Request(
        "POST", ep.url(UPLOAD_PATH), headers=_headers(ep), files={"file": (filename, content, mime)}
    )


def parse_upload(response: httpx.Response) -> tuple[str, float | None]:
    body = json_object(response)
    url = as_str(first(dig(body, "data", "url"), body.get("url")))
    if url is None:
        raise ProviderError(
            "jimmyai upload answer holds no url",
            provider="jimmyai",
            status_code=response.status_code,
        )
    return url, None


def error_info(response: httpx.Response, op: Op) -> ErrorInfo | None:
    """An error from the HTTP status or the body ``code`` (string or int), else None."""
    body = json_object(response)
    code = as_str(body.get("code"))
    message = as_str(
        first(
            body.get("msg"), body.get("message"), dig(body, "error", "message"), body.get("error")
        )
    )
    if response.status_code >= 400:
        return error_answer(response, body, status=response.status_code, message=message, code=code)
    if code is None or code in _OK_CODES:
        return None
    status = _BODY_CODES.get(code) or _http_like(code)
    message = message or f"jimmyai error code {code}"
    return error_answer(response, body, status=status, message=message, code=code)


def _http_like(code: str) -> int | None:
    return int(code) if code.isdigit() and 400 <= int(code) < 600 else None


DIALECT = Dialect(
    name="jimmyai",
    default_base_url="https://www.jimmyai.cn",
    build_body=build_body,
    submit_request=submit_request,
    parse_submit=parse_submit,
    status_request=status_request,
    parse_status=parse_status,
    error_info=error_info,
    upload_request=upload_request,
    parse_upload=parse_upload,
)


class JimmyAIClient(ProviderClient):
    """JimmyAI: ``Gemini-Omini`` (default; aliases ``Omni-Flash-Ext``, ``gemini-omni``) and
    ``omni-10s``."""

    dialect = DIALECT
