"""Crash injection for the reliability suite; a no-op unless ``OMNI_CRASHPOINT`` is set.

``crashpoint("after_post")`` marks a place where a real process can die (power cut, OOM kill,
pod eviction). With ``OMNI_CRASHPOINT=after_post:3`` in the environment, the process SIGKILLs
itself the third time it reaches that point: no ``finally``, no ``atexit``, no flush, exactly
like a crash. ``omni_assets_tests/reliability`` uses it to prove that every crash is recovered
from without losing a paid task or paying twice (``docs/reliability.md``).

Points (in the order a request meets them): ``before_post`` (intent recorded, POST not sent),
``after_post`` (task created, its id not recorded), ``mid_download`` (part of the body written),
``before_commit`` (whole video in the temporary file), ``before_sidecar`` (video committed),
``before_record`` (sidecar written, registry not told).
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["CRASHPOINTS", "ENV_VAR", "crashpoint"]

ENV_VAR = "OMNI_CRASHPOINT"
CRASHPOINTS = (
    "before_post",
    "after_post",
    "mid_download",
    "before_commit",
    "before_sidecar",
    "before_record",
)

_hits: dict[str, int] = {}
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    """SIGKILL this process if ``OMNI_CRASHPOINT`` is ``name[:N]`` and this is the N-th hit."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] >= int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
