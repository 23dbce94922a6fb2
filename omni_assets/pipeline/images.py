"""Facts about ingested source images, kept beside them in storage.

``sources.py`` copies each local image to ``sources/{sha256}.{ext}`` and remembers the provider
URLs it was uploaded (or presigned) to in ``sources/{sha256}.uploads.json``. This module adds
``sources/{sha256}.json``: format, size, dimensions (PyAV decodes PNG/JPEG/WebP/GIF) and every
path or name the image was given under. The ``source_images`` asset and the lineage graph read
them; nothing here spends money or calls a provider.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from ..storage import VideoStorage
from .media import InvalidVideoError, probe_video

__all__ = ["describe_image", "image_path", "load_image_info", "uploads_of"]

log = logging.getLogger("omni_assets.pipeline.images")


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
