"""
# pt_delta_sync — carry late legacy edits of migrated waves into the new system

Between the waves of a phased migration, the clinics of a migrated wave may still see edits in
the legacy system (late-signed notes, payments posted after the weekend). This DAG finds the rows
of every migrated wave changed after the last run that covered the wave — its `modified` above
that run's high-water mark, or the row differs from the copy that run extracted (an edit the
legacy system did not stamp) — and moves exactly those through the cutover's own map and load.
It runs nightly in the plan's timezone, and skips when no wave has been migrated yet.

## Runbook
1. `plan_delta` lists the migrated waves (successful phased `pt_cutover` runs and earlier syncs)
   and stages the scope: each wave's rows changed since its mark or its runs' extract (its
   patients whole, so the duplicate matcher decides as the cutover did).
2. `begin_run` records the sync, its waves and who triggered it.
3. `extract_table` → `map_table` → `load.<table>`: the cutover's stages, on the changed rows
   (an upsert by deterministic id: a changed row updates its target row, a new one is inserted).
4. `write_evidence` accounts for every changed row (migrated, merged or rejected) and writes
   `delta_report.json` (changed rows per table, of them `unstamped_rows` without a newer
   `modified`, the marks used); the next sync starts from the marks and the extract of this one.
5. `write_evidence` also finds the legacy rows of migrated waves deleted in the legacy system
   after they were migrated (the ledger's migrated and merged rows whose legacy id is gone):
   `deleted_rows` per table in `delta_report.json`, their ids (legacy id, new id, wave) in
   `deleted_rows.csv`, the total in its result. Nothing is deleted in the new system: a deleted
   clinical record needs a person's decision, and the row is reported by every sync until then.
   From a CSV delivery (`take_delivery` fetches the night's files first, applied onto the earlier
   deliveries: a new or modified row replaces the stored row with its key), a row flagged removed is
   never carried: migrated ones are listed in `removed_rows.csv` (`removed_rows` in the report).

Connections: `legacy_db` (a database, or a folder of CSV files), `target_db`, `staging_store`.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from airflow.timetables.trigger import CronTriggerTimetable

from cutover.plan import load_plan
from pt_common import DAG_SETTINGS, conn_url, legacy_url, profile_param, run_actor
from pt_common.assets import MIGRATED_TARGET
from pt_common.stages import (
    as_of,
    check_configuration,
    end_run,
    extract_map_load,
    owner_url,
    take_delivery,
    validate_gate,
)

PLAN = load_plan()


@dag(
    dag_id="pt_delta_sync",
    schedule=CronTriggerTimetable("0 2 * * *", timezone=PLAN.timezone),
    description=f"Nightly between waves (02:00 {PLAN.timezone}): legacy rows changed since a wave's cutover",
    doc_md=__doc__,
    **DAG_SETTINGS,
    tags=["cutover", "phased"],
    params={"profile": profile_param()},
)
def pt_delta_sync() -> None:
    @task
    def plan_delta(run_id: str | None = None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from cutover.delta import NothingMigrated
        from cutover.delta import plan_delta as plan
        from cutover.security import migrate_and_grant

        target = conn_url("target_db")
        migrate_and_grant(owner_url(), target)
        try:
            return plan(
                legacy_url(str(run_id)), conn_url("staging_store"), target, str(run_id), as_of=as_of()
            )
        except NothingMigrated as skip:
            raise AirflowSkipException(str(skip)) from None

    @task
    def begin_run(planned: dict, run_id: str | None = None) -> None:
        from cutover.pipeline import begin_run as begin

        user = run_actor()
        conf = {"waves": planned["waves"]}
        begin(
            conn_url("target_db"),
            str(run_id),
            "pt_delta_sync",
            conf,
            user,
            store_url=conn_url("staging_store"),
        )

    @task(inlets=[MIGRATED_TARGET], outlets=[MIGRATED_TARGET])
    def write_evidence(planned: dict, run_id: str | None = None) -> dict:
        from cutover.delta import write_delta_report
        from cutover.pipeline import write_summary

        report = write_delta_report(
            conn_url("staging_store"),
            str(run_id),
            planned,
            legacy_url=legacy_url(str(run_id)),
            target_url=conn_url("target_db"),
        )
        write_summary(
            conn_url("target_db"), conn_url("staging_store"), str(run_id), "pt_delta_sync", actor=run_actor()
        )
        return report

    planned = plan_delta()
    check_configuration(plan=True) >> take_delivery() >> planned
    started = begin_run(planned)
    gated, load, _ = extract_map_load("target", started)
    gated >> load.start
    (
        [load.tables, load.done]
        >> validate_gate.override(task_id="gate_target")("target")
        >> write_evidence(planned)
        >> end_run("pt_delta_sync").as_teardown(setups=started)  # the target is free again
    )


pt_delta_sync()
