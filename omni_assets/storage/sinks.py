"""The one atomic writer: the final path only ever holds a complete file.

Every write to storage goes through a :class:`Sink` (downloads stream into one, and
:meth:`omni_assets.storage.VideoStorage.open_atomic` wraps one for sidecars, sources and lineage):

* **Local disk**: a temporary sibling ``.partial-<name>~<uuid>``, flushed to disk (``fsync``), then
  ``os.replace``.
* **S3** (s3fs): a multipart upload straight to the final key. S3 shows nothing at a key until
  its upload is completed, and an aborted upload leaves nothing, so no temporary object and no
  server-side copy are needed (that copy cost as much as the upload itself). A few parts are in
  flight at once while the download goes on, so memory stays at about
  ``(parts_in_flight + 1) * part_size`` for any size. A process killed mid-upload leaves an
  incomplete upload, invisible and billed until aborted: give the bucket a lifecycle rule
  (``AbortIncompleteMultipartUpload``).
* **Any other fsspec filesystem**: a temporary sibling through ``fs.open``, then ``fs.mv``.

A crash leaves at most a ``.partial-`` file (or an incomplete S3 upload), never a half file at
the final name.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import uuid
from collections import deque
from concurrent.futures import Future
from typing import Any, Protocol

from fsspec.implementations.local import LocalFileSystem

__all__ = [
    "PARTIAL_MARKER",
    "PARTS_IN_FLIGHT",
    "PART_SIZE",
    "Sink",
    "open_sink",
    "temp_glob",
    "temp_path",
]

#: What names a temporary sibling: ``.partial-<name>~<uuid>``.
PARTIAL_MARKER = ".partial-"
_TEMP_SEPARATOR = "~"  # never in a key, an extension or a lineage file name

# S3's minimum part (but the last); 10,000 parts at most, so objects up to ~48 GiB. Each part in
# flight is held about twice (ours, and the socket's send buffer): ~45 MB peak in all.
PART_SIZE = 5 * 1024 * 1024
PARTS_IN_FLIGHT = 3


class Sink(Protocol):
    """A write-only destination that appears at its final path only on :meth:`commit`."""

    def write(self, data: bytes) -> None: ...

    @property
    def local_path(self) -> str | None:
        """A local file holding exactly what was written (after :meth:`flush`), if the sink
        keeps one (the local disk's temporary file); None for S3 and other filesystems."""

    def flush(self) -> None:
        """Push what was written so far to ``local_path`` (a no-op elsewhere)."""

    def restart(self) -> None:
        """Drop everything written so far and start from byte 0."""

    def commit(self) -> None:
        """Make the written bytes appear, whole, at the final path."""

    def discard(self) -> None:
        """Remove every trace of the write (never raises)."""


def open_sink(
    fs: Any, path: str, *, part_size: int = PART_SIZE, parts_in_flight: int = PARTS_IN_FLIGHT
) -> Sink:
    """The sink for ``path`` on fsspec filesystem ``fs`` (see the module docstring)."""
    if isinstance(fs, LocalFileSystem):
        return _LocalSink(path)
    if hasattr(fs, "_call_s3") and getattr(fs, "loop", None) is not None:
        return _S3MultipartSink(fs, path, part_size, parts_in_flight)
    return _FsspecSink(fs, path)


def temp_path(path: str) -> str:
    """A fresh temporary sibling of ``path``: ``<dir>/.partial-<name>~<uuid>``.

    Outside every final name: a key starts with a letter or digit and never holds ``~``
    (``KEY_PATTERN``), so no request's video or sidecar can ever be called like another one's
    temporary file, and :func:`temp_glob` finds exactly ``path``'s own.
    """
    folder, slash, name = path.rpartition("/")
    return f"{folder}{slash}{PARTIAL_MARKER}{name}{_TEMP_SEPARATOR}{uuid.uuid4().hex}"


def temp_glob(path: str) -> str:
    """The glob matching every temporary file of ``path`` and nothing else."""
    folder, slash, name = path.rpartition("/")
    return f"{folder}{slash}{PARTIAL_MARKER}{name}{_TEMP_SEPARATOR}*"


class _LocalSink:
    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._path, self._tmp = path, temp_path(path)
        self._fh = open(self._tmp, "wb")  # noqa: SIM115 - closed by commit/discard

    def write(self, data: bytes) -> None:
        self._fh.write(data)

    @property
    def local_path(self) -> str | None:
        return self._tmp

    def flush(self) -> None:
        self._fh.flush()

    def restart(self) -> None:
        self._fh.seek(0)
        self._fh.truncate()

    def commit(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())  # the bytes are on disk before the name says they are
        self._fh.close()
        os.replace(self._tmp, self._path)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class _FsspecSink:
    def __init__(self, fs: Any, path: str) -> None:
        self._fs, self._path, self._tmp = fs, path, temp_path(path)
        self._fh = fs.open(self._tmp, "wb")

    def write(self, data: bytes) -> None:
        self._fh.write(data)

    local_path: str | None = None

    def flush(self) -> None:
        pass

    def restart(self) -> None:
        _abandon(self._fh)
        self._fh = self._fs.open(self._tmp, "wb")

    def commit(self) -> None:
        self._fh.close()
        self._fs.mv(self._tmp, self._path)

    def discard(self) -> None:
        _abandon(self._fh)
        with contextlib.suppress(Exception):
            if self._fs.exists(self._tmp):
                self._fs.rm(self._tmp)


def _abandon(fh: Any) -> None:
    """Close a remote file WITHOUT committing what was written (an abandoned upload)."""
    with contextlib.suppress(Exception):
        fh.discard()  # s3fs-like buffered files: aborts the upload
    with contextlib.suppress(Exception):
        fh.closed = True  # or close()/__del__ would upload the buffer


class _S3MultipartSink:
    """A multipart upload fed part by part, a few parts in flight on s3fs' event loop."""

    def __init__(self, fs: Any, path: str, part_size: int, parts_in_flight: int) -> None:
        self._fs, self._path = fs, path
        self._bucket, self._key, _ = fs.split_path(path)
        self._part_size, self._in_flight = part_size, max(1, parts_in_flight)
        self._extra = {"ContentType": mimetypes.guess_type(path)[0] or "application/octet-stream"}
        self._reset()

    def _reset(self) -> None:
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._pending: deque[tuple[int, Future[Any]]] = deque()
        self._parts: list[dict[str, Any]] = []

    def _call(self, method: str, **kwargs: Any) -> Future[Any]:
        coro = self._fs._call_s3(method, Bucket=self._bucket, Key=self._key, **kwargs)
        return asyncio.run_coroutine_threadsafe(coro, self._fs.loop)

    def _collect(self, keep: int) -> None:
        while len(self._pending) > keep:
            number, future = self._pending.popleft()
            self._parts.append({"PartNumber": number, "ETag": future.result()["ETag"]})

    def _send(self, chunk: bytes) -> None:
        if self._upload_id is None:
            created = self._call("create_multipart_upload", **self._extra).result()
            self._upload_id = str(created["UploadId"])
        self._collect(self._in_flight - 1)
        number = len(self._parts) + len(self._pending) + 1
        future = self._call("upload_part", UploadId=self._upload_id, PartNumber=number, Body=chunk)
        self._pending.append((number, future))

    local_path: str | None = None

    def flush(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self._part_size:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            self._send(chunk)

    def restart(self) -> None:
        self.discard()
        self._reset()

    def commit(self) -> None:
        if self._upload_id is None:  # smaller than one part: a single PUT
            self._call("put_object", Body=bytes(self._buffer), **self._extra).result()
        else:
            if self._buffer:
                self._send(bytes(self._buffer))
            self._collect(0)
            parts = {"Parts": self._parts}
            self._call(
                "complete_multipart_upload", UploadId=self._upload_id, MultipartUpload=parts
            ).result()
        self._buffer = bytearray()
        self._fs.invalidate_cache(self._path)

    def discard(self) -> None:
        for _, future in self._pending:
            with contextlib.suppress(Exception):
                future.result()  # let parts in flight land before the upload is aborted
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                self._call("abort_multipart_upload", UploadId=self._upload_id).result()
        self._buffer = bytearray()
        self._pending.clear()
        self._upload_id = None
