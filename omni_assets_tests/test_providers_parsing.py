"""Tolerant parsing of every documented response variant (providers.md §1.2, §2.2, §3.2, §4.3, §5).

The dialects are pure functions of an ``httpx.Response``, so most of this needs no transport.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from omni_assets.providers import TaskRef, TaskState, apimart, crun, jimmyai, toapis
from omni_assets.providers.capabilities import get

from .test_providers_support import client_for, js

DAY = 86400.0
MP4 = "https://cdn.example.com/v.mp4"


def parse(provider: str, body: Any, **headers: str) -> Any:
    module = {"jimmyai": jimmyai, "apimart": apimart, "toapis": toapis, "crun": crun}[provider]
    return module.parse_status(js(200, body, **headers), "T", get(provider))


def jimmy(data: dict[str, Any], code: Any = "20000") -> dict[str, Any]:
    return {"code": code, "msg": "ok", "data": data}


# -- states ---------------------------------------------------------------------------------------

STATE_CASES = [
    *[
        ("jimmyai", jimmy({"status": s}), TaskState.QUEUED)
        for s in ("queued", "pending", "submitted")
    ],
    ("jimmyai", jimmy({"status": "processing", "progress": 42}), TaskState.RUNNING),
    ("jimmyai", jimmy({"status": "cancelled"}), TaskState.CANCELLED),
    ("jimmyai", jimmy({"status": "canceled"}), TaskState.CANCELLED),
    ("jimmyai", jimmy({"status": "failed"}), TaskState.FAILED),
    ("apimart", {"code": 200, "data": {"status": "submitted"}}, TaskState.QUEUED),
    ("apimart", {"code": 200, "data": {"status": "pending"}}, TaskState.QUEUED),
    ("apimart", {"code": 200, "data": {"status": "processing"}}, TaskState.RUNNING),
    ("apimart", {"code": 200, "data": {"status": "cancelled"}}, TaskState.CANCELLED),
    ("apimart", {"code": 200, "data": [{"status": "processing"}]}, TaskState.RUNNING),
    ("toapis", {"id": "T", "status": "queued"}, TaskState.QUEUED),
    ("toapis", {"id": "T", "status": "submitted"}, TaskState.QUEUED),
    ("toapis", {"id": "T", "status": "in_progress", "progress": 65}, TaskState.RUNNING),
    ("toapis", {"code": 200, "data": {"status": "in_progress"}}, TaskState.RUNNING),
    ("crun", {"code": 200, "data": {"status": "pending", "result": None}}, TaskState.QUEUED),
    ("crun", {"code": 200, "data": {"status": "running", "result": None}}, TaskState.RUNNING),
]


@pytest.mark.parametrize(("provider", "body", "state"), STATE_CASES)
def test_states(provider: str, body: Any, state: TaskState) -> None:
    status = parse(provider, body)
    assert status.state is state and status.recognized


@pytest.mark.parametrize("provider", ["jimmyai", "apimart", "toapis", "crun"])
def test_unknown_status_keeps_polling_and_is_logged(
    provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"code": 200, "data": {"status": "Expired-ish"}, "status": "Expired-ish"}
    with caplog.at_level(logging.WARNING, logger="omni_assets.providers"):
        status = parse(provider, body)
    assert (status.state, status.recognized, status.raw_status) == (
        TaskState.RUNNING,
        False,
        "expired-ish",
    )
    assert "expired-ish" in caplog.text


# -- success: every documented URL location ------------------------------------------------------

SUCCESS_CASES = [
    # JimmyAI: envelope or not, string or int code, url/mediaUrl per the FAQ, `success`
    ("jimmyai", jimmy({"status": "completed", "result": {"video_url": MP4}})),
    ("jimmyai", jimmy({"status": "completed", "result": {"video_url": MP4}}, code=20000)),
    ("jimmyai", {"task_id": "T", "status": "completed", "result": {"video_url": MP4}}),
    ("jimmyai", jimmy({"status": "success", "result": {"url": MP4}})),
    ("jimmyai", jimmy({"status": "completed", "mediaUrl": MP4})),
    ("jimmyai", {"status": "success", "url": MP4}),
    # APIMart: url array (seed) or string (older page)
    (
        "apimart",
        {"code": 200, "data": {"status": "completed", "result": {"videos": [{"url": [MP4]}]}}},
    ),
    (
        "apimart",
        {"code": 200, "data": {"status": "completed", "result": {"videos": [{"url": MP4}]}}},
    ),
    # ToAPIs: result.data[*].url (schema), result.url, video_url, url
    (
        "toapis",
        {
            "id": "T",
            "status": "completed",
            "result": {"type": "video", "data": [{"url": MP4, "format": "mp4"}]},
        },
    ),
    ("toapis", {"id": "T", "status": "completed", "result": {"url": MP4}}),
    ("toapis", {"id": "T", "status": "completed", "video_url": MP4}),
    ("toapis", {"id": "T", "status": "completed", "url": MP4}),
    # CRUN: result.media_urls
    (
        "crun",
        {
            "code": 200,
            "message": "success",
            "data": {"status": "success", "result": {"code": 200, "media_urls": [MP4]}},
        },
    ),
]


@pytest.mark.parametrize(("provider", "body"), SUCCESS_CASES)
def test_success_variants(provider: str, body: Any) -> None:
    status = parse(provider, body)
    assert status.state is TaskState.SUCCEEDED, status
    assert status.video_url == MP4
    assert status.expires_at is not None


def test_details_jimmyai() -> None:
    body = jimmy(
        {
            "task_id": "T",
            "status": "completed",
            "progress": 100,
            "created_at": 1000,
            "completed_at": 2000,
            "result": {"video_url": MP4, "image_url": "x"},
        }
    )
    status = parse("jimmyai", body)
    assert (status.progress, status.created_at, status.completed_at) == (100, 1000, 2000)
    assert status.expires_at == 2000 + 3 * DAY  # no field: the documented 3 days


def test_details_apimart() -> None:
    body = {
        "code": 200,
        "data": {
            "id": "task_01",
            "status": "completed",
            "progress": 100,
            "created": 1779246294,
            "completed": 1779246334,
            "actual_time": 40,
            "estimated_time": 60,
            "cost": 1.0,
            "credits_cost": 10,
            "result": {
                "videos": [
                    {
                        "url": ["https://cdn.example.com/gemini_omni_xxx.mp4"],
                        "expires_at": 1779332760,
                    }
                ]
            },
        },
    }
    status = parse("apimart", body)
    assert status.task_id == "task_01"
    assert (status.cost, status.credits, status.expires_at) == (1.0, 10.0, 1779332760.0)
    assert status.completed_at == 1779246334
    fallback = parse(
        "apimart",
        {"data": {"status": "completed", "completed": 100, "result": {"videos": [{"url": [MP4]}]}}},
    )
    assert fallback.expires_at == 100 + DAY  # no expires_at: assume 24 h


def test_details_toapis_and_crun() -> None:
    status = parse(
        "toapis",
        {
            "id": "video_1",
            "status": "completed",
            "created_at": 1,
            "completed_at": 2,
            "expires_at": 86402,
            "video_url": MP4,
        },
    )
    assert (status.task_id, status.expires_at) == ("video_1", 86402)
    status = parse(
        "crun",
        {
            "code": 200,
            "data": {
                "task_id": "c1",
                "status": "success",
                "create_at": 10,
                "complete_at": 90,
                "duration_s": 80,
                "credits": 12.5,
                "result": {"media_urls": [MP4]},
            },
        },
    )
    assert (status.credits, status.created_at, status.completed_at) == (12.5, 10, 90)
    assert status.expires_at == 90 + DAY


# -- failures -------------------------------------------------------------------------------------

FAILED_CASES = [
    (
        "jimmyai",
        jimmy({"status": "failed", "error_message": "upstream said no"}),
        "upstream said no",
        None,
    ),
    ("jimmyai", jimmy({"status": "failed", "error_msg": "bad prompt"}), "bad prompt", None),
    ("jimmyai", {"status": "failed", "reason": "timeout"}, "timeout", None),
    (
        "apimart",
        {
            "code": 200,
            "data": {
                "status": "failed",
                "error": {
                    "code": 500,
                    "message": "upstream quota exhausted",
                    "type": "upstream_error",
                },
            },
        },
        "upstream quota exhausted",
        "upstream_error",
    ),
    (
        "toapis",
        {
            "id": "T",
            "status": "failed",
            "error": {
                "code": "generation_failed",
                "message": "Content violates the content policy",
            },
        },
        "Content violates the content policy",
        "generation_failed",
    ),
    ("toapis", {"id": "T", "status": "failed", "fail_reason": "nsfw"}, "nsfw", None),
    (
        "crun",
        {
            "code": 200,
            "data": {"status": "failed", "result": {"code": 501, "message": "Generation Failed"}},
        },
        "Generation Failed",
        "501",
    ),
    # CRUN may put 501 in the envelope next to the task record: the task failed, not the call
    (
        "crun",
        {
            "code": 501,
            "message": "Generation Failed",
            "data": {"status": "failed", "result": {"code": 501, "message": "blocked"}},
        },
        "blocked",
        "501",
    ),
]


@pytest.mark.parametrize(("provider", "body", "message", "code"), FAILED_CASES)
def test_failed_variants(provider: str, body: Any, message: str, code: str | None) -> None:
    client, _ = client_for(provider, js(200, body))
    status = client.status(TaskRef(provider, "T", client.model, 0.0))
    assert status.state is TaskState.FAILED
    assert status.error_message == message
    assert status.error_code == code


@pytest.mark.parametrize(
    ("provider", "body", "code"),
    [
        ("jimmyai", jimmy({"status": "completed", "result": {"video_url": ""}}), "no_video_url"),
        (
            "apimart",
            {"code": 200, "data": {"status": "completed", "result": {"videos": []}}},
            "no_video_url",
        ),
        ("toapis", {"id": "T", "status": "completed", "result": {"data": []}}, "no_video_url"),
        (
            "crun",
            {"code": 200, "data": {"status": "success", "result": {"media_urls": []}}},
            "no_video_url",
        ),
        # older JimmyAI answers: a relative OSS key instead of a URL (jimiskills troubleshooting)
        (
            "jimmyai",
            jimmy(
                {"status": "completed", "result": {"video_url": "seedance/mini-sp/video/xxx.mp4"}}
            ),
            "relative_video_url",
        ),
    ],
)
def test_completed_without_usable_url_is_failed(provider: str, body: Any, code: str) -> None:
    status = parse(provider, body)
    assert status.state is TaskState.FAILED and status.error_code == code
    assert status.video_url is None and status.error_message


# -- submit answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "body", "task_id", "request_id"),
    [
        (
            "jimmyai",
            {"code": "20000", "msg": "ok", "data": {"task_id": "J1", "status": "queued"}},
            "J1",
            None,
        ),
        ("jimmyai", {"code": 20000, "data": {"task_id": "J2"}}, "J2", None),
        ("apimart", {"code": 200, "data": [{"status": "submitted", "task_id": "A1"}]}, "A1", None),
        (
            "apimart",
            {
                "data": {"object": "generation.task", "id": "A2", "status": "submitted"},
                "request_id": "r2",
            },
            "A2",
            "r2",
        ),
        (
            "toapis",
            {"id": "video_01JZ", "object": "generation.task", "status": "queued"},
            "video_01JZ",
            None,
        ),
        ("toapis", {"code": 200, "data": [{"status": "submitted", "task_id": "T2"}]}, "T2", None),
        (
            "crun",
            {"code": 200, "message": "success", "data": {"task_id": "task_12345678"}},
            "task_12345678",
            None,
        ),
    ],
)
def test_submit_variants(provider: str, body: Any, task_id: str, request_id: str | None) -> None:
    from omni_assets.request import VideoRequest

    client, _ = client_for(provider, js(200, body))
    ref = client.submit(VideoRequest(prompt="x"))
    assert (ref.task_id, ref.request_id) == (task_id, request_id)


def test_status_hint_and_async_path_share_the_parser() -> None:
    body = {"id": "T", "status": "in_progress", "progress": 10}
    client, recorder = client_for("toapis", js(200, body, **{"retry-after": "7"}))
    ref = TaskRef("toapis", "T", "gemini_omni_flash", 0.0)
    sync = client.status(ref)
    assert sync.retry_after == 7

    async def poll() -> list[Any]:
        try:
            return await asyncio.gather(*(client.astatus(ref) for _ in range(5)))
        finally:
            await client.aclose()

    results = asyncio.run(poll())
    assert all(r == sync for r in results)
    assert len(recorder.calls) == 6
