"""What a stored video really is (duration, resolution, codecs), and thumbnails of it.

Everything reads through an fsspec file object, so it works the same on a local disk and on S3
(PyAV reads only the parts it needs: the index, then a few packets). Images are encoded with
FFmpeg's own encoders through PyAV, so no imaging library is needed.

Thumbnails are markdown the Dagster UI shows in place: small ``data:`` images. The UI renders a
markdown metadata value inline only when it is shorter than 1,000 characters (ui-core
``MetadataEntry.tsx``: ``expandSmallValues && mdStr.length < 1000``); a longer one hides behind a
"[Show Markdown]" button. A PNG of a 720p frame is 10-20 KB even 160 px wide, so the inline
thumbnail is WebP (FFmpeg's libwebp, through PyAV), made narrower until it fits; a larger
preview, a few KB, sits behind the button. Without libwebp, PNG is used the same way.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import av
import av.container
import av.video

from ..providers.errors import DownloadError

__all__ = [
    "INLINE_MD_LIMIT",
    "InvalidVideoError",
    "VideoProbe",
    "data_uri",
    "encode_image",
    "inline_thumbnail_md",
    "probe_video",
    "thumbnail_and_preview_md",
    "thumbnail_frame",
]


# PyAV reads a few 32 KB pieces (the index, then a frame); s3fs would otherwise fetch (and hold)
# a 50 MB block on the first read.
_READ_BLOCK = 1 << 20


class InvalidVideoError(DownloadError):
    """The file is not a playable video: not a video at all, no video stream, or undecodable."""


@dataclass(frozen=True)
class VideoProbe:
    """Facts read from the file itself (not from what the provider said)."""

    duration_s: float
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    fps: float | None
    size: int
    #: Video frames that decoded (the whole stream is decoded), and how many the index lists.
    frames: int = 0
    indexed_frames: int | None = None

    @property
    def whole(self) -> bool:
        """Every frame the container's index lists decoded (or the index lists none)."""
        return self.frames > 0 and (not self.indexed_frames or self.frames >= self.indexed_frames)


