"""The exact create body and headers each provider+model gets (only documented fields)."""

from __future__ import annotations

from typing import Any

import pytest

from omni_assets.providers import TaskRef, derive_idempotency_key
from omni_assets.providers.errors import InvalidRequestError
from omni_assets.request import GenerationMode, VideoRequest

from .test_providers_support import KEY, client_for, js

IMG = ("https://example.com/a.png", "https://example.com/b.png", "https://example.com/c.png")
VID = "https://example.com/clip.mp4"
P = "a red apple on a wooden table"


def body(
    provider: str,
    model: str | None = None,
    extend_from: TaskRef | None = None,
    video_url: str | None = None,
    video_seconds: float | None = None,
    **fields: Any,
) -> dict[str, Any]:
    client, _ = client_for(provider, model=model)
    return client.build_body(
        VideoRequest(prompt=P, **fields),
        extend_from=extend_from,
        video_url=video_url,
        video_seconds=video_seconds,
    )


CASES: list[tuple[str, str | None, dict[str, Any], dict[str, Any]]] = [
    # JimmyAI Gemini-Omini (seed 000)
    (
        "jimmyai",
        None,
        {},
        {
            "model": "Gemini-Omini",
            "prompt": P,
            "duration": 6,
            "resolution": "720p",
            "aspect_ratio": "16:9",
        },
    ),
    (
        "jimmyai",
        "gemini-omni",
        {"duration": 10, "resolution": "4K", "aspect_ratio": "9:16"},
        {
            "model": "Gemini-Omini",
            "prompt": P,
            "duration": 10,
            "resolution": "4k",
            "aspect_ratio": "9:16",
        },
    ),
    (
        "jimmyai",
        None,
        {"aspect_ratio": "portrait", "images": IMG[:1], "mode": GenerationMode.FRAME},
        {
            "model": "Gemini-Omini",
            "prompt": P,
            "duration": 6,
            "resolution": "720p",
            "orientation": "portrait",
            "generation_type": "frame",
            "image_urls": list(IMG[:1]),
        },
    ),
    (
        "jimmyai",
        None,
        {"images": IMG},
        {
            "model": "Gemini-Omini",
            "prompt": P,
            "duration": 6,
            "resolution": "720p",
            "aspect_ratio": "16:9",
            "generation_type": "reference",
            "image_urls": list(IMG),
        },
    ),
    (
        "jimmyai",
        None,
        {"video": VID},  # duration and video_urls are mutually exclusive
        {
            "model": "Gemini-Omini",
            "prompt": P,
            "resolution": "720p",
            "aspect_ratio": "16:9",
            "video_urls": [VID],
        },
    ),
    # JimmyAI omni-10s: duration/resolution are ignored by the provider, so never sent
    (
        "jimmyai",
        "omni-10s",
        {"images": IMG, "video": VID},
        {
            "model": "omni-10s",
            "prompt": P,
            "aspect_ratio": "16:9",
            "image_urls": list(IMG),
            "video_urls": [VID],
        },
    ),
    # APIMart
    (
        "apimart",
        None,
        {"aspect_ratio": "9:16"},
        {
            "model": "gemini-omni-flash-preview",
            "prompt": P,
            "aspect_ratio": "9:16",
            "resolution": "720p",
        },
    ),
    (
        "apimart",
        None,
        {"images": IMG, "video": VID},
        {
            "model": "gemini-omni-flash-preview",
            "prompt": P,
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "image_urls": list(IMG),
            "video_urls": [VID],
        },
    ),
    (
        "apimart",
        "Omni-Flash-Ext",
        {"duration": 8, "resolution": "1080p", "images": IMG[:1]},
        {
            "model": "Omni-Flash-Ext",
            "prompt": P,
            "duration": 8,
            "aspect_ratio": "16:9",
            "resolution": "1080p",
            "image_urls": list(IMG[:1]),
        },
    ),
    # ToAPIs: 720P upper-case as on the page, 1080p lower-case as on the page
    (
        "toapis",
        None,
        {},
        {
            "model": "gemini_omni_flash",
            "prompt": P,
            "duration": 6,
            "aspect_ratio": "16:9",
            "resolution": "720P",
        },
    ),
    (
        "toapis",
        None,
        {"duration": 4, "resolution": "1080p", "images": IMG},
        {
            "model": "gemini_omni_flash",
            "prompt": P,
            "duration": 4,
            "aspect_ratio": "16:9",
            "resolution": "1080p",
            "image_urls": list(IMG),
        },
    ),
    (
        "toapis",
        "gemini_omni",
        {"duration": 10, "aspect_ratio": "9:16"},
        {
            "model": "gemini_omni",
            "prompt": P,
            "duration": 10,
            "aspect_ratio": "9:16",
            "resolution": "720P",
        },
    ),
    # CRUN: everything under input; img_urls / video_list; duration dropped with a video
    (
        "crun",
        None,
        {},
        {
            "model": "google/gemini-omni",
            "input": {"prompt": P, "aspect_ratio": "16:9", "resolution": "720p", "duration": 4},
        },
    ),
    (
        "crun",
        None,
        {"images": IMG, "video": VID, "resolution": "4k"},
        {
            "model": "google/gemini-omni",
            "input": {
                "prompt": P,
                "aspect_ratio": "16:9",
                "resolution": "4k",
                "img_urls": list(IMG),
                "video_list": [{"url": VID}],
            },
        },
    ),
]


