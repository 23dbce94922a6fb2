"""A local HTTP emulator of the four Gemini Omni resellers and Google's own Gemini API.

What it is
==========

A real HTTP server (Starlette + uvicorn, loopback only) that speaks the documented dialects of
JimmyAI, APIMart, ToAPIs, CRUN and Google (Interactions API), each under its own path prefix
(the real hosts differ, and APIMart and ToAPIs even share paths)::

    http://127.0.0.1:PORT/jimmyai   POST /api/open-api/v1/gemini/omni/videos
                                    GET  /api/open-api/v1/videos/{taskId}
                                    POST /api/open-api/v1/files/upload
    http://127.0.0.1:PORT/apimart   POST /v1/videos/generations
                                    GET  /v1/tasks/{task_id}[?language=]
                                    POST /v1/uploads/images
    http://127.0.0.1:PORT/toapis    POST /v1/videos/generations
                                    GET  /v1/videos/generations/{task_id}
                                    POST /v1/uploads/images
    http://127.0.0.1:PORT/crun      POST /api/v1/client/job/CreateTask
                                    GET  /api/v1/client/job/TaskInfo?task_id=
    http://127.0.0.1:PORT/google    POST /v1beta/interactions
                                    GET  /v1beta/interactions/{id}   (video inline or as a URI)
    http://127.0.0.1:PORT/files/{token}.mp4?expires=..&signature=..   videos and uploads
    http://127.0.0.1:PORT/_emulator/{health,audit,config,reset}      control plane

It never imports the provider clients, the request model or any capability table: every
contract is encoded here again from the providers' own pages (``shared/seeds``,
``shared/providers.md``), so a misreading on one side is caught by the other.

Tasks move through each provider's own status words over ``generation_seconds`` (the first
``queue_fraction`` queued), computed from the clock on each query. Completed tasks point at a
real, playable H.264 + AAC mp4 of the requested duration and aspect ratio, behind a signed URL
that expires (JimmyAI 3 days, APIMart/ToAPIs 24 h with ``expires_at``, CRUN 24 h assumed);
every status query issues a fresh URL. Downloads support single byte ranges (206/416).

Entry points
============

* :class:`EmulatorConfig` — settings (timing, fault rates, TTLs, padding, audit log).
* :func:`create_app` — the Starlette application.
* :func:`run_emulator` — serve it, blocking (``python -m omni_assets.emulator --port 8765``).
* :class:`EmulatorServer` — serve it from a background thread on an ephemeral port (tests).

Faults (each a seeded probability; see :class:`EmulatorConfig`)
===============================================================

``rate_429`` (with ``Retry-After``) and ``rate_5xx`` (a provider-shaped 500, or an nginx-style
HTML 502/503) hit create, status and upload before anything happens — a refused create never
creates a task — and ``rate_5xx`` also hits downloads (503). ``rate_crun_maintenance`` sends
CRUN's 455. ``rate_drop_download`` closes the connection part-way through the body.
``rate_task_failed`` makes a task fail with a provider-shaped reason, about half of them
content-policy ones. ``rate_expired_url`` hands out a URL that has already expired.
``rate_unknown_status`` sends an undocumented status word (``rendering``...) while running.
``rate_quirks`` picks documented variant shapes: JimmyAI without envelope, integer ``code``,
``success`` for completed, ``pending``/``submitted`` for queued, errors with HTTP 200 and only
the body code; APIMart ``url`` as a plain string; ToAPIs ``submitted`` for queued and the URL at
``result.url``, ``video_url`` or ``url`` instead of ``result.data[0].url``; CRUN errors with
HTTP 200 and only the body code. API keys starting with ``invalid`` get 401, ``nobalance`` get
402 on create. ``outages`` opens windows per dialect: ``down`` (a proxy's 503 on every API call,
nothing created), ``402`` (creates refused for lack of balance) and, for CRUN, ``455``
(maintenance on every API call). Prompts containing ``[emulator:fail]`` or
``[emulator:policy]`` make that task fail (ToAPIs refuses the latter synchronously with its
documented 422).

Deliberate deviations from the real services
============================================

* Videos are rendered small (16:9 as 256x144, 9:16 as 144x256) at 8 fps, whatever resolution
  was requested, and cached on disk per scene: each shows its prompt as text, its source
  image (the first frame in frame mode, an inset in reference mode) and, for an extension,
  starts on its parent's last frame (scene.py, video.py).
* Unknown body fields are refused (400; CRUN 422, its validation code) where a real service may
  ignore them: the point is to catch client mistakes.
* Where a provider lets "the model decide" the length (a reference/source video, APIMart's
  ``gemini-omni-flash-preview``, which takes no duration), the emulator renders 6 s.
* ``video_padding_bytes`` appends a ``free`` box so files can be made large cheaply.
* ``download_bytes_per_second`` caps every download connection (a CDN's per-connection speed),
  so downloads take a while and can be the bottleneck.
* CRUN callbacks are only delivered to 127.0.0.1/localhost; other callback URLs get 422.
* Prices are reported where the real provider reports them (APIMart ``cost``/``credits_cost`` in
  the task status, CRUN ``credits`` in TaskInfo; JimmyAI and ToAPIs report none), but the
  amounts are the emulator's own: APIMart's flash preview 1.0 (seed 001's example),
  Omni-Flash-Ext 0.10/0.15/0.30 a second at 720p/1080p/4k, CRUN 5/8/15 credits a second; a
  failed task costs 0.
* Task state lives in memory: restarting the emulator forgets every task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import EmulatorConfig
    from .server import EmulatorServer, run_emulator

__all__ = ["EmulatorConfig", "EmulatorServer", "create_app", "run_emulator"]

# Imported on first use: every code location imports ``emulator.process`` (to start the emulator
# in emulator mode), which would otherwise load the server side too (Starlette, uvicorn, numpy:
# ~0.5 CPU-s in every run worker and code server; docs/benchmarks.md, issue 15).
_LAZY = {
    "create_app": "app",
    "EmulatorConfig": "config",
    "EmulatorServer": "server",
    "run_emulator": "server",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
