"""HTTP plumbing shared by the four clients: options, retry policy, error classification.

Nothing here knows a provider's dialect. A dialect turns a response into an :class:`ErrorInfo`
(HTTP status or body code, message, provider code); :func:`classify_error` maps that onto the
error tree the same way for everyone; :func:`retry_hook` is the ``on=`` hook given to stamina,
which retries only what the error tree marks retryable and waits what the server asked for.

Which failures mean a paid POST was *not* created (and may be sent again):

* the connection was never made — ``httpx.ConnectError``, ``ConnectTimeout``, ``PoolTimeout``;
* HTTP 429 (rate limited), 503 (service unavailable) and CRUN 455 (maintenance): the server
  refused the request before doing any work (providers.md §3.4, §4.4; the CRUN [3P] client
  treats 429/455 as refusals).

Everything else after the bytes left (read timeouts, dropped connections, 500/502/504) may have
created a task: see ``SubmitOutcomeUnknownError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import re
import time
import unicodedata
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import stamina

from .errors import (
    AuthenticationError,
    ContentRejectedError,
    InsufficientBalanceError,
    InvalidApiKeyError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RequestRejectedError,
    SubmitOutcomeUnknownError,
    TaskNotFoundError,
)
from .redaction import MIN_SECRET_LENGTH, remember, scrub_exception
from .redaction import redact as redact_text

__all__ = [
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "NOT_CREATED_STATUSES",
    "AsyncTransports",
    "ClientOptions",
    "ErrorInfo",
    "Op",
    "RetryPolicy",
    "Secret",
    "classify_error",
    "is_moderation",
    "key_problem",
    "maybe_created",
    "outcome_unknown",
    "parse_retry_after",
    "redact",
    "retry_hook",
    "transport_error",
]

Op = Literal["submit", "status", "upload", "download"]

# The largest video a model can make is 15 s of 4k (capabilities.py: google's
# gemini-omni-1.2-flash goes to 15 s; no model is above 4k). Delivery encodes of 4k run at
# 35-68 Mbit/s (YouTube's upload recommendations for 4k at 30-60 fps); even at 100 Mbit/s, 15 s
# is 187.5 MB. Twice that, as a margin, rounded up: 384 MiB. A body past it is refused (a 1 GiB
# endless stream was once accepted).
DEFAULT_MAX_DOWNLOAD_BYTES = 384 * 1024 * 1024

#: Statuses that say the request was refused before any work: safe to send again.
NOT_CREATED_STATUSES = frozenset({429, 455, 503})

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

# Moderation wording seen in provider failures: ToAPIs "violates the content policy" (§3.2),
# Omni "Request blocked due to safety violations" (§7), APIMart "moderation" (§2.2).
_MODERATION = re.compile(
    r"content[ _-]?polic|safety|moderat|harmful|nsfw|sensitive content|blocked|敏感|违规|审核",
    re.IGNORECASE,
)
_BALANCE = re.compile(
    r"insufficient[ _-]?(balance|credits?|quota|funds?)|recharge|top[ -]?up|余额不足|欠费",
    re.IGNORECASE,
)


class Secret:
    """An API key that never shows itself in a repr, str, log line or traceback.

    Surrounding whitespace is dropped (a key read from a file ends in a newline); anything else
    that is not visible ASCII is refused with :class:`InvalidApiKeyError` naming ``variable``
    (a mis-pasted key: httpx would put the whole key in its ``Illegal header value`` error).
    The redactor learns every key made here.
    """

    __slots__ = ("_value",)

    def __init__(
        self, value: str, *, variable: str = "the API key", provider: str | None = None
    ) -> None:
        if not value or not value.strip():
            raise ValueError("an API key is required (got an empty one)")
        self._value = value.strip()
        problem = key_problem(self._value)
        if problem is not None:
            raise InvalidApiKeyError(variable, problem, provider=provider)
        remember(self._value)

    def reveal(self) -> str:
        """The key itself, for an ``Authorization`` header and nothing else."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("API keys are not picklable")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


_CHARACTER_NAMES = {
    "\n": "a line break",
    "\r": "a carriage return",
    "\t": "a tab",
    " ": "a space",
    "\0": "a NUL byte",
}


def key_problem(key: str) -> str | None:
    """What makes ``key`` unsendable in a header, without quoting it; None when it is fine."""
    for index, char in enumerate(key):
        if "!" <= char <= "~":
            continue
        name = _CHARACTER_NAMES.get(char) or (
            f"a control character (U+{ord(char):04X})"
            if unicodedata.category(char).startswith("C")
            else f"a non-ASCII character (U+{ord(char):04X})"
        )
        return f"{name} at character {index + 1} of {len(key)}"
    return None


