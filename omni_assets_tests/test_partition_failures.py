"""Failures where the UI shows them, read through the GraphQL queries the UI itself sends.

A failed generation is a FAILED ``omni_video`` partition (the partition bar, "Failed (1)", and
the partition page's banner linking a failed run whose step failure holds the reason), not a
grey "Missing" one; requests the sensor rejected are named on ``omni_requests`` and fail its
``valid`` check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dagster import build_sensor_context, partition_loading_context
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceRequestContext
from dagster_graphql.test.utils import execute_dagster_graphql

from omni_assets.cli.driver import LocalDriver
from omni_assets.emulator.tasks import POLICY_MARKER, POLICY_MESSAGE
from omni_assets.registry import RecordState

from .pipeline_env import PipelineEnv, pipeline_env

# What the partitions view asks (AssetPartitionsQuery / partition health, and the partition
# page's AssetPartitionDetailQuery), trimmed to the fields these tests read.
PARTITIONS_QUERY = """
query ($assetKey: AssetKeyInput!, $partition: String!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      partitionStats { numMaterialized numFailed numMaterializing numPartitions }
      assetPartitionStatuses {
        ... on DefaultPartitionStatuses {
          materializedPartitions failedPartitions unmaterializedPartitions materializingPartitions
        }
      }
      latestRunForPartition(partition: $partition) { id status jobName }
    }
  }
}
"""
# What the banner's "View logs" shows: the run's step failure, with its metadata.
RUN_QUERY = """
query ($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent {
          error { message }
          failureMetadata { metadataEntries { label ... on TextMetadataEntry { text } } }
        }
      }
    }
  }
}
"""
CHECKS_QUERY = """
query ($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            executionForLatestMaterialization {
              status
              evaluation {
                success
                description
                metadataEntries {
                  label
                  ... on TableMetadataEntry { table { records } }
                  ... on IntMetadataEntry { intValue }
                }
              }
            }
          }
        }
      }
    }
  }
}
"""
OBSERVATION_QUERY = """
query ($assetKey: AssetKeyInput!) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      assetObservations(limit: 1) {
        description
        metadataEntries { label ... on TableMetadataEntry { table { records } } }
      }
    }
  }
}
"""
VIDEO = {"path": ["omni_video"]}
REQUESTS = {"path": ["omni_requests"]}


@pytest.fixture
def env(tmp_path: Path, fresh_emulator: Any) -> Iterator[PipelineEnv]:
    with pipeline_env(tmp_path, fresh_emulator.url) as e:
        yield e


@contextmanager
def _ui(env: PipelineEnv) -> Iterator[Callable[..., dict[str, Any]]]:
    """Run GraphQL queries as dagster-webserver would, over the default code location."""
    origin = LoadableTargetOrigin(module_name="omni_assets.location", attribute="defs")
    with in_process_test_workspace(env.instance, origin) as context:
        assert isinstance(context, WorkspaceRequestContext)

        def query(text: str, **variables: Any) -> dict[str, Any]:
            result = execute_dagster_graphql(context, text, variables)
            assert not result.errors, result.errors
            return result.data  # type: ignore[no-any-return]

        yield query


def _drive(env: PipelineEnv, requests: list[dict[str, Any]]) -> dict[str, Any]:
    env.write_requests(requests)
    driver = LocalDriver(env.defs, env.instance, env.registry, run_log_level="WARNING")
    result = driver.drive(timeout_s=60, interval_s=0.2)
    return {r.key: r for r in result.records}


def test_failed_generation_is_a_failed_partition_with_its_reason(env: PipelineEnv) -> None:
    records = _drive(
        env,
        [
            {"id": "fine", "prompt": "a calm sea", "provider": "apimart"},
            {
                "id": "refused",
                "prompt": f"a forbidden sea {POLICY_MARKER}",
                "provider": "apimart",
            },
        ],
    )
    assert records["fine"].state == RecordState.MATERIALIZED
    assert records["refused"].state == RecordState.FAILED
    with _ui(env) as graphql:
        node = graphql(PARTITIONS_QUERY, assetKey=VIDEO, partition="refused")["assetNodeOrError"]
        run = node["latestRunForPartition"]
        events = graphql(RUN_QUERY, runId=run["id"])["logsForRun"]["events"]
    assert node["partitionStats"] == {
        "numMaterialized": 1,
        "numFailed": 1,
        "numMaterializing": 0,
        "numPartitions": 2,
    }
    (statuses,) = [node["assetPartitionStatuses"]]
    assert statuses["failedPartitions"] == ["refused"]
    assert statuses["materializedPartitions"] == ["fine"]
    assert (run["status"], run["jobName"]) == ("FAILURE", "omni_report_failure")
    (failure,) = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
    assert POLICY_MESSAGE in failure["error"]["message"]
    assert "omni-assets retry refused" in failure["error"]["message"]
    meta = {m["label"]: m.get("text") for m in failure["failureMetadata"]["metadataEntries"]}
    assert meta["reason"] == records["refused"].error.message
    assert meta["task_id"] == records["refused"].task_id
    # Reported once: a later tick launches no second run for the same failure.
    before = len(env.instance.get_runs())
    LocalDriver(env.defs, env.instance, env.registry).tick("omni_poll_sensor")
    assert len(env.instance.get_runs()) == before


def test_rejected_requests_fail_the_requests_check_naming_them(env: PipelineEnv) -> None:
    _drive(
        env,
        [
            {"id": "fine", "prompt": "a calm sea", "provider": "apimart"},
            {"id": "too-long", "prompt": "x", "provider": "apimart", "duration": 4},
            {"id": "typo", "prompt": "x", "colour": "red"},
        ],
    )
    with _ui(env) as graphql:
        node = graphql(CHECKS_QUERY, assetKey=REQUESTS)["assetNodeOrError"]
        observations = graphql(OBSERVATION_QUERY, assetKey=REQUESTS)["assetOrError"]
    checks = {c["name"]: c for c in node["assetChecksOrError"]["checks"]}
    execution = checks["valid"]["executionForLatestMaterialization"]
    assert execution["status"] == "FAILED"
    evaluation = execution["evaluation"]
    assert not evaluation["success"]
    assert "2 rejected" in evaluation["description"]
    assert "too-long" in evaluation["description"] and "typo" in evaluation["description"]
    entries = {m["label"]: m for m in evaluation["metadataEntries"]}
    assert entries["rejected"]["intValue"] == 2
    rows = entries["rejected_requests"]["table"]["records"]
    assert len(rows) == 2
    assert {"'too-long'" in r for r in rows} == {"'typo'" in r for r in rows} == {True, False}
    # The same table on the asset's latest observation (its overview page).
    (observation,) = observations["assetObservations"]
    assert "2 rejected" in observation["description"]
    tables = {m["label"]: m for m in observation["metadataEntries"]}
    assert tables["rejected_requests"]["table"]["records"] == rows
    # Fixing the file turns the check green on the sensor's next tick.
    env.write_requests([{"id": "fine", "prompt": "a calm sea", "provider": "apimart"}])
    LocalDriver(env.defs, env.instance, env.registry).tick("omni_requests_sensor")
    with _ui(env) as graphql:
        node = graphql(CHECKS_QUERY, assetKey=REQUESTS)["assetNodeOrError"]
    checks = {c["name"]: c for c in node["assetChecksOrError"]["checks"]}
    assert checks["valid"]["executionForLatestMaterialization"]["status"] == "SUCCEEDED"


def test_the_report_run_request_is_one_a_sensor_tick_may_return(env: PipelineEnv) -> None:
    """What the daemon evaluates (``evaluate_tick``): a run of a job the sensor targets, for a
    partition that exists; the LocalDriver tests above execute it."""
    env.write_requests([{"id": "refused", "prompt": f"x {POLICY_MARKER}", "provider": "apimart"}])
    driver = LocalDriver(env.defs, env.instance, env.registry, run_log_level="WARNING")
    driver.tick("omni_requests_sensor")  # registers it and runs omni_submit
    sensor = env.defs.resolve_sensor_def("omni_poll_sensor")
    deadline = time.monotonic() + 30
    requests: list[Any] = []
    while not requests and time.monotonic() < deadline:
        time.sleep(0.3)
        with (
            partition_loading_context(dynamic_partitions_store=env.instance),
            build_sensor_context(
                instance=env.instance,
                resources=env.defs.resources,
                sensor_name=sensor.name,
                definitions=env.defs,  # as in the code server: partitioned requests are checked
            ) as context,
        ):
            requests = list(sensor.evaluate_tick(context).run_requests or [])
    (request,) = requests
    assert (request.job_name, request.partition_key) == ("omni_report_failure", "refused")
    assert request.run_key == "report-failure-refused-1"
