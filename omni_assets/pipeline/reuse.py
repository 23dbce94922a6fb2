"""The second line of defence against paying twice: storage is checked before any paid POST.

The registry is the first: it knows what was submitted. But a registry can be lost (a deleted
file, a temporary folder) or be a different one (another ``DAGSTER_HOME``, another machine);
the videos and their sidecars in storage stay. So just before a request would be POSTed, its
sidecar (``videos/{key}.json``) is read: when it describes this exact content (the same
fingerprint), the request takes over the sidecar's task instead of creating a new one:

* the video is there, whole (its size as the sidecar says): the record goes straight to
  ``ready``, and the materialize step finds the stored video and downloads nothing;
* the video is gone: one status GET (free) asks the provider whether the task still hands out a
  video URL; if so the record is ``ready`` with that URL and the video is downloaded again.

Otherwise (no sidecar, other content, a task that expired) the request is submitted as usual.

:func:`stored_video` reads a stored video back from its sidecar, for a Dagster instance that
does not show it (reconcile.py) and for "Materialize" on a finished partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ..providers.base import Provider, TaskRef, TaskState
from ..providers.errors import ProviderError
from ..registry import Record, Registry
from ..storage import VideoStorage
from .materialize import MaterializedVideo
from .media import VideoProbe

__all__ = ["adopt_from_storage", "stored_sidecar", "stored_video", "task_ref_of"]

log = logging.getLogger("omni_assets.pipeline.reuse")

# A fresh URL that expires sooner than this is not worth adopting: the download would fail.
_MIN_URL_LIFE_S = 300.0


def stored_sidecar(storage: VideoStorage, key: str) -> dict[str, Any] | None:
    """The sidecar stored for ``key``, or None (none, or unreadable)."""
    path = storage.sidecar_path(key)
    try:
        if not storage.exists(path):
            return None
        sidecar = storage.read_json(path)
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable sidecar %s: %s", key, path, exc)
        return None
    return sidecar if isinstance(sidecar, dict) else None


def task_ref_of(sidecar: Mapping[str, Any]) -> TaskRef | None:
    """The provider task a sidecar describes (older sidecars have no ``task_ref``: rebuilt)."""
    ref = sidecar.get("task_ref")
    if isinstance(ref, dict):
        try:
            return TaskRef(**ref)
        except TypeError:
            pass
    task_id, provider, model = sidecar.get("task_id"), sidecar.get("provider"), sidecar.get("model")
    if not (task_id and provider and model):
        return None
    submitted = float(sidecar.get("materialized_at") or time.time())
    return TaskRef(
        provider=str(provider), task_id=str(task_id), model=str(model), submitted_at=submitted
    )


def adopt_from_storage(
    registry: Registry,
    providers: Mapping[str, Provider],
    storage: VideoStorage,
    record: Record,
) -> str | None:
    """Take over the stored video's task for the pending ``record``, if storage has one for
    its content. Returns ``"video"`` (stored video reused), ``"task"`` (its task hands the video
    out again) or None (nothing to reuse: submit it)."""
    sidecar = stored_sidecar(storage, record.key)
    if sidecar is None or sidecar.get("fingerprint") != record.fingerprint:
        return None
    ref = task_ref_of(sidecar)
    if ref is None or ref.provider not in providers:
        return None
    common: dict[str, Any] = {
        "fingerprint": record.fingerprint,
        "cost": sidecar.get("cost"),
        "credits": sidecar.get("credits"),
        "sources": sidecar.get("sources"),
        "found": storage.uri(storage.sidecar_path(record.key)),
    }
    video = storage.video_path(record.key)
    if storage.exists(video) and storage.size(video) == sidecar.get("size"):
        if registry.adopt_stored(record.key, ref, **common):
            log.info("%s: reusing the stored video of task %s", record.key, ref.task_id)
            return "video"
        return None
    try:
        status = providers[ref.provider].status(ref)
    except ProviderError as exc:
        log.info("%s: the stored sidecar's task %s is not usable: %s", record.key, ref.task_id, exc)
        return None
    expires = status.expires_at
    usable = status.state is TaskState.SUCCEEDED and status.video_url
    if not usable or (expires is not None and expires < time.time() + _MIN_URL_LIFE_S):
        return None
    adopted = registry.adopt_stored(
        record.key,
        ref,
        video_url=status.video_url,
        url_expires_at=expires,
        remote_done_at=status.completed_at,
        **common,
    )
    if adopted:
        log.info("%s: downloading again from its task %s (not paid again)", record.key, ref.task_id)
    return "task" if adopted else None


def stored_video(storage: VideoStorage, record: Record) -> MaterializedVideo | None:
    """The video a materialized ``record`` left in storage, as its sidecar describes it, or None
    (no sidecar, another content, or the video is gone or not whole). Nothing is downloaded or
    decoded: what the UI is told again is what was verified when it was stored."""
    sidecar = stored_sidecar(storage, record.key)
    if sidecar is None or sidecar.get("fingerprint") != record.fingerprint:
        return None
    path = storage.video_path(record.key)
    try:
        whole = storage.exists(path) and storage.size(path) == sidecar.get("size")
        probe = VideoProbe(**sidecar["probe"])
    except (OSError, KeyError, TypeError) as exc:
        log.warning("%s: stored video not usable: %s", record.key, exc)
        return None
    if not whole:
        return None
    return MaterializedVideo(
        key=record.key,
        uri=str(sidecar.get("uri") or storage.uri(path)),
        sha256=str(sidecar.get("sha256") or record.sha256 or ""),
        size=int(sidecar["size"]),
        probe=probe,
        sidecar=sidecar,
        download_s=float((sidecar.get("timings") or {}).get("download_s") or 0.0),
        reused=True,
    )
