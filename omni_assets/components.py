"""``OmniVideoComponent``: omni_assets declared in YAML, for a ``dg`` project.

Registered through the ``dagster_dg_cli.registry_modules`` entry point, so ``dg list components``
shows it and ``dg scaffold defs omni_assets.components.OmniVideoComponent videos`` writes a
``defs.yaml`` (and an example requests file) to edit::

    type: omni_assets.components.OmniVideoComponent
    attributes:
      providers:
        apimart:                       # key from $APIMART_API_KEY (api_key_env to rename)
          model: Omni-Flash-Ext
          max_in_flight: 20
      default_provider: apimart
      storage:
        url: s3://my-bucket/omni      # credentials from the AWS_* environment
      requests: requests.yaml         # relative to this defs.yaml
      poll_interval_seconds: 15
      schedule:                       # optional scheduled refresh (pipeline/refresh.py)
        cron: "0 6 * * *"
        requests: ["catalog-*"]
        keep: 7

It builds exactly what :func:`omni_assets.definitions.build_definitions` builds (the
``omni_video`` asset, its checks, the jobs, sensors, schedule and resources). One per code
location: the asset key and job names are fixed. API keys are never written in the YAML: each
provider names the environment variable holding its key, and the resource reads it through
``dagster.EnvVar``, so the UI shows the variable's name, not the key.
"""

from pathlib import Path
from typing import Any

import dagster as dg
from dagster import EnvVar
from dagster.components import Scaffolder, ScaffoldRequest, scaffold_component, scaffold_with
from pydantic import Field, field_validator, model_validator

from .definitions import build_definitions
from .pipeline.refresh import RefreshConfig
from .providers.capabilities import PROVIDER_NAMES
from .resources import (
    OmniRegistryResource,
    OmniStorageResource,
    ProviderResource,
    ProviderSettings,
    provider_resource,
)

__all__ = [
    "OmniProviderConfig",
    "OmniScheduleConfig",
    "OmniStorageConfig",
    "OmniVideoComponent",
]


class OmniProviderConfig(dg.Model, ProviderSettings):
    """One provider: where its key is, and how hard to use it (:class:`ProviderSettings`)."""

    api_key_env: str | None = Field(
        default=None,
        description="Environment variable holding the API key (default <PROVIDER>_API_KEY; "
        "google: GEMINI_API_KEY, else GOOGLE_API_KEY).",
    )


class OmniStorageConfig(dg.Model):
    """Where videos go: any fsspec URL (a folder, ``s3://bucket/prefix``...)."""

    url: str = Field(description="fsspec URL of the storage root.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options, e.g. client_kwargs.endpoint_url for an S3-compatible store. "
        "Leave credentials to the environment (AWS_ACCESS_KEY_ID...).",
    )


class OmniScheduleConfig(dg.Model):
    """Scheduled refresh: regenerate the named requests as new partitions on a cron."""

    cron: str = Field(description="When, e.g. '0 6 * * *'.")
    requests: list[str] = Field(description="Request ids to refresh; * patterns allowed.")
    keep: int = Field(default=0, description="Newest refreshes kept per request; 0 keeps all.")
    timezone: str = Field(default="UTC", description="Timezone of the cron.")


class _OmniScaffolder(Scaffolder[Any]):
    """``dg scaffold defs``: a defs.yaml to edit, and an example requests file beside it."""

    def scaffold(self, request: ScaffoldRequest[Any]) -> None:
        if request.scaffold_format != "yaml":
            scaffold_component(request)
            return
        scaffold_component(
            request,
            {
                "providers": {"apimart": {"model": "Omni-Flash-Ext"}},
                "default_provider": "apimart",
                "storage": {"url": "{{ context.project_root }}/videos"},
                "requests": "requests.yaml",
            },
        )
        (request.target_path / "requests.yaml").write_text(
            "# One entry per video; every field is in the omni_assets docs/reference.md.\n"
            "requests:\n"
            "  - id: paper-boat\n"
            "    prompt: A paper boat drifting down a rain-soaked street at dusk\n"
            "    duration: 6\n"
            '    aspect_ratio: "16:9"\n'
        )


