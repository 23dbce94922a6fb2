"""APIMart's dialect (seed 001, the Omni-Flash-Ext page, tasks/status and uploads/images pages).

Mounted at ``/apimart``. Errors are ``{"error": {"code": <int>, "message", "type"}}``.
``Idempotency-Key`` and ``X-APIMart-Response-Version: 2026-07-27`` follow APIMart's own skill
repo (apimart-ai/apimart-skills, references/api-contract.md), not its public pages. The status
query's ``language`` (zh/en/ko/ja) is checked, but messages stay in English.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .common import Dialect, origin, sniff_image
from .errors import ApiError
from .tasks import Task, fingerprint
from .validate import (
    choice_int,
    choice_str,
    json_object,
    optional_str,
    reject_unknown,
    required_str,
    url_list,
)

__all__ = ["APIMart"]

FLASH = "gemini-omni-flash-preview"
EXT = "Omni-Flash-Ext"
RESPONSE_VERSION = "2026-07-27"
_FLASH_FIELDS = (
    "model",
    "prompt",
    "image_urls",
    "video_urls",
    "aspect_ratio",
    "resolution",
    "extend_from_task_id",
)
_EXT_FIELDS = (
    "model",
    "prompt",
    "duration",
    "resolution",
    "aspect_ratio",
    "image_urls",
    "video_urls",
)
_UPLOAD_LIMIT = 20 * 2**20
_ERRORS: dict[str, tuple[int, str]] = {
    "validation": (400, "invalid_request_error"),
    "auth": (401, "authentication_error"),
    "balance": (402, "payment_required"),
    "not_found": (404, "not_found_error"),
    "conflict": (409, "idempotency_error"),
    "too_large": (413, "invalid_request_error"),
    "policy": (400, "content_policy_violation"),
    "rate_limit": (429, "rate_limit_error"),
    "server": (500, "server_error"),
    "maintenance": (503, "server_error"),
}
# The emulator's own price list (APIMart publishes per-model prices elsewhere): the flash
# preview's numbers are the seed's example; Omni-Flash-Ext scales with length and resolution.
_EXT_PRICE_PER_SECOND = {"720p": 0.1, "1080p": 0.15, "4k": 0.3}
_LANGUAGES = ("zh", "en", "ko", "ja")
_WORDS = {
    "queued": "pending",
    "running": "processing",
    "succeeded": "completed",
    "failed": "failed",
}


class APIMart(Dialect):
    """``POST /v1/videos/generations``, ``GET /v1/tasks/{task_id}``, ``POST /v1/uploads/images``."""

    name = "apimart"
    # An older tasks/status example shows ``url`` as a plain string instead of an array.
    task_quirks = ("url_string",)

    def routes(self) -> list[BaseRoute]:
        """Create, query and image upload under ``/v1``."""
        return [
            Route("/v1/videos/generations", self.endpoint("create", self.create), methods=["POST"]),
            Route("/v1/tasks/{task_id}", self.endpoint("query", self.query), methods=["GET"]),
            Route("/v1/uploads/images", self.endpoint("upload", self.upload), methods=["POST"]),
            self.not_found_route(),
        ]

    def error_response(self, err: ApiError, op: str) -> Response:
        """``{"error": {"code": <HTTP status>, "message", "type"}}``."""
        status, type_ = _ERRORS.get(err.kind, (500, "server_error"))
        error = {"code": status, "message": err.message, "type": err.type_ or type_}
        return JSONResponse({"error": error}, status)

    async def create(self, request: Request) -> Response:
        """Start a task, or replay the one an ``Idempotency-Key`` already created."""
        api_key = self.authenticate(request)
        self.inject_faults(request)
        body = json_object(await request.body())
        key = request.headers.get("idempotency-key")
        if key is not None:
            if not (1 <= len(key) <= 191 and all("!" <= c <= "~" for c in key)):
                raise ApiError(
                    "validation", "Idempotency-Key must be 1-191 visible ASCII characters"
                )
            prior = self.state.tasks.lookup_key(self.name, api_key, key)
            if prior is not None:
                if prior[0] != fingerprint(body):
                    message = "Idempotency-Key was already used with a different request body"
                    raise ApiError("conflict", message)
                task = self.find_task(prior[1], api_key)
                self.state.audit.record(
                    "replays",
                    provider=self.name,
                    task_id=task.task_id,
                    idempotency_key=key,
                    time=self.state.clock(),
                )
                response = self._created(request, task)
                response.headers["Idempotency-Replayed"] = "true"
                return response
        model, prompt, duration, aspect, price = self._validate(body, api_key)
        task = self.new_task(
            request,
            api_key,
            body,
            task_id="task_" + self.ulid(),
            model=model,
            prompt=prompt,
            duration=duration,
            aspect=aspect,
            extras={"cost": price, "parent": body.get("extend_from_task_id")},
        )
        if key is not None:
            self.state.tasks.remember_key(self.name, api_key, key, task.fingerprint, task.task_id)
        return self._created(request, task)

    def _created(self, request: Request, task: Task) -> Response:
        if request.headers.get("x-apimart-response-version") == RESPONSE_VERSION:
            request_id = "req_" + self.ulid()
            data = {"object": "generation.task", "id": task.task_id, "status": "submitted"}
            return JSONResponse({"data": data, "request_id": request_id})
        return JSONResponse(
            {"code": 200, "data": [{"status": "submitted", "task_id": task.task_id}]}
        )

    def _validate(self, body: dict[str, Any], api_key: str) -> tuple[str, str, int, str, float]:
        """(model, prompt, rendered duration, aspect, price) of a valid create body."""
        model = required_str(body, "model")
        if model == FLASH:
            if "duration" in body:
                raise ApiError("validation", f"{FLASH} does not take a duration parameter")
            reject_unknown(body, _FLASH_FIELDS)
            prompt = optional_str(body, "prompt") or ""
            images = url_list(body, "image_urls", max_items=16)
            videos = url_list(body, "video_urls", max_items=1, data_prefix="data:video/")
            if not (prompt.strip() or images or videos):
                raise ApiError("validation", "provide a prompt or reference image_urls/video_urls")
            # Seed 001: "Other values are treated as 16:9".
            aspect = "9:16" if optional_str(body, "aspect_ratio") == "9:16" else "16:9"
            choice_str(body, "resolution", ("720p",), "720p", case_insensitive=True)
            self._check_parent(optional_str(body, "extend_from_task_id"), api_key)
            # The page documents no duration; the emulator renders 6 s, with or without a parent.
            return model, prompt, 6, aspect, 1.0
        if model == EXT:
            reject_unknown(body, _EXT_FIELDS)
            prompt = required_str(body, "prompt")
            duration = choice_int(body, "duration", (4, 6, 8, 10), 6, error_type="invalid_duration")
            resolution = choice_str(
                body,
                "resolution",
                ("720p", "1080p", "4k"),
                "720p",
                case_insensitive=True,
                error_type="invalid_resolution",
            )
            images = url_list(
                body,
                "image_urls",
                max_items=3,
                data_prefix="data:image/",
                error_type="unsupported_image_count",
            )
            if len(images) == 2:
                raise ApiError(
                    "validation",
                    "image_urls takes 0, 1 or 3 images",
                    type_="unsupported_image_count",
                )
            url_list(body, "video_urls", max_items=1)
            aspect = choice_str(body, "aspect_ratio", ("16:9", "9:16"), "16:9")
            return model, prompt, duration, aspect, duration * _EXT_PRICE_PER_SECOND[resolution]
        raise ApiError("validation", f"unsupported model {model!r}: use {FLASH} or {EXT}")

    def _check_parent(self, parent_id: str | None, api_key: str) -> None:
        if parent_id is None:
            return
        parent = self.state.tasks.get(self.name, parent_id, api_key)
        if parent is None:
            raise ApiError("validation", f"extend_from_task_id {parent_id!r}: no such task")
        if parent.phase(self.state.clock()).state != "succeeded":
            raise ApiError("validation", f"extend_from_task_id {parent_id!r} has not completed")

    async def query(self, request: Request) -> Response:
        """``{"code": 200, "data": {...}}`` with cost fields; videos under ``result.videos``."""
        api_key = self.authenticate(request)
        self.inject_faults(request)
        language = request.query_params.get("language")
        if language is not None and language not in _LANGUAGES:
            raise ApiError("validation", f"language must be one of {', '.join(_LANGUAGES)}")
        task = self.find_task(request.path_params["task_id"], api_key)
        phase = task.phase(self.state.clock())
        cost = 0.0 if phase.state == "failed" else round(float(task.extras["cost"]), 4)
        data: dict[str, Any] = {
            "id": task.task_id,
            "status": self.status_word(request.url.path, phase, _WORDS),
            "progress": phase.progress,
            "created": int(task.created),
            "estimated_time": max(1, math.ceil(task.generation_seconds)),
            "cost": cost,
            "credits_cost": round(cost * 10),
        }
        if phase.state == "succeeded":
            url, expires = self.video_url(origin(request), task, request.url.path)
            data["completed"] = int(task.finished)
            data["actual_time"] = round(task.generation_seconds)
            video = {"url": url if task.quirk == "url_string" else [url], "expires_at": expires}
            data["result"] = {"videos": [video]}
        elif phase.state == "failed" and task.failure is not None:
            policy = task.failure.policy
            data["error"] = {
                "code": 400 if policy else 500,
                "message": task.failure.message,
                "type": "content_policy_violation" if policy else "upstream_error",
            }
        return JSONResponse({"code": 200, "data": data})

    async def upload(self, request: Request) -> Response:
        """Multipart ``file``: JPEG/PNG/WebP/GIF up to 20 MB; the answer has no envelope."""
        self.authenticate(request)
        self.inject_faults(request)
        part, _ = await self.receive_file(request, _UPLOAD_LIMIT)
        with part.path.open("rb") as f:
            kind = sniff_image(f.read(16))
        if kind is None:
            message = "unsupported image format: use JPEG, PNG, WebP or GIF"
            raise self.reject_upload(part, ApiError("validation", message))
        mime, ext = kind
        _, url = self.publish_upload(request, part, mime, ext)
        return JSONResponse(
            {
                "url": url,
                "filename": part.filename,
                "content_type": mime,
                "bytes": part.size,
                "created_at": int(self.state.clock()),
            }
        )
