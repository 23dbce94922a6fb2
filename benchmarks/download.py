"""Download: a 256 MB mp4 from the emulator into local storage and into S3 (SeaweedFS).

    .venv/bin/python -m benchmarks.download            # 64 MB and 256 MB, local and S3
    .venv/bin/python -m benchmarks.download --quick    # 16 MB, local only

Ours is :func:`omni_assets.pipeline.materialize.materialize_record` on a claimed, finished task: the
stream into storage (temporary key, sha256 on the fly, commit), the PyAV probe of the stored
file, the sidecar and the registry write. The emulator is a separate process; the video is a real
mp4 padded with a ``free`` box (``video_padding_bytes``). Baselines, interleaved with ours:

* local: a hand-written httpx script doing the same work (stream the body to a file, sha256 of
  every byte) and the same script on aiohttp (reported); ``curl -o`` (no hash, reported beside
  the CPU budget that bounds any downloader that hashes against it on this machine); ``curl -o``
  then ``sha256sum``;
* S3: a plain ``s3fs`` ``put`` of the same bytes from a local file.

Each Python operation runs in a fresh subprocess that measures its own peak RSS growth: the
kernel's high-water mark is reset (``/proc/self/clear_refs``) after imports and warm-up, and read
back (``VmHWM``) after the operation.

Targets: ours >= 0.8x the throughput of the script (local) and of s3fs ``put`` (S3); peak RSS
growth < 64 MB at every size, and no larger for 256 MB than for 64 MB (+ 16 MB of allocator
noise). Against ``curl -o`` the ratio is reported beside its ceiling (docs/benchmarks.md, "Targets
changed, and why").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from omni_assets.providers import get_provider
from omni_assets.providers.base import TaskState
from omni_assets.registry import PollUpdate, Registry
from omni_assets_tests.servers import EmulatorProcess

from .common import API_KEY, Row, Scoreboard, cli, command, parser
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
        from omni_assets.pipeline.materialize import materialize_record
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
    if spec["mode"] == "script":
        with httpx.Client(timeout=60) as http:  # built before the clock, as ours is
            return _measured(lambda: _script_download(http, spec["url"], spec["dest"]))
    if spec["mode"] == "aiohttp":
        return _measured(lambda: asyncio.run(_aiohttp_download(spec["url"], spec["dest"])))
    if spec["mode"] == "s3put":
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, **spec["storage_options"])
        fs.ls(spec["bucket"])  # warm up
        return _measured(lambda: fs.put_file(spec["source"], spec["target"]))
    raise ValueError(spec["mode"])


def _script_download(client: httpx.Client, url: str, dest: str) -> int:
    """What a user would write by hand: stream the body to a file, hashing every byte."""
    digest, size = hashlib.sha256(), 0
    with client.stream("GET", url) as response:
        response.raise_for_status()
        with open(dest, "wb") as out:
            for piece in response.iter_bytes():
                out.write(piece)
                digest.update(piece)
                size += len(piece)
    return size


async def _aiohttp_download(url: str, dest: str) -> int:
    """The same script on the fastest Python HTTP client (aiohttp's C parser)."""
    import aiohttp

    digest, size = hashlib.sha256(), 0
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        with open(dest, "wb") as out:
            async for piece in response.content.iter_any():
                out.write(piece)
                digest.update(piece)
                size += len(piece)
    return size


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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _curl(url: str, dest: Path, emulator_pid: int) -> dict[str, Any]:
    cpu, served = _children_cpu(), _cpu_seconds(emulator_pid)
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(dest), url], check=True)
    seconds = time.perf_counter() - started
    cpu, served = _children_cpu() - cpu, _cpu_seconds(emulator_pid) - served
    # What a script that verifies what it got would add (we hash while streaming).
    subprocess.run(["sha256sum", str(dest)], check=True, capture_output=True)
    hashed = time.perf_counter() - started
    return {
        "seconds": seconds,
        "with_sha256": hashed,
        "curl_cpu": cpu,
        "emulator_cpu": served,
        "result": dest.stat().st_size,
    }


