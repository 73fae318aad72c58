"""Cutover's Airflow plugin. Loaded through the package's ``airflow.plugins`` entry point (so every
Airflow component where ``cutover`` is installed has it, with no plugins folder to copy). It registers:

- :class:`cutover.timetable.WindowTimetable`, which Airflow must know to serialize pt_cutover;
- :class:`cutover.operator_audit.OperatorAuditMiddleware` in the API server, which writes what a
  person clears, marks, deletes or triggers on a Cutover DAG into Cutover's audit log;
- :data:`cutover.operator_audit.RETRY_LISTENER`, with which a Cutover task that runs again (a retry,
  or a re-run after a clear) records its try there too.

Loading it also installs :mod:`cutover.airflow_compat`'s fix, without which a clear of a pt_cutover
run fails in Airflow 3.3.2.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cutover import airflow_compat
from cutover.operator_audit import RETRY_LISTENER, OperatorAuditMiddleware
from cutover.timetable import WindowTimetable

airflow_compat.install()


class CutoverPlugin(AirflowPlugin):
    # AirflowPlugin declares these plain class attributes
    name = "cutover"
    timetables = [WindowTimetable]  # noqa: RUF012
    fastapi_root_middlewares = [  # noqa: RUF012
        {"name": "cutover-operator-audit", "middleware": OperatorAuditMiddleware}
    ]
    listeners = [RETRY_LISTENER]  # noqa: RUF012