@scaffold_with(_OmniScaffolder)
class OmniVideoComponent(dg.Component, dg.Resolvable, dg.Model):
    """Gemini Omni videos (JimmyAI, APIMart, ToAPIs, CRUN, Google) as a partitioned asset.

    Declares the providers (keys from the environment), storage, the requests file, the poll
    interval and an optional refresh schedule; builds the same definitions as
    ``omni_assets.definitions.build_definitions``.
    """

    providers: dict[str, OmniProviderConfig] = Field(
        description="Providers to use, by name: jimmyai, apimart, toapis, crun, google."
    )
    default_provider: str | None = Field(
        default=None,
        description="Where requests that name no provider go (default: the only provider, or "
        "OMNI_PROVIDER).",
    )
    storage: OmniStorageConfig = Field(description="Where videos and sidecars are written.")
    requests: str | None = Field(
        default=None,
        description="Requests file (YAML or JSONL), relative to this defs.yaml; default "
        "$OMNI_REQUESTS.",
    )
    upstream_requests: list[str] = Field(
        default_factory=list,
        description="Names of your assets whose output is a list of requests.",
    )
    registry_url_env: str | None = Field(
        default=None,
        description="Environment variable with the registry's SQLAlchemy URL (default "
        "OMNI_REGISTRY_URL; SQLite in the Dagster home when unset, see omni_assets.state).",
    )
    poll_interval_seconds: int = Field(
        default=15, description="Minimum seconds between omni_poll_sensor ticks."
    )
    schedule: OmniScheduleConfig | None = Field(
        default=None, description="Optional scheduled refresh of named requests."
    )
    jobs_in_process: bool = Field(
        default=True,
        description="Run omni_submit and omni_materialize (one op each) in their run's process; "
        "false leaves them on the code location's executor.",
    )
    emulator_url: str | None = Field(
        default=None,
        description="Point every provider at the built-in emulator at this URL (offline trials, "
        "tests); no API key is read.",
    )

    @field_validator("providers")
    @classmethod
    def _known_providers(
        cls, value: dict[str, OmniProviderConfig]
    ) -> dict[str, OmniProviderConfig]:
        unknown = sorted(set(value) - set(PROVIDER_NAMES))
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; allowed: {', '.join(PROVIDER_NAMES)}")
        if not value:
            raise ValueError(f"declare at least one provider: {', '.join(PROVIDER_NAMES)}")
        return value

    @model_validator(mode="after")
    def _default_is_declared(self) -> "OmniVideoComponent":
        if self.default_provider is not None and self.default_provider not in self.providers:
            raise ValueError(
                f"default_provider {self.default_provider!r} is not among the declared "
                f"providers: {', '.join(sorted(self.providers))}"
            )
        return self

    def provider_resources(self) -> dict[str, ProviderResource]:
        """The provider resources this component declares (keys through EnvVar)."""
        default = self.default_provider or (
            next(iter(self.providers)) if len(self.providers) == 1 else None
        )
        return {
            name: provider_resource(
                name,
                emulator_url=self.emulator_url,
                api_key_env=config.api_key_env,
                is_default=name == default,
                **config.model_dump(include=set(ProviderSettings.model_fields)),
            )
            for name, config in sorted(self.providers.items())
        }

    def requests_path(self, base: Path) -> str | None:
        """The requests file, absolute (relative paths are relative to ``base``)."""
        if not self.requests:
            return None
        path = Path(self.requests)
        return str(path if path.is_absolute() else (base / path).resolve())

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        registry_url = EnvVar(self.registry_url_env) if self.registry_url_env else None
        refresh = (
            RefreshConfig(
                cron=self.schedule.cron,
                keys=tuple(self.schedule.requests),
                keep=self.schedule.keep,
                timezone=self.schedule.timezone,
            )
            if self.schedule
            else None
        )
        return build_definitions(
            providers=self.provider_resources(),
            storage=OmniStorageResource(
                url=self.storage.url, storage_options=dict(self.storage.storage_options)
            ),
            registry=OmniRegistryResource(url=registry_url),
            requests_path=self.requests_path(context.path),
            upstream_requests=self.upstream_requests,
            poll_interval_s=self.poll_interval_seconds,
            refresh=refresh,
            job_executor=dg.in_process_executor if self.jobs_in_process else None,
        )
