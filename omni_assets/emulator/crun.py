"""CRUN's dialect (seed 003, the get-task-info page, the ``input`` schema of providers.md §4.2).

Mounted at ``/crun``. Auth is ``x-api-key``. Every answer is ``{"code", "message", "data"}``;
errors carry one of the documented codes (401/402/404/422/429/455/500/501/505) as both body code
and HTTP status. Whether CRUN really sets the HTTP status is undocumented (providers.md §4.4), so
under ``rate_quirks`` an error sometimes comes with HTTP 200 and only the body code.

``callback_url``: when the task finishes, the TaskInfo ``data`` object is POSTed to it once, in
the background, best effort. The emulator only calls back to 127.0.0.1/localhost and refuses
any other callback URL with 422.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .common import Dialect, origin
from .errors import ApiError
from .tasks import Task, uuid4
from .validate import (
    choice_int,
    choice_str,
    json_object,
    optional_str,
    reject_unknown,
    required_str,
    url_list,
)

__all__ = ["Crun"]

MODEL = "google/gemini-omni"
_INPUT_FIELDS = ("prompt", "aspect_ratio", "resolution", "duration", "img_urls", "video_list")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ERRORS = {
    "auth": 401,
    "balance": 402,
    "not_found": 404,
    "validation": 422,
    "too_large": 422,
    "conflict": 422,
    "policy": 422,
    "rate_limit": 429,
    "maintenance": 455,
    "server": 500,
}
_WORDS = {"queued": "pending", "running": "running", "succeeded": "success", "failed": "failed"}
# The emulator's own price list, in credits per rendered second.
_CREDITS_PER_SECOND = {"720p": 5, "1080p": 8, "4k": 15}
# With a source video the duration must be omitted ("model decides"); the emulator renders 6 s.
_VIDEO_EDIT_DURATION = 6


class Crun(Dialect):
    """``POST /api/v1/client/job/CreateTask`` and ``GET /api/v1/client/job/TaskInfo``."""

    name = "crun"

    def routes(self) -> list[BaseRoute]:
        """Create and TaskInfo under ``/api/v1/client/job``."""
        prefix = "/api/v1/client/job"
        return [
            Route(f"{prefix}/CreateTask", self.endpoint("create", self.create), methods=["POST"]),
            Route(f"{prefix}/TaskInfo", self.endpoint("query", self.task_info), methods=["GET"]),
            self.not_found_route(),
        ]

    def api_key(self, request: Request) -> str | None:
        """The ``x-api-key`` header (header names are case-insensitive)."""
        return request.headers.get("x-api-key", "").strip() or None

    def inject_faults(self, request: Request) -> None:
        """429/5xx as every dialect, plus CRUN's 455 maintenance."""
        super().inject_faults(request)
        if self.state.faults.roll("crun_maintenance", self.state.config.rate_crun_maintenance):
            self.state.record_fault("455", self.name, request.url.path)
            raise ApiError("maintenance", "System is currently undergoing maintenance")

    def error_response(self, err: ApiError, op: str) -> Response:
        """``{"code": <documented code>, "message", "data": null}``."""
        code = _ERRORS.get(err.kind, 500)
        status = 200 if self.quirky_error() else code
        return JSONResponse({"code": code, "message": err.message, "data": None}, status)

    async def create(self, request: Request) -> Response:
        """Validate ``{"model", "callback_url"?, "input"}`` and start a task."""
        api_key = self.authenticate(request)
        self.inject_faults(request)
        body = json_object(await request.body())
        reject_unknown(body, ("model", "callback_url", "input"))
        model = required_str(body, "model")
        if model != MODEL:
            raise ApiError("validation", f"model must be {MODEL}, got {model!r}")
        callback = _callback_url(body)
        inp = body.get("input")
        if not isinstance(inp, dict):
            raise ApiError("validation", "input is required and must be an object")
        reject_unknown(inp, _INPUT_FIELDS, where="input")
        prompt = required_str(inp, "prompt", where="input", max_len=20_000)
        aspect = choice_str(inp, "aspect_ratio", ("16:9", "9:16"), "16:9", where="input")
        resolution = choice_str(inp, "resolution", ("720p", "1080p", "4k"), "720p", where="input")
        has_video = _video_clip(inp)
        if has_video and inp.get("duration") is not None:
            message = "input.duration must be omitted when input.video_list is given"
            raise ApiError("validation", message)
        duration = choice_int(inp, "duration", (4, 6, 8, 10), 4, where="input")
        url_list(inp, "img_urls", max_items=5 if has_video else 7, where="input")
        rendered = _VIDEO_EDIT_DURATION if has_video else duration
        task = self.new_task(
            request,
            api_key,
            body,
            task_id=uuid4(self.state.faults.stream("ids")),
            model=model,
            prompt=prompt,
            duration=rendered,
            aspect=aspect,
            extras={"credits": rendered * _CREDITS_PER_SECOND[resolution]},
        )
        if callback is not None:
            self._schedule_callback(task, callback, origin(request))
        return JSONResponse({"code": 200, "message": "success", "data": {"task_id": task.task_id}})

    async def task_info(self, request: Request) -> Response:
        """``?task_id=`` → the task's ``data`` object."""
        api_key = self.authenticate(request)
        self.inject_faults(request)
        task_id = request.query_params.get("task_id")
        if not task_id:
            raise ApiError("validation", "query parameter task_id is required")
        task = self.find_task(task_id, api_key)
        data = self._info(task, origin(request), request.url.path)
        return JSONResponse({"code": 200, "message": "success", "data": data})

    def _info(self, task: Task, base: str, path: str) -> dict[str, Any]:
        phase = task.phase(self.state.clock())
        terminal = phase.state in ("succeeded", "failed")
        result: dict[str, Any] | None = None
        if phase.state == "succeeded":
            url, _ = self.video_url(base, task, path)
            result = {"code": 200, "message": "success", "media_urls": [url]}
        elif phase.state == "failed" and task.failure is not None:
            result = {"code": 501, "message": task.failure.message}
        return {
            "task_id": task.task_id,
            "provider": "Google",
            "model_version": "gemini-omni",
            "status": self.status_word(path, phase, _WORDS),
            "param": {
                "model": task.body["model"],
                "callback_url": task.body.get("callback_url"),
                "input": task.body["input"],
            },
            "create_at": int(task.created),
            "result": result,
            "duration_s": round(task.generation_seconds, 3) if terminal else None,
            "complete_at": int(task.finished) if terminal else None,
            "credits": (0 if task.failure else task.extras["credits"]) if terminal else None,
            "source": "api",
        }

    def _schedule_callback(self, task: Task, url: str, base: str) -> None:
        state = self.state

        async def deliver() -> None:
            # Loop: the event loop's timer can wake a hair before the wall clock gets there.
            while (remaining := task.finished - state.clock()) > 0:
                await asyncio.sleep(remaining + 0.005)
            data = self._info(task, base, "callback")
            event: dict[str, Any] = {"provider": self.name, "task_id": task.task_id, "url": url}
            try:
                # Loopback only (checked at create), so no proxies and no certificate checks.
                async with httpx.AsyncClient(timeout=10.0, trust_env=False, verify=False) as client:
                    response = await client.post(url, json=data)
                event["status"] = response.status_code
            except httpx.HTTPError as exc:
                event["error"] = f"{type(exc).__name__}: {exc}"
            state.audit.record("callbacks", **event, time=state.clock())

        delivery = asyncio.get_running_loop().create_task(deliver())
        state.callbacks.add(delivery)
        delivery.add_done_callback(state.callbacks.discard)


def _callback_url(body: dict[str, Any]) -> str | None:
    url = optional_str(body, "callback_url")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in _LOOPBACK:
        message = "the emulator only delivers callbacks to http://127.0.0.1 or localhost"
        raise ApiError("validation", message)
    return url


def _video_clip(inp: dict[str, Any]) -> bool:
    """Validate ``input.video_list`` (one clip, ``ends > start >= 0``); True when given."""
    clips = inp.get("video_list")
    if clips is None or clips == []:
        return False
    if not isinstance(clips, list) or len(clips) != 1 or not isinstance(clips[0], dict):
        raise ApiError("validation", "input.video_list must hold exactly one clip object")
    clip = clips[0]
    where = "input.video_list[0]"
    reject_unknown(clip, ("url", "start", "ends"), where=where)
    url_list({"url": [clip.get("url")]}, "url", max_items=1, where=where)
    start, ends = _seconds(clip, "start", where), _seconds(clip, "ends", where)
    if not 0 <= start < ends:
        raise ApiError("validation", f"{where} needs ends > start >= 0")
    return True


def _seconds(clip: dict[str, Any], key: str, where: str) -> int:
    value = clip.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError("validation", f"{where}.{key} must be a whole number of seconds")
    return value
