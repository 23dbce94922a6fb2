"""A minimal ``multipart/form-data`` reader for the upload endpoints.

Starlette's own form parser needs the optional ``python-multipart`` package; uploads are simple
enough (one file, a few text fields) to parse here. The body is spooled to disk while counting
bytes (refusing it past the limit), then split with ``mmap``, so a 100 MB upload never sits in
memory.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

from starlette.requests import Request

from .errors import ApiError

__all__ = ["Form", "UploadedPart", "discard", "keep", "read_form"]

# Room for boundaries and part headers on top of the documented file size limit.
_SLACK = 64 * 1024
_MAX_FIELD = 64 * 1024
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UploadedPart:
    """A file field: its client-side name and type, and where its bytes now are."""

    filename: str
    content_type: str
    path: Path
    size: int


@dataclass
class Form:
    """Text fields and file fields of one multipart body."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedPart] = field(default_factory=dict)


async def read_form(request: Request, dest_dir: Path, limit: int) -> Form:
    """Parse the multipart body of ``request``; files land in ``dest_dir``.

    Raises ``ApiError("too_large")`` when the body exceeds ``limit`` (plus framing slack) and
    ``ApiError("validation")`` when it is not multipart/form-data.
    """
    header = Message()
    header["content-type"] = request.headers.get("content-type", "")
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise ApiError("validation", "expected a multipart/form-data body with a 'file' field")
    too_large = ApiError("too_large", f"file too large: the maximum is {limit // 2**20} MB")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _SLACK:
        raise too_large
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, spool_name = tempfile.mkstemp(dir=dest_dir, suffix=".multipart")
    spool = Path(spool_name)
    try:
        received = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit + _SLACK:
                    raise too_large
                out.write(chunk)
        return _split(spool, boundary.encode("latin-1"), dest_dir)
    finally:
        spool.unlink(missing_ok=True)


def _split(spool: Path, boundary: bytes, dest_dir: Path) -> Form:
    form = Form()
    if spool.stat().st_size == 0:
        return form
    delimiter = b"--" + boundary
    with spool.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = data.find(delimiter)
        while pos >= 0:
            pos += len(delimiter)
            if data[pos : pos + 2] == b"--":
                break
            pos += 2  # the CRLF ending the delimiter line
            head_end = data.find(b"\r\n\r\n", pos)
            end = data.find(b"\r\n" + delimiter, head_end + 4) if head_end >= 0 else -1
            if end < 0:
                raise ApiError("validation", "malformed multipart body")
            headers = HeaderParser().parsestr(data[pos:head_end].decode("utf-8", "replace"))
            name = headers.get_param("name", header="content-disposition")
            filename = headers.get_filename()
            if not isinstance(name, str):
                raise ApiError("validation", "multipart part without a field name")
            if name in form.fields or name in form.files:
                raise ApiError("validation", f"multipart field {name!r} given more than once")
            start = head_end + 4
            if filename is None:
                if end - start > _MAX_FIELD:
                    raise ApiError("validation", f"multipart field {name!r} is too long")
                form.fields[name] = data[start:end].decode("utf-8", "replace")
            else:
                fd, part_name = tempfile.mkstemp(dir=dest_dir, suffix=".part")
                with os.fdopen(fd, "wb") as out:
                    for offset in range(start, end, _COPY_CHUNK):
                        out.write(data[offset : min(offset + _COPY_CHUNK, end)])
                form.files[name] = UploadedPart(
                    filename=filename,
                    content_type=headers.get_content_type(),
                    path=Path(part_name),
                    size=end - start,
                )
            pos = end + 2
    return form


def discard(form: Form) -> None:
    """Delete every file of ``form`` (after a refused upload)."""
    for part in form.files.values():
        part.path.unlink(missing_ok=True)


def keep(part: UploadedPart, dest: Path) -> None:
    """Move an accepted file part to its final place."""
    shutil.move(part.path, dest)
