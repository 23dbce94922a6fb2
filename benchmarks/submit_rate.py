"""Submission under a rate limit: 1,000 submissions to an emulator allowing 20 requests/s.

    .venv/bin/python -m benchmarks.submit_rate            # 1,000 submissions (~50 s)
    .venv/bin/python -m benchmarks.submit_rate --quick    # 40 submissions

The emulator (a separate process) enforces ``rate_limit_per_s=20`` per account with a token
bucket, answering 429 + Retry-After beyond it. Ours is
:func:`omni_assets.pipeline.submit.submit_pending` over N pending registry records (SQLite on
disk) with ``SubmitLimits(max_in_flight=N, rate_per_s=20)``: intent before each POST, task id
after, paced by ``submit.RateLimiter``.

Targets: achieved rate >= 90% of the limit; < 1% of the POSTs answered 429.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from omni_assets.pipeline.submit import SubmitLimits, submit_pending
from omni_assets.providers import get_provider
from omni_assets.registry import RecordState, Registry
from omni_assets.storage import VideoStorage
from omni_assets_tests.servers import EmulatorProcess

from .common import API_KEY, Row, Scoreboard, cli, command, parser
from .fixtures import PROVIDER, register_pending

LIMIT = 20.0
RATE_TARGET = 0.9
REFUSED_TARGET = 0.01


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    n = 40 if args.quick else 1000
    board = Scoreboard("submit_rate", command("benchmarks.submit_rate", argv or sys.argv[1:]))
    board.json_path = args.json
    with (
        EmulatorProcess(generation_seconds=86400, rate_limit_per_s=LIMIT) as emulator,
        tempfile.TemporaryDirectory() as tmp,
    ):
        registry = Registry(f"sqlite:///{Path(tmp) / 'registry.db'}")
        keys = register_pending(registry, "submit", n)
        client = get_provider(PROVIDER, api_key=API_KEY, base_url=emulator.base_url(PROVIDER))
        started = time.perf_counter()
        report = submit_pending(
            registry,
            {PROVIDER: client},
            VideoStorage(str(Path(tmp) / "storage")),
            limits={PROVIDER: SubmitLimits(max_in_flight=n, rate_per_s=LIMIT)},
        )
        elapsed = time.perf_counter() - started
        in_flight = registry.counts()[RecordState.IN_FLIGHT]
        posts = [
            r
            for r in emulator.audit()["requests"]
            if r["method"] == "POST" and r["path"].endswith("/videos/generations")
        ]
        refused = sum(1 for r in posts if r["status"] == 429)
        client.close()
        registry.close()
    assert len(report.submitted) == in_flight == len(keys), (report, in_flight)
    rate = n / elapsed
    share = refused / max(1, len(posts))
    board.add(
        Row(
            "submission rate under a 20/s limit",
            f"{n:,} submissions",
            f"{rate:.2f}/s ({elapsed:.1f} s)",
            f"{LIMIT:g}/s (the limit)",
            f"{rate / LIMIT:.1%} of the limit",
            f">= {RATE_TARGET:.0%}",
            rate / LIMIT >= RATE_TARGET,
        )
    )
    board.add(
        Row(
            "POSTs answered 429",
            f"{len(posts):,} POSTs",
            f"{refused} ({share:.2%})",
            "0",
            f"{share:.2%}",
            f"< {REFUSED_TARGET:.0%}",
            share < REFUSED_TARGET,
        )
    )
    return board.finish()


if __name__ == "__main__":
    cli(main)