def _sha256_cpu(size: int) -> float:
    """CPU seconds hashlib's sha256 needs for ``size`` bytes (1 MB blocks, in cache)."""
    block, digest = bytes(MB), hashlib.sha256()
    started = time.process_time()
    for _ in range(size // MB):
        digest.update(block)
    return time.process_time() - started


def _hashing_ceiling(curl_runs: list[dict[str, Any]], size: int) -> tuple[float, str]:
    """The best ratio to ``curl -o`` any downloader that also hashes can reach on this machine.

    curl and the emulator keep the cores busy for most of curl's wall time; sha256 adds its CPU
    on top. Spread perfectly over every core, the work takes at least (curl CPU + emulator CPU
    + sha256 CPU) / cores: the ceiling is curl's time over that.
    """
    cores = os.cpu_count() or 1
    wall = statistics.median(r["seconds"] for r in curl_runs)
    curl_cpu = statistics.median(r["curl_cpu"] for r in curl_runs)
    served = statistics.median(r["emulator_cpu"] for r in curl_runs)
    sha = _sha256_cpu(size)
    floor = max(wall, (curl_cpu + served + sha) / cores)
    how = (
        f"(curl {curl_cpu:.2f} + emulator {served:.2f} + sha256 {sha:.2f}) CPU-s / {cores} cores "
        f"= {floor:.2f} s"
    )
    return wall / floor, how


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
        EmulatorProcess(generation_seconds=0.2) as emulator,
        tempfile.TemporaryDirectory(prefix="omni-bench-dl-") as tmp,
    ):
        registry_url = f"sqlite:///{Path(tmp) / 'registry.db'}"
        registry = Registry(registry_url)
        for target in targets:
            # The S3 server runs for the S3 rounds only: its background work (it keeps
            # compacting after uploads) would otherwise slow whatever is measured next.
            with _s3_server() if target == "s3" else contextlib.nullcontext() as s3:
                growth = []
                for size in sizes:
                    runs = [  # interleaved: ours and the baselines see the same machine
                        _one_round(
                            emulator, registry, registry_url, Path(tmp), s3, target, size, rep
                        )
                        for rep in range(repeats)
                    ]
                    growth.append(max(r["ours"]["rss_growth_mb"] for r in runs))
                    for row in _local_rows(runs, size) if target == "local" else _s3_rows(runs):
                        board.add(row)
            if len(growth) > 1:
                spread = growth[-1] - growth[0]
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
    return board.finish()


def _one_round(
    emulator: EmulatorProcess,
    registry: Registry,
    registry_url: str,
    tmp: Path,
    s3: Any,
    target: str,
    size: int,
    rep: int,
) -> dict[str, dict[str, Any]]:
    """One download by ours and by each baseline of ``target``, of one fresh finished task."""
    key = f"dl-{target}-{size // MB}-{rep}"
    url = _ready_task(emulator, registry, key, size)
    local = tmp / "curl.mp4"
    assert emulator.pid is not None
    # Each measured operation starts with no dirty pages left by the one before (the kernel's
    # write-back of an earlier 256 MB file would land in the middle of it).
    os.sync()
    out: dict[str, dict[str, Any]] = {"curl": _curl(url, local, emulator.pid)}
    total = local.stat().st_size
    spec: dict[str, Any] = {
        "mode": "ours",
        "registry": registry_url,
        "base_url": emulator.base_url(PROVIDER),
        "key": key,
        "storage_url": str(tmp / "storage"),
        "storage_options": {},
    }
    if target == "local":
        for mode in ("script", "aiohttp"):
            os.sync()
            out[mode] = _in_subprocess({"mode": mode, "url": url, "dest": str(tmp / mode)})
            assert out[mode]["result"] == total
            os.unlink(tmp / mode)
    else:
        spec["storage_url"] = s3.url("bench")
        spec["storage_options"] = s3.storage_options
        put = {
            "mode": "s3put",
            "storage_options": s3.storage_options,
            "bucket": s3.bucket,
            "source": str(local),
            "target": f"{s3.bucket}/baseline/{key}.mp4",
        }
        os.sync()
        out["s3put"] = _in_subprocess(put)
    os.sync()
    out["ours"] = _in_subprocess(spec)
    assert out["ours"]["result"] == total, (out["ours"], total)
    local.unlink()
    return out


