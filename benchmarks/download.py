"""Download: a 256 MB mp4 from the emulator into local storage and into S3 (SeaweedFS).

    .venv/bin/python -m benchmarks.download            # 64 MB and 256 MB, local and S3
    .venv/bin/python -m benchmarks.download --quick    # 16 MB, local only

Ours is :func:`omni_assets.materialize.materialize_record` on a claimed, finished task: the
stream into storage (temporary key, sha256 on the fly, commit), the PyAV probe of the stored
file, the sidecar and the registry write. Baselines: ``curl -s -o`` of the same URL (local), and
a plain ``s3fs`` ``put`` of the same bytes from a local file (S3). The emulator is a separate
process; the video is a real mp4 padded with a ``free`` box (``video_padding_bytes``).

Each operation runs in a fresh subprocess that measures its own peak RSS growth: the kernel's
high-water mark is reset (``/proc/self/clear_refs``) after imports and warm-up, and read back
(``VmHWM``) after the operation.

Targets: ours >= 0.8x the baseline's throughput; peak RSS growth < 64 MB at every size, and no
larger for 256 MB than for 64 MB (+ 16 MB of allocator noise).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from omni_assets.providers import get_provider
from omni_assets.providers.base import TaskState
from omni_assets.registry import PollUpdate, Registry

from .common import API_KEY, EmulatorProcess, Row, Scoreboard, cli, command, parser
from .fixtures import PROVIDER, register_keys, request_for

MB = 1024 * 1024
THROUGHPUT_TARGET = 0.8
RSS_LIMIT_MB = 64.0
RSS_SPREAD_MB = 16.0


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measured(operation: Any) -> dict[str, Any]:
    """Run ``operation()``; its wall time and the peak RSS growth it caused."""
    before = _rss_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    started = time.perf_counter()
    result = operation()
    seconds = time.perf_counter() - started
    peak = _rss_kb("VmHWM")
    return {"seconds": seconds, "rss_growth_mb": (peak - before) / 1024, "result": result}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measured operation, in this (fresh) process; ``spec`` says which."""
    if spec["mode"] == "ours":
        from omni_assets.materialize import materialize_record
        from omni_assets.storage import VideoStorage

        registry = Registry(spec["registry"])
        storage = VideoStorage(spec["storage_url"], spec["storage_options"])
        client = get_provider(PROVIDER, api_key=API_KEY, base_url=spec["base_url"])
        storage.exists(storage.video_path(spec["key"]))  # warm up: S3 session, credentials
        record = registry.get(spec["key"])
        assert record is not None

        def run() -> int:
            return materialize_record(registry, client, storage, record).size

        return _measured(run)
    if spec["mode"] == "s3put":
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, **spec["storage_options"])
        fs.ls(spec["bucket"])  # warm up
        return _measured(lambda: fs.put_file(spec["source"], spec["target"]))
    raise ValueError(spec["mode"])


def _in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.download", "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {spec['mode']} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _curl(url: str, dest: Path) -> dict[str, Any]:
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(dest), url], check=True)
    seconds = time.perf_counter() - started
    # What a script that verifies what it got would add (we hash while streaming).
    subprocess.run(["sha256sum", str(dest)], check=True, capture_output=True)
    hashed = time.perf_counter() - started
    return {"seconds": seconds, "with_sha256": hashed, "result": dest.stat().st_size}


def _ready_task(emulator: EmulatorProcess, registry: Registry, key: str, size: int) -> str:
    """A finished task whose video is ``size`` bytes, claimed for materializing; its URL."""
    emulator.configure(video_padding_bytes=size)
    client = get_provider(PROVIDER, api_key=API_KEY, base_url=emulator.base_url(PROVIDER))
    ref = client.submit(request_for(key), idempotency_key=f"bench-{key}")
    register_keys(registry, [key])
    registry.begin_submit(key, f"bench-{key}")
    registry.record_submitted(key, ref)
    while (status := client.status(ref)).state is not TaskState.SUCCEEDED:
        time.sleep(0.1)
    registry.record_polls([PollUpdate.from_status(key, status)])
    assert registry.claim([key], "bench") == [key]
    client.close()
    assert status.video_url
    httpx.head(status.video_url, timeout=60)  # the emulator renders a video once, on first use
    return status.video_url


