"""``python -m cutover.preloaded_airflow <airflow arguments>``: Airflow's command, with what the tasks
import loaded first (:mod:`cutover.validation.preload`: GX, pandas, Arrow, psycopg, the gates).

The local Airflow (:mod:`cutover.local_airflow`) starts its scheduler this way. The LocalExecutor's
workers are forked from the scheduler and every task from a worker (Airflow 3's supervisor forks the
task runner, no exec), so each task starts with those modules loaded instead of importing them again:
3-5 s a gate task on 2 cores, and the pandas and Arrow imports of every extract, map and load task.
The scheduler starts that much later, once. Measured with the browser test's pt_cutover run (200
patients, about 120 task instances, load average about 1.5 on 2 cores): 100 s from its first task to
its last before, 72 s preloaded.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


def main() -> None:
    started = time.perf_counter()
    import cutover.validation.preload  # noqa: F401  (importing it preloads)

    seconds = time.perf_counter() - started
    from airflow.__main__ import main as airflow

    sys.argv = ["airflow", *sys.argv[1:]]
    log.info("preloaded the tasks' modules in %.1fs", seconds)
    airflow()


if __name__ == "__main__":
    main()
