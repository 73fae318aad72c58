"""
# pt_rollback — undo a cutover run

Restores the target (the `pt` tables and the migration ledger) to exactly its state before a
`pt_cutover` run loaded, from the snapshot that run took before its first load
(schema `rollback_<run key>` in the target database), and proves it by counts and checksums.
Use it when a cutover must be abandoned: the clinics stay on the legacy system, fix the cause,
run the cutover again.

## Before you trigger it
- Stop the cutover run first (mark it failed in the UI): a load still writing makes the restore
  wait, then fail and retry.
- Only the **latest** run can be undone. If another run loaded after it (a later wave, a
  re-run), roll that one back first: the DAG refuses and names it.
- In a phased migration the clinics of earlier waves already work in the new system. The
  restore brings every table back to the snapshot, so whatever they entered since (a visit
  charted on Saturday) would be undone too. The DAG refuses when rows of patients the run did
  not load changed since its snapshot, and names the tables and counts: stop those writes,
  export what was entered, then trigger again with `undo_outside_changes` on.
- The run id is on the cutover run's page (e.g. `manual__2026-11-27T18:00:00+00:00`). Type it
  twice: once as `run_id`, once as `confirm`.

## Runbook
1. `check_rollback` refuses, touching nothing, when the confirmation differs from the run id,
   the run is unknown, it has no snapshot (never taken, or dropped after the run was accepted),
   a later run loaded on top of it, or (unless `undo_outside_changes`) rows of patients it did
   not load changed since its snapshot.
2. `restore_target` restores every table in one transaction: tables that were empty before the
   run are truncated, others get back exactly their rows (only the rows that differ are written).
   Before committing it compares every table's rows and checksum with the snapshot; on any
   difference nothing is committed and the task fails naming tables and counts. Then the run is
   marked `rolled_back` in `migration.run` and the audit log records who did it.
3. `verify_restored` checks again, after the commit, that the target equals the snapshot, and
   writes `rollback.json` (tables and counts) to the evidence.

**If a task fails**: a *terminal* error (refusal, mismatch) fails at once, nothing is changed;
read the message (tables, counts and run ids only). A *transient* one (database busy or
unreachable) is retried. Re-running a finished rollback changes nothing.

The snapshot holds a copy of patient data: once a cutover is accepted, drop it
(`cutover.rollback.drop_snapshot`). Connections: `target_db`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from pt_common import DAG_SETTINGS, conn_url, run_actor
from pt_common.stages import owner_url


@dag(
    dag_id="pt_rollback",
    schedule=None,
    description="Undo one pt_cutover run exactly, from its snapshot (confirm by typing the run id)",
    doc_md=__doc__,
    **DAG_SETTINGS,
    tags=["cutover", "rollback"],
    params={
        "run_id": Param(
            type="string",
            minLength=1,
            title="Cutover run to undo",
            description="The run id of the pt_cutover run whose load is undone (its page in the UI shows it).",
            section="Rollback",
        ),
        "confirm": Param(
            type="string",
            minLength=1,
            title="Confirm: type the run id again",
            description="Must equal the run id above, or nothing happens.",
            section="Rollback",
        ),
        "undo_outside_changes": Param(
            False,
            type="boolean",
            title="Also undo what others entered since",
            description=(
                "Off: refuse when rows of patients this run did not load changed since its snapshot "
                "(entered in the new system meanwhile). On: restore anyway, undoing them too."
            ),
            section="Rollback",
        ),
    },
)
def pt_rollback() -> None:
    @task
    def check_rollback(params: dict | None = None) -> dict:
        from cutover.rollback import check_rollback as check

        p = params or {}
        return dict(
            check(
                conn_url("target_db"),
                str(p["run_id"]),
                confirm=str(p.get("confirm") or ""),
                undo_outside_changes=bool(p.get("undo_outside_changes")),
            )
        )

    @task
    def restore_target(checked: dict, params: dict | None = None) -> dict:
        from cutover.rollback import rollback_run

        user = run_actor()
        undo = bool((params or {}).get("undo_outside_changes"))
        return dict(rollback_run(owner_url(), checked["run_id"], actor=user, undo_outside_changes=undo))

    @task
    def verify_restored(restored: dict, run_id: str | None = None) -> dict:
        import json

        from cutover.pipeline import evidence_dir, seal_evidence
        from cutover.rollback import verify_restored as verify

        verified = verify(conn_url("target_db"), restored["run_id"])
        evidence: dict[str, Any] = {"restored": restored, "verified": verified}
        (evidence_dir(str(run_id)) / "rollback.json").write_text(
            json.dumps(evidence, indent=1, sort_keys=True)
        )
        seal_evidence(
            conn_url("staging_store"), str(run_id), target_url=conn_url("target_db"), actor=run_actor()
        )
        return {"run_id": verified["run_id"], "tables": verified["tables"], "matched": verified["matched"]}

    verify_restored(restore_target(check_rollback()))


pt_rollback()