def _mbps(size: int, seconds: float) -> float:
    return size / MB / seconds


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--worker", help=json.dumps(None))
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    sizes = [16 * MB] if args.quick else [64 * MB, 256 * MB]
    targets = ["local"] if args.quick else ["local", "s3"]
    repeats = 1 if args.quick else 3
    board = Scoreboard("download", command("benchmarks.download", argv or sys.argv[1:]))
    board.json_path = args.json
    with (
        EmulatorProcess("--generation-seconds", "0.2") as emulator,
        tempfile.TemporaryDirectory(prefix="omni-bench-dl-") as tmp,
    ):
        s3 = _start_s3() if "s3" in targets else None
        try:
            registry_url = f"sqlite:///{Path(tmp) / 'registry.db'}"
            registry = Registry(registry_url)
            growth: dict[str, list[float]] = {t: [] for t in targets}
            for size in sizes:
                for target in targets:
                    ours_runs, base_runs = [], []
                    baseline_name = "curl -o" if target == "local" else "s3fs put"
                    for rep in range(repeats):  # interleaved: both see the same machine
                        key = f"dl-{target}-{size // MB}-{rep}"
                        url = _ready_task(emulator, registry, key, size)
                        local = Path(tmp) / "curl.mp4"
                        base = _curl(url, local)  # also the source file of the S3 baseline
                        total = local.stat().st_size
                        spec: dict[str, Any] = {
                            "mode": "ours",
                            "registry": registry_url,
                            "base_url": emulator.base_url(PROVIDER),
                            "key": key,
                            "storage_url": str(Path(tmp) / "storage"),
                            "storage_options": {},
                        }
                        if s3 is not None and target == "s3":
                            spec["storage_url"] = s3.url("bench")
                            spec["storage_options"] = s3.storage_options
                            base = _in_subprocess(
                                {
                                    "mode": "s3put",
                                    "storage_options": s3.storage_options,
                                    "bucket": s3.bucket,
                                    "source": str(local),
                                    "target": f"{s3.bucket}/baseline/{key}.mp4",
                                }
                            )
                        ours = _in_subprocess(spec)
                        assert ours["result"] == total, (ours, total)
                        local.unlink()
                        ours_runs.append(ours)
                        base_runs.append(base)
                    ours_s = statistics.median(r["seconds"] for r in ours_runs)
                    base_s = statistics.median(r["seconds"] for r in base_runs)
                    rss = max(r["rss_growth_mb"] for r in ours_runs)
                    ratio = base_s / ours_s
                    growth[target].append(rss)
                    board.add(
                        Row(
                            f"download into {target} storage",
                            f"{total / MB:.0f} MB",
                            f"{_mbps(total, ours_s):.0f} MB/s ({ours_s:.2f} s)",
                            f"{_mbps(total, base_s):.0f} MB/s ({baseline_name})",
                            f"{ratio:.2f}x",
                            f">= {THROUGHPUT_TARGET:g}x",
                            ratio >= THROUGHPUT_TARGET,
                            data={
                                "ours": [r["seconds"] for r in ours_runs],
                                "baseline": [r["seconds"] for r in base_runs],
                            },
                        )
                    )
                    if target == "local":
                        hashed = statistics.median(r["with_sha256"] for r in base_runs)
                        board.add(
                            Row(
                                "download into local storage, vs a verifying script",
                                f"{total / MB:.0f} MB",
                                f"{_mbps(total, ours_s):.0f} MB/s ({ours_s:.2f} s)",
                                f"{_mbps(total, hashed):.0f} MB/s (curl -o; sha256sum)",
                                f"{hashed / ours_s:.2f}x",
                                "reported",
                                None,
                            )
                        )
                    base_rss = [r["rss_growth_mb"] for r in base_runs if "rss_growth_mb" in r]
                    board.add(
                        Row(
                            f"peak RSS growth, {target}",
                            f"{total / MB:.0f} MB",
                            f"{rss:.1f} MB",
                            f"{max(base_rss):.1f} MB ({baseline_name})" if base_rss else "-",
                            "-",
                            f"< {RSS_LIMIT_MB:g} MB",
                            rss < RSS_LIMIT_MB,
                        )
                    )
            for target, values in growth.items():
                if len(values) > 1:
                    spread = values[-1] - values[0]
                    board.add(
                        Row(
                            f"RSS growth independent of size, {target}",
                            " vs ".join(f"{s // MB} MB" for s in sizes),
                            f"{spread:+.1f} MB",
                            "-",
                            "-",
                            f"<= +{RSS_SPREAD_MB:g} MB",
                            spread <= RSS_SPREAD_MB,
                        )
                    )
            registry.close()
        finally:
            if s3 is not None:
                s3.close()
    return board.finish()


def _start_s3() -> Any:
    from omni_assets_tests.servers import SeaweedS3

    return SeaweedS3(bucket="omni-bench").start()


if __name__ == "__main__":
    cli(main)
