"""Local source files a requests file names: only regular image files under the allowed folders
ever leave the machine (issue 12 finding 4).

Requests go through what the requests sensor and ``omni-assets run`` do (``load_requests_file``,
``register_requests``), then ``submit_pending`` against the emulator (a process of its own) on
JimmyAI, which has an upload API: a file that got through would be uploaded and copied into
``storage/sources``. The emulator's audit counts the uploads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from omni_assets.pipeline.intake import load_requests_file
from omni_assets.pipeline.runtime import OmniRuntime
from omni_assets.pipeline.submit import SubmitLimits, submit_pending
from omni_assets.providers import get_provider
from omni_assets.registry import RecordState, Registry
from omni_assets.sensors import register_requests
from omni_assets.settings import Settings
from omni_assets.storage import VideoStorage

from ..pipeline_env import DEMO_DIR
from .harness import EmulatorProcess, record_figures

pytestmark = pytest.mark.reliability

PNG = (DEMO_DIR / "product.png").read_bytes()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("emulator"), generation_seconds=0.3) as emu:
        yield emu


@pytest.fixture
def runtime(emulator: EmulatorProcess, tmp_path: Path) -> Iterator[OmniRuntime]:
    emulator.reset()
    client = get_provider("jimmyai", api_key="sk-local-files", base_url=f"{emulator.url}/jimmyai")
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    yield OmniRuntime(
        registry,
        VideoStorage(str(tmp_path / "storage")),
        {"jimmyai": client},
        "jimmyai",
        limits={"jimmyai": SubmitLimits(max_in_flight=50, rate_per_s=50.0)},
    )
    registry.close()


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """The requests file's folder, and a folder outside it (a private file lives there)."""
    inside, outside = tmp_path / "requests", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "private.png").write_bytes(PNG)  # a real image, but not the user's to send
    return inside, outside


def _request(key: str, image: str) -> dict[str, Any]:
    return {"id": key, "prompt": f"from {key}", "images": [image], "mode": "frame", "duration": 4}


def _uploads(emulator: EmulatorProcess) -> int:
    return len(emulator.audit()["uploads"])


def _plant(case: str, inside: Path, outside: Path) -> str:
    """Make the file the case is about; returns what the request names."""
    if case == "symlink-to-etc-passwd":
        (inside / "passwd.png").symlink_to("/etc/passwd")
        return "passwd.png"
    if case == "symlink-to-a-private-file":
        (inside / "photo.png").symlink_to(outside / "private.png")
        return "photo.png"
    if case == "proc-self-environ":
        return "/proc/self/environ"
    if case == "symlink-to-proc":
        (inside / "env.png").symlink_to("/proc/self/environ")
        return "env.png"
    if case == "absolute-path-outside":
        return str(outside / "private.png")
    if case == "fifo":
        os.mkfifo(inside / "pipe.png")
        return "pipe.png"
    if case == "text-named-png":
        (inside / "notes.png").write_text("these are my notes, not a picture\n" * 20)
        return "notes.png"
    if case == "png-that-does-not-decode":
        (inside / "broken.png").write_bytes(PNG[:8] + os.urandom(2000))
        return "broken.png"
    raise AssertionError(case)


# case -> words the issue must hold
REFUSED = {
    "symlink-to-etc-passwd": "symlink leading outside the allowed folders",
    "symlink-to-a-private-file": "symlink leading outside the allowed folders",
    "proc-self-environ": "/proc is never a source file",
    "symlink-to-proc": "/proc is never a source file",
    "absolute-path-outside": "outside the allowed folders",
    "fifo": "it is a FIFO",
    "text-named-png": "its content is not a PNG image",
    "png-that-does-not-decode": "it does not decode as a PNG image",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_file_that_may_not_leave_is_refused_before_any_http_call(
    case: str,
    folders: tuple[Path, Path],
    runtime: OmniRuntime,
    emulator: EmulatorProcess,
    tmp_path: Path,
) -> None:
    inside, outside = folders
    named = _plant(case, inside, outside)
    path = inside / "requests.yaml"
    path.write_text(yaml.safe_dump({"requests": [_request("victim", named)]}))
    intake = load_requests_file(path)
    checked, keys = register_requests(runtime, intake.requests, intake)
    assert keys == [] and intake.requests == []
    assert len(checked.issues) == 1, [str(i) for i in checked.issues]
    issue = str(checked.issues[0])
    assert "(id 'victim')" in issue and "field 'images'" in issue, issue
    assert REFUSED[case] in issue, issue
    assert "root:" not in issue and "these are my notes" not in issue  # no content quoted
    submit_pending(runtime.registry, runtime.providers, runtime.storage)
    assert _uploads(emulator) == 0
    assert emulator.audit()["tasks"] == []
    assert not (tmp_path / "storage" / "sources").exists()


def test_an_image_under_an_allowed_root_goes_ahead_with_its_dimensions(
    folders: tuple[Path, Path],
    runtime: OmniRuntime,
    emulator: EmulatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside, outside = folders
    shared = outside / "shared"
    shared.mkdir()
    (shared / "product.png").write_bytes(PNG)
    (inside / "in-folder.png").symlink_to(inside / "real.png")  # a symlink that stays inside
    (inside / "real.png").write_bytes(PNG)
    monkeypatch.setenv("OMNI_ALLOWED_IMAGE_ROOTS", f"{tmp_path / 'nowhere'}{os.pathsep}{shared}")
    roots = Settings.from_env().allowed_image_roots
    assert roots == (str(tmp_path / "nowhere"), str(shared))
    path = inside / "requests.yaml"
    items = [_request("shared", str(shared / "product.png")), _request("linked", "in-folder.png")]
    path.write_text(yaml.safe_dump({"requests": items}))
    intake = load_requests_file(path, image_roots=roots)
    checked, keys = register_requests(runtime, intake.requests, intake)
    assert checked.issues == [] and sorted(keys) == ["linked", "shared"]
    linked = next(r for r in intake.requests if r.key == "linked")
    assert linked.images == (str(inside / "real.png"),)  # the file checked, not the link
    report = submit_pending(runtime.registry, runtime.providers, runtime.storage)
    assert sorted(report.submitted) == ["linked", "shared"], report
    assert _uploads(emulator) == 1  # the same bytes: uploaded once
    record = runtime.registry.get("shared")
    assert record is not None and record.sources
    image = record.sources["images"][0]
    assert (image["width"], image["height"]) == (96, 64)  # recorded for the sidecar
    record_figures("local_files", refused_cases=len(REFUSED), uploaded_outside_roots=0)


def test_a_file_swapped_for_a_symlink_after_registering_is_refused_at_submit(
    folders: tuple[Path, Path], runtime: OmniRuntime, emulator: EmulatorProcess
) -> None:
    inside, outside = folders
    (inside / "photo.png").write_bytes(PNG)
    path = inside / "requests.yaml"
    path.write_text(yaml.safe_dump({"requests": [_request("swapped", "photo.png")]}))
    intake = load_requests_file(path)
    _, keys = register_requests(runtime, intake.requests, intake)
    assert keys == ["swapped"]
    (inside / "photo.png").unlink()
    (inside / "photo.png").symlink_to(outside / "private.png")
    submit_pending(runtime.registry, runtime.providers, runtime.storage)
    assert _uploads(emulator) == 0 and emulator.audit()["tasks"] == []
    record = runtime.registry.get("swapped")
    assert record is not None and record.state is RecordState.FAILED
    assert "symlink leading outside" in str(record.error), record.error
