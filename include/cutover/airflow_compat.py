"""A fix for one Airflow bug that breaks the runbook: clearing a task of pt_cutover answers HTTP 500.

Airflow 3.3.2 (the version ``requirements.lock`` pins) recalculates a run's ``DAGRUN_QUEUED_AT``
deadlines when the run is cleared, and computes ``timedelta(seconds=alert.interval)`` from the
alert's stored interval, which it stores serialized (``{"__classname__": …, "__data__": seconds}``):
a TypeError, so every clear of a pt_cutover run (its window deadline, :func:`pt_common.alerts.
cutover_deadline`) fails and the operator cannot resume a run as ``docs/operations.md`` says
(apache/airflow#70368; the fix, #70370, was not released with 3.3.2).

:func:`install` replaces ``airflow.models.taskinstance._recalculate_dagrun_queued_at_deadlines``
with the same recalculation reading the interval as Airflow's own ``DeadlineAlert.__repr__`` does
(a bare number or the serialized dict). It is installed by Cutover's plugin in every Airflow
component, only on the version it was written for: on any other, it leaves Airflow alone and says
so once, so an upgrade is a decision (remove this module when Airflow ships the fix).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

FOR_VERSION = "3.3.2"
"""The Airflow release whose bug this fixes."""

_installed = False


def interval_seconds(stored: Any) -> float:
    """The seconds of a deadline alert's stored interval: a bare number (older rows) or Airflow's
    serialized timedelta.

    >>> interval_seconds(3600), interval_seconds({"__classname__": "datetime.timedelta", "__data__": 5400.0})
    (3600.0, 5400.0)
    """
    if isinstance(stored, int | float):
        return float(stored)
    if isinstance(stored, dict) and isinstance(stored.get("__data__"), int | float):
        return float(stored["__data__"])
    raise TypeError(f"a deadline interval Cutover cannot read: {type(stored).__name__}")


def _recalculate(dagrun: Any, new_queued_at: datetime, session: Any) -> None:
    """Move the run's pending ``DAGRUN_QUEUED_AT`` deadlines to its new queued time (Airflow's own
    recalculation, the interval read right); no flush, as Airflow's, to keep its transaction whole."""
    from airflow.models.deadline import Deadline, ReferenceModels
    from airflow.models.deadline_alert import DeadlineAlert
    from sqlalchemy import false, select

    rows = session.execute(
        select(Deadline, DeadlineAlert)
        .join(DeadlineAlert, Deadline.deadline_alert_id == DeadlineAlert.id)
        .where(
            Deadline.dagrun_id == dagrun.id,
            Deadline.missed == false(),
            DeadlineAlert.reference[ReferenceModels.REFERENCE_TYPE_FIELD].as_string()
            == ReferenceModels.DagRunQueuedAtDeadline.__name__,
        )
    ).all()
    for deadline, alert in rows:
        deadline.deadline_time = new_queued_at + timedelta(seconds=interval_seconds(alert.interval))


def install() -> bool:
    """Install the fix on Airflow :data:`FOR_VERSION`; True when installed (now or before)."""
    global _installed
    if _installed:
        return True
    import airflow
    from airflow.models import taskinstance

    if airflow.__version__ != FOR_VERSION:
        log.warning(
            "cutover.airflow_compat: Airflow %s is not %s; its clear-with-deadline fix is not installed",
            airflow.__version__,
            FOR_VERSION,
        )
        return False
    taskinstance._recalculate_dagrun_queued_at_deadlines = _recalculate
    _installed = True
    return True
