"""The README's and docs' examples as written: the clients against the emulator (base URLs from
the env), every shell command in a temporary checkout, every transcript against the real output,
every link between the documents."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest

from omni_assets.providers import (
    APIMartClient,
    CRUNClient,
    JimmyAIClient,
    ToAPIsClient,
    get_provider,
    wait,
)
from omni_assets.request import VideoRequest

from .pipeline_env import DEMO_DIR
from .servers import free_ports


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fresh_emulator: Any, tmp_path: Path) -> Any:
    for name in ("jimmyai", "apimart", "toapis", "crun"):
        monkeypatch.setenv(f"{name.upper()}_API_KEY", f"sk-readme-{name}")
        monkeypatch.setenv(f"{name.upper()}_BASE_URL", fresh_emulator.base_url(name))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "product.png").write_bytes((DEMO_DIR / "product.png").read_bytes())
    return fresh_emulator


def _finish(client: Any, ref: Any, tmp_path: Path) -> None:
    status = wait(client, ref, deadline=60, interval=0.2)
    video = client.download(status.video_url, str(tmp_path / f"{ref.task_id}.mp4"))
    with av.open(video.uri.removeprefix("file://")) as container:
        assert container.duration


def test_quick_example(env: Any, tmp_path: Path) -> None:
    import os

    client = get_provider(
        "apimart",
        api_key=os.environ["APIMART_API_KEY"],
        model="Omni-Flash-Ext",
        base_url=os.environ["APIMART_BASE_URL"],
    )
    request = VideoRequest(prompt="A paper boat drifting down a rainy street", duration=6)
    client.validate(request)
    ref = client.submit(request)
    status = wait(client, ref, deadline=60, interval=0.2)
    video = client.download(status.video_url, str(tmp_path / "boat.mp4"))
    assert video.size > 0 and len(video.sha256) == 64


def test_per_provider_examples(env: Any, tmp_path: Path) -> None:
    jimmy = JimmyAIClient.from_env(model="Gemini-Omini")
    req = VideoRequest(
        prompt="The product turns", images=("product.png",), mode="frame", duration=4
    )
    url = jimmy.upload_image("product.png").url
    _finish(jimmy, jimmy.submit(req, image_urls=(url,)), tmp_path)

    apimart = APIMartClient.from_env(model="gemini-omni-flash-preview")
    _finish(
        apimart,
        apimart.submit(VideoRequest(prompt="a blue butterfly", aspect_ratio="9:16")),
        tmp_path,
    )

    toapis = ToAPIsClient.from_env(model="gemini_omni_flash")
    uploaded = toapis.upload_image("product.png").url
    req = VideoRequest(prompt="fuse these", images=(uploaded,) * 3)
    _finish(toapis, toapis.submit(req), tmp_path)

    crun = CRUNClient.from_env()
    _finish(
        crun,
        crun.submit(VideoRequest(prompt="a skyline", duration=8, aspect_ratio="9:16")),
        tmp_path,
    )


# -- every shell command in the README and docs/, run as written ---------------------------------
#
# A fenced ``sh``/``bash`` block runs as written, in a temporary folder that links to this
# checkout (its .venv, Makefile, package, docs...), with none of the caller's OMNI_/DAGSTER_
# variables or keys, without .venv/bin on PATH, and with every HTTP proxy pointed at a closed port
# so that nothing reaches the network. A ``console`` block is a transcript: its ``$`` commands are
# run and their output compared line by line (ids, digests and times as wildcards, ``…`` elides).
# The comment just above a block changes that, and says why (see the README's Development).

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELLS = {"sh", "bash", "shell", "console"}
MARKER = re.compile(
    r"<!--\s*(not run|run with the emulator|run in the demo's environment):\s*(\S.*?)\s*-->"
)
LINKED = ("Makefile", "pyproject.toml", "README.md", "workspace.yaml", "dagster.yaml")
LINKED_DIRS = (".venv", "omni_assets", "omni_assets_tests", "benchmarks", "deploy", "docs")
DEMO_ENV = {"DAGSTER_HOME": ".omni/demo-home", "OMNI_STORAGE_URL": ".omni/demo"}


@dataclass(frozen=True)
class Block:
    """One fenced shell block of a document, with the marker comment just above it (if any)."""

    document: Path
    line: int
    lang: str
    text: str
    how: str = "run"
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}"


def shell_blocks(document: Path) -> list[Block]:
    lines = document.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) in SHELLS:
            above = next((s for s in reversed(lines[:i]) if s.strip()), "")
            marker = MARKER.search(above)
            how, reason = (marker.group(1), marker.group(2)) if marker else ("run", "")
            text = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(document, i + 1, fence.group(1), text, how, reason))
        i = end + 1
    return blocks


BLOCKS = [b for d in DOCUMENTS for b in shell_blocks(d)]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that looks like this repository's root to a user typing the README's commands."""
    root = tmp_path_factory.mktemp("checkout")
    for name in (*LINKED, *LINKED_DIRS):
        if (REPO / name).exists():
            (root / name).symlink_to(REPO / name)
    # `make` would reinstall into the real .venv from this folder: require it to be up to date.
    fresh = subprocess.run(["make", "-q", ".venv/.installed"], cwd=root, capture_output=True)
    if fresh.returncode != 0:
        pytest.fail(".venv is older than pyproject.toml: run `make setup` first", pytrace=False)
    return root


