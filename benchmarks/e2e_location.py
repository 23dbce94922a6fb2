"""The code location of the end-to-end benchmark: the default one, with submission budgets raised.

Everything comes from the documented environment (``OMNI_*``) as in ``omni_assets.location``;
only the APIMart resource's config differs: ``max_in_flight`` and ``rate_limit_per_s`` from
``BENCH_MAX_IN_FLIGHT`` / ``BENCH_RATE_LIMIT_PER_S`` (the default 20 in flight would make 200
requests take ten generation times), and polling as often as the sensor ticks. The two jobs run
in process as shipped; ``BENCH_EXECUTOR=multiprocess`` puts them on Dagster's default
multiprocess executor instead (``job_executor=None``), a process start more per run; and
``OMNI_CELERY_CONFIG`` on Celery workers, as in ``omni_assets.location`` (benchmarks.celery_scale).
"""

from __future__ import annotations

import os

from dagster import Definitions

from omni_assets.definitions import build_definitions
from omni_assets.executors import job_executor_from_env
from omni_assets.resources import APIMartResource
from omni_assets.settings import EMULATOR_API_KEY, Settings


def _omni() -> Definitions:
    settings = Settings.from_env()
    multiprocess = os.environ.get("BENCH_EXECUTOR") == "multiprocess"
    return build_definitions(
        settings=settings,
        providers={
            "apimart": APIMartResource(
                api_key=EMULATOR_API_KEY,
                base_url=f"{settings.emulator_url}/apimart",
                emulator_url=settings.emulator_url,
                poll_interval_s=1.0,
                max_in_flight=int(os.environ.get("BENCH_MAX_IN_FLIGHT", "1000")),
                rate_limit_per_s=float(os.environ.get("BENCH_RATE_LIMIT_PER_S", "20")),
            )
        },
        job_executor=None if multiprocess else job_executor_from_env(),
    )


defs = _omni()
