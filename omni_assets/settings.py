"""Settings read from the environment (the interface other tools rely on; see design.md).

``OMNI_PROVIDER``     default provider: ``jimmyai``, ``apimart``, ``toapis``, ``crun``, ``google``,
                      ``auto`` (route each request, pipeline/routing.py) or ``emulator`` (every
                      provider on the built-in emulator: fake videos, nothing paid). Required:
                      unset, it is an error (:class:`ProviderNotConfigured`), never the emulator.
``OMNI_STORAGE_URL``  fsspec URL of the storage root (default ``./.omni/storage``).
``OMNI_REQUESTS``     requests file (YAML or JSONL).
``OMNI_REGISTRY_URL`` task registry database (default: SQLite in the Dagster home,
                      ``$DAGSTER_HOME`` else ``./.omni/dagster_home``; see state.py).
``OMNI_EMULATOR_URL`` where the emulator listens in emulator mode (default 127.0.0.1:8765).
``OMNI_EMULATOR_DIALECT`` which provider dialect requests without a provider use in emulator mode.
``OMNI_POLL_SENSOR_INTERVAL_S`` minimum seconds between poll sensor ticks (default 15).
``OMNI_REQUESTS_SENSOR_INTERVAL_S`` minimum seconds between requests sensor ticks (default 30).
``OMNI_ROUTE``        ``provider: auto``: sellers in order, and ordered, cheapest or fastest.
``OMNI_ON_UNKNOWN``   per provider, ``hold`` (default) or ``resubmit`` an unknown create:
                      ``jimmyai=resubmit,crun=hold``.
``OMNI_PRICES``       a YAML/JSON price file overriding the shipped prices (docs/prices.md).
``OMNI_BUDGET``       spending limits: per day, per run, per tag value (docs/prices.md).
``OMNI_MAX_DOWNLOAD_BYTES`` the largest video body accepted (default 402653184, 384 MiB:
                      15 seconds of 4k, the largest video any model makes, at 100 Mbit/s, twice).
``OMNI_MAX_REQUESTS`` the most requests one requests file may hold (default and ceiling 25,000:
                      what the requests sensor registers in one tick); a file past it is
                      refused whole, with the reason.
``OMNI_ALLOWED_IMAGE_ROOTS`` folders (``:``-separated) local request images and videos may come
                      from, besides the requests file's own folder; a file elsewhere, a symlink
                      leading out, /proc, a FIFO or a device is refused (pipeline/local_files.py).
``OMNI_ALLOW_PRIVATE_URLS`` ``1`` to download videos from loopback/private/link-local addresses
                      other than the provider's own host (default: refused, docs/reliability.md).
``GOOGLE_VIDEO_DELIVERY`` ``inline`` (default: base64 inside the interaction) or ``uri``.
``<PROVIDER>_API_KEY`` / ``<PROVIDER>_BASE_URL`` per provider, e.g. ``APIMART_API_KEY``; Google's
                      key is ``GEMINI_API_KEY`` (or ``GOOGLE_API_KEY``), its URL
                      ``GOOGLE_BASE_URL``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .providers.capabilities import PROVIDER_NAMES
from .providers.env import API_KEY_ENV, api_key_env
from .providers.errors import InvalidApiKeyError
from .providers.http import DEFAULT_MAX_DOWNLOAD_BYTES, key_problem
from .request import MAX_REQUESTS
from .state import resolve_state

__all__ = [
    "AUTO",
    "EMULATOR",
    "EMULATOR_API_KEY",
    "MissingProviderKey",
    "ProviderNotConfigured",
    "Settings",
    "check_key_shapes",
]

EMULATOR = "emulator"
#: ``OMNI_PROVIDER=auto`` / ``provider: auto``: route each request (pipeline/routing.py).
AUTO = "auto"
# The emulator accepts any key; this one is not a secret and says what it is.
EMULATOR_API_KEY = "emulator-not-a-secret"
DEFAULT_EMULATOR_URL = "http://127.0.0.1:8765"


def _key_names(provider: str) -> str:
    return " or ".join(API_KEY_ENV[provider])


class ProviderNotConfigured(ValueError):
    """``OMNI_PROVIDER`` is unset: no provider was chosen (the emulator is never implied).

    A forgotten variable in a cron job must fail loudly instead of "succeeding" with fake videos.
    """

    def __init__(self) -> None:
        keys = ", ".join(f"{p}: {_key_names(p)}" for p in PROVIDER_NAMES)
        super().__init__(
            "no provider configured: set OMNI_PROVIDER to one of "
            f"{', '.join(PROVIDER_NAMES)} (or auto), and that provider's key ({keys}); "
            "or OMNI_PROVIDER=emulator for the built-in emulator (fake videos, nothing paid)"
        )


class MissingProviderKey(ValueError):
    """The chosen provider's key variable is unset or empty; names the variable, not a value."""

    def __init__(self, provider: str, variables: tuple[str, ...] | None = None) -> None:
        self.provider = provider
        if provider == AUTO:
            self.variables = tuple(v for p in PROVIDER_NAMES for v in API_KEY_ENV[p])
            message = (
                "OMNI_PROVIDER=auto routes over the sellers that have a key, and none is set: "
                f"export one of {', '.join(self.variables)}"
            )
        else:
            self.variables = variables or API_KEY_ENV[provider]
            message = (
                f"no API key for {provider}: {' or '.join(self.variables)} is not set; export "
                f"it with your {provider} API key, or choose another OMNI_PROVIDER"
            )
        super().__init__(message)


