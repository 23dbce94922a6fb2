"""What loading the code location costs: every run worker and code server pays it (issue 15).

A run of ``omni_materialize`` or ``omni_submit`` is a fresh process that imports the code
location before it does anything; with a few runs per batch of videos this was a large part of
the CPU per video (docs/benchmarks.md). The emulator's server side (Starlette, uvicorn, numpy for
its test videos) is only needed where an emulator is started, so it is not loaded with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SERVER_SIDE = ("starlette", "uvicorn", "numpy", "python_multipart")


def test_the_code_location_does_not_load_the_emulator_server() -> None:
    code = (
        "import json, sys; import omni_assets.location; "
        f"print(json.dumps([m for m in {list(SERVER_SIDE)!r} if m in sys.modules]))"
    )
    env = {**os.environ, "OMNI_PROVIDER": "emulator"}  # the location needs a provider
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_emulator_package_still_offers_its_names() -> None:
    import omni_assets.emulator as emulator

    assert {"EmulatorConfig", "EmulatorServer", "create_app", "run_emulator"} <= set(dir(emulator))
    assert emulator.EmulatorConfig().__class__.__name__ == "EmulatorConfig"