def probe_video(fs: Any, path: str) -> VideoProbe:
    """Read ``path`` on fsspec filesystem ``fs``; raises InvalidVideoError if it does not play.

    "Plays" means: a container FFmpeg recognizes, a video stream, and every frame of it decodes
    (as many as the container's index lists): a file cut short after its index, which would show
    its first frames and then stop, does not play.
    """
    size = _nonempty_size(fs, path)
    with fs.open(path, "rb", block_size=_READ_BLOCK) as fh, _open(fh, path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"  # decode on every core: the whole stream is read
        indexed = int(stream.frames or 0) or None
        frame, decoded = None, 0
        try:
            for picture in container.decode(stream):
                frame = frame or picture
                decoded += 1
        except av.FFmpegError as exc:
            of = f" of {indexed}" if indexed else ""
            raise InvalidVideoError(
                f"{path}: the video stream does not decode past frame {decoded}{of} ({exc})"
            ) from exc
        if frame is None:
            raise InvalidVideoError(f"{path}: the video stream has no frame")
        if indexed and decoded < indexed:
            raise InvalidVideoError(
                f"{path}: only {decoded} of {indexed} frames decode (the file is cut short)"
            )
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        rate = stream.average_rate or stream.guessed_rate
        return VideoProbe(
            duration_s=_duration(container, stream),
            width=stream.codec_context.width or frame.width,
            height=stream.codec_context.height or frame.height,
            video_codec=stream.codec_context.name,
            audio_codec=audio,
            fps=round(float(rate), 3) if rate else None,
            size=size,
            frames=decoded,
            indexed_frames=indexed,
        )


def thumbnail_frame(fs: Any, path: str, width: int = 160, *, at: float = 1 / 3) -> av.VideoFrame:
    """The frame at fraction ``at`` of the video (or an image's only frame), as ``rgb24``
    ``width`` pixels wide (aspect kept), for any encoder."""
    if width < 2:
        raise ValueError(f"thumbnail width must be at least 2 pixels, not {width}")
    _nonempty_size(fs, path)
    with fs.open(path, "rb", block_size=_READ_BLOCK) as fh, _open(fh, path) as container:
        stream = _video_stream(container, path)
        target = _duration(container, stream) * at
        frame = None
        try:
            if target > 0 and stream.time_base:
                # Lands on the keyframe before the target; decode forward from there.
                container.seek(int(target / stream.time_base), stream=stream)
            for frame in container.decode(stream):
                if frame.time is None or frame.time >= target:
                    break
        except av.FFmpegError as exc:
            raise InvalidVideoError(f"{path}: cannot decode a frame ({exc})") from exc
        if frame is None:
            raise InvalidVideoError(f"{path}: the video stream has no frame")
    return _scaled(frame, width)


def _nonempty_size(fs: Any, path: str) -> int:
    size = int(fs.size(path))
    if size == 0:  # FFmpeg would seek before the start of it and fail with a bare EINVAL
        raise InvalidVideoError(f"{path}: not a video FFmpeg can read (the file is empty)")
    return size


def _open(fh: Any, path: str) -> av.container.InputContainer:
    try:
        container: av.container.InputContainer = av.open(fh, "r")
    except av.FFmpegError as exc:
        raise InvalidVideoError(f"{path}: not a video FFmpeg can read ({exc})") from exc
    return container


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise InvalidVideoError(f"{path}: no video stream (streams: {kinds})")
    return container.streams.video[0]


def _duration(container: av.container.InputContainer, stream: av.video.VideoStream) -> float:
    if container.duration is not None:
        return container.duration / av.time_base
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


#: The UI shows markdown inline below this many characters (see the module docstring).
INLINE_MD_LIMIT = 1000
_INLINE_WIDTHS = (160, 128, 96, 64, 48, 32)
_PREVIEW_WIDTH = 320
_WEBP = "libwebp" in av.codecs_available


def data_uri(data: bytes, mime: str) -> str:
    """``data:{mime};base64,...``: shows inline in markdown (the Dagster UI renders it)."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def encode_image(frame: av.VideoFrame, *, quality: int = 50) -> tuple[bytes, str]:
    """``frame`` as WebP (PNG without libwebp); returns (bytes, MIME type)."""
    if _WEBP:
        # compression_level 2 (libwebp's default is 4): half the CPU, the same size within 3%.
        options = {"quality": str(quality), "compression_level": "2"}
        return _encode(frame, "libwebp", "yuv420p", options), "image/webp"
    return _encode(frame, "png", "rgb24", {}), "image/png"


def inline_thumbnail_md(fs: Any, path: str, *, alt: str = "thumbnail") -> str:
    """``![alt](data:...)`` of the video (or image) at ``path``, under the inline limit.

    The widest thumbnail that fits; the narrowest one if none does (the UI then puts it behind
    its button, which still works).
    """
    return _inline(thumbnail_frame(fs, path, _INLINE_WIDTHS[0]), alt)


def thumbnail_and_preview_md(fs: Any, path: str) -> tuple[str, str]:
    """:func:`inline_thumbnail_md`, and a larger preview (a few KB, shown behind the UI's
    "[Show Markdown]"), from one decoded frame."""
    frame = thumbnail_frame(fs, path, _PREVIEW_WIDTH)
    return _inline(frame, "thumbnail"), _md("preview", frame, quality=60)


def _inline(frame: av.VideoFrame, alt: str) -> str:
    md = ""
    for width in _INLINE_WIDTHS:
        md = _md(alt, frame if width >= frame.width else _scaled(frame, width))
        if len(md) < INLINE_MD_LIMIT:
            break
    return md


def _md(alt: str, frame: av.VideoFrame, quality: int = 50) -> str:
    data, mime = encode_image(frame, quality=quality)
    return f"![{alt}]({data_uri(data, mime)})"


def _scaled(frame: av.VideoFrame, width: int) -> av.VideoFrame:
    """``frame`` as ``rgb24``, ``width`` pixels wide, its aspect kept (an even height)."""
    height = max(2, round(width * frame.height / frame.width / 2) * 2)
    return frame.reformat(width=width, height=height, format="rgb24")


def _encode(frame: av.VideoFrame, codec_name: str, pix_fmt: str, options: dict[str, str]) -> bytes:
    codec = av.CodecContext.create(codec_name, "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = frame.width, frame.height, pix_fmt
    codec.options = options
    converted = frame.reformat(format=pix_fmt)
    return b"".join(bytes(p) for p in [*codec.encode(converted), *codec.encode(None)])
