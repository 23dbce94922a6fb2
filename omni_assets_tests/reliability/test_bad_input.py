"""Bad input: every bad request is rejected with the request, the field and what is allowed,
while the valid requests of the same file go ahead; the parser never crashes (hypothesis).

Requests go through what the requests sensor runs (``load_requests_file`` then
``register_requests``), so "goes ahead" means registered in the task registry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_assets.pipeline.intake import Intake, RequestIssue, load_requests_file, parse_requests
from omni_assets.pipeline.runtime import OmniRuntime
from omni_assets.providers import PROVIDER_NAMES, get_provider
from omni_assets.registry import Registry
from omni_assets.request import VideoRequest
from omni_assets.sensors import register_requests
from omni_assets.storage import VideoStorage

from ..pipeline_env import DEMO_DIR
from .harness import record_figures

pytestmark = pytest.mark.reliability

PNG = (DEMO_DIR / "product.png").read_bytes()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[OmniRuntime]:
    """Registry and local storage; clients that are never called (validation is offline)."""
    providers = {
        name: get_provider(name, api_key="unused", base_url="http://127.0.0.1:9/")
        for name in PROVIDER_NAMES
    }
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    yield OmniRuntime(registry, VideoStorage(str(tmp_path / "storage")), providers, "apimart")
    registry.close()


def _write(folder: Path, name: str, requests: list[Any], **defaults: Any) -> Path:
    doc: dict[str, Any] = {"requests": requests}
    if defaults:
        doc["defaults"] = defaults
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


OK_APIMART = {"prompt": "fine", "provider": "apimart", "model": "Omni-Flash-Ext", "duration": 4}
PREVIEW = {"provider": "apimart", "model": "gemini-omni-flash-preview"}
TOAPIS_FLASH = {"provider": "toapis", "model": "gemini_omni_flash"}

# id -> (a request, the field its issue must name, words of what is allowed)
BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown-field": ({"prompt": "x", "colour": "red"}, "colour", "allowed fields: aspect_ratio"),
    "wrong-type": ({"prompt": "x", "duration": "six"}, "duration", "valid integer"),
    "wrong-type-images": ({"prompt": "x", "images": 5}, "images", "valid tuple"),
    "empty-prompt": ({"prompt": ""}, "prompt", "at least 1 character"),
    "bad-duration": (
        {"prompt": "x", "provider": "toapis", "model": "gemini_omni", "duration": 8},
        "duration",
        "6, 10",
    ),
    "bad-model": ({"prompt": "x", "provider": "jimmyai", "model": "veo-9"}, "model", "omni-10s"),
    "bad-provider": ({"prompt": "x", "provider": "sora"}, "provider", "apimart"),
    "bad-aspect": ({**OK_APIMART, "aspect_ratio": "1:1"}, "aspect_ratio", "16:9, 9:16"),
    "bad-resolution": ({**OK_APIMART, "resolution": "8k"}, "resolution", "720p, 1080p, 4k"),
    "preview-duration": ({**PREVIEW, "prompt": "x", "duration": 6}, "duration", "omit it"),
    "frame-on-omni-flash-ext": (
        {**OK_APIMART, "images": ["a.png", "a.png"], "mode": "frame"},
        "mode",
        "allowed: reference",
    ),
    "crun-local-image": (
        {"prompt": "x", "provider": "crun", "duration": 4, "images": ["a.png"]},
        "images",
        "http(s):// URLs only: crun has no upload API",
    ),
    "missing-image": ({**OK_APIMART, "images": ["nope.png"]}, "images", "an existing local file"),
    "directory-image": ({**OK_APIMART, "images": ["folder.png"]}, "images", "existing local file"),
    "wrong-extension": ({**OK_APIMART, "images": ["notes.txt"]}, "images", "files ending in"),
    "oversized-image": (
        {**TOAPIS_FLASH, "prompt": "x", "duration": 6, "images": ["huge.png"]},
        "images",
        "files up to 10 MB",
    ),
    "ftp-image": ({**OK_APIMART, "images": ["ftp://example.com/a.png"]}, "images", "http(s)://"),
    "file-url-video": ({**PREVIEW, "prompt": "x", "video": "file:///etc/passwd"}, "video", "http"),
    "bad id!": ({"prompt": "x"}, "id", "letters, digits"),
    "toapis-extends": (
        {"prompt": "x", "provider": "toapis", "extends": "ok-apimart"},
        "extends",
        "cannot continue",
    ),
    "orphan": ({**PREVIEW, "prompt": "x", "extends": "nobody"}, "extends", "not a known request"),
    "cycle-a": ({**PREVIEW, "prompt": "a", "extends": "cycle-b"}, "extends", "extension cycle"),
    "cycle-b": ({**PREVIEW, "prompt": "b", "extends": "cycle-a"}, "extends", "extension cycle"),
    "child-of-bad": (
        {**PREVIEW, "prompt": "x", "extends": "preview-duration"},
        "extends",
        "parent 'preview-duration' was rejected",
    ),
}


def _issue_for(issues: list[RequestIssue], key: str) -> RequestIssue:
    found = [i for i in issues if repr(key) in i.where]
    assert len(found) == 1, (key, [str(i) for i in issues])
    return found[0]


def test_each_bad_request_is_named_and_explained_while_the_rest_go_ahead(
    tmp_path: Path, runtime: OmniRuntime
) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    with open(tmp_path / "huge.png", "wb") as fh:  # sparse: 11 MB on paper, nothing on disk
        fh.write(PNG)
        fh.truncate(11 * 1024 * 1024)
    good = {
        "ok-apimart": OK_APIMART,
        "ok-local-image": {**OK_APIMART, "prompt": "from a file", "images": ["a.png"]},
        "ok-crun": {"prompt": "skyline", "provider": "crun", "duration": 4},
        "ok-parent": {**PREVIEW, "prompt": "parent"},
        "ok-child": {**PREVIEW, "prompt": "child", "extends": "ok-parent"},
    }
    good_items = [{"id": key, **request} for key, request in good.items()]
    items: list[Any] = []
    for i, (key, (request, _, _)) in enumerate(BAD.items()):  # valid and invalid interleaved
        items += [*good_items[i : i + 1], {"id": key, **request}]
    items += [{"id": "dup", "prompt": "one"}, {"id": "dup", "prompt": "two"}, "not a mapping"]
    intake = load_requests_file(_write(tmp_path, "requests.yaml", items))
    checked, keys = register_requests(runtime, intake.requests, intake)

    assert sorted(keys) == sorted(good)  # every valid request went ahead...
    assert sorted(r.key for r in runtime.registry.records()) == sorted(good)
    for key, (_, field, allowed) in BAD.items():  # ...and each bad one says what to fix
        issue = _issue_for(checked.issues, key)
        assert issue.field is not None and field in issue.field, str(issue)
        assert allowed in issue.message, str(issue)
    assert _issue_for(checked.issues, "dup").message == "duplicate id; ids must be unique"
    assert any("expected a mapping, got str" in str(i) for i in checked.issues)
    record_figures(
        "bad_input",
        bad_requests=len(BAD) + 2,
        rejected_with_field_and_allowed=len(BAD),
        valid_registered=len(keys),
    )


def test_jsonl_bad_lines_are_rejected_and_good_lines_go_ahead(
    tmp_path: Path, runtime: OmniRuntime
) -> None:
    lines = [
        json.dumps({"id": "one", **OK_APIMART}),
        '{"id": "broken", "prompt": ',
        "# a comment",
        "",
        json.dumps(["not", "a", "mapping"]),
        "1" * 5000,  # a number Python refuses to parse (int digit limit)
        "[" * 100_000,  # nesting deep enough to exhaust recursion
        json.dumps({"id": "two", **OK_APIMART, "prompt": "also fine"}),
    ]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines))
    intake = load_requests_file(path)
    checked, keys = register_requests(runtime, intake.requests, intake)
    assert sorted(keys) == ["one", "two"]
    where = sorted(i.where for i in checked.issues)
    assert where == ["line 2", "line 5", "line 6", "line 7"], [str(i) for i in checked.issues]
    assert "invalid JSON" in str(_issue_for_line(checked.issues, "line 2"))


def _issue_for_line(issues: list[RequestIssue], where: str) -> RequestIssue:
    return next(i for i in issues if i.where == where)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("requests: [ {id: a, prompt: x", "invalid YAML"),
        ("requests:\n  - id: a\n    prompt: x\n    duration: 2021-02-30\n", "invalid YAML"),
        ("[" * 10_000 + "]" * 10_000, "invalid YAML"),
        ("colour: red\nrequests: []\n", "unknown top-level key"),
        ("defaults: {id: x}\nrequests: []\n", "an id cannot be a default"),
        ("42", "expected a list of requests"),
        ("requests: {id: a}", "expected a list of requests"),
    ],
)
def test_a_broken_file_is_one_clear_issue(text: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "requests.yaml"
    path.write_text(text)
    intake = load_requests_file(path)
    assert not intake.requests
    assert len(intake.issues) == 1 and expected in str(intake.issues[0])


def test_unreadable_files_are_issues(tmp_path: Path) -> None:
    missing = load_requests_file(tmp_path / "nope.yaml")
    assert "cannot read requests file" in str(missing.issues[0])
    binary = tmp_path / "requests.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "cannot read requests file" in str(load_requests_file(binary).issues[0])
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.yaml"
        locked.write_text("[]")
        locked.chmod(0)
        assert "cannot read requests file" in str(load_requests_file(locked).issues[0])


# -- fuzzing: the parser only ever answers with issues -------------------------------------------

_FIELDS = [*VideoRequest.model_fields, "colour", "defaults", "requests"]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(["16:9", "frame", "apimart", "crun", "720p", "a.png", "ftp://x/y", "-"])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_request = st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=8)
_document = st.one_of(
    st.lists(_request | _values, max_size=6),
    st.fixed_dictionaries(
        {"requests": st.lists(_request, max_size=6)}, optional={"defaults": _request}
    ),
    _values,
)


def _only_issues(intake: Intake) -> None:
    assert isinstance(intake, Intake)
    for issue in intake.issues:
        assert isinstance(issue, RequestIssue) and str(issue)
    for request in intake.requests:
        assert isinstance(request, VideoRequest)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=300))
def test_fuzz_any_text(text: str) -> None:
    _only_issues(parse_requests(text, fmt="yaml"))
    _only_issues(parse_requests(text, fmt="jsonl"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_document)
def test_fuzz_request_shaped_documents(doc: Any) -> None:
    _only_issues(parse_requests(yaml.safe_dump(doc), fmt="yaml"))
    lines = doc if isinstance(doc, list) else [doc]
    _only_issues(parse_requests("\n".join(json.dumps(x) for x in lines), fmt="jsonl"))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=st.lists(_request, max_size=5))
def test_fuzz_parsed_requests_validate_to_issues_not_crashes(
    doc: list[dict[str, Any]], runtime: OmniRuntime
) -> None:
    intake = parse_requests(yaml.safe_dump(doc), fmt="yaml")
    checked, _ = register_requests(runtime, intake.requests, intake)
    _only_issues(checked)
