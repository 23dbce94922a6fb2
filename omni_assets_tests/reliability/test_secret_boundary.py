"""Secrets at the trust boundary: a provider that echoes the key everywhere it can, and keys that
were pasted with a line break or a space (issue 12 findings 1, 2).

The hostile provider is the suite's own server on 127.0.0.1 (``hostile.py``), speaking APIMart's
dialect. It echoes the request's ``Authorization`` header (``Bearer <key>``) into an error's
``code``, ``type`` and ``message``, the ``X-Request-Id`` header of every answer, a failed task's
error code and message, and a status line that no HTTP parser accepts (so the key is in the
transport library's exception text). After ``omni-assets run`` against it, the key is searched
for in every file Dagster, the registry and the storage wrote, every run's event log read back
through the instance API, and everything the process printed.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from dagster import EnvVar

from omni_assets.emulator.video import render_mp4
from omni_assets.pipeline.poll import poll_in_flight
from omni_assets.providers import PROVIDER_NAMES, get_provider
from omni_assets.providers.base import TaskRef
from omni_assets.providers.env import API_KEY_ENV, BASE_URL_ENV
from omni_assets.providers.errors import InvalidApiKeyError, OmniError
from omni_assets.providers.redaction import KEY_SUFFIX, known_secrets, redact
from omni_assets.registry import RegisterItem, Registry
from omni_assets.request import VideoRequest
from omni_assets.resources import APIMartResource
from omni_assets.settings import Settings

from ..hostile import HostileServer, Reply
from ..test_providers_support import FAST
from .harness import record_figures, run_cli, secrets_left

pytestmark = pytest.mark.reliability

MODEL = "Omni-Flash-Ext"


def _key(provider: str = "apimart") -> str:
    return f"sk-LEAKCHECK-{provider}-{secrets.token_hex(12)}"


def _echo(reply: Reply) -> str:
    """What a careless provider repeats back: the request's Authorization header (the key)."""
    return reply.request.headers.get("authorization", "")


def _broken_status_line(reply: Reply) -> None:
    """An answer no HTTP parser accepts; httpx and aiohttp quote the line in their errors."""
    reply.raw(f"HTTP/1.1 2x0 {_echo(reply)}\r\n\r\n".encode())


class EchoingProvider:
    """APIMart's dialect on the hostile server, echoing the key into every string it sends.

    Requests are told apart by prompt: ``refused`` (the create is refused: 400 with the key in
    ``code``, ``type``, ``message`` and ``X-Request-Id``), ``fails`` (the task fails: the key in
    its error's code and message), ``ok`` (its first status answer is a broken status line
    quoting the key, then it completes and its video downloads).
    """

    def __init__(self, server: HostileServer, video: bytes) -> None:
        self.server, self.video = server, video
        self.status_calls: dict[str, int] = {}
        self.lock = threading.Lock()
        server.route("POST", "/v1/videos/generations", self.create)
        server.route("GET", "/v1/tasks/*", self.status)
        server.route("GET", "/v.mp4", self.download)

    def create(self, reply: Reply) -> None:
        prompt = json.loads(reply.request.body)["prompt"]
        key = _echo(reply)
        if prompt == "refused":
            error = {"message": f"invalid request for {key}", "code": key, "type": key}
            reply.json({"error": error}, 400, {"X-Request-Id": key})
            return
        task = {"fails": "t-fails", "ok": "t-ok"}[prompt]
        reply.json(
            {"data": {"id": task, "status": "submitted"}, "request_id": key},
            headers={"X-Request-Id": key},
        )

    def status(self, reply: Reply) -> None:
        task = reply.request.path.rsplit("/", 1)[-1]
        with self.lock:
            calls = self.status_calls[task] = self.status_calls.get(task, 0) + 1
        key = _echo(reply)
        if task == "t-fails":
            error = {"code": key, "type": key, "message": f"generation failed for {key}"}
            data: dict[str, Any] = {"id": task, "status": "failed", "error": error}
        elif calls == 1:
            _broken_status_line(reply)
            return
        else:
            video = {"url": [f"{self.server.url}/v.mp4"]}
            data = {"id": task, "status": "completed", "result": {"videos": [video]}}
        reply.json({"code": 200, "data": data}, headers={"X-Request-Id": key})

    def download(self, reply: Reply) -> None:
        headers = {"Content-Type": "video/mp4", "X-Request-Id": _echo(reply)}
        reply.send(self.video, headers=headers)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    render_mp4(path, 4, "16:9")
    return path.read_bytes()


@pytest.fixture
def echoing(hostile: HostileServer, video: bytes) -> EchoingProvider:
    return EchoingProvider(hostile, video)


