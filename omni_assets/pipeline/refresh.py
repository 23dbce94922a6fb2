"""Scheduled refresh: regenerate a named set of requests as new partitions, keeping history.

Each tick of ``omni_refresh_schedule`` copies every named request under a new key,
``{key}.r{YYYYMMDDHHMM}`` (the tick's scheduled time, UTC), tagged ``omni.refresh_of: {key}``.
The new partition is generated like any other; the original and earlier refreshes stay, so the
lineage shows every version of a request. Configuration, from the environment:

``OMNI_REFRESH_CRON``  when to refresh, a cron string (e.g. ``0 6 * * *``); unset: no schedule.
``OMNI_REFRESH_KEYS``  which requests: comma-separated ids, ``*`` patterns allowed
                       (``catalog-*``). A refresh is never itself refreshed.
``OMNI_REFRESH_KEEP``  retention: keep the newest N refreshes of each request (default 0 = keep
                       all). See :func:`prunable` for what it deletes and what it never does.

A request is not refreshed while its newest version is still being generated (the cron is
faster than the provider): no pile-up of paid tasks. No Dagster import here.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..registry import Record, RecordState
from ..request import VideoRequest
from ..storage import VideoStorage
from .chain import REFRESH_TAG

__all__ = [
    "MAX_BASE_KEY_LENGTH",
    "RefreshConfig",
    "RefreshPlan",
    "plan_refresh",
    "prunable",
    "prune_video",
    "refresh_key",
    "refresh_of",
]

_SUFFIX = ".r{:%Y%m%d%H%M}"
#: Partition keys are at most 80 characters; the suffix takes 14.
MAX_BASE_KEY_LENGTH = 80 - 14
_REFRESH_RE = re.compile(r"\.r\d{12}$")


@dataclass(frozen=True)
class RefreshConfig:
    """What to refresh, when, and how many refreshes of each request to keep."""

    cron: str
    keys: tuple[str, ...]
    keep: int = 0  # 0: keep every version
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("name the requests to refresh (ids, * patterns allowed)")
        if self.keep < 0:
            raise ValueError(f"keep must be 0 (keep all) or more, not {self.keep}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RefreshConfig | None:
        """From ``OMNI_REFRESH_CRON`` / ``_KEYS`` / ``_KEEP``; None when no cron is set."""
        env = os.environ if env is None else env
        cron = (env.get("OMNI_REFRESH_CRON") or "").strip()
        if not cron:
            return None
        keys = tuple(
            k.strip() for k in (env.get("OMNI_REFRESH_KEYS") or "").split(",") if k.strip()
        )
        if not keys:
            raise ValueError(
                "OMNI_REFRESH_CRON is set but OMNI_REFRESH_KEYS is empty: name the requests to "
                "refresh (comma-separated ids, * patterns allowed)"
            )
        raw_keep = (env.get("OMNI_REFRESH_KEEP") or "0").strip()
        if not raw_keep.isdigit():
            raise ValueError(f"OMNI_REFRESH_KEEP={raw_keep!r}: a whole number (0 keeps all)")
        return cls(cron=cron, keys=keys, keep=int(raw_keep))

    def matches(self, key: str) -> bool:
        """True when ``key`` is one of the named requests."""
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.keys)


@dataclass
class RefreshPlan:
    """One tick's work: the new requests to register, and why other named ones wait."""

    requests: list[VideoRequest] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def refresh_key(base: str, when: datetime) -> str:
    """``{base}.r{YYYYMMDDHHMM}`` of ``when`` in UTC."""
    return base + _SUFFIX.format(when.astimezone(timezone.utc))


def refresh_of(record: Record) -> str | None:
    """The key of the request ``record`` refreshes, or None when it is not a refresh."""
    tag = (record.request.get("tags") or {}).get(REFRESH_TAG)
    return str(tag) if tag else None


def plan_refresh(records: Sequence[Record], config: RefreshConfig, when: datetime) -> RefreshPlan:
    """The refreshes to create for the tick scheduled at ``when`` (idempotent per tick)."""
    plan = RefreshPlan()
    keys = {r.key for r in records}
    versions: dict[str, list[Record]] = {}
    for record in records:
        of = refresh_of(record)
        if of is not None:
            versions.setdefault(of, []).append(record)
    bases = [r for r in records if refresh_of(r) is None and config.matches(r.key)]
    for pattern in config.keys:
        if not any(fnmatch.fnmatchcase(r.key, pattern) for r in bases):
            plan.skipped[pattern] = "no registered request has this id"
    for base in sorted(bases, key=lambda r: r.key):
        new_key = refresh_key(base.key, when)
        newest = max(versions.get(base.key, []), key=lambda r: r.key, default=base)
        if new_key in keys:
            plan.skipped[base.key] = f"{new_key} exists already (this tick ran before)"
        elif len(base.key) > MAX_BASE_KEY_LENGTH:
            plan.skipped[base.key] = (
                f"id longer than {MAX_BASE_KEY_LENGTH} characters: no room for the "
                "refresh suffix; give the request a shorter id"
            )
        elif not newest.state.outcome_known:
            plan.skipped[base.key] = f"{newest.key} is still {newest.state.value}"
        else:
            data = json.loads(base.request_json)
            data["id"] = new_key
            data["tags"] = {**(data.get("tags") or {}), REFRESH_TAG: base.key}
            plan.requests.append(VideoRequest.model_validate(data))
    return plan


def prunable(records: Sequence[Record], keep: int) -> list[Record]:
    """Refreshes that retention removes: finished ones older than the newest ``keep``
    materialized refreshes of the same request.

    Never: the refreshed request itself; the newest ``keep`` materialized refreshes, nor anything
    newer (a refresh still being generated, or one that failed after them); a refresh still in
    progress or ``unknown``; a video another request extends (its parent video must stay
    reachable). Nothing at all while a request has ``keep`` or fewer materialized refreshes, and
    nothing when ``keep`` is 0.
    """
    if keep <= 0:
        return []
    parents = {r.parent_key for r in records if r.parent_key}
    versions: dict[str, list[Record]] = {}
    for record in records:
        of = refresh_of(record)
        if of is not None and _REFRESH_RE.search(record.key):
            versions.setdefault(of, []).append(record)
    out = []
    for items in versions.values():
        ordered = sorted(items, key=lambda r: r.key)  # the suffix is the tick's time
        done = [r for r in ordered if r.state is RecordState.MATERIALIZED]
        if len(done) <= keep:
            continue
        cutoff = done[-keep].key
        out += [
            r for r in ordered if r.key < cutoff and r.state.outcome_known and r.key not in parents
        ]
    return sorted(out, key=lambda r: r.key)


def prune_video(storage: VideoStorage, key: str, *, now: float) -> bool:
    """Delete ``key``'s mp4; its sidecar stays, marked ``pruned_at``. True if a file went."""
    video, sidecar = storage.video_path(key), storage.sidecar_path(key)
    removed = False
    if storage.exists(video):
        storage.fs.rm_file(video)
        removed = True
    if storage.exists(sidecar):
        data = storage.read_json(sidecar)
        if "pruned_at" not in data:
            storage.write_json_atomic(sidecar, {**data, "pruned_at": now})
    return removed
