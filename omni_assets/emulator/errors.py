"""One provider-neutral error that each dialect renders in its own documented shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

__all__ = ["ApiError", "ErrorKind"]

ErrorKind = Literal[
    "auth",
    "balance",
    "validation",
    "not_found",
    "conflict",
    "too_large",
    "policy",
    "rate_limit",
    "server",
    "maintenance",
    "gateway",
]


class ApiError(Exception):
    """A request the emulator refuses.

    ``kind`` is what went wrong; the dialect picks the HTTP status and body shape. ``type_``
    overrides the dialect's default error type string where a provider documents a specific one
    (APIMart's ``invalid_duration``). ``status`` is only used by ``gateway`` errors, which are
    sent as a reverse proxy would send them (plain text, 502/503), whatever the dialect.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        type_: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.type_ = type_
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
