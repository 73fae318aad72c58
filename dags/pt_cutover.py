"""
# pt_cutover — the cutover load

Moves the legacy practice system's records into the new system's PostgreSQL, and proves that
every legacy row has exactly one outcome: **migrated**, **merged** into a duplicate, or
**rejected** with a reason.

**Big bang** (trigger form, `mode` = big_bang): every clinic at once. **Phased**: one wave of
clinics of the cutover plan (`cutover_plan.yaml`); the DAG's timetable fires at the window's start
(Friday 18:00 in the plan's timezone) and a scheduled run migrates the wave whose go-live date it
is, or skips cleanly when none is.

The DAG is **created paused**, and only a data engineer (the trigger right) may unpause it: the
Operator role clears and retries tasks but can neither trigger nor unpause. Unpaused, it waits for
the next window; a scheduled run that starts later than the window's start plus the plan's
`window.late_start_minutes` (a Friday missed while paused, a scheduler that was down) refuses.

## Runbook
1. `choose_scope` decides what this run moves (all, or the wave of the day); skips otherwise, and
   refuses (skips, with an alert) a scheduled run that starts later than its window's start plus the
   plan's `window.late_start_minutes` (30 by default): a cutover never starts by itself outside its
   window (a DAG unpaused days after the Friday it missed).
   `take_delivery`, when `legacy_db` is a folder of CSV files (local or SFTP), fetches each file once
   into the staging store with its SHA-256, size and counts (`delivery.json`): the run reads only that.
2. `require_verified_backup` refuses to start (nothing touched) without a `pt_backup` backup that
   passed its restore test and is younger than `max_backup_age_hours`, and links the evidence the
   cutover relies on (`links.json`): that backup's sealed bundle, the newest trial's and the newest
   assessment's, each by its manifest's SHA-256, refusing one changed since its seal.
3. `migrate_target_schema` creates or upgrades the target schemas (versioned migrations).
4. `begin_run` records the run and who triggered it in `migration.run` and the audit log.
5. `plan_scope` stages the run's scope (patients, cases, visits of the wave; all for big bang).
6. `extract_table` (one per legacy table) streams the scope into zstd Parquet in the staging
   store, `runs/<run>/extract/<table>/`; `gate_extract` (GX) checks what was read.
7. `map_table` (one per table) normalises the rows with the mapping specs; rejects carry a
   reason code, never a value. `gate_mapped` (GX) checks the target's contract on the rows about
   to load: a fatal failure stops the run here, before anything is written. `gate_rejects`
   counts what the load would reject (the mapping's rejects and their cascades: rows of a rejected
   parent, orphans) against `thresholds.yaml`: a breach stops the run here too, target untouched
   (`gates/rejects.json`). With `dry_run` the run stops here too.
8. `snapshot_target` copies the target as it is (schema `rollback_<run>`, inside PostgreSQL) so
   `pt_rollback` can undo this run exactly; drop it once the run is accepted.
   `defer_constraints`: into an empty target (big bang, first wave) the foreign keys and secondary
   indexes are set aside, and `restore_constraints` puts them back after the last batch (also after
   a failed one), checked set-based. `load.<table>` merges each staged batch in one transaction
   (COPY, resolve parents through the crosswalk, upsert by deterministic id, ledger; on a first
   load, parents resolved in Arrow and every row written by COPY). Parents load before children.
   A re-run skips batches the ledger marks loaded.
9. `gate_target` (GX on PostgreSQL: PT rules such as visits within the episode, the 8-minute
   rule, plan-of-care certification) and `reconcile` (counts, every legacy id through the
   crosswalk, per-patient chart checksums, mismatches in `migration.validation_failure`; the
   outcome counts against the legacy counts and the reject policy, so a mass rejection is a
   finding, not a match). If
   either rejects the loaded target, `undo_rejected_load` restores the snapshot: the target is
   as before the run, and the run stays failed with the gate's reason. It refuses, leaving the
   load in place, when rows of patients the run did not load changed meanwhile (an earlier
   wave's clinics at work): then decide with `pt_rollback`.
10. `write_evidence` writes `summary.json` (per table: legacy rows, migrated, merged, rejected),
   `timings.json`, `bundle.json`, `report.html` and `manifest.sha256`, seals the folder
   (`evidence/pt_cutover/<run>/`, read-only, published to the staging store, the manifest's SHA-256
   in `migration.run` and the audit log), and fails if any legacy row has no outcome or a table
   rejected more than its policy allows. Cleared and run again, it seals a new version (`v2/`) and
   never rewrites the first; `cutover evidence verify <run id>` checks the whole chain.

**If a task fails**: read its log (ids and counts only). A *terminal* error (bad data, broken
contract, no verified backup) fails at once; fix the cause, then clear the task: the run resumes
from its ledger. A *transient* error (database, network) is retried automatically.
To undo a run, trigger `pt_rollback` with its run id.

Connections: `legacy_db` (a database, or a folder of CSV files: `csv://` or `sftp://`), `target_db`,
`staging_store`; optional `target_owner_db` (the schemas'
owner, for migrations and snapshots, so `target_db` can be a least-privilege loader).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from cutover.plan import load_plan
from cutover.timetable import WindowTimetable
from pt_common import DAG_SETTINGS, conn_url, legacy_url, profile_param, run_actor
from pt_common.alerts import cutover_deadline
from pt_common.assets import MIGRATED_TARGET, TRIAL_VERDICT, VERIFIED_BACKUP
from pt_common.stages import (
    as_of,
    check_configuration,
    end_run,
    extract_map_load,
    owner_url,
    reject_rate,
    take_delivery,
    validate_gate,
)

PLAN = load_plan()  # a local YAML file: the timetable and the defaults come from the cutover plan


@dag(
    dag_id="pt_cutover",
    # the window's start each week; a window long past (a Friday missed while paused) is never started
    schedule=WindowTimetable(
        PLAN.cron, timezone=PLAN.timezone, late_start=timedelta(minutes=PLAN.late_start_minutes)
    ),
    description=(
        f"The cutover load; window {PLAN.window_text}; created paused, unpaused by a data engineer only"
    ),
    doc_md=__doc__,
    **DAG_SETTINGS,
    tags=["cutover"],
    deadline=cutover_deadline(),  # alert while there is still time to roll back inside the window
    params={
        "profile": profile_param(),
        "mode": Param(
            "big_bang",
            enum=["big_bang", "phased"],
            title="Cutover mode",
            description="big_bang moves every clinic at once; phased moves one wave of clinics "
            "(scheduled runs are always phased).",
            section="Cutover",
        ),
        "wave": Param(
            None,
            type=["null", "string"],
            title="Wave",
            description="Phased mode: the wave of cutover_plan.yaml to migrate; empty = the wave whose "
            "go-live date is the run's date.",
            section="Cutover",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Extract and map (and gate) only; load nothing.",
            section="Cutover",
        ),
        "max_reject_rate": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title="Reject threshold",
            description="Share of a table's legacy rows that may be rejected before the run fails; "
            "empty = the reject policy's default (thresholds.yaml, or CUTOVER_THRESHOLDS); reference "
            "tables and patients keep the policy's stricter limits.",
            section="Safety",
        ),
        "reload_changed": Param(
            False,
            type="boolean",
            title="Resume: reload changed batches",
            description="A resumed run refuses when the legacy data of batches it loaded before it was "
            "stopped has changed since; ticked, it loads exactly those batches again.",
            section="Safety",
        ),
        "max_mismatch_rate": Param(
            0.0,
            type="number",
            minimum=0,
            maximum=1,
            title="Reconciliation limit",
            description="Share of patients whose chart may differ between legacy and target before the run "
            "fails (mismatches are listed in migration.validation_failure either way).",
            section="Safety",
        ),
        "max_backup_age_hours": Param(
            PLAN.backup_max_age_hours,
            type="number",
            minimum=0,
            title="Backup age limit (hours)",
            description="The run refuses to start without a verified pt_backup younger than this.",
            section="Safety",
        ),
    },
)
def pt_cutover() -> None:
    @task
    def choose_scope(params: dict | None = None) -> dict:
        from datetime import UTC, datetime

        from airflow.sdk.exceptions import AirflowSkipException

        from cutover.pipeline import LateStart, NoWaveToday
        from cutover.pipeline import choose_scope as choose
        from pt_common.alerts import alert_late_start

        run = get_current_context()["dag_run"]
        try:
            return choose(
                mode=str((params or {}).get("mode")),
                wave=str((params or {}).get("wave") or ""),
                scheduled=run.run_type == "scheduled",  # a str enum: str() gives 'DagRunType.SCHEDULED'
                run_date=run.logical_date or run.run_after,
                started=datetime.now(UTC),
            )
        except NoWaveToday as skip:
            raise AirflowSkipException(str(skip)) from None
        except LateStart as late:
            alert_late_start(run.dag_id, run.run_id, run.logical_date or run.run_after)
            raise AirflowSkipException(str(late)) from None

    @task(inlets=[VERIFIED_BACKUP, TRIAL_VERDICT])
    def require_verified_backup(run_id: str | None = None, params: dict | None = None) -> dict:
        from datetime import UTC, datetime, timedelta

        from cutover.backup import require_verified_backup as gate
        from cutover.evidence import link

        hours = float((params or {}).get("max_backup_age_hours", PLAN.backup_max_age_hours))
        info = gate(
            conn_url("staging_store"),
            legacy_url(str(run_id)),  # a backup of this legacy database (or delivery), as it is now
            max_age=timedelta(hours=hours),
            now=datetime.now(UTC),
        )
        # the evidence this cutover relies on: the backup just accepted, the trial's verdict, the assessment
        links = link(str(run_id), conn_url("staging_store"), backup_run_key=info.run_key)
        return {
            "backup": info.run_key,
            "linked": sorted(role for role, found in links.items() if found["found"]),
            "age_hours": round(info.age.total_seconds() / 3600, 2),
            "rows": info.rows,
            "refused": list(info.refused),
        }

    @task
    def migrate_target_schema() -> list[int]:
        from cutover.security import migrate_and_grant

        return migrate_and_grant(owner_url(), conn_url("target_db"))

    @task
    def begin_run(scope: dict, run_id: str | None = None, params: dict | None = None) -> None:
        from cutover.pipeline import begin_run as begin

        user = run_actor()
        conf = {**(params or {}), "mode": scope["mode"], "wave": scope.get("wave")}
        begin(
            conn_url("target_db"), str(run_id), "pt_cutover", conf, user, store_url=conn_url("staging_store")
        )

    @task
    def plan_scope(scope: dict, run_id: str | None = None) -> dict:
        from cutover.pipeline import plan_scope as stage_scope

        kind = "wave" if scope["mode"] == "phased" else "all"
        return stage_scope(
            legacy_url(str(run_id)),
            conn_url("staging_store"),
            str(run_id),
            kind=kind,
            as_of=as_of(),
            wave=scope.get("wave"),
        )

    @task
    def snapshot_target(run_id: str | None = None) -> dict:
        from cutover.rollback import snapshot_target as snapshot

        user = run_actor()
        return dict(snapshot(owner_url(), str(run_id), actor=user))

    @task(trigger_rule="one_failed")
    def undo_rejected_load(run_id: str | None = None) -> dict:
        from cutover.pipeline import undo_if_rejected

        user = run_actor()
        return undo_if_rejected(owner_url(), str(run_id), actor=user)

    @task.short_circuit
    def load_unless_dry_run(params: dict | None = None) -> bool:
        return not (params or {}).get("dry_run", False)

    @task
    def reconcile(run_id: str | None = None, params: dict | None = None) -> dict:
        from cutover.pipeline import reconcile_run

        limit = float((params or {}).get("max_mismatch_rate", 0.0))
        return reconcile_run(
            conn_url("target_db"),
            conn_url("staging_store"),
            str(run_id),
            max_failure_rate=limit,
            reject_policy=True,
            max_reject_rate=reject_rate(params),
            legacy_url=legacy_url(str(run_id)),
            actor=run_actor(),
        )

    @task(outlets=[MIGRATED_TARGET])
    def write_evidence(run_id: str | None = None, params: dict | None = None) -> dict:
        from cutover.pipeline import write_summary

        limit = reject_rate(params)
        return write_summary(
            conn_url("target_db"),
            conn_url("staging_store"),
            str(run_id),
            "pt_cutover",
            max_reject_rate=limit,
            actor=run_actor(),
        )

    scope = choose_scope()
    check_configuration(plan=True) >> scope
    checked = require_verified_backup()
    scope >> take_delivery() >> checked >> migrate_target_schema() >> (started := begin_run(scope))
    scoped = plan_scope(scope)
    started >> scoped
    gated, load, _ = extract_map_load("target", scoped)
    gated >> load_unless_dry_run() >> snapshot_target() >> load.start
    target_gate = validate_gate.override(task_id="gate_target")("target")
    reconciled = reconcile()
    [load.tables, load.done] >> target_gate >> reconciled >> (written := write_evidence())
    [target_gate, reconciled] >> (undone := undo_rejected_load())
    [written, undone] >> end_run("pt_cutover").as_teardown(setups=started)  # the target is free again


pt_cutover()
