"""The default code location: ``dagster dev`` in the repository root loads ``defs`` from here.

Configured from the environment (see :mod:`omni_assets.settings`): the ``omni_video`` asset, the
``source_images`` it is made from and the ``omni_lineage`` graph, with their jobs and sensors.
In a deployment, ``dagster api grpc --module-name omni_assets.location`` serves it. Your own code
location calls :func:`omni_assets.build_definitions` instead. ``OMNI_CELERY_CONFIG`` runs the
two jobs on Celery workers (:mod:`omni_assets.executors`, deploy/celery/).
"""

from __future__ import annotations

from .definitions import build_definitions
from .executors import job_executor_from_env

__all__ = ["defs"]

defs = build_definitions(job_executor=job_executor_from_env())
