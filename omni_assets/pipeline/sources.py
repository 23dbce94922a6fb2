"""Source images and videos: make every input of a request reachable by its provider.

A local file is first copied into storage, content-addressed (``sources/{sha256}.{ext}``), then
made reachable: through the provider's upload API where it has one, else through a presigned
storage URL (S3). Upload URLs are remembered beside the source (``sources/{sha256}.uploads.json``)
with their expiry, so the same image is uploaded once per provider while its URL stays valid.
URLs given by the user are passed through as they are.

Beside each ingested image, ``sources/{sha256}.json`` keeps its facts: format, size, dimensions
(PyAV decodes PNG/JPEG/WebP/GIF) and every path or name the image was given under
(:func:`describe_image`). The ``source_images`` asset and the lineage graph read them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..providers.base import Provider
from ..providers.errors import InvalidRequestError
from ..storage import VideoStorage
from .local_files import LocalFile, LocalFileRefused, check_local_file
from .media import InvalidVideoError, probe_video

__all__ = [
    "PRESIGN_SECONDS",
    "ResolvedSource",
    "describe_image",
    "image_path",
    "load_image_info",
    "resolve_source",
    "uploads_of",
]

log = logging.getLogger("omni_assets.pipeline.sources")

PRESIGN_SECONDS = 3 * 24 * 3600
# Re-upload when a remembered URL has less than this left: the task may sit in a queue a while.
MIN_URL_LIFETIME_S = 2 * 3600


@dataclass(frozen=True)
class ResolvedSource:
    """One input as the provider will see it, and where it came from."""

    origin: str  # what the request said: a local path or a URL
    url: str  # what the provider is sent
    sha256: str | None = None  # content hash, for local files
    storage_uri: str | None = None  # the content-addressed copy in storage
    via: str = "url"  # "url", "upload" or "presign"
    expires_at: float | None = None
    width: int | None = None  # a local image's dimensions, as decoded when it was checked
    height: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_source(
    origin: str, provider: Provider, storage: VideoStorage, *, field: str, key: str
) -> ResolvedSource:
    """Return the URL the provider should be given for ``origin`` (uploading if needed)."""
    if origin.startswith(("http://", "https://")):
        return ResolvedSource(origin=origin, url=origin)
    path = Path(origin)
    if not path.is_file():
        raise InvalidRequestError(
            field,
            origin,
            "an existing readable local file or an http(s) URL",
            provider=provider.name,
            request_key=key,
        )
    facts = _check_again(origin, field=field, key=key, provider=provider.name)
    size = {"width": facts.width, "height": facts.height}
    sha256, stored = storage.ingest_source(str(path))
    cache_path = storage.source_path(sha256, "uploads.json")
    cache: dict[str, Any] = storage.read_json(cache_path) if storage.exists(cache_path) else {}
    remembered = cache.get(provider.name)
    now = time.time()
    if remembered and (remembered.get("expires_at") or now + 10 * MIN_URL_LIFETIME_S) > (
        now + MIN_URL_LIFETIME_S
    ):
        return ResolvedSource(
            origin,
            remembered["url"],
            sha256,
            storage.uri(stored),
            remembered["via"],
            remembered.get("expires_at"),
            **size,
        )
    if provider.can_upload:
        uploaded = provider.upload_image(str(path))
        resolved = ResolvedSource(
            origin, uploaded.url, sha256, storage.uri(stored), "upload", uploaded.expires_at, **size
        )
    else:
        try:
            url = storage.presign(stored, PRESIGN_SECONDS)
        except NotImplementedError as exc:
            raise InvalidRequestError(
                field,
                origin,
                f"an http(s) URL: {provider.name} has no upload API and {exc}",
                provider=provider.name,
                request_key=key,
            ) from exc
        resolved = ResolvedSource(
            origin, url, sha256, storage.uri(stored), "presign", now + PRESIGN_SECONDS, **size
        )
    cache[provider.name] = {
        "url": resolved.url,
        "via": resolved.via,
        "expires_at": resolved.expires_at,
    }
    storage.write_json_atomic(cache_path, cache)
    return resolved


def _check_again(origin: str, *, field: str, key: str, provider: str) -> LocalFile:
    """Just before a local file is copied and uploaded, check it again (it may have changed
    since intake): a regular file, not /proc, /sys or /dev, content of the kind it claims, and
    no symlink (intake replaced symlinks inside the allowed folders by their targets, so one now
    was planted since)."""
    parent = Path(os.path.realpath(Path(os.path.abspath(origin)).parent))
    try:
        checked = check_local_file(origin, (parent,), image=field.startswith("images"))
        if checked.real_path != os.path.abspath(origin):
            raise LocalFileRefused("it became a symlink after the request was registered")
        return checked
    except LocalFileRefused as exc:
        raise InvalidRequestError(
            field,
            origin,
            f"a local file that may be sent ({exc})",
            provider=provider,
            request_key=key,
        ) from None


def image_path(storage: VideoStorage, sha256: str, storage_uri: str | None) -> str:
    """The stored copy's path in ``storage.fs`` (its extension comes from ``storage_uri``)."""
    ext = (storage_uri or "").rsplit("/", 1)[-1].rsplit(".", 1)[-1] if storage_uri else "bin"
    return storage.source_path(sha256, ext.lower() or "bin")


def uploads_of(storage: VideoStorage, sha256: str) -> dict[str, Any]:
    """provider -> {"url", "via", "expires_at"}: where the image was last made reachable."""
    path = storage.source_path(sha256, "uploads.json")
    if not storage.exists(path):
        return {}
    data: dict[str, Any] = storage.read_json(path)
    return data


def describe_image(
    storage: VideoStorage, sha256: str, storage_uri: str | None, origins: Iterable[str] = ()
) -> dict[str, Any]:
    """The facts of one ingested image, read once and kept in ``sources/{sha256}.json``.

    New ``origins`` are merged into the stored list (the same bytes may arrive under several
    names). Dimensions are None when FFmpeg cannot decode the file.
    """
    info_path = storage.source_path(sha256, "json")
    info: dict[str, Any] = storage.read_json(info_path) if storage.exists(info_path) else {}
    known = set(info.get("origins") or ())
    merged = sorted(known | set(origins))
    if info and merged == sorted(known):
        return info
    path = image_path(storage, sha256, storage_uri)
    if not info:
        info = {"sha256": sha256, "storage_uri": storage.uri(path), "first_seen": time.time()}
        info["format"] = path.rsplit(".", 1)[-1]
        info["size"] = storage.size(path) if storage.exists(path) else None
        try:
            probe = probe_video(storage.fs, path)
            info["width"], info["height"] = probe.width, probe.height
        except (InvalidVideoError, OSError) as exc:
            log.warning("cannot read the dimensions of %s: %s", path, exc)
            info["width"] = info["height"] = None
    info["origins"] = merged
    storage.write_json_atomic(info_path, info)
    return info


def load_image_info(storage: VideoStorage, shas: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``sources/{sha256}.json`` for each of ``shas`` that has one."""
    out = {}
    for sha in sorted(set(shas)):
        path = storage.source_path(sha, "json")
        if storage.exists(path):
            out[sha] = storage.read_json(path)
    return out
