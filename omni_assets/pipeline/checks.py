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


def _ratio(aspect: str) -> float:
    w, h = aspect.split(":")
    return float(w) / float(h)


def evaluate_checks(
    request: VideoRequest, probe: VideoProbe, *, expected_duration: float | None = None
) -> list[CheckOutcome]:
    """Both checks for one video. ``expected_duration`` covers fixed-length models."""
    plays = (
        probe.duration_s > 0 and probe.width > 0 and probe.height > 0 and bool(probe.video_codec)
    )
    outcomes = [
        CheckOutcome(
            CHECK_PLAYS,
            plays,
            f"{probe.video_codec} {probe.width}x{probe.height}, {probe.duration_s:.2f} s"
            if plays
            else "no decodable video stream",
            {"duration_s": probe.duration_s, "codec": probe.video_codec or "none"},
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
        meta["requested_aspect_ratio"] = request.aspect_ratio
        meta["actual_aspect_ratio"] = round(actual, 4)
        if (
            abs(actual - _ratio(request.aspect_ratio)) / _ratio(request.aspect_ratio)
            > ASPECT_TOLERANCE
        ):
            problems.append(
                f"aspect {probe.width}x{probe.height}, requested {request.aspect_ratio}"
            )
    outcomes.append(
        CheckOutcome(
            CHECK_MATCHES_REQUEST,
            not problems,
            "; ".join(problems) or "duration and aspect ratio match the request",
            meta,
        )
    )
    return outcomes
