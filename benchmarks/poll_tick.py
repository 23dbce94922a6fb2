"""Poll tick: one ``omni_poll_sensor`` tick over N in-flight tasks vs a bare aiohttp loop.

    .venv/bin/python -m benchmarks.poll_tick            # N = 100, 1,000, 5,000 (+ 10,000 finished)
    .venv/bin/python -m benchmarks.poll_tick --quick    # N = 50, one repeat

Ours is :func:`omni_assets.sensors.poll_tick` (the sensor's whole body: stale-claim recovery,
the registry query for due tasks, concurrent status GETs, one registry write for every reading,
state counts, run requests) evaluated through ``build_sensor_context`` on a test instance, the
registry in SQLite on disk. The baseline is a fresh ``asyncio.run`` that GETs the same N task
statuses with aiohttp at the same concurrency (32) and parses the JSON, and nothing else. Both
hit the same emulator, a separate process, with every task still generating.

Targets: ours <= 4x the baseline; 1,000 in flight < 1 s; 5,000 < 5 s; a tick over 100 in flight
with 10,000 finished records costs about (<= 1.5x) what it costs with 100 in flight alone.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from dagster import SkipReason, build_sensor_context, instance_for_test

from omni_assets.pipeline.runtime import OmniRuntime
from omni_assets.providers import get_provider
from omni_assets.providers.polling import PollPolicy
from omni_assets.registry import Registry
from omni_assets.sensors import poll_tick
from omni_assets.storage import VideoStorage
from omni_assets_tests.servers import EmulatorProcess

from .common import API_KEY, Row, Scoreboard, cli, command, parser
from .fixtures import AUTH, PROVIDER, create_tasks, finished_records, in_flight_records

CONCURRENCY = 32
RATIO_TARGET = 4.0
ABSOLUTE_TARGETS = {1000: 1.0, 5000: 5.0}
FINISHED_TARGET = 1.5


def baseline(base_url: str, task_ids: list[str], concurrency: int = CONCURRENCY) -> int:
    """GET every task's status with aiohttp at ``concurrency``; returns how many answered 200."""

    async def run() -> int:
        semaphore = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(base_url=base_url, connector=connector) as session:

            async def one(task_id: str) -> int:
                async with (
                    semaphore,
                    session.get(f"/apimart/v1/tasks/{task_id}", headers=AUTH) as r,
                ):
                    await r.json()
                    return r.status

            statuses = await asyncio.gather(*(one(t) for t in task_ids))
        return sum(1 for s in statuses if s == 200)

    return asyncio.run(run())


class Tick:
    """A registry, a runtime and a Dagster instance; ``run()`` evaluates one poll tick."""

    def __init__(self, folder: Path, emulator: EmulatorProcess, instance: Any) -> None:
        self.registry = Registry(f"sqlite:///{folder / 'registry.db'}")
        client = get_provider(PROVIDER, api_key=API_KEY, base_url=emulator.base_url(PROVIDER))
        self.runtime = OmniRuntime(
            registry=self.registry,
            storage=VideoStorage(str(folder / "storage")),
            providers={PROVIDER: client},
            default_provider=PROVIDER,
            # Due again right away, so every repeat polls every task; concurrency as the baseline.
            policies={PROVIDER: PollPolicy(interval_s=0.0, jitter=0.0, concurrency=CONCURRENCY)},
        )
        self.instance = instance
        self.polled = 0

    def due(self) -> None:
        """Wait until every task is due again (a poll schedules the next >= 50 ms later)."""
        time.sleep(0.06)

    def run(self) -> None:
        self.polled = -1
        with build_sensor_context(instance=self.instance, sensor_name="omni_poll_sensor") as ctx:
            result = poll_tick(ctx, self.runtime)
        assert isinstance(result, SkipReason), result  # nothing finished: no runs requested
        self.polled = int(str(result.skip_message).split()[1])

    def close(self) -> None:
        self.registry.close()
        for client in self.runtime.providers.values():
            client.close()


def _seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    sizes = [50] if args.quick else [100, 1000, 5000]
    finished = 200 if args.quick else 10_000
    repeats = 1 if args.quick else 5
    board = Scoreboard("poll_tick", command("benchmarks.poll_tick", argv or sys.argv[1:]))
    board.json_path = args.json
    with (
        EmulatorProcess(generation_seconds=86400) as emulator,
        tempfile.TemporaryDirectory(prefix="omni-bench-poll-") as tmp,
        instance_for_test(temp_dir=tmp) as instance,
    ):
        small: float | None = None
        for n in sizes:
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            task_ids = create_tasks(emulator.url, n)
            tick = Tick(folder, emulator, instance)
            in_flight_records(tick.registry, "inflight", task_ids)
            tick.run()  # warm-up: imports, first connections, SQLite page cache
            baseline(emulator.url, task_ids)
            ours_t: list[float] = []
            base_t: list[float] = []
            for _ in range(repeats):  # interleaved, so both see the same machine
                tick.due()
                ours_t.append(_seconds(tick.run))
                base_t.append(_seconds(functools.partial(baseline, emulator.url, task_ids)))
            assert tick.polled == n, f"polled {tick.polled} of {n}"
            ours, base = statistics.median(ours_t), statistics.median(base_t)
            ratio = ours / base
            ok = ratio <= RATIO_TARGET
            target = f"<= {RATIO_TARGET:g}x"
            limit = ABSOLUTE_TARGETS.get(n)
            if limit is not None:
                ok = ok and ours < limit
                target += f", < {limit:g} s"
            board.add(
                Row(
                    "poll tick vs aiohttp loop",
                    f"{n:,} in flight",
                    f"{ours:.3f} s",
                    f"{base:.3f} s",
                    f"{ratio:.2f}x",
                    target,
                    ok,
                    data={"ours": ours_t, "baseline": base_t},
                )
            )
            if n == sizes[0]:
                small = ours
                # The same in-flight tasks plus many finished records: the tick must not notice.
                finished_records(tick.registry, "done", finished)
                with_done_t = []
                for _ in range(repeats):
                    tick.due()
                    with_done_t.append(_seconds(tick.run))
                    assert tick.polled == n, f"polled {tick.polled} of {n}"
                with_done = (statistics.median(with_done_t), with_done_t)
                ratio = with_done[0] / small
                board.add(
                    Row(
                        "poll tick, finished records ignored",
                        f"{n:,} in flight + {finished:,} finished",
                        f"{with_done[0]:.3f} s",
                        f"{small:.3f} s ({n} in flight alone)",
                        f"{ratio:.2f}x",
                        f"<= {FINISHED_TARGET:g}x",
                        ratio <= FINISHED_TARGET,
                        data={"ours": with_done[1]},
                    )
                )
            tick.close()
    return board.finish()


if __name__ == "__main__":
    cli(main)
