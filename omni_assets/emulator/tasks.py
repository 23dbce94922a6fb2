"""Emulated generation tasks: their lifecycle (a pure function of the clock), ids and storage.

A task never runs anything: its phase is computed from the time since creation on every query,
so no background work is needed. Whether it fails, and which documented response variant
("quirk") its provider uses for it, is decided once at creation.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from .faults import Faults
from .scene import Scene

__all__ = [
    "FAIL_MARKER",
    "POLICY_MARKER",
    "POLICY_MESSAGE",
    "Failure",
    "Phase",
    "Task",
    "TaskStore",
    "fingerprint",
    "plan_failure",
    "ulid",
    "uuid4",
]

# Prompt markers that make a task fail deterministically, for client tests that need a failure
# without setting rate_task_failed to 1.
FAIL_MARKER = "[emulator:fail]"
POLICY_MARKER = "[emulator:policy]"

PhaseState = Literal["queued", "running", "succeeded", "failed"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
POLICY_MESSAGE = "Content violates the content policy"
# Typical failure reasons named on APIMart's cn Omni-Flash-Ext page: upstream quota exhausted,
# moderation, upstream timeout.
_GENERIC_MESSAGES = (
    "Upstream generation timed out",
    "Upstream quota exhausted, please try again later",
)


@dataclass(frozen=True)
class Failure:
    """Why a task fails: a content-policy refusal or a generic upstream failure."""

    policy: bool
    message: str


@dataclass(frozen=True)
class Phase:
    """Where a task is at one instant: a provider-neutral state and a 0-100 progress."""

    state: PhaseState
    progress: int


@dataclass
class Task:
    """One emulated generation task, as created by some provider's create endpoint."""

    provider: str
    task_id: str
    api_key: str
    model: str
    body: dict[str, Any]
    fingerprint: str
    created: float
    generation_seconds: float
    queue_fraction: float
    duration: int
    aspect: str
    padding: int
    failure: Failure | None = None
    quirk: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    scene: Scene | None = None  # what its video shows (scene.py)

    @property
    def finished(self) -> float:
        """When the task reaches its terminal state (epoch seconds)."""
        return self.created + self.generation_seconds

    def phase(self, now: float) -> Phase:
        """The task's phase at ``now``: queued, then running with rising progress, then done."""
        elapsed = now - self.created
        if elapsed >= self.generation_seconds:
            return Phase("failed", 0) if self.failure else Phase("succeeded", 100)
        queued_for = self.generation_seconds * self.queue_fraction
        if elapsed < queued_for:
            return Phase("queued", 0)
        share = (elapsed - queued_for) / (self.generation_seconds - queued_for)
        return Phase("running", min(99, 1 + int(98 * share)))


def fingerprint(body: Any) -> str:
    """sha256 of the canonical JSON of a create body (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def plan_failure(prompt: str, faults: Faults, rate: float) -> Failure | None:
    """Decide at creation whether a task will fail, and why."""
    if POLICY_MARKER in prompt:
        return Failure(True, POLICY_MESSAGE)
    if FAIL_MARKER in prompt:
        return Failure(False, _GENERIC_MESSAGES[0])
    if not faults.roll("task_failed", rate):
        return None
    if faults.roll("task_failed_kind", 0.5):
        return Failure(True, POLICY_MESSAGE)
    return Failure(False, faults.choice("task_failed_kind", _GENERIC_MESSAGES))


def ulid(now: float, rng: random.Random) -> str:
    """A ULID (48-bit millisecond time + 80 random bits, Crockford base32), as APIMart uses."""
    value = (int(now * 1000) << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def uuid4(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng`` (reproducible for a seed), as CRUN uses."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class TaskStore:
    """Tasks by (provider, id), scoped to the API key that created them, plus idempotency keys."""

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, str], Task] = {}
        self._keys: dict[tuple[str, str, str], tuple[str, str]] = {}

    def clear(self) -> None:
        """Forget every task and idempotency key."""
        self._tasks.clear()
        self._keys.clear()

    def add(self, task: Task) -> None:
        """Store a newly created task."""
        self._tasks[(task.provider, task.task_id)] = task

    def by_id(self, provider: str, task_id: str) -> Task | None:
        """The task, whoever created it (what a video shows, never an API answer)."""
        return self._tasks.get((provider, task_id))

    def get(self, provider: str, task_id: str, api_key: str) -> Task | None:
        """The task, or None if unknown or created with another account's key."""
        task = self._tasks.get((provider, task_id))
        return task if task is not None and task.api_key == api_key else None

    def remember_key(
        self, provider: str, api_key: str, key: str, body_fingerprint: str, task_id: str
    ) -> None:
        """Bind an idempotency key to the request it created a task for."""
        self._keys[(provider, api_key, key)] = (body_fingerprint, task_id)

    def lookup_key(self, provider: str, api_key: str, key: str) -> tuple[str, str] | None:
        """(fingerprint, task id) previously bound to an idempotency key, if any."""
        return self._keys.get((provider, api_key, key))

    def __len__(self) -> int:
        return len(self._tasks)
