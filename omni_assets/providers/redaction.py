"""The one redactor: every configured API key, replaced by ``***`` wherever a provider's words go.

A provider can echo the key it was sent anywhere in an answer: the error ``message``, ``code``
or ``type``, a request-id header, a failed task's error text; an httpx exception can quote it
too. Every such string passes :func:`redact` where it enters the process, before it can reach an
exception, a log line, the registry, metadata or a file:

* every :class:`~omni_assets.providers.errors.OmniError` redacts its message, code, request id
  and task id as it is made, so no error of the tree can carry a key, wherever it was raised;
* :func:`~omni_assets.providers._parse.make_status` redacts a status reading's words (status,
  error message and code) before anything logs or records them;
* the client redacts the request id it keeps from a create answer's headers;
* :func:`scrub_exception` redacts, in place, an httpx exception and its causes before it is
  chained under one of ours (Dagster records the whole chain).

The redactor knows every configured secret: each key a client was built with
(:class:`~omni_assets.providers.http.Secret` calls :func:`remember`), and the value of every
environment variable whose name ends in ``_API_KEY`` (every provider's: ``APIMART_API_KEY`` ...
``GEMINI_API_KEY``, ``GOOGLE_API_KEY``; env.py's names all end so, which a test pins), read at
each call, so a key no client uses yet is covered too. A key is also replaced in its URL-encoded
and JSON-escaped forms, in any letter case. Keys shorter than :data:`MIN_SECRET_LENGTH`
characters are not redacted: they cannot be told from ordinary words (a test's ``"k"`` would
blank every letter k), and no provider issues one.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "KEY_SUFFIX",
    "MASK",
    "MIN_SECRET_LENGTH",
    "known_secrets",
    "redact",
    "remember",
    "scrub_exception",
]

MASK = "***"
#: Environment variables whose values are secrets (every provider's key variable ends so).
KEY_SUFFIX = "_API_KEY"
MIN_SECRET_LENGTH = 8

_remembered: set[str] = set()
_lock = threading.Lock()


def remember(secret: str) -> None:
    """Make ``secret`` known to the redactor for the life of the process."""
    if len(secret) >= MIN_SECRET_LENGTH:
        with _lock:
            _remembered.add(secret)


def known_secrets() -> frozenset[str]:
    """Every key the redactor replaces right now (remembered, and in the environment)."""
    from_env = (value.strip() for name, value in os.environ.items() if name.endswith(KEY_SUFFIX))
    with _lock:
        remembered = frozenset(_remembered)
    return remembered | frozenset(s for s in from_env if len(s) >= MIN_SECRET_LENGTH)


@functools.lru_cache(maxsize=64)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    """One pattern for every secret and its encoded forms, longest first, in any letter case
    (a provider that upper- or lower-cases what it echoes still gives the key away)."""
    forms: set[str] = set()
    for secret in secrets:
        forms |= {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    if not forms:
        return None
    ordered = sorted(forms, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every known secret (and its encoded forms) replaced by ``***``."""
    if not text:
        return text
    pattern = _pattern(known_secrets())
    return text if pattern is None else pattern.sub(MASK, text)


def redact_opt(text: str | None) -> str | None:
    """:func:`redact` for an optional string."""
    return None if text is None else redact(text)


def scrub_exception(exc: BaseException) -> BaseException:
    """Redact ``exc`` and the exceptions it was caused by, in place (string arguments only).

    Returns ``exc``. An httpx exception is chained under ours (``raise ... from exc``), and
    Dagster's error records print every exception of the chain.
    """
    for item in _chain(exc):
        try:
            item.args = tuple(redact(a) if isinstance(a, str) else a for a in item.args)
        except (AttributeError, TypeError):  # an exception type with read-only args
            continue
    return exc


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 32:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [e for e in (item.__cause__, item.__context__) if e is not None]
