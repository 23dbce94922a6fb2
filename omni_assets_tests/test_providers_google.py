"""Google's Gemini API (Interactions API): the client against the emulator over real HTTP.

The emulator's ``google`` dialect encodes the Interactions contract on its own (from Google's
documents and the official SDK's types), so a body it accepts is one built the way Google says.
Edge cases the emulator does not produce on demand go through ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from omni_assets.emulator import EmulatorServer
from omni_assets.providers import TaskRef, TaskState, get_provider, wait
from omni_assets.providers.errors import (
    AuthenticationError,
    ContentRejectedError,
    DownloadError,
    InsufficientBalanceError,
    RateLimitedError,
    RequestRejectedError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    TaskNotFoundError,
)
from omni_assets.providers.google import GoogleClient
from omni_assets.providers.google_inline import inline_path
from omni_assets.providers.jsonskim import JsonSkimmer
from omni_assets.request import GenerationMode, VideoRequest

from .test_providers_emulator import playable
from .test_providers_support import FAST, KEY, client_for, js

PROMPT = "a paper boat drifting down a rainy street, cinematic"


def google(emulator: EmulatorServer, **kw: Any) -> GoogleClient:
    kw.setdefault("options", FAST)
    c = get_provider("google", api_key=KEY, base_url=emulator.base_url("google"), **kw)
    assert isinstance(c, GoogleClient)
    return c


def finish(c: GoogleClient, request: VideoRequest, **kw: Any) -> Any:
    ref = c.submit(request, **kw)
    return ref, wait(c, ref, deadline=30, interval=0.05, jitter=0.1)


# -- the happy path, both output forms ------------------------------------------------------------


def test_inline_video_is_decoded_into_storage(
    fresh_emulator: EmulatorServer, tmp_path: Path
) -> None:
    c = google(fresh_emulator)
    ref, status = finish(c, VideoRequest(prompt=PROMPT, duration=4, aspect_ratio="9:16"))
    assert ref.provider == "google" and ref.task_id.startswith("v1_")
    assert status.state is TaskState.SUCCEEDED
    assert inline_path(status.video_url) is not None  # the video is inside the interaction
    assert "steps" not in status.raw  # the base64 never reached the parsed status
    # 4 s of video tokens reported by usage.output_tokens_by_modality, at $9 per 1M tokens.
    assert status.cost == pytest.approx(4 * 11_112 * 9 / 1e6)
    result = c.download(status.video_url, str(tmp_path / "v.mp4"))
    data = (tmp_path / "v.mp4").read_bytes()
    assert result.size == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    assert playable(tmp_path / "v.mp4") > 0


def test_uri_delivery_downloads_like_any_video(
    fresh_emulator: EmulatorServer, tmp_path: Path
) -> None:
    c = google(fresh_emulator, delivery="uri")
    _, status = finish(c, VideoRequest(prompt=PROMPT))
    assert status.video_url.startswith(fresh_emulator.url + "/files/")
    assert status.expires_at is not None and status.expires_at > time.time() + 86_400
    result = c.download(status.video_url, str(tmp_path / "v.mp4"))
    assert result.size > 0 and playable(tmp_path / "v.mp4") > 0


def test_body_follows_the_interactions_contract() -> None:
    c, recorder = client_for("google", js(200, {"id": "v1_x", "status": "in_progress"}))
    request = VideoRequest(
        prompt=PROMPT,
        images=["https://example.com/a.png"],
        mode=GenerationMode.FRAME,
        duration=8,
    )
    c.submit(request)
    sent = recorder.json()
    assert recorder.calls[0].url.path == "/v1beta/interactions"
    assert recorder.calls[0].headers["x-goog-api-key"] == KEY
    assert sent == {
        "model": "gemini-omni-flash-preview",
        "input": [
            {"type": "text", "text": PROMPT},
            {"type": "image", "uri": "https://example.com/a.png", "mime_type": "image/png"},
        ],
        "response_modalities": ["video"],
        "response_format": {
            "type": "video",
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "duration": "8s",
        },
        "background": True,
        "generation_config": {"video_config": {"task": "image_to_video"}},
    }


def test_the_video_is_also_read_from_output_video() -> None:
    body = {
        "id": "v1_x",
        "status": "completed",
        "output_video": {"type": "video", "uri": "https://cdn.example.com/v.mp4"},
    }
    c, _ = client_for("google", js(200, body))
    status = c.status(_ref())
    assert status.state is TaskState.SUCCEEDED
    assert status.video_url == "https://cdn.example.com/v.mp4"


def _ref() -> TaskRef:
    return TaskRef("google", "v1_x", "gemini-omni-flash-preview", time.time())


def test_concurrent_polling_skims_too(fresh_emulator: EmulatorServer) -> None:
    c = google(fresh_emulator)
    ref, _ = finish(c, VideoRequest(prompt=PROMPT))
    status = asyncio.run(c.astatus(ref))
    assert status.state is TaskState.SUCCEEDED and inline_path(status.video_url) is not None
    assert "steps" not in status.raw


# -- chains ---------------------------------------------------------------------------------------


def test_extends_uses_previous_interaction_id(
    fresh_emulator: EmulatorServer, tmp_path: Path
) -> None:
    c = google(fresh_emulator)
    parent, _ = finish(c, VideoRequest(prompt=PROMPT, duration=5))
    child_request = VideoRequest(prompt="now make it snow", extends="parent-key")
    body = c.build_body(child_request, extend_from=parent)
    assert body["previous_interaction_id"] == parent.task_id
    assert "video" not in str(body["input"])  # the parent is not sent again as a video
    _, status = finish(c, child_request, extend_from=parent)
    assert status.raw["previous_interaction_id"] == parent.task_id
    c.download(status.video_url, str(tmp_path / "child.mp4"))
    assert playable(tmp_path / "child.mp4") > 4  # the emulator keeps the parent's 5 s


def test_extends_without_the_parent_interaction_is_refused_before_http() -> None:
    c, recorder = client_for("google")
    with pytest.raises(Exception, match="extends") as caught:
        c.submit(VideoRequest(prompt="more", extends="parent-key"))
    assert "previous_interaction_id" in str(caught.value) or "TaskRef" in str(caught.value)
    assert recorder.calls == []


# -- safety and failures --------------------------------------------------------------------------


def test_a_safety_block_is_a_failure_with_its_reason(fresh_emulator: EmulatorServer) -> None:
    c = google(fresh_emulator)
    ref = c.submit(VideoRequest(prompt="[emulator:policy] something"))
    with pytest.raises(TaskFailedError) as caught:
        wait(c, ref, deadline=30, interval=0.05, jitter=0.1)
    error = caught.value
    assert error.code == "safety:dangerous_content"
    assert "safety filters" in error.message
    status = c.status(ref)
    assert status.state is TaskState.FAILED and status.video_url is None


def test_completed_without_a_video_is_a_failure_with_the_models_words() -> None:
    body = {
        "id": "v1_x",
        "status": "completed",
        "steps": [
            {
                "type": "model_output",
                "content": [
                    {"type": "text", "text": "I can't make that: it was blocked by policy."}
                ],
            }
        ],
    }
    c, _ = client_for("google", js(200, body))
    status = c.status(_ref())
    assert status.state is TaskState.FAILED
    assert status.error_code == "safety"
    assert "blocked by policy" in (status.error_message or "")


@pytest.mark.parametrize(
    ("status", "error", "raised"),
    [
        (400, {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}, RequestRejectedError),
        (
            400,
            {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [{"reason": "API_KEY_INVALID"}],
            },
            AuthenticationError,
        ),
        (
            403,
            {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"},
            AuthenticationError,
        ),
        (
            400,
            {"code": 400, "message": "Enable billing", "status": "FAILED_PRECONDITION"},
            InsufficientBalanceError,
        ),
        (
            400,
            {"code": 400, "message": "prompt blocked by safety", "status": "INVALID_ARGUMENT"},
            ContentRejectedError,
        ),
    ],
)
def test_refusals_map_into_the_error_tree_and_create_nothing(
    status: int, error: dict[str, Any], raised: type[Exception]
) -> None:
    c, recorder = client_for("google", js(status, {"error": error}))
    with pytest.raises(raised) as caught:
        c.submit(VideoRequest(prompt=PROMPT))
    assert not isinstance(caught.value, SubmitOutcomeUnknownError)
    assert len(recorder.calls) == 1  # a refusal is final: not retried
    assert KEY not in str(caught.value)


def test_resource_exhausted_waits_the_retry_delay_then_creates_once() -> None:
    quota = {
        "code": 429,
        "message": "Resource has been exhausted",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.01s"}],
    }
    c, recorder = client_for(
        "google", js(429, {"error": quota}), js(200, {"id": "v1_ok", "status": "in_progress"})
    )
    assert c.submit(VideoRequest(prompt=PROMPT)).task_id == "v1_ok"
    assert len(recorder.calls) == 2  # 429 created nothing: sent again


def test_rate_limit_delay_is_reported_when_too_long_to_wait() -> None:
    quota = {
        "code": 429,
        "message": "quota",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"retryDelay": "3600s"}],
    }
    c, _ = client_for("google", js(429, {"error": quota}))
    with pytest.raises(RateLimitedError) as caught:
        c.submit(VideoRequest(prompt=PROMPT))
    assert caught.value.retry_after == 3600


def test_unavailable_is_retried_but_internal_is_an_unknown_outcome() -> None:
    unavailable = js(503, {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}})
    c, recorder = client_for("google", unavailable, js(200, {"id": "v1_ok", "status": "queued"}))
    assert c.submit(VideoRequest(prompt=PROMPT)).task_id == "v1_ok"
    assert len(recorder.calls) == 2
    internal = js(500, {"error": {"code": 500, "message": "oops", "status": "INTERNAL"}})
    c, recorder = client_for("google", internal)
    with pytest.raises(SubmitOutcomeUnknownError):
        c.submit(VideoRequest(prompt=PROMPT))
    assert len(recorder.calls) == 1  # it may have been created: never sent twice


def test_unknown_interaction_is_not_found() -> None:
    c, _ = client_for(
        "google", js(404, {"error": {"code": 404, "message": "no", "status": "NOT_FOUND"}})
    )
    with pytest.raises(TaskNotFoundError):
        c.status(_ref())


def test_emulator_refusals(fresh_emulator: EmulatorServer) -> None:
    bad = get_provider(
        "google",
        api_key="invalid-key-123",
        base_url=fresh_emulator.base_url("google"),
        options=FAST,
    )
    with pytest.raises(AuthenticationError):
        bad.submit(VideoRequest(prompt=PROMPT))
    broke = get_provider(
        "google", api_key="nobalance-1", base_url=fresh_emulator.base_url("google"), options=FAST
    )
    with pytest.raises(InsufficientBalanceError):
        broke.submit(VideoRequest(prompt=PROMPT))


# -- the key goes to Google only ------------------------------------------------------------------


def test_the_key_is_sent_to_googles_origin_only() -> None:
    recorder_calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        recorder_calls.append(request)
        if request.url.host == "generativelanguage.googleapis.com":
            return httpx.Response(302, headers={"location": "https://cdn.example.net/v.mp4"})
        return httpx.Response(200, content=b"\x00\x00\x00\x18ftypmp42" + b"x" * 100)

    c = GoogleClient(KEY, options=FAST, transport=httpx.MockTransport(handle))
    c.download(
        "https://generativelanguage.googleapis.com/v1beta/files/abc:download?alt=media",
        "memory://google/v.mp4",
    )
    first, second = recorder_calls
    assert first.headers["x-goog-api-key"] == KEY
    assert "x-goog-api-key" not in second.headers


# -- flat memory for a large inline video ---------------------------------------------------------


def test_a_large_inline_video_streams_with_flat_memory(
    fresh_emulator: EmulatorServer, tmp_path: Path
) -> None:
    size = 32 * 1024 * 1024  # ~43 MB of base64 inside the JSON, twice (status, then download)
    fresh_emulator.configure(video_padding_bytes=size)
    c = google(fresh_emulator)
    ref = c.submit(VideoRequest(prompt="big one"))
    time.sleep(0.4)
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    try:
        status = wait(c, ref, deadline=30, interval=0.05, jitter=0.1)
        result = c.download(status.video_url, str(tmp_path / "big.mp4"))
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stop.set()
        sampler.join()
    rss = (peak[0] - baseline) / 2**20
    print(f"inline 32 MB: traced peak {traced_peak / 2**20:.1f} MiB, RSS +{rss:.1f} MiB")
    assert result.size > size
    assert traced_peak < 24 * 1024 * 1024, traced_peak
    assert peak[0] - baseline < 80 * 1024 * 1024, (peak[0] - baseline) / 2**20
    assert playable(tmp_path / "big.mp4") > 0


# -- the skimmer: any split of the body, escapes, hostile shapes ---------------------------------


def _skim(doc: bytes, pieces: int, **kw: Any) -> tuple[Any, bytes, JsonSkimmer]:
    diverted = bytearray()
    skimmer = JsonSkimmer(keep=16, on_divert=diverted.extend, **kw)
    step = max(1, len(doc) // pieces)
    out = b"".join(skimmer.feed(doc[i : i + step]) for i in range(0, len(doc), step))
    out += skimmer.close()
    return json.loads(out), bytes(diverted), skimmer


@pytest.mark.parametrize("pieces", [1, 3, 7, 50, 10_000])
def test_skimmer_keeps_small_strings_and_diverts_the_named_one(pieces: int) -> None:
    video = base64.b64encode(b"\x00\xffvideo bytes" * 40)
    escaped = video.replace(b"/", b"\\/").replace(b"=", b"\\u003d")  # what some encoders send
    doc = (
        b'{"id": "v1_\\"x\\"", "steps": [{"type": "user_input"}, {"type": "model_output", '
        b'"content": [{"type": "text", "text": "' + b"t" * 40 + b'"}, '
        b'{"type": "video", "data": "' + escaped + b'"}]}], "n": [1, 2.5, true, null]}'
    )
    parsed, diverted, skimmer = _skim(doc, pieces, divert=("steps", 1, "content", 1, "data"))
    assert skimmer.error is None and skimmer.diverted
    assert diverted == video
    assert parsed["id"] == 'v1_"x"' and parsed["n"] == [1, 2.5, True, None]
    assert parsed["steps"][1]["content"][0]["text"] == "omni-skimmed:40"
    assert parsed["steps"][1]["content"][1]["data"].startswith("omni-diverted:")


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (b"[" * 100 + b"]" * 100, "nested deeper"),
        (b'{"a": 1}}', "unbalanced"),
        (b'{"' + b"k" * 100 + b'": 1}', "key longer"),
        (b'{"a": "' + b"x" * 10, "ended early"),
        (b"[" + b"1, " * 5000 + b"1]", "grew past"),
    ],
)
def test_skimmer_refuses_hostile_bodies_without_growing(doc: bytes, why: str) -> None:
    skimmer = JsonSkimmer(keep=16, max_output=4096)
    out = skimmer.feed(doc) + skimmer.close()
    assert skimmer.error is not None and why in skimmer.error
    assert len(out) <= 4096


def test_an_inline_video_over_the_size_cap_is_refused_and_nothing_lands(
    fresh_emulator: EmulatorServer, tmp_path: Path
) -> None:
    small = dataclasses.replace(FAST, max_download_bytes=10_000)
    c = google(fresh_emulator, options=small)
    _, status = finish(c, VideoRequest(prompt=PROMPT))
    with pytest.raises(DownloadError, match="larger than the 10,000-byte limit"):
        c.download(status.video_url, str(tmp_path / "v.mp4"))
    assert list(tmp_path.iterdir()) == []


# -- the emulator's dialect on its own: what Google would refuse -----------------------------------


@pytest.mark.parametrize(
    ("change", "status", "word"),
    [
        ({"background": False}, 400, "INVALID_ARGUMENT"),
        ({"response_modalities": ["text"]}, 400, "INVALID_ARGUMENT"),
        ({"surprise": 1}, 400, "INVALID_ARGUMENT"),
        ({"model": "veo-3.1"}, 400, "INVALID_ARGUMENT"),
        ({"response_format": {"type": "video", "duration": "12s"}}, 400, "INVALID_ARGUMENT"),
        ({"response_format": {"type": "video", "resolution": "4k"}}, 400, "INVALID_ARGUMENT"),
        ({"previous_interaction_id": "v1_nope"}, 400, "INVALID_ARGUMENT"),
    ],
)
def test_emulator_refuses_what_the_contract_does_not_allow(
    fresh_emulator: EmulatorServer, change: dict[str, Any], status: int, word: str
) -> None:
    body = {
        "model": "gemini-omni-flash-preview",
        "input": [{"type": "text", "text": PROMPT}],
        "response_modalities": ["video"],
        "background": True,
        **change,
    }
    url = fresh_emulator.base_url("google") + "/v1beta/interactions"
    answer = httpx.post(url, json=body, headers={"x-goog-api-key": KEY})
    assert answer.status_code == status
    assert answer.json()["error"]["status"] == word
    assert fresh_emulator.audit()["tasks"] == []  # nothing was created


def test_emulator_wants_a_key(fresh_emulator: EmulatorServer) -> None:
    url = fresh_emulator.base_url("google") + "/v1beta/interactions"
    answer = httpx.post(url, json={"model": "gemini-omni-flash-preview"})
    assert answer.status_code == 403
    assert answer.json()["error"]["status"] == "PERMISSION_DENIED"
