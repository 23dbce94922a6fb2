"""Which environment variables hold each provider's key and base URL.

Everyone reads ``<PROVIDER>_API_KEY`` and ``<PROVIDER>_BASE_URL``, except that Google's key comes
from ``GEMINI_API_KEY`` (then ``GOOGLE_API_KEY``), the names Google's own SDKs and docs use, so
an existing Gemini key works as it is (docs/providers-google.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

from .capabilities import PROVIDER_NAMES

__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "api_key_env"]

#: provider -> the variables its key may come from; the first one set wins.
API_KEY_ENV: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: (f"{name.upper()}_API_KEY",) for name in PROVIDER_NAMES}
    | {"google": ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
)

#: provider -> the variable that overrides its base URL.
BASE_URL_ENV: Mapping[str, str] = MappingProxyType(
    {name: f"{name.upper()}_BASE_URL" for name in PROVIDER_NAMES}
)


def api_key_env(provider: str, environ: Mapping[str, str] | None = None) -> str:
    """The variable to read ``provider``'s key from: the first one set, else the first name."""
    names = API_KEY_ENV.get(provider, (f"{provider.upper()}_API_KEY",))
    env = os.environ if environ is None else environ
    return next((name for name in names if env.get(name)), names[0])
