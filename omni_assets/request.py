"""`VideoRequest`: the one provider-neutral description of a video to generate.

A request says *what* to generate; the provider's capability table (``providers/capabilities.py``)
says whether the chosen provider+model can do it. The fingerprint hashes the request's content in
canonical form, so the same content always has the same fingerprint, whatever the order of fields
or the spelling of defaults, and any change of content gives a new one.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["KEY_PATTERN", "MAX_REQUESTS", "GenerationMode", "VideoRequest"]

# Partition keys end up in URLs, file names and the Dagster UI: keep them boring.
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"
_KEY_RE = re.compile(KEY_PATTERN)
#: Requests one requests file may hold: the requests sensor registers a file's new keys as dynamic
#: partitions in one tick, and Dagster adds at most ~25K per tick (SQLite fails near 36K at once;
#: design.md). ``OMNI_MAX_REQUESTS`` (settings.py) may lower it; pipeline/intake.py applies it.
MAX_REQUESTS = 25_000


class GenerationMode(str, Enum):
    """How source images are used: as the first frame, or as style/subject references."""

    FRAME = "frame"
    REFERENCE = "reference"


class VideoRequest(BaseModel):
    """One video to generate.

    ``images`` and ``video`` take local paths or ``http(s)://`` URLs; local files are uploaded (or
    presigned from storage) before the paid call. ``extends`` names the ``id`` of another request
    whose video this one continues. ``provider``/``model`` override the defaults for this request
    only. ``tags`` are carried to the asset's metadata and are not part of the fingerprint.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str | None = Field(default=None, description="Stable partition key; derived when omitted.")
    prompt: str = Field(min_length=1, max_length=20_000)
    duration: int | None = Field(default=None, ge=1, le=60, description="Seconds.")
    aspect_ratio: str | None = None
    resolution: str | None = None
    images: tuple[str, ...] = ()
    video: str | None = None
    mode: GenerationMode | None = None
    extends: str | None = None
    provider: str | None = None
    model: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("id", "extends")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        if value is not None and not _KEY_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid key: use 1-80 characters from letters, digits, "
                "'.', '_' and '-', starting with a letter or digit"
            )
        return value

    @field_validator("resolution")
    @classmethod
    def _normalize_resolution(cls, value: str | None) -> str | None:
        # Providers spell it 720p, 720P, 4K...; the tables use lower case.
        return value.lower() if value else None

    @field_validator("provider")
    @classmethod
    def _normalize_provider(cls, value: str | None) -> str | None:
        return value.lower() if value else None

    @field_validator("images", mode="before")
    @classmethod
    def _images_as_tuple(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return value

    @field_validator("images")
    @classmethod
    def _check_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            _check_source(item)
        return value

    @field_validator("video")
    @classmethod
    def _check_video(cls, value: str | None) -> str | None:
        if value is not None:
            _check_source(value)
        return value

    def content(self) -> dict[str, Any]:
        """The fields that define the video, in canonical form (what the fingerprint hashes)."""
        data = self.model_dump(mode="json", exclude={"id", "tags"})
        return {k: v for k, v in data.items() if v not in (None, [], ())}

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical content; stable across field order and defaults."""
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def key(self) -> str:
        """The partition key: the user's ``id``, else a readable slug plus a content hash."""
        if self.id:
            return self.id
        slug = re.sub(r"[^a-z0-9]+", "-", self.prompt.lower()).strip("-")[:32].strip("-")
        return f"{slug or 'video'}-{self.fingerprint()[:10]}"


def _check_source(value: str) -> None:
    if "://" in value and not value.startswith(("http://", "https://")):
        scheme = value.split("://", 1)[0]
        raise ValueError(
            f"{value!r}: scheme {scheme!r} is not allowed; use an http(s):// URL or a local path"
        )
    if not value:
        raise ValueError("empty source; use an http(s):// URL or a local path")
