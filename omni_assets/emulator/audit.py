"""What the emulator saw: requests, tasks, downloads, uploads, callbacks and injected faults.

Everything runs on the server's event loop, so no locking is needed. Event lists keep the most
recent ``MAX_EVENTS`` entries each; the totals in ``counts`` and the per-fingerprint task counts
are never truncated. With ``audit_log`` set, every event is also appended to that file as one
JSON line ``{"kind": ..., ...}``.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "MAX_EVENTS", "Audit"]

MAX_EVENTS = 100_000
KINDS = ("requests", "tasks", "replays", "downloads", "uploads", "callbacks", "faults")


class Audit:
    """An append-only record of the emulator's traffic, resettable as a whole."""

    def __init__(self, log_path: str | None = None) -> None:
        self.log_path = log_path
        self._events: dict[str, deque[dict[str, Any]]] = {}
        self._counts: Counter[str] = Counter()
        self._fingerprints: Counter[str] = Counter()
        #: Download bodies being sent right now (live connections, so not reset by clear()):
        #: lets a test act in the middle of a download.
        self.downloads_in_progress = 0
        self.clear()

    def clear(self) -> None:
        """Forget everything recorded so far (the log file is left as it is)."""
        self._events = {kind: deque(maxlen=MAX_EVENTS) for kind in KINDS}
        self._counts = Counter()
        self._fingerprints = Counter()

    def record(self, kind: str, **event: Any) -> None:
        """Append one event of ``kind`` (one of :data:`KINDS`)."""
        self._events[kind].append(event)
        self._counts[kind] += 1
        if kind == "tasks":
            self._fingerprints[event["fingerprint"]] += 1
        if self.log_path:
            line = json.dumps({"kind": kind, **event}, sort_keys=True, default=str)
            with Path(self.log_path).open("a", encoding="utf-8") as log:
                log.write(line + "\n")

    def snapshot(self) -> dict[str, Any]:
        """Everything as JSON-ready data (what ``GET /_emulator/audit`` returns)."""
        data: dict[str, Any] = {kind: list(events) for kind, events in self._events.items()}
        data["counts"] = {kind: self._counts[kind] for kind in KINDS}
        data["fingerprints"] = dict(self._fingerprints)
        data["downloads_in_progress"] = self.downloads_in_progress
        return data
