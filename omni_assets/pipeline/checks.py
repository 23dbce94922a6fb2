"""Checks on a stored video: it plays, and it is the video the request asked for.

Pure functions over a probe and a request; the Dagster layer turns the outcomes into partitioned
asset check results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..request import VideoRequest
from .media import VideoProbe

__all__ = [
    "ASPECT_TOLERANCE",
    "CHECK_MATCHES_REQUEST",
    "CHECK_PLAYS",
    "DURATION_TOLERANCE_S",
    "CheckOutcome",
    "evaluate_checks",
]

CHECK_PLAYS = "plays"
CHECK_MATCHES_REQUEST = "matches_request"
# Providers round durations to their frame grid and audio packets; a second is generous but
# catches a 6 s request that came back as 10 s.
DURATION_TOLERANCE_S = 1.0
ASPECT_TOLERANCE = 0.05


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _ratio(aspect: str) -> float | None:
    """``16:9`` -> 1.777...; None for anything that is not ``W:H`` with positive numbers."""
    w, sep, h = aspect.partition(":")
    try:
        ratio = float(w) / float(h) if sep else None
    except (ValueError, ZeroDivisionError):
        return None
    return ratio if ratio and ratio > 0 else None


def evaluate_checks(
    request: VideoRequest,
    probe: VideoProbe,
    *,
    expected_duration: float | None = None,
    expected_aspect: str | None = None,
) -> list[CheckOutcome]:
    """Both checks for one video.

    ``expected_duration`` covers fixed-length models; ``expected_aspect`` is the ``W:H`` the
    request's ``aspect_ratio`` means for its model (``landscape`` is ``16:9`` on JimmyAI:
    ``ModelCapabilities.ratio_of``).
    """
    plays = (
        probe.duration_s > 0
        and probe.width > 0
        and probe.height > 0
        and bool(probe.video_codec)
        and probe.whole
    )
    outcomes = [
        CheckOutcome(
            CHECK_PLAYS,
            plays,
            f"{probe.video_codec} {probe.width}x{probe.height}, {probe.duration_s:.2f} s"
            if plays
            else f"the video stream does not decode whole ({probe.frames} frames)",
            {
                "duration_s": probe.duration_s,
                "codec": probe.video_codec or "none",
                "frames": probe.frames,
            },
        )
    ]
    problems: list[str] = []
    meta: dict[str, Any] = {"actual_duration_s": round(probe.duration_s, 3)}
    wanted = request.duration if request.duration is not None else expected_duration
    if wanted is not None:
        meta["requested_duration_s"] = float(wanted)
        if abs(probe.duration_s - wanted) > DURATION_TOLERANCE_S:
            problems.append(f"duration {probe.duration_s:.2f} s, requested {wanted} s")
    if request.aspect_ratio and probe.height:
        actual = probe.width / probe.height
        ratio_text = expected_aspect or request.aspect_ratio
        wanted_ratio = _ratio(ratio_text)
        named = request.aspect_ratio
        if ratio_text != named:
            named = f"{named} ({ratio_text})"
        meta["requested_aspect_ratio"] = named
        meta["actual_aspect_ratio"] = round(actual, 4)
        if wanted_ratio is None:
            problems.append(f"requested aspect {named} is not a W:H ratio")
        elif abs(actual - wanted_ratio) / wanted_ratio > ASPECT_TOLERANCE:
            problems.append(f"aspect {probe.width}x{probe.height}, requested {named}")
    outcomes.append(
        CheckOutcome(
            CHECK_MATCHES_REQUEST,
            not problems,
            "; ".join(problems) or "duration and aspect ratio match the request",
            meta,
        )
    )
    return outcomes
