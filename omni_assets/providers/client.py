"""The one client implementation; each provider contributes a :class:`Dialect` of pure functions.

Sans-IO: a dialect only builds ``httpx.Request`` objects and parses ``httpx.Response`` objects
into typed records. :class:`ProviderClient` does the sending — a pooled sync ``httpx.Client`` for
submit/status/upload/download and, for concurrent polling (``astatus``), the async transport
``httpx_aiohttp.AiohttpTransport`` (several times faster than httpx's own async pool under
concurrency, design.md) — so there is no sync/async twin of any provider logic.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import mimetypes
import os
import ssl
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from ..request import VideoRequest
from ._parse import json_object, request_id_of
from .answers import (
    ACCEPT_ENCODING,
    InvalidTaskIdError,
    aread_capped,
    check_task_id,
    clip,
    read_capped,
)
from .base import DownloadResult, StagedDownload, TaskRef, TaskStatus, UploadedFile
from .capabilities import ModelCapabilities, find, models_for
from .download import download_to
from .env import api_key_env
from .errors import (
    InvalidRequestError,
    ProviderError,
    ProviderUnavailableError,
    SubmitOutcomeUnknownError,
)
from .guidance import DOCUMENTED_CREATE_RETRIES
from .http import (
    AsyncTransports,
    ClientOptions,
    ErrorInfo,
    Op,
    RetryPolicy,
    Secret,
    classify_error,
    maybe_created,
    outcome_unknown,
    parse_retry_after,
    transport_error,
)
from .inputs import Sources, derive_idempotency_key, hash_file, resolve_sources
from .probe import probe_seconds
from .redaction import redact_opt, scrub_exception
from .urlguard import guarded_transport, origin_of
from .validation import check_local, validate

__all__ = ["Dialect", "Endpoint", "ProviderClient", "Sources", "Submitted"]

logger = logging.getLogger("omni_assets.providers")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The default TLS context, built once per process.

    Loading the CA bundle costs ~60-90 ms, and a sensor builds its clients (and a new event loop,
    hence a new async transport) every tick.
    """
    return httpx.create_ssl_context()


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to send: the base URL (may carry a path prefix) and the key."""

    base_url: str
    secret: Secret

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


@dataclass(frozen=True)
class Submitted:
    """What a create call returned."""

    task_id: str
    request_id: str | None = None
    status: str | None = None

    @classmethod
    def of(
        cls,
        provider: str,
        response: httpx.Response,
        body: Mapping[str, Any],
        task_id: str | None,
        status: str | None,
    ) -> Submitted:
        """A 2xx create answer (``body`` parsed) as the dialect read it: with no task id the
        outcome is unknown (a task may exist), so it is never taken for "nothing created"."""
        request_id = request_id_of(response, body)
        if task_id is None:
            raise SubmitOutcomeUnknownError(
                f"{provider} accepted the create call but its answer holds no task id",
                provider=provider,
                status_code=response.status_code,
                request_id=request_id,
            )
        return cls(task_id, request_id, status)


@dataclass(frozen=True)
class Dialect:
    """One provider's wire format, as pure functions (no I/O, no state)."""

    name: str
    default_base_url: str
    build_body: Callable[[VideoRequest, ModelCapabilities, Sources], dict[str, Any]]
    submit_request: Callable[[Endpoint, dict[str, Any], str | None], httpx.Request]
    parse_submit: Callable[[httpx.Response], Submitted]
    status_request: Callable[[Endpoint, str], httpx.Request]
    parse_status: Callable[[httpx.Response, str, ModelCapabilities], TaskStatus]
    error_info: Callable[[httpx.Response, Op], ErrorInfo | None]
    upload_request: Callable[[Endpoint, str, IO[bytes], str], httpx.Request] | None = None
    parse_upload: Callable[[httpx.Response], tuple[str, float | None]] | None = None
    #: The provider honours an Idempotency-Key, so a submit may be replayed (APIMart only).
    idempotent_submit: bool = False
    #: The body carries the reference video's length (CRUN ``video_list`` start/ends).
    needs_video_seconds: bool = False


