"""Every documented error shape maps to the right exception; keys never leak."""

from __future__ import annotations

import email.utils
import logging
import pickle
import time
import traceback
from typing import Any

import httpx
import pytest

from omni_assets.providers import ClientOptions, RetryPolicy, TaskRef, get_provider
from omni_assets.providers.errors import (
    AuthenticationError,
    ContentRejectedError,
    InsufficientBalanceError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RequestRejectedError,
    SubmitOutcomeUnknownError,
    TaskNotFoundError,
)
from omni_assets.providers.http import parse_retry_after
from omni_assets.request import VideoRequest

from .test_providers_support import KEY, client_for, js

ONCE = ClientOptions(
    status_retry=RetryPolicy(attempts=1, timeout=5), submit_retry=RetryPolicy(attempts=1, timeout=5)
)
MODELS = {
    "jimmyai": "Gemini-Omini",
    "apimart": "gemini-omni-flash-preview",
    "toapis": "gemini_omni_flash",
    "crun": "google/gemini-omni",
}


def ref(provider: str) -> TaskRef:
    return TaskRef(provider, "task_42", MODELS[provider], 0.0)


def status_error(provider: str, response: httpx.Response) -> ProviderError:
    client, _ = client_for(provider, response, options=ONCE)
    with pytest.raises(ProviderError) as caught:
        client.status(ref(provider))
    return caught.value


