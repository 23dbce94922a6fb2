"""Serving files: Range requests, expiring signed URLs, padding, memory, drops and uploads."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from omni_assets.emulator import EmulatorServer
from omni_assets.emulator.downloads import parse_range
from omni_assets.emulator.errors import ApiError
from omni_assets.emulator.multipart import discard, read_form
from omni_assets.emulator.video import free_box_header, iter_padded

from .test_emulator_support import (
    PNG,
    UPLOAD_PATHS,
    auth,
    client,
    probe_mp4,
    query,
    run_task,
    task_data,
    video_url_of,
)


def _video_url(emulator: EmulatorServer, provider: str = "toapis") -> str:
    data, _ = run_task(emulator, provider)
    url = video_url_of(provider, data)
    assert url is not None
    return url


def test_range_requests(fresh_emulator: EmulatorServer) -> None:
    url = _video_url(fresh_emulator)
    with client() as http:
        full = http.get(url).content
        size = len(full)
        head = http.head(url)
        assert head.status_code == 200 and int(head.headers["content-length"]) == size
        assert head.headers["accept-ranges"] == "bytes"
        first = http.get(url, headers={"Range": "bytes=0-999"})
        assert first.status_code == 206
        assert first.headers["content-range"] == f"bytes 0-999/{size}"
        rest = http.get(url, headers={"Range": "bytes=1000-"})
        assert rest.status_code == 206 and int(rest.headers["content-length"]) == size - 1000
        assert first.content + rest.content == full
        tail = http.get(url, headers={"Range": "bytes=-100"})
        assert tail.status_code == 206 and tail.content == full[-100:]
        past = http.get(url, headers={"Range": f"bytes={size}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
        several = http.get(url, headers={"Range": "bytes=0-1,5-6"})
        assert several.status_code == 200 and several.content == full
    ranges = [d["range"] for d in fresh_emulator.audit()["downloads"]]
    assert "bytes=0-999" in ranges and None in ranges


def test_parse_range() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 4)
    assert parse_range("bytes=2-400", 10) == (2, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=-30", 10) == (0, 9)
    assert parse_range("bytes=10-", 10) == (-1, -1)
    assert parse_range("bytes=-0", 10) == (-1, -1)
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=4-2", 10) is None
    assert parse_range("bytes=x-", 10) is None


@given(
    data=st.binary(min_size=1, max_size=300),
    padding=st.sampled_from([0, 8, 9, 100, 700]),
    bounds=st.tuples(st.integers(0, 1100), st.integers(0, 1100)),
)
def test_iter_padded_is_a_byte_exact_slice(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, padding: int, bounds: tuple[int, int]
) -> None:
    path = tmp_path_factory.mktemp("pad") / "f.bin"
    path.write_bytes(data)
    whole = data + (free_box_header(padding) + bytes(padding - 8) if padding else b"")
    start, end = sorted(bounds)
    end = min(end, len(whole) - 1)
    if start > end:
        return
    assert b"".join(iter_padded(path, padding, start, end)) == whole[start : end + 1]


def test_free_box_header_uses_largesize_past_4_gib() -> None:
    assert free_box_header(1000) == (1000).to_bytes(4, "big") + b"free"
    big = 2**32 + 5
    assert free_box_header(big) == (1).to_bytes(4, "big") + b"free" + big.to_bytes(8, "big")


def test_expired_urls_are_refused_and_requery_gives_a_fresh_one(
    fresh_emulator: EmulatorServer,
) -> None:
    fresh_emulator.configure(url_ttl_seconds={"apimart": 2})
    data, _ = run_task(fresh_emulator, "apimart")
    video = data["result"]["videos"][0]
    assert video["expires_at"] <= time.time() + 2
    with client() as http:
        assert http.get(video["url"][0]).status_code == 200
        time.sleep(max(0.0, video["expires_at"] - time.time()) + 0.05)
        expired = http.get(video["url"][0])
        assert expired.status_code == 403 and "expired" in expired.text
        fresh = task_data("apimart", query(fresh_emulator, "apimart", data["id"]).json())
        assert http.get(video_url_of("apimart", fresh) or "").status_code == 200


def test_signature_and_token_are_checked(fresh_emulator: EmulatorServer) -> None:
    url = _video_url(fresh_emulator)
    later = int(url.split("expires=")[1].split("&")[0]) + 1000
    with client() as http:
        forged = http.get(url.replace("expires=", f"expires={later}&x="))
        assert forged.status_code == 403
        edited = http.get(url.split("expires=")[0] + f"expires={later}&signature=00")
        assert edited.status_code == 403 and "signature" in edited.text
        assert http.get(url.replace("/files/", "/files/0")).status_code == 404


def test_padding_keeps_the_mp4_playable(fresh_emulator: EmulatorServer) -> None:
    fresh_emulator.configure(video_padding_bytes=1_000_000)
    url = _video_url(fresh_emulator, "crun")
    with client() as http:
        body = http.get(url).content
    mp4_size = len(body) - 1_000_000
    assert body[mp4_size : mp4_size + 8] == (1_000_000).to_bytes(4, "big") + b"free"
    assert body[-1000:] == bytes(1000)
    duration, width, height, _ = probe_mp4(body)
    assert abs(duration - 4) <= 0.5 and width > height


def test_download_speed_cap_is_per_connection(fresh_emulator: EmulatorServer) -> None:
    """Each connection is paced to ``download_bytes_per_second``; two at once each get it, and
    the audit counts them while they last."""
    rate = 2_000_000
    fresh_emulator.configure(video_padding_bytes=1_000_000, download_bytes_per_second=rate)
    urls = [_video_url(fresh_emulator, "crun") for _ in range(2)]
    times: list[float] = []

    def fetch(url: str) -> None:
        started = time.monotonic()
        with client() as http:
            assert len(http.get(url).content) > 1_000_000
        times.append(time.monotonic() - started)

    threads = [threading.Thread(target=fetch, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    assert fresh_emulator.audit()["downloads_in_progress"] == 2
    for thread in threads:
        thread.join()
    assert fresh_emulator.audit()["downloads_in_progress"] == 0
    # ~1.0 MB at 2 MB/s: at least 0.5 s each; both in parallel, so not 1 s for the pair.
    assert len(times) == 2 and all(0.45 <= t < 0.95 for t in times), times
    fresh_emulator.configure(download_bytes_per_second=0)
    started = time.monotonic()
    with client() as http:
        http.get(urls[0])
    assert time.monotonic() - started < 0.3


def test_200_mb_download_keeps_server_memory_flat(fresh_emulator: EmulatorServer) -> None:
    padding = 200 * 2**20
    fresh_emulator.configure(video_padding_bytes=padding)
    url = _video_url(fresh_emulator, "jimmyai")
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak, received = baseline, 0
    started = time.monotonic()
    with client() as http, http.stream("GET", url) as response:
        assert response.status_code == 200
        expected = int(response.headers["content-length"])
        for chunk in response.iter_raw(1 << 20):
            received += len(chunk)
            if received % (8 << 20) < len(chunk):
                peak = max(peak, process.memory_info().rss)
    assert received == expected > padding
    assert peak - baseline < 64 * 2**20, f"RSS grew by {(peak - baseline) >> 20} MiB"
    assert time.monotonic() - started < 30
    download = fresh_emulator.audit()["downloads"][-1]
    assert download["complete"] and download["bytes_sent"] == expected


def test_client_abort_is_audited(fresh_emulator: EmulatorServer) -> None:
    fresh_emulator.configure(video_padding_bytes=64 * 2**20)
    url = _video_url(fresh_emulator)
    with client() as http, http.stream("GET", url) as response:
        next(response.iter_raw(1 << 16))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        downloads = fresh_emulator.audit()["downloads"]
        if downloads:
            break
        time.sleep(0.05)
    assert downloads[-1]["outcome"] == "aborted"
    assert downloads[-1]["bytes_sent"] < downloads[-1]["bytes_expected"]


@pytest.mark.parametrize("provider", ["jimmyai", "apimart", "toapis"])
def test_upload_is_served_back(
    fresh_emulator: EmulatorServer, provider: str, tmp_path: Path
) -> None:
    with client() as http:
        response = http.post(
            fresh_emulator.base_url(provider) + UPLOAD_PATHS[provider],
            files={"file": ("ref.png", PNG, "image/png")},
            data={"purpose": "generation"} if provider == "toapis" else None,
            headers=auth(provider),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        if provider == "jimmyai":
            assert body["code"] == 20000  # an integer here, unlike create/query
            data = body["data"]
            assert data["size"] == len(PNG) and data["mime_type"] == "image/png"
        elif provider == "apimart":
            data = body
            assert data["bytes"] == len(PNG) and data["content_type"] == "image/png"
            assert data["filename"] == "ref.png" and data["created_at"] > 0
        else:
            assert body["success"] is True and body["message"] == ""
            data = body["data"]
            assert data["id"].startswith("upload_") and data["size"] == len(PNG)
        served = http.get(data["url"])
    assert served.status_code == 200 and served.content == PNG
    assert fresh_emulator.audit()["counts"]["uploads"] == 1


def test_upload_errors(fresh_emulator: EmulatorServer) -> None:
    with client() as http:

        def post(provider: str, **kwargs: object) -> httpx.Response:
            url = fresh_emulator.base_url(provider) + UPLOAD_PATHS[provider]
            return http.post(url, headers=auth(provider), **kwargs)  # type: ignore[arg-type]

        big = {"file": ("big.png", PNG + bytes(10 * 2**20), "image/png")}
        too_big = post("toapis", files=big)
        assert too_big.status_code == 400 and too_big.json()["success"] is False
        assert post("apimart", files=big).status_code == 200  # APIMart allows 20 MB
        text = {"file": ("notes.txt", b"hello", "text/plain")}
        assert post("apimart", files=text).json()["error"]["type"] == "invalid_request_error"
        assert post("jimmyai", files=text).json()["code"] == 20002
        missing = post("toapis", data={"purpose": "generation"})
        assert missing.status_code == 400 and "file" in missing.json()["message"]
        extra = post("apimart", files={"file": ("a.png", PNG, "image/png")}, data={"x": "1"})
        assert extra.status_code == 400
        unauthenticated = http.post(
            fresh_emulator.base_url("toapis") + UPLOAD_PATHS["toapis"], files=big
        )
        assert unauthenticated.status_code == 401
    assert fresh_emulator.audit()["counts"]["uploads"] == 1


def test_crun_callback_is_delivered_to_loopback(fresh_emulator: EmulatorServer) -> None:
    received: list[bytes] = []
    arrived = threading.Event()

    import http.server
    import json

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()
            arrived.set()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        callback = f"http://127.0.0.1:{server.server_port}/hook?token=t1"
        body = {"model": "google/gemini-omni", "callback_url": callback, "input": {"prompt": "p"}}
        with client() as http_client:
            created = http_client.post(
                fresh_emulator.base_url("crun") + "/api/v1/client/job/CreateTask",
                json=body,
                headers=auth("crun"),
            )
        assert created.status_code == 200
        assert arrived.wait(5)
    finally:
        server.shutdown()
        server.server_close()
    payload = json.loads(received[0])
    assert payload["task_id"] == created.json()["data"]["task_id"]
    assert payload["status"] == "success" and payload["result"]["media_urls"]
    assert payload["param"]["callback_url"] == callback
    # The emulator audits the delivery after our receiver answered: give it a moment.
    deadline = time.monotonic() + 5
    while not fresh_emulator.audit()["callbacks"] and time.monotonic() < deadline:
        time.sleep(0.05)
    callbacks = fresh_emulator.audit()["callbacks"]
    assert len(received) == 1 and callbacks[0]["status"] == 200


def _form_request(body: bytes, boundary: str = "XyZ", *, declare_length: bool = True) -> Request:
    """A Starlette request whose body arrives in 1 KB chunks, as from a socket."""
    chunks = [body[i : i + 1024] for i in range(0, len(body), 1024)] or [b""]
    headers = [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())]
    if declare_length:
        headers.append((b"content-length", str(len(body)).encode()))

    async def receive() -> dict[str, object]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def _part(disposition: str, content: bytes, content_type: str | None = None) -> bytes:
    head = f"--XyZ\r\nContent-Disposition: form-data; {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + content + b"\r\n"


def test_multipart_bodies_stream_to_disk_and_bad_ones_leave_nothing(tmp_path: Path) -> None:
    image = bytes(range(256)) * 400  # 100 KB: many chunks
    good = _part('name="file"; filename="a b.png"', image, "image/png")
    good += _part('name="purpose"', b"generation") + b"--XyZ--\r\n"
    form = asyncio.run(read_form(_form_request(good), tmp_path, limit=2**20))
    assert form.fields == {"purpose": "generation"}
    part = form.files["file"]
    assert (part.filename, part.content_type, part.size) == ("a b.png", "image/png", len(image))
    assert part.path.read_bytes() == image
    discard(form)
    refused = {
        "given more than once": _part('name="x"', b"1") + _part('name="x"', b"2") + b"--XyZ--",
        "without a field name": _part('filename="a.png"', b"...") + b"--XyZ--",
        "too long": _part('name="x"', b"y" * (65 * 1024)) + b"--XyZ--",
        "malformed": _part('name="file"; filename="a.png"', image)[:-2],  # cut off, no end
    }
    for message, body in refused.items():
        with pytest.raises(ApiError, match=message):
            asyncio.run(read_form(_form_request(body), tmp_path, limit=2**20))
    # Past the limit with no Content-Length to refuse it up front: stopped as it streams.
    huge = _part('name="file"; filename="a.png"', bytes(3 * 2**20)) + b"--XyZ--"
    with pytest.raises(ApiError, match="too large"):
        asyncio.run(read_form(_form_request(huge, declare_length=False), tmp_path, limit=2**20))
    assert list(tmp_path.iterdir()) == []
