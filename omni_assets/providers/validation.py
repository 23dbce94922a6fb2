"""Check a :class:`VideoRequest` against a provider+model's capabilities, before any HTTP call.

Every refusal is an :class:`InvalidRequestError` that names the field, the value given and what
this provider+model allows, so a user can fix the request without reading provider docs. Values a
provider would *silently ignore* (omni-10s durations, APIMart aspect ratios other than 16:9|9:16)
are refused too: a request must never produce something other than what it asks for.

Local files are only checked here (exist, readable, image/video by extension, not larger than the
provider's upload limit); turning them into URLs happens later, by the provider's upload API or,
where there is none (CRUN), by a URL resolver the caller supplies (``resolve_local=True``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..request import GenerationMode, VideoRequest
from .capabilities import (
    IMAGE_EXTENSIONS,
    PROVIDER_NAMES,
    VIDEO_EXTENSIONS,
    DurationWithVideo,
    Extension,
    ModelCapabilities,
    find,
    models_for,
)
from .errors import InvalidRequestError

__all__ = ["check_local", "describe_counts", "is_url", "validate"]

_Reject = Callable[[str, Any, str], InvalidRequestError]


def is_url(source: str) -> bool:
    """True for ``http(s)://`` sources, False for local paths."""
    return source.startswith(("http://", "https://"))


def describe_counts(counts: tuple[int, ...]) -> str:
    """``(0, 1, 3)`` → ``"0, 1 or 3"``; a contiguous run from 0 → ``"0 to 7"``."""
    if len(counts) > 3 and counts == tuple(range(counts[0], counts[-1] + 1)):
        return f"{counts[0]} to {counts[-1]}"
    words = [str(c) for c in counts]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _join(values: tuple[Any, ...]) -> str:
    return ", ".join(str(v) for v in values)


def validate(
    request: VideoRequest,
    provider: str,
    model: str | None = None,
    *,
    resolve_local: bool = True,
) -> ModelCapabilities:
    """Raise :class:`InvalidRequestError` unless ``provider``/``model`` can render ``request``.

    The model is ``request.model``, else ``model``, else the provider's default. Returns the
    capabilities of the resolved model. ``resolve_local=False`` says no URL resolver will be
    available, so local files are refused where the provider has no upload API for them.
    """
    key = request.key
    if provider not in PROVIDER_NAMES:
        raise InvalidRequestError("provider", provider, _join(PROVIDER_NAMES), request_key=key)
    if request.provider is not None and request.provider != provider:
        raise InvalidRequestError(
            "provider", request.provider, provider, provider=provider, request_key=key
        )
    name = request.model or model
    caps = find(provider, name)
    if caps is None:
        raise InvalidRequestError(
            "model", name, _join(models_for(provider)), provider=provider, request_key=key
        )

    def reject(field: str, value: Any, allowed: str) -> InvalidRequestError:
        return InvalidRequestError(
            field, value, allowed, provider=provider, model=caps.model, request_key=key
        )

    if len(request.prompt) > caps.prompt_max:
        raise reject("prompt", f"<{len(request.prompt)} characters>", f"≤{caps.prompt_max} chars")

    extends_by_video = request.extends is not None and caps.extension is Extension.VIDEO_URL
    videos = int(request.video is not None) + int(extends_by_video)
    _check_duration(request, caps, videos, reject)
    _check_look(request, caps, reject)

    if request.extends is not None and not caps.can_extend:
        raise reject(
            "extends", request.extends, "nothing: this model cannot continue an earlier video"
        )
    if videos > caps.max_videos:
        if caps.max_videos == 0:
            raise reject("video", request.video, "no video input on this model")
        allowed = f"at most {caps.max_videos} video"
        if extends_by_video:
            allowed += " (extending uses that slot for the parent's video, so omit video)"
        raise reject("video", request.video, allowed)

    _check_images(request, caps, videos, reject)
    for image in request.images:
        check_local(image, caps, "images", resolve_local=resolve_local, request_key=key)
    if request.video is not None:
        check_local(request.video, caps, "video", resolve_local=resolve_local, request_key=key)
    return caps


