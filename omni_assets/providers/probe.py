"""Read a reference video's length, for providers whose body needs it (CRUN ``video_list``).

CRUN's clip object is ``{"url", "start", "ends"}`` with ``ends > start >= 0`` in whole seconds
(providers.md §4.2), so the client must know how long the clip is. The video is fetched with the
client's own pooled httpx client (bounded in size: reference clips are seconds long) into a
temporary file and measured with PyAV.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

import httpx

from .download import safe_url
from .errors import DownloadError
from .redaction import scrub_exception

__all__ = ["clip_seconds", "probe_seconds"]

MAX_PROBE_BYTES = 512 * 1024 * 1024


def clip_seconds(seconds: float) -> int:
    """Whole seconds to ask for: never past the end of the clip, at least 1."""
    return max(1, math.floor(seconds + 1e-6))


def probe_seconds(
    client: httpx.Client, url: str, *, timeout: httpx.Timeout, max_bytes: int = MAX_PROBE_BYTES
) -> float:
    """The duration in seconds of the video at ``url``; DownloadError if it cannot be read."""
    import av  # heavy: only imported when a video actually needs measuring

    with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
        try:
            with client.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
                if response.status_code >= 400:
                    raise DownloadError(
                        f"cannot read the reference video {safe_url(url)}: HTTP "
                        f"{response.status_code}",
                        status_code=response.status_code,
                    )
                size = 0
                for chunk in response.iter_bytes(1024 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"reference video {safe_url(url)} is too large")
                    tmp.write(chunk)
        except httpx.HTTPError as exc:
            scrub_exception(exc)
            raise DownloadError(f"cannot read the reference video {safe_url(url)}: {exc}") from exc
        tmp.flush()
        try:
            with av.open(tmp.name) as container:
                return _duration(container)
        except (av.error.FFmpegError, ValueError) as exc:
            raise DownloadError(f"{safe_url(url)} is not a readable video: {exc}") from exc


def _duration(container: Any) -> float:
    if container.duration:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    for stream in container.streams.video:
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
    raise ValueError("no duration in the container")
