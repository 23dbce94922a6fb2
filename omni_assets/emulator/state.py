"""The running emulator's mutable state, shared by every dialect and the control endpoints.

All of it is touched only from the server's event loop (the in-process :class:`EmulatorServer`
goes through the HTTP control endpoints too), so nothing here locks.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .audit import Audit
from .config import EmulatorConfig
from .errors import ApiError
from .faults import Faults
from .files import FileStore
from .ratelimit import TokenBuckets
from .tasks import TaskStore
from .video import Renderer

__all__ = ["Clock", "EmulatorState"]

Clock = Callable[[], float]


class EmulatorState:
    """Config, fault streams, tasks, files and audit of one emulator instance."""

    def __init__(self, config: EmulatorConfig, clock: Clock = time.time) -> None:
        self.initial_config = config
        self.clock = clock
        self.work_dir = Path(tempfile.mkdtemp(prefix="omni-emulator-"))
        self.tasks = TaskStore()
        self.files = FileStore(self.work_dir / "uploads")
        self.audit = Audit(config.audit_log)
        self.callbacks: set[asyncio.Task[None]] = set()
        self.config = config
        self.faults = Faults(config.seed)
        self.renderer = Renderer(config.cache_dir)
        self.buckets = TokenBuckets()
        self.outage_hits: dict[tuple[str, int], int] = {}

    def outage(self, provider: str, kinds: tuple[str, ...]) -> str | None:
        """The kind of the first open outage window of ``kinds`` that applies to this call.

        A window with a ``count`` applies to that many calls, then lets the rest through.
        """
        for index, window in self.config.outages_at(provider, self.clock()):
            if window["kind"] not in kinds:
                continue
            count = window.get("count")
            if count is not None:
                hits = self.outage_hits.get((provider, index), 0)
                if hits >= count:
                    continue
                self.outage_hits[(provider, index)] = hits + 1
            return str(window["kind"])
        return None

    def configure(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """Apply runtime changes (``ValueError`` on a bad key or value); returns the new config."""
        new = self.config.with_changes(changes)
        if new.seed != self.config.seed:
            self.faults = Faults(new.seed)
        if new.cache_dir != self.config.cache_dir:
            self.renderer = Renderer(new.cache_dir)
        self.audit.log_path = new.audit_log
        if "outages" in changes:  # configuring windows again starts their counts again
            self.outage_hits.clear()
        self.config = new
        return new

    def reset(self) -> None:
        """Back to the start-up config, with no tasks, files, audit or pending callbacks."""
        self.cancel_callbacks()
        self.tasks.clear()
        self.files.clear()
        self.audit.clear()
        self.config = self.initial_config
        self.audit.log_path = self.config.audit_log
        self.faults = Faults(self.config.seed)
        self.renderer = Renderer(self.config.cache_dir)
        self.buckets.clear()
        self.outage_hits.clear()

    def close(self) -> None:
        """Cancel pending callbacks and delete the instance's working directory."""
        self.cancel_callbacks()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def cancel_callbacks(self) -> None:
        """Cancel every callback delivery still waiting for its task to finish."""
        for task in self.callbacks:
            task.cancel()
        self.callbacks.clear()

    def authenticate(self, key: str | None) -> str:
        """The key if it is accepted; ``ApiError("auth")`` otherwise."""
        if not key:
            raise ApiError("auth", "missing API key")
        allowed = self.config.api_keys
        if (allowed is not None and key not in allowed) or (
            allowed is None and key.startswith("invalid")
        ):
            raise ApiError("auth", "invalid API key")
        return key

    def record_fault(self, kind: str, provider: str | None, path: str) -> None:
        """Note an injected fault in the audit."""
        self.audit.record("faults", fault=kind, provider=provider, path=path, time=self.clock())
