"""What every provider client offers, and the typed records they exchange.

Provider clients import httpx and pydantic, never dagster. The Dagster layer reaches a provider
only through :class:`Provider` and the frozen, JSON-serializable records defined here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..request import VideoRequest
    from .capabilities import ModelCapabilities

__all__ = [
    "DownloadResult",
    "Provider",
    "StagedDownload",
    "TaskRef",
    "TaskState",
    "TaskStatus",
    "UploadedFile",
]


class TaskState(str, Enum):
    """The closed set of states every provider's status words map onto."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


@dataclass(frozen=True)
class TaskRef:
    """A submitted task: enough to query it again from any process, later."""

    provider: str
    task_id: str
    model: str
    submitted_at: float
    idempotency_key: str | None = None
    request_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TaskRef:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class TaskStatus:
    """One reading of a task's status, parsed from the provider's JSON.

    ``recognized`` is False when the provider sent a status word we do not know: the state is then
    RUNNING (keep polling until the deadline) and ``raw_status`` says what was seen.
    ``retry_after`` is the server's hint, in seconds, for the next poll, when it gave one.
    """

    provider: str
    task_id: str
    state: TaskState
    raw_status: str
    recognized: bool = True
    progress: int | None = None
    video_url: str | None = None
    expires_at: float | None = None
    error_message: str | None = None
    error_code: str | None = None
    cost: float | None = None
    credits: float | None = None
    created_at: float | None = None
    completed_at: float | None = None
    retry_after: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def terminal(self) -> bool:
        return self.state.terminal


@dataclass(frozen=True)
class UploadedFile:
    """A local file made reachable to the provider by its upload API."""

    url: str
    sha256: str
    size: int
    expires_at: float | None = None


@dataclass(frozen=True)
class DownloadResult:
    """A video committed to its final fsspec location."""

    uri: str
    sha256: str
    size: int
    seconds: float


@dataclass(frozen=True)
class StagedDownload:
    """A complete download not yet committed: ``path`` is a local file with its bytes."""

    path: str
    sha256: str
    size: int


@runtime_checkable
class Provider(Protocol):
    """A Gemini Omni provider client (sync API; ``astatus`` for concurrent polling)."""

    name: str
    model: str

    def capabilities(self, model: str | None = None) -> ModelCapabilities: ...

    def validate(self, request: VideoRequest) -> None:
        """Raise InvalidRequestError (naming field, value, allowed) without any HTTP call."""

    def build_body(
        self,
        request: VideoRequest,
        *,
        image_urls: tuple[str, ...] = (),
        video_url: str | None = None,
        extend_from: TaskRef | None = None,
    ) -> dict[str, Any]:
        """The exact JSON body this provider documents, for an already validated request."""

    def submit(
        self,
        request: VideoRequest,
        *,
        image_urls: tuple[str, ...] = (),
        video_url: str | None = None,
        extend_from: TaskRef | None = None,
        idempotency_key: str | None = None,
    ) -> TaskRef: ...

    def status(self, ref: TaskRef) -> TaskStatus: ...

    async def astatus(self, ref: TaskRef) -> TaskStatus: ...

    def download(
        self,
        url: str,
        fs_url: str,
        *,
        verify: Callable[[StagedDownload], None] | None = None,
        **storage_options: Any,
    ) -> DownloadResult:
        """Stream ``url`` into ``fs_url``; ``verify`` checks the whole file before the commit."""

    def upload_image(self, path: str) -> UploadedFile: ...

    @property
    def can_upload(self) -> bool: ...

    @property
    def can_cancel(self) -> bool: ...

    def cancel(self, ref: TaskRef) -> bool: ...

    def close(self) -> None: ...
