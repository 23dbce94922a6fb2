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

Limits (docs/reference.md, "Requests files"): a file holds at most ``MAX_REQUESTS`` requests
(``OMNI_MAX_REQUESTS`` lowers it) and :data:`MAX_REQUEST_FILE_BYTES` bytes; a YAML file's aliases
may not expand it past ``bounded_yaml``'s limits. A file past a limit is one issue and none of its
requests go ahead (which ones would be a guess). JSONL is read a line at a time, and its requests
are counted before any is parsed: a file past the limit is refused at once, whatever its length.
Errors quote a value clipped (:func:`short_repr`), never whole.
"""

from __future__ import annotations

import io
import json
import os
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from pydantic import ValidationError

from ..providers.errors import InvalidRequestError
from ..request import MAX_REQUESTS, VideoRequest
from .bounded_yaml import YamlLimitError, load_bounded
from .local_files import LocalFileRefused, allowed_roots, check_local_file

__all__ = [
    "MAX_REQUESTS",
    "MAX_REQUEST_FILE_BYTES",
    "Intake",
    "RequestIssue",
    "check_requests",
    "load_requests_file",
    "parse_requests",
    "short_repr",
]

#: The largest requests file read: 25,000 requests of 2.5 KB each (a long prompt, tags, images).
MAX_REQUEST_FILE_BYTES = 64 * 1024 * 1024

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4
_SHORT.maxlevel = 3


def short_repr(value: Any) -> str:
    """``repr(value)`` clipped (at most ~200 characters, even for a value that holds itself or
    expands to gigabytes through YAML aliases): what an error may quote of an input."""
    return _SHORT.repr(value)[:200]


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
    return f"request #{index + 1}" + (f" (id {short_repr(ident)})" if ident else "")


def _from_objects(
    items: Iterable[Any],
    defaults: Mapping[str, Any],
    base_dir: Path | None,
    where: Callable[..., str],
    roots: Sequence[Path] | None = None,
) -> Intake:
    out = Intake()
    roots = allowed_roots(base_dir) if roots is None else roots
    for index, raw in enumerate(items):
        _add_request(out, where(index, raw), raw, defaults, base_dir, roots)
    return out


def _add_request(
    out: Intake,
    where: str,
    raw: Any,
    defaults: Mapping[str, Any],
    base_dir: Path | None,
    roots: Sequence[Path],
) -> None:
    """Validate one request into ``out``: the request, or one issue per problem."""
    if not isinstance(raw, Mapping):
        got = type(raw).__name__
        out.issues.append(RequestIssue(where, None, f"expected a mapping, got {got}"))
        return
    data = {**defaults, **raw}
    if base_dir is not None:
        data = _resolve_local_paths(data, base_dir)
    try:
        request = VideoRequest.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or None
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(VideoRequest.model_fields))
                msg = f"unknown field; allowed fields: {allowed}"
            elif "input" in err and err["type"] != "missing":
                msg = f"{msg} (given {short_repr(err['input'])})"
            out.issues.append(RequestIssue(where, loc, msg))
        return
    checked = _check_local_files(out, where, request, roots)
    if checked is not None:
        out.requests.append(checked)


def _check_local_files(
    out: Intake, where: str, request: VideoRequest, roots: Sequence[Path]
) -> VideoRequest | None:
    """The request with its local files checked (local_files.py), or None and an issue.

    A symlink that stays inside the allowed folders is replaced by the file it names, so what is
    uploaded later is the file checked now (submit refuses a symlink: see sources.py).
    """
    images = list(request.images)
    video = request.video
    try:
        for i, image in enumerate(images):
            if not _is_url(image):
                field_name = "images"
                images[i] = check_local_file(image, roots).real_path
        if video is not None and not _is_url(video):
            field_name = "video"
            video = check_local_file(video, roots, image=False).real_path
    except LocalFileRefused as exc:
        shown = short_repr(image if field_name == "images" else video)
        out.issues.append(RequestIssue(where, field_name, f"{shown}: {exc}"))
        return None
    if tuple(images) == request.images and video == request.video:
        return request
    return request.model_copy(update={"images": tuple(images), "video": video})


def _is_url(value: str) -> bool:
    return "://" in value


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


def parse_requests(
    text: str,
    *,
    fmt: str,
    base_dir: Path | None = None,
    max_requests: int = MAX_REQUESTS,
    image_roots: Sequence[str] = (),
) -> Intake:
    """Parse requests from ``text`` in ``fmt`` (``yaml`` or ``jsonl``).

    Local files must lie under ``base_dir`` (the requests file's folder) or ``image_roots``
    (``OMNI_ALLOWED_IMAGE_ROOTS``); see local_files.py.
    """
    roots = allowed_roots(base_dir, image_roots)
    if fmt == "jsonl":
        lines = enumerate(io.StringIO(text), start=1)
        if _count_jsonl(line for _, line in lines) > max_requests:
            return _too_many(max_requests)
        return _parse_jsonl(enumerate(io.StringIO(text), start=1), base_dir, roots)
    if fmt != "yaml":
        raise ValueError(f"format {fmt!r} is not supported; allowed: yaml, jsonl")
    try:
        doc = load_bounded(text)
    except YamlLimitError as exc:
        return Intake(issues=[RequestIssue("requests file", None, str(exc))])
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
                        ", ".join(sorted(str(key)[:40] for key in list(unknown)[:5])),
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
    if len(doc) > max_requests:
        return _too_many(max_requests)
    if "id" in defaults:
        return Intake(issues=[RequestIssue("defaults", "id", "an id cannot be a default")])
    return _from_objects(doc, defaults, base_dir, _where, roots)


def _too_many(limit: int) -> Intake:
    return Intake(
        issues=[
            RequestIssue(
                "requests file",
                None,
                f"more than {limit:,} requests; a file holds at most {limit:,} "
                f"(OMNI_MAX_REQUESTS, at most {MAX_REQUESTS:,}: what the requests sensor "
                "registers in one tick): split it into several files",
            )
        ]
    )


def _is_request_line(line: str | bytes) -> bool:
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")  # only to look at its first character
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _count_jsonl(lines: Iterable[str | bytes], stop_after: int | None = None) -> int:
    """How many request lines there are (up to ``stop_after``, then stops reading)."""
    count = 0
    for line in lines:
        if _is_request_line(line):
            count += 1
            if stop_after is not None and count > stop_after:
                break
    return count


def _parse_jsonl(
    lines: Iterable[tuple[int, str | bytes]], base_dir: Path | None, roots: Sequence[Path]
) -> Intake:
    """Validate a JSONL stream one line at a time (nothing but the requests is kept)."""
    out = Intake()
    for lineno, line in lines:
        if not _is_request_line(line):
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            out.issues.append(RequestIssue(f"line {lineno}", None, f"invalid JSON: {exc.msg}"))
            continue
        except UnicodeDecodeError as exc:
            out.issues.append(RequestIssue(f"line {lineno}", None, f"not UTF-8: {exc.reason}"))
            continue
        except (ValueError, RecursionError) as exc:  # 5000-digit numbers, deep nesting
            out.issues.append(RequestIssue(f"line {lineno}", None, f"invalid JSON: {exc}"))
            continue
        ident = raw.get("id") if isinstance(raw, Mapping) else None
        where = f"line {lineno}" + (f" (id {short_repr(ident)})" if ident else "")
        _add_request(out, where, raw, {}, base_dir, roots)
    return out


def load_requests_file(
    path: str | Path, *, max_requests: int = MAX_REQUESTS, image_roots: Sequence[str] = ()
) -> Intake:
    """Read a ``.yaml``/``.yml``/``.jsonl``/``.json`` requests file (limits: module docstring)."""
    p = Path(path)
    base_dir = p.parent.absolute()
    jsonl = p.suffix.lower() in (".jsonl", ".ndjson")  # .json is YAML
    try:
        with open(p, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_REQUEST_FILE_BYTES:
                return _too_large(p, size)
            if jsonl:
                if _count_jsonl(fh, stop_after=max_requests) > max_requests:
                    return _too_many(max_requests)
                fh.seek(0)
                roots = allowed_roots(base_dir, image_roots)
                return _parse_jsonl(enumerate(_capped(fh), start=1), base_dir, roots)
            data = fh.read(MAX_REQUEST_FILE_BYTES + 1)  # it may have grown since fstat
        if len(data) > MAX_REQUEST_FILE_BYTES:
            return _too_large(p, len(data))
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Intake(issues=[RequestIssue(str(p), None, f"cannot read requests file: {exc}")])
    return parse_requests(
        text, fmt="yaml", base_dir=base_dir, max_requests=max_requests, image_roots=image_roots
    )


def _capped(fh: IO[bytes]) -> Iterator[bytes]:
    """The file's lines, stopping at :data:`MAX_REQUEST_FILE_BYTES` (a file that grows)."""
    left = MAX_REQUEST_FILE_BYTES
    for line in fh:
        left -= len(line)
        if left < 0:
            return
        yield line


def _too_large(path: Path, size: int) -> Intake:
    return Intake(
        issues=[
            RequestIssue(
                str(path),
                None,
                f"the requests file is {size:,} bytes; a requests file is at most "
                f"{MAX_REQUEST_FILE_BYTES:,} bytes: split it into several files",
            )
        ]
    )


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
