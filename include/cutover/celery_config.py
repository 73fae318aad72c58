"""The Celery workers' configuration (docker-compose's ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS``):
Airflow's own, plus :mod:`cutover.validation.preload` among the modules a worker imports at start.

Celery imports ``imports`` in the worker's main process before it forks its pool, and Airflow 3's
supervisor forks each task from a pool process without exec: every task starts with GX, pandas,
Arrow and the gates loaded instead of importing them again (3-5 s a gate task on 2 cores). Airflow
itself preloads its operators the same way.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG: dict[str, Any] = {
    **DEFAULT_CELERY_CONFIG,
    "imports": [*DEFAULT_CELERY_CONFIG.get("imports", ()), "cutover.validation.preload"],
}
