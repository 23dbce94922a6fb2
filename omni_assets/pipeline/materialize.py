"""Materialize a finished task: download, verify, write the sidecar, record the outcome.

The mp4 is streamed from the provider into storage (a temporary file, committed only when whole);
if the provider's URL has expired the task is queried again for a fresh one. The temporary file
is verified before it takes its final name (sha256 and size from the stream, and a PyAV decode of
the whole video stream: an HTML page or a cut-short file never reaches ``videos/{key}.mp4``), and
its sidecar is written to a temporary file of its own before the video is committed: the video
and its sidecar are committed as one unit (a failed sidecar commit removes the video again).
Re-running on a key already materialized with the same content downloads nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import fsspec

from .._crashpoints import crashpoint
from ..providers.answers import clip
from ..providers.base import DownloadResult, Provider, StagedDownload
from ..providers.errors import DownloadError, OmniError, UrlExpiredError
from ..providers.redaction import redact
from ..registry import Record, Registry
from ..storage import VideoStorage
from ..storage.sinks import Sink
from .chain import chain_fields
from .media import VideoProbe, probe_video

__all__ = [
    "DOWNLOAD_ATTEMPTS",
    "STORAGE_ATTEMPTS",
    "MaterializedVideo",
    "commit_materialized",
    "materialize_record",
    "record_failed_download",
]

#: Download attempts per task (each after the provider said it succeeded), counted in the
#: registry; between them a back-off across ticks: the next tick, then 30 s, doubling (30, 60,
#: 120 s), then failed.
DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_BACKOFF_S = 30.0
#: Attempts to store a downloaded video while our own storage fails (a full disk, S3 down),
#: counted apart from the provider's: the next tick, then 5 s doubling to at most 10 min
#: (about 50 minutes in all), then ``failed`` and downloadable by hand (`omni-assets download`)
#: while the provider's URL is valid (a day or more, docs/reference.md). Not for ever: a
#: full disk once re-downloaded the same video on every tick.
STORAGE_ATTEMPTS = 12
STORAGE_BACKOFF_S = 5.0
STORAGE_MAX_BACKOFF_S = 600.0

log = logging.getLogger("omni_assets.pipeline.materialize")
_LOCAL = fsspec.filesystem("file")  # the verified temporary copy is always a local file


@dataclass(frozen=True)
class MaterializedVideo:
    """Everything known about one video in storage: what the sidecar holds."""

    key: str
    uri: str
    sha256: str
    size: int
    probe: VideoProbe
    sidecar: dict[str, Any]
    download_s: float
    reused: bool  # True when an earlier run had already stored this exact video


def materialize_record(
    registry: Registry,
    provider: Provider,
    storage: VideoStorage,
    record: Record,
    *,
    commit: bool = True,
    emulated: bool = False,
) -> MaterializedVideo:
    """Download and verify ``record``'s video; the caller has claimed the record.

    With ``commit=False`` the registry is left ``materializing``: the caller records the
    materialization in Dagster first, then calls :func:`commit_materialized`, so a crash in
    between is retried (without downloading again) instead of leaving Dagster without the event.
    """
    path = storage.video_path(record.key)
    sidecar_path = storage.sidecar_path(record.key)
    existing = _reusable(storage, record)
    if existing is not None:
        probe = probe_video(storage.fs, path)
        if commit:
            registry.record_materialized(
                record.key, existing["uri"], existing["sha256"], existing["size"]
            )
        return MaterializedVideo(
            record.key,
            existing["uri"],
            existing["sha256"],
            existing["size"],
            probe,
            existing,
            0.0,
            reused=True,
        )
    if storage.exists(sidecar_path):
        # The request changed since this video was made: keep the old one, never reuse it.
        old = storage.read_json(sidecar_path)
        storage.archive_video(record.key, str(old.get("fingerprint", "old"))[:12])
    started = time.monotonic()
    staged: list[tuple[VideoProbe, dict[str, Any], Sink]] = []

    def verify(download: StagedDownload) -> None:
        """On the temporary file, before its commit: it plays whole, and its sidecar is staged."""
        elapsed = time.monotonic() - started
        probe = probe_video(_LOCAL, download.path)  # InvalidVideoError: nothing is committed
        uri = storage.uri(path)
        sidecar = build_sidecar(record, uri, download.sha256, download.size, probe, elapsed)
        sidecar.update(chain_fields(registry.get, record))  # parent, chain_root/depth, refresh_of
        if emulated:  # a fake video from the built-in emulator must never pass for a real one
            sidecar["emulated"] = True
        # Written now (a full disk fails here, before the video is committed), committed after.
        staged.append((probe, sidecar, storage.stage_json(sidecar_path, sidecar)))

    def fetch(url: str) -> DownloadResult:
        try:
            return provider.download(
                url, storage.uri(path), verify=verify, **storage.storage_options
            )
        except BaseException:
            for _, _, sink in staged:
                sink.discard()
            staged.clear()
            raise

    url = record.video_url
    if not url:
        url = _fresh_url(registry, provider, record)
    try:
        result = fetch(url)
    except UrlExpiredError:
        log.info("URL for %s expired; asking %s for a fresh one", record.key, provider.name)
        url = _fresh_url(registry, provider, record)
        result = fetch(url)
    probe, sidecar, sidecar_sink = staged[-1]
    # The sidecar's figure (measured up to the verified download), so that a video reported
    # again from its sidecar (reconcile.py) shows the same metadata as when it was stored.
    download_s = float(sidecar["timings"]["download_s"])
    crashpoint("before_sidecar")
    try:
        sidecar_sink.commit()
    except BaseException:
        # The video and its sidecar are one unit: never a video without its sidecar.
        sidecar_sink.discard()
        storage.remove(path)
        raise
    if registry.claims(record.key) > 1:
        # Only an earlier attempt can have left temporary files for this key, and finding them
        # lists the whole videos folder (local) or prefix (S3): at 10,000 videos that was 0.5 s
        # per video, at 50,000 3.7 s, for every video. A first claim skips it; what a step run
        # again under the same claim (a Celery redelivery) or a lost registry leaves goes with
        # ``cleanup_partials`` (older than a day, at each omni_lineage rebuild).
        for leftover in storage.remove_partials(path) + storage.remove_partials(sidecar_path):
            log.info("removed %s, left by an interrupted earlier attempt", leftover)
    crashpoint("before_record")
    if commit:
        registry.record_materialized(record.key, result.uri, result.sha256, result.size)
    return MaterializedVideo(
        record.key, result.uri, result.sha256, result.size, probe, sidecar, download_s, reused=False
    )


def commit_materialized(registry: Registry, video: MaterializedVideo) -> None:
    """Mark ``video``'s record materialized (after its Dagster event was written)."""
    registry.record_materialized(video.key, video.uri, video.sha256, video.size)