class ProviderClient:
    """A Gemini Omni provider over HTTP; implements :class:`~omni_assets.providers.base.Provider`.

    ``api_key`` is required (see :meth:`from_env`); ``base_url`` defaults to the provider's real
    host; ``model`` to the provider's default model. ``transport`` / ``async_transport`` replace
    the network (tests pass an ``httpx.MockTransport``, which serves both). ``key_variable`` is
    where the key came from, for the error a malformed key gets (default ``<PROVIDER>_API_KEY``).
    """

    #: Set by each subclass; a client may replace it with a configured copy (Google's delivery).
    dialect: Dialect
    name: str

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        model: str | None = None,
        options: ClientOptions | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        key_variable: str | None = None,
    ) -> None:
        self.name = self.dialect.name
        # A key that cannot go into a header is refused here, before any HTTP call, naming the
        # variable it came from (``key_variable``, else the provider's usual one).
        variable = key_variable or api_key_env(self.name)
        self._secret = Secret(api_key, variable=variable, provider=self.name)
        self.base_url = (base_url or self.dialect.default_base_url).rstrip("/")
        caps = find(self.name, model)
        if caps is None:
            raise InvalidRequestError(
                "model", model, ", ".join(models_for(self.name)), provider=self.name
            )
        self.model = caps.model
        self.options = options or ClientOptions()
        self._endpoint = Endpoint(self.base_url, self._secret)
        headers = {"User-Agent": self.options.user_agent}
        self._http = httpx.Client(
            transport=self._wrap_transport(transport),
            verify=_tls_context(),
            headers=headers,
            timeout=self.options.timeout(),
            limits=self.options.limits(),
        )
        # Downloads go where a provider's answer says: their own pool, every connection checked
        # (urlguard.py; the provider's own host may be internal, e.g. the emulator). No proxy
        # from the environment: it would carry the request past the check.
        self._allowed_origins = (origin_of(self.base_url),)
        self._download_http = httpx.Client(
            transport=self._wrap_download_transport(
                transport
                or guarded_transport(
                    verify=_tls_context(),
                    limits=self.options.limits(),
                    allowed=self._allowed_origins,
                    allow_private=self.options.allow_private_urls,
                )
            ),
            headers=headers,
            timeout=self.options.timeout(),
            trust_env=False,
        )
        if async_transport is None and isinstance(transport, httpx.AsyncBaseTransport):
            async_transport = transport

        def make_async() -> httpx.AsyncBaseTransport:
            return self._wrap_async_transport(
                async_transport
                or AiohttpTransport(verify=_tls_context(), limits=self.options.limits())
            )

        self._async = AsyncTransports(make_async)

    @classmethod
    def from_env(cls, *, model: str | None = None, **kwargs: Any) -> ProviderClient:
        """A client keyed by ``<PROVIDER>_API_KEY``, at ``<PROVIDER>_BASE_URL`` when set.

        Google reads ``GEMINI_API_KEY``, then ``GOOGLE_API_KEY`` (``base.API_KEY_ENV``).
        """
        prefix = cls.dialect.name.upper()
        key_env = api_key_env(cls.dialect.name)
        key = os.environ.get(key_env)
        if not key:
            raise InvalidRequestError(
                key_env,
                None,
                "a non-empty API key in the environment",
                provider=cls.dialect.name,
            )
        kwargs.setdefault("base_url", os.environ.get(f"{prefix}_BASE_URL") or None)
        kwargs.setdefault("key_variable", key_env)
        return cls(key, model=model, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={self.base_url!r} model={self.model!r}>"

    # -- capabilities and validation (pure) -------------------------------------------------

    def capabilities(self, model: str | None = None) -> ModelCapabilities:
        """The capability table entry for ``model`` (default: this client's model)."""
        caps = find(self.name, model or self.model)
        if caps is None:
            raise InvalidRequestError(
                "model", model, ", ".join(models_for(self.name)), provider=self.name
            )
        return caps

    def validate(self, request: VideoRequest) -> None:
        """Raise InvalidRequestError (naming field, value, allowed) without any HTTP call."""
        validate(request, self.name, self.model)

    def build_body(
        self,
        request: VideoRequest,
        *,
        image_urls: tuple[str, ...] = (),
        video_url: str | None = None,
        extend_from: TaskRef | None = None,
        video_seconds: float | None = None,
    ) -> dict[str, Any]:
        """The exact JSON body this provider documents, for a valid request.

        ``image_urls`` replace ``request.images`` one for one (uploaded local files); for an
        extension, ``extend_from`` is the parent's task (APIMart ``extend_from_task_id``) and
        ``video_url`` the parent's video URL (everyone else); otherwise ``video_url`` replaces
        ``request.video``. Every source must be an ``http(s)`` URL by now. ``video_seconds`` is
        the reference video's length where the body needs it (CRUN; ``submit`` measures it).
        """
        caps = validate(request, self.name, self.model)
        sources = resolve_sources(request, caps, image_urls, video_url, extend_from)
        if video_seconds is not None:
            sources = dataclasses.replace(sources, video_seconds=video_seconds)
        return self.dialect.build_body(request, caps, sources)

    # -- calls --------------------------------------------------------------------------------

    def submit(
        self,
        request: VideoRequest,
        *,
        image_urls: tuple[str, ...] = (),
        video_url: str | None = None,
        extend_from: TaskRef | None = None,
        idempotency_key: str | None = None,
        video_seconds: float | None = None,
    ) -> TaskRef:
        """Create the (paid) task. Retried only where that cannot pay twice (``http.py``).

        Where the body needs the reference video's length (CRUN) and ``video_seconds`` is not
        given, the video is fetched and measured first.
        """
        caps = validate(request, self.name, self.model)
        sources = resolve_sources(request, caps, image_urls, video_url, extend_from)
        if self.dialect.needs_video_seconds and sources.video_url and video_seconds is None:
            timeout = self.options.timeout(self.options.download_read_timeout)
            video_seconds = probe_seconds(
                self._http,
                sources.video_url,
                timeout=timeout,
                max_bytes=self.options.max_download_bytes,
            )
        if video_seconds is not None:
            sources = dataclasses.replace(sources, video_seconds=video_seconds)
        body = self.dialect.build_body(request, caps, sources)
        key = None
        if self.dialect.idempotent_submit:
            key = idempotency_key or derive_idempotency_key(request, caps.model)
        idempotent = key is not None
        try:
            response = self._call(
                "submit",
                lambda: self.dialect.submit_request(self._endpoint, body, key),
                self.options.submit_retry,
                read_timeout=self.options.submit_read_timeout,
                allow=None if idempotent else self._submit_retry_rule(),
            )
        except SubmitOutcomeUnknownError:
            raise
        except ProviderUnavailableError as exc:
            if maybe_created(exc):
                raise outcome_unknown(exc, idempotency_key=key) from exc
            raise
        submitted = self._submitted(response, key)
        if response.headers.get("idempotency-replayed", "").lower() == "true":
            logger.info("%s: submit replayed task %s", self.name, submitted.task_id)
        return TaskRef(
            provider=self.name,
            task_id=submitted.task_id,
            model=caps.model,
            submitted_at=time.time(),
            idempotency_key=key,
            request_id=redact_opt(submitted.request_id),
        )

    def _submitted(self, response: httpx.Response, key: str | None) -> Submitted:
        """The create answer read, its task id shape-checked; an answer that cannot be read
        after a POST that went out is an unknown outcome, never an error of ours."""
        try:
            submitted = self.dialect.parse_submit(response)
            check_task_id(submitted.task_id, self.name)
        except SubmitOutcomeUnknownError:
            raise
        except (InvalidTaskIdError, RecursionError, ValueError, TypeError, KeyError) as exc:
            reason = ProviderUnavailableError(
                f"the create answer cannot be used: {type(exc).__name__}: {exc}",
                provider=self.name,
                status_code=response.status_code,
                request_id=response.headers.get("x-request-id"),
            )
            raise outcome_unknown(reason, idempotency_key=key) from exc
        return submitted

    def _submit_retry_rule(self) -> Callable[[ProviderError], bool]:
        """Retry a create only when it created nothing, or as the provider's document says."""
        documented = DOCUMENTED_CREATE_RETRIES.get(self.name)
        retried = 0

        def allow(exc: ProviderError) -> bool:
            nonlocal retried
            if not maybe_created(exc):
                return True
            if documented is None or exc.status_code not in documented.statuses:
                return False
            if retried >= documented.attempts - 1:
                return False
            retried += 1
            logger.info(
                "%s: create answered %s; retrying as documented", self.name, exc.status_code
            )
            return True

        return allow

    def status(self, ref: TaskRef) -> TaskStatus:
        """One status reading; transient failures are retried (a GET is safe to repeat)."""
        caps = self._caps_for(ref)
        response = self._call(
            "status",
            lambda: self.dialect.status_request(self._endpoint, ref.task_id),
            self.options.status_retry,
            task_id=ref.task_id,
        )
        return self._status_of(response, ref, caps)

    async def astatus(self, ref: TaskRef) -> TaskStatus:
        """:meth:`status` for many tasks at once from one event loop (same parsing, same retries).

        The GET goes straight to the aiohttp transport (a status call needs no cookie jar,
        redirects or auth flow), and the retry machinery is entered only once an attempt has
        failed: a poll then costs little more than a bare aiohttp GET (docs/benchmarks.md).
        """
        caps = self._caps_for(ref)
        transport = await self._async.get()
        try:
            response = await self._asend_status(transport, ref)
        except ProviderError as first:
            response = await self._aretry_status(transport, ref, first)
        return self._status_of(response, ref, caps)

    async def _asend_status(
        self, transport: httpx.AsyncBaseTransport, ref: TaskRef
    ) -> httpx.Response:
        request = self._prepare(self.dialect.status_request(self._endpoint, ref.task_id), None)
        try:
            response = await transport.handle_async_request(request)
            response.request = request
            await aread_capped(
                response, self.options.max_answer_bytes, provider=self.name, task_id=ref.task_id
            )
        except httpx.TransportError as exc:
            raise transport_error(
                exc, provider=self.name, op="status", task_id=ref.task_id
            ) from exc
        except aiohttp.ClientError as exc:
            # httpx_aiohttp lets some of aiohttp's own errors through (a status line or header
            # no parser accepts), quoting the line: a transport failure like any other.
            raise transport_error(
                httpx.RemoteProtocolError(str(exc), request=request),
                provider=self.name,
                op="status",
                task_id=ref.task_id,
            ) from scrub_exception(exc)
        self._raise_for_error(response, "status", ref.task_id)
        return response

    async def _aretry_status(
        self, transport: httpx.AsyncBaseTransport, ref: TaskRef, first: ProviderError
    ) -> httpx.Response:
        """The status retry policy after a failed first attempt (stamina decides and waits)."""
        failed: ProviderError | None = first
        async for attempt in self.options.status_retry.context():
            with attempt:
                if failed is not None:
                    # Attempt 1 is the one already made: re-raised so stamina judges it.
                    error, failed = failed, None
                    raise error
                response = await self._asend_status(transport, ref)
        return response

    def download(
        self,
        url: str,
        fs_url: str,
        *,
        verify: Callable[[StagedDownload], None] | None = None,
        **storage_options: Any,
    ) -> DownloadResult:
        """Stream ``url`` into ``fs_url`` atomically (see ``download.py``); ``verify`` checks
        the complete temporary file before it is committed."""
        return download_to(
            self._download_http,
            url,
            fs_url,
            options=self.options,
            provider=self.name,
            storage_options=storage_options,
            verify=verify,
            allowed=self._allowed_origins,
        )

    def upload_image(self, path: str) -> UploadedFile:
        """Upload a local image with the provider's upload API (multipart field ``file``)."""
        caps = self.capabilities()
        upload, make, parse = caps.upload, self.dialect.upload_request, self.dialect.parse_upload
        if upload is None or make is None or parse is None:
            raise InvalidRequestError(
                "images",
                path,
                f"http(s):// URLs only: {self.name} has no upload API (providers.md §4.6); "
                "turn local files into URLs first (e.g. a presigned storage URL)",
                provider=self.name,
                model=self.model,
            )
        check_local(path, caps, "images")
        digest, size = hash_file(path)
        mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
        name = os.path.basename(path)
        with ExitStack() as files:
            response = self._call(
                "upload",
                lambda: make(self._endpoint, name, files.enter_context(open(path, "rb")), mime),
                self.options.upload_retry,
                read_timeout=self.options.upload_read_timeout,
                # No idempotency on uploads: retried only when nothing reached the server.
                allow=lambda exc: not maybe_created(exc),
            )
        url, expires_at = parse(response)
        if expires_at is None:
            expires_at = time.time() + upload.url_ttl
        return UploadedFile(url=url, sha256=digest, size=size, expires_at=expires_at)

    @property
    def can_upload(self) -> bool:
        return self.dialect.upload_request is not None and self.capabilities().upload is not None

    @property
    def can_cancel(self) -> bool:
        """False: none of the four providers documents a cancel endpoint (providers.md §0-§4)."""
        return False

    def cancel(self, ref: TaskRef) -> bool:
        """Always False (nothing cancelled): no provider documents a cancel endpoint.

        APIMart has a ``cancelled`` status but no endpoint to reach it (providers.md §9).
        """
        return False

    def close(self) -> None:
        """Close the pooled sync connections (async transports close with their event loop)."""
        self._http.close()
        self._download_http.close()

    async def aclose(self) -> None:
        """Close the current event loop's async transport now."""
        await self._async.aclose()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _wrap_transport(self, transport: httpx.BaseTransport | None) -> httpx.BaseTransport | None:
        """The sync transport to use (None: httpx's default); a dialect's client may wrap it."""
        return transport

    def _wrap_async_transport(
        self, transport: httpx.AsyncBaseTransport
    ) -> httpx.AsyncBaseTransport:
        """The async transport to use; a dialect's client may wrap it."""
        return transport

    def _wrap_download_transport(self, transport: httpx.BaseTransport) -> httpx.BaseTransport:
        """The transport of the (guarded) download pool; a dialect's client may wrap it."""
        return transport

    def _caps_for(self, ref: TaskRef) -> ModelCapabilities:
        if ref.provider != self.name:
            raise ValueError(f"task {ref.task_id} belongs to {ref.provider}, not {self.name}")
        return find(self.name, ref.model) or self.capabilities()

    def _status_of(
        self, response: httpx.Response, ref: TaskRef, caps: ModelCapabilities
    ) -> TaskStatus:
        if not json_object(response):  # empty, not JSON, nested past the stack, not an object
            raise ProviderUnavailableError(
                f"the status answer is not a JSON object: {clip(repr(response.text[:200]), 120)}",
                provider=self.name,
                task_id=ref.task_id,
                status_code=response.status_code,
            )
        status = self.dialect.parse_status(response, ref.task_id, caps)
        hint = parse_retry_after(response.headers.get("retry-after"))
        return dataclasses.replace(status, retry_after=hint) if hint is not None else status

    def _prepare(self, request: httpx.Request, read_timeout: float | None) -> httpx.Request:
        request.headers.setdefault("User-Agent", self.options.user_agent)
        # Only the encodings answers.py decodes under its cap (httpx would add br/zstd).
        request.headers["Accept-Encoding"] = ACCEPT_ENCODING
        request.extensions = {
            **request.extensions,
            "timeout": self.options.timeout(read_timeout).as_dict(),
        }
        return request

    def _call(
        self,
        op: Op,
        make_request: Callable[[], httpx.Request],
        policy: RetryPolicy,
        *,
        task_id: str | None = None,
        read_timeout: float | None = None,
        allow: Callable[[ProviderError], bool] | None = None,
    ) -> httpx.Response:
        for attempt in policy.context(allow):
            with attempt:
                request = self._prepare(make_request(), read_timeout)
                try:
                    # Streamed, then read with a cap on the decoded bytes (answers.py).
                    response = read_capped(
                        self._http.send(request, stream=True),
                        self.options.max_answer_bytes,
                        provider=self.name,
                        task_id=task_id,
                    )
                except httpx.TransportError as exc:
                    raise transport_error(exc, provider=self.name, op=op, task_id=task_id) from exc
                self._raise_for_error(response, op, task_id)
        return response

    def _raise_for_error(self, response: httpx.Response, op: Op, task_id: str | None) -> None:
        info = self.dialect.error_info(response, op)
        if info is not None:
            raise classify_error(
                info, provider=self.name, op=op, task_id=task_id, secret=self._secret
            )