def _median(runs: list[dict[str, dict[str, Any]]], who: str, field: str = "seconds") -> float:
    return float(statistics.median(r[who][field] for r in runs))


def _throughput_row(
    runs: list[dict[str, dict[str, Any]]], name: str, baseline: str, label: str, target: bool
) -> Row:
    total = runs[0]["ours"]["result"]
    ours_s, base_s = _median(runs, "ours"), _median(runs, baseline)
    ratio = base_s / ours_s
    return Row(
        name,
        f"{total / MB:.0f} MB",
        f"{_mbps(total, ours_s):.0f} MB/s ({ours_s:.2f} s)",
        f"{_mbps(total, base_s):.0f} MB/s ({label})",
        f"{ratio:.2f}x",
        f">= {THROUGHPUT_TARGET:g}x" if target else "reported",
        ratio >= THROUGHPUT_TARGET if target else None,
        data={
            "ours": [r["ours"]["seconds"] for r in runs],
            "baseline": [r[baseline]["seconds"] for r in runs],
        },
    )


def _rss_row(runs: list[dict[str, dict[str, Any]]], target: str, baseline: str | None) -> Row:
    total = runs[0]["ours"]["result"]
    rss = max(r["ours"]["rss_growth_mb"] for r in runs)
    base = (
        f"{max(r[baseline]['rss_growth_mb'] for r in runs):.1f} MB ({baseline})"
        if baseline
        else "-"
    )
    return Row(
        f"peak RSS growth, {target}",
        f"{total / MB:.0f} MB",
        f"{rss:.1f} MB",
        base,
        "-",
        f"< {RSS_LIMIT_MB:g} MB",
        rss < RSS_LIMIT_MB,
    )


def _local_rows(runs: list[dict[str, dict[str, Any]]], size: int) -> list[Row]:
    total = runs[0]["ours"]["result"]
    ours_s = _median(runs, "ours")
    curl = _throughput_row(
        runs, "download into local storage, vs curl -o", "curl", "curl -o", False
    )
    ceiling, how = _hashing_ceiling([r["curl"] for r in runs], size)
    hashed = _median(runs, "curl", "with_sha256")
    return [
        _throughput_row(
            runs,
            "download into local storage, vs a hand-written httpx script (stream + sha256)",
            "script",
            "httpx script",
            True,
        ),
        _throughput_row(
            runs,
            "download into local storage, vs the same script on aiohttp",
            "aiohttp",
            "aiohttp script",
            False,
        ),
        curl,
        Row(
            "ceiling vs curl -o of any downloader that computes sha256, on this machine",
            f"{total / MB:.0f} MB",
            f"{ceiling:.2f}x",
            how,
            f"ours {curl.ratio}",
            "reported",
            None,
        ),
        Row(
            "download into local storage, vs a verifying script",
            f"{total / MB:.0f} MB",
            f"{_mbps(total, ours_s):.0f} MB/s ({ours_s:.2f} s)",
            f"{_mbps(total, hashed):.0f} MB/s (curl -o; sha256sum)",
            f"{hashed / ours_s:.2f}x",
            "reported",
            None,
        ),
        _rss_row(runs, "local", None),
    ]


def _s3_rows(runs: list[dict[str, dict[str, Any]]]) -> list[Row]:
    return [
        _throughput_row(runs, "download into S3 storage", "s3put", "s3fs put", True),
        _rss_row(runs, "s3", "s3put"),
    ]


@contextlib.contextmanager
def _s3_server() -> Iterator[Any]:
    from omni_assets_tests.servers import SeaweedS3

    server = SeaweedS3(bucket="omni-bench").start()
    try:
        yield server
    finally:
        server.close()


if __name__ == "__main__":
    cli(main)
