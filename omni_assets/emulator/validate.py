"""Small, strict readers for create bodies; each raises a ``validation`` :class:`ApiError`.

Strict on purpose: real services may ignore an unknown field or coerce a wrong type, but the
emulator exists to catch client mistakes, so anything a provider page does not document is
refused.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from .errors import ApiError

__all__ = [
    "choice_int",
    "choice_str",
    "json_object",
    "optional_str",
    "reject_unknown",
    "required_str",
    "url_list",
]


def _field(key: str, where: str) -> str:
    return f"{where}.{key}" if where else key


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body parsed as a JSON object."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError("validation", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError("validation", "request body must be a JSON object")
    return body


def reject_unknown(body: dict[str, Any], allowed: Collection[str], where: str = "") -> None:
    """Refuse any key of ``body`` outside ``allowed``."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        names = ", ".join(_field(k, where) for k in unknown)
        raise ApiError("validation", f"unknown or unsupported field(s): {names}")


def optional_str(body: dict[str, Any], key: str, where: str = "") -> str | None:
    """A string field, or None when absent, null or empty."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError("validation", f"{_field(key, where)} must be a string")
    return value or None


def required_str(
    body: dict[str, Any], key: str, where: str = "", max_len: int | None = None
) -> str:
    """A non-empty string field, at most ``max_len`` characters."""
    value = optional_str(body, key, where)
    if value is None or not value.strip():
        raise ApiError("validation", f"{_field(key, where)} is required")
    if max_len is not None and len(value) > max_len:
        raise ApiError("validation", f"{_field(key, where)} is longer than {max_len} characters")
    return value


def choice_int(
    body: dict[str, Any],
    key: str,
    allowed: Collection[int],
    default: int,
    *,
    where: str = "",
    error_type: str | None = None,
) -> int:
    """An integer field restricted to ``allowed`` (``default`` when absent or null)."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        options = "/".join(str(v) for v in sorted(allowed))
        raise ApiError(
            "validation",
            f"{_field(key, where)} must be one of {options}, got {value!r}",
            type_=error_type,
        )
    return value


def choice_str(
    body: dict[str, Any],
    key: str,
    allowed: Collection[str],
    default: str,
    *,
    where: str = "",
    case_insensitive: bool = False,
    error_type: str | None = None,
) -> str:
    """A string field restricted to ``allowed``, returned in its ``allowed`` spelling."""
    value = body.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        for option in allowed:
            if value == option or (case_insensitive and value.lower() == option.lower()):
                return option
    raise ApiError(
        "validation",
        f"{_field(key, where)} must be one of {', '.join(allowed)}, got {value!r}",
        type_=error_type,
    )


def url_list(
    body: dict[str, Any],
    key: str,
    *,
    max_items: int,
    data_prefix: str | None = None,
    where: str = "",
    error_type: str | None = None,
) -> list[str]:
    """A list of http(s) URLs (or ``data_prefix`` URIs where allowed), at most ``max_items``."""
    value = body.get(key)
    if value is None:
        return []
    name = _field(key, where)
    if not isinstance(value, list):
        raise ApiError("validation", f"{name} must be an array of URLs")
    if len(value) > max_items:
        raise ApiError(
            "validation", f"{name} accepts at most {max_items} item(s)", type_=error_type
        )
    for item in value:
        if not isinstance(item, str) or not _is_url(item, data_prefix):
            kinds = "an http(s) URL" + (f" or a {data_prefix}... URI" if data_prefix else "")
            raise ApiError("validation", f"each item of {name} must be {kinds}")
    return list(value)


def _is_url(value: str, data_prefix: str | None) -> bool:
    if data_prefix and value.startswith(data_prefix):
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
