"""Which executor runs omni_submit and omni_materialize: in process unless the deployment says.

Each job is one op, so Dagster's default multiprocess executor would only start a second process
per run (docs/benchmarks.md: 1.38-1.40x instead of 1.17-1.21x of a hand-written script). The
daemon test in test_production.py checks that runs launched there start no step worker process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import (
    Definitions,
    define_asset_job,
    in_process_executor,
    multiprocess_executor,
)
from dagster.components.testing import create_defs_folder_sandbox

from omni_assets.components import OmniVideoComponent
from omni_assets.definitions import build_definitions
from omni_assets.executors import CELERY_CONFIG_ENV, job_executor_from_env
from omni_assets.jobs import MATERIALIZE_JOB, SUBMIT_JOB
from omni_assets.resources import OmniStorageResource

JOBS = (SUBMIT_JOB, MATERIALIZE_JOB)
PROFILE = Path(__file__).resolve().parent.parent / "deploy" / "celery"


@pytest.fixture(autouse=True)
def emulator_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """build_definitions() reads OMNI_PROVIDER, and the emulator is used only when asked for."""
    monkeypatch.setenv("OMNI_PROVIDER", "emulator")


TYPE = "omni_assets.components.OmniVideoComponent"


def _executors(defs: Definitions, names: tuple[str, ...] = JOBS) -> set[str]:
    return {defs.resolve_job_def(name).executor_def.name for name in names}


def test_omni_jobs_run_in_process_by_default() -> None:
    defs = build_definitions(storage=OmniStorageResource(url="/tmp/unused"))
    assert _executors(defs) == {in_process_executor.name}


def test_a_code_location_executor_applies_when_asked_and_never_to_your_jobs() -> None:
    from omni_assets.examples import product_catalog_prompts

    mine = define_asset_job("my_job", selection=[product_catalog_prompts.key])
    ours = build_definitions(
        storage=OmniStorageResource(url="/tmp/unused"), extra_assets=[product_catalog_prompts]
    )
    # Default: the deployment's executor reaches the user's jobs, not the two single-op jobs.
    merged = Definitions.merge(ours, Definitions(jobs=[mine], executor=multiprocess_executor))
    assert _executors(merged) == {in_process_executor.name}
    assert _executors(merged, ("my_job",)) == {multiprocess_executor.name}
    # job_executor=None: the omni jobs follow the code location too.
    inherited = Definitions.merge(
        build_definitions(storage=OmniStorageResource(url="/tmp/unused"), job_executor=None),
        Definitions(executor=multiprocess_executor),
    )
    assert _executors(inherited) == {multiprocess_executor.name}


def test_component_option_leaves_the_jobs_on_the_code_location_executor() -> None:
    def load(**extra: object) -> set[str]:
        attributes = {
            "providers": {"apimart": {}},
            "storage": {"url": "/tmp/unused"},
            "emulator_url": "http://127.0.0.1:9",
            **extra,
        }
        with create_defs_folder_sandbox() as sandbox:
            path = sandbox.scaffold_component(
                OmniVideoComponent, defs_yaml_contents={"type": TYPE, "attributes": attributes}
            )
            with sandbox.load_component_and_build_defs(defs_path=path) as (_, defs):
                merged = Definitions.merge(defs, Definitions(executor=multiprocess_executor))
                return _executors(merged)

    assert load() == {in_process_executor.name}
    assert load(jobs_in_process=False) == {multiprocess_executor.name}


def test_the_jobs_pass_nothing_through_an_io_manager() -> None:
    """Their ops' outputs are Nothing: no IO manager writes them to a disk that step workers on
    other machines (Celery's) would not share."""
    defs = build_definitions(storage=OmniStorageResource(url="/tmp/unused"))
    for name in JOBS:
        for node in defs.resolve_job_def(name).graph.node_defs:
            types = {out.dagster_type.display_name for out in node.output_dict.values()}
            assert types == {"Nothing"}, (name, node.name, types)


def test_omni_celery_config_puts_the_jobs_on_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    """``OMNI_CELERY_CONFIG`` (deploy/celery/celery.yaml) -> dagster-celery's executor for the
    two jobs; unset -> in process; a file without an executor config block is refused.
    (reliability/test_celery.py runs the profile with real workers.)"""
    monkeypatch.delenv(CELERY_CONFIG_ENV, raising=False)
    assert job_executor_from_env() is in_process_executor
    monkeypatch.setenv(CELERY_CONFIG_ENV, str(PROFILE / "celery.yaml"))
    executor = job_executor_from_env()
    defs = build_definitions(storage=OmniStorageResource(url="/tmp/unused"), job_executor=executor)
    assert _executors(defs) == {"celery"}
    # What makes a killed worker's step run again elsewhere instead of being lost.
    options = yaml.safe_load((PROFILE / "celery.yaml").read_text())["execution"]["config"]
    source = options["config_source"]
    assert source["task_acks_late"] and source["task_reject_on_worker_lost"]
    assert source["worker_prefetch_multiplier"] == 1
    assert source["broker_transport_options"]["visibility_timeout"] >= 600
    monkeypatch.setenv(CELERY_CONFIG_ENV, str(PROFILE / "dagster.yaml"))
    with pytest.raises(ValueError, match=r"execution\.config"):
        job_executor_from_env()
