"""Downloads into S3: a multipart upload straight to the final key, parts sent while streaming.

Nothing may appear at the final key before the whole, verified video is there, and a failed or
restarted download must leave no multipart upload behind (they are invisible, and billed).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import fsspec
import httpx
import pytest

from omni_assets.providers.errors import DownloadError
from omni_assets.storage.sinks import PART_SIZE

from .servers import SeaweedS3
from .test_providers_download import URL, Dropping
from .test_providers_support import client_for

BIG = bytes(range(256)) * (12 * 4096)  # 12 MiB: two whole parts and a short last one
BIG_SHA = hashlib.sha256(BIG).hexdigest()


def serve_big(drops: list[int], *, honour_range: bool = True) -> Any:
    """BIG with Range support; each of ``drops`` cuts one response short after that many bytes."""
    pending = list(drops)

    def handler(request: httpx.Request) -> httpx.Response:
        start, status = 0, 200
        headers = {"content-type": "video/mp4", "etag": '"big"'}
        match = re.match(r"bytes=(\d+)-", request.headers.get("range", ""))
        if match and honour_range:
            start, status = int(match.group(1)), 206
            headers["content-range"] = f"bytes {start}-{len(BIG) - 1}/{len(BIG)}"
        body = BIG[start:]
        headers["content-length"] = str(len(body))
        if pending:
            return httpx.Response(status, headers=headers, stream=Dropping(body, pending.pop(0)))
        return httpx.Response(status, headers=headers, content=body)

    return handler


def _uploads_under(s3: SeaweedS3, prefix: str) -> list[str]:
    fs = fsspec.filesystem("s3", **s3.storage_options)
    listed = fs.call_s3("list_multipart_uploads", Bucket=s3.bucket, Prefix=prefix)
    return [u["Key"] for u in listed.get("Uploads", [])]


@pytest.mark.parametrize("honour_range", [True, False], ids=["resumed", "restarted"])
def test_big_download_to_s3_is_one_multipart_upload_at_the_final_key(
    s3_server: SeaweedS3, honour_range: bool
) -> None:
    assert len(BIG) > PART_SIZE  # a real multipart upload, not one PUT
    prefix = f"sink-{uuid.uuid4().hex[:8]}"
    target = s3_server.url(f"{prefix}/videos/v.mp4")
    # Dropped after the first part went out: resumed with Range, or started over (and the first
    # multipart upload aborted) when the server ignores Range.
    client, _ = client_for("apimart", serve_big([PART_SIZE + 12345], honour_range=honour_range))
    result = client.download(URL, target, **s3_server.storage_options)
    fs = fsspec.filesystem("s3", **s3_server.storage_options)
    assert (result.sha256, result.size) == (BIG_SHA, len(BIG))
    assert fs.cat(target) == BIG
    assert fs.info(target)["ContentType"] == "video/mp4"
    assert fs.ls(s3_server.url(f"{prefix}/videos"), detail=False) == [target[len("s3://") :]]
    assert _uploads_under(s3_server, prefix) == []


def test_failed_download_to_s3_leaves_nothing(s3_server: SeaweedS3) -> None:
    prefix = f"sink-{uuid.uuid4().hex[:8]}"
    target = s3_server.url(f"{prefix}/videos/v.mp4")
    # One part sent, then the connection keeps breaking without delivering anything.
    client, _ = client_for("apimart", serve_big([PART_SIZE + 1000] + [0] * 20))
    with pytest.raises(DownloadError, match="broke off"):
        client.download(URL, target, **s3_server.storage_options)
    fs = fsspec.filesystem("s3", **s3_server.storage_options)
    assert not fs.exists(target)
    assert _uploads_under(s3_server, prefix) == []
