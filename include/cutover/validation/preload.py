"""Pay a gate task's imports once per worker process: import this module in the worker before it forks.

Airflow 3 runs every task in a process forked from the worker (the task SDK's supervisor forks the
task runner: ``os.fork``, without exec, except on macOS), and the Celery worker forks its pool from
its main process. What the worker imported before forking, every task has already imported: Airflow
itself preloads its operators that way (the Celery provider's ``on_celery_import_modules``). A gate
task imports GX Core, pandas and the rest of :mod:`cutover.validation.runner` (3-5 s on 2 cores)
and builds the gate catalog of the profile (0.3 s, the ICD-10-CM code set included); in a forked
task both are there already. On a 1.07M-row clinic (``python -m bench gate_task --fork --against``
the commit before the target gate's SQL, median of three, interleaved, load average 2.6-4.3): the
import, 3.3-4.4 s before each gate task, is gone from it; the tasks themselves took 1.8 s (extract),
2.2 s (mapped) and 2.2 s (target) against 2.1, 2.4 and 4.6 s before. gc.freeze() after the preload
(as Airflow's Celery preload does) changed nothing measurable here.

Importing this module does it (so a worker can name it among the modules it imports at start, such
as Celery's ``imports`` setting); :func:`preload` does it again, harmlessly. Nothing here opens a
connection or reads data: only code and the built-in code tables are loaded, and the catalog of the
profile the worker selects (a run under another profile builds its own, keyed by the profile's
SHA-256, :func:`cutover.validation.catalog.catalog`).
"""

from __future__ import annotations

import importlib
import logging
import time

log = logging.getLogger(__name__)

MODULES: tuple[str, ...] = (
    "great_expectations",
    "great_expectations.expectations",
    "great_expectations.validator.v1_validator",
    "great_expectations.core.run_identifier",
    "great_expectations.data_context.types.resource_identifiers",
    "great_expectations.render.renderer.site_builder",
    "great_expectations.execution_engine.pandas_execution_engine",
    "pandas",
    "pyarrow.parquet",
    "psycopg",
    "cutover.validation.runner",
    "cutover.validation.datadocs",
    "cutover.validation.target_rules",
)
"""What a gate task imports, the heaviest first (GX imports most of the rest)."""


def preload() -> float:
    """Import :data:`MODULES` and build the current profile's gate catalog; the seconds it took."""
    started = time.perf_counter()
    for name in MODULES:
        importlib.import_module(name)
    from cutover.validation.catalog import catalog

    try:
        catalog()
    except Exception as exc:  # a profile that cannot be read is the task's to report, not the worker's
        log.warning("gate catalog not preloaded: %s", type(exc).__name__)
    return time.perf_counter() - started


SECONDS = preload()
"""What preloading took in this process."""
