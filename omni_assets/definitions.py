"""Everything omni_assets adds to a code location, as one function: :func:`build_definitions`.

It is the public way to put omni_assets into your own code location. The default code location
(``dagster dev`` in the repository root) is :mod:`omni_assets.location`; an example of your own
assets feeding video requests is :mod:`omni_assets.examples`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetsDefinition,
    Definitions,
    EnvVar,
    ExecutorDefinition,
    in_process_executor,
)

from .assets import build_video_asset
from .jobs import build_jobs, report_failure_job
from .lineage_assets import build_lineage_asset, lineage_sensor
from .pipeline.refresh import RefreshConfig
from .reconcile import build_reconcile_sensor
from .requests_asset import build_requests_asset
from .requests_file import build_requests_check, requests_spec
from .resources import (
    OmniRegistryResource,
    OmniStorageResource,
    ProviderResource,
    provider_resources,
)
from .schedules import build_refresh_schedule
from .sensors import build_poll_sensor, build_requests_sensor
from .settings import Settings
from .source_images import source_images_dep, source_images_spec
from .spend_asset import build_spend_asset
from .state import resolve_state

__all__ = ["build_definitions", "state_line"]

log = logging.getLogger("omni_assets")


def build_definitions(
    *,
    settings: Settings | None = None,
    providers: dict[str, ProviderResource] | None = None,
    storage: OmniStorageResource | None = None,
    registry: OmniRegistryResource | None = None,
    requests_path: str | None = None,
    upstream_requests: Sequence[str] = (),
    extra_assets: Sequence[AssetsDefinition] = (),
    poll_interval_s: int | None = None,
    refresh: RefreshConfig | None = None,
    job_executor: ExecutorDefinition | None = in_process_executor,
) -> Definitions:
    """Everything omni_assets adds to a code location.

    ``upstream_requests`` names assets of yours whose output is a list/table of requests; each
    gets a ``<name>_video_requests`` asset that registers them (see requests_asset.py).
    ``refresh`` (default: from ``OMNI_REFRESH_*``, see refresh.py) adds ``omni_refresh_schedule``.
    ``job_executor`` runs ``omni_submit`` and ``omni_materialize``: in process by default, since
    each is one op and a process per step would only add a second process start (imports and
    code location load: ~4 s and ~4 CPU-s a run, docs/benchmarks.md); ``None`` leaves them on
    the code location's executor (e.g. ``k8s_job_executor``). Your own jobs are not affected.
    """
    settings = settings or Settings.from_env()
    providers = providers if providers is not None else provider_resources(settings)
    keys = sorted(providers)
    submit_job, materialize_job = build_jobs(keys, job_executor)
    intake_assets = [build_requests_asset(u, keys) for u in upstream_requests]
    video = build_video_asset(keys, deps=[source_images_dep, *(a.key for a in intake_assets)])
    refresh = refresh or RefreshConfig.from_env()
    resources: dict[str, Any] = {
        **providers,
        "omni_storage": storage or OmniStorageResource(url=settings.storage_url),
        "omni_registry": registry or OmniRegistryResource(),
    }
    log.info(state_line(resources["omni_storage"], resources["omni_registry"]))
    return Definitions(
        assets=[
            video,
            source_images_spec,
            requests_spec,
            build_lineage_asset(),
            build_spend_asset(),
            *intake_assets,
            *extra_assets,
        ],
        asset_checks=[build_requests_check(keys, requests_path)],
        jobs=[submit_job, materialize_job, report_failure_job],
        schedules=[build_refresh_schedule(refresh, keys, submit_job)] if refresh else [],
        sensors=[
            build_requests_sensor(
                keys,
                submit_job,
                requests_path,
                minimum_interval_seconds=settings.requests_sensor_interval_s,
            ),
            build_poll_sensor(
                keys,
                submit_job,
                materialize_job,
                minimum_interval_seconds=poll_interval_s or settings.poll_sensor_interval_s,
            ),
            lineage_sensor(),
            build_reconcile_sensor(),
        ],
        resources=resources,
    )


def state_line(storage: OmniStorageResource, registry: OmniRegistryResource) -> str:
    """Where this code location's state lives, in one line (the CLI prints the same)."""
    state = resolve_state()
    url = registry.url
    shown = f"${url.env_var_name}" if isinstance(url, EnvVar) else (url or state.registry_url)
    line = f"omni_assets state: registry {state.describe_url(shown)} · storage {storage.url}"
    if not state.home_from_env:
        # `dagster dev` without DAGSTER_HOME runs on a temporary instance; the registry does not.
        line += (
            f" · DAGSTER_HOME is not set: a `dagster dev` instance is then temporary (the "
            f"registry is not: {state.home}); `omni-assets ui` keeps the UI's history there"
        )
    return line
