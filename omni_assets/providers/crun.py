"""CRUN (seed 003, docs.crun.ai): CreateTask and TaskInfo for ``google/gemini-omni``.

Wire contract (providers.md §4):

* ``POST /api/v1/client/job/CreateTask`` with ``x-api-key``; body
  ``{"model": "google/gemini-omni", "input": {...}}`` where ``input`` holds ``prompt``,
  ``aspect_ratio``, ``resolution``, ``duration`` (dropped when a video is given), ``img_urls``
  and ``video_list: [{"url", "start", "ends"}]`` ([3P] schema; the doc page's schema could not
  be read). The clip's length is measured before submit (``probe.py``).
  Answers ``{"code":200,"message":"success","data":{"task_id"}}``.
* ``GET /api/v1/client/job/TaskInfo?task_id=…``: ``data.status`` ∈ pending, running, success,
  failed; ``data.result.media_urls[0]``; ``data.result.{code,message}`` on failure; ``credits``.
* Codes 401/402/404/422/429/455/500/501/505 may come as the HTTP status or only as the body
  ``code``: both are read (the [3P] client does the same).
* No upload API (§4.6): local files need a URL from elsewhere (``can_upload`` is False).
"""

from __future__ import annotations

from typing import Any

import httpx

from ..request import VideoRequest
from ._parse import (
    as_int,
    as_str,
    dig,
    error_answer,
    first,
    json_object,
    make_status,
    url_from,
)
from .base import TaskState, TaskStatus
from .capabilities import ModelCapabilities
from .client import Dialect, Endpoint, ProviderClient, Submitted
from .http import ErrorInfo, Op
from .inputs import Sources
from .probe import clip_seconds

__all__ = ["DIALECT", "CRUNClient", "build_body", "parse_status"]

CREATE_PATH = "/api/v1/client/job/CreateTask"
INFO_PATH = "/api/v1/client/job/TaskInfo"

STATES = {
    "pending": TaskState.QUEUED,
    "running": TaskState.RUNNING,
    "success": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


def _headers(ep: Endpoint) -> dict[str, str]:
    return {"x-api-key": ep.secret.reveal(), "Accept": "application/json"}


def build_body(request: VideoRequest, caps: ModelCapabilities, src: Sources) -> dict[str, Any]:
    """``{"model", "input": {...}}``; ``callback_url`` is not sent (this plugin polls)."""
    params: dict[str, Any] = {"prompt": request.prompt}
    key, aspect = caps.aspect_field(request.aspect_ratio)
    params[key] = aspect
    resolution = caps.resolution_for(request.resolution)
    if resolution is not None:
        params["resolution"] = resolution
    duration = caps.duration_for(request.duration, has_video=src.video_url is not None)
    if duration is not None:
        params["duration"] = duration
    if src.image_urls:
        params["img_urls"] = list(src.image_urls)
    if src.video_url is not None:
        # One clip {"url", "start", "ends"}, ends > start >= 0 in whole seconds ([3P] schema,
        # providers.md §4.2): the whole clip, as far as its last whole second.
        clip: dict[str, Any] = {"url": src.video_url}
        if src.video_seconds is not None:
            clip.update(start=0, ends=clip_seconds(src.video_seconds))
        params["video_list"] = [clip]
    return {"model": caps.model, "input": params}


def submit_request(
    ep: Endpoint, body: dict[str, Any], idempotency_key: str | None
) -> httpx.Request:
    """``POST`` CreateTask (CRUN documents no idempotency key; none is sent)."""
    return httpx.Request("POST", ep.url(CREATE_PATH), headers=_headers(ep), json=body)


def parse_submit(response: httpx.Response) -> Submitted:
    body = json_object(response)
    task_id = as_str(first(dig(body, "data", "task_id"), body.get("task_id")))
    return Submitted.of("crun", response, body, task_id, as_str(dig(body, "data", "status")))


def status_request(ep: Endpoint, task_id: str) -> httpx.Request:
    return httpx.Request(
        "GET", ep.url(INFO_PATH), params={"task_id": task_id}, headers=_headers(ep)
    )


def parse_status(response: httpx.Response, task_id: str, caps: ModelCapabilities) -> TaskStatus:
    body = json_object(response)
    data = body.get("data") if isinstance(body.get("data"), dict) else body
    assert isinstance(data, dict)
    result = data.get("result")
    failed = as_str(data.get("status")) == "failed"
    return make_status(
        provider="crun",
        task_id=as_str(data.get("task_id")) or task_id,
        raw_status=data.get("status"),
        states=STATES,
        video_url=url_from(first(dig(result, "media_urls"), dig(result, "video_url"))),
        error_message=first(dig(result, "message") if failed else None, data.get("error")),
        error_code=dig(result, "code") if failed else None,
        credits=data.get("credits"),
        created_at=data.get("create_at"),
        completed_at=data.get("complete_at"),
        url_ttl=caps.video_url_ttl,
        raw=body,
    )


def error_info(response: httpx.Response, op: Op) -> ErrorInfo | None:
    body = json_object(response)
    code = as_int(body.get("code")) if not isinstance(body.get("code"), bool) else None
    status = response.status_code
    if status < 400:
        if code is None or code == 200:
            return None
        # 501 "Generation Failed" next to a task record is the task's outcome, not an API error.
        if op == "status" and code == 501 and dig(body, "data", "status") is not None:
            return None
        status = code
    message = as_str(first(body.get("message"), body.get("msg"), dig(body, "error", "message")))
    fallback = None if response.reason_phrase else f"code {status}"
    return error_answer(
        response, body, status=status, message=message or fallback, code=as_str(body.get("code"))
    )


DIALECT = Dialect(
    name="crun",
    default_base_url="https://api.crun.ai",
    build_body=build_body,
    submit_request=submit_request,
    parse_submit=parse_submit,
    status_request=status_request,
    parse_status=parse_status,
    error_info=error_info,
    needs_video_seconds=True,
)


class CRUNClient(ProviderClient):
    """CRUN: ``google/gemini-omni``. No upload API; ``x-api-key`` authentication."""

    dialect = DIALECT
