"""The README's client examples, run against the emulator as written (base URLs from the env)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest

from omni_assets.providers import (
    APIMartClient,
    CRUNClient,
    JimmyAIClient,
    ToAPIsClient,
    get_provider,
    wait,
)
from omni_assets.request import VideoRequest

from .pipeline_env import DEMO_DIR


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fresh_emulator: Any, tmp_path: Path) -> Any:
    for name in ("jimmyai", "apimart", "toapis", "crun"):
        monkeypatch.setenv(f"{name.upper()}_API_KEY", f"sk-readme-{name}")
        monkeypatch.setenv(f"{name.upper()}_BASE_URL", fresh_emulator.base_url(name))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "product.png").write_bytes((DEMO_DIR / "product.png").read_bytes())
    return fresh_emulator


def _finish(client: Any, ref: Any, tmp_path: Path) -> None:
    status = wait(client, ref, deadline=60, interval=0.2)
    video = client.download(status.video_url, str(tmp_path / f"{ref.task_id}.mp4"))
    with av.open(video.uri.removeprefix("file://")) as container:
        assert container.duration


def test_quick_example(env: Any, tmp_path: Path) -> None:
    import os

    client = get_provider(
        "apimart",
        api_key=os.environ["APIMART_API_KEY"],
        model="Omni-Flash-Ext",
        base_url=os.environ["APIMART_BASE_URL"],
    )
    request = VideoRequest(prompt="A paper boat drifting down a rainy street", duration=6)
    client.validate(request)
    ref = client.submit(request)
    status = wait(client, ref, deadline=60, interval=0.2)
    video = client.download(status.video_url, str(tmp_path / "boat.mp4"))
    assert video.size > 0 and len(video.sha256) == 64


def test_per_provider_examples(env: Any, tmp_path: Path) -> None:
    jimmy = JimmyAIClient.from_env(model="Gemini-Omini")
    req = VideoRequest(
        prompt="The product turns", images=("product.png",), mode="frame", duration=4
    )
    url = jimmy.upload_image("product.png").url
    _finish(jimmy, jimmy.submit(req, image_urls=(url,)), tmp_path)

    apimart = APIMartClient.from_env(model="gemini-omni-flash-preview")
    _finish(
        apimart,
        apimart.submit(VideoRequest(prompt="a blue butterfly", aspect_ratio="9:16")),
        tmp_path,
    )

    toapis = ToAPIsClient.from_env(model="gemini_omni_flash")
    uploaded = toapis.upload_image("product.png").url
    req = VideoRequest(prompt="fuse these", images=(uploaded,) * 3)
    _finish(toapis, toapis.submit(req), tmp_path)

    crun = CRUNClient.from_env()
    _finish(
        crun,
        crun.submit(VideoRequest(prompt="a skyline", duration=8, aspect_ratio="9:16")),
        tmp_path,
    )
