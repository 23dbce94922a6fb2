"""The error tree of the provider layer.

::

    OmniError
    ├── InvalidRequestError          the request cannot be sent as it is (raised before any HTTP
    │                                call; names the field, the value and what is allowed)
    ├── InvalidApiKeyError           a key that cannot be sent (a line break, a space, a control
    │                                or non-ASCII character): names its variable, never its value
    ├── ProviderError                the provider answered with an error, or could not be reached
    │   ├── AuthenticationError      401 / JimmyAI 20001: bad or missing key        (do not retry)
    │   ├── InsufficientBalanceError 402: top up the account                        (do not retry)
    │   ├── RequestRejectedError     400/422: the provider refused the parameters   (do not retry)
    │   ├── ContentRejectedError     moderation / content policy                    (do not retry)
    │   ├── TaskNotFoundError        404 on a task query
    │   ├── RateLimitedError         429; ``retry_after`` seconds when the server says (retry later)
    │   └── ProviderUnavailableError 5xx, CRUN 455 maintenance, network failure     (retry later)
    │       └── SubmitOutcomeUnknownError  a paid POST may have reached the server; resubmitting
    │                                      could pay twice, so it is never done automatically
    ├── TaskFailedError              the remote task ended ``failed``/``cancelled`` (reason, code)
    ├── TaskTimeoutError             ``wait()`` passed its deadline; the task may still finish
    └── DownloadError                the video could not be fetched or failed verification
        └── UrlExpiredError          403/410/"expired": query the task again for a fresh URL

Every error carries the provider's own message and, where known, the provider, HTTP status,
request id and task id. None of them ever carries an API key: each passes its strings through
the one redactor (redaction.py) as it is made.
"""

from __future__ import annotations

from typing import Any

from .redaction import redact, redact_opt

__all__ = [
    "AuthenticationError",
    "ContentRejectedError",
    "DownloadError",
    "InsufficientBalanceError",
    "InvalidApiKeyError",
    "InvalidRequestError",
    "OmniError",
    "ProviderError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RequestRejectedError",
    "SubmitOutcomeUnknownError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "UrlExpiredError",
]


class OmniError(Exception):
    """Base of every error raised by omni_assets."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        task_id: str | None = None,
        request_id: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.task_id = redact_opt(task_id)
        self.request_id = redact_opt(request_id)
        self.status_code = status_code
        self.code = redact_opt(code) if isinstance(code, str) or code is None else code

    def __str__(self) -> str:
        context = [
            f"{name}={value}"
            for name, value in (
                ("provider", self.provider),
                ("status", self.status_code),
                ("code", self.code),
                ("task_id", self.task_id),
                ("request_id", self.request_id),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(context)})" if context else self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description, for registry records and Dagster metadata."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "provider": self.provider,
            "task_id": self.task_id,
            "request_id": self.request_id,
            "status_code": self.status_code,
            "code": self.code,
        }


class InvalidRequestError(OmniError, ValueError):
    """The request cannot be sent: raised before any HTTP call."""

    def __init__(
        self,
        field: str,
        value: Any,
        allowed: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        request_key: str | None = None,
    ) -> None:
        where = " ".join(part for part in (provider, model) if part)
        subject = f"request {request_key!r}: " if request_key else ""
        on = f" on {where}" if where else ""
        super().__init__(
            f"{subject}{field}={value!r} is not supported{on}; allowed: {allowed}",
            provider=provider,
        )
        self.field = field
        self.value = value
        self.allowed = allowed
        self.model = model
        self.request_key = request_key


class InvalidApiKeyError(OmniError, ValueError):
    """A key that cannot go into a header: found when the client is made, before any HTTP call.

    httpx would refuse it with ``Illegal header value`` and the whole key in the message. This
    error names the variable (``variable``) and what is wrong, and never the key.
    """

    def __init__(self, variable: str, problem: str, *, provider: str | None = None) -> None:
        super().__init__(
            f"{variable} holds {problem} (a mis-pasted key?): an API key is visible ASCII "
            f"characters only, no spaces, line breaks or control characters; set {variable} "
            "again with the key alone",
            provider=provider,
        )
        self.variable = variable
        self.problem = problem


class ProviderError(OmniError):
    """The provider answered with an error or could not be reached."""

    retryable = False


class AuthenticationError(ProviderError):
    """The API key is missing, wrong or revoked."""


class InsufficientBalanceError(ProviderError):
    """The account has no credit left for this generation."""


class RequestRejectedError(ProviderError):
    """The provider refused the request's parameters (HTTP 400/422 or a body code)."""


class ContentRejectedError(ProviderError):
    """The prompt or inputs were refused by moderation."""


class TaskNotFoundError(ProviderError):
    """The provider does not know this task id (typo, other account, or expired)."""


class RateLimitedError(ProviderError):
    """Too many requests; ``retry_after`` is the server's hint in seconds, when given."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ProviderUnavailableError(ProviderError):
    """Server error, maintenance (CRUN 455) or a network failure: try again later.

    ``retry_after`` is the server's hint in seconds (503 + ``Retry-After``), when given.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class SubmitOutcomeUnknownError(ProviderUnavailableError):
    """A paid submission may or may not have been created; never resubmitted automatically.

    ``idempotency_key`` is set when the provider honours one (APIMart): replaying the identical
    request with that key later is safe and returns the task if it was created.
    """

    retryable = False

    def __init__(self, message: str, *, idempotency_key: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.idempotency_key = idempotency_key


class TaskFailedError(OmniError):
    """The remote generation ended without a video (``failed`` or ``cancelled``)."""


class TaskTimeoutError(OmniError):
    """The wait deadline passed; the remote task may still complete (and is still paid for)."""


class DownloadError(OmniError):
    """The video could not be downloaded, or what arrived failed verification."""


class UrlExpiredError(DownloadError):
    """The video URL has expired (HTTP 403/410, or the server says so): query the task again."""
