"""What Google charges for Gemini Omni video: one table, per model, with unit, source and date.

Google bills Omni output as *video tokens* and reports them per interaction in
``usage.output_tokens_by_modality`` (python-genai ``Usage``/``ModalityTokens``), so the cost of a
video is its reported video tokens times the per-token price here. Google's own price page was
not available to us: every price below is third-party (docs/providers-google.md, "Cost"), and
``source``/``as_of`` say where each came from. This is the one place the plugin keeps Google's
prices; a project-wide price table (issue 14's ``OMNI_PRICES``) can take these rows as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["GOOGLE_PRICES", "TokenPrice", "video_cost"]


@dataclass(frozen=True)
class TokenPrice:
    """A price per million output tokens of one modality."""

    provider: str
    model: str
    usd_per_million_tokens: float
    modality: str
    unit: str
    source: str
    as_of: str
    note: str = ""


_VERCEL = "https://vercel.com/ai-gateway/models/gemini-omni-1.2-flash [3P]"
_PER_SECOND = (
    "≈ $0.10 per second of 720p video (docs.gmicloud.ai gemini-omni-flash-preview [3P], and "
    "issue 16's third-party write-ups): at $9/1M that is ~11,100 video tokens per second"
)

GOOGLE_PRICES: Mapping[str, TokenPrice] = MappingProxyType(
    {
        model: TokenPrice(
            provider="google",
            model=model,
            usd_per_million_tokens=9.0,
            modality="video",
            unit="USD per 1M output video tokens",
            source=_VERCEL,
            as_of="2026-12-04",
            note=_PER_SECOND,
        )
        for model in ("gemini-omni-flash-preview", "gemini-omni-1.1-flash", "gemini-omni-1.2-flash")
    }
)


def video_cost(model: str, video_tokens: int | None) -> float | None:
    """USD for ``video_tokens`` output tokens on ``model``; None when either is unknown."""
    price = GOOGLE_PRICES.get(model)
    if price is None or video_tokens is None:
        return None
    return round(video_tokens * price.usd_per_million_tokens / 1_000_000, 6)
