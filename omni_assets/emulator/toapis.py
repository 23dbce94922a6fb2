"""ToAPIs' dialect (seeds 002 and 004, tasks/video-status and uploads/images pages).

Mounted at ``/toapis``. Two models with different contracts: ``gemini_omni_flash`` as seed 002
describes it (4/6/10 s, ``720P`` or landscape-only ``1080p``, 0/1/3 reference images; a newer page
narrows this, see providers.md §3.1) and ``gemini_omni`` as seed 004 describes it (6/10 s,
``720P`` only, no image inputs). Errors are ``{"error": {"code": <int>, "message", "type"}}``
except on upload, which answers ``{"success": false, "message": ...}``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .common import Dialect, origin, sniff_image
from .errors import ApiError
from .tasks import POLICY_MARKER, POLICY_MESSAGE, Task
from .validate import choice_int, choice_str, json_object, reject_unknown, required_str, url_list

__all__ = ["ToAPIs"]

FLASH = "gemini_omni_flash"
OMNI = "gemini_omni"
_FLASH_FIELDS = ("model", "prompt", "duration", "aspect_ratio", "resolution", "image_urls")
_OMNI_FIELDS = ("model", "prompt", "duration", "aspect_ratio", "resolution")
_UPLOAD_LIMIT = 10 * 2**20
# The video-status page's table names the statuses; seed 004 names the type strings it shows.
_ERRORS: dict[str, tuple[int, str]] = {
    "validation": (400, "invalid_request_error"),
    "too_large": (400, "invalid_request_error"),
    "auth": (401, "authentication_error"),
    "balance": (402, "insufficient_quota"),
    "not_found": (404, "not_found_error"),
    "conflict": (409, "invalid_request_error"),
    "policy": (422, "content_policy_violation"),
    "rate_limit": (429, "rate_limit_exceeded"),
    "server": (500, "internal_error"),
    "maintenance": (503, "internal_error"),
}


class ToAPIs(Dialect):
    """``POST /v1/videos/generations``, ``GET /v1/videos/generations/{task_id}``, uploads."""

    name = "toapis"
    # Where the video URL is, per the material providers.md §3.2 lists (the doc schema's
    # result.data[0].url is the default), and the status table's ``submitted`` for queued.
    task_quirks = ("result_url", "video_url", "url", "submitted_word")

    def routes(self) -> list[BaseRoute]:
        """Create, query and image upload under ``/v1``."""
        return [
            Route("/v1/videos/generations", self.endpoint("create", self.create), methods=["POST"]),
            Route(
                "/v1/videos/generations/{task_id}",
                self.endpoint("query", self.query),
                methods=["GET"],
            ),
            Route("/v1/uploads/images", self.endpoint("upload", self.upload), methods=["POST"]),
            self.not_found_route(),
        ]

    def error_response(self, err: ApiError, op: str) -> Response:
        """The OpenAI-style error object, or the upload endpoint's ``success: false`` shape."""
        status, type_ = _ERRORS.get(err.kind, (500, "internal_error"))
        if op == "upload":
            return JSONResponse({"success": False, "message": err.message}, status)
        error = {"code": status, "message": err.message, "type": err.type_ or type_}
        return JSONResponse({"error": error}, status)

    async def create(self, request: Request) -> Response:
        """Validate the body for its model and start a task."""
        api_key = self.authenticate(request)
        self.inject_faults(request)
        body = json_object(await request.body())
        model, prompt, duration, aspect = _validate(body)
        if POLICY_MARKER in prompt:
            # ToAPIs documents a synchronous 422 content_policy_violation.
            raise ApiError("policy", POLICY_MESSAGE)
        task = self.new_task(
            request,
            api_key,
            body,
            task_id="video_" + self.ulid(),
            model=model,
            prompt=prompt,
            duration=duration,
            aspect=aspect,
        )
        return JSONResponse(
            {
                "id": task.task_id,
                "object": "generation.task",
                "model": model,
                "status": _queued_word(task),
                "created_at": int(task.created),
            }
        )

    async def query(self, request: Request) -> Response:
        """The task object; once completed, the URL where this task's quirk puts it."""
        api_key = self.authenticate(request)
        self.inject_faults(request)
        task = self.find_task(request.path_params["task_id"], api_key)
        phase = task.phase(self.state.clock())
        words = {
            "queued": _queued_word(task),
            "running": "in_progress",
            "succeeded": "completed",
            "failed": "failed",
        }
        data: dict[str, Any] = {
            "id": task.task_id,
            "object": "generation.task",
            "model": task.model,
            "status": self.status_word(request.url.path, phase, words),
            "progress": phase.progress,
            "created_at": int(task.created),
        }
        if phase.state == "succeeded":
            url, expires = self.video_url(origin(request), task, request.url.path)
            data["completed_at"] = int(task.finished)
            data["expires_at"] = expires
            if task.quirk == "result_url":
                data["result"] = {"type": "video", "url": url}
            elif task.quirk in ("video_url", "url"):
                data[task.quirk] = url
            else:
                data["result"] = {"type": "video", "data": [{"url": url, "format": "mp4"}]}
        elif phase.state == "failed" and task.failure is not None:
            message = f"Generation failed: {task.failure.message}"
            data["error"] = {"code": "generation_failed", "message": message}
        return JSONResponse(data)

    async def upload(self, request: Request) -> Response:
        """Multipart ``file`` (JPEG/PNG/WebP/GIF, up to 10 MB) and optional ``purpose``."""
        self.authenticate(request)
        self.inject_faults(request)
        part, _ = await self.receive_file(request, _UPLOAD_LIMIT, ("purpose",))
        with part.path.open("rb") as f:
            kind = sniff_image(f.read(16))
        if kind is None:
            message = "Unsupported image type. Use JPEG, PNG, WebP or GIF"
            raise self.reject_upload(part, ApiError("validation", message))
        mime, ext = kind
        served, url = self.publish_upload(request, part, mime, ext)
        data = {"id": "upload_" + served.token, "url": url, "mime_type": mime, "size": part.size}
        return JSONResponse({"success": True, "message": "", "data": data})


def _validate(body: dict[str, Any]) -> tuple[str, str, int, str]:
    """(model, prompt, duration, aspect) of a valid create body."""
    model = required_str(body, "model")
    if model == FLASH:
        reject_unknown(body, _FLASH_FIELDS)
        duration = choice_int(body, "duration", (4, 6, 10), 6)
        aspect = choice_str(body, "aspect_ratio", ("16:9", "9:16"), "16:9")
        resolution = choice_str(
            body, "resolution", ("720P", "1080p"), "720P", case_insensitive=True
        )
        if resolution == "1080p" and aspect != "16:9":
            raise ApiError("validation", "resolution 1080p is only supported with 16:9")
        if len(url_list(body, "image_urls", max_items=3)) == 2:
            raise ApiError("validation", "image_urls takes 0, 1 or 3 images, not 2")
    elif model == OMNI:
        if "image_urls" in body:
            raise ApiError("validation", f"{OMNI} does not accept image inputs")
        reject_unknown(body, _OMNI_FIELDS)
        duration = choice_int(body, "duration", (6, 10), 6)
        aspect = choice_str(body, "aspect_ratio", ("16:9", "9:16"), "16:9")
        choice_str(body, "resolution", ("720P",), "720P", case_insensitive=True)
    else:
        raise ApiError("validation", f"unsupported model {model!r}: use {FLASH} or {OMNI}")
    return model, required_str(body, "prompt"), duration, aspect


def _queued_word(task: Task) -> str:
    return "submitted" if task.quirk == "submitted_word" else "queued"
