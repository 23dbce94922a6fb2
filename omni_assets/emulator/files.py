"""What ``/files/...`` serves, and how its URLs are signed and made to expire.

A served file (a task's video or an uploaded file) gets one opaque token for its life. Each URL
handed out for it carries ``expires`` (unix seconds) and an HMAC ``signature`` over token and
expiry, so a fresh URL can be issued on every status query and an edited expiry is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from .scene import Scene

__all__ = ["FileStore", "Served"]


@dataclass(frozen=True)
class Served:
    """One servable file: an upload on disk, or a task video rendered on demand."""

    token: str
    ext: str
    provider: str
    content_type: str
    path: Path | None = None
    duration: int = 0
    aspect: str = ""
    padding: int = 0
    task_id: str | None = None
    scene: Scene | None = None  # a task video: what it shows

    @property
    def name(self) -> str:
        """The last path segment of its URL: token plus extension."""
        return self.token + self.ext


class FileStore:
    """Tokens of everything servable, and URL signing with a per-instance secret."""

    def __init__(self, uploads_dir: Path) -> None:
        self.uploads_dir = uploads_dir
        self._secret = secrets.token_bytes(32)
        self._by_name: dict[str, Served] = {}
        self._by_task: dict[tuple[str, str], Served] = {}

    def clear(self) -> None:
        """Forget every file and delete uploaded ones."""
        self._by_name.clear()
        self._by_task.clear()
        shutil.rmtree(self.uploads_dir, ignore_errors=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)

    def for_task(
        self,
        provider: str,
        task_id: str,
        duration: int,
        aspect: str,
        padding: int,
        scene: Scene | None = None,
    ) -> Served:
        """The (one, stable) servable video of a task."""
        served = self._by_task.get((provider, task_id))
        if served is None:
            served = Served(
                token=secrets.token_hex(16),
                ext=".mp4",
                provider=provider,
                content_type="video/mp4",
                duration=duration,
                aspect=aspect,
                padding=padding,
                task_id=task_id,
                scene=scene,
            )
            self._by_task[(provider, task_id)] = served
            self._by_name[served.name] = served
        return served

    def add_upload(self, provider: str, path: Path, content_type: str, ext: str) -> Served:
        """Register an uploaded file (already moved into ``uploads_dir``)."""
        served = Served(
            token=secrets.token_hex(16),
            ext=ext,
            provider=provider,
            content_type=content_type,
            path=path,
        )
        self._by_name[served.name] = served
        return served

    def lookup(self, name: str) -> Served | None:
        """The file served under ``name`` (token plus extension), if any."""
        return self._by_name.get(name)

    def url(self, origin: str, served: Served, expires: int) -> str:
        """An absolute URL for ``served`` valid until ``expires`` (unix seconds)."""
        signature = self.signature(served.token, expires)
        return f"{origin}/files/{served.name}?expires={expires}&signature={signature}"

    def signature(self, token: str, expires: int) -> str:
        """The HMAC that makes a (token, expiry) pair unforgeable."""
        message = f"{token}:{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def verify(self, token: str, expires: int, signature: str) -> bool:
        """Whether ``signature`` was issued by this store for (token, expires)."""
        return hmac.compare_digest(self.signature(token, expires), signature)
