"""The hostile provider server (hostile.py) does what its helpers say, over real sockets."""

from __future__ import annotations

import gzip
import time

import httpx
import pytest

from .hostile import HostileServer, Reply, endless


def test_routes_record_and_answer(hostile: HostileServer) -> None:
    hostile.route("GET", "/v1/tasks/*", lambda r: r.json({"path": r.request.path}))
    hostile.route("POST", "/v1/echo", lambda r: r.echo_headers())
    with httpx.Client(base_url=hostile.url) as client:
        assert client.get("/v1/tasks/a%2Fb?x=1").json() == {"path": "/v1/tasks/a%2Fb?x=1"}
        echoed = client.post("/v1/echo", headers={"Authorization": "Bearer sk-9"}, content=b"hi")
        assert client.get("/nowhere").status_code == 404
    assert echoed.status_code == 401
    assert "sk-9" in echoed.json()["error"]["code"]
    assert "sk-9" in echoed.headers["x-request-id"]
    assert [s.path for s in hostile.seen][1] == "/v1/echo"
    assert hostile.requests_to("/v1/echo", "POST")[0].body == b"hi"


def test_lies_bombs_streams_and_hangs(hostile: HostileServer) -> None:
    hostile.route("GET", "/short", lambda r: r.send(b"abc", content_length=10))
    hostile.route("GET", "/bomb", lambda r: r.gzip_bomb(10 << 20))
    hostile.route("GET", "/endless", lambda r: r.stream(endless(b"x" * 1024), delay=0.001))
    hostile.route("GET", "/hang", lambda r: r.hang(30))
    hostile.route("GET", "/loop", lambda r: r.redirect("/loop"))
    with httpx.Client(base_url=hostile.url, timeout=httpx.Timeout(5, read=0.5)) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/short")
        with client.stream("GET", "/bomb") as response:
            raw = b"".join(response.iter_raw())
        assert len(raw) < (10 << 20) // 100 and len(gzip.decompress(raw)) == 10 << 20
        with client.stream("GET", "/endless") as response:
            got = 0
            for chunk in response.iter_bytes():
                got += len(chunk)
                if got > 200_000:
                    break
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get("/hang")
        assert time.monotonic() - started < 3
        with pytest.raises(httpx.TooManyRedirects):
            client.get("/loop", follow_redirects=True)


def test_a_handler_that_raises_breaks_the_answer(hostile: HostileServer) -> None:
    def broken(reply: Reply) -> None:
        raise RuntimeError("boom")

    hostile.route("GET", "/broken", broken)
    with httpx.Client(base_url=hostile.url) as client, pytest.raises(httpx.HTTPError):
        client.get("/broken")
    assert isinstance(hostile.errors[0], RuntimeError)
