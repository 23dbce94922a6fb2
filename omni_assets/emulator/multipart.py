"""``multipart/form-data`` for the upload endpoints, parsed by python-multipart as it streams in.

Each chunk of the body goes to python-multipart's streaming parser as it arrives; a file part is
written straight to a file in ``dest_dir`` and text fields are kept (a few KB at most), so a
100 MB upload never sits in memory, and a body past the limit is refused as soon as it gets there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from .errors import ApiError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["Form", "UploadedPart", "discard", "keep", "read_form"]

# Room for boundaries and part headers on top of the documented file size limit.
_SLACK = 64 * 1024
_MAX_FIELD = 64 * 1024


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
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError("validation", "expected a multipart/form-data body with a 'file' field")
    too_large = ApiError("too_large", f"file too large: the maximum is {limit // 2**20} MB")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _SLACK:
        raise too_large
    dest_dir.mkdir(parents=True, exist_ok=True)
    reader = _FormReader(dest_dir)
    parser = MultipartParser(boundary, reader.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + _SLACK:
                raise too_large
            parser.write(chunk)
        parser.finalize()
        if received and not reader.ended:
            raise ApiError("validation", "malformed multipart body")
    except MultipartParseError as exc:
        reader.abandon()
        raise ApiError("validation", f"malformed multipart body ({exc})") from exc
    except BaseException:
        reader.abandon()
        raise
    return reader.form


class _FormReader:
    """The parser's callbacks: one part at a time, a file part written as it arrives."""

    def __init__(self, dest_dir: Path) -> None:
        self.form = Form()
        self.ended = False
        self._dest_dir = dest_dir
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._filename: str | None = None
        self._text = bytearray()
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._size = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers, self._text, self._size = {}, bytearray(), 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name")
        if name is None:
            raise ApiError("validation", "multipart part without a field name")
        self._name = name.decode("utf-8", "replace")
        if self._name in self.form.fields or self._name in self.form.files:
            raise ApiError("validation", f"multipart field {self._name!r} given more than once")
        filename = params.get(b"filename")
        self._filename = None if filename is None else filename.decode("utf-8", "replace")
        if self._filename is not None:
            fd, part_name = tempfile.mkstemp(dir=self._dest_dir, suffix=".part")
            self._path, self._file = Path(part_name), os.fdopen(fd, "wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._file is not None:
            self._file.write(data[start:end])
        elif self._size > _MAX_FIELD:
            raise ApiError("validation", f"multipart field {self._name!r} is too long")
        else:
            self._text += data[start:end]

    def _part_end(self) -> None:
        if self._file is None or self._path is None or self._filename is None:
            self.form.fields[self._name] = self._text.decode("utf-8", "replace")
            return
        self._file.close()
        content_type, _ = parse_options_header(self._headers.get(b"content-type", b""))
        self.form.files[self._name] = UploadedPart(
            filename=self._filename,
            content_type=content_type.decode("latin-1") or "text/plain",
            path=self._path,
            size=self._size,
        )
        self._file = self._path = None

    def _end(self) -> None:
        self.ended = True

    def abandon(self) -> None:
        """Delete what a refused body left: its files, whole or half written."""
        if self._file is not None:
            self._file.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        discard(self.form)


def discard(form: Form) -> None:
    """Delete every file of ``form`` (after a refused upload)."""
    for part in form.files.values():
        part.path.unlink(missing_ok=True)


def keep(part: UploadedPart, dest: Path) -> None:
    """Move an accepted file part to its final place."""
    shutil.move(part.path, dest)