@dataclass(frozen=True)
class Settings:
    provider: str
    storage_url: str
    requests_path: str | None
    emulator_url: str
    emulator_dialect: str
    poll_sensor_interval_s: int = 15
    requests_sensor_interval_s: int = 30
    prices_path: str | None = None
    budget: str | None = None
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    max_requests: int = MAX_REQUESTS
    allowed_image_roots: tuple[str, ...] = ()
    allow_private_urls: bool = False
    google_video_delivery: str = "inline"
    route: str | None = None
    on_unknown: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls) -> Settings:
        # Unset stays "": the error is raised where a provider is needed (provider_resources,
        # the CLI), so status, lineage and a code location with its own providers still work.
        provider = os.environ.get("OMNI_PROVIDER", "").strip().lower()
        allowed = (EMULATOR, AUTO, *PROVIDER_NAMES)
        if provider and provider not in allowed:
            raise ValueError(
                f"OMNI_PROVIDER={provider!r} is not known; allowed: {', '.join(allowed)}"
            )
        dialect = os.environ.get("OMNI_EMULATOR_DIALECT", "apimart").strip().lower()
        if dialect not in PROVIDER_NAMES:
            raise ValueError(
                f"OMNI_EMULATOR_DIALECT={dialect!r} is not known; "
                f"allowed: {', '.join(PROVIDER_NAMES)}"
            )
        delivery = os.environ.get("GOOGLE_VIDEO_DELIVERY", "inline").strip().lower() or "inline"
        if delivery not in ("inline", "uri"):
            raise ValueError(
                f"GOOGLE_VIDEO_DELIVERY={delivery!r} is not known; allowed: inline, uri"
            )
        return cls(
            provider=provider,
            storage_url=resolve_state().storage_url,
            requests_path=os.environ.get("OMNI_REQUESTS") or None,
            emulator_url=os.environ.get("OMNI_EMULATOR_URL", DEFAULT_EMULATOR_URL).rstrip("/"),
            emulator_dialect=dialect,
            poll_sensor_interval_s=int(os.environ.get("OMNI_POLL_SENSOR_INTERVAL_S", "15")),
            requests_sensor_interval_s=int(os.environ.get("OMNI_REQUESTS_SENSOR_INTERVAL_S", "30")),
            prices_path=os.environ.get("OMNI_PRICES") or None,
            budget=os.environ.get("OMNI_BUDGET") or None,
            max_download_bytes=_positive_int("OMNI_MAX_DOWNLOAD_BYTES", DEFAULT_MAX_DOWNLOAD_BYTES),
            max_requests=_max_requests(),
            allowed_image_roots=tuple(
                os.path.abspath(os.path.expanduser(part))
                for part in os.environ.get("OMNI_ALLOWED_IMAGE_ROOTS", "").split(os.pathsep)
                if part.strip()
            ),
            allow_private_urls=_flag("OMNI_ALLOW_PRIVATE_URLS"),
            google_video_delivery=delivery,
            route=os.environ.get("OMNI_ROUTE") or None,
            on_unknown=_on_unknown(os.environ.get("OMNI_ON_UNKNOWN", "")),
        )

    @property
    def emulated(self) -> bool:
        return self.provider == EMULATOR

    @property
    def default_provider(self) -> str:
        """The dialect a request without ``provider:`` goes to."""
        return self.emulator_dialect if self.emulated else self.provider

    def require_provider(self) -> str:
        """``OMNI_PROVIDER``, or :class:`ProviderNotConfigured` when it is unset."""
        if not self.provider:
            raise ProviderNotConfigured()
        return self.provider

    def check_keys(self) -> None:
        """Raise :class:`MissingProviderKey` when the chosen provider has no key to use, and
        :class:`~omni_assets.providers.errors.InvalidApiKeyError` when any key set is malformed.

        ``auto`` needs one seller with a key; the emulator needs none.
        """
        provider = self.require_provider()
        if provider == EMULATOR:
            return
        check_key_shapes()
        if provider == AUTO:
            if not any(os.environ.get(api_key_env(p)) for p in PROVIDER_NAMES):
                raise MissingProviderKey(AUTO)
            return
        if not os.environ.get(api_key_env(provider)):
            raise MissingProviderKey(provider)

    def configured_providers(self) -> tuple[str, ...]:
        """Providers usable here: all of them in emulator mode, else those with a key in the env.

        Raises :class:`ProviderNotConfigured` when ``OMNI_PROVIDER`` is unset.
        """
        self.require_provider()
        if self.emulated:
            return PROVIDER_NAMES
        found = tuple(p for p in PROVIDER_NAMES if os.environ.get(api_key_env(p)))
        if self.provider == AUTO:  # auto routes over the sellers that have a key
            return found
        return found if self.provider in found else (*found, self.provider)