def _user_env(checkout: Path, how: str, emulator: Any) -> dict[str, str]:
    venv_bin = str(REPO / ".venv" / "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OMNI_", "DAGSTER_", "PYTEST_", "VIRTUAL_ENV"))
        and not k.endswith(("_API_KEY", "_BASE_URL"))
        and k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
    }
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != Path(venv_bin)]
    if how == "run in the demo's environment":
        path.insert(0, str(checkout / ".venv" / "bin"))
        env.update(DEMO_ENV)
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"  # offline: a proxy that is not there
    env.update({p: closed for p in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")})
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PATH"] = os.pathsep.join(path)
    if how == "run with the emulator":
        for name in ("jimmyai", "apimart", "toapis", "crun"):
            env[f"{name.upper()}_BASE_URL"] = emulator.base_url(name)
    return env


def _bash(script: str, checkout: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _line_pattern(documented: str) -> re.Pattern[str]:
    """A documented output line as a pattern: ids, digests and times vary from run to run."""
    out = ""
    for token in re.split(r"(…|\d{4}-\d\d-\d\d \d\d:\d\d|\b(?=\w*\d)\w{8,}\b)", documented):
        if token == "…":
            out += ".*"
        elif re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", token):
            out += r"\d{4}-\d\d-\d\d \d\d:\d\d"
        elif re.fullmatch(r"(?=\w*\d)\w{8,}", token):
            out += r"\w+"
        else:
            out += re.escape(token)
    return re.compile(out)


def _transcript(text: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_documented_commands_run_as_written(block: Block, checkout: Path, emulator: Any) -> None:
    """In document order (README first: its `make demo` leaves what later blocks look at)."""
    if block.how == "not run":
        pytest.skip(f"not run: {block.reason}")
    env = _user_env(checkout, block.how, emulator)
    if block.lang != "console":
        done = _bash(block.text, checkout, env)
        assert done.returncode == 0, f"{block.name}\n{block.text}\n{done.stdout}\n{done.stderr}"
        return
    assert block.how == "run in the demo's environment", f"{block.name}: a transcript of what?"
    for command, documented in _transcript(block.text):
        done = _bash(command, checkout, env)
        assert done.returncode == 0, f"{block.name}: $ {command}\n{done.stdout}\n{done.stderr}"
        real = done.stdout.rstrip("\n").splitlines()
        mismatch = f"{block.name}: $ {command}\ndocumented:\n" + "\n".join(documented)
        assert len(real) == len(documented), mismatch + "\nreal:\n" + done.stdout
        for want, got in zip(documented, real, strict=True):
            assert _line_pattern(want).fullmatch(got), f"{mismatch}\nline: {got!r}"


def test_every_block_that_is_not_run_says_why() -> None:
    skipped = [b for b in BLOCKS if b.how != "run"]
    assert all(len(b.reason.split()) >= 3 for b in skipped), [b.name for b in skipped]
    # The README's demo is run, not explained away.
    readme_runs = [b.text for b in BLOCKS if b.document.name == "README.md" and b.how == "run"]
    assert "make demo\n" in readme_runs


def test_links_between_documents_resolve() -> None:
    """Every relative link and #anchor in the README and docs/ points at something that exists."""

    def slug(heading: str) -> str:  # GitHub's anchor for a heading
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    def prose(document: Path) -> str:
        return re.sub(r"(?ms)^```.*?^```", "", document.read_text())

    anchors = {d: {slug(h) for h in re.findall(r"(?m)^#+ (.*)$", prose(d))} for d in DOCUMENTS}
    broken = []
    for document in DOCUMENTS:
        for link in re.findall(r"\]\(([^)\s]+)\)", prose(document)):
            if re.match(r"\w+://|mailto:", link):
                continue
            path, _, anchor = link.partition("#")
            target = (document.parent / path).resolve() if path else document
            if not target.exists() or (anchor and anchor not in anchors.get(target, {anchor})):
                broken.append(f"{document.relative_to(REPO)}: {link}")
    assert not broken


def test_the_definitions_example_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The README's "Use it in your project" example, as written, is a loadable code location."""
    from dagster import Definitions

    readme = (REPO / "README.md").read_text()
    (example,) = re.findall(r"(?ms)^```python\n(from dagster import Definitions.*?)^```", readme)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APIMART_API_KEY", "sk-readme")
    namespace: dict[str, Any] = {"your_defs": Definitions()}
    exec(compile(example, "README.md", "exec"), namespace)
    defs = namespace["defs"]
    Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys >= {"omni_video", "source_images", "omni_lineage"}
    assert len(example.strip().splitlines()) <= 12
