"""The public surface: ``__all__``, the registry, the protocol, env config, uploads, cancel."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

import omni_assets.providers as providers
from omni_assets.providers import (
    PROVIDERS,
    APIMartClient,
    CRUNClient,
    GoogleClient,
    JimmyAIClient,
    Provider,
    TaskRef,
    ToAPIsClient,
    get_provider,
)
from omni_assets.providers.errors import InvalidRequestError

from .test_providers_support import KEY, client_for, js

PUBLIC = {
    "CAPABILITIES", "DEFAULT_MODELS", "PROVIDERS", "PROVIDER_NAMES", "APIMartClient",
    "CRUNClient", "ClientOptions", "DownloadResult", "GoogleClient", "JimmyAIClient",
    "ModelCapabilities",
    "Provider", "ProviderClient", "RetryPolicy", "TaskRef", "TaskState", "TaskStatus",
    "ToAPIsClient", "UploadedFile", "derive_idempotency_key", "get_provider", "validate", "wait",
}  # fmt: skip


def test_public_api_is_what_it_should_be() -> None:
    assert set(providers.__all__) == PUBLIC
    for name in providers.__all__:
        assert getattr(providers, name) is not None


@pytest.mark.parametrize(
    "module",
    ["apimart", "base", "capabilities", "client", "crun", "download", "errors", "google",
     "google_http", "google_inline", "google_prices", "http", "inputs", "jimmyai", "jsonskim",
     "probe", "toapis", "validation", "wait"],
)  # fmt: skip
def test_every_module_declares_all(module: str) -> None:
    mod = importlib.import_module(f"omni_assets.providers.{module}")
    assert mod.__all__, module
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_registry() -> None:
    assert dict(PROVIDERS) == {
        "jimmyai": JimmyAIClient, "apimart": APIMartClient, "toapis": ToAPIsClient,
        "crun": CRUNClient, "google": GoogleClient,
    }  # fmt: skip
    client = get_provider("APIMART", api_key=KEY, model="Omni-Flash-Ext", timeout=7)
    assert isinstance(client, APIMartClient) and isinstance(client, Provider)
    assert (client.name, client.model, client.base_url) == (
        "apimart",
        "Omni-Flash-Ext",
        "https://api.apimart.ai",
    )
    assert client.options.read_timeout == 7
    with pytest.raises(InvalidRequestError) as caught:
        get_provider("kie", api_key=KEY)
    assert caught.value.field == "provider" and "crun" in caught.value.allowed


@pytest.mark.parametrize(
    ("name", "host"),
    [("jimmyai", "https://www.jimmyai.cn"), ("apimart", "https://api.apimart.ai"),
     ("toapis", "https://toapis.com"), ("crun", "https://api.crun.ai")],
)  # fmt: skip
def test_defaults_and_from_env(name: str, host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_provider(name, api_key=KEY).base_url == host
    cls = PROVIDERS[name]
    monkeypatch.delenv(f"{name.upper()}_API_KEY", raising=False)
    with pytest.raises(InvalidRequestError, match=f"{name.upper()}_API_KEY"):
        cls.from_env()
    monkeypatch.setenv(f"{name.upper()}_API_KEY", KEY)
    monkeypatch.setenv(f"{name.upper()}_BASE_URL", "http://127.0.0.1:9/x/")
    client = cls.from_env()
    assert client.base_url == "http://127.0.0.1:9/x" and KEY not in repr(client)


def test_cancel_is_not_offered() -> None:
    for name in PROVIDERS:
        client, recorder = client_for(name)
        assert client.can_cancel is False
        assert client.cancel(TaskRef(name, "t", client.model, 0.0)) is False
        assert recorder.calls == []


def test_task_ref_round_trips_as_json() -> None:
    ref = TaskRef("apimart", "t1", "gemini-omni-flash-preview", 1.5, "omni-key", "req")
    assert TaskRef.from_json(ref.to_json()) == ref


def _image(tmp_path: Path) -> tuple[str, bytes]:
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
    path = tmp_path / "ref.png"
    path.write_bytes(data)
    return str(path), data


@pytest.mark.parametrize(
    ("name", "answer", "path", "purpose"),
    [
        ("jimmyai", {"code": 20000, "msg": "ok", "data": {"url": "https://u/1.png",
                     "filename": "ref.png", "size": 208, "mime_type": "image/png"}},
         "/api/open-api/v1/files/upload", False),
        ("apimart", {"url": "https://u/1.png", "filename": "ref.png", "content_type": "image/png",
                     "bytes": 208, "created_at": 1000}, "/v1/uploads/images", False),
        ("toapis", {"success": True, "message": "", "data": {"id": "upload_1",
                    "url": "https://u/1.png", "mime_type": "image/png", "size": 208}},
         "/v1/uploads/images", True),
    ],
)  # fmt: skip
def test_upload_image(
    tmp_path: Path, name: str, answer: dict[str, object], path: str, purpose: bool
) -> None:
    file, data = _image(tmp_path)
    client, recorder = client_for(name, js(200, answer))
    assert client.can_upload
    uploaded = client.upload_image(file)
    assert uploaded.url == "https://u/1.png"
    assert (uploaded.sha256, uploaded.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert uploaded.expires_at is not None
    sent = recorder.calls[0]
    assert sent.url.path == path and sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"].startswith("multipart/form-data")
    body = recorder.bodies[0]
    assert b'name="file"; filename="ref.png"' in body and data in body
    assert (b'name="purpose"' in body and b"generation" in body) == purpose
    if name == "apimart":
        assert uploaded.expires_at == 1000 + 72 * 3600


def test_upload_checks_the_file_first(tmp_path: Path) -> None:
    client, recorder = client_for("toapis")
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:
        fh.truncate(11 * 1024 * 1024)
    with pytest.raises(InvalidRequestError, match="10 MB"):
        client.upload_image(str(big))
    with pytest.raises(InvalidRequestError, match="existing"):
        client.upload_image(str(tmp_path / "missing.png"))
    assert recorder.calls == []


def test_crun_has_no_upload(tmp_path: Path) -> None:
    file, _ = _image(tmp_path)
    client, recorder = client_for("crun")
    assert client.can_upload is False
    with pytest.raises(InvalidRequestError, match="no upload API"):
        client.upload_image(file)
    assert recorder.calls == []
