"""What a video costs on each provider and model, as data (with the source and date of each price).

One :class:`Price` per provider and model: an amount per second of video by resolution
(``per_second``), or a flat amount per video by resolution (``per_video``, for models that pick
their own length or render a fixed one), in a ``unit`` that is a currency (``USD``) or a
provider's ``credits``. ``usd_per_unit`` converts the unit to USD, so budgets and the
``cheapest`` route compare sellers in one currency. Every entry says where its numbers come from
(``source``), when they were read (``date``) and whether they are an ``estimate`` (no number was
published for this model: the value is ours, and a file given in ``OMNI_PRICES`` should replace
it). The table of defaults with their sources is in ``docs/prices.md``.

An ``OMNI_PRICES`` file (YAML or JSON) overrides entries one by one::

    prices:
      - provider: toapis
        model: gemini_omni_flash
        unit: USD
        per_second: {720p: 0.05, 1080p: 0.08}
        source: "our ToAPIs invoice, 2026-11"
        date: "2026-11-30"

Entries not named in the file keep their defaults; an entry in the file replaces the default
entry of the same provider and model whole. Nothing here makes an HTTP call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .capabilities import find
from .errors import InvalidRequestError

__all__ = [
    "DEFAULT_PRICES",
    "USD",
    "Estimate",
    "Price",
    "PriceTable",
    "load_prices",
]

USD = "USD"
CREDITS = "credits"
_DAY_READ = "2026-12-04"  # when the seeds and providers.md were read for these defaults


@dataclass(frozen=True)
class Estimate:
    """What one video is expected to cost (``amount`` in ``unit``; ``usd`` converted)."""

    provider: str
    model: str
    amount: float
    unit: str
    usd: float
    usd_per_unit: float
    estimate: bool
    source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for registry history and metadata."""
        return {
            "provider": self.provider,
            "model": self.model,
            "amount": self.amount,
            "unit": self.unit,
            "usd": self.usd,
            "usd_per_unit": self.usd_per_unit,
            "estimate": self.estimate,
            "source": self.source,
        }


@dataclass(frozen=True)
class Price:
    """The price of one provider's model (see the module docstring)."""

    provider: str
    model: str
    unit: str
    source: str
    date: str
    per_second: Mapping[str, float] = field(default_factory=dict)
    per_video: Mapping[str, float] = field(default_factory=dict)
    usd_per_unit: float = 1.0
    estimate: bool = False

    def __post_init__(self) -> None:
        if not self.per_second and not self.per_video:
            raise ValueError(f"price {self.provider}/{self.model}: give per_second or per_video")
        for name in ("per_second", "per_video"):
            table = getattr(self, name)
            for resolution, amount in table.items():
                if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
                    raise ValueError(
                        f"price {self.provider}/{self.model}: {name}[{resolution}] must be a "
                        f"number >= 0, got {amount!r}"
                    )
            object.__setattr__(
                self, name, MappingProxyType({str(k).lower(): float(v) for k, v in table.items()})
            )
        if self.usd_per_unit < 0:
            raise ValueError(f"price {self.provider}/{self.model}: usd_per_unit must be >= 0")

    def amount(self, duration: int | None, resolution: str) -> float:
        """The price of one video of ``duration`` seconds at ``resolution``, in ``unit``."""
        resolution = resolution.lower()
        if resolution in self.per_video:
            return self.per_video[resolution]
        if resolution in self.per_second and duration is not None:
            return round(self.per_second[resolution] * duration, 6)
        known = sorted({*self.per_second, *self.per_video})
        raise InvalidRequestError(
            "resolution",
            resolution,
            f"a resolution priced for {self.provider} {self.model}: {', '.join(known)} "
            "(add it to OMNI_PRICES)",
            provider=self.provider,
            model=self.model,
        )


def _entry(**kw: Any) -> Price:
    return Price(date=kw.pop("date", _DAY_READ), **kw)


