"""Google's own Gemini API: Gemini Omni over the Interactions API (docs/providers-google.md).

Wire contract (python-genai ``_gaos`` interactions types and ai.google.dev; [3P] where marked):

* ``POST /v1beta/interactions`` with ``x-goog-api-key``; body ``{"model", "input": [content
  blocks: text, image {uri}, video {uri}], "response_modalities": ["video"], "response_format":
  {"type": "video", "aspect_ratio", "resolution", "duration": "6s", "delivery"}, "background":
  true, "previous_interaction_id"?, "generation_config": {"video_config": {"task"}}?}``. The
  answer is the Interaction: ``{"id", "status": "in_progress", ...}``.
* ``GET /v1beta/interactions/{id}``: ``status`` ∈ queued, in_progress, requires_action,
  completed, failed, cancelled, incomplete, budget_exceeded. The video is a ``model_output``
  step's ``{"type": "video", "data": <base64>}`` (inline, the default) or ``{"uri"}`` (delivery
  ``uri``); ``output_video`` holds the same block on some answers. ``usage.
  output_tokens_by_modality`` reports the video tokens the cost is computed from.
* Errors: ``{"error": {"code": 400, "message", "status": "INVALID_ARGUMENT", "details"}}``
  (Google's API error model) or ``{"error": {"code": "<type>", "message"}}`` (the interactions
  ``Error`` type); both are read. A 400 whose details say ``API_KEY_INVALID`` is a bad key.
* A finished interaction that was blocked (``failed`` with a safety reason, or ``completed``
  with no video) is a failed task carrying the reason.

An inline video is never parsed into memory: status answers are skimmed (``google_http.py``)
and the video is decoded from a second, streamed read straight into storage
(``google_inline.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import mimetypes
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import httpx

from ..request import GenerationMode, VideoRequest
from ._parse import (
    as_float,
    as_int,
    as_str,
    dig,
    error_answer,
    json_object,
    make_status,
)
from .answers import path_segment
from .base import DownloadResult, StagedDownload, TaskState, TaskStatus
from .capabilities import ModelCapabilities
from .client import Dialect, Endpoint, ProviderClient, Submitted, _tls_context
from .google_http import KEY_HEADER, SKIM, AsyncGoogleTransport, GoogleTransport
from .google_inline import download_inline, inline_path, inline_url
from .google_prices import video_cost
from .http import ClientOptions, ErrorInfo, Op
from .inputs import Sources
from .jsonskim import JsonPath

__all__ = ["DIALECT", "Delivery", "GoogleClient", "build_body", "parse_status"]

Delivery = Literal["inline", "uri"]
DELIVERIES: tuple[Delivery, ...] = ("inline", "uri")

CREATE_PATH = "/v1beta/interactions"
STATUS_PATH = "/v1beta/interactions/{id}"

STATES = {
    "queued": TaskState.QUEUED,
    "in_progress": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
    "cancelled": TaskState.CANCELLED,
    # Ended without (all of) the output: nothing to download, the reason says why.
    "incomplete": TaskState.FAILED,
    "budget_exceeded": TaskState.FAILED,
    # Waits for tool results; a video request declares no tools, so it never will.
    "requires_action": TaskState.FAILED,
}

# google.rpc.Code names (Google's API error model) that carry no usable HTTP status.
_RPC_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
# The harm categories of python-genai's HarmCategory, named in a block's reason when known.
_HARM = re.compile(
    r"(image_)?(hate_speech|dangerous_content|harassment|sexually_explicit)|civic_integrity|"
    r"jailbreak|child|csam|celebrity|prominent people",
    re.IGNORECASE,
)
_SAFETY = re.compile(r"safety|blocked|prohibited|policy|harm|responsible ai|filter", re.IGNORECASE)


def _headers(ep: Endpoint) -> dict[str, str]:
    return {KEY_HEADER: ep.secret.reveal(), "Accept": "application/json"}


def _mime(url: str) -> str | None:
    return mimetypes.guess_type(url.split("?", 1)[0])[0]


def _block(kind: str, url: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": kind, "uri": url}
    mime = _mime(url)
    if mime is not None and mime.startswith(kind + "/"):
        block["mime_type"] = mime
    return block


def build_body(
    request: VideoRequest,
    caps: ModelCapabilities,
    src: Sources,
    *,
    delivery: Delivery = "inline",
) -> dict[str, Any]:
    """The create body: content blocks in, one video out, in the background."""
    content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
    content += [_block("image", url) for url in src.image_urls]
    if src.video_url is not None:
        content.append(_block("video", src.video_url))
    _, aspect = caps.aspect_field(request.aspect_ratio)
    video_format: dict[str, Any] = {"type": "video", "aspect_ratio": aspect}
    resolution = caps.resolution_for(request.resolution)
    if resolution is not None:
        video_format["resolution"] = resolution
    duration = caps.duration_for(request.duration, has_video=src.video_url is not None)
    if duration is not None:
        video_format["duration"] = f"{duration}s"
    if delivery != "inline":  # inline is Google's default: nothing to ask for
        video_format["delivery"] = delivery
    body: dict[str, Any] = {
        "model": caps.model,
        "input": content,
        "response_modalities": ["video"],
        "response_format": video_format,
        "background": True,
    }
    if request.mode is GenerationMode.FRAME:
        body["generation_config"] = {"video_config": {"task": "image_to_video"}}
    if src.extend_task_id is not None:
        body["previous_interaction_id"] = src.extend_task_id
    return body


def submit_request(
    ep: Endpoint, body: dict[str, Any], idempotency_key: str | None
) -> httpx.Request:
    """``POST /v1beta/interactions`` (the Interactions API documents no idempotency key)."""
    return httpx.Request("POST", ep.url(CREATE_PATH), headers=_headers(ep), json=body)


def parse_submit(response: httpx.Response) -> Submitted:
    body = json_object(response)
    interaction_id = as_str(body.get("id"))
    return Submitted.of("google", response, body, interaction_id, as_str(body.get("status")))


def status_request(ep: Endpoint, task_id: str) -> httpx.Request:
    """The interaction, its inline video skimmed off on the way in (``google_http.py``)."""
    headers = {**_headers(ep), "Accept-Encoding": "identity"}
    request = httpx.Request(
        "GET", ep.url(STATUS_PATH.format(id=path_segment(task_id))), headers=headers
    )
    request.extensions = {**request.extensions, SKIM: True}
    return request


def _find_video(body: dict[str, Any]) -> tuple[dict[str, Any], JsonPath] | None:
    """The last video block of the last model output (else ``output_video``) and its path."""
    steps = body.get("steps")
    if isinstance(steps, list):
        for i in range(len(steps) - 1, -1, -1):
            step = steps[i]
            if not isinstance(step, dict) or step.get("type") != "model_output":
                continue
            content = step.get("content")
            blocks: list[Any] = content if isinstance(content, list) else []
            for j in range(len(blocks) - 1, -1, -1):
                block = blocks[j]
                if isinstance(block, dict) and block.get("type") == "video":
                    return block, ("steps", i, "content", j)
    video = body.get("output_video")
    return (video, ("output_video",)) if isinstance(video, dict) else None


def _texts(body: dict[str, Any]) -> list[str]:
    """Every reason the interaction gives: errors, step errors, the model's own words."""
    out = [as_str(body.get("output_text"))]
    for error in body.get("errors") or ():
        if isinstance(error, dict):
            out += [as_str(error.get("code")), as_str(error.get("message"))]
    for step in body.get("steps") or ():
        if not isinstance(step, dict) or step.get("type") != "model_output":
            continue
        error = step.get("error")
        if isinstance(error, dict):
            out.append(as_str(error.get("message")))
            out += [as_str(dig(d, "reason")) for d in error.get("details") or ()]
        out += [
            as_str(dig(block, "text"))
            for block in step.get("content") or ()
            if dig(block, "type") == "text"
        ]
    return [text for text in dict.fromkeys(out) if text]


