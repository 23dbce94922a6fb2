"""The emulator's four dialects over real HTTP: happy paths, auth, validation, idempotency."""

from __future__ import annotations

from typing import Any

import pytest

from omni_assets.emulator import EmulatorConfig, EmulatorServer

from .test_emulator_support import (
    BODIES,
    KEY,
    auth,
    client,
    create,
    probe_mp4,
    query,
    run_task,
    task_id_of,
    video_url_of,
    wait_done,
)

# (provider, create body, expected video duration, expected aspect)
HAPPY = [
    (
        "jimmyai",
        {"model": "Gemini-Omini", "prompt": "a cat", "duration": 8, "orientation": "portrait"},
        8,
        "9:16",
    ),
    ("jimmyai", {"model": "omni-10s", "prompt": "a cat", "duration": 4}, 10, "16:9"),
    (
        "apimart",
        {"model": "Omni-Flash-Ext", "prompt": "a cat", "duration": 4, "resolution": "1080P"},
        4,
        "16:9",
    ),
    (
        "apimart",
        {"model": "gemini-omni-flash-preview", "aspect_ratio": "9:16", "prompt": "x"},
        6,
        "9:16",
    ),
    (
        "toapis",
        {"model": "gemini_omni_flash", "prompt": "a cat", "duration": 10, "resolution": "1080p"},
        10,
        "16:9",
    ),
    ("toapis", {"model": "gemini_omni", "prompt": "a cat", "aspect_ratio": "9:16"}, 6, "9:16"),
    (
        "crun",
        {"model": "google/gemini-omni", "input": {"prompt": "a cat", "duration": 8}},
        8,
        "16:9",
    ),
]

DOCUMENTED_WORDS = {
    "jimmyai": ["queued", "processing", "completed"],
    "apimart": ["pending", "processing", "completed"],
    "toapis": ["queued", "in_progress", "completed"],
    "crun": ["pending", "running", "success"],
}


@pytest.mark.parametrize(("provider", "body", "seconds", "aspect"), HAPPY)
def test_create_poll_download_yields_playable_mp4(
    fresh_emulator: EmulatorServer,
    provider: str,
    body: dict[str, Any],
    seconds: int,
    aspect: str,
) -> None:
    data, seen = run_task(fresh_emulator, provider, body)
    words = DOCUMENTED_WORDS[provider]
    assert seen[-1] == words[2]
    assert set(seen) <= set(words), seen
    assert [w for w in words if w in seen] == sorted(set(seen), key=words.index)
    url = video_url_of(provider, data)
    assert url is not None and url.startswith(fresh_emulator.url + "/files/")
    with client() as http:
        response = http.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(response.content)
    duration, width, height, kinds = probe_mp4(response.content)
    assert abs(duration - seconds) <= 0.5
    assert (width > height) == (aspect == "16:9")
    assert kinds == {"video", "audio"}


def test_status_fields_per_provider(fresh_emulator: EmulatorServer) -> None:
    jimmy, _ = run_task(fresh_emulator, "jimmyai")
    assert jimmy["progress"] == 100 and jimmy["completed_at"] >= jimmy["created_at"]
    assert jimmy["model"] == "Gemini-Omini"

    apimart, _ = run_task(fresh_emulator, "apimart", {**BODIES["apimart"], "resolution": "4k"})
    assert apimart["id"].startswith("task_01")
    assert apimart["cost"] > 0 and apimart["credits_cost"] > 0
    video = apimart["result"]["videos"][0]
    assert isinstance(video["url"], list)
    assert video["expires_at"] - apimart["completed"] == pytest.approx(86_400, abs=5)
    assert {"created", "completed", "actual_time", "estimated_time"} <= set(apimart)

    toapis, _ = run_task(fresh_emulator, "toapis")
    assert toapis["id"].startswith("video_") and toapis["object"] == "generation.task"
    assert toapis["result"]["data"][0]["format"] == "mp4"
    assert toapis["expires_at"] - toapis["completed_at"] == pytest.approx(86_400, abs=5)

    crun, _ = run_task(fresh_emulator, "crun")
    assert crun["provider"] == "Google" and crun["source"] == "api"
    assert crun["result"]["code"] == 200 and crun["credits"] > 0
    assert crun["param"]["input"] == BODIES["crun"]["input"]
    assert crun["complete_at"] >= crun["create_at"]