def _clean_env(home: Path, storage: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OMNI_", "DAGSTER_")) and not k.endswith(KEY_SUFFIX)
    }
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return env | {
        "DAGSTER_HOME": str(home),
        "OMNI_PROVIDER": "apimart",
        "OMNI_STORAGE_URL": str(storage),
    }


def _needles(key: str) -> list[str]:
    return [key, key.rsplit("-", 1)[1]]


# -- finding 1: one redactor, every string a provider sends ---------------------------------------


def test_a_provider_echoing_the_key_everywhere_leaves_no_trace(
    echoing: EchoingProvider, hostile: HostileServer, tmp_path: Path
) -> None:
    key = _key()
    home, storage = tmp_path / "home", tmp_path / "storage"
    env = _clean_env(home, storage) | {"APIMART_API_KEY": key, "APIMART_BASE_URL": hostile.url}
    requests = [
        {"id": name, "prompt": name, "provider": "apimart", "model": MODEL, "duration": 4}
        for name in ("refused", "fails", "ok")
    ]
    path = tmp_path / "requests.yaml"
    path.write_text(yaml.safe_dump({"requests": requests}))
    done = run_cli(["run", str(path), "--timeout", "90"], env, timeout=180)
    output = done.stdout + done.stderr
    assert "1/3 materialized" in done.stdout, output[-4000:]
    # The attack happened: the key went out, and came back in every answer.
    api_calls = hostile.requests_to("/v1/")
    assert api_calls and all(s.headers["authorization"] == f"Bearer {key}" for s in api_calls)
    assert echoing.status_calls["t-ok"] >= 2  # the broken answer, then the real one
    with Registry(f"sqlite:///{home / 'omni_registry.db'}") as registry:
        states = {r.key: r.state.value for r in registry.records()}
        errors = {r.key: json.dumps(dict(r.error or {}), default=str) for r in registry.records()}
    assert states == {"refused": "failed", "fails": "failed", "ok": "materialized"}, states
    assert "***" in errors["refused"] and "***" in errors["fails"]  # redacted, not dropped

    needles = _needles(key)
    left = secrets_left(home, storage, output, needles)
    hits = left.hits
    record_figures(
        "secret_boundary",
        echoed_into=6,  # code, type, message, X-Request-Id, failed task's error, a status line
        runs_searched=left.runs_searched,
        files_searched=left.files_searched,
        leaked=len(hits),
    )
    assert left.runs_searched
    assert not hits, "\n".join(hits)


def test_the_transport_error_and_its_causes_are_redacted(hostile: HostileServer) -> None:
    """The synchronous status call (the blocking asset, ``wait``): httpx's own exception quotes
    the broken status line; it and every exception chained under ours are redacted."""
    key = _key()
    hostile.route("GET", "/v1/tasks/*", _broken_status_line)
    client = get_provider("apimart", api_key=key, base_url=hostile.url, options=FAST)
    with pytest.raises(OmniError) as caught:
        client.status(TaskRef("apimart", "t-1", MODEL, time.time()))
    chain: list[BaseException] = []
    item: BaseException | None = caught.value
    while item is not None and len(chain) < 10:
        chain.append(item)
        item = item.__cause__ or item.__context__
    assert len(chain) >= 2  # ours, and httpx's beneath it
    texts = [str(e) for e in chain] + [repr(e) for e in chain]
    assert "***" in " ".join(texts)
    assert not [t for t in texts if key in t], texts


