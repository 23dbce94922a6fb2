"""Callbacks: omni_assets polls; it never gives CRUN a ``callback_url`` (docs/reliability.md)."""

from __future__ import annotations

import pytest

from omni_assets.providers import get_provider
from omni_assets.request import VideoRequest

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize(
    "request_",
    [
        VideoRequest(prompt="text", duration=4),
        VideoRequest(prompt="image", duration=4, images=("https://example.com/a.png",)),
        VideoRequest(prompt="video", video="https://example.com/v.mp4"),
    ],
)
def test_crun_bodies_carry_no_callback_url(request_: VideoRequest) -> None:
    client = get_provider("crun", api_key="unused", base_url="http://127.0.0.1:9")
    body = client.build_body(request_, video_seconds=6.0 if request_.video else None)
    assert "callback_url" not in str(body)
