"""A pipeline process to kill: register, submit, poll and materialize until every request settles.

``python -m omni_assets_tests.reliability.crash_driver WORKDIR EMULATOR_URL [--recover]``

It runs the product's own functions (``register``, ``submit_pending``, ``poll_in_flight``,
``materialize_record``) on ``WORKDIR/requests.yaml``, with the registry in
``WORKDIR/registry.db`` and storage in ``WORKDIR/storage``, against the emulator's four dialects,
without Dagster (a Dagster run is a process like this one; starting it costs seconds per trial).
``OMNI_CRASHPOINT`` (``omni_assets/_crashpoints.py``) makes it SIGKILL itself at a named point.

``--recover`` first does what the poll sensor does for a crashed process once its stale period
has passed (``recover_stale_submits``; claims whose run is gone are released), as if that
period were over. Prints one JSON line ``{"states": {key: state}}`` when everything settled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from omni_assets.pipeline.intake import check_requests, load_requests_file
from omni_assets.pipeline.materialize import materialize_record
from omni_assets.pipeline.poll import poll_in_flight
from omni_assets.pipeline.runtime import OmniRuntime
from omni_assets.pipeline.submit import SubmitLimits, recover_stale_submits, submit_pending
from omni_assets.providers import PROVIDER_NAMES, get_provider
from omni_assets.providers.polling import PollPolicy
from omni_assets.registry import RecordState, Registry
from omni_assets.storage import VideoStorage

SETTLED = {RecordState.MATERIALIZED, RecordState.FAILED, RecordState.UNKNOWN}
API_KEY = "crash-driver-not-a-secret"


def build_runtime(workdir: Path, emulator_url: str) -> OmniRuntime:
    """Registry, storage and the four clients, as a Dagster run would get them."""
    providers = {
        name: get_provider(name, api_key=API_KEY, base_url=f"{emulator_url}/{name}")
        for name in PROVIDER_NAMES
    }
    return OmniRuntime(
        registry=Registry(f"sqlite:///{workdir / 'registry.db'}"),
        storage=VideoStorage(str(workdir / "storage")),
        providers=providers,
        default_provider="apimart",
        limits={name: SubmitLimits(max_in_flight=50, rate_per_s=50.0) for name in providers},
        policies={name: PollPolicy(interval_s=0.2, jitter=0.0) for name in providers},
    )


def drive(runtime: OmniRuntime, requests_path: Path, *, recover: bool, timeout_s: float) -> int:
    registry = runtime.registry
    intake = load_requests_file(requests_path)
    checked = check_requests(
        intake.requests,
        default_provider=runtime.default_provider,
        validate=runtime.validate,
        can_extend=runtime.can_extend,
    )
    if intake.issues or checked.issues:
        print(json.dumps({"issues": [str(i) for i in intake.issues + checked.issues]}))
        return 2
    runtime.register(checked.requests)
    if recover:
        recover_stale_submits(registry, 0.0)
        registry.release_stale_claims(0.0)
    token = f"crash-driver-{os.getpid()}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        submit_pending(registry, runtime.providers, runtime.storage, limits=runtime.limits)
        poll_in_flight(registry, runtime.providers, policies=runtime.policies, budget_s=10.0)
        for key in registry.claim([r.key for r in registry.ready()], token):
            record = registry.get(key)
            assert record is not None
            try:
                materialize_record(
                    registry, runtime.providers[record.provider], runtime.storage, record
                )
            except Exception as exc:  # as omni_materialize does: release, try next time
                registry.release(key, {"message": str(exc)})
        records = registry.records()
        if all(r.state in SETTLED for r in records):
            print(json.dumps({"states": {r.key: r.state.value for r in records}}))
            return 0
        time.sleep(0.1)
    print(json.dumps({"timeout": {r.key: r.state.value for r in registry.records()}}))
    return 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("emulator_url")
    parser.add_argument("--recover", action="store_true")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    runtime = build_runtime(args.workdir, args.emulator_url.rstrip("/"))
    return drive(
        runtime, args.workdir / "requests.yaml", recover=args.recover, timeout_s=args.timeout
    )


if __name__ == "__main__":
    sys.exit(main())