def _reusable(storage: VideoStorage, record: Record) -> dict[str, Any] | None:
    """The sidecar of an already stored video for this exact content and task, if any."""
    sidecar_path = storage.sidecar_path(record.key)
    if not (storage.exists(sidecar_path) and storage.exists(storage.video_path(record.key))):
        return None
    sidecar: dict[str, Any] = storage.read_json(sidecar_path)
    same = (
        sidecar.get("fingerprint") == record.fingerprint
        and sidecar.get("task_id") == record.task_id
    )
    if same and storage.size(storage.video_path(record.key)) == sidecar.get("size"):
        return sidecar
    return None


def _fresh_url(registry: Registry, provider: Provider, record: Record) -> str:
    assert record.task_ref is not None
    status = provider.status(record.task_ref)
    if not status.video_url:
        raise DownloadError(
            f"task {record.task_id} has no video URL any more (status {status.raw_status!r})",
            provider=provider.name,
            task_id=record.task_id,
        )
    registry.update_url(record.key, status.video_url, status.expires_at)
    return status.video_url


def build_sidecar(
    record: Record, uri: str, sha256: str, size: int, probe: VideoProbe, download_s: float
) -> dict[str, Any]:
    """The JSON written beside each video: enough to audit it without the Dagster instance."""
    timings = record_timings(record)
    timings["download_s"] = round(download_s, 3)
    return {
        "key": record.key,
        "uri": uri,
        "sha256": sha256,
        "size": size,
        "fingerprint": record.fingerprint,
        "request": record.request,
        "provider": record.provider,
        "model": record.model,
        "task_id": record.task_id,
        # The whole task reference: a registry that lost this record takes the task over from
        # here instead of paying again (reuse.py).
        "task_ref": asdict(record.task_ref) if record.task_ref else None,
        "attempt": record.attempt,
        "cost": record.cost,
        "credits": record.credits,
        "timings": timings,
        "probe": asdict(probe),
        "sources": record.sources,
        "parent": record.parent_key,
        "materialized_at": time.time(),
    }


def record_timings(record: Record) -> dict[str, Any]:
    """Seconds spent queued+generating at the provider, from our own clock and the provider's."""
    out: dict[str, Any] = {}
    if record.submitted_at and record.remote_done_at:
        # Providers report completion in whole seconds; never show a negative generation time.
        out["generation_s"] = round(max(0.0, record.remote_done_at - record.submitted_at), 3)
    if record.registered_at and record.submitted_at:
        out["queue_s"] = round(record.submitted_at - record.registered_at, 3)
    return out


def record_failed_download(registry: Registry, key: str, exc: BaseException) -> str:
    """Record a failed materialization of a claimed ``key``; what became of it (its state).

    The provider's file (an HTML page, a redirect loop, a refused destination, a video that
    does not play, a status refresh that failed) is counted: at most :data:`DOWNLOAD_ATTEMPTS`,
    with a back-off across ticks, then ``failed`` with the reason and the task id. A failure
    of our own storage (OSError, an S3 client's error) is not the task's: counted apart, with
    a shorter back-off and more attempts (:data:`STORAGE_ATTEMPTS`), so it goes soon after
    storage is back, and is still bounded.
    """
    if not isinstance(exc, OmniError):
        state = registry.download_failed(
            key,
            {"error": type(exc).__name__, "message": clip(redact(str(exc)))},
            max_attempts=STORAGE_ATTEMPTS,
            backoff_s=STORAGE_BACKOFF_S,
            max_backoff_s=STORAGE_MAX_BACKOFF_S,
            counter="storage_failures",
            what="attempts to store its video",
        )
    else:
        error = {k: clip(v) if isinstance(v, str) else v for k, v in exc.to_dict().items()}
        state = registry.download_failed(
            key, error, max_attempts=DOWNLOAD_ATTEMPTS, backoff_s=DOWNLOAD_BACKOFF_S
        )
    if state is None:  # not claimed any more (freed meanwhile): nothing to count
        return "unclaimed"
    return state.value
