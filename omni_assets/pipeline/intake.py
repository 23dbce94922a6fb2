"""Requests in: parse a YAML/JSONL requests file (or Python objects) into validated requests.

Every problem becomes a :class:`RequestIssue` naming the request, the field and what is allowed;
the valid requests go ahead. Nothing here makes an HTTP call.

YAML form (a bare list works too)::

    defaults: {provider: apimart, aspect_ratio: "16:9"}
    requests:
      - id: cat-neon
        prompt: A cat walking through neon rain
        duration: 6

JSONL form: one JSON object (a request) per line; blank lines and ``#`` comments are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..providers.errors import InvalidRequestError
from ..request import VideoRequest

__all__ = [
    "Intake",
    "RequestIssue",
    "check_requests",
    "load_requests_file",
    "parse_requests",
]

MAX_REQUESTS = 25_000  # Dagster adds at most ~25K dynamic partitions per tick (design.md).


@dataclass(frozen=True)
class RequestIssue:
    """Why one request was not accepted."""

    where: str  # "request #3 (id 'cat')", or "line 7"
    field: str | None
    message: str

    def __str__(self) -> str:
        on = f" field {self.field!r}:" if self.field else ""
        return f"{self.where}:{on} {self.message}"


@dataclass
class Intake:
    """The outcome of reading requests: the valid ones, and an issue for each rejected one."""

    requests: list[VideoRequest] = field(default_factory=list)
    issues: list[RequestIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def _where(index: int, raw: Any) -> str:
    ident = raw.get("id") if isinstance(raw, Mapping) else None
    return f"request #{index + 1}" + (f" (id {ident!r})" if ident else "")


def _from_objects(
    items: Sequence[Any],
    defaults: Mapping[str, Any],
    base_dir: Path | None,
    where: Callable[..., str],
) -> Intake:
    out = Intake()
    for index, raw in enumerate(items):
        if not isinstance(raw, Mapping):
            out.issues.append(
                RequestIssue(
                    where(index, raw), None, f"expected a mapping, got {type(raw).__name__}"
                )
            )
            continue
        data = {**defaults, **raw}
        if base_dir is not None:
            data = _resolve_local_paths(data, base_dir)
        try:
            out.requests.append(VideoRequest.model_validate(data))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or None
                msg = err["msg"]
                if err["type"] == "extra_forbidden":
                    allowed = ", ".join(sorted(VideoRequest.model_fields))
                    msg = f"unknown field; allowed fields: {allowed}"
                elif "input" in err and err["type"] != "missing":
                    msg = f"{msg} (given {err['input']!r})"
                out.issues.append(RequestIssue(where(index, raw), loc, msg))
    return out


def _resolve_local_paths(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Relative image/video paths are relative to the requests file, not the current directory."""

    def resolve(value: Any) -> Any:
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            return str(base_dir / value)
        return value

    out = dict(data)
    if isinstance(out.get("images"), list):
        out["images"] = [resolve(v) for v in out["images"]]
    elif isinstance(out.get("images"), str):
        out["images"] = [resolve(out["images"])]
    if "video" in out:
        out["video"] = resolve(out["video"])
    return out


def parse_requests(text: str, *, fmt: str, base_dir: Path | None = None) -> Intake:
    """Parse requests from ``text`` in ``fmt`` (``yaml`` or ``jsonl``)."""
    if fmt == "jsonl":
        items: list[Any] = []
        lines: list[int] = []
        bad = Intake()
        for lineno, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                items.append(json.loads(stripped))
                lines.append(lineno)
            except json.JSONDecodeError as exc:
                bad.issues.append(RequestIssue(f"line {lineno}", None, f"invalid JSON: {exc.msg}"))
            except (ValueError, RecursionError) as exc:  # 5000-digit numbers, deep nesting
                bad.issues.append(RequestIssue(f"line {lineno}", None, f"invalid JSON: {exc}"))
        parsed = _from_objects(
            items,
            {},
            base_dir,
            lambda i, raw: (
                f"line {lines[i]}"
                + (f" (id {raw.get('id')!r})" if isinstance(raw, Mapping) and raw.get("id") else "")
            ),
        )
        parsed.issues[:0] = bad.issues
        return parsed
    if fmt != "yaml":
        raise ValueError(f"format {fmt!r} is not supported; allowed: yaml, jsonl")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "requests file"
        return Intake(issues=[RequestIssue(where, None, f"invalid YAML: {exc}")])
    except (ValueError, RecursionError) as exc:
        # PyYAML builds dates as it reads (2021-02-30 raises ValueError) and recurses on nesting.
        return Intake(issues=[RequestIssue("requests file", None, f"invalid YAML: {exc}")])
    defaults: Any = {}
    if isinstance(doc, Mapping):
        unknown = set(doc) - {"defaults", "requests"}
        if unknown:
            return Intake(
                issues=[
                    RequestIssue(
                        "requests file",
                        ", ".join(sorted(map(str, unknown))),
                        "unknown top-level key; allowed: defaults, requests "
                        "(or a bare list of requests)",
                    )
                ]
            )
        defaults, doc = doc.get("defaults") or {}, doc.get("requests") or []
    if doc is None:
        doc = []
    if not isinstance(doc, list) or not isinstance(defaults, Mapping):
        return Intake(
            issues=[
                RequestIssue(
                    "requests file",
                    None,
                    "expected a list of requests, or a mapping with 'defaults' and 'requests'",
                )
            ]
        )
    if "id" in defaults:
        return Intake(issues=[RequestIssue("defaults", "id", "an id cannot be a default")])
    return _from_objects(doc, defaults, base_dir, _where)


