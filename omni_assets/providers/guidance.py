"""What each provider's own documents say to do after an ambiguous answer to a create, as data.

An answer such as a 500 to a paid POST may come after the task was created, so by default it
makes the submission ``unknown`` and nothing is sent again without the user. Where a provider
documents that such an answer is to be retried, that guidance is followed here, bounded as the
document says. Providers that document nothing keep ``unknown`` (the user then chooses, per
provider, ``hold`` or ``resubmit``: see ``pipeline/submit.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["DOCUMENTED_CREATE_RETRIES", "NOT_CHARGED_ON_FAILURE", "CreateRetry"]


@dataclass(frozen=True)
class CreateRetry:
    """Retry a create answered with one of ``statuses``, up to ``attempts`` in all."""

    statuses: frozenset[int]
    attempts: int
    source: str


#: provider -> its documented create retry (the delays are the client's short backoff).
DOCUMENTED_CREATE_RETRIES: Mapping[str, CreateRetry] = MappingProxyType(
    {
        "toapis": CreateRetry(
            statuses=frozenset({500}),
            attempts=3,
            source="seed 004 (ToAPIs gemini_omni, Common Errors): '500 internal_error: Transient "
            "upstream error ... Retry 2-3 times with short delays; escalate if persistent'",
        ),
    }
)


#: provider -> where it says a generation that ends ``failed`` is not charged. Elsewhere only the
#: provider's own figure for the failed task (APIMart ``cost`` 0, CRUN ``credits`` 0) proves it.
NOT_CHARGED_ON_FAILURE: Mapping[str, str] = MappingProxyType(
    {
        "toapis": "seed 004 (ToAPIs FAQ): 'An image or video task failed, but the user was still "
        "charged' is explained as a request sent through a chat endpoint, not the video task API",
    }
)
