"""The audit view in the real Dagster UI: dagster-webserver on loopback, read by headless Chromium.

A small pipeline (an image, a 2-hop extension chain, and a request the provider refuses) runs on
the emulator into a real ``$DAGSTER_HOME``, as ``omni-assets demo`` does; ``dagster-webserver``
serves the repository's own ``workspace.yaml`` from it; Debian's ``chromium`` opens partition
pages as a person would. The screenshots are saved in ``test-artifacts/`` (look at them); the
assertions read the rendered DOM: the thumbnail is an ``<img>`` with a ``data:`` URL, the lineage
fields are there and link to their partitions, the partitions view shows nothing "Unsynced", and
the refused request's partition is failed, with its reason one link away (issue 13).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dagster import DagsterInstance

from omni_assets.cli.driver import LocalDriver
from omni_assets.cli.lineage import materialize_lineage
from omni_assets.definitions import build_definitions
from omni_assets.emulator.tasks import POLICY_MARKER, POLICY_MESSAGE
from omni_assets.registry import RecordState
from omni_assets.resources import OmniRegistryResource, OmniStorageResource
from omni_assets.settings import Settings

from .pipeline_env import DEMO_DIR, temporary_env
from .servers import ChildProcess, free_ports, require_system

REPO = Path(__file__).parent.parent
ARTIFACTS = REPO / "test-artifacts"
BIN = Path(sys.executable).parent
PRODUCT_PNG = DEMO_DIR / "product.png"
SHA = hashlib.sha256(PRODUCT_PNG.read_bytes()).hexdigest()
REQUESTS = [
    {
        "id": "ui-root",
        "prompt": "a lighthouse at dawn",
        "provider": "apimart",
        "images": [str(PRODUCT_PNG)],
    },
    {"id": "ui-child", "prompt": "the light turns on", "provider": "apimart", "extends": "ui-root"},
    {"id": "ui-grandchild", "prompt": "night falls", "provider": "apimart", "extends": "ui-child"},
    {"id": "ui-refused", "prompt": f"a forbidden shore {POLICY_MARKER}", "provider": "apimart"},
]
FAILED = "ui-refused"


class _Rows(HTMLParser):
    """Table rows as (cells' text, cells' inner HTML), from a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[list[str], list[str]]] = []
        self._depth = 0  # inside a <td>
        self._text: list[str] = []
        self._html: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append(([], []))
        elif tag == "td":
            self._depth += 1
            if self._depth == 1:
                self._text, self._html = [], []
                return
        if self._depth:
            self._html.append(f"<{tag} " + " ".join(f'{k}="{v}"' for k, v in attrs) + ">")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._depth:
            self._depth -= 1
            if self._depth == 0 and self.rows:
                self.rows[-1][0].append(" ".join("".join(self._text).split()))
                self.rows[-1][1].append("".join(self._html))

    def handle_data(self, data: str) -> None:
        if self._depth:
            self._text.append(data)
            self._html.append(data)