def test_create_response_shapes(fresh_emulator: EmulatorServer) -> None:
    jimmy = create(fresh_emulator, "jimmyai").json()
    assert jimmy["code"] == "20000" and jimmy["msg"] == "ok"
    assert jimmy["data"]["status"] == "queued" and jimmy["data"]["model"] == "Gemini-Omini"

    legacy = create(fresh_emulator, "apimart").json()
    assert legacy["code"] == 200 and legacy["data"][0]["status"] == "submitted"
    versioned = create(
        fresh_emulator, "apimart", headers={"X-APIMart-Response-Version": "2026-07-27"}
    ).json()
    assert versioned["data"]["object"] == "generation.task"
    assert versioned["data"]["status"] == "submitted" and versioned["request_id"]

    toapis = create(fresh_emulator, "toapis").json()
    assert toapis["status"] == "queued" and toapis["model"] == "gemini_omni_flash"

    crun = create(fresh_emulator, "crun").json()
    assert crun == {"code": 200, "message": "success", "data": {"task_id": crun["data"]["task_id"]}}
    assert len(crun["data"]["task_id"]) == 36


def _assert_error_shape(provider: str, response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    if provider == "jimmyai":
        expected = {401: "20001", 400: "20002", 402: "-1", 404: "20002"}[status]
        assert body["code"] == expected and body["msg"] and body["data"] is None
    elif provider in ("apimart", "toapis"):
        assert body["error"]["code"] == status and body["error"]["message"]
        assert body["error"]["type"]
    else:
        assert body == {"code": status, "message": body["message"], "data": None}


@pytest.mark.parametrize("provider", ["jimmyai", "apimart", "toapis", "crun"])
def test_auth_errors_in_provider_shape(fresh_emulator: EmulatorServer, provider: str) -> None:
    with client() as http:
        url = (
            fresh_emulator.base_url(provider)
            + {
                "jimmyai": "/api/open-api/v1/gemini/omni/videos",
                "apimart": "/v1/videos/generations",
                "toapis": "/v1/videos/generations",
                "crun": "/api/v1/client/job/CreateTask",
            }[provider]
        )
        missing = http.post(url, json=BODIES[provider])
    _assert_error_shape(provider, missing, 401)
    _assert_error_shape(provider, create(fresh_emulator, provider, key="invalid-key"), 401)
    broke = create(fresh_emulator, provider, key="nobalance-1")
    _assert_error_shape(provider, broke, 402)
    if provider == "jimmyai":
        assert "insufficient balance" in broke.json()["msg"]
    assert fresh_emulator.audit()["counts"]["tasks"] == 0


def test_configured_api_keys_and_task_ownership(fresh_emulator: EmulatorServer) -> None:
    fresh_emulator.configure(api_keys=["alpha", "beta"])
    assert create(fresh_emulator, "toapis", key=KEY).status_code == 401
    created = create(fresh_emulator, "toapis", key="alpha")
    assert created.status_code == 200
    task_id = task_id_of("toapis", created.json())
    assert query(fresh_emulator, "toapis", task_id, key="alpha").status_code == 200
    # Another account cannot see the task.
    _assert_error_shape("toapis", query(fresh_emulator, "toapis", task_id, key="beta"), 404)


def test_crun_header_is_case_insensitive(fresh_emulator: EmulatorServer) -> None:
    with client() as http:
        response = http.post(
            fresh_emulator.base_url("crun") + "/api/v1/client/job/CreateTask",
            json=BODIES["crun"],
            headers={"X-API-KEY": KEY},
        )
    assert response.status_code == 200


INVALID = [
    ("jimmyai", {"model": "Gemini-Omini", "prompt": "x", "duration": 5}),
    ("jimmyai", {"model": "Gemini-Omini", "prompt": "x", "resolution": "2k"}),
    (
        "jimmyai",
        {"model": "Gemini-Omini", "prompt": "x", "duration": 6, "video_urls": ["http://a/v.mp4"]},
    ),
    ("jimmyai", {"model": "Gemini-Omini", "prompt": "x", "generation_type": "frame"}),
    (
        "jimmyai",
        {"model": "Gemini-Omini", "prompt": "x", "image_urls": ["http://a/1", "http://a/2"]},
    ),
    ("jimmyai", {"model": "omni-10s", "prompt": "x", "image_urls": ["http://a/i"] * 8}),
    ("jimmyai", {"model": "Gemini-Omini", "prompt": "x", "seed": 3}),
    ("jimmyai", {"model": "veo3", "prompt": "x"}),
    ("apimart", {"model": "gemini-omni-flash-preview", "prompt": "x", "duration": 6}),
    ("apimart", {"model": "gemini-omni-flash-preview", "prompt": "x", "resolution": "1080p"}),
    ("apimart", {"model": "gemini-omni-flash-preview", "image_urls": ["http://a/i"] * 17}),
    ("apimart", {"model": "gemini-omni-flash-preview", "extend_from_task_id": "task_nope"}),
    ("apimart", {"model": "gemini-omni-flash-preview"}),
    (
        "apimart",
        {"model": "Omni-Flash-Ext", "prompt": "x", "video_urls": ["http://a/1", "http://a/2"]},
    ),
    ("toapis", {"model": "gemini_omni_flash", "prompt": "x", "duration": 8}),
    (
        "toapis",
        {
            "model": "gemini_omni_flash",
            "prompt": "x",
            "resolution": "1080p",
            "aspect_ratio": "9:16",
        },
    ),
    (
        "toapis",
        {"model": "gemini_omni_flash", "prompt": "x", "image_urls": ["http://a/1", "http://a/2"]},
    ),
    (
        "toapis",
        {"model": "gemini_omni_flash", "prompt": "x", "image_urls": ["data:image/png;base64,AA"]},
    ),
    ("toapis", {"model": "gemini_omni", "prompt": "x", "image_urls": ["http://a/1"]}),
    ("toapis", {"model": "gemini_omni", "prompt": "x", "duration": 4}),
    ("toapis", {"model": "gemini_omni", "prompt": "x", "resolution": "1080p"}),
    ("crun", {"model": "google/gemini-omni", "input": {"prompt": "x", "duration": 7}}),
    ("crun", {"model": "google/gemini-omni", "input": {"prompt": "x" * 20_001}}),
    (
        "crun",
        {"model": "google/gemini-omni", "input": {"prompt": "x", "img_urls": ["http://a"] * 8}},
    ),
    (
        "crun",
        {
            "model": "google/gemini-omni",
            "input": {
                "prompt": "x",
                "duration": 6,
                "video_list": [{"url": "http://a/v.mp4", "start": 0, "ends": 3}],
            },
        },
    ),
    (
        "crun",
        {
            "model": "google/gemini-omni",
            "input": {
                "prompt": "x",
                "video_list": [{"url": "http://a/v.mp4", "start": 3, "ends": 3}],
            },
        },
    ),
    (
        "crun",
        {
            "model": "google/gemini-omni",
            "input": {"prompt": "x"},
            "callback_url": "https://example.com/cb",
        },
    ),
    ("crun", {"model": "google/gemini-omni", "input": {"prompt": "x", "negative_prompt": "y"}}),
]


@pytest.mark.parametrize(("provider", "body"), INVALID)
def test_validation_errors_in_provider_shape(
    fresh_emulator: EmulatorServer, provider: str, body: dict[str, Any]
) -> None:
    response = create(fresh_emulator, provider, body)
    _assert_error_shape(provider, response, 422 if provider == "crun" else 400)


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"duration": 5}, "invalid_duration"),
        ({"resolution": "2k"}, "invalid_resolution"),
        ({"image_urls": ["http://a/1", "http://a/2"]}, "unsupported_image_count"),
    ],
)
def test_apimart_omni_flash_ext_error_types(
    fresh_emulator: EmulatorServer, body: dict[str, Any], error_type: str
) -> None:
    response = create(fresh_emulator, "apimart", {**BODIES["apimart"], **body})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == error_type