def apierr(code: int, message: str, type_: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": type_}}


STATUS_CASES: list[tuple[str, httpx.Response, type[ProviderError]]] = [
    # JimmyAI: body codes as string or int (providers.md §1.4), HTTP errors too
    ("jimmyai", js(200, {"code": "20001", "msg": "invalid token"}), AuthenticationError),
    ("jimmyai", js(200, {"code": 20001, "msg": "invalid token"}), AuthenticationError),
    ("jimmyai", js(200, {"code": "20002", "msg": "bad task id"}), RequestRejectedError),
    ("jimmyai", js(200, {"code": "-1", "msg": "server error"}), ProviderUnavailableError),
    ("jimmyai", js(200, {"code": -1, "msg": "server error"}), ProviderUnavailableError),
    ("jimmyai", js(401, {"code": "20001", "msg": "unauthorized"}), AuthenticationError),
    ("jimmyai", js(404, {"msg": "task not found"}), TaskNotFoundError),
    ("jimmyai", js(502, None), ProviderUnavailableError),
    (
        "jimmyai",
        js(200, {"code": "20002", "msg": "Insufficient balance"}),
        InsufficientBalanceError,
    ),
    # APIMart (seed 001 examples)
    (
        "apimart",
        js(401, apierr(401, "Authentication failed", "authentication_error")),
        AuthenticationError,
    ),
    (
        "apimart",
        js(402, apierr(402, "Insufficient account balance", "payment_required")),
        InsufficientBalanceError,
    ),
    ("apimart", js(429, apierr(429, "Too many requests", "rate_limit_error")), RateLimitedError),
    ("apimart", js(404, apierr(404, "task not found", "not_found_error")), TaskNotFoundError),
    ("apimart", js(500, apierr(500, "upstream error", "server_error")), ProviderUnavailableError),
    ("apimart", js(503, None), ProviderUnavailableError),
    ("apimart", js(200, {"success": False, "message": "bad request"}), RequestRejectedError),
    ("apimart", js(200, {"code": 401, "error": {"message": "bad key"}}), AuthenticationError),
    # ToAPIs (video-status page table, seed 004)
    ("toapis", js(404, apierr(404, "Task not found", "not_found_error")), TaskNotFoundError),
    (
        "toapis",
        js(401, apierr(401, "Authentication failed", "authentication_error")),
        AuthenticationError,
    ),
    (
        "toapis",
        js(402, {"error": {"code": "insufficient_quota", "message": "quota"}}),
        InsufficientBalanceError,
    ),
    ("toapis", js(429, apierr(429, "slow down", "rate_limit_exceeded")), RateLimitedError),
    ("toapis", js(500, apierr(500, "internal", "internal_error")), ProviderUnavailableError),
    ("toapis", js(400, apierr(400, "bad", "invalid_request")), RequestRejectedError),
    # CRUN: codes as HTTP status or only in the body (seed 003)
    ("crun", js(200, {"code": 401, "message": "Unauthorized", "data": None}), AuthenticationError),
    ("crun", js(200, {"code": 402, "message": "Insufficient Credits"}), InsufficientBalanceError),
    ("crun", js(200, {"code": 404, "message": "Not Found"}), TaskNotFoundError),
    ("crun", js(200, {"code": 422, "message": "Validation Error"}), RequestRejectedError),
    ("crun", js(200, {"code": 429, "message": "Rate Limited"}), RateLimitedError),
    ("crun", js(200, {"code": 455, "message": "maintenance"}), ProviderUnavailableError),
    ("crun", js(200, {"code": 500, "message": "Server Error"}), ProviderUnavailableError),
    ("crun", js(200, {"code": 505, "message": "Feature Disabled"}), RequestRejectedError),
    ("crun", js(401, {"code": 401, "message": "Unauthorized"}), AuthenticationError),
    ("crun", js(455, {"code": 455, "message": "maintenance"}), ProviderUnavailableError),
]


@pytest.mark.parametrize(("provider", "response", "expected"), STATUS_CASES)
def test_status_error_shapes(
    provider: str, response: httpx.Response, expected: type[ProviderError]
) -> None:
    error = status_error(provider, response)
    assert type(error) is expected, repr(error)
    assert error.provider == provider
    assert error.task_id == "task_42"
    assert error.message and KEY not in str(error)


@pytest.mark.parametrize(
    ("provider", "response", "expected"),
    [
        (
            "toapis",
            js(
                422,
                {
                    "error": {
                        "code": "content_policy_violation",
                        "message": "Content violates the content policy",
                    }
                },
            ),
            ContentRejectedError,
        ),
        (
            "apimart",
            js(400, apierr(400, "prompt blocked by safety system", "invalid_request_error")),
            ContentRejectedError,
        ),
        (
            "apimart",
            js(400, apierr(400, "duration must be 4/6/8/10", "invalid_duration")),
            RequestRejectedError,
        ),
        (
            "crun",
            js(200, {"code": 422, "message": "content moderation failed"}),
            ContentRejectedError,
        ),
        (
            "jimmyai",
            js(200, {"code": "20002", "msg": "prompt hits content policy"}),
            ContentRejectedError,
        ),
        (
            "apimart",
            js(402, apierr(402, "Insufficient balance", "payment_required")),
            InsufficientBalanceError,
        ),
        ("crun", js(200, {"code": 401, "message": "Unauthorized"}), AuthenticationError),
        (
            "toapis",
            js(429, apierr(429, "slow", "rate_limit_exceeded"), **{"retry-after": "99"}),
            RateLimitedError,
        ),
    ],
)
def test_submit_refusals(
    provider: str, response: httpx.Response, expected: type[Exception]
) -> None:
    client, recorder = client_for(provider, response, options=ONCE)
    with pytest.raises(expected) as caught:
        client.submit(VideoRequest(prompt="x"))
    assert not isinstance(caught.value, SubmitOutcomeUnknownError)
    assert len(recorder.calls) == 1


def test_error_carries_message_code_and_request_id() -> None:
    response = js(
        400,
        apierr(400, "Invalid request parameters", "invalid_request_error"),
        **{"x-request-id": "req-77"},
    )
    error = status_error("apimart", response)
    assert error.message == "Invalid request parameters"
    assert (error.code, error.request_id, error.status_code) == (
        "invalid_request_error",
        "req-77",
        400,
    )
    assert error.to_dict()["request_id"] == "req-77"


def test_retry_after_seconds_and_http_date() -> None:
    error = status_error("toapis", js(429, apierr(429, "slow", "x"), **{"retry-after": "120"}))
    assert isinstance(error, RateLimitedError) and error.retry_after == 120
    when = email.utils.formatdate(time.time() + 90, usegmt=True)
    error = status_error("apimart", js(429, apierr(429, "slow", "x"), **{"retry-after": when}))
    assert isinstance(error, RateLimitedError) and 85 <= (error.retry_after or 0) <= 91
    error = status_error("crun", js(503, None, **{"retry-after": "45"}))
    assert isinstance(error, ProviderUnavailableError) and error.retry_after == 45
    assert parse_retry_after("garbage") is None and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


# -- keys never leak -----------------------------------------------------------------------------


def test_key_is_redacted_from_echoed_messages() -> None:
    echo = js(401, apierr(401, f"Invalid API key {KEY}", "authentication_error"))
    error = status_error("apimart", echo)
    assert KEY not in str(error) and KEY not in repr(error) and "***" in error.message
    assert KEY not in str(error.to_dict())


def test_key_never_in_repr_logs_or_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = [
        httpx.ConnectError("refused"),
        js(200, {"code": 200, "data": {"id": "t", "status": "weird-new-status"}}),
        js(500, apierr(500, f"boom {KEY}", "server_error")),
    ]
    for provider in ("jimmyai", "apimart", "toapis", "crun"):
        client, recorder = client_for(provider, *script)
        assert KEY not in repr(client) and KEY not in str(vars(client))
        for _ in range(2):
            try:
                client.status(ref(provider))
            except ProviderError as exc:
                text = "".join(traceback.format_exception(exc))
                assert KEY not in text
        assert recorder.calls  # the key did travel, in the header only
        with pytest.raises(TypeError):
            pickle.dumps(client._secret)
    assert KEY not in caplog.text
    assert "weird-new-status" in caplog.text  # the unknown status was logged


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="API key"):
        get_provider("crun", api_key="  ")
