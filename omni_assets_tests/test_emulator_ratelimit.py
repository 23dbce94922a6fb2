"""The emulator's per-account rate limit (``rate_limit_per_s``): a token bucket answering 429."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from omni_assets.emulator import EmulatorConfig
from omni_assets.emulator.app import create_app
from omni_assets.emulator.ratelimit import TokenBuckets

from .test_emulator_support import BODIES, CREATE_PATHS, auth


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_rate_with_one_second_of_burst() -> None:
    buckets, account = TokenBuckets(), ("apimart", "k")
    assert [buckets.take(account, 5, 0.0) for _ in range(5)] == [0.0] * 5
    assert buckets.take(account, 5, 0.0) == pytest.approx(0.2)
    assert buckets.take(account, 5, 0.2) == 0.0  # one token back after 1/rate seconds
    assert buckets.take(("apimart", "other"), 5, 0.2) == 0.0  # accounts are separate
    assert buckets.take(account, 0, 0.2) == 0.0  # 0 = no limit


@pytest.mark.parametrize("provider", ["jimmyai", "apimart", "toapis", "crun"])
def test_calls_beyond_the_limit_get_429_with_retry_after_and_create_nothing(
    provider: str,
) -> None:
    clock = FakeClock()
    app = create_app(EmulatorConfig(rate_limit_per_s=2, generation_seconds=1), clock=clock)
    transport = httpx.ASGITransport(app=app)

    async def creates(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
            path, body = CREATE_PATHS[provider], BODIES[provider]
            return [
                await http.post(f"/{provider}{path}", json=body, headers=auth(provider))
                for _ in range(n)
            ]

    first = asyncio.run(creates(3))
    assert [r.status_code for r in first] == [200, 200, 429]
    assert first[2].headers["retry-after"] == "1"
    clock.now += 0.5  # one token back at 2 per second
    assert [r.status_code for r in asyncio.run(creates(2))] == [200, 429]
    audit = app.state.emulator.audit.snapshot()
    assert audit["counts"]["tasks"] == 3
    assert [f["fault"] for f in audit["faults"]] == ["rate_limit", "rate_limit"]