def redact(text: str, secret: Secret | None = None) -> str:
    """``text`` through the one redactor (redaction.py), which knows every configured key."""
    if secret is not None and len(secret.reveal()) < MIN_SECRET_LENGTH:
        text = text.replace(secret.reveal(), "***")  # too short for the global redactor
    return redact_text(text)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for one kind of call: attempts *and* total seconds (stamina's semantics).

    A server hint (``Retry-After``) longer than ``max_retry_after`` is not slept on: the error is
    raised with its ``retry_after`` so the caller (``wait()``, a sensor) can come back later.
    """

    attempts: int = 5
    timeout: float = 60.0
    wait_initial: float = 0.5
    wait_max: float = 10.0
    wait_jitter: float = 1.0
    max_retry_after: float = 30.0

    def context(self, allow: Callable[[ProviderError], bool] | None = None) -> Any:
        """A ``stamina.retry_context`` for this policy (iterate it; each item is an attempt)."""
        return stamina.retry_context(
            on=retry_hook(self, allow),
            attempts=self.attempts,
            timeout=self.timeout,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
            wait_jitter=self.wait_jitter,
        )


@dataclass(frozen=True)
class ClientOptions:
    """Timeouts, pool size and retry policies of one client (defaults suit production)."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    #: Longer than a status read: a POST that times out has an unknown outcome.
    submit_read_timeout: float = 120.0
    upload_read_timeout: float = 120.0
    download_read_timeout: float = 60.0
    max_connections: int = 32
    max_keepalive_connections: int = 16
    keepalive_expiry: float = 30.0
    status_retry: RetryPolicy = field(default_factory=RetryPolicy)
    submit_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=4, timeout=300))
    upload_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=3))
    download_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=4))
    #: How many drops in a row, each delivering less than ``chunk_size``, a download survives
    #: (resuming with ``Range``); drops after real progress do not count (100 resumes at most).
    resume_attempts: int = 5
    chunk_size: int = 1024 * 1024
    #: The largest video body accepted (``OMNI_MAX_DOWNLOAD_BYTES``; see settings.py for why).
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    #: Redirects a download follows at most (each hop is checked: urlguard.py).
    max_redirects: int = 5
    #: Fetch videos from loopback/private/link-local addresses too (``OMNI_ALLOW_PRIVATE_URLS``).
    allow_private_urls: bool = False
    #: The largest JSON answer read, decompressed (answers.py: a provider answers a few KB).
    max_answer_bytes: int = 4 * 1024 * 1024  # answers.DEFAULT_MAX_ANSWER_BYTES
    user_agent: str = "omni-assets/0.1 (+httpx)"

    def timeout(self, read: float | None = None) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=read or self.read_timeout,
            write=read or self.read_timeout,
            pool=self.connect_timeout,
        )

    def limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_keepalive_connections,
            keepalive_expiry=self.keepalive_expiry,
        )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_hook(
    policy: RetryPolicy, allow: Callable[[ProviderError], bool] | None = None
) -> Callable[[Exception], bool | float]:
    """stamina ``on=`` hook: retry retryable errors, waiting the server's hint when it gave one.

    ``allow`` narrows further (a paid POST is retried only when :func:`maybe_created` is False).
    """

    def hook(exc: Exception) -> bool | float:
        if not isinstance(exc, ProviderError) or not exc.retryable:
            return False
        if allow is not None and not allow(exc):
            return False
        hint: float | None = getattr(exc, "retry_after", None)
        if hint is None:
            return True
        if hint > policy.max_retry_after:
            return False
        return float(hint)

    return hook


@dataclass(frozen=True)
class ErrorInfo:
    """An error answer, reduced to what classification needs.

    ``status`` is HTTP-like: the HTTP status, or the body code a dialect mapped onto one (CRUN
    body ``code``, JimmyAI 20001 → 401); None when nothing is known.
    """

    status: int | None
    message: str
    code: str | None = None
    retry_after: float | None = None
    request_id: str | None = None
    http_status: int | None = None


def is_moderation(text: str) -> bool:
    """Whether a provider's message or code says the content was refused (moderation)."""
    return bool(_MODERATION.search(text))


