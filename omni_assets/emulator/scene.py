"""What an emulated task's video shows: its prompt, its source image, its parent's last frame.

A real provider's video depends on what was asked; the emulator's did not (one video per duration
and aspect, so three different requests had the same sha256). :func:`scene_for` reads a validated
create body of any dialect for what the rendered video should show:

* the prompt (drawn as text);
* the first image input: a ``data:image/...`` URI, an inline ``{"mime_type": "image/...",
  "data"}`` block (Google), or a URL of a file uploaded to this emulator (external URLs are not
  fetched); ``generation_type: frame`` (JimmyAI) or ``task: image_to_video`` (Google) make it the
  first frame, otherwise it is shown as a reference inset;
* the parent of an extension: ``extras["parent"]`` (a task id of the same dialect: APIMart's
  ``extend_from_task_id``, Google's ``previous_interaction_id``) or a video URL this emulator
  served for another task (``video_urls``, CRUN's ``video_list``); the video starts on the
  parent's last frame.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Scene", "scene_for"]

_MAX_IMAGE_BYTES = 64 * 2**20  # larger inputs are shown as if absent: rendering stays cheap


@dataclass(frozen=True)
class Scene:
    """Everything a rendered video depends on; ``key`` names it in the render cache."""

    duration: int
    aspect: str
    prompt: str = ""
    image: bytes | None = field(default=None, repr=False)
    frame_mode: bool = False  # the image is the first frame (else a reference inset)
    parent: Scene | None = None

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for part in (
            str(self.duration),
            self.aspect,
            self.prompt,
            hashlib.sha256(self.image).hexdigest() if self.image else "-",
            "frame" if self.frame_mode else "reference",
            self.parent.key if self.parent else "-",
        ):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()[:24]


def scene_for(
    state: Any,  # EmulatorState: its tasks and files (typed loosely: state.py imports this)
    provider: str,
    body: Mapping[str, Any],
    *,
    prompt: str,
    duration: int,
    aspect: str,
    extras: Mapping[str, Any],
) -> Scene:
    """The scene of a new task of ``provider`` created from ``body``."""
    image: bytes | None = None
    parent: Scene | None = None
    frame_mode = False
    parent_id = extras.get("parent")
    if isinstance(parent_id, str):
        task = state.tasks.by_id(provider, parent_id)
        parent = task.scene if task is not None else None
    for key, value in _walk(body):
        if (key == "generation_type" and value == "frame") or (
            key == "task" and value == "image_to_video"
        ):
            frame_mode = True
        elif isinstance(value, Mapping):
            mime = value.get("mime_type") or value.get("mimeType")
            data = value.get("data")
            if image is None and isinstance(mime, str) and mime.startswith("image/"):
                image = _b64(data) if isinstance(data, str) else None
        elif isinstance(value, str):
            if image is None and value.startswith("data:image/"):
                image = _b64(value.partition(",")[2])
            elif "/files/" in value:
                found_image, found_parent = _served(state, value)
                image = image or found_image
                parent = parent or found_parent
    return Scene(duration, aspect, prompt, image, frame_mode and image is not None, parent)


def _walk(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a JSON body, nested ones included, dicts before their items."""
    yield key, value
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)


def _b64(text: str) -> bytes | None:
    try:
        data = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None
    return data if 0 < len(data) <= _MAX_IMAGE_BYTES else None


def _served(state: Any, url: str) -> tuple[bytes | None, Scene | None]:
    """An uploaded image's bytes, or the scene of the task whose video this URL serves."""
    name = urlsplit(url).path.rpartition("/files/")[2]
    served = state.files.lookup(name)
    if served is None:
        return None, None
    if served.task_id is not None:
        task = state.tasks.by_id(served.provider, served.task_id)
        return None, task.scene if task is not None else None
    if served.path is not None and served.content_type.startswith("image/"):
        try:
            if served.path.stat().st_size <= _MAX_IMAGE_BYTES:
                return served.path.read_bytes(), None
        except OSError:
            pass
    return None, None
