"""Which executor runs ``omni_submit`` and ``omni_materialize`` in the default code location.

``OMNI_CELERY_CONFIG`` (the path of a Celery executor config such as
``deploy/celery/celery.yaml``) puts them on Celery workers through dagster-celery (the
``celery`` extra); unset, each runs in its run's process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from dagster import ExecutorDefinition, in_process_executor

__all__ = ["CELERY_CONFIG_ENV", "job_executor_from_env"]

CELERY_CONFIG_ENV = "OMNI_CELERY_CONFIG"


def job_executor_from_env() -> ExecutorDefinition:
    """dagster-celery's executor configured from ``$OMNI_CELERY_CONFIG``, else in process."""
    path = os.environ.get(CELERY_CONFIG_ENV)
    if not path:
        return in_process_executor
    # Imported only here: dagster-celery is an optional extra.
    from dagster_celery import celery_executor

    # The file `dagster-celery worker start -y` reads: both sides use the same broker settings.
    document: Any = yaml.safe_load(Path(path).read_text())
    try:
        config = document["execution"]["config"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{CELERY_CONFIG_ENV}={path}: no execution.config block") from exc
    executor: ExecutorDefinition = celery_executor.configured(config)
    return executor
