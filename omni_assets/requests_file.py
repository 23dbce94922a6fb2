"""The requests file as an asset the UI shows: ``omni_requests``, and its ``valid`` check.

Requests the sensor rejected used to appear only in one tick's log. Now, every time the file
changes, ``omni_requests_sensor`` reports an observation of ``omni_requests`` (how many valid,
how many rejected, a table of the rejected ones with their reason) and an evaluation of its
``valid`` check, red while any request is rejected. Executing the check from the UI validates
the file again. Nothing here registers or pays for anything.

An external asset of its own rather than a check on ``omni_video``: Dagster shows a check's
latest result only while no newer materialization of its asset exists, and every video is one.
No asset depends on it, so an observation never makes a video look stale.
"""

from collections.abc import Sequence

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    AssetObservation,
    AssetSpec,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset_check,
)

from .pipeline.intake import Intake, RequestIssue, check_requests, load_requests_file
from .pipeline.runtime import OmniRuntime
from .request import VideoRequest
from .resources import runtime_from_resources
from .settings import Settings

__all__ = [
    "REQUESTS_ASSET_KEY",
    "REQUESTS_CHECK_KEY",
    "build_requests_check",
    "check_intake",
    "requests_events",
    "requests_spec",
]

REQUESTS_ASSET_KEY = AssetKey("omni_requests")
REQUESTS_CHECK_KEY = AssetCheckKey(REQUESTS_ASSET_KEY, "valid")

requests_spec = AssetSpec(
    REQUESTS_ASSET_KEY,
    group_name="omni",
    kinds={"yaml"},
    description="The requests file (OMNI_REQUESTS), observed by omni_requests_sensor whenever it "
    "changes: valid and rejected counts, and the rejected requests with their reason.",
)
_SHOWN = 200  # rows in the table; the count says how many there are in all

_SCHEMA = TableSchema(
    columns=[
        TableColumn("request", "string", description="Where in the file: its number and id."),
        TableColumn("field", "string", description="The field at fault, if one is."),
        TableColumn("reason", "string"),
    ]
)


def check_intake(
    runtime: OmniRuntime, requests: Sequence[VideoRequest], issues: Intake | None = None
) -> Intake:
    """Validate ``requests`` (no HTTP, nothing registered): the valid ones and every issue
    (``issues`` first; a parent may be registered already)."""
    parents = {r.extends for r in requests if r.extends}
    known = {r.key for r in runtime.registry.get_many(sorted(parents))} if parents else set()
    checked = check_requests(
        requests,
        default_provider=runtime.default_provider,
        validate=runtime.validate,
        can_extend=runtime.can_extend,
        known_keys=known,
    )
    if issues is not None:
        checked.issues[:0] = issues.issues
    return checked


def _outcome(path: str, checked: Intake) -> tuple[bool, str, dict[str, object]]:
    issues: list[RequestIssue] = checked.issues
    if issues:
        named = "; ".join(str(i) for i in issues[:3]) + (" ..." if len(issues) > 3 else "")
        description = f"{len(issues)} rejected in {path}: {named}"
    else:
        description = f"every request in {path} is valid ({len(checked.requests)})"
    metadata: dict[str, object] = {
        "requests_file": MetadataValue.path(path),
        "valid": MetadataValue.int(len(checked.requests)),
        "rejected": MetadataValue.int(len(issues)),
        "rejected_requests": MetadataValue.table(
            [
                TableRecord({"request": i.where, "field": i.field or "", "reason": i.message})
                for i in issues[:_SHOWN]
            ],
            schema=_SCHEMA,
        ),
    }
    return not issues, description, metadata


def requests_events(path: str, checked: Intake) -> tuple[AssetObservation, AssetCheckEvaluation]:
    """What the requests sensor reports for a validated file: an observation, the check's result."""
    passed, description, metadata = _outcome(path, checked)
    observation = AssetObservation(
        asset_key=REQUESTS_ASSET_KEY,
        description=description,
        metadata=metadata,  # type: ignore[arg-type]
    )
    evaluation = AssetCheckEvaluation(
        asset_key=REQUESTS_ASSET_KEY,
        check_name=REQUESTS_CHECK_KEY.name,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata=metadata,  # type: ignore[arg-type]
    )
    return observation, evaluation


def build_requests_check(
    provider_keys: Sequence[str], requests_path: str | None = None
) -> AssetChecksDefinition:
    """``omni_requests``'s ``valid`` check, executable from the UI: validates the file again."""

    @asset_check(
        asset=REQUESTS_ASSET_KEY,
        name=REQUESTS_CHECK_KEY.name,
        required_resource_keys={"omni_storage", "omni_registry", *provider_keys},
        description="Every request in the requests file (OMNI_REQUESTS) is valid; the rejected "
        "ones are listed with their reason. Reported by omni_requests_sensor when the file "
        "changes; executing it validates the file again.",
    )
    def valid(context: AssetCheckExecutionContext) -> AssetCheckResult:
        path = requests_path or Settings.from_env().requests_path  # as the sensor reads it
        if not path:
            return AssetCheckResult(
                passed=True, description="no requests file: OMNI_REQUESTS is not set"
            )
        runtime = runtime_from_resources(context.resources, provider_keys)
        intake = load_requests_file(path)
        passed, description, metadata = _outcome(
            path, check_intake(runtime, intake.requests, intake)
        )
        return AssetCheckResult(
            passed=passed,
            severity=AssetCheckSeverity.ERROR,
            description=description,
            metadata=metadata,  # type: ignore[arg-type]
        )

    return valid
