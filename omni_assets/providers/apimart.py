"""APIMart (seed 001, docs.apimart.ai): generations, task status, image uploads.

Wire contract (providers.md §2):

* ``POST /v1/videos/generations`` with ``Authorization: Bearer``. Every create carries an
  ``Idempotency-Key`` and ``X-APIMart-Response-Version: 2026-07-27`` (vendor repo
  ``apimart-ai/apimart-skills``): a timed-out create is replayed with the *same* key, never a new
  one. The answer is the legacy ``{"code":200,"data":[{"status","task_id"}]}`` or, with that
  version, ``{"data":{"object","id","status"},"request_id"}``; both are read.
* ``GET /v1/tasks/{task_id}``: ``{"code":200,"data":{status, progress, result.videos[0].url
  (an array, or a string on older pages), expires_at, cost, credits_cost, error{code,message,
  type}}}``.
* ``POST /v1/uploads/images`` (multipart ``file``, ≤20 MB): ``{"url", ...}``, valid 72 h.
* Errors: ``{"error":{"code":int,"message","type"}}``; also ``{"success":false,"message"}``.
"""

from __future__ import annotations

from typing import IO, Any

import httpx

from ..request import VideoRequest
from ._parse import (
    as_int,
    as_str,
    data_object,
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

__all__ = ["DIALECT", "RESPONSE_VERSION", "APIMartClient", "build_body", "parse_status"]

CREATE_PATH = "/v1/videos/generations"
STATUS_PATH = "/v1/tasks/{task_id}"
UPLOAD_PATH = "/v1/uploads/images"
RESPONSE_VERSION = "2026-07-27"

STATES = {
    "submitted": TaskState.QUEUED,
    "pending": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
    "cancelled": TaskState.CANCELLED,
}

# Error `type` strings with no usable HTTP status (cn Omni-Flash-Ext page, seed 001).
_TYPES = {
    "invalid_request_error": 400,
    "invalid_duration": 400,
    "invalid_resolution": 400,
    "unsupported_image_count": 400,
    "authentication_error": 401,
    "payment_required": 402,
    "rate_limit_error": 429,
}


def _headers(ep: Endpoint) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {ep.secret.reveal()}",
        "Accept": "application/json",
        "X-APIMart-Response-Version": RESPONSE_VERSION,
    }


def build_body(request: VideoRequest, caps: ModelCapabilities, src: Sources) -> dict[str, Any]:
    """The create body; ``gemini-omni-flash-preview`` has no ``duration`` field (seed 001)."""
    body: dict[str, Any] = {"model": caps.model, "prompt": request.prompt}
    duration = caps.duration_for(request.duration, has_video=src.video_url is not None)
    if duration is not None:
        body["duration"] = duration
    key, aspect = caps.aspect_field(request.aspect_ratio)
    body[key] = aspect
    resolution = caps.resolution_for(request.resolution)
    if resolution is not None:
        body["resolution"] = resolution
    if src.image_urls:
        body["image_urls"] = list(src.image_urls)
    if src.video_url is not None:
        body["video_urls"] = [src.video_url]
    if src.extend_task_id is not None:
        body["extend_from_task_id"] = src.extend_task_id
    return body


def submit_request(
    ep: Endpoint, body: dict[str, Any], idempotency_key: str | None
) -> httpx.Request:
    headers = _headers(ep)
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return httpx.Request("POST", ep.url(CREATE_PATH), headers=headers, json=body)


def parse_submit(response: httpx.Response) -> Submitted:
    body = json_object(response)
    data = data_object(body)
    task_id = as_str(first(data.get("task_id"), data.get("id")))
    return Submitted.of("apimart", response, body, task_id, as_str(data.get("status")))


def status_request(ep: Endpoint, task_id: str) -> httpx.Request:
    return httpx.Request(
        "GET", ep.url(STATUS_PATH.format(task_id=path_segment(task_id))), headers=_headers(ep)
    )


def parse_status(response: httpx.Response, task_id: str, caps: ModelCapabilities) -> TaskStatus:
    body = json_object(response)
    data = data_object(body)
    result = data.get("result")
    video = dig(result, "videos", 0)
    error = data.get("error")
    return make_status(
        provider="apimart",
        task_id=as_str(data.get("id")) or task_id,
        raw_status=data.get("status"),
        states=STATES,
        # `url` is an array of strings; an older example shows a plain string (§2.2).
        video_url=url_from(first(dig(video, "url"), dig(result, "video_url"), dig(result, "url"))),
        progress=data.get("progress"),
        expires_at=first(dig(video, "expires_at"), data.get("expires_at")),
        error_message=dig(error, "message") if isinstance(error, dict) else error,
        error_code=first(dig(error, "type"), dig(error, "code"))
        if isinstance(error, dict)
        else None,
        cost=data.get("cost"),
        credits=data.get("credits_cost"),
        created_at=first(data.get("created"), data.get("created_at")),
        completed_at=first(data.get("completed"), data.get("completed_at")),
        url_ttl=caps.video_url_ttl,
        raw=body,
    )


def upload_request(ep: Endpoint, filename: str, content: IO[bytes], mime: str) -> httpx.Request:
    headers = {"Authorization": f"Bearer {ep.secret.reveal()}", "Accept": "application/json"}
    return httpx.Request(
        "POST", ep.url(UPLOAD_PATH), headers=headers, files={"file": (filename, content, mime)}
    )


def parse_upload(response: httpx.Response) -> tuple[str, float | None]:
    """``{"url","filename","content_type","bytes","created_at"}``; the URL lives 72 h (§2.3)."""
    body = json_object(response)
    data = data_object(body)
    url = as_str(data.get("url"))
    if url is None:
        raise ProviderError("apimart upload answer holds no url", provider="apimart")
    created = as_int(data.get("created_at"))
    return url, (created + 72 * 3600.0) if created else None


def error_info(response: httpx.Response, op: Op) -> ErrorInfo | None:
    body = json_object(response)
    error = body.get("error")
    failed_flag = body.get("success") is False
    code = body.get("code")
    body_code = as_int(code) if not isinstance(code, bool) else None
    body_failed = isinstance(error, dict) or failed_flag or (body_code or 0) >= 400
    if response.status_code < 400 and not body_failed:
        return None
    err = error if isinstance(error, dict) else {}
    kind = as_str(err.get("type"))
    status = response.status_code
    if status < 400:
        status = as_int(err.get("code")) or body_code or _TYPES.get(kind or "") or 400
    return error_answer(
        response,
        body,
        status=status,
        message=as_str(first(err.get("message"), body.get("message"), body.get("error"))),
        code=kind or as_str(err.get("code")),
    )


DIALECT = Dialect(
    name="apimart",
    default_base_url="https://api.apimart.ai",
    build_body=build_body,
    submit_request=submit_request,
    parse_submit=parse_submit,
    status_request=status_request,
    parse_status=parse_status,
    error_info=error_info,
    upload_request=upload_request,
    parse_upload=parse_upload,
    idempotent_submit=True,
)


class APIMartClient(ProviderClient):
    """APIMart: ``gemini-omni-flash-preview`` (default) and ``Omni-Flash-Ext``.

    Submits are replayed safely with the same ``Idempotency-Key`` on timeouts and 5xx.
    """

    dialect = DIALECT
