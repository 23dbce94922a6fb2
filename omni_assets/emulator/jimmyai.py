"""JimmyAI's dialect (seed 000; docs.jimmyai.cn create, query and files-upload pages).

Mounted at ``/jimmyai``. Envelope ``{"code": "20000", "msg": "ok", "data": {...}}`` with a
string code on create/query and an integer code on upload, as documented. Body codes 20001
(auth), 20002 (parameters) and -1 (server) go out with a matching HTTP status; JimmyAI documents
no HTTP statuses at all, so under ``rate_quirks`` an error is sometimes sent with HTTP 200 and
only the body code, the way the community CLI expects to have to handle.
"""

from __future__ import annotations

import mimetypes
from pathlib import PurePath
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .common import Dialect, origin
from .errors import ApiError
from .tasks import Task
from .validate import (
    choice_int,
    choice_str,
    json_object,
    optional_str,
    reject_unknown,
    required_str,
    url_list,
)

__all__ = ["JimmyAI"]

_MODELS = {
    "Gemini-Omini": "Gemini-Omini",
    "Omni-Flash-Ext": "Gemini-Omini",
    "gemini-omni": "Gemini-Omini",
    "omni-10s": "omni-10s",
}
_FIELDS = (
    "model",
    "prompt",
    "duration",
    "resolution",
    "aspect_ratio",
    "orientation",
    "image_urls",
    "images",
    "generation_type",
    "video_urls",
)
_ORIENTATIONS = {"landscape": "16:9", "portrait": "9:16"}
_UPLOAD_LIMIT = 100 * 2**20
# files-upload page: accepted image, video and audio extensions.
_IMAGES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".svg")
_VIDEOS = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v", ".flv")
_AUDIO = (".mp3", ".wav", ".aac", ".m4a", ".flac", ".ogg")
_UPLOAD_EXTENSIONS = frozenset((*_IMAGES, *_VIDEOS, *_AUDIO))
_ERRORS: dict[str, tuple[int, int]] = {
    "auth": (401, 20001),
    "validation": (400, 20002),
    "not_found": (404, 20002),
    "conflict": (409, 20002),
    "too_large": (413, 20002),
    "policy": (400, 20002),
    "balance": (402, -1),
    "rate_limit": (429, -1),
    "server": (500, -1),
    "maintenance": (503, -1),
}
# With a reference video the page says duration is "not required" (the model decides); the
# emulator then renders the default length.
_DEFAULT_DURATION = 6


class JimmyAI(Dialect):
    """``POST .../gemini/omni/videos``, ``GET .../videos/{taskId}``, ``POST .../files/upload``."""

    name = "jimmyai"
    # Documented variants: the zh query page without the envelope, an integer code, the FAQ's
    # "success" for completed, and the status table's other queued words.
    task_quirks = ("no_envelope", "int_code", "success_word", "pending_word", "submitted_word")

    def routes(self) -> list[BaseRoute]:
        """Create, query and upload under ``/api/open-api/v1``."""
        prefix = "/api/open-api/v1"
        return [
            Route(
                f"{prefix}/gemini/omni/videos",
                self.endpoint("create", self.create),
                methods=["POST"],
            ),
            Route(
                f"{prefix}/videos/{{taskId}}", self.endpoint("query", self.query), methods=["GET"]
            ),
            Route(f"{prefix}/files/upload", self.endpoint("upload", self.upload), methods=["POST"]),
            self.not_found_route(),
        ]

    def error_response(self, err: ApiError, op: str) -> Response:
        """``{"code", "msg", "data": null}``; code is an int on upload, a string elsewhere."""
        status, code = _ERRORS.get(err.kind, (500, -1))
        body_code: int | str = code if op == "upload" else str(code)
        if self.quirky_error():
            status = 200
        return JSONResponse({"code": body_code, "msg": err.message, "data": None}, status)

    async def create(self, request: Request) -> Response:
        """Validate a Gemini Omni create body and start a task."""
        api_key = self.authenticate(request)
        self.inject_faults(request)
        body = json_object(await request.body())
        model, prompt, duration, aspect = _validate(body)
        task = self.new_task(
            request,
            api_key,
            body,
            task_id=self.ulid(),
            model=model,
            prompt=prompt,
            duration=duration,
            aspect=aspect,
        )
        data = {
            "task_id": task.task_id,
            "status": _queued_word(task),
            "model": model,
            "created_at": int(task.created),
        }
        return _envelope(task, data)

    async def query(self, request: Request) -> Response:
        """The task's status; the video URL in ``result.video_url`` once completed."""
        api_key = self.authenticate(request)
        self.inject_faults(request)
        task = self.find_task(request.path_params["taskId"], api_key)
        phase = task.phase(self.state.clock())
        words = {
            "queued": _queued_word(task),
            "running": "processing",
            "succeeded": "success" if task.quirk == "success_word" else "completed",
            "failed": "failed",
        }
        data: dict[str, Any] = {
            "task_id": task.task_id,
            "status": self.status_word(request.url.path, phase, words),
            "progress": phase.progress,
            "model": task.model,
            "created_at": int(task.created),
        }
        if phase.state in ("succeeded", "failed"):
            data["completed_at"] = int(task.finished)
        if phase.state == "succeeded":
            url, _ = self.video_url(origin(request), task, request.url.path)
            data["result"] = {"video_url": url}
        elif phase.state == "failed" and task.failure is not None:
            data["error_message"] = task.failure.message
        return _envelope(task, data)

    async def upload(self, request: Request) -> Response:
        """Multipart ``file`` up to 100 MB, image/video/audio by extension."""
        self.authenticate(request)
        self.inject_faults(request)
        part, _ = await self.receive_file(request, _UPLOAD_LIMIT)
        ext = PurePath(part.filename).suffix.lower()
        if ext not in _UPLOAD_EXTENSIONS:
            message = f"unsupported file type {ext or '(none)'!r}"
            raise self.reject_upload(part, ApiError("validation", message))
        mime = mimetypes.guess_type(f"upload{ext}")[0] or part.content_type
        _, url = self.publish_upload(request, part, mime, ext)
        data = {"url": url, "filename": part.filename, "size": part.size, "mime_type": mime}
        return JSONResponse({"code": 20000, "msg": "ok", "data": data})


