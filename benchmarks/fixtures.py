"""Cheap set-up for benchmarks: many tasks at the emulator, and registry records in any state.

Tasks are created with the emulator's own create endpoint (concurrently, with aiohttp); records
are put in the registry through its public API only, exactly as submit and poll would leave them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aiohttp

from omni_assets.providers.base import TaskRef, TaskState, TaskStatus
from omni_assets.registry import PollUpdate, RegisterItem, Registry
from omni_assets.request import VideoRequest

__all__ = [
    "MODEL",
    "PROVIDER",
    "create_tasks",
    "finished_records",
    "in_flight_records",
    "register_keys",
    "register_pending",
    "request_for",
]

PROVIDER = "apimart"
MODEL = "Omni-Flash-Ext"
AUTH = {"Authorization": "Bearer bench-not-a-secret"}


def request_for(key: str) -> VideoRequest:
    """A valid APIMart request whose partition key is ``key``."""
    return VideoRequest(
        id=key, prompt=f"benchmark {key}", provider=PROVIDER, model=MODEL, duration=6
    )


def create_tasks(
    base_url: str,
    n: int,
    *,
    concurrency: int = 32,
    prompt: str | None = None,
    api_key: str | None = None,
) -> list[str]:
    """Create ``n`` tasks at the emulator's APIMart dialect; returns their task ids.

    ``prompt`` gives every task the same one: the emulator then renders one video, not ``n``.
    ``api_key``: the account they belong to (the emulator shows a task only to its own key),
    e.g. ``EMULATOR_API_KEY`` for tasks a deployment in emulator mode is to poll.
    """
    auth = {"Authorization": f"Bearer {api_key}"} if api_key else AUTH

    async def run() -> list[str]:
        semaphore = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(base_url=base_url, connector=connector) as session:

            async def one(i: int) -> str:
                body = {"model": MODEL, "prompt": prompt or f"benchmark task {i}", "duration": 6}
                async with (
                    semaphore,
                    session.post("/apimart/v1/videos/generations", json=body, headers=auth) as r,
                ):
                    r.raise_for_status()
                    return str((await r.json())["data"][0]["task_id"])

            return await asyncio.gather(*(one(i) for i in range(n)))

    return asyncio.run(run())


def register_keys(registry: Registry, keys: Sequence[str]) -> None:
    """Register one valid request per key (pending), in batches."""
    items = [RegisterItem.for_request(request_for(key), PROVIDER, MODEL) for key in keys]
    for start in range(0, len(items), 5000):
        registry.register(items[start : start + 5000])


def register_pending(registry: Registry, prefix: str, n: int) -> list[str]:
    """``n`` valid requests registered as pending (what the requests sensor leaves)."""
    keys = [f"{prefix}-{i:06d}" for i in range(n)]
    register_keys(registry, keys)
    return keys


def in_flight_records(registry: Registry, prefix: str, task_ids: Sequence[str]) -> list[str]:
    """Register one record per task id and move it to in_flight (due for a poll now)."""
    keys = [f"{prefix}-{i:06d}" for i in range(len(task_ids))]
    register_keys(registry, keys)
    now = time.time()
    for key, task_id in zip(keys, task_ids, strict=True):
        idem = f"bench-{key}"
        registry.begin_submit(key, idem)
        registry.record_submitted(
            key, TaskRef(PROVIDER, task_id, MODEL, submitted_at=now, idempotency_key=idem)
        )
    return keys


def finished_records(registry: Registry, prefix: str, n: int) -> list[str]:
    """``n`` records that went all the way to materialized (no emulator tasks behind them)."""
    keys = in_flight_records(registry, prefix, [f"task_done_{prefix}_{i}" for i in range(n)])
    now = time.time()
    done = TaskStatus(
        provider=PROVIDER,
        task_id="-",
        state=TaskState.SUCCEEDED,
        raw_status="completed",
        progress=100,
        video_url="http://127.0.0.1:9/files/x.mp4",
        expires_at=now + 86_400,
    )
    registry.record_polls([PollUpdate.from_status(k, done, now=now) for k in keys])
    registry.claim(keys, "bench-run")
    for key in keys:
        registry.record_materialized(key, f"file:///bench/{key}.mp4", "0" * 64, 1)
    return keys
