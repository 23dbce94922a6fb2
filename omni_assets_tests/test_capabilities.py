"""Capability tables and validation: every invalid request is refused before any HTTP call."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from omni_assets.providers import CAPABILITIES, DEFAULT_MODELS, PROVIDER_NAMES, validate
from omni_assets.providers.capabilities import Extension, find, get, models_for, resolve_model
from omni_assets.providers.errors import InvalidRequestError
from omni_assets.request import GenerationMode, VideoRequest

from .test_providers_support import client_for

U = "https://example.com/img{}.png"
V = "https://example.com/clip.mp4"


def urls(n: int) -> list[str]:
    return [U.format(i) for i in range(n)]


# -- the tables ----------------------------------------------------------------------------------


def test_every_provider_has_a_table_and_a_default_model() -> None:
    assert set(CAPABILITIES) == set(PROVIDER_NAMES)
    for provider, model in DEFAULT_MODELS.items():
        assert get(provider).model == model
        assert model in CAPABILITIES[provider]


def test_models_and_aliases() -> None:
    assert resolve_model("jimmyai", "Omni-Flash-Ext") == "Gemini-Omini"
    assert resolve_model("jimmyai", "gemini-omni") == "Gemini-Omini"
    assert resolve_model("jimmyai", "GEMINI-OMINI") == "Gemini-Omini"
    assert resolve_model("apimart", "Omni-Flash-Ext") == "Omni-Flash-Ext"
    assert resolve_model("toapis", None) == "gemini_omni_flash"
    assert find("crun", "nope") is None
    assert find("nope", None) is None
    assert set(models_for("toapis")) == {"gemini_omni_flash", "gemini_omni"}


@pytest.mark.parametrize(
    ("provider", "model", "durations", "resolutions", "max_images", "videos", "extension"),
    [
        ("jimmyai", "Gemini-Omini", (4, 6, 8, 10), ("720p", "1080p", "4k"), 3, 1, "video_url"),
        ("jimmyai", "omni-10s", (), ("720p",), 7, 1, "video_url"),
        ("apimart", "gemini-omni-flash-preview", (), ("720p",), 16, 1, "task_id"),
        ("apimart", "Omni-Flash-Ext", (4, 6, 8, 10), ("720p", "1080p", "4k"), 3, 1, "video_url"),
        ("toapis", "gemini_omni_flash", (4, 6, 10), ("720p", "1080p"), 3, 0, None),
        ("toapis", "gemini_omni", (6, 10), ("720p",), 0, 0, None),
        ("crun", "google/gemini-omni", (4, 6, 8, 10), ("720p", "1080p", "4k"), 7, 1, "video_url"),
        (
            "google",
            "gemini-omni-flash-preview",
            tuple(range(3, 11)),
            ("720p",),
            10,
            1,
            "previous_interaction_id",
        ),
        ("google", "gemini-omni-1.1-flash", (), ("720p",), 6, 1, "previous_interaction_id"),
        (
            "google",
            "gemini-omni-1.2-flash",
            tuple(range(3, 16)),
            ("360p", "720p", "1080p", "4k"),
            6,
            1,
            "previous_interaction_id",
        ),
    ],
)
def test_table_entries(
    provider: str,
    model: str,
    durations: tuple[int, ...],
    resolutions: tuple[str, ...],
    max_images: int,
    videos: int,
    extension: str | None,
) -> None:
    caps = get(provider, model)
    assert caps.durations == durations
    assert caps.resolutions == resolutions
    assert caps.max_images == max_images
    assert caps.max_videos == videos
    assert (caps.extension.value if caps.extension else None) == extension
    assert caps.can_extend == (extension is not None)
    assert caps.aspect_ratios == ("16:9", "9:16")


def test_upload_limits_and_url_ttls() -> None:
    mb = 1024 * 1024
    assert get("jimmyai").upload is not None and get("jimmyai").upload.max_bytes == 100 * mb
    assert get("apimart").upload is not None and get("apimart").upload.max_bytes == 20 * mb
    assert get("toapis").upload is not None and get("toapis").upload.max_bytes == 10 * mb
    assert get("crun").upload is None
    assert get("jimmyai").video_url_ttl == 3 * 86400
    assert {get(p).video_url_ttl for p in ("apimart", "toapis", "crun")} == {86400}
    assert get("apimart").extension is Extension.TASK_ID


def test_wire_spellings() -> None:
    flash = get("toapis", "gemini_omni_flash")
    assert flash.resolution_for(None) == "720P"
    assert flash.resolution_for("1080p") == "1080p"
    assert get("jimmyai", "omni-10s").resolution_for("720p") is None
    assert get("crun").duration_for(None, has_video=True) is None
    assert get("crun").duration_for(None, has_video=False) == 4
    assert get("jimmyai").aspect_field("portrait") == ("orientation", "portrait")


# -- invalid requests: ≥ 40, each refused naming its field, with zero HTTP calls ---------------

BIG = "<big>"  # placeholder for a local file larger than the provider's upload limit
MISSING = "/nonexistent/dir/photo.png"

INVALID: list[tuple[str, str | None, dict[str, Any], str, str | None]] = [
    # provider, model, request fields, field named, text expected in "allowed"
    ("jimmyai", None, {"duration": 5}, "duration", "4, 6, 8, 10"),
    ("jimmyai", None, {"duration": 12}, "duration", "4, 6, 8, 10"),
    ("jimmyai", None, {"resolution": "480p"}, "resolution", "720p, 1080p, 4k"),
    ("jimmyai", None, {"aspect_ratio": "1:1"}, "aspect_ratio", "16:9, 9:16"),
    ("jimmyai", None, {"aspect_ratio": "4:3"}, "aspect_ratio", "landscape"),
    ("jimmyai", None, {"images": urls(2)}, "images", "0, 1 or 3"),
    ("jimmyai", None, {"images": urls(4)}, "images", "0, 1 or 3"),
    ("jimmyai", None, {"mode": "frame"}, "images", "exactly 1"),
    ("jimmyai", None, {"mode": "frame", "images": urls(3)}, "images", "exactly 1"),
    ("jimmyai", None, {"duration": 6, "video": V}, "duration", "reference video"),
    ("jimmyai", None, {"duration": 8, "extends": "parent"}, "duration", "omit duration"),
    ("jimmyai", None, {"extends": "parent", "video": V}, "video", "parent's video"),
    ("jimmyai", None, {"images": [MISSING]}, "images", "existing local file"),
    ("jimmyai", None, {"images": ["<txt>"]}, "images", ".png"),
    ("jimmyai", None, {"images": [BIG]}, "images", "100 MB"),
    ("jimmyai", "omni-10s", {"duration": 6}, "duration", "10"),
    ("jimmyai", "omni-10s", {"resolution": "1080p"}, "resolution", "720p"),
    ("jimmyai", "omni-10s", {"images": urls(8)}, "images", "0 to 7"),
    ("jimmyai", "omni-10s", {"images": urls(7), "video": V}, "images", "at most 7"),
    ("jimmyai", "omni-10s", {"mode": "frame", "images": urls(1)}, "mode", "reference"),
    ("apimart", None, {"duration": 6}, "duration", "omit it; the model picks 3-10 s"),
    ("apimart", None, {"resolution": "1080p"}, "resolution", "720p"),
    ("apimart", None, {"images": urls(17)}, "images", "0 to 16"),
    ("apimart", None, {"aspect_ratio": "1:1"}, "aspect_ratio", "16:9, 9:16"),
    ("apimart", None, {"mode": "frame", "images": urls(1)}, "mode", "reference"),
    ("apimart", None, {"images": [BIG]}, "images", "20 MB"),
    ("apimart", None, {"images": ["<bmp>"]}, "images", ".png"),
    ("apimart", "Omni-Flash-Ext", {"duration": 5}, "duration", "4, 6, 8, 10"),
    ("apimart", "Omni-Flash-Ext", {"images": urls(2)}, "images", "0, 1 or 3"),
    ("apimart", "Omni-Flash-Ext", {"extends": "p", "video": V}, "video", "at most 1"),
    ("apimart", "Omni-Flash-Ext", {"resolution": "8k"}, "resolution", "4k"),
    ("toapis", None, {"duration": 8}, "duration", "4, 6, 10"),
    ("toapis", None, {"images": urls(2)}, "images", "0, 1 or 3"),
    ("toapis", None, {"resolution": "1080p", "aspect_ratio": "9:16"}, "aspect_ratio", "16:9"),
    ("toapis", None, {"video": V}, "video", "no video"),
    ("toapis", None, {"extends": "parent"}, "extends", "cannot continue"),
    ("toapis", None, {"resolution": "4k"}, "resolution", "720p, 1080p"),
    ("toapis", None, {"images": [BIG]}, "images", "10 MB"),
    ("toapis", "gemini_omni", {"duration": 8}, "duration", "6, 10"),
    ("toapis", "gemini_omni", {"duration": 4}, "duration", "6, 10"),
    ("toapis", "gemini_omni", {"images": urls(1)}, "images", "0"),
    ("toapis", "gemini_omni", {"mode": "reference"}, "mode", "takes no images"),
    ("toapis", "gemini_omni", {"resolution": "1080p"}, "resolution", "720p"),
    ("toapis", "gemini_omni", {"video": V}, "video", "no video"),
    ("crun", None, {"duration": 5}, "duration", "4, 6, 8, 10"),
    ("crun", None, {"images": urls(8)}, "images", "0 to 7"),
    ("crun", None, {"images": urls(6), "video": V}, "images", "0 to 5 images with a video"),
    ("crun", None, {"duration": 4, "video": V}, "duration", "omit duration"),
    ("crun", None, {"resolution": "2k"}, "resolution", "4k"),
    ("crun", None, {"aspect_ratio": "21:9"}, "aspect_ratio", "16:9"),
    ("crun", None, {"video": "/nonexistent/clip.mp4"}, "video", "existing local file"),
    ("crun", None, {"images": ["<tiff>"]}, "images", ".png"),
    ("crun", None, {"mode": "frame", "images": urls(1)}, "mode", "reference"),
    ("google", None, {"duration": 2}, "duration", "3, 4, 5"),
    ("google", None, {"duration": 12}, "duration", "10"),
    ("google", None, {"resolution": "1080p"}, "resolution", "720p"),
    ("google", None, {"aspect_ratio": "1:1"}, "aspect_ratio", "16:9, 9:16"),
    ("google", None, {"images": urls(11)}, "images", "0 to 10"),
    ("google", None, {"mode": "frame", "images": urls(2)}, "images", "exactly 1"),
    ("google", None, {"images": ["<txt>"]}, "images", ".png"),
    ("google", "gemini-omni-1.1-flash", {"duration": 6}, "duration", "omit duration"),
    ("google", "gemini-omni-1.1-flash", {"images": urls(7)}, "images", "0 to 6"),
    ("google", "gemini-omni-1.2-flash", {"duration": 16}, "duration", "15"),
    ("google", "gemini-omni-1.2-flash", {"resolution": "8k"}, "resolution", "360p"),
    ("google", None, {"model": "veo-3.1"}, "model", "gemini-omni-flash-preview"),
    ("apimart", None, {"model": "sora-2"}, "model", "gemini-omni-flash-preview, Omni-Flash-Ext"),
    ("crun", None, {"model": "google/veo3"}, "model", "google/gemini-omni"),
    ("toapis", None, {"provider": "crun"}, "provider", "toapis"),
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    out = {}
    for ext in ("txt", "bmp", "tiff"):
        path = tmp_path / f"image.{ext}"
        path.write_bytes(b"x" * 64)
        out[f"<{ext}>"] = str(path)
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:  # sparse: 101 MB without writing them
        fh.truncate(101 * 1024 * 1024)
    out[BIG] = str(big)
    return out


def _fill(fields: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    out = dict(fields)
    if "images" in out:
        out["images"] = [files.get(i, i) for i in out["images"]]
    if "mode" in out:
        out["mode"] = GenerationMode(out["mode"])
    return out


def test_at_least_forty_invalid_cases() -> None:
    assert len(INVALID) >= 40
    covered = {(p, m or DEFAULT_MODELS[p]) for p, m, *_ in INVALID}
    assert covered == {(c.provider, c.model) for t in CAPABILITIES.values() for c in t.values()}


@pytest.mark.parametrize(
    ("provider", "model", "fields", "field", "allowed"),
    INVALID,
    ids=[f"{p}-{m or 'default'}-{f}-{i}" for i, (p, m, _, f, _a) in enumerate(INVALID)],
)
def test_invalid_request_is_refused_before_http(
    provider: str,
    model: str | None,
    fields: dict[str, Any],
    field: str,
    allowed: str | None,
    files: dict[str, str],
) -> None:
    request = VideoRequest(prompt="a red apple on a table", **_fill(fields, files))
    client, recorder = client_for(provider, model=model)  # any HTTP call fails the test
    with pytest.raises(InvalidRequestError) as caught:
        client.submit(request, image_urls=(), video_url=None)
    error = caught.value
    assert error.field == field, str(error)
    assert allowed is None or allowed in error.allowed, str(error)
    assert error.request_key == request.key
    assert field in str(error) and "allowed:" in str(error)
    assert recorder.calls == []
    with pytest.raises(InvalidRequestError):
        client.build_body(request)
    assert recorder.calls == []


def test_unknown_provider_lists_providers() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate(VideoRequest(prompt="x"), "openai")
    assert caught.value.field == "provider"
    for name in PROVIDER_NAMES:
        assert name in caught.value.allowed


def test_unknown_model_at_client_construction() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client_for("jimmyai", model="veo-3")
    assert "Gemini-Omini" in caught.value.allowed and "omni-10s" in caught.value.allowed


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_local_image(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(InvalidRequestError, match="readable"):
        validate(VideoRequest(prompt="x", images=[str(path)]), "apimart")


def test_local_files_without_upload_api_need_a_resolver(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    path.write_bytes(b"x")
    request = VideoRequest(prompt="x", images=[str(path)])
    validate(request, "crun")  # fine: a URL resolver will be supplied later
    with pytest.raises(InvalidRequestError, match="no upload API"):
        validate(request, "crun", resolve_local=False)
    validate(request, "apimart", resolve_local=False)  # APIMart uploads it itself


@pytest.mark.parametrize(
    ("provider", "model", "fields"),
    [
        ("jimmyai", None, {"images": urls(1), "mode": GenerationMode.FRAME}),
        ("jimmyai", None, {"images": urls(3), "aspect_ratio": "portrait", "duration": 10}),
        ("jimmyai", None, {"video": V}),
        ("jimmyai", "omni-10s", {"images": urls(6), "video": V, "duration": 10}),
        ("jimmyai", "gemini-omni", {"resolution": "4K"}),
        ("apimart", None, {"images": urls(16), "video": V, "extends": "parent"}),
        ("apimart", "Omni-Flash-Ext", {"duration": 10, "resolution": "4k", "images": urls(3)}),
        ("toapis", None, {"resolution": "1080p", "duration": 4, "images": urls(3)}),
        ("toapis", "gemini_omni", {"duration": 10, "aspect_ratio": "9:16"}),
        ("crun", None, {"images": urls(5), "video": V}),
        ("crun", None, {"extends": "parent", "resolution": "1080p"}),
        ("google", None, {"images": urls(10), "video": V, "extends": "parent", "duration": 3}),
        ("google", None, {"images": urls(1), "mode": GenerationMode.FRAME, "aspect_ratio": "9:16"}),
        ("google", "gemini-omni-1.1-flash", {"images": urls(6), "extends": "parent"}),
        ("google", "gemini-omni-1.2-flash", {"duration": 15, "resolution": "4k"}),
    ],
)
def test_valid_requests_pass(provider: str, model: str | None, fields: dict[str, Any]) -> None:
    caps = validate(VideoRequest(prompt="ok", **fields), provider, model)
    assert caps.provider == provider
