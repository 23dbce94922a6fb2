"""What every provider dialect shares: auth, fault injection, task creation, URLs, uploads.

A dialect subclasses :class:`Dialect`, lists its routes and renders :class:`ApiError` in its
provider's documented error shape. Everything here is provider-neutral; each dialect module
encodes its provider's contract from the provider's own pages.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from .errors import ApiError
from .files import Served
from .multipart import UploadedPart, discard, keep, read_form
from .scene import scene_for
from .state import EmulatorState
from .tasks import Phase, Task, fingerprint, plan_failure, ulid
from .validate import reject_unknown

__all__ = ["UNKNOWN_STATUS_WORDS", "Dialect", "Endpoint", "origin", "sniff_image"]

Endpoint = Callable[[Request], Awaitable[Response]]

# Words no provider documents, sent while running under rate_unknown_status: clients must keep
# polling on a word they do not know (providers.md §5), not fail or loop forever.
UNKNOWN_STATUS_WORDS = ("rendering", "upscaling", "post_processing")

_GATEWAY_TITLES = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}
_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"GIF87a", "image/gif", ".gif"),
    (b"GIF89a", "image/gif", ".gif"),
)


def origin(request: Request) -> str:
    """``scheme://host:port`` of the emulator as the client reached it."""
    return f"{request.url.scheme}://{request.url.netloc}"


def sniff_image(head: bytes) -> tuple[str, str] | None:
    """(MIME type, extension) of a JPEG/PNG/GIF/WebP judged by its first bytes, else None."""
    for magic, mime, ext in _IMAGE_MAGIC:
        if head.startswith(magic):
            return mime, ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return None


