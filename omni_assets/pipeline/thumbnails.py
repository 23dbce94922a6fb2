"""Thumbnails as markdown the Dagster UI shows in place: small ``data:`` images.

The UI renders a markdown metadata value inline only when it is shorter than 1,000 characters
(ui-core ``MetadataEntry.tsx``: ``expandSmallValues && mdStr.length < 1000``); a longer one hides
behind a "[Show Markdown]" button. A PNG of a 720p frame is 10-20 KB even 160 px wide, so the
inline thumbnail is WebP (FFmpeg's libwebp, through PyAV), made narrower until it fits; a larger
preview, a few KB, sits behind the button. Without libwebp, PNG is used the same way.
"""

from __future__ import annotations

import base64
from typing import Any

import av

from .probe import thumbnail_frame

__all__ = [
    "INLINE_MD_LIMIT",
    "data_uri",
    "encode_image",
    "inline_thumbnail_md",
    "preview_md",
    "thumbnail_and_preview_md",
]

#: The UI shows markdown inline below this many characters (see the module docstring).
INLINE_MD_LIMIT = 1000
_INLINE_WIDTHS = (160, 128, 96, 64, 48, 32)
_PREVIEW_WIDTH = 320
_WEBP = "libwebp" in av.codecs_available


def data_uri(data: bytes, mime: str) -> str:
    """``data:{mime};base64,...``."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def encode_image(frame: av.VideoFrame, *, quality: int = 50) -> tuple[bytes, str]:
    """``frame`` as WebP (PNG without libwebp); returns (bytes, MIME type)."""
    if _WEBP:
        return _encode(frame, "libwebp", "yuv420p", {"quality": str(quality)}), "image/webp"
    return _encode(frame, "png", "rgb24", {}), "image/png"


def inline_thumbnail_md(fs: Any, path: str, *, alt: str = "thumbnail") -> str:
    """``![alt](data:...)`` of the video (or image) at ``path``, under the inline limit.

    The widest thumbnail that fits; the narrowest one if none does (the UI then puts it behind
    its button, which still works).
    """
    return _inline(thumbnail_frame(fs, path, _INLINE_WIDTHS[0]), alt)


def preview_md(fs: Any, path: str, *, alt: str = "preview", width: int = _PREVIEW_WIDTH) -> str:
    """A larger ``![alt](data:...)`` (a few KB): shown behind the UI's "[Show Markdown]"."""
    return _md(alt, thumbnail_frame(fs, path, width), quality=60)


def thumbnail_and_preview_md(fs: Any, path: str) -> tuple[str, str]:
    """:func:`inline_thumbnail_md` and :func:`preview_md` from one decoded frame."""
    frame = thumbnail_frame(fs, path, _PREVIEW_WIDTH)
    return _inline(frame, "thumbnail"), _md("preview", frame, quality=60)


def _inline(frame: av.VideoFrame, alt: str) -> str:
    md = ""
    for width in _INLINE_WIDTHS:
        md = _md(alt, _resize(frame, width))
        if len(md) < INLINE_MD_LIMIT:
            break
    return md


def _md(alt: str, frame: av.VideoFrame, quality: int = 50) -> str:
    data, mime = encode_image(frame, quality=quality)
    return f"![{alt}]({data_uri(data, mime)})"


def _resize(frame: av.VideoFrame, width: int) -> av.VideoFrame:
    if width >= frame.width:
        return frame
    height = max(2, round(width * frame.height / frame.width / 2) * 2)
    return frame.reformat(width=width, height=height, format="rgb24")


def _encode(frame: av.VideoFrame, codec_name: str, pix_fmt: str, options: dict[str, str]) -> bytes:
    codec = av.CodecContext.create(codec_name, "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = frame.width, frame.height, pix_fmt
    codec.options = options
    converted = frame.reformat(format=pix_fmt)
    return b"".join(bytes(p) for p in [*codec.encode(converted), *codec.encode(None)])