def test_valid_variants_are_accepted(fresh_emulator: EmulatorServer) -> None:
    accepted = [
        ("jimmyai", {"model": "gemini-omni", "prompt": "x", "video_urls": ["http://a/v.mp4"]}),
        ("jimmyai", {**BODIES["jimmyai"], "generation_type": "frame", "images": ["http://a/1"]}),
        ("jimmyai", {**BODIES["jimmyai"], "duration": 6, "video_urls": [], "image_urls": []}),
        (
            "apimart",
            {"model": "gemini-omni-flash-preview", "video_urls": ["data:video/mp4;base64,AA"]},
        ),
        ("apimart", {**BODIES["apimart"], "image_urls": ["data:image/png;base64,AA"] * 3}),
        ("toapis", {**BODIES["toapis"], "resolution": "720p", "image_urls": ["http://a/1"] * 3}),
        (
            "crun",
            {
                "model": "google/gemini-omni",
                "input": {
                    "prompt": "x",
                    "img_urls": ["http://a/i"] * 5,
                    "video_list": [{"url": "http://a/v.mp4", "start": 0, "ends": 3}],
                },
            },
        ),
    ]
    for provider, body in accepted:
        response = create(fresh_emulator, provider, body)
        assert response.status_code == 200, (provider, response.text)