def load_requests_file(path: str | Path) -> Intake:
    """Read a ``.yaml``/``.yml``/``.jsonl``/``.json`` requests file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Intake(issues=[RequestIssue(str(p), None, f"cannot read requests file: {exc}")])
    fmt = "jsonl" if p.suffix.lower() in (".jsonl", ".ndjson") else "yaml"  # JSON is YAML
    return parse_requests(text, fmt=fmt, base_dir=p.parent.absolute())


Validator = Callable[[VideoRequest, str], None]
"""Checks a request against a provider's capability table; raises InvalidRequestError."""


def check_requests(
    requests: Iterable[VideoRequest],
    *,
    default_provider: str,
    validate: Validator,
    can_extend: Callable[[VideoRequest, str], bool],
    known_keys: Iterable[str] = (),
) -> Intake:
    """Validate each request for its provider, and the set as a whole.

    Duplicate keys, extension parents that are missing or invalid, and cycles are issues; so is a
    child whose provider cannot extend a video. ``known_keys`` are keys registered earlier (a
    parent may come from a previous requests file).
    """
    out = Intake()
    by_key: dict[str, VideoRequest] = {}
    seen: set[str] = set()
    for req in requests:
        key = req.key
        if key in seen:
            out.issues.append(
                RequestIssue(f"request {key!r}", "id", "duplicate id; ids must be unique")
            )
            by_key.pop(key, None)
            continue
        seen.add(key)
        provider = req.provider or default_provider
        try:
            validate(req, provider)
        except InvalidRequestError as exc:
            message = exc.message.removeprefix(f"request {key!r}: ")  # the issue says which
            out.issues.append(RequestIssue(f"request {key!r}", exc.field, message))
            continue
        if req.extends is not None and not can_extend(req, provider):
            out.issues.append(
                RequestIssue(
                    f"request {key!r}",
                    "extends",
                    f"provider {provider!r} (model {req.model or 'default'}) cannot extend "
                    "a video; "
                    "choose a provider that takes a reference video or a parent task",
                )
            )
            continue
        by_key[key] = req
    known = set(known_keys)
    bad = _bad_chain_members(by_key, known, seen)
    for key, reason in bad.items():
        out.issues.append(RequestIssue(f"request {key!r}", "extends", reason))
    out.requests = [r for k, r in by_key.items() if k not in bad]
    return out


def _bad_chain_members(
    by_key: Mapping[str, VideoRequest], known: set[str], seen: set[str]
) -> dict[str, str]:
    """Requests whose ``extends`` chain has a cycle, a missing parent or a rejected parent."""
    bad: dict[str, str] = {}
    for start in by_key:
        path: list[str] = []
        key: str | None = start
        while key is not None and key in by_key and key not in bad:
            if key in path:
                cycle = " -> ".join([*path[path.index(key) :], key])
                for member in path[path.index(key) :]:
                    bad[member] = f"extension cycle: {cycle}"
                break
            path.append(key)
            key = by_key[key].extends
        else:
            if key is None or key in known:
                continue
            reason = (
                f"parent {key!r} was rejected"
                if key in seen or key in bad
                else f"parent {key!r} is not a known request id"
            )
            if key in bad:
                reason = f"parent {key!r} is invalid ({bad[key]})"
            for member in path:
                bad.setdefault(member, reason if member == path[-1] else f"ancestor {reason}")
    return bad