def test_a_status_word_echoing_the_key_is_redacted_before_it_is_logged(
    hostile: HostileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = _key()
    hostile.route(
        "GET",
        "/v1/tasks/*",
        lambda r: r.json({"code": 200, "data": {"status": f"weird {_echo(r)}"}}),
    )
    client = get_provider("apimart", api_key=key, base_url=hostile.url, options=FAST)
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        request = VideoRequest(id="weird", prompt="weird", duration=4)
        registry.register([RegisterItem.for_request(request, "apimart", MODEL)])
        assert registry.begin_submit("weird", "idem")
        registry.record_submitted("weird", TaskRef("apimart", "t-w", MODEL, time.time()))
        with caplog.at_level(logging.INFO):
            report = poll_in_flight(registry, {"apimart": client}, now=time.time() + 60)
        record = registry.get("weird")
    assert report.unrecognized == {"weird": "weird bearer ***"}
    assert record is not None and key not in json.dumps(record.__dict__, default=str)
    assert key not in caplog.text and "weird bearer ***" in caplog.text
    assert not (tmp_path / "registry.db").read_bytes().count(key.encode())


def test_the_redactor_knows_every_configured_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each provider's key variable, Google's two included, whether or not a client uses it."""
    assert all(name.endswith(KEY_SUFFIX) for names in API_KEY_ENV.values() for name in names)
    keys = {name: _key(name.lower()) for names in API_KEY_ENV.values() for name in names}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    assert set(keys.values()) <= known_secrets()
    text = " | ".join(keys.values())
    assert set(redact(text).split(" | ")) == {"***"}
    made = _key("made-by-hand") + "/a+b="  # a key given to a client directly, in no variable
    get_provider("toapis", api_key=made, base_url="http://127.0.0.1:9")
    assert redact(f"x {made} y") == "x *** y"
    # ...and its URL-encoded, JSON-escaped and re-cased forms
    assert redact(f"?key={quote(made, safe='')}&{json.dumps(made)}") == '?key=***&"***"'
    assert redact(made.upper()) == "***"


# -- finding 2: a mis-pasted key is refused before any HTTP call ----------------------------------

BAD_KEYS = {
    "a line break": "sk-LEAKCHECK-{}\nrest-of-key",
    "a carriage return": "sk-LEAKCHECK-{}\rX",
    "a NUL byte": "sk-LEAKCHECK-{}\0X",
    "a space": "sk-LEAKCHECK-{} X",
    "a tab": "sk-LEAKCHECK-{}\tX",
    "a control character (U+0007)": "sk-LEAKCHECK-{}\aX",
    "a non-ASCII character (U+201C)": "\u201csk-LEAKCHECK-{}",
    "a non-ASCII character (U+00E9)": "sk-LEAKCHECK-{}\u00e9",
}


@pytest.mark.parametrize("problem", sorted(BAD_KEYS))
def test_a_mis_pasted_key_is_refused_before_any_http_call(
    problem: str, hostile: HostileServer
) -> None:
    hostile.route("POST", "/*", lambda r: r.json({"data": {"id": "t-1"}}))
    bad = BAD_KEYS[problem].format(secrets.token_hex(8))
    request = VideoRequest(id="mispasted", prompt="x", duration=4)
    with pytest.raises(InvalidApiKeyError) as caught:
        client = get_provider("apimart", api_key=bad, base_url=hostile.url, model=MODEL)
        client.submit(request)  # once raised httpx's "Illegal header value b'Bearer sk-...'"
    message = str(caught.value)
    assert "APIMART_API_KEY" in message and problem in message, message
    assert bad.strip() not in message and "LEAKCHECK" not in message + repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert hostile.seen == []  # nothing was sent


def test_a_resource_names_its_own_variable(
    monkeypatch: pytest.MonkeyPatch, hostile: HostileServer
) -> None:
    monkeypatch.setenv("MY_APIMART_KEY", f"sk-LEAKCHECK-{secrets.token_hex(8)} \n pasted")
    resource = APIMartResource(api_key=EnvVar("MY_APIMART_KEY"), base_url=hostile.url)
    with pytest.raises(InvalidApiKeyError, match="MY_APIMART_KEY holds a space") as caught:
        resource.get_client()
    assert "LEAKCHECK" not in str(caught.value)
    assert hostile.seen == []


def test_settings_refuse_any_mis_pasted_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every provider's key variable is checked, not only the chosen provider's."""
    for name in PROVIDER_NAMES:
        monkeypatch.delenv(API_KEY_ENV[name][0], raising=False)
    monkeypatch.setenv("OMNI_PROVIDER", "apimart")
    monkeypatch.setenv("APIMART_API_KEY", _key())
    Settings.from_env().check_keys()
    monkeypatch.setenv("GEMINI_API_KEY", f"{_key('google')}\n")  # a trailing newline is fine
    Settings.from_env().check_keys()
    monkeypatch.setenv("GEMINI_API_KEY", f"{_key('google')}\nAIza")
    with pytest.raises(InvalidApiKeyError, match="GEMINI_API_KEY holds a line break"):
        Settings.from_env().check_keys()


def test_the_cli_refuses_a_mis_pasted_key_before_anything(
    hostile: HostileServer, tmp_path: Path
) -> None:
    bad = f"sk-LEAKCHECK-apimart-{secrets.token_hex(8)}\nsk-second-line"
    home, storage = tmp_path / "home", tmp_path / "storage"
    env = _clean_env(home, storage) | {
        "APIMART_API_KEY": bad,
        BASE_URL_ENV["apimart"]: hostile.url,
    }
    path = tmp_path / "requests.yaml"
    path.write_text(yaml.safe_dump({"requests": [{"id": "a", "prompt": "x", "model": MODEL}]}))
    done = run_cli(["run", str(path), "--timeout", "20"], env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "APIMART_API_KEY holds a line break" in done.stderr
    assert "LEAKCHECK" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert hostile.seen == []
    assert not storage.exists() or not any(storage.rglob("*.mp4"))


@pytest.fixture(autouse=True)
def _no_key_variables(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The developer's real keys stay out of these tests (and out of their children)."""
    for name in [n for n in os.environ if n.endswith(KEY_SUFFIX)]:
        monkeypatch.delenv(name)
    yield
