"""
# pt_monitor — data quality after the cutover

Runs every morning (06:00 in the plan's timezone) while the legacy system is kept read-only
after the cutover, and skips until a cutover run has been accepted.

## Runbook
1. `monitor_quality` re-runs the reconciliation of every accepted cutover run (the big bang's,
   or each wave's) against the legacy data that run staged, and the target gate (GX on the
   target). It computes accuracy, completeness and consistency, compares every failure with the
   previous monitor run's (**new**, **resolved**, **persisting**) and appends to the history.
2. `write_evidence` seals the evidence folder: `monitor.json`, `monitor.html` (the trend),
   `reconciliation_<n>.json`, the gate results and data docs, `manifest.sha256`.

**If a metric drops**: the new failures are listed by kind, table and legacy id in
`monitor.json` and `migration.validation_failure` (run `<monitor run>.<n>`); `cutover trace`
shows where a record went. Nothing here changes the target.

Connections: `target_db`, `staging_store`.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from airflow.timetables.trigger import CronTriggerTimetable

from cutover.plan import load_plan
from pt_common import DAG_SETTINGS, conn_url, run_actor
from pt_common.assets import MIGRATED_TARGET

PLAN = load_plan()


@dag(
    dag_id="pt_monitor",
    schedule=CronTriggerTimetable("0 6 * * *", timezone=PLAN.timezone),
    description=f"Daily (06:00 {PLAN.timezone}): accepted cutovers reconciled again, failures tracked",
    doc_md=__doc__,
    **DAG_SETTINGS,
    tags=["cutover", "quality"],
)
def pt_monitor() -> None:
    @task
    def monitor_quality(run_id: str | None = None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from cutover.monitor import NothingToMonitor, monitor

        try:
            return monitor(conn_url("target_db"), conn_url("staging_store"), str(run_id), actor=run_actor())
        except NothingToMonitor as skip:
            raise AirflowSkipException(str(skip)) from None

    @task(inlets=[MIGRATED_TARGET])
    def write_evidence(run_id: str | None = None) -> dict:
        from cutover.pipeline import seal_evidence

        return seal_evidence(
            conn_url("staging_store"), str(run_id), target_url=conn_url("target_db"), actor=run_actor()
        )

    monitor_quality() >> write_evidence()


pt_monitor()