class Dialect(abc.ABC):
    """One provider's HTTP contract, mounted under ``/{name}``."""

    name: ClassVar[str]
    #: The documented response variants a task may be given under ``rate_quirks``.
    task_quirks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    @abc.abstractmethod
    def routes(self) -> list[BaseRoute]:
        """The provider's endpoints, relative to its mount prefix."""

    @abc.abstractmethod
    def error_response(self, err: ApiError, op: str) -> Response:
        """``err`` in the provider's error shape; ``op`` names the endpoint that failed."""

    def api_key(self, request: Request) -> str | None:
        """The key sent as ``Authorization: Bearer <key>``."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None

    def authenticate(self, request: Request) -> str:
        """The caller's accepted API key, or ``ApiError("auth")``."""
        return self.state.authenticate(self.api_key(request))

    def check_balance(self, api_key: str) -> None:
        """Keys starting with ``nobalance`` belong to an account without credit; so does every
        account during a ``402`` outage window."""
        state = self.state
        kind = state.outage(self.name, ("402", "500"))
        if kind is not None:
            state.record_fault(f"outage:{kind}", self.name, "create")
            if kind == "500":
                raise ApiError("server", "internal server error, please retry")
            raise ApiError("balance", "insufficient balance, please recharge and try again")
        if api_key.startswith("nobalance"):
            raise ApiError("balance", "insufficient balance, please recharge and try again")

    def inject_faults(self, request: Request) -> None:
        """Maybe refuse the request with a 429 or a 5xx, before it has any effect.

        A 429 comes from the account's rate limit (``rate_limit_per_s``) or from ``rate_429``.
        """
        config, faults = self.state.config, self.state.faults
        path = request.url.path
        outage = self.state.outage(self.name, ("down", "455"))
        if outage == "down":
            self.state.record_fault("outage:down", self.name, path)
            raise ApiError("gateway", _GATEWAY_TITLES[503], status=503)
        if outage == "455":
            self.state.record_fault("outage:455", self.name, path)
            raise ApiError("maintenance", "System is currently undergoing maintenance")
        account = (self.name, self.api_key(request) or "")
        wait = self.state.buckets.take(account, config.rate_limit_per_s, self.state.clock())
        if wait > 0:
            self.state.record_fault("rate_limit", self.name, path)
            retry_after = {"Retry-After": str(max(1, math.ceil(wait)))}
            raise ApiError(
                "rate_limit", "rate limit exceeded, please slow down", headers=retry_after
            )
        if faults.roll("429", config.rate_429):
            self.state.record_fault("429", self.name, path)
            retry_after = {"Retry-After": str(config.retry_after_seconds)}
            raise ApiError(
                "rate_limit", "too many requests, please retry later", headers=retry_after
            )
        if faults.roll("5xx", config.rate_5xx):
            status = faults.choice("5xx", (500, 502, 503))
            self.state.record_fault(f"5xx:{status}", self.name, path)
            if status == 500:
                raise ApiError("server", "internal server error, please retry")
            raise ApiError("gateway", _GATEWAY_TITLES[status], status=status)

    def quirky_error(self) -> bool:
        """Whether this error goes out in a documented-but-odd variant (``rate_quirks``)."""
        return self.state.faults.roll("error_quirks", self.state.config.rate_quirks)

    def endpoint(self, op: str, handler: Endpoint) -> Endpoint:
        """Wrap ``handler`` so that an :class:`ApiError` becomes the provider's error response."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as err:
                if err.kind == "gateway":
                    response: Response = gateway_response(err.status or 502)
                else:
                    response = self.error_response(err, op)
                response.headers.update(err.headers)
                return response

        return run

    def not_found_route(self) -> Route:
        """A catch-all answering unknown paths with the provider's 404 shape."""

        async def not_found(request: Request) -> Response:
            raise ApiError("not_found", f"no such endpoint: {request.method} {request.url.path}")

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Route("/{rest:path}", self.endpoint("not_found", not_found), methods=methods)

    def new_task(
        self,
        request: Request,
        api_key: str,
        body: dict[str, Any],
        *,
        task_id: str,
        model: str,
        prompt: str,
        duration: int,
        aspect: str,
        extras: Mapping[str, Any] | None = None,
    ) -> Task:
        """Create, store and audit a task for a validated create body (402 without credit)."""
        self.check_balance(api_key)
        state, config = self.state, self.state.config
        quirk = None
        if self.task_quirks and state.faults.roll("task_quirks", config.rate_quirks):
            quirk = state.faults.choice("task_quirks", self.task_quirks)
        task = Task(
            provider=self.name,
            task_id=task_id,
            api_key=api_key,
            model=model,
            body=body,
            fingerprint=fingerprint(body),
            created=state.clock(),
            generation_seconds=config.generation_seconds,
            queue_fraction=config.queue_fraction,
            duration=duration,
            aspect=aspect,
            padding=config.video_padding_bytes,
            failure=plan_failure(prompt, state.faults, config.rate_task_failed),
            quirk=quirk,
            extras=dict(extras or {}),
        )
        task.scene = scene_for(
            state,
            self.name,
            body,
            prompt=prompt,
            duration=duration,
            aspect=aspect,
            extras=task.extras,
        )
        state.tasks.add(task)
        state.audit.record(
            "tasks",
            provider=self.name,
            task_id=task.task_id,
            model=model,
            fingerprint=task.fingerprint,
            prompt=prompt,
            idempotency_key=request.headers.get("idempotency-key"),
            quirk=quirk,
            fails=task.failure is not None,
            time=task.created,
        )
        return task

    def ulid(self) -> str:
        """A fresh ULID (the id style of APIMart, reused for JimmyAI and ToAPIs)."""
        return ulid(self.state.clock(), self.state.faults.stream("ids"))

    def find_task(self, task_id: str, api_key: str) -> Task:
        """The caller's task, or ``ApiError("not_found")``."""
        task = self.state.tasks.get(self.name, task_id, api_key)
        if task is None:
            raise ApiError("not_found", f"task not found: {task_id}")
        return task

    def status_word(self, path: str, phase: Phase, words: Mapping[str, str]) -> str:
        """The provider's word for ``phase``, or (under ``rate_unknown_status``) an odd one."""
        state = self.state
        if phase.state == "running" and state.faults.roll(
            "unknown_status", state.config.rate_unknown_status
        ):
            state.record_fault("unknown_status", self.name, path)
            return state.faults.choice("unknown_status", UNKNOWN_STATUS_WORDS)
        return words[phase.state]

    def video_url(self, base: str, task: Task, path: str) -> tuple[str, int]:
        """A freshly signed URL for the task's video and its expiry (unix seconds).

        Under ``rate_expired_url`` the URL is handed out already expired.
        """
        state, config = self.state, self.state.config
        served = state.files.for_task(
            self.name, task.task_id, task.duration, task.aspect, task.padding, task.scene
        )
        now = state.clock()
        if state.faults.roll("expired_url", config.rate_expired_url):
            state.record_fault("expired_url", self.name, path)
            expires = int(now) - 60
        else:
            expires = int(now + config.url_ttl(self.name))
        return state.files.url(base, served, expires), expires

    async def receive_file(
        self, request: Request, limit: int, text_fields: tuple[str, ...] = ()
    ) -> tuple[UploadedPart, dict[str, str]]:
        """The multipart ``file`` field (at most ``limit`` bytes) and any allowed text fields."""
        form = await read_form(request, self.state.files.uploads_dir, limit)
        try:
            reject_unknown({**form.fields, **form.files}, ("file", *text_fields))
            part = form.files.get("file")
            if part is None:
                raise ApiError("validation", "missing multipart field 'file'")
            if part.size > limit:
                raise ApiError("too_large", f"file too large: the maximum is {limit // 2**20} MB")
        except ApiError:
            discard(form)
            raise
        return part, form.fields

    def publish_upload(
        self, request: Request, part: UploadedPart, content_type: str, ext: str
    ) -> tuple[Served, str]:
        """Keep an accepted upload, audit it, and return it with its signed URL."""
        state = self.state
        dest = part.path.with_suffix(ext)
        keep(part, dest)
        served = state.files.add_upload(self.name, dest, content_type, ext)
        expires = int(state.clock() + state.config.upload_ttl(self.name))
        url = state.files.url(origin(request), served, expires)
        state.audit.record(
            "uploads",
            provider=self.name,
            filename=part.filename,
            content_type=content_type,
            bytes=part.size,
            url=url,
            time=state.clock(),
        )
        return served, url

    def reject_upload(self, part: UploadedPart, err: ApiError) -> ApiError:
        """Delete a refused upload and return ``err`` to raise."""
        part.path.unlink(missing_ok=True)
        return err


def gateway_response(status: int) -> Response:
    """What a reverse proxy in front of a provider sends on 502/503: HTML, not the API's JSON."""
    title = f"{status} {_GATEWAY_TITLES.get(status, 'Bad Gateway')}"
    body = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center>"
    return HTMLResponse(body + "<hr><center>nginx</center></body></html>", status_code=status)