def _reason(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(message, code) of an interaction that produced no video; code ``safety[:category]``."""
    texts = _texts(body)
    message = "; ".join(texts)[:2000] or None
    if message is None or not _SAFETY.search(message):
        return message, None
    harm = _HARM.search(message)
    return message, f"safety:{harm.group(0).lower()}" if harm else "safety"


def _video_tokens(body: dict[str, Any]) -> int | None:
    for entry in dig(body, "usage", "output_tokens_by_modality") or ():
        if isinstance(entry, dict) and as_str(entry.get("modality")) == "video":
            return as_int(entry.get("tokens"))
    return None


def _epoch(value: Any) -> float | None:
    """ISO 8601 (``created``/``updated``) or epoch seconds."""
    text = as_str(value)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return as_float(text)


def parse_status(response: httpx.Response, task_id: str, caps: ModelCapabilities) -> TaskStatus:
    body = json_object(response)
    word = as_str(body.get("status"))
    state = STATES.get((word or "").lower())
    found = _find_video(body)
    video_url: str | None = None
    message: str | None = None
    code: str | None = None
    if found is not None:
        block, path = found
        if as_str(block.get("uri")):
            video_url = as_str(block.get("uri"))
        elif block.get("data"):
            video_url = inline_url(response.request.url, (*path, "data"))
    if state is TaskState.SUCCEEDED and video_url is None:
        message, code = _reason(body)
        code = code or "no_video"
        message = f"google finished the interaction without a video: {message or 'no reason given'}"
        word = "failed" if code.startswith("safety") else word
        state = TaskState.FAILED
    elif state in (TaskState.FAILED, TaskState.CANCELLED):
        message, code = _reason(body)
        code = code or (word or "").lower() or None
    return make_status(
        provider="google",
        task_id=as_str(body.get("id")) or task_id,
        raw_status="failed" if state is TaskState.FAILED else word,
        states=STATES,
        video_url=video_url if state is TaskState.SUCCEEDED else None,
        error_message=message,
        error_code=code,
        cost=video_cost(caps.model, _video_tokens(body)),
        created_at=_epoch(body.get("created")),
        completed_at=_epoch(body.get("updated")) if state is TaskState.SUCCEEDED else None,
        url_ttl=caps.video_url_ttl,
        raw={k: v for k, v in body.items() if k not in ("steps", "output_video", "input")},
    )


def _retry_delay(details: Any) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` (``"37s"``) from an error's details."""
    for detail in details if isinstance(details, list) else ():
        delay = as_str(dig(detail, "retryDelay"))
        if delay and delay.endswith("s"):
            return as_float(delay[:-1])
    return None


def error_info(response: httpx.Response, op: Op) -> ErrorInfo | None:
    if response.status_code < 400:
        return None
    body = json_object(response)
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    rpc = as_str(error.get("status"))
    code = error.get("code")
    kind = rpc or (as_str(code) if isinstance(code, str) else None)
    message = as_str(error.get("message")) or response.reason_phrase or "no message"
    details = error.get("details")
    reasons = " ".join(as_str(dig(d, "reason")) or "" for d in details or () if isinstance(d, dict))
    status = response.status_code
    if "API_KEY_INVALID" in reasons or "API key not valid" in message:
        status = 401  # Google answers a bad key with 400 INVALID_ARGUMENT
    elif rpc == "FAILED_PRECONDITION" and "billing" in message.lower():
        status = 402  # "enable billing": the account cannot pay for Omni (no free tier)
    elif status == 400 and rpc in _RPC_STATUS:
        status = _RPC_STATUS[rpc]
    return error_answer(
        response, body, status=status, message=message, code=kind, retry_after=_retry_delay(details)
    )


DIALECT = Dialect(
    name="google",
    default_base_url="https://generativelanguage.googleapis.com",
    build_body=build_body,
    submit_request=submit_request,
    parse_submit=parse_submit,
    status_request=status_request,
    parse_status=parse_status,
    error_info=error_info,
)


class GoogleClient(ProviderClient):
    """Google's Gemini API: ``gemini-omni-flash-preview`` (default) and its GA successors.

    ``delivery`` asks for the video inline (base64 in the interaction, Google's default) or as
    a URI; whichever comes back is handled. The key is sent to Google's origin only.
    """

    dialect = DIALECT

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        model: str | None = None,
        options: ClientOptions | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        delivery: Delivery = "inline",
        key_variable: str | None = None,
    ) -> None:
        if delivery not in DELIVERIES:
            raise ValueError(f"delivery={delivery!r}; allowed: {', '.join(DELIVERIES)}")
        self.delivery = delivery
        self.dialect = dataclasses.replace(
            DIALECT, build_body=functools.partial(build_body, delivery=delivery)
        )
        super().__init__(
            api_key,
            base_url=base_url,
            model=model,
            options=options,
            transport=transport,
            async_transport=async_transport,
            key_variable=key_variable,
        )

    def _wrap_transport(self, transport: httpx.BaseTransport | None) -> httpx.BaseTransport:
        inner = transport or httpx.HTTPTransport(
            verify=_tls_context(), limits=self.options.limits()
        )
        return GoogleTransport(inner, httpx.URL(self.base_url), self._secret)

    def _wrap_download_transport(self, transport: httpx.BaseTransport) -> httpx.BaseTransport:
        # Google's file URIs need the key; the guarded download pool gets it for Google's origin
        # only (redirect hops elsewhere lose it).
        return GoogleTransport(transport, httpx.URL(self.base_url), self._secret)

    def _wrap_async_transport(
        self, transport: httpx.AsyncBaseTransport
    ) -> httpx.AsyncBaseTransport:
        return AsyncGoogleTransport(transport, httpx.URL(self.base_url), self._secret)

    def download(
        self,
        url: str,
        fs_url: str,
        *,
        verify: Callable[[StagedDownload], None] | None = None,
        **storage_options: Any,
    ) -> DownloadResult:
        """An inline video is decoded from the interaction; a URI downloads like any video."""
        if inline_path(url) is None:
            return super().download(url, fs_url, verify=verify, **storage_options)
        return download_inline(
            self._download_http,
            url,
            fs_url,
            options=self.options,
            provider=self.name,
            storage_options=storage_options,
            verify=verify,
            allowed=self._allowed_origins,
        )
