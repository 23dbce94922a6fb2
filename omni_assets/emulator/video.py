"""Real, playable mp4s for emulated tasks that show what was asked, rendered once and cached.

Deliberate deviation from every provider: videos are rendered at a small size (16:9 as 256x144,
9:16 as 144x256) and 8 fps, whatever resolution was requested, so that rendering costs a fraction
of a second. They are real H.264 + AAC mp4s with ``movflags=faststart`` (moov before mdat), of the
requested duration, carrying a tone. What they show is the task's :class:`~.scene.Scene`: the
prompt as text over a colour field of its own (so different requests give different videos and
sha256), a moving box, and

* in frame mode, the source image as the first frame (then the image stays, under the text);
* in reference mode, the source image as an inset, from the first frame on;
* for an extension, the parent's last frame (decoded from the parent's video) as the first frame,
  fading into the child's own scene.

The cache is keyed by the scene, so the same request renders once.

Served files can be made large cheaply (``video_padding_bytes``): a top-level ``free`` box of
that size is appended after the mp4. Players and demuxers skip ``free`` boxes, so the file stays
valid, and the padding is streamed as zeros, never held in memory.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from .font import text_mask
from .scene import Scene

__all__ = [
    "RENDER_SIZES",
    "Renderer",
    "default_cache_dir",
    "free_box_header",
    "iter_padded",
    "last_frame",
    "render_mp4",
]

FPS = 8
SAMPLE_RATE = 22_050
RENDER_SIZES: dict[str, tuple[int, int]] = {"16:9": (256, 144), "9:16": (144, 256)}
_CACHE_VERSION = "v2"  # v2: videos show their scene
_CHUNK = 256 * 1024
_ZEROS = bytes(_CHUNK)


def default_cache_dir() -> Path:
    """The shared on-disk cache used when ``EmulatorConfig.cache_dir`` is unset."""
    return Path(tempfile.gettempdir()) / f"omni-assets-emulator-{_CACHE_VERSION}"


def render_mp4(
    path: Path,
    duration: int,
    aspect: str,
    scene: Scene | None = None,
    start: np.ndarray | None = None,
) -> None:
    """Write a ``duration``-second H.264 + AAC mp4 in ``aspect`` ("16:9" or "9:16") to ``path``,
    showing ``scene`` (``start``: the parent's last frame, for an extension)."""
    width, height = RENDER_SIZES[aspect]
    scene = scene or Scene(duration, aspect)
    frames = duration * FPS
    painter = _Painter(scene, width, height, start)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "30"}
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(painter.frame(i, frames), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        total = duration * SAMPLE_RATE
        for start_sample in range(0, total, 1024):
            n = min(1024, total - start_sample)
            seconds = np.arange(start_sample, start_sample + n, dtype=np.float32) / SAMPLE_RATE
            tone = 0.2 * np.sin(2 * np.pi * (330 + 110 * seconds) * seconds)
            samples = av.AudioFrame.from_ndarray(
                tone.astype(np.float32).reshape(1, -1), format="fltp", layout="mono"
            )
            samples.sample_rate, samples.pts = SAMPLE_RATE, start_sample
            for packet in audio.encode(samples):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)


class _Painter:
    """The frames of one scene; everything that does not move is computed once."""

    def __init__(self, scene: Scene, width: int, height: int, start: np.ndarray | None) -> None:
        self.width, self.height = width, height
        seed = int(scene.key[:8], 16)  # the prompt and inputs pick the colours
        ys, xs = np.mgrid[0:height, 0:width]
        self.red = (xs * 255 // width + (seed & 0xFF)).astype(np.int32)
        self.green = ((ys * 255 // height + (seed >> 8 & 0xFF)) % 256).astype(np.uint8)
        self.blue_base = seed >> 16 & 0xFF
        self.image = _decoded(scene.image, width, height) if scene.image else None
        self.frame_mode = scene.frame_mode and self.image is not None
        self.inset = None
        if self.image is not None and not self.frame_mode:
            self.inset = _decoded(scene.image, width // 3, height // 3)  # type: ignore[arg-type]
        self.start = start if start is not None and start.shape == (height, width, 3) else None
        self.text = text_mask(scene.prompt, width, 3) if scene.prompt.strip() else None
        self.box = min(width, height) // 4

    def _scene(self, i: int, t: float) -> np.ndarray:
        if self.frame_mode:
            assert self.image is not None
            rgb = self.image.copy()
        else:
            rgb = np.empty((self.height, self.width, 3), np.uint8)
            rgb[..., 0] = (self.red + i * 8) % 256
            rgb[..., 1] = self.green
            rgb[..., 2] = (self.blue_base + int(255 * t)) % 256
        if self.inset is not None:
            h, w = self.inset.shape[:2]
            rgb[2 : 2 + h, 2 : 2 + w] = self.inset
        x = int((self.width - self.box) * t)
        y = (self.height - self.box) // 2
        rgb[y : y + self.box, x : x + self.box] = 255
        if self.text is not None:
            band = rgb[self.height - self.text.shape[0] :]
            band //= 3  # a dark band under the text, so it reads on any background
            band[self.text[: band.shape[0]]] = 255
        return rgb

    def frame(self, i: int, frames: int) -> np.ndarray:
        t = i / max(frames - 1, 1)
        if i == 0 and self.start is not None:
            return self.start  # an extension continues exactly where its parent ended
        if i == 0 and self.frame_mode:
            assert self.image is not None
            return self.image  # frame mode: the source image is the first frame
        rgb = self._scene(i, t)
        if self.start is not None and i < frames // 2:
            # The parent's last frame fades into the child's scene over the first half.
            keep = 1.0 - i / max(frames // 2, 1)
            rgb = (self.start * keep + rgb * (1.0 - keep)).astype(np.uint8)
        return rgb


def _decoded(data: bytes, width: int, height: int) -> np.ndarray | None:
    """An image file (PNG, JPEG, WebP, GIF) as ``height`` x ``width`` RGB, or None if unreadable."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            for frame in container.decode(video=0):
                scaled = frame.reformat(width=width, height=height, format="rgb24")
                return np.ascontiguousarray(scaled.to_ndarray())
    except (av.FFmpegError, ValueError, IndexError, OSError):
        return None
    return None


def last_frame(path: Path) -> np.ndarray | None:
    """The last decoded frame of the video at ``path``, as RGB."""
    last = None
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                last = frame
    except (av.FFmpegError, OSError):
        return None
    return None if last is None else np.ascontiguousarray(last.to_ndarray(format="rgb24"))


class Renderer:
    """Renders each scene once into ``cache_dir`` and returns its path.

    Safe across threads (a lock) and processes (render to a temporary name, then rename).
    """

    def __init__(self, cache_dir: str | None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._lock = threading.RLock()  # an extension renders its parent first, under the lock

    def path(self, duration: int, aspect: str, scene: Scene | None = None) -> Path:
        """The cached mp4 showing ``scene`` (``duration`` s in ``aspect``), rendering it if
        missing (and its parent's, whose last frame it starts on)."""
        width, height = RENDER_SIZES[aspect]
        scene = scene or Scene(duration, aspect)
        target = self.cache_dir / f"omni_{duration}s_{width}x{height}_{scene.key}.mp4"
        if target.exists():
            return target
        with self._lock:
            if not target.exists():
                start = None
                if scene.parent is not None:
                    parent = scene.parent
                    start = last_frame(self.path(parent.duration, parent.aspect, parent))
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".mp4.part")
                os.close(fd)
                try:
                    render_mp4(Path(tmp), duration, aspect, scene, start)
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
