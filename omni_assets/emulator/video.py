"""Real, playable mp4s for emulated tasks, rendered once per (duration, aspect) and cached.

Deliberate deviation from every provider: videos are rendered at a small size (16:9 as 256x144,
9:16 as 144x256) and 8 fps, whatever resolution was requested, so that rendering costs a fraction
of a second. They are real H.264 + AAC mp4s with ``movflags=faststart`` (moov before mdat), of the
requested duration, showing a moving box over a shifting colour field and carrying a tone.

Served files can be made large cheaply (``video_padding_bytes``): a top-level ``free`` box of
that size is appended after the mp4. Players and demuxers skip ``free`` boxes, so the file stays
valid, and the padding is streamed as zeros, never held in memory.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

__all__ = [
    "RENDER_SIZES",
    "Renderer",
    "default_cache_dir",
    "free_box_header",
    "iter_padded",
    "render_mp4",
]

FPS = 8
SAMPLE_RATE = 22_050
RENDER_SIZES: dict[str, tuple[int, int]] = {"16:9": (256, 144), "9:16": (144, 256)}
_CACHE_VERSION = "v1"
_CHUNK = 256 * 1024
_ZEROS = bytes(_CHUNK)


def default_cache_dir() -> Path:
    """The shared on-disk cache used when ``EmulatorConfig.cache_dir`` is unset."""
    return Path(tempfile.gettempdir()) / f"omni-assets-emulator-{_CACHE_VERSION}"


def render_mp4(path: Path, duration: int, aspect: str) -> None:
    """Write a ``duration``-second H.264 + AAC mp4 in ``aspect`` ("16:9" or "9:16") to ``path``."""
    width, height = RENDER_SIZES[aspect]
    frames = duration * FPS
    ys, xs = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "30"}
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        box = min(width, height) // 4
        for i in range(frames):
            t = i / max(frames - 1, 1)
            rgb = np.empty((height, width, 3), np.uint8)
            rgb[..., 0] = (xs * 255 // width + i * 8) % 256
            rgb[..., 1] = ys * 255 // height
            rgb[..., 2] = int(255 * t)
            x = int((width - box) * t)
            y = (height - box) // 2
            rgb[y : y + box, x : x + box] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        total = duration * SAMPLE_RATE
        for start in range(0, total, 1024):
            n = min(1024, total - start)
            seconds = np.arange(start, start + n, dtype=np.float32) / SAMPLE_RATE
            tone = 0.2 * np.sin(2 * np.pi * (330 + 110 * seconds) * seconds)
            samples = av.AudioFrame.from_ndarray(
                tone.astype(np.float32).reshape(1, -1), format="fltp", layout="mono"
            )
            samples.sample_rate, samples.pts = SAMPLE_RATE, start
            for packet in audio.encode(samples):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)


class Renderer:
    """Renders each (duration, aspect) once into ``cache_dir`` and returns its path.

    Safe across threads (a lock) and processes (render to a temporary name, then rename).
    """

    def __init__(self, cache_dir: str | None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._lock = threading.Lock()

    def path(self, duration: int, aspect: str) -> Path:
        """The cached mp4 for ``duration`` seconds in ``aspect``, rendering it if missing."""
        width, height = RENDER_SIZES[aspect]
        target = self.cache_dir / f"omni_{duration}s_{width}x{height}.mp4"
        if target.exists():
            return target
        with self._lock:
            if not target.exists():
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".mp4.part")
                os.close(fd)
                try:
                    render_mp4(Path(tmp), duration, aspect)
                    os.replace(tmp, target)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
        return target


def free_box_header(padding: int) -> bytes:
    """The header of a top-level ``free`` box whose total size is ``padding`` bytes.

    Boxes of 4 GiB or more use the 64-bit ``largesize`` form (ISO/IEC 14496-12, 4.2).
    """
    if padding < 8:
        raise ValueError("a free box needs at least 8 bytes")
    if padding < 2**32:
        return padding.to_bytes(4, "big") + b"free"
    return (1).to_bytes(4, "big") + b"free" + padding.to_bytes(8, "big")


def iter_padded(path: Path, padding: int, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start..end`` (inclusive) of the file at ``path`` followed by its ``free`` box."""
    file_size = path.stat().st_size
    header = free_box_header(padding) if padding else b""
    pos = start
    if pos < file_size:
        with path.open("rb") as f:
            f.seek(pos)
            while pos <= end and pos < file_size:
                chunk = f.read(min(_CHUNK, end + 1 - pos, file_size - pos))
                if not chunk:
                    return
                pos += len(chunk)
                yield chunk
    header_end = file_size + len(header)
    if pos <= end and pos < header_end:
        piece = header[pos - file_size : min(end + 1, header_end) - file_size]
        pos += len(piece)
        yield piece
    while pos <= end:
        n = min(_CHUNK, end + 1 - pos)
        pos += n
        yield _ZEROS if n == _CHUNK else _ZEROS[:n]