def check_key_shapes(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a malformed key in any provider's key variable, naming the variable, never the key.

    A line break, a space, a NUL or another control or non-ASCII character inside a key (a
    mis-pasted one) made httpx raise ``Illegal header value`` with the whole key in the message,
    which was then stored everywhere; checked here before anything is sent.
    """
    env = os.environ if environ is None else environ
    for provider in PROVIDER_NAMES:
        for name in API_KEY_ENV[provider]:
            value = (env.get(name) or "").strip()
            problem = key_problem(value) if value else None
            if problem is not None:
                raise InvalidApiKeyError(name, problem, provider=provider)


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError(f"{name}={raw!r} is not a positive whole number (bytes)")
    return int(raw)


def _max_requests() -> int:
    raw = os.environ.get("OMNI_MAX_REQUESTS", "").strip().replace("_", "").replace(",", "")
    if not raw:
        return MAX_REQUESTS
    if not raw.isdigit() or not 0 < int(raw) <= MAX_REQUESTS:
        raise ValueError(
            f"OMNI_MAX_REQUESTS={raw!r} is not a whole number from 1 to {MAX_REQUESTS:,} (the "
            "requests sensor registers a file's requests in one tick, and Dagster adds at most "
            f"~{MAX_REQUESTS:,} partitions per tick)"
        )
    return int(raw)


def _flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name}={raw!r} is not a yes/no value; allowed: 1, 0, true, false")


def _on_unknown(text: str) -> tuple[tuple[str, str], ...]:
    """``OMNI_ON_UNKNOWN="jimmyai=resubmit, crun=hold"`` as (provider, choice) pairs."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        provider, _, choice = (x.strip().lower() for x in part.partition("="))
        if provider not in PROVIDER_NAMES or choice not in ("hold", "resubmit"):
            raise ValueError(
                f"OMNI_ON_UNKNOWN: {part!r} is not provider=hold|resubmit "
                f"(providers: {', '.join(PROVIDER_NAMES)})"
            )
        out.append((provider, choice))
    return tuple(out)
