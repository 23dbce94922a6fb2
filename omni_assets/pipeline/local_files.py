"""Local source files a request names: which ones may leave the machine (issue 12 finding 4).

A request image is uploaded to a provider and copied into ``storage/sources``, so a requests file
that names ``/etc/passwd``, a symlink to a private key, ``/proc/self/environ`` or a FIFO must not
get that far. :func:`check_local_file` accepts a file only when

* its real path (every symlink followed) lies under an allowed root: the requests file's folder,
  or a folder of ``OMNI_ALLOWED_IMAGE_ROOTS`` (settings.py); for requests that come from no file
  (a Python list, an upstream asset), the allowed roots, else the current directory;
* it is not under ``/proc``, ``/sys`` or ``/dev``, whatever the roots say;
* it is a regular file (no FIFO, device, socket or directory), checked on the opened descriptor
  (opened with ``O_NONBLOCK``, so a FIFO cannot hang the check, and ``O_NOFOLLOW`` on the real
  path, so it cannot be swapped for a symlink in between);
* an image decodes as the kind its extension claims: its first bytes are that format's signature
  and PyAV decodes a frame of it (its width and height are returned; an SVG is checked as XML
  text holding an ``<svg`` element, without dimensions).

All of it runs before any HTTP call: at intake (an issue naming the request, the field and the
reason) and again just before a file is copied and uploaded (it may have changed since).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import av

__all__ = ["FORBIDDEN_ROOTS", "LocalFile", "LocalFileRefused", "allowed_roots", "check_local_file"]

#: Kernel and device trees: never a source file, whatever the allowed roots say.
FORBIDDEN_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))

# extension -> (format name, does the head match it?)
_SIGNATURES: dict[str, tuple[str, Callable[[bytes], bool]]] = {
    ".png": ("PNG", lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
    ".jpg": ("JPEG", lambda h: h.startswith(b"\xff\xd8\xff")),
    ".jpeg": ("JPEG", lambda h: h.startswith(b"\xff\xd8\xff")),
    ".webp": ("WebP", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    ".gif": ("GIF", lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    ".bmp": ("BMP", lambda h: h.startswith(b"BM")),
    ".svg": ("SVG", lambda h: b"<svg" in h and h.lstrip()[:1] == b"<"),
}
_HEAD = 4096


class LocalFileRefused(ValueError):
    """Why a local file may not be used; the text is the reason (no file content in it)."""


@dataclass(frozen=True)
class LocalFile:
    """A local file that passed: where it really is, and an image's dimensions."""

    path: str
    real_path: str
    size: int
    format: str | None = None
    width: int | None = None
    height: int | None = None


def allowed_roots(
    base_dir: Path | None, configured: Sequence[str] = (), *, cwd: Path | None = None
) -> tuple[Path, ...]:
    """The folders a request's files may be in: its requests file's folder and the configured
    roots; with neither, the current directory."""
    roots = [Path(r) for r in configured if r]
    if base_dir is not None:
        roots.insert(0, base_dir)
    if not roots:
        roots = [cwd or Path.cwd()]
    return tuple(Path(os.path.realpath(r)) for r in roots)


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_local_file(path: str, roots: Sequence[Path], *, image: bool = True) -> LocalFile:
    """Check ``path`` (see the module docstring); raise :class:`LocalFileRefused` with why."""
    given = Path(os.path.abspath(path))
    real = Path(os.path.realpath(given))
    for forbidden in FORBIDDEN_ROOTS:
        if _under(given, forbidden) or _under(real, forbidden):
            raise LocalFileRefused(f"{forbidden} is never a source file")
    if not any(_under(real, Path(os.path.realpath(root))) for root in roots):
        shown = ", ".join(str(r) for r in roots)
        if real != given:
            raise LocalFileRefused(
                f"it is a symlink leading outside the allowed folders ({shown}); allow its "
                "target's folder in OMNI_ALLOWED_IMAGE_ROOTS, or copy the file in"
            )
        raise LocalFileRefused(
            f"it is outside the allowed folders ({shown}): the requests file's folder and "
            "OMNI_ALLOWED_IMAGE_ROOTS"
        )
    try:
        before = os.stat(real)
    except FileNotFoundError:
        raise LocalFileRefused("an existing local file is needed, and there is none") from None
    except OSError as exc:
        raise LocalFileRefused(f"cannot read it: {exc.strerror}") from None
    if not stat.S_ISREG(before.st_mode):
        raise LocalFileRefused(
            f"an existing local file is needed (a regular file), and it is a "
            f"{_kind(before.st_mode)}"
        )
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise LocalFileRefused(f"cannot open it: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        opened = os.fstat(fh.fileno())
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            raise LocalFileRefused("it changed while it was checked")
        if not image:
            return LocalFile(str(given), str(real), opened.st_size)
        seen = (str(real), opened.st_dev, opened.st_ino, opened.st_size, opened.st_mtime_ns)
        facts = _checked.get(seen)
        if facts is None:
            facts = _check_image(fh, given.suffix.lower(), opened.st_size)
            if len(_checked) > 4096:
                _checked.clear()
            _checked[seen] = facts
    return LocalFile(str(given), str(real), opened.st_size, *facts)


# (real path, device, inode, size, mtime) -> (format, width, height): 25,000 requests naming one
# image decode it once.
_checked: dict[tuple[str, int, int, int, int], tuple[str | None, int | None, int | None]] = {}


def _check_image(fh: IO[bytes], ext: str, size: int) -> tuple[str | None, int | None, int | None]:
    known = _SIGNATURES.get(ext)
    if known is None:  # not an image extension: validation refuses it, naming the allowed ones
        return None, None, None
    name, matches = known
    if size == 0:
        raise LocalFileRefused(f"it is empty, not a {name} image")
    head = fh.read(_HEAD)
    if not matches(head):
        raise LocalFileRefused(f"its content is not a {name} image (it does not start as one)")
    if name == "SVG":
        return name, None, None
    fh.seek(0)
    try:
        with av.open(fh, "r") as container:
            stream = container.streams.video[0]
            frame = next(container.decode(stream))
            return name, frame.width, frame.height
    except (av.error.FFmpegError, IndexError, StopIteration, ValueError) as exc:
        raise LocalFileRefused(
            f"it does not decode as a {name} image ({type(exc).__name__})"
        ) from None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"
