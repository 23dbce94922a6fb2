"""Helpers shared by the emulator tests (no tests here): one tiny client per dialect.

These speak each provider's documented shapes directly, independent of the real provider
clients in ``omni_assets.providers``, so the emulator is tested against the pages themselves.
"""

from __future__ import annotations

import io
import time
from typing import Any

import av
import httpx

from omni_assets.emulator import EmulatorServer

KEY = "test-key"

CREATE_PATHS = {
    "jimmyai": "/api/open-api/v1/gemini/omni/videos",
    "apimart": "/v1/videos/generations",
    "toapis": "/v1/videos/generations",
    "crun": "/api/v1/client/job/CreateTask",
}
UPLOAD_PATHS = {
    "jimmyai": "/api/open-api/v1/files/upload",
    "apimart": "/v1/uploads/images",
    "toapis": "/v1/uploads/images",
}
# A minimal valid create body per provider.
BODIES: dict[str, dict[str, Any]] = {
    "jimmyai": {"model": "Gemini-Omini", "prompt": "a cat"},
    "apimart": {"model": "Omni-Flash-Ext", "prompt": "a cat"},
    "toapis": {"model": "gemini_omni_flash", "prompt": "a cat"},
    "crun": {"model": "google/gemini-omni", "input": {"prompt": "a cat"}},
}
TERMINAL = {
    "jimmyai": ("completed", "success", "failed"),
    "apimart": ("completed", "failed", "cancelled"),
    "toapis": ("completed", "failed"),
    "crun": ("success", "failed"),
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def client() -> httpx.Client:
    """A plain-HTTP loopback client: no proxies from the environment, and no TLS context
    (building one loads the CA bundle, ~25 ms per client)."""
    return httpx.Client(trust_env=False, verify=False, timeout=30)


def auth(provider: str, key: str = KEY) -> dict[str, str]:
    """The provider's documented auth header."""
    return {"x-api-key": key} if provider == "crun" else {"Authorization": f"Bearer {key}"}


def create(
    emulator: EmulatorServer,
    provider: str,
    body: dict[str, Any] | None = None,
    *,
    key: str = KEY,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a create body (the minimal valid one by default)."""
    with client() as http:
        return http.post(
            emulator.base_url(provider) + CREATE_PATHS[provider],
            json=BODIES[provider] if body is None else body,
            headers={**auth(provider, key), **(headers or {})},
        )


def task_id_of(provider: str, created: Any) -> str:
    """The task id in a create response, wherever the provider puts it."""
    if provider == "toapis":
        return str(created["id"])
    data = created.get("data", created)
    if provider == "apimart" and isinstance(data, list):
        return str(data[0]["task_id"])
    return str(data.get("task_id") or data["id"])


def query(
    emulator: EmulatorServer, provider: str, task_id: str, *, key: str = KEY
) -> httpx.Response:
    """GET the task status."""
    base = emulator.base_url(provider)
    path = {
        "jimmyai": f"/api/open-api/v1/videos/{task_id}",
        "apimart": f"/v1/tasks/{task_id}",
        "toapis": f"/v1/videos/generations/{task_id}",
        "crun": "/api/v1/client/job/TaskInfo",
    }[provider]
    params = {"task_id": task_id} if provider == "crun" else None
    with client() as http:
        return http.get(base + path, params=params, headers=auth(provider, key))


def task_data(provider: str, body: Any) -> dict[str, Any]:
    """The task object of a status response (unwrapping envelopes where present)."""
    if provider == "toapis":
        return dict(body)
    if provider == "jimmyai" and "task_id" in body:
        return dict(body)  # the old zh snapshot: no envelope
    return dict(body["data"])


def video_url_of(provider: str, data: dict[str, Any]) -> str | None:
    """The video URL of a task object, tolerating every documented variant."""
    result = data.get("result") or {}
    if provider == "jimmyai":
        return result.get("video_url")
    if provider == "apimart":
        if not result:
            return None
        url = result["videos"][0]["url"]
        return url if isinstance(url, str) else url[0]
    if provider == "toapis":
        if result.get("data"):
            return str(result["data"][0]["url"])
        url = result.get("url") or data.get("video_url") or data.get("url")
        return str(url) if url else None
    urls = result.get("media_urls")
    return str(urls[0]) if urls else None


def wait_done(
    emulator: EmulatorServer, provider: str, task_id: str, *, key: str = KEY
) -> tuple[dict[str, Any], list[str]]:
    """Poll until terminal; the final task object and every status word seen."""
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = query(emulator, provider, task_id, key=key)
        assert response.status_code == 200, response.text
        data = task_data(provider, response.json())
        seen.append(data["status"])
        if data["status"] in TERMINAL[provider]:
            return data, seen
        time.sleep(0.03)
    raise AssertionError(f"task {task_id} not done; saw {seen}")


def run_task(
    emulator: EmulatorServer, provider: str, body: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Create a task and wait for it."""
    created = create(emulator, provider, body)
    assert created.status_code == 200, created.text
    return wait_done(emulator, provider, task_id_of(provider, created.json()))


def probe_mp4(data: bytes) -> tuple[float, int, int, set[str]]:
    """(duration seconds, width, height, stream kinds) of an mp4, decoding every video frame."""
    with av.open(io.BytesIO(data), mode="r") as container:
        video = container.streams.video[0]
        kinds: set[str] = {stream.type for stream in container.streams}
        assert container.duration is not None
        frames = len(list(container.decode(video=0)))
        assert frames > 0
        return container.duration / 1_000_000, video.width, video.height, kinds