# The defaults. Only APIMart publishes a number for these models in the pages we have (seed 001's
# example task: cost 1.0, credits_cost 10, i.e. 10 credits per USD); every other number is an
# estimate of ours, marked so, to be replaced with OMNI_PRICES by anyone who knows their rate.
_DEFAULTS = (
    _entry(
        provider="apimart",
        model="gemini-omni-flash-preview",
        unit=USD,
        per_video={"720p": 1.0},
        source="seed 001 (docs.apimart.ai gemini-omni-flash-preview): example task cost 1.0, "
        "credits_cost 10; the model picks 3-10 s, so one flat price per video",
    ),
    _entry(
        provider="apimart",
        model="Omni-Flash-Ext",
        unit=USD,
        per_second={"720p": 0.10, "1080p": 0.15, "4k": 0.30},
        estimate=True,
        source="estimate: no price published on the Omni-Flash-Ext page (providers.md §2.1); "
        "the 720p rate is seed 001's 1.0 per ~10 s video, higher resolutions scaled",
    ),
    _entry(
        provider="jimmyai",
        model="Gemini-Omini",
        unit=USD,
        per_second={"720p": 0.10, "1080p": 0.15, "4k": 0.30},
        estimate=True,
        source="estimate: JimmyAI documents no price or cost field for Gemini Omni "
        "(providers.md §1.2); set to APIMart's rate",
    ),
    _entry(
        provider="jimmyai",
        model="omni-10s",
        unit=USD,
        per_video={"720p": 1.0},
        estimate=True,
        source="estimate: seed 000 says omni-10s is billed as a fixed 10 s 720p video; no "
        "amount published",
    ),
    _entry(
        provider="toapis",
        model="gemini_omni_flash",
        unit=USD,
        per_second={"720p": 0.08, "1080p": 0.12},
        estimate=True,
        source="estimate: seed 004 says 'Pay-as-you-go pricing' with no amount",
    ),
    _entry(
        provider="toapis",
        model="gemini_omni",
        unit=USD,
        per_second={"720p": 0.08},
        estimate=True,
        source="estimate: seed 004 says 'Pay-as-you-go pricing' with no amount",
    ),
    _entry(
        provider="crun",
        model="google/gemini-omni",
        unit=CREDITS,
        per_second={"720p": 5.0, "1080p": 8.0, "4k": 15.0},
        usd_per_unit=0.02,
        estimate=True,
        source="estimate: CRUN bills in credits (TaskInfo 'credits', balance API, providers.md "
        "§4.3-4.4) and publishes no per-model amount or credit price here",
    ),
    # Google bills video tokens and reports them (usage.output_tokens_by_modality): the settled
    # cost is those tokens at google_prices.py's per-token rate. These per-second rates are the
    # reservation made before the POST, from third-party write-ups (docs/providers-google.md).
    _entry(
        provider="google",
        model="gemini-omni-flash-preview",
        unit=USD,
        per_second={"720p": 0.10},
        estimate=True,
        source="estimate: ~$0.10 per second of 720p video per third parties (docs.gmicloud.ai, "
        "issue 16); Google's own price page was not read; settled from reported video tokens",
    ),
    _entry(
        provider="google",
        model="gemini-omni-1.1-flash",
        unit=USD,
        per_video={"720p": 1.0},
        estimate=True,
        source="estimate: the model picks 3-10 s; 10 s at the third-party ~$0.10/s; settled "
        "from reported video tokens",
    ),
    _entry(
        provider="google",
        model="gemini-omni-1.2-flash",
        unit=USD,
        per_second={"360p": 0.10, "720p": 0.10, "1080p": 0.15, "4k": 0.30},
        estimate=True,
        source="estimate: ~$0.10/s at 720p per third parties; 1080p/4k scaled as for the "
        "resellers; settled from reported video tokens",
    ),
)


class PriceTable:
    """Prices by (provider, model), with :meth:`estimate` for a request."""

    def __init__(self, prices: Iterable[Price]) -> None:
        self._prices: dict[tuple[str, str], Price] = {}
        for price in prices:
            self._prices[(price.provider, price.model)] = price

    def __iter__(self) -> Any:
        return iter(self._prices.values())

    def get(self, provider: str, model: str) -> Price | None:
        """The price of ``provider``'s ``model`` (aliases followed), or None if not priced."""
        caps = find(provider, model)
        name = caps.model if caps is not None else model
        return self._prices.get((provider, name))

    def with_overrides(self, prices: Iterable[Price]) -> PriceTable:
        """A copy where each of ``prices`` replaces the entry of the same provider and model."""
        return PriceTable([*self._prices.values(), *prices])

    def estimate(
        self,
        provider: str,
        model: str,
        *,
        duration: int | None,
        resolution: str | None,
        has_video: bool = False,
    ) -> Estimate | None:
        """The expected cost of one video, or None when the model has no price.

        The duration and resolution are those the provider will render: the request's, else the
        model's defaults (a fixed-length model its fixed length).
        """
        price = self.get(provider, model)
        caps = find(provider, model)
        if price is None or caps is None:
            return None
        seconds = caps.fixed_duration or caps.duration_for(duration, has_video=has_video)
        if seconds is None:
            seconds = duration or caps.default_duration
        if seconds is None and caps.durations:
            # The duration is optional and the model picks it (Google): reserve its longest.
            seconds = max(caps.durations)
        chosen = (resolution or caps.default_resolution).lower()
        amount = price.amount(seconds, chosen)
        return Estimate(
            provider=provider,
            model=caps.model,
            amount=amount,
            unit=price.unit,
            usd=round(amount * price.usd_per_unit, 6),
            usd_per_unit=price.usd_per_unit,
            estimate=price.estimate,
            source=price.source,
        )


#: The shipped prices (see ``docs/prices.md`` for each number's source).
DEFAULT_PRICES = PriceTable(_DEFAULTS)


def load_prices(path: str | Path | None, base: PriceTable = DEFAULT_PRICES) -> PriceTable:
    """``base`` with the entries of the ``OMNI_PRICES`` file at ``path`` (None: ``base``).

    Raises ValueError naming the entry and field for anything malformed.
    """
    if not path:
        return base
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"OMNI_PRICES={str(p)!r}: cannot read it: {exc}") from exc
    try:
        doc = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"OMNI_PRICES={str(p)!r}: not valid YAML/JSON: {exc}") from exc
    entries = doc.get("prices") if isinstance(doc, Mapping) else doc
    if not isinstance(entries, list):
        raise ValueError(f"OMNI_PRICES={str(p)!r}: expected 'prices:' with a list of entries")
    return base.with_overrides(_parse_entry(e, i, p) for i, e in enumerate(entries))


_FIELDS = {f for f in Price.__dataclass_fields__}
_REQUIRED = ("provider", "model", "unit", "source", "date")


def _parse_entry(raw: Any, index: int, path: Path) -> Price:
    where = f"OMNI_PRICES={str(path)!r} entry #{index + 1}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    unknown = sorted(set(map(str, raw)) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {_allowed()}")
    missing = [name for name in _REQUIRED if not raw.get(name)]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    data: dict[str, Any] = {
        k: (str(v) if k in ("date", "source", "unit") else v) for k, v in raw.items()
    }
    caps = find(str(data["provider"]), str(data["model"]))
    if caps is None:
        raise ValueError(f"{where}: unknown provider/model {data['provider']}/{data['model']}")
    try:
        return replace(Price(**data), model=caps.model)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _allowed() -> str:
    return ", ".join(sorted(_FIELDS))