def _metadata(dom: str, column: int) -> dict[str, tuple[str, str]]:
    """Metadata label -> (text, HTML) of its value cell (``column``: 1 on a partition's page,
    2 on an asset's overview, after the timestamp)."""
    parser = _Rows()
    parser.feed(dom)
    return {t[0]: (t[column], h[column]) for t, h in parser.rows if len(t) > column}


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, emulator: Any) -> Iterator[str]:
    """The base URL of a dagster-webserver showing a finished chain; stopped afterwards."""
    require_system("chromium (Debian package)", shutil.which("chromium") is not None)
    root = tmp_path_factory.mktemp("ui")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    (root / "requests.yaml").write_text(yaml.safe_dump({"requests": REQUESTS}))
    env = {
        "OMNI_PROVIDER": "emulator",
        "OMNI_EMULATOR_URL": emulator.url,
        "OMNI_STORAGE_URL": str(root / "storage"),
        "OMNI_REGISTRY_URL": f"sqlite:///{root / 'registry.db'}",
        "OMNI_REQUESTS": str(root / "requests.yaml"),
    }
    with temporary_env(**env):
        registry = OmniRegistryResource(url=env["OMNI_REGISTRY_URL"])
        defs = build_definitions(
            settings=Settings.from_env(),
            storage=OmniStorageResource(url=env["OMNI_STORAGE_URL"]),
            registry=registry,
            poll_interval_s=1,
        )
        instance = DagsterInstance.from_config(str(home))
        driver = LocalDriver(defs, instance, registry.get_registry(), run_log_level="WARNING")
        states = {r.key: r.state for r in driver.drive(timeout_s=180, interval_s=0.3).records}
        assert states == {
            **{r["id"]: RecordState.MATERIALIZED for r in REQUESTS},
            FAILED: RecordState.FAILED,
        }
        assert "1 extension chains" in materialize_lineage(defs, instance)
        instance.dispose()
    port = free_ports(1)[0]
    argv = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
    proc = ChildProcess(
        [*argv, "-w", str(REPO / "workspace.yaml")],
        root / "webserver.log",
        cwd=REPO,
        env={**os.environ, **env, "DAGSTER_HOME": str(home)},
        group=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_loaded(url, proc)
        yield url
    finally:
        proc.stop(timeout=30)


def _wait_loaded(url: str, proc: ChildProcess, timeout: float = 180) -> None:
    """Until the webserver answers and has loaded the code location."""
    query = {
        "query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.alive(), proc.log_tail()
        try:
            data = httpx.post(f"{url}/graphql", json=query, timeout=10).json()
            entries = data["data"]["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except (httpx.HTTPError, KeyError, TypeError, json.JSONDecodeError):
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver not ready in {timeout}s\n" + proc.log_tail())


def _render(url: str, shot: str, tmp_path: Path, ready: Callable[[str], bool]) -> str:
    """Open ``url`` in headless Chromium; save a screenshot; the rendered DOM once ``ready``."""
    ARTIFACTS.mkdir(exist_ok=True)
    dom = ""
    for attempt in range(3):  # a cold webserver may still be loading its first page's data
        command = [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-quic",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / f'chromium-{attempt}'}",
            "--window-size=1400,1600",
            "--virtual-time-budget=30000",
            f"--screenshot={ARTIFACTS / shot}",
            "--dump-dom",
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        dom = done.stdout
        (ARTIFACTS / shot).with_suffix(".html").write_text(dom)
        if ready(dom):
            return dom
    pytest.fail(f"{url}: the rendered page never got ready; see {ARTIFACTS / shot}")


def _open(
    url: str, shot: str, tmp_path: Path, expect: str, column: int = 1
) -> dict[str, tuple[str, str]]:
    """The metadata rows of ``url``'s rendered page, once it has an ``expect`` row."""
    dom = _render(url, shot, tmp_path, lambda d: expect in _metadata(d, column))
    return _metadata(dom, column)


def _text(dom: str) -> str:
    """The page's visible text, whitespace collapsed."""
    parser = _Text()
    parser.feed(dom)
    return " ".join("".join(parser.parts).split())


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("script", "style")
        self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style")
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def test_video_partition_shows_thumbnail_and_lineage(ui: str, tmp_path: Path) -> None:
    rows = _open(
        f"{ui}/assets/omni_video?view=partitions&partition=ui-grandchild",
        "ui-video-partition.png",
        tmp_path,
        "chain_depth",
    )
    html = rows["thumbnail"][1]
    assert '<img src="data:image/' in html and ";base64," in html  # rendered, not escaped
    assert rows["chain_depth"][0] == "2"
    assert rows["chain_root"][0] == "ui-root"
    assert 'href="/assets/omni_video?partition=ui-root"' in rows["chain_root"][1]
    assert rows["parent"][0] == "ui-child"
    assert 'href="/assets/omni_video?partition=ui-child"' in rows["parent"][1]
    assert rows["extended_via"][0].startswith("task_id (parent task ")
    assert rows["provider"][0] == "apimart"
    assert rows["task_id"][0]
    assert rows["video"][0].endswith("/videos/ui-grandchild.mp4")
    assert float(rows["cost"][0]) > 0 and float(rows["duration_s"][0]) > 0


def test_root_partition_names_its_source_image(ui: str, tmp_path: Path) -> None:
    rows = _open(
        f"{ui}/assets/omni_video?view=partitions&partition=ui-root",
        "ui-video-root.png",
        tmp_path,
        "source_images",
    )
    assert rows["chain_depth"][0] == "0"
    assert "product.png" in rows["source_images"][0]
    assert f'href="/assets/source_images?partition={SHA}"' in rows["source_images"][1]


def test_source_image_partition_shows_the_image(ui: str, tmp_path: Path) -> None:
    rows = _open(
        f"{ui}/assets/source_images?view=partitions&partition={SHA}",
        "ui-source-image.png",
        tmp_path,
        "uploads",
    )
    assert '<img src="data:image/' in rows["thumbnail"][1]
    assert (rows["width"][0], rows["height"][0]) == ("96", "64")
    assert rows["sha256"][0] == SHA
    assert "apimart (upload) until" in rows["uploads"][0]
    assert 'href="/assets/omni_video?partition=ui-root"' in rows["used_by"][1]


def test_lineage_asset_shows_the_chain(ui: str, tmp_path: Path) -> None:
    rows = _open(f"{ui}/assets/omni_lineage", "ui-lineage.png", tmp_path, "extension_chains", 2)
    text, html = rows["extension_chains"]
    assert text == "ui-root → ui-child → ui-grandchild"
    for key in ("ui-root", "ui-child", "ui-grandchild"):
        assert f'href="/assets/omni_video?partition={key}"' in html
    # Every request is in the graph, the refused one too (with its state).
    assert (rows["videos"][0], rows["images"][0], rows["deepest_chain"][0]) == ("4", "1", "2")
    assert rows["graph"][0] == "[Show Markdown]"  # the full table, one click away


def test_partitions_view_shows_nothing_unsynced_and_the_failure(ui: str, tmp_path: Path) -> None:
    dom = _render(
        f"{ui}/assets/omni_video?view=partitions",
        "ui-video-partitions.png",
        tmp_path,
        lambda d: "Materialized (3)" in _text(d),
    )
    text = _text(dom)
    assert "Unsynced" not in text
    assert "Failed (1)" in text and "Missing (0)" in text


def test_failed_partition_shows_failed_with_its_reason(ui: str, tmp_path: Path) -> None:
    dom = _render(
        f"{ui}/assets/omni_video?view=partitions&partition={FAILED}",
        "ui-video-failed.png",
        tmp_path,
        lambda d: "did not materialize this asset" in _text(d),
    )
    text = _text(dom)
    assert "failed, and did not materialize this asset" in text
    assert "View logs" in text
    assert "Unsynced" not in text
    # The banner links the failed run; the run's page shows the step failure: the reason.
    run_link = re.search(r'href="/runs/([0-9a-f-]{36})"', dom)
    assert run_link, "no link to the failed run on the partition's page"
    run = _text(
        _render(
            f"{ui}/runs/{run_link.group(1)}",
            "ui-video-failed-run.png",
            tmp_path,
            lambda d: POLICY_MESSAGE in _text(d),
        )
    )
    assert f"omni-assets retry {FAILED}" in run
