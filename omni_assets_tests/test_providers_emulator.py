"""The clients against the emulator over real HTTP: happy paths, zero-HTTP refusals, big files.

The emulator encodes each provider's contract independently of the capability tables, so a body
it accepts is a body built the way the provider pages say.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import av
import psutil
import pytest

from omni_assets.emulator import EmulatorServer
from omni_assets.providers import ProviderClient, TaskRef, TaskState, get_provider, wait
from omni_assets.providers.errors import InvalidRequestError, SubmitOutcomeUnknownError
from omni_assets.request import GenerationMode, VideoRequest

from .test_capabilities import INVALID, _fill
from .test_capabilities import files as files  # the fixture, shared
from .test_providers_support import FAST, KEY

PROMPT = "a paper boat drifting down a rainy street, cinematic"


def png(path: Path, width: int = 8, height: int = 8) -> str:
    """A small valid PNG, written without any imaging library."""
    rows = b"".join(
        b"\x00" + b"".join(bytes([(x * 31) % 256, (y * 31) % 256, 200]) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return str(path)


def client(emulator: EmulatorServer, provider: str, model: str | None = None) -> ProviderClient:
    return get_provider(
        provider, api_key=KEY, base_url=emulator.base_url(provider), model=model, options=FAST
    )


def finish(c: ProviderClient, ref: TaskRef) -> Any:
    return wait(c, ref, deadline=30, interval=0.1, jitter=0.1)


def playable(path: Path) -> float:
    with av.open(str(path)) as container:
        assert container.streams.video, "no video stream"
        return float(container.duration or 0) / 1_000_000


@pytest.fixture
def video_url(fresh_emulator: EmulatorServer) -> str:
    """The URL of a finished emulator video, to use as a reference video."""
    c = client(fresh_emulator, "apimart")
    return str(finish(c, c.submit(VideoRequest(prompt="source clip"))).video_url)


def roundtrip(c: ProviderClient, request: VideoRequest, tmp_path: Path, **kw: Any) -> Path:
    """upload local images → submit → wait → download → probe; returns the mp4."""
    urls = tuple(c.upload_image(i).url if not i.startswith("http") else i for i in request.images)
    ref = c.submit(request, image_urls=urls, **kw)
    status = finish(c, ref)
    assert status.state is TaskState.SUCCEEDED and status.expires_at
    target = tmp_path / f"{c.name}-{ref.task_id}.mp4"
    result = c.download(str(status.video_url), str(target))
    assert result.size == target.stat().st_size
    assert result.sha256 == hashlib.sha256(target.read_bytes()).hexdigest()
    assert playable(target) > 0
    return target


HAPPY: list[tuple[str, str | None, dict[str, Any]]] = [
    ("jimmyai", None, {"duration": 4, "resolution": "1080p"}),
    (
        "jimmyai",
        None,
        {"images": ["<png>"], "mode": GenerationMode.FRAME, "aspect_ratio": "portrait"},
    ),
    ("jimmyai", None, {"images": ["<png>"] * 3, "video": "<video>"}),
    ("jimmyai", "omni-10s", {"images": ["<png>"] * 2, "video": "<video>"}),
    ("jimmyai", "gemini-omni", {"aspect_ratio": "9:16", "resolution": "4k", "duration": 10}),
    ("apimart", None, {}),
    ("apimart", None, {"images": ["<png>"] * 4, "video": "<video>", "aspect_ratio": "9:16"}),
    ("apimart", "Omni-Flash-Ext", {"duration": 8, "images": ["<png>"] * 3}),
    ("apimart", "Omni-Flash-Ext", {"video": "<video>", "resolution": "1080p"}),
    ("toapis", None, {"duration": 4, "resolution": "1080p"}),
    ("toapis", None, {"images": ["<png>"], "aspect_ratio": "9:16"}),
    ("toapis", None, {"images": ["<png>"] * 3}),
    ("toapis", "gemini_omni", {"duration": 10, "aspect_ratio": "9:16"}),
    ("crun", None, {"duration": 6, "resolution": "720p"}),
    ("crun", None, {"images": ["https://example.com/a.png"] * 5, "video": "<video>"}),
    ("crun", None, {"images": ["https://example.com/a.png"] * 7, "aspect_ratio": "9:16"}),
]


@pytest.mark.parametrize(("provider", "model", "fields"), HAPPY)
def test_happy_path(
    fresh_emulator: EmulatorServer,
    video_url: str,
    tmp_path: Path,
    provider: str,
    model: str | None,
    fields: dict[str, Any],
) -> None:
    image = png(tmp_path / "ref.png")
    values = dict(fields)
    values["images"] = [image if i == "<png>" else i for i in values.get("images", [])]
    if values.get("video") == "<video>":
        values["video"] = video_url
    request = VideoRequest(prompt=PROMPT, **values)
    with client(fresh_emulator, provider, model) as c:
        roundtrip(c, request, tmp_path)
    counts = fresh_emulator.audit()["counts"]
    assert counts["tasks"] == 2  # the reference clip and this one
    local = [i for i in request.images if not i.startswith("http")]
    assert counts["uploads"] == len(local)


@pytest.mark.parametrize("provider", ["jimmyai", "apimart", "crun"])
def test_extension(fresh_emulator: EmulatorServer, tmp_path: Path, provider: str) -> None:
    c = client(fresh_emulator, provider)
    parent_ref = c.submit(VideoRequest(id="parent", prompt="a boat", aspect_ratio="9:16"))
    parent = finish(c, parent_ref)
    child = VideoRequest(prompt="the boat sails on", extends="parent", aspect_ratio="9:16")
    if provider == "apimart":
        # the emulator checks that the parent exists and has completed
        path = roundtrip(c, child, tmp_path, extend_from=parent_ref)
        sent = c.build_body(child, extend_from=parent_ref)
        assert sent["extend_from_task_id"] == parent_ref.task_id
    else:
        path = roundtrip(c, child, tmp_path, video_url=parent.video_url)
    assert playable(path) > 0


def test_toapis_cannot_extend(fresh_emulator: EmulatorServer) -> None:
    c = client(fresh_emulator, "toapis")
    with pytest.raises(InvalidRequestError, match="extends"):
        c.submit(VideoRequest(prompt="x", extends="parent"))
    assert fresh_emulator.audit()["counts"]["requests"] == 0


@pytest.mark.parametrize(
    ("provider", "model", "fields", "field", "allowed"),
    INVALID,
    ids=[f"{p}-{m or 'default'}-{f}-{i}" for i, (p, m, _, f, _a) in enumerate(INVALID)],
)
def test_invalid_requests_never_reach_the_emulator(
    fresh_emulator: EmulatorServer,
    files: dict[str, str],
    provider: str,
    model: str | None,
    fields: dict[str, Any],
    field: str,
    allowed: str | None,
) -> None:
    request = VideoRequest(prompt=PROMPT, **_fill(fields, files))
    c = client(fresh_emulator, provider, model)
    with pytest.raises(InvalidRequestError) as caught:
        c.submit(request)
    assert caught.value.field == field
    assert fresh_emulator.audit()["counts"]["requests"] == 0


def test_idempotent_replay_against_the_emulator(fresh_emulator: EmulatorServer) -> None:
    c = client(fresh_emulator, "apimart")
    request = VideoRequest(prompt="replay me")
    first = c.submit(request)
    again = c.submit(request)  # same derived key: the emulator replays the same task
    assert first.task_id == again.task_id
    audit = fresh_emulator.audit()
    assert audit["counts"]["tasks"] == 1 and audit["counts"]["replays"] == 1


def test_faults_are_survived(fresh_emulator: EmulatorServer, tmp_path: Path) -> None:
    """429s, 5xx, quirky shapes, unknown words and mid-body drops: still a good mp4."""
    fresh_emulator.configure(
        rate_429=0.2,
        rate_5xx=0.2,
        rate_quirks=0.5,
        rate_unknown_status=0.3,
        rate_drop_download=0.5,
        retry_after_seconds=0,
        video_padding_bytes=3_000_000,
    )
    done = 0
    for provider in ("jimmyai", "apimart", "toapis", "crun"):
        c = client(fresh_emulator, provider)
        try:
            ref = c.submit(VideoRequest(prompt=f"fault test {provider}"))
        except SubmitOutcomeUnknownError:
            continue  # a 5xx after sending: correctly not retried
        status = finish(c, ref)
        result = c.download(str(status.video_url), str(tmp_path / f"{provider}.mp4"))
        assert result.size > 3_000_000 and playable(tmp_path / f"{provider}.mp4") > 0
        done += 1
    assert done >= 2
    assert fresh_emulator.audit()["counts"]["faults"] > 0


def test_two_hundred_megabytes_stream_with_flat_memory(
    fresh_emulator: EmulatorServer, tmp_path: Path
) -> None:
    size = 200 * 1024 * 1024
    fresh_emulator.configure(video_padding_bytes=size)
    c = client(fresh_emulator, "toapis")
    status = finish(c, c.submit(VideoRequest(prompt="big one")))
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    try:
        result = c.download(str(status.video_url), str(tmp_path / "big.mp4"))
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stop.set()
        sampler.join()
    assert result.size > size
    assert traced_peak < 24 * 1024 * 1024, traced_peak
    assert peak[0] - baseline < 80 * 1024 * 1024, (peak[0] - baseline) / 2**20
    assert playable(tmp_path / "big.mp4") > 0


def test_astatus_concurrently_across_event_loops(fresh_emulator: EmulatorServer) -> None:
    """aiohttp transport, one client per loop, closed with its loop (sensors run a loop a tick)."""
    import asyncio
    import gc
    import warnings

    from httpx_aiohttp import AiohttpTransport

    c = client(fresh_emulator, "apimart")
    refs = [c.submit(VideoRequest(prompt=f"poll {i}")) for i in range(10)]
    gc.collect()  # earlier tests' garbage must not be blamed on this one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):  # a fresh event loop each time, as asyncio.run in a sensor tick

            async def tick() -> list[Any]:
                inner = await c._async.get()
                assert isinstance(inner, AiohttpTransport)
                return await asyncio.gather(*(c.astatus(r) for r in refs * 5))

            statuses = asyncio.run(tick())
            assert len(statuses) == 50 and {s.task_id for s in statuses} == {
                r.task_id for r in refs
            }
        gc.collect()
    assert not [str(w.message) for w in caught if "nclosed" in str(w.message)]
    requests = fresh_emulator.audit()["requests"]
    assert sum(r["path"].endswith(tuple(r_.task_id for r_ in refs)) for r in requests) == 150
