"""A request's inputs as a provider will see them, and the keys derived from a request.

Pure functions used by :class:`~omni_assets.providers.client.ProviderClient`: by submit time every
image and video must be an ``http(s)`` URL (uploaded, presigned or given), and an extension is
expressed the way the model supports it (parent task id, or the parent's video URL).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..request import VideoRequest
from .base import TaskRef
from .capabilities import ModelCapabilities
from .errors import InvalidRequestError
from .validation import is_url

__all__ = ["Sources", "derive_idempotency_key", "hash_file", "resolve_sources"]


@dataclass(frozen=True)
class Sources:
    """A request's inputs as the provider will see them: URLs only, extension resolved."""

    image_urls: tuple[str, ...] = ()
    video_url: str | None = None
    extend_task_id: str | None = None
    #: The reference video's length, when known (CRUN needs it for ``video_list``).
    video_seconds: float | None = None


def derive_idempotency_key(request: VideoRequest, model: str) -> str:
    """A stable ``Idempotency-Key`` for one request on one model (1-191 visible ASCII).

    Same content → same key, so a replay after a crash finds the task created before it. To
    generate the same content again *on purpose*, pass a new key explicitly.
    """
    return f"omni-{hashlib.sha256(f'{model}|{request.fingerprint()}'.encode()).hexdigest()}"


def resolve_sources(
    request: VideoRequest,
    caps: ModelCapabilities,
    image_urls: tuple[str, ...],
    video_url: str | None,
    extend_from: TaskRef | None,
) -> Sources:
    """The URLs to send: ``image_urls``/``video_url`` override the request's own sources."""

    def reject(field: str, value: Any, allowed: str) -> InvalidRequestError:
        return InvalidRequestError(
            field, value, allowed, provider=caps.provider, model=caps.model, request_key=request.key
        )

    if image_urls and len(image_urls) != len(request.images):
        raise reject(
            "images", f"<{len(image_urls)} URLs>", f"one URL per image ({len(request.images)})"
        )
    images = tuple(image_urls or request.images)
    for image in images:
        if not is_url(image):
            raise reject(
                "images", image, "http(s):// URLs at submit time: upload local files first"
            )
    extend_task_id = None
    video = video_url or request.video
    if request.extends is not None:
        by_task = caps.extension is not None and caps.extension.by_task
        if by_task and extend_from is not None and extend_from.provider == caps.provider:
            extend_task_id = extend_from.task_id
        elif video_url is None or request.video is not None:
            allowed = "the parent's video URL as video_url="
            if by_task:
                allowed = f"the parent's {caps.provider} TaskRef as extend_from=, or " + allowed
            raise reject("extends", request.extends, allowed)
    if video is not None and not is_url(video):
        raise reject("video", video, "an http(s):// URL at submit time: resolve local files first")
    return Sources(image_urls=images, video_url=video, extend_task_id=extend_task_id)


def hash_file(path: str) -> tuple[str, int]:
    """sha256 (hex) and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
