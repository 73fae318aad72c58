"""
# pt_remediate — carry corrected rejects, and every row that waited on them

A rejected legacy row is not left behind: the evidence of every run holds the remediation worklist
(`remediation.csv`: the open root rejects, the column at fault, the rows depending on each; ids and
codes only). A data steward records a corrected legacy value with `cutover remediation correct`
(or `cutover remediation import corrections.csv`), sealed in the staging store and written to the
audit log with their name, or accepts a row as not carried (`cutover remediation accept`). This DAG
then moves exactly the corrected rows and the rejects that depend on them (their patients' table
whole, so the duplicate matcher decides as the cutover did) through the cutover's own map and load,
with the corrections applied over the extracted rows.

## Runbook
1. `plan_remediation` reads the corrections, refuses any the audit log does not vouch for, and
   stages the scope: the corrected rows still rejected and every reject whose root they are. It
   skips when no correction waits.
2. `begin_run` records the run and who triggered it, and takes its copy of the corrections.
3. `extract_table` → `map_table` (the corrections overlaid) → gates → `load.<table>`: the
   cutover's stages on the rows in scope (an upsert by deterministic id: a row that was rejected
   moves from `migration.reject` to the crosswalk).
4. `write_evidence` accounts for every row (migrated, merged or rejected again), closes the
   corrections the ledger now carries (`migration.remediation`), reopens one rejected again, and
   writes the new worklist and `remediation_report.json` (rows carried per table).
5. `end_run` frees the target.

Connections: `legacy_db`, `target_db`, `staging_store`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from pt_common import DAG_SETTINGS, conn_url, profile_param, run_actor
from pt_common.assets import MIGRATED_TARGET
from pt_common.stages import (
    check_configuration,
    end_run,
    extract_map_load,
    owner_url,
    take_delivery,
    validate_gate,
)


@dag(
    dag_id="pt_remediate",
    schedule=None,
    description="On demand: corrected rejects and the rows that depend on them",
    doc_md=__doc__,
    **DAG_SETTINGS,
    tags=["cutover", "remediation"],
    params={
        "profile": profile_param(),
        # a remediation's scope is rows that were rejected: one rejected again is reported (and reopened
        # on the worklist), never a reason to undo the rows the corrections did carry
        "max_reject_rate": Param(1.0, type="number", minimum=0, maximum=1),
    },
)
def pt_remediate() -> None:
    @task
    def plan_remediation(run_id: str | None = None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from cutover.remediation import NothingToRemediate
        from cutover.remediation_run import plan_run as plan
        from cutover.security import migrate_and_grant

        target = conn_url("target_db")
        migrate_and_grant(owner_url(), target)
        try:
            return plan(conn_url("staging_store"), target, str(run_id))
        except NothingToRemediate as skip:
            raise AirflowSkipException(str(skip)) from None

    @task
    def begin_run(planned: dict, run_id: str | None = None) -> None:
        from cutover.pipeline import begin_run as begin

        begin(
            conn_url("target_db"),
            str(run_id),
            "pt_remediate",
            {"corrected_rows": planned["corrected_rows"]},
            run_actor(),
            store_url=conn_url("staging_store"),
        )

    @task(inlets=[MIGRATED_TARGET], outlets=[MIGRATED_TARGET])
    def write_evidence(planned: dict, run_id: str | None = None, params: dict | None = None) -> dict:
        from cutover.pipeline import write_summary
        from cutover.remediation_run import write_report

        report = write_report(conn_url("target_db"), conn_url("staging_store"), str(run_id), planned)
        write_summary(
            conn_url("target_db"),
            conn_url("staging_store"),
            str(run_id),
            "pt_remediate",
            max_reject_rate=float((params or {}).get("max_reject_rate", 1.0)),
            actor=run_actor(),
        )
        return report

    planned = plan_remediation()
    check_configuration() >> take_delivery() >> planned
    started = begin_run(planned)
    gated, load, _ = extract_map_load("target", started)
    gated >> load.start
    (
        [load.tables, load.done]
        >> validate_gate.override(task_id="gate_target")("target")
        >> write_evidence(planned)
        >> end_run("pt_remediate").as_teardown(setups=started)  # the target is free again
    )


pt_remediate()