def test_unknown_endpoint_is_a_provider_shaped_404(fresh_emulator: EmulatorServer) -> None:
    with client() as http:
        response = http.get(
            fresh_emulator.base_url("apimart") + "/v1/videos", headers=auth("apimart")
        )
    _assert_error_shape("apimart", response, 404)
    _assert_error_shape("crun", query(fresh_emulator, "crun", "no-such-task"), 404)


def test_apimart_idempotency_key_replays_without_a_new_task(fresh_emulator: EmulatorServer) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = create(fresh_emulator, "apimart", headers=headers)
    again = create(fresh_emulator, "apimart", headers=headers)
    assert first.status_code == again.status_code == 200
    assert "idempotency-replayed" not in first.headers
    assert again.headers["idempotency-replayed"] == "true"
    assert task_id_of("apimart", first.json()) == task_id_of("apimart", again.json())
    other = create(fresh_emulator, "apimart", {**BODIES["apimart"], "duration": 8}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == 409
    audit = fresh_emulator.audit()
    assert audit["counts"]["tasks"] == 1 and audit["counts"]["replays"] == 1
    assert audit["tasks"][0]["idempotency_key"] == "order-42"
    # The same key under another account is another request.
    assert create(fresh_emulator, "apimart", key="other", headers=headers).status_code == 200
    assert fresh_emulator.audit()["counts"]["tasks"] == 2


def test_apimart_extend_from_task_id_needs_a_completed_task_of_the_account(
    fresh_emulator: EmulatorServer,
) -> None:
    fresh_emulator.configure(generation_seconds=1.0)
    parent = task_id_of("apimart", create(fresh_emulator, "apimart").json())
    child = {"model": "gemini-omni-flash-preview", "prompt": "go on", "extend_from_task_id": parent}
    assert create(fresh_emulator, "apimart", child).status_code == 400  # still running
    wait_done(fresh_emulator, "apimart", parent)
    assert create(fresh_emulator, "apimart", child, key="someone-else").status_code == 400
    assert create(fresh_emulator, "apimart", child).status_code == 200


def test_status_query_issues_fresh_urls(emulator: EmulatorServer) -> None:
    emulator.reset()
    data, _ = run_task(emulator, "jimmyai")
    task_id = data["task_id"]
    emulator.configure(url_ttl_seconds={"jimmyai": 100})
    again = query(emulator, "jimmyai", task_id).json()["data"]["result"]["video_url"]
    assert again != data["result"]["video_url"]


def test_reset_restores_startup_config(emulator: EmulatorServer) -> None:
    emulator.configure(rate_429=0.5, url_ttl_seconds={"crun": 5})
    assert emulator.config().url_ttl("crun") == 5
    assert emulator.config().url_ttl("apimart") == 86_400
    emulator.reset()
    assert emulator.config() == EmulatorConfig(generation_seconds=0.3, queue_fraction=0.3, seed=1)
