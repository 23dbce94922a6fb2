"""Where videos, sidecars and source images live: any fsspec URL (a local directory by default).

Layout under the root URL::

    videos/{key}.mp4            the video           videos/{key}@{suffix}.mp4/.json  archived
    videos/{key}.json           its sidecar         sources/{sha256}.{ext}           source images
    lineage/...                 lineage graph data

A root whose last folder is itself named ``videos`` (``OMNI_STORAGE_URL=./videos``) holds the
videos and sidecars directly: ``videos/boat.mp4``, not ``videos/videos/boat.mp4``; ``sources/``
and ``lineage/`` are inside it.

Every write is atomic, through the one writer in :mod:`omni_assets.storage.sinks`: locally the
bytes go to a temporary sibling ``.partial-<name>~<uuid>`` (a name no key can have) moved onto
the final name, on S3 an upload that appears only once complete. A reader never sees half a
video or half a sidecar; a crash leaves at most a ``.partial-`` file: the next download of the
same video removes its own (``remove_partials``), and every rebuild of ``omni_lineage`` removes
any older than a day (``cleanup_partials``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..request import KEY_PATTERN
from .sinks import PARTIAL_MARKER, Sink, open_sink, temp_glob, temp_path

__all__ = ["MAX_PRESIGN_S3_SECONDS", "PARTIAL_MARKER", "PresignUnsupportedError", "VideoStorage"]

MAX_PRESIGN_S3_SECONDS = 7 * 24 * 3600  # the SigV4 limit
_CHUNK = 1 << 20
_KEY_RE = re.compile(KEY_PATTERN)
_SUFFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SUBDIRS = ("videos", "sources", "lineage")


class PresignUnsupportedError(NotImplementedError):
    """This storage cannot make a URL that someone else can fetch (e.g. a local directory)."""


class VideoStorage:
    """The storage layout on one fsspec root URL (``/data/omni``, ``file://...``, ``s3://b/p``).

    ``storage_options`` go to fsspec (for s3: ``key``, ``secret``, ``client_kwargs``...). For S3,
    SigV4 signing is the default (presigned links need it), and listings are not cached, so that
    a file another process just wrote is seen at once.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        options = dict(storage_options or {})
        if "://" not in url:
            url = os.path.abspath(os.path.expanduser(url))
        protocol = fsspec.utils.get_protocol(url)
        self._is_s3 = protocol in ("s3", "s3a")
        if self._is_s3:
            config = {"signature_version": "s3v4", **(options.get("config_kwargs") or {})}
            options["config_kwargs"] = config
        if protocol not in ("file", "local"):
            options.setdefault("use_listings_cache", False)
        self.url = url
        self._options = options
        self._fs, root = fsspec.core.url_to_fs(url, **options)
        self._root: str = str(root).rstrip("/") or str(root)
        # ./videos means "put the videos here": never videos/videos/boat.mp4.
        named_videos = self._root.rsplit("/", 1)[-1] == "videos"
        self._videos: str = self._root if named_videos else f"{self._root}/videos"

    def __repr__(self) -> str:
        return f"VideoStorage({self.url!r})"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem; paths below are in its terms (no protocol)."""
        return self._fs

    @property
    def root(self) -> str:
        """The root path inside ``fs``."""
        return self._root

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options in effect (a copy), to reach the same storage from elsewhere."""
        return dict(self._options)

    @property
    def is_local(self) -> bool:
        """True when the root is on the local filesystem."""
        return isinstance(self._fs, LocalFileSystem)

    # -- layout ---------------------------------------------------------------------------------

    def video_path(self, key: str) -> str:
        """``{root}/videos/{key}.mp4`` (``{root}/{key}.mp4`` when the root is named videos)."""
        return f"{self._videos}/{_check_key(key)}.mp4"

    def sidecar_path(self, key: str) -> str:
        """``{root}/videos/{key}.json``, beside the video."""
        return f"{self._videos}/{_check_key(key)}.json"

    def source_path(self, sha256: str, ext: str) -> str:
        """``{root}/sources/{sha256}.{ext}`` (content-addressed)."""
        if not _SHA256_RE.match(sha256):
            raise ValueError(f"{sha256!r} is not a lower-case hex sha256")
        return f"{self._root}/sources/{sha256}.{_check_suffix(ext, 'extension')}"

    def lineage_path(self, name: str) -> str:
        """``{root}/lineage/{name}``."""
        return f"{self._root}/lineage/{_check_suffix(name, 'lineage file name')}"

    def temp_path_for(self, final_path: str) -> str:
        """A fresh temporary sibling of ``final_path`` (``.partial-<name>~<uuid>``)."""
        return temp_path(final_path)

    def uri(self, path: str) -> str:
        """The full URL of ``path``: ``s3://b/p/videos/k.mp4`` or ``file:///abs/videos/k.mp4``."""
        return str(self._fs.unstrip_protocol(path))

    # -- reads ----------------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        """True when ``path`` exists."""
        return bool(self._fs.exists(path))

    def size(self, path: str) -> int:
        """Size of ``path`` in bytes."""
        return int(self._fs.size(path))

    def read_bytes(self, path: str) -> bytes:
        """The whole content of ``path``."""
        return bytes(self._fs.cat_file(path))

    def read_json(self, path: str) -> Any:
        """Parse the JSON document at ``path``."""
        with self._fs.open(path, "rb") as fh:
            return json.load(fh)

    # -- atomic writes --------------------------------------------------------------------------

    @contextmanager
    def open_atomic(self, path: str) -> Iterator[Sink]:
        """A sink to write ``path`` through; it appears at ``path`` only on success.

        An exception inside the block discards everything written (nothing at ``path``, no
        temporary file left behind).
        """
        sink = open_sink(self._fs, path)
        try:
            yield sink
            sink.commit()
        except BaseException:
            sink.discard()
            raise

    def write_bytes_atomic(self, path: str, data: bytes) -> str:
        """Write ``data`` to ``path`` atomically; returns ``uri(path)``."""
        with self.open_atomic(path) as fh:
            fh.write(data)
        return self.uri(path)

    def write_json_atomic(self, path: str, obj: Any) -> str:
        """Write ``obj`` as indented, key-sorted UTF-8 JSON, atomically; returns ``uri(path)``."""
        return self.write_bytes_atomic(path, _json_bytes(obj))

    def stage_json(self, path: str, obj: Any) -> Sink:
        """``obj`` (as :meth:`write_json_atomic` writes it) in ``path``'s temporary file, not yet
        visible: the caller ``commit()``s or ``discard()``s the sink. A full disk fails here,
        before anything is committed, so a video and its sidecar can be committed together."""
        sink = open_sink(self._fs, path)
        try:
            sink.write(_json_bytes(obj))
            sink.flush()
        except BaseException:
            sink.discard()
            raise
        return sink

    def check_writable(self) -> None:
        """Write, commit and remove a small file at the root; raises what the backend raises.

        The submit op calls it before paying for anything: a video that cannot be stored is
        money spent for nothing. The name starts with '.', so it is never a key's.
        """
        path = f"{self.root.rstrip('/')}/.omni-write-check"
        self.write_bytes_atomic(path, b"omni_assets write check\n")
        self.remove(path)

    def remove(self, path: str) -> None:
        """Delete ``path`` if it exists."""
        with suppress(FileNotFoundError):
            self._fs.rm_file(path)

    def ingest_source(self, local_path: str) -> tuple[str, str]:
        """Copy a local file to ``sources/{sha256}.{ext}`` (streamed, once); (sha256, path)."""
        digest = _sha256_file(local_path)
        ext = Path(local_path).suffix.lower().lstrip(".") or "bin"
        path = self.source_path(digest, ext)
        if self.exists(path) and self.size(path) == os.path.getsize(local_path):
            return digest, path
        copied = hashlib.sha256()
        with open(local_path, "rb") as src, self.open_atomic(path) as dst:
            while chunk := src.read(_CHUNK):
                copied.update(chunk)
                dst.write(chunk)
            if copied.hexdigest() != digest:
                raise OSError(f"{local_path} changed while it was being copied; try again")
        return digest, path

    # -- moves and clean-up ---------------------------------------------------------------------

    def archive_video(self, key: str, suffix: str) -> str | None:
        """Move ``key``'s video and sidecar to ``videos/{key}@{suffix}.*`` (before a replacement).

        Returns the archived video's path, or None when there was no video.
        """
        _check_suffix(suffix, "archive suffix")
        moved = None
        for path in (self.video_path(key), self.sidecar_path(key)):
            if self.exists(path):
                stem, ext = path.rsplit(".", 1)
                target = f"{stem}@{suffix}.{ext}"
                self._fs.mv(path, target)
                moved = target if ext == "mp4" else moved
        return moved

    def remove_partials(self, path: str) -> list[str]:
        """Remove the temporary files left for ``path`` (``.partial-<name>~*``); returns them.

        What a killed download or write leaves behind. Only for a caller that owns ``path``
        right now (a claimed video): another writer's temporary file would go too.
        """
        found = [str(p) for p in self._fs.glob(temp_glob(path))]
        for leftover in found:
            with suppress(FileNotFoundError):
                self._fs.rm_file(leftover)
        return found

    def cleanup_partials(self, older_than_s: float, *, now: float | None = None) -> list[str]:
        """Remove temporary ``.partial-`` files older than ``older_than_s``; returns their paths.

        Leave a margin: a partial file younger than the longest download may still be written.
        """
        cutoff = (time.time() if now is None else now) - older_than_s
        removed = []
        folders = {self._videos, *(f"{self._root}/{sub}" for sub in _SUBDIRS if sub != "videos")}
        for folder in sorted(folders):
            if not self._fs.exists(folder):
                continue
            for path in self._fs.find(folder, maxdepth=None if folder != self._root else 1):
                name = path.rsplit("/", 1)[-1]
                # A temporary name starts with the marker; a key never does (it may contain it).
                if name.startswith(PARTIAL_MARKER) and self._fs.modified(path).timestamp() < cutoff:
                    self._fs.rm_file(path)
                    removed.append(path)
        return removed

    # -- links ----------------------------------------------------------------------------------

    def presign(self, path: str, expires_s: float) -> str:
        """A URL anyone can GET for ``expires_s`` seconds (S3: a SigV4 presigned URL).

        Raises PresignUnsupportedError for storage that cannot make one (a local directory).
        """
        if self.is_local:
            raise PresignUnsupportedError(
                f"local storage ({self.uri(path)}) cannot make public URLs; use an object store "
                "(e.g. OMNI_STORAGE_URL=s3://bucket/prefix) or a provider with an upload API"
            )
        if self._is_s3 and expires_s > MAX_PRESIGN_S3_SECONDS:
            raise ValueError(f"S3 presigned URLs last at most 7 days; asked for {expires_s} s")
        try:
            return str(self._fs.sign(path, expiration=int(expires_s)))
        except NotImplementedError as exc:
            raise PresignUnsupportedError(
                f"{type(self._fs).__name__} storage cannot presign URLs ({self.uri(path)})"
            ) from exc

    def http_url(self, path: str, expires_s: float = MAX_PRESIGN_S3_SECONDS) -> str:
        """A link a person can click: presigned where possible, else ``uri(path)`` (file://)."""
        try:
            return self.presign(path, expires_s)
        except PresignUnsupportedError:
            return self.uri(path)


def _check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise ValueError(f"{key!r} is not a valid partition key (pattern {KEY_PATTERN})")
    return key


def _check_suffix(value: str, what: str) -> str:
    if not _SUFFIX_RE.match(value) or ".." in value:
        raise ValueError(f"{value!r} is not a valid {what}: use letters, digits, '.', '_', '-'")
    return value


def _json_bytes(obj: Any) -> bytes:
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode()


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
