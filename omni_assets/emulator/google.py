"""Google's Gemini API dialect: Gemini Omni over the Interactions API (docs/providers-google.md).

Mounted at ``/google`` (the real host is ``generativelanguage.googleapis.com``). Encoded from
Google's documents and the official SDK's types (googleapis/python-genai, ``_gaos`` interactions),
never from this project's client:

* ``POST /v1beta/interactions`` — ``{"model", "input", "response_modalities": ["video"],
  "response_format": {"type": "video", "aspect_ratio", "resolution", "duration": "6s",
  "delivery": "inline"|"uri"}, "background": true, "previous_interaction_id"?,
  "generation_config": {"video_config": {"task"}}?}``; answers the Interaction, ``in_progress``.
* ``GET /v1beta/interactions/{id}`` — ``queued`` → ``in_progress`` → ``completed`` | ``failed``.
  A completed interaction holds a ``model_output`` step whose video block carries the mp4 as
  base64 ``data`` (inline, the default; streamed out, never built in memory) or a ``uri``;
  ``usage.output_tokens_by_modality`` counts its video tokens.
* Auth: ``x-goog-api-key`` (or ``?key=``). Errors: ``{"error": {"code", "message", "status",
  "details"}}`` — a bad key is 400 ``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``, no key
  403 ``PERMISSION_DENIED``, quota 429 ``RESOURCE_EXHAUSTED`` with ``RetryInfo``, no billing 400
  ``FAILED_PRECONDITION``.

Deliberate deviations: only ``background: true`` is served (a foreground create would hold the
connection for minutes); a safety block is a ``failed`` interaction whose model_output step
carries the error and its category ([INFERRED]: Google documents no shape for it); the ``queued``
word is used while queued; video tokens are the emulator's own figure (11,112 a second, so that
the third-party price of ~$0.10/s comes out).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from .common import Dialect, origin
from .errors import ApiError
from .tasks import Task
from .validate import json_object, reject_unknown
from .video import iter_padded

__all__ = ["Google"]

# model -> (durations in seconds, or () when the model picks; resolutions; max images)
MODELS: dict[str, tuple[tuple[int, ...], tuple[str, ...], int]] = {
    # Google's model card (docs.cloud.google.com .../omni-flash-preview): 720p, ≤10 images;
    # 3-10 s is third-party (gmicloud, pixeldojo).
    "gemini-omni-flash-preview": (tuple(range(3, 11)), ("720p",), 10),
    # [3P] civitai: 1.1 picks its own 3-10 s; ≤6 images.
    "gemini-omni-1.1-flash": ((), ("720p",), 6),
    # [3P] Vercel AI Gateway: 3-15 s, 360p-4k, ≤6 images.
    "gemini-omni-1.2-flash": (tuple(range(3, 16)), ("360p", "720p", "1080p", "4k"), 6),
}
_FIELDS = (
    "model",
    "input",
    "response_modalities",
    "response_format",
    "background",
    "previous_interaction_id",
    "generation_config",
    "store",
)
_BLOCK_FIELDS = ("type", "text", "uri", "data", "mime_type")
_FORMAT_FIELDS = ("type", "aspect_ratio", "resolution", "duration", "delivery")
_TASKS = ("text_to_video", "image_to_video", "reference_to_video", "edit", "extend")
_MAX_VIDEOS = 3  # the model card: "Maximum number of videos per prompt: 3"
TOKENS_PER_SECOND = 11_112
_WORDS = {
    "queued": "queued",
    "running": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
}
_ERRORS: dict[str, tuple[int, str]] = {
    "validation": (400, "INVALID_ARGUMENT"),
    "auth": (400, "INVALID_ARGUMENT"),
    "balance": (400, "FAILED_PRECONDITION"),
    "not_found": (404, "NOT_FOUND"),
    "conflict": (409, "ABORTED"),
    "too_large": (400, "INVALID_ARGUMENT"),
    "policy": (400, "INVALID_ARGUMENT"),
    "rate_limit": (429, "RESOURCE_EXHAUSTED"),
    "server": (500, "INTERNAL"),
    "maintenance": (503, "UNAVAILABLE"),
}
_PLACEHOLDER = "\x00omni-video\x00"
_SAFETY_CATEGORY = "dangerous_content"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


class Google(Dialect):
    """``POST /v1beta/interactions`` and ``GET /v1beta/interactions/{id}``."""

    name = "google"
    # Some answers carry the video as the top-level ``output_video`` block only.
    task_quirks = ("output_video",)

    def routes(self) -> list[BaseRoute]:
        """Create and get an interaction under ``/v1beta``."""
        return [
            Route("/v1beta/interactions", self.endpoint("create", self.create), methods=["POST"]),
            Route(
                "/v1beta/interactions/{interaction_id}",
                self.endpoint("get", self.get),
                methods=["GET"],
            ),
            self.not_found_route(),
        ]

    def api_key(self, request: Request) -> str | None:
        """``x-goog-api-key``, else the ``key`` query parameter."""
        return request.headers.get("x-goog-api-key") or request.query_params.get("key") or None

    def authenticate(self, request: Request) -> str:
        """403 without a key; a refused key is Google's 400 ``API_KEY_INVALID``."""
        if not self.api_key(request):
            raise ApiError("auth", "Method doesn't allow unregistered callers", status=403)
        return super().authenticate(request)

    def check_balance(self, api_key: str) -> None:
        """Omni has no free tier: an account without billing cannot create."""
        if api_key.startswith("nobalance"):
            raise ApiError(
                "balance", "Gemini Omni is only available with billing enabled on the project"
            )

    def error_response(self, err: ApiError, op: str) -> Response:
        """Google's API error model: ``{"error": {"code", "message", "status", "details"}}``."""
        status, word = _ERRORS.get(err.kind, (500, "INTERNAL"))
        details: list[dict[str, Any]] = []
        if err.kind == "auth" and err.status == 403:
            status, word = 403, "PERMISSION_DENIED"
        elif err.kind == "auth":
            info = "type.googleapis.com/google.rpc.ErrorInfo"
            details.append({"@type": info, "reason": "API_KEY_INVALID", "domain": "googleapis.com"})
            err.message = "API key not valid. Please pass a valid API key."
        elif err.kind == "rate_limit":
            delay = err.headers.get("Retry-After", "1")
            details.append(
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay}s"}
            )
        error: dict[str, Any] = {"code": status, "message": err.message, "status": word}
        if details:
            error["details"] = details
        return JSONResponse({"error": error}, status)

    async def create(self, request: Request) -> Response:
        """Validate the body and start a background interaction."""
        api_key = self.authenticate(request)
        self.inject_faults(request)
        body = json_object(await request.body())
        model, prompt, duration, aspect, delivery, parent = self._validate(body, api_key)
        task = self.new_task(
            request,
            api_key,
            body,
            task_id="v1_" + self.ulid(),
            model=model,
            prompt=prompt,
            duration=duration,
            aspect=aspect,
            extras={"delivery": delivery, "parent": parent},
        )
        return JSONResponse(self._interaction(task, "in_progress"))

    def _validate(
        self, body: dict[str, Any], api_key: str
    ) -> tuple[str, str, int, str, str, str | None]:
        """(model, prompt, rendered duration, aspect, delivery, parent id) of a valid body."""
        reject_unknown(body, _FIELDS)
        model = body.get("model")
        if model not in MODELS:
            known = ", ".join(MODELS)
            raise ApiError("validation", f"model {model!r} is not found or not supported: {known}")
        durations, resolutions, max_images = MODELS[model]
        if body.get("background") is not True:
            raise ApiError("validation", "video generation runs in the background: set background")
        if body.get("response_modalities") != ["video"]:
            raise ApiError("validation", 'response_modalities must be ["video"] for this model')
        prompt, images, videos = self._input(body.get("input"))
        if images > max_images:
            raise ApiError(
                "validation", f"at most {max_images} images per request ({images} given)"
            )
        if videos > _MAX_VIDEOS:
            raise ApiError("validation", f"at most {_MAX_VIDEOS} videos per request")
        fmt = self._format(body.get("response_format"))
        aspect = fmt.get("aspect_ratio", "16:9")
        if aspect not in ("16:9", "9:16"):
            raise ApiError("validation", f"response_format.aspect_ratio {aspect!r}: 16:9 or 9:16")
        resolution = fmt.get("resolution", "720p")
        if resolution not in resolutions:
            allowed = ", ".join(resolutions)
            raise ApiError("validation", f"response_format.resolution {resolution!r}: {allowed}")
        delivery = fmt.get("delivery", "inline")
        if delivery not in ("inline", "uri"):
            raise ApiError("validation", f"response_format.delivery {delivery!r}: inline or uri")
        duration = self._duration(fmt.get("duration"), durations, model)
        config = body.get("generation_config", {})
        task = config.get("video_config", {}).get("task") if isinstance(config, dict) else None
        if task is not None and task not in _TASKS:
            raise ApiError("validation", f"video_config.task {task!r}: {', '.join(_TASKS)}")
        parent = body.get("previous_interaction_id")
        if parent is not None:
            previous = self._parent(parent, api_key)
            duration = duration or previous.duration
        return model, prompt, duration or 6, aspect, delivery, parent

    def _input(self, value: Any) -> tuple[str, int, int]:
        """(prompt text, images, videos) of ``input``: a string or a list of content blocks."""
        if isinstance(value, str):
            value = [{"type": "text", "text": value}]
        if not isinstance(value, list) or not value:
            raise ApiError("validation", "input must be a string or a list of content blocks")
        texts: list[str] = []
        counts = {"image": 0, "video": 0, "audio": 0}
        for i, block in enumerate(value):
            if not isinstance(block, dict):
                raise ApiError("validation", f"input[{i}] must be a content block object")
            reject_unknown(block, _BLOCK_FIELDS, f"input[{i}]")
            kind = block.get("type")
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise ApiError("validation", f"input[{i}].text must be a string")
                texts.append(block["text"])
            elif kind in counts:
                uri, data = block.get("uri"), block.get("data")
                if (uri is None) == (data is None):
                    raise ApiError("validation", f"input[{i}]: give exactly one of uri and data")
                if uri is not None and not str(uri).startswith(("https://", "http://")):
                    raise ApiError("validation", f"input[{i}].uri must be an http(s) URL")
                counts[kind] += 1
            else:
                raise ApiError("validation", f"input[{i}].type {kind!r} is not supported")
        prompt = " ".join(texts)
        if not prompt.strip():
            raise ApiError("validation", "input needs a text block with the prompt")
        return prompt, counts["image"], counts["video"]

    def _format(self, value: Any) -> dict[str, Any]:
        formats = value if isinstance(value, list) else [value] if value is not None else []
        videos = [f for f in formats if isinstance(f, dict) and f.get("type") == "video"]
        if len(videos) != len(formats) or len(videos) > 1:
            raise ApiError("validation", 'response_format takes one {"type": "video"} entry')
        if videos:
            reject_unknown(videos[0], _FORMAT_FIELDS, "response_format")
        return videos[0] if videos else {}

    def _duration(self, value: Any, durations: tuple[int, ...], model: str) -> int | None:
        if value is None:
            return None
        if not durations:
            raise ApiError("validation", f"{model} chooses the duration itself; omit it")
        text = str(value)
        seconds = int(text[:-1]) if text.endswith("s") and text[:-1].isdigit() else None
        if seconds not in durations:
            allowed = f"{durations[0]}s to {durations[-1]}s"
            raise ApiError("validation", f"response_format.duration {value!r}: {allowed}")
        return seconds

    def _parent(self, parent_id: Any, api_key: str) -> Task:
        task = self.state.tasks.get(self.name, str(parent_id), api_key)
        if task is None:
            raise ApiError("validation", f"previous_interaction_id {parent_id!r} is not found")
        if task.phase(self.state.clock()).state != "succeeded":
            raise ApiError("validation", f"previous_interaction_id {parent_id!r} is not completed")
        return task

    def _interaction(self, task: Task, status: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": task.task_id,
            "model": task.model,
            "status": status,
            "created": _iso(task.created),
            "updated": _iso(min(self.state.clock(), task.finished)),
        }
        if task.extras.get("parent"):
            out["previous_interaction_id"] = task.extras["parent"]
        return out

    async def get(self, request: Request) -> Response:
        """The interaction; a completed one with its video inline (streamed) or as a URI."""
        api_key = self.authenticate(request)
        self.inject_faults(request)
        task = self.find_task(request.path_params["interaction_id"], api_key)
        phase = task.phase(self.state.clock())
        body = self._interaction(task, self.status_word(request.url.path, phase, _WORDS))
        if phase.state == "failed" and task.failure is not None:
            body["steps"] = [self._failed_step(task)]
            return JSONResponse(body)
        if phase.state != "succeeded":
            return JSONResponse(body)
        tokens = task.duration * TOKENS_PER_SECOND
        body["usage"] = {
            "total_input_tokens": 12,
            "total_output_tokens": tokens,
            "output_tokens_by_modality": [{"modality": "video", "tokens": tokens}],
        }
        block: dict[str, Any] = {"type": "video", "mime_type": "video/mp4"}
        if task.extras["delivery"] == "uri":
            block["uri"], _ = self.video_url(origin(request), task, request.url.path)
        else:
            block["data"] = _PLACEHOLDER
        if task.quirk == "output_video":
            body["output_video"] = block
        else:
            body["steps"] = [{"type": "model_output", "content": [block]}]
        if "data" not in block:
            return JSONResponse(body)
        path = await anyio.to_thread.run_sync(
            self.state.renderer.path, task.duration, task.aspect, task.scene
        )
        self.state.audit.record(
            "downloads",
            provider=self.name,
            task_id=task.task_id,
            file="inline",
            outcome="complete",
            complete=True,
            time=self.state.clock(),
        )
        return StreamingResponse(
            _inline_json(body, iter_padded(path, task.padding, 0, _total(path, task) - 1)),
            media_type="application/json",
        )

    def _failed_step(self, task: Task) -> dict[str, Any]:
        assert task.failure is not None
        if not task.failure.policy:
            error: dict[str, Any] = {"code": 13, "message": task.failure.message}
        else:
            error = {
                "code": 3,
                "message": f"The video was blocked by the safety filters ({_SAFETY_CATEGORY}).",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "SAFETY",
                        "metadata": {"category": _SAFETY_CATEGORY},
                    }
                ],
            }
        return {"type": "model_output", "error": error}


def _total(path: Any, task: Task) -> int:
    return int(path.stat().st_size) + task.padding


def _inline_json(body: dict[str, Any], video: Iterator[bytes]) -> Iterator[bytes]:
    """``body`` as JSON with the placeholder replaced by the base64 of ``video``, in pieces."""
    head, tail = json.dumps(body).split(json.dumps(_PLACEHOLDER)[1:-1], 1)
    yield head.encode()
    rest = b""
    for chunk in video:
        data = rest + chunk
        cut = len(data) - len(data) % 3
        rest = data[cut:]
        if cut:
            yield base64.b64encode(data[:cut])
    yield base64.b64encode(rest) + tail.encode()