def _check_duration(
    request: VideoRequest, caps: ModelCapabilities, videos: int, reject: _Reject
) -> None:
    duration = request.duration
    if duration is None:
        return
    if caps.fixed_duration is not None:
        if duration != caps.fixed_duration:
            raise reject("duration", duration, f"{caps.fixed_duration} ({caps.duration_hint})")
        return
    if not caps.durations:
        raise reject("duration", duration, caps.duration_hint or "no duration parameter")
    if duration not in caps.durations:
        raise reject("duration", duration, _join(caps.durations))
    if videos and caps.duration_with_video is DurationWithVideo.FORBIDDEN:
        raise reject(
            "duration",
            duration,
            "no duration together with a reference video (or an extension): omit duration, "
            "the video decides",
        )


def _check_look(request: VideoRequest, caps: ModelCapabilities, reject: _Reject) -> None:
    resolution = request.resolution
    if resolution is not None and resolution not in caps.resolutions:
        hint = " (fixed; omit resolution)" if caps.fixed_resolution else ""
        raise reject("resolution", resolution, _join(caps.resolutions) + hint)
    aspect = request.aspect_ratio
    if aspect is not None and aspect not in caps.aspect_ratios and aspect not in caps.orientations:
        raise reject("aspect_ratio", aspect, _join((*caps.aspect_ratios, *caps.orientations)))
    effective = caps.ratio_of(aspect)
    only = caps.resolution_aspects.get(resolution or caps.default_resolution)
    if only is not None and effective not in only:
        raise reject(
            "aspect_ratio", aspect or effective, f"{_join(only)} with resolution {resolution}"
        )


def _check_images(
    request: VideoRequest, caps: ModelCapabilities, videos: int, reject: _Reject
) -> None:
    count = len(request.images)
    mode = request.mode
    if mode is not None and mode not in caps.modes:
        allowed = _join(tuple(m.value for m in caps.modes)) or "no mode: this model takes no images"
        raise reject("mode", mode.value, allowed)
    if mode is GenerationMode.FRAME:
        if count not in caps.frame_image_counts:
            raise reject(
                "images",
                f"<{count} images>",
                f"exactly {describe_counts(caps.frame_image_counts)} image in frame mode",
            )
        counts = caps.frame_image_counts
    else:
        counts = caps.image_counts
        if videos and caps.image_counts_with_video is not None:
            counts = caps.image_counts_with_video
        if count not in counts:
            what = " with a video" if counts is caps.image_counts_with_video else ""
            raise reject("images", f"<{count} images>", f"{describe_counts(counts)} images{what}")
    if caps.max_refs is not None and count + videos > caps.max_refs:
        raise reject(
            "images",
            f"<{count} images + {videos} video>",
            f"at most {caps.max_refs} references (images and videos together)",
        )


def check_local(
    source: str,
    caps: ModelCapabilities,
    field: str,
    *,
    resolve_local: bool = True,
    request_key: str | None = None,
) -> None:
    """Check one ``images``/``video`` source; URLs pass, local files must be usable.

    A local file must exist, be readable, have an image (or video) extension and, where the
    provider's upload API will carry it, fit that API's size limit.
    """
    if is_url(source):
        return

    def reject(allowed: str) -> InvalidRequestError:
        return InvalidRequestError(
            field,
            source,
            allowed,
            provider=caps.provider,
            model=caps.model,
            request_key=request_key,
        )

    if not os.path.isfile(source):
        raise reject("an existing local file or an http(s):// URL")
    if not os.access(source, os.R_OK):
        raise reject("a readable local file or an http(s):// URL")
    upload = caps.upload if field == "images" else None
    allowed_ext = (
        upload.extensions
        if upload
        else (IMAGE_EXTENSIONS if field == "images" else VIDEO_EXTENSIONS)
    )
    ext = os.path.splitext(source)[1].lower()
    if ext not in allowed_ext:
        raise reject(f"files ending in {_join(allowed_ext)}")
    if upload is not None:
        size = os.path.getsize(source)
        if size > upload.max_bytes:
            raise reject(
                f"files up to {upload.max_bytes // (1024 * 1024)} MB "
                f"(this one is {size / (1024 * 1024):.1f} MB)"
            )
    elif not resolve_local:
        raise reject(
            f"http(s):// URLs only: {caps.provider} has no upload API for this file and no URL "
            "resolver is configured"
        )
