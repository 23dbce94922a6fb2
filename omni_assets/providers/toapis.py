"""ToAPIs (seeds 002 and 004, docs.toapis.com): generations, video task status, image uploads.

Wire contract (providers.md §3):

* ``POST /v1/videos/generations`` with ``Authorization: Bearer``; answers
  ``{"id","object":"generation.task","model","status":"queued","created_at"}``. Resolution is
  spelled ``720P`` (and ``1080p``) as on the model page.
* ``GET /v1/videos/generations/{task_id}``: top-level ``status`` (queued/submitted, in_progress,
  completed, failed), ``expires_at``, the URL in ``result.data[*].url`` per the schema — but the
  same docs also show ``result.url``, ``video_url`` and ``url``, so all four are read — and
  ``error{code: string, message}`` (or ``fail_reason``) on failure.
* ``POST /v1/uploads/images`` (multipart ``file`` + ``purpose``, ≤10 MB):
  ``{"success":true,"data":{"url",...}}``.
* Errors ``{"error":{"code","message","type"}}``; the ``type`` strings differ between pages, so
  the HTTP status decides (§3.4). ToAPIs pages are forked from APIMart's, so an APIMart-style
  ``data`` envelope is tolerated too.
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

__all__ = ["DIALECT", "ToAPIsClient", "build_body", "parse_status"]

CREATE_PATH = "/v1/videos/generations"
STATUS_PATH = "/v1/videos/generations/{task_id}"
UPLOAD_PATH = "/v1/uploads/images"

STATES = {
    "queued": TaskState.QUEUED,
    "submitted": TaskState.QUEUED,
    "in_progress": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


def _headers(ep: Endpoint) -> dict[str, str]:
    return {"Authorization": f"Bearer {ep.secret.reveal()}", "Accept": "application/json"}


def build_body(request: VideoRequest, caps: ModelCapabilities, src: Sources) -> dict[str, Any]:
    """The create body (seed 002/004); no video field exists on either model."""
    body: dict[str, Any] = {"model": caps.model, "prompt": request.prompt}
    duration = caps.duration_for(request.duration, has_video=False)
    if duration is not None:
        body["duration"] = duration
    key, aspect = caps.aspect_field(request.aspect_ratio)
    body[key] = aspect
    resolution = caps.resolution_for(request.resolution)
    if resolution is not None:
        body["resolution"] = resolution
    if src.image_urls:
        body["image_urls"] = list(src.image_urls)
    return body


def submit_request(
    ep: Endpoint, body: dict[str, Any], idempotency_key: str | None
) -> httpx.Request:
    """``POST`` the create body (ToAPIs documents no idempotency key; none is sent)."""
    return httpx.Request("POST", ep.url(CREATE_PATH), headers=_headers(ep), json=body)


def _task(body: dict[str, Any]) -> dict[str, Any]:
    return body if "status" in body or "id" in body else data_object(body)


def parse_submit(response: httpx.Response) -> Submitted:
    body = json_object(response)
    task = _task(body)
    task_id = as_str(first(task.get("id"), task.get("task_id")))
    return Submitted.of("toapis", response, body, task_id, as_str(task.get("status")))


def status_request(ep: Endpoint, task_id: str) -> httpx.Request:
    return httpx.Request(
        "GET", ep.url(STATUS_PATH.format(task_id=path_segment(task_id))), headers=_headers(ep)
    )


def parse_status(response: httpx.Response, task_id: str, caps: ModelCapabilities) -> TaskStatus:
    body = json_object(response)
    task = _task(body)
    result = task.get("result")
    error = task.get("error")
    return make_status(
        provider="toapis",
        task_id=as_str(task.get("id")) or task_id,
        raw_status=task.get("status"),
        states=STATES,
        video_url=url_from(
            first(
                dig(result, "data"),
                dig(result, "url"),
                dig(result, "video_url"),
                task.get("video_url"),
                task.get("url"),
            )
        ),
        progress=task.get("progress"),
        expires_at=task.get("expires_at"),
        error_message=first(
            dig(error, "message") if isinstance(error, dict) else error, task.get("fail_reason")
        ),
        error_code=dig(error, "code") if isinstance(error, dict) else None,
        created_at=task.get("created_at"),
        completed_at=task.get("completed_at"),
        url_ttl=caps.video_url_ttl,
        raw=body,
    )


def upload_request(ep: Endpoint, filename: str, content: IO[bytes], mime: str) -> httpx.Request:
    return httpx.Request(
        "POST",
        ep.url(UPLOAD_PATH),
        headers=_headers(ep),
        files={"file": (filename, content, mime)},
        data={"purpose": "generation"},
    )


def parse_upload(response: httpx.Response) -> tuple[str, float | None]:
    body = json_object(response)
    url = as_str(first(dig(body, "data", "url"), body.get("url")))
    if url is None:
        raise ProviderError("toapis upload answer holds no url", provider="toapis")
    return url, None


def error_info(response: httpx.Response, op: Op) -> ErrorInfo | None:
    body = json_object(response)
    error = body.get("error")
    failed_flag = body.get("success") is False
    # A failed *task* also has a top-level `error` next to its status: that is not an API error.
    task_shaped = "status" in body
    if response.status_code < 400 and not failed_flag and (task_shaped or error is None):
        return None
    err = error if isinstance(error, dict) else {}
    status = response.status_code
    if status < 400:
        status = as_int(err.get("code")) or 400
    return error_answer(
        response,
        body,
        status=status,
        message=as_str(first(err.get("message"), body.get("message"), error)),
        code=as_str(first(err.get("type"), err.get("code"))),
    )


DIALECT = Dialect(
    name="toapis",
    default_base_url="https://toapis.com",
    build_body=build_body,
    submit_request=submit_request,
    parse_submit=parse_submit,
    status_request=status_request,
    parse_status=parse_status,
    error_info=error_info,
    upload_request=upload_request,
    parse_upload=parse_upload,
)


class ToAPIsClient(ProviderClient):
    """ToAPIs: ``gemini_omni_flash`` (default) and ``gemini_omni``. No video input, no extension."""

    dialect = DIALECT
