"""Replaying an interrupted submission is decided by the provider's own data, nowhere else."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest

from omni_assets.pipeline.submit import recover_stale_submits
from omni_assets.providers import PROVIDER_NAMES, get_provider
from omni_assets.registry import RegisterItem, Registry
from omni_assets.request import VideoRequest

REQUEST = VideoRequest(id="fox", prompt="a fox in the snow")


def _sends_an_idempotency_key(provider: str) -> bool:
    sent: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(400, json={"error": {"message": "refused"}})

    client = get_provider(provider, api_key="k", transport=httpx.MockTransport(refuse))
    with contextlib.suppress(Exception):
        client.submit(REQUEST)
    return "idempotency-key" in sent[0].headers


@pytest.mark.parametrize("provider", PROVIDER_NAMES)
def test_an_interrupted_submit_is_replayed_exactly_where_the_client_sends_a_key(
    provider: str, tmp_path: Path
) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    client = get_provider(provider, api_key="k")
    registry.register([RegisterItem.for_request(REQUEST, provider, client.model)])
    assert registry.begin_submit("fox", "idem-fox")
    outcome = recover_stale_submits(registry, 0.0)["fox"]
    assert outcome == ("replay" if _sends_an_idempotency_key(provider) else "unknown")