def classify_error(
    info: ErrorInfo,
    *,
    provider: str,
    op: Op,
    task_id: str | None = None,
    secret: Secret | None = None,
) -> ProviderError:
    """The exception for an error answer (the same rules for every provider)."""
    message = redact(info.message or "no message", secret)
    kw: dict[str, Any] = {
        "provider": provider,
        "task_id": task_id,
        "request_id": info.request_id,
        "status_code": info.status if info.status is not None else info.http_status,
        "code": info.code,
    }
    status = info.status
    text = f"{info.code or ''} {message}"
    if status == 455:  # CRUN "Service Unavailable - maintenance" (seed 003): come back later.
        return ProviderUnavailableError(message, retry_after=info.retry_after, **kw)
    if status is not None and 400 <= status < 500 and status not in (401, 404, 429):
        if _MODERATION.search(text):
            return ContentRejectedError(message, **kw)
        if status == 402 or _BALANCE.search(text):
            return InsufficientBalanceError(message, **kw)
    if status in (401, 403):
        return AuthenticationError(message, **kw)
    if status == 404:
        if op == "status":
            return TaskNotFoundError(message, **kw)
        return RequestRejectedError(f"{message} (check the base URL)", **kw)
    if status == 429:
        return RateLimitedError(message, retry_after=info.retry_after, **kw)
    if status is not None and 400 <= status < 500:
        return RequestRejectedError(message, **kw)
    if status == 505:  # CRUN "Feature Disabled" (seed 003): retrying will not help.
        return RequestRejectedError(message, **kw)
    if status is not None and status >= 500:
        return ProviderUnavailableError(message, retry_after=info.retry_after, **kw)
    if _MODERATION.search(text):
        return ContentRejectedError(message, **kw)
    return ProviderError(message, **kw)


def transport_error(
    exc: httpx.TransportError, *, provider: str, op: Op, task_id: str | None = None
) -> ProviderError:
    """The exception for a request that got no answer (``maybe_created`` tells the two apart).

    ``exc`` (and what caused it) is redacted in place first: it is chained under ours, and
    httpx quotes what it could not send (a header value, a URL).
    """
    scrub_exception(exc)
    kind = type(exc).__name__
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return ProviderError(f"cannot send the request: {kind}: {exc}", provider=provider)
    error = ProviderUnavailableError(
        f"{kind} during {op}: {exc}", provider=provider, task_id=task_id
    )
    error.__cause__ = exc
    return error


def outcome_unknown(
    exc: ProviderError, *, idempotency_key: str | None = None
) -> SubmitOutcomeUnknownError:
    """The error for a paid POST whose fate :func:`maybe_created` cannot rule out."""
    if idempotency_key:
        advice = (
            f"replaying the identical request with Idempotency-Key {idempotency_key!r} is safe "
            "and returns the task if it was created"
        )
    else:
        advice = "check the provider's dashboard before submitting again; a resubmit may pay twice"
    return SubmitOutcomeUnknownError(
        f"the task may or may not have been created ({exc.message}); {advice}",
        provider=exc.provider,
        request_id=exc.request_id,
        status_code=exc.status_code,
        code=exc.code,
        idempotency_key=idempotency_key,
    )


def maybe_created(exc: ProviderError) -> bool:
    """False when the failure proves a POST created nothing (see the module docstring)."""
    if isinstance(exc.__cause__, _NEVER_SENT):
        return False
    if isinstance(exc, RateLimitedError):
        return False
    return exc.status_code not in NOT_CREATED_STATUSES


class AsyncTransports:
    """One pooled async transport (``httpx_aiohttp.AiohttpTransport``) per running event loop.

    aiohttp sessions belong to the loop that made them, and callers such as sensors may run a
    fresh ``asyncio.run`` every tick. Each transport is closed when its loop shuts down its async
    generators (``asyncio.run`` does), through a small guard generator registered on that loop.
    """

    def __init__(self, factory: Callable[[], httpx.AsyncBaseTransport]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncBaseTransport, AsyncIterator[None]]
        ] = weakref.WeakKeyDictionary()

    async def get(self) -> httpx.AsyncBaseTransport:
        loop = asyncio.get_running_loop()
        entry = self._by_loop.get(loop)
        if entry is not None:
            return entry[0]
        transport = self._factory()
        guard = _close_on_shutdown(transport)
        await guard.__anext__()
        self._by_loop[loop] = (transport, guard)
        return transport

    async def aclose(self) -> None:
        """Close the current loop's transport now."""
        entry = self._by_loop.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].aclose()
            with contextlib.suppress(Exception):
                await entry[1].aclose()  # type: ignore[attr-defined]


async def _close_on_shutdown(transport: httpx.AsyncBaseTransport) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await transport.aclose()
