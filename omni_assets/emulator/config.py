"""The emulator's settings: timing, fault rates, URL lifetimes and where files go.

An :class:`EmulatorConfig` is frozen; change it with :meth:`EmulatorConfig.with_changes` (from
Python or from the JSON of ``POST /_emulator/config``), which validates every value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_UPLOAD_TTL", "DEFAULT_URL_TTL", "OUTAGE_KINDS", "PROVIDERS", "EmulatorConfig"]

PROVIDERS = ("jimmyai", "apimart", "toapis", "crun", "google")

_DAY = 86_400.0

# JimmyAI: "video_url valid 3 days" (query page). APIMart and ToAPIs: expires_at 24 h after
# completion in their examples. CRUN documents no lifetime; 24 h is our assumption. Google: files
# of the Gemini Files API live 2 days.
DEFAULT_URL_TTL: Mapping[str, float] = {
    "jimmyai": 3 * _DAY,
    "apimart": _DAY,
    "toapis": _DAY,
    "crun": _DAY,
    "google": 2 * _DAY,
}

# APIMart upload page: "URL valid 72 h"; JimmyAI: copy within ~3 days. ToAPIs documents no
# lifetime (24 h assumed). CRUN has no upload endpoint.
DEFAULT_UPLOAD_TTL: Mapping[str, float] = {
    "jimmyai": 3 * _DAY,
    "apimart": 3 * _DAY,
    "toapis": _DAY,
    "crun": _DAY,
    "google": _DAY,
}

# What an outage window does to a dialect: ``down`` answers every API call with a proxy's 503
# (nothing reaches the service, so nothing is created), ``402`` refuses creates for lack of
# balance, ``455`` is CRUN's documented maintenance answer (seed 003) on every API call, and
# ``500`` answers creates with the provider's own 500 before creating anything (an answer a
# client cannot tell from "created, then failed").
OUTAGE_KINDS = ("down", "402", "455", "500")

_RATES = (
    "rate_429",
    "rate_5xx",
    "rate_drop_download",
    "rate_task_failed",
    "rate_expired_url",
    "rate_quirks",
    "rate_unknown_status",
    "rate_crun_maintenance",
)


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything that shapes the emulator's behaviour.

    Timing: each task spends ``generation_seconds`` from creation to its terminal state, the
    first ``queue_fraction`` of it queued. Both are snapshotted per task at creation.

    Faults (each a probability in [0, 1], drawn from ``random.Random`` streams seeded by
    ``seed``): ``rate_429`` and ``rate_5xx`` on create/status/upload (and 5xx on downloads),
    ``rate_drop_download``, ``rate_task_failed``, ``rate_expired_url``, ``rate_quirks``,
    ``rate_unknown_status`` and ``rate_crun_maintenance`` (CRUN's 455).

    Rate limit: ``rate_limit_per_s`` API calls a second per (provider, API key), in bursts of up
    to one second's worth; beyond it, 429 with ``Retry-After`` (0 = no limit; see ratelimit.py).

    Auth: with ``api_keys`` unset any non-empty key is accepted except those starting with
    ``invalid`` (401); keys starting with ``nobalance`` get 402 on create. With ``api_keys``
    set, only those keys are accepted.

    Files: ``url_ttl_seconds`` / ``upload_ttl_seconds`` per provider, ``video_padding_bytes``
    appended to every served video as a ``free`` box, rendered videos cached in ``cache_dir``
    (a shared temp directory by default). ``download_bytes_per_second`` caps each download
    connection's speed (0 = no cap), so downloads, not generation, can be the bottleneck.
    ``audit_log`` appends every audit event as JSON lines.
    """

    generation_seconds: float = 2.0
    queue_fraction: float = 0.25
    seed: int = 0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_drop_download: float = 0.0
    rate_task_failed: float = 0.0
    rate_expired_url: float = 0.0
    rate_quirks: float = 0.0
    rate_unknown_status: float = 0.0
    rate_crun_maintenance: float = 0.0
    retry_after_seconds: int = 1
    rate_limit_per_s: float = 0.0
    api_keys: tuple[str, ...] | None = None
    url_ttl_seconds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_URL_TTL))
    upload_ttl_seconds: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_UPLOAD_TTL)
    )
    video_padding_bytes: int = 0
    download_bytes_per_second: float = 0.0
    audit_log: str | None = None
    cache_dir: str | None = None
    #: provider -> windows ``{"kind": "down"|"402"|"455"|"500", "start": epoch|None, "end":
    #: epoch|None, "count": n|None}`` (None: open-ended; ``count``: only the first n calls it
    #: would hit). ``455`` only for ``crun``, whose documents define it.
    outages: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_number(self.generation_seconds, "generation_seconds", low=0.0)
        _check_number(self.queue_fraction, "queue_fraction", low=0.0, high=1.0)
        _check_int(self.seed, "seed")
        for name in _RATES:
            _check_number(getattr(self, name), name, low=0.0, high=1.0)
        _check_int(self.retry_after_seconds, "retry_after_seconds", low=0)
        _check_number(self.rate_limit_per_s, "rate_limit_per_s", low=0.0)
        _check_int(self.video_padding_bytes, "video_padding_bytes", low=0)
        _check_number(self.download_bytes_per_second, "download_bytes_per_second", low=0.0)
        if 0 < self.video_padding_bytes < 8:
            raise ValueError("video_padding_bytes must be 0 or at least 8 (a free box header)")
        if self.api_keys is not None:
            keys = self.api_keys
            if isinstance(keys, str) or not all(isinstance(k, str) and k for k in keys):
                raise ValueError("api_keys must be a list of non-empty strings or null")
            object.__setattr__(self, "api_keys", tuple(keys))
        for name in ("url_ttl_seconds", "upload_ttl_seconds"):
            ttl = getattr(self, name)
            if not isinstance(ttl, Mapping):
                raise ValueError(f"{name} must map provider names to seconds")
            for provider, seconds in ttl.items():
                if provider not in PROVIDERS:
                    raise ValueError(f"{name}: unknown provider {provider!r}")
                _check_number(seconds, f"{name}[{provider}]", low=0.0)
        object.__setattr__(self, "outages", _check_outages(self.outages))
        for name in ("audit_log", "cache_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a path string or null")

    def outages_at(self, provider: str, now: float) -> list[tuple[int, Mapping[str, Any]]]:
        """(index, window) of ``provider``'s outage windows open at ``now``."""
        return [
            (i, w)
            for i, w in enumerate(self.outages.get(provider, ()))
            if (w.get("start") is None or now >= w["start"])
            and (w.get("end") is None or now < w["end"])
        ]

    def url_ttl(self, provider: str) -> float:
        """How long a video URL handed out by ``provider`` stays valid, in seconds."""
        return float(self.url_ttl_seconds.get(provider, DEFAULT_URL_TTL[provider]))

    def upload_ttl(self, provider: str) -> float:
        """How long an upload URL handed out by ``provider`` stays valid, in seconds."""
        return float(self.upload_ttl_seconds.get(provider, DEFAULT_UPLOAD_TTL[provider]))

    def with_changes(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with ``changes`` applied; TTL mappings are merged, not replaced.

        Raises ``ValueError`` for an unknown key or an invalid value.
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
        merged = dict(changes)
        for name in ("url_ttl_seconds", "upload_ttl_seconds", "outages"):
            if name in merged:
                update = merged[name]
                if not isinstance(update, Mapping):
                    raise ValueError(f"{name} must map provider names to seconds")
                merged[name] = {**getattr(self, name), **update}
        return dataclasses.replace(self, **merged)

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-ready data (what ``GET /_emulator/config`` returns)."""
        data = dataclasses.asdict(self)
        data["api_keys"] = list(self.api_keys) if self.api_keys is not None else None
        data["url_ttl_seconds"] = dict(self.url_ttl_seconds)
        data["upload_ttl_seconds"] = dict(self.upload_ttl_seconds)
        data["outages"] = {p: [dict(w) for w in ws] for p, ws in self.outages.items()}
        return data


def _check_number(value: Any, name: str, *, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value!r}")


def _check_int(value: Any, name: str, *, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def _check_outages(value: Any) -> dict[str, tuple[dict[str, Any], ...]]:
    if not isinstance(value, Mapping):
        raise ValueError("outages must map provider names to lists of windows")
    out: dict[str, tuple[dict[str, Any], ...]] = {}
    for provider, windows in value.items():
        if provider not in PROVIDERS:
            raise ValueError(f"outages: unknown provider {provider!r}")
        if isinstance(windows, Mapping):
            windows = [windows]
        checked = []
        for window in windows:
            if not isinstance(window, Mapping) or set(window) - {"kind", "start", "end", "count"}:
                raise ValueError(f"outages[{provider}]: a window is {{kind, start, end, count}}")
            kind = str(window.get("kind"))
            if kind not in OUTAGE_KINDS or (kind == "455" and provider != "crun"):
                allowed = ", ".join(k for k in OUTAGE_KINDS if k != "455" or provider == "crun")
                raise ValueError(f"outages[{provider}]: kind {kind!r}; allowed: {allowed}")
            for bound in ("start", "end"):
                if window.get(bound) is not None:
                    _check_number(window[bound], f"outages[{provider}].{bound}", low=0.0)
            if window.get("count") is not None:
                _check_int(window["count"], f"outages[{provider}].count", low=1)
            checked.append({k: window.get(k) for k in ("kind", "start", "end", "count")})
        out[provider] = tuple(checked)
    return out