def _validate(body: dict[str, Any]) -> tuple[str, str, int, str]:
    """(normalized model, prompt, rendered duration, aspect) of a valid create body."""
    reject_unknown(body, _FIELDS)
    requested = required_str(body, "model")
    model = _MODELS.get(requested)
    if model is None:
        raise ApiError("validation", f"unsupported model {requested!r}")
    prompt = required_str(body, "prompt")
    aspect = _aspect(body)
    ten = model == "omni-10s"
    # The compatibility field ``images`` is "used when image_urls is empty".
    images = url_list(body, "image_urls", max_items=7 if ten else 3) or url_list(
        body, "images", max_items=7 if ten else 3
    )
    videos = url_list(body, "video_urls", max_items=1)
    mode = choice_str(body, "generation_type", ("frame", "reference"), "reference")
    if ten:
        # omni-10s: "duration and resolution in the request are ignored"; fixed 10 s.
        return model, prompt, 10, aspect
    if videos and body.get("duration") is not None:
        raise ApiError("validation", "duration and video_urls cannot be passed at the same time")
    duration = choice_int(body, "duration", (4, 6, 8, 10), 6)
    choice_str(body, "resolution", ("720p", "1080p", "4k"), "720p")
    if mode == "frame" and len(images) != 1:
        raise ApiError("validation", "generation_type frame takes exactly 1 image")
    if mode == "reference" and len(images) not in (0, 1, 3):
        raise ApiError("validation", "generation_type reference takes 1 or 3 images")
    return model, prompt, _DEFAULT_DURATION if videos else duration, aspect


def _aspect(body: dict[str, Any]) -> str:
    """``aspect_ratio`` wins over ``orientation`` (landscape 16:9, portrait 9:16)."""
    ratio = optional_str(body, "aspect_ratio")
    if ratio is not None:
        if ratio not in ("16:9", "9:16"):
            raise ApiError("validation", f"aspect_ratio must be 16:9 or 9:16, got {ratio!r}")
        return ratio
    return _ORIENTATIONS[choice_str(body, "orientation", tuple(_ORIENTATIONS), "landscape")]


def _queued_word(task: Task) -> str:
    return {"pending_word": "pending", "submitted_word": "submitted"}.get(
        task.quirk or "", "queued"
    )


def _envelope(task: Task, data: dict[str, Any]) -> Response:
    if task.quirk == "no_envelope":
        return JSONResponse(data)
    code: int | str = 20000 if task.quirk == "int_code" else "20000"
    return JSONResponse({"code": code, "msg": "ok", "data": data})