@pytest.mark.parametrize(("provider", "model", "fields", "expected"), CASES)
def test_body(
    provider: str, model: str | None, fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert body(provider, model, **fields) == expected


def test_crun_clip_bounds() -> None:
    clip = body("crun", video=VID, video_seconds=6.4)["input"]["video_list"]
    assert clip == [{"url": VID, "start": 0, "ends": 6}]
    clip = body("crun", video=VID, video_seconds=0.4)["input"]["video_list"]
    assert clip == [{"url": VID, "start": 0, "ends": 1}]
    assert body("jimmyai", video=VID, video_seconds=6.4)["video_urls"] == [VID]


def test_apimart_extension_by_task_id() -> None:
    parent = TaskRef("apimart", "task_parent", "gemini-omni-flash-preview", 0.0)
    assert body("apimart", extend_from=parent, extends="parent-key") == {
        "model": "gemini-omni-flash-preview",
        "prompt": P,
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "extend_from_task_id": "task_parent",
    }


@pytest.mark.parametrize(
    ("provider", "key"), [("jimmyai", "video_urls"), ("crun", "input"), ("apimart", "video_urls")]
)
def test_extension_by_reference_video(provider: str, key: str) -> None:
    model = "Omni-Flash-Ext" if provider == "apimart" else None
    out = body(provider, model, video_url=VID, extends="parent-key")
    if provider == "crun":
        assert out["input"]["video_list"] == [{"url": VID}] and "duration" not in out["input"]
    else:
        assert out[key] == [VID]
    assert "extend_from_task_id" not in out


def test_extension_needs_the_parent() -> None:
    with pytest.raises(InvalidRequestError, match="video_url="):
        body("jimmyai", extends="parent-key")
    other = TaskRef("crun", "t", "google/gemini-omni", 0.0)
    with pytest.raises(InvalidRequestError, match="TaskRef"):
        body("apimart", extend_from=other, extends="parent-key")


def test_local_sources_must_be_resolved_before_submit(tmp_path: Any) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"png")
    client, recorder = client_for("apimart")
    request = VideoRequest(prompt=P, images=[str(image)])
    with pytest.raises(InvalidRequestError, match="upload local files first"):
        client.submit(request)
    assert recorder.calls == []
    assert client.build_body(request, image_urls=IMG[:1])["image_urls"] == [IMG[0]]
    with pytest.raises(InvalidRequestError, match="one URL per image"):
        client.build_body(request, image_urls=IMG[:2])


@pytest.mark.parametrize(
    ("provider", "method", "path", "auth"),
    [
        ("jimmyai", "POST", "/api/open-api/v1/gemini/omni/videos", "authorization"),
        ("apimart", "POST", "/v1/videos/generations", "authorization"),
        ("toapis", "POST", "/v1/videos/generations", "authorization"),
        ("crun", "POST", "/api/v1/client/job/CreateTask", "x-api-key"),
    ],
)
def test_submit_request_shape(provider: str, method: str, path: str, auth: str) -> None:
    answer = {
        "jimmyai": {"code": "20000", "msg": "ok", "data": {"task_id": "T1", "status": "queued"}},
        "apimart": {"code": 200, "data": [{"status": "submitted", "task_id": "T1"}]},
        "toapis": {"id": "T1", "object": "generation.task", "status": "queued"},
        "crun": {"code": 200, "message": "success", "data": {"task_id": "T1"}},
    }[provider]
    client, recorder = client_for(provider, js(200, answer), base_url="http://emu:9/x/")
    ref = client.submit(VideoRequest(prompt=P))
    assert ref.task_id == "T1" and ref.provider == provider
    sent = recorder.calls[0]
    assert (sent.method, sent.url.path, sent.url.host) == (method, "/x" + path, "emu")
    expected_auth = KEY if auth == "x-api-key" else f"Bearer {KEY}"
    assert sent.headers[auth] == expected_auth
    assert sent.headers["content-type"] == "application/json"
    assert recorder.json(0) == client.build_body(VideoRequest(prompt=P))
    other = {"jimmyai", "apimart", "toapis", "crun"} - {provider}
    assert ("idempotency-key" in sent.headers) == (provider == "apimart")
    assert ("x-apimart-response-version" in sent.headers) == (provider == "apimart")
    assert other  # the non-APIMart providers document neither header


def test_apimart_idempotency_key_is_derived_or_given() -> None:
    answer = js(
        200,
        {
            "data": {"object": "generation.task", "id": "T9", "status": "submitted"},
            "request_id": "req_1",
        },
    )
    client, recorder = client_for("apimart", answer)
    request = VideoRequest(prompt=P)
    ref = client.submit(request)
    derived = derive_idempotency_key(request, "gemini-omni-flash-preview")
    assert recorder.calls[0].headers["idempotency-key"] == derived == ref.idempotency_key
    assert recorder.calls[0].headers["x-apimart-response-version"] == "2026-07-27"
    assert (ref.task_id, ref.request_id) == ("T9", "req_1")
    assert 1 <= len(derived) <= 191 and derived.isascii()
    client.submit(request, idempotency_key="mine-2")
    assert recorder.calls[1].headers["idempotency-key"] == "mine-2"
    assert derive_idempotency_key(VideoRequest(prompt=P + "!"), "x") != derived
