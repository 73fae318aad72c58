"""
# pt_sample_transfer — the trial run, the downtime estimate, go or no-go

Run it days before the cutover, on the same legacy database and target server. It moves a
stratified sample of patients (every clinic, every record kind, with all their records) through the
cutover's own stages into a **scratch database** beside the target — the real target is not
touched — times every stage, and extrapolates the full run.

## Runbook
1. `plan_sample` picks the sample: `sample_share` of each clinic's patients (seeded), topped up
   so every record kind appears, with their cases, visits and everything under them.
2. `create_scratch_target` makes a fresh scratch database on the target server (the target's
   schemas, by the same migrations).
3. `extract_table` → `gate_extract` → `map_table` → `gate_mapped` → `gate_rejects` → `load.<table>` →
   `gate_target` → `reconcile_sample`: exactly the cutover's stages, GX gates and
   reconciliation, on the sample (a failed gate or a mismatch is recorded for the go/no-go
   instead of stopping the trial).
4. `check_sample` runs the cutover's accounting and reject policy on the sample
   (`summary.json` of the trial) and collects the gates: every sampled row migrated, merged or
   rejected with a reason, every gate passed.
5. `estimate_downtime` scales each table's stage times to its full size (the validation too:
   each gate's time per table and the reconciliation's by rows; a gate's own set-up as it was),
   adds the plan's safety margin and compares with the plan's window (default Friday 18:00 to
   Monday 06:00): **go** when it fits and the sample passed every gate and the reconciliation,
   otherwise **no-go** with the reasons. The result, `sample_estimate.json`, is in the evidence
   folder and this task's return value; a no-go fails the task (red in the grid) with its reasons.
6. `drop_scratch_target` removes the scratch database (also after a failure).

Connections: `legacy_db` (a database, or a folder of CSV files), `target_db` (the server gets a scratch database), `staging_store`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from pt_common import DAG_SETTINGS, conn_url, legacy_url, profile_param, run_actor
from pt_common.assets import TRIAL_VERDICT
from pt_common.stages import (
    as_of,
    check_configuration,
    extract_map_load,
    owner_url,
    reject_rate,
    take_delivery,
    validate_gate,
)


@dag(
    dag_id="pt_sample_transfer",
    schedule=None,
    description="Trial run on a sample into a scratch database: downtime estimate and go/no-go against the window",
    doc_md=__doc__,
    **DAG_SETTINGS,
    tags=["cutover", "trial"],
    params={
        "profile": profile_param(),
        "sample_share": Param(
            0.02,
            type="number",
            exclusiveMinimum=0,
            maximum=1,
            title="Sample share",
            description="Share of each clinic's patients in the sample (at least one per clinic).",
            section="Trial",
        ),
        "seed": Param(
            7, type="integer", title="Seed", description="Picks the same sample again.", section="Trial"
        ),
        "max_reject_rate": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title="Reject threshold",
            description="As in pt_cutover: the sample fails its gate above it.",
            section="Trial",
        ),
    },
)
def pt_sample_transfer() -> None:
    @task
    def plan_sample(run_id: str | None = None, params: dict | None = None) -> dict:
        from cutover.pipeline import plan_scope

        p = params or {}
        return plan_scope(
            legacy_url(str(run_id)),
            conn_url("staging_store"),
            str(run_id),
            kind="sample",
            as_of=as_of(),
            share=float(p.get("sample_share", 0.02)),
            seed=int(p.get("seed", 7)),
        )

    @task
    def create_scratch_target(run_id: str | None = None) -> str:
        from cutover.pipeline import begin_run
        from cutover.sample import create_scratch, scratch_url
        from cutover.security.roles import grant_scratch_apart

        # the target's owner creates the scratch (CREATEDB, nothing more) and grants the loader on
        # it as on the target: the trial loads with the cutover's own privileges
        name = create_scratch(owner_url(), str(run_id))
        grant_scratch_apart(scratch_url(owner_url(), str(run_id)), conn_url("target_db"))
        begin_run(
            scratch_url(conn_url("target_db"), str(run_id)),
            str(run_id),
            "pt_sample_transfer",
            {},
            run_actor(),
            store_url=conn_url("staging_store"),
            audit_url=conn_url("target_db"),  # the remediation's corrections are vouched for there
        )
        return name

    @task
    def reconcile_sample(run_id: str | None = None) -> dict:
        """The cutover's reconciliation, on the scratch target (its legacy recheck included): timed for
        the estimate, and a mismatch is a no-go (recorded, as a failed gate is)."""
        from cutover.pipeline import reconcile_run
        from cutover.reconcile.run import ReconcileFailed
        from cutover.sample import scratch_url

        url = scratch_url(conn_url("target_db"), str(run_id))
        try:
            result = reconcile_run(
                url,
                conn_url("staging_store"),
                str(run_id),
                max_failure_rate=0.0,
                legacy_url=legacy_url(str(run_id)),
                actor=run_actor(),
            )
        except ReconcileFailed:
            return {"gate": "reconciliation", "passed": False}
        return {"gate": "reconciliation", **result}

    @task
    def check_sample(gates: list, run_id: str | None = None, params: dict | None = None) -> dict:
        from cutover.errors import CutoverError, PolicyError
        from cutover.pipeline import write_summary
        from cutover.sample import scratch_url

        limit = reject_rate(params)
        url = scratch_url(conn_url("target_db"), str(run_id))
        policy = "ok"
        try:
            write_summary(
                url,
                conn_url("staging_store"),
                str(run_id),
                "pt_sample_transfer",
                max_reject_rate=limit,
                seal=False,  # sealed with the estimate, next
            )
        except PolicyError:
            # a sample's reject rates are noisy (a few rows a table): reported; the cutover enforces them
            policy = "above the limit on the sample (see summary.json)"
        except CutoverError as failed:  # rows without an outcome: a no-go, decided by the next task
            return {"passed": False, "reason": type(failed).__name__}
        # the reject gate's verdict is the same policy, projected before the load: reported likewise
        if any(g["gate"] == "rejects" and not g["passed"] for g in gates):
            policy = "above the limit on the sample (see gates/rejects.json)"
        failed = [g["gate"] for g in gates if not g["passed"] and g["gate"] != "rejects"]
        return {"passed": not failed, "failed_gates": failed, "reject_policy": policy}

    @task(outlets=[TRIAL_VERDICT])
    def estimate_downtime(checked: dict, run_id: str | None = None) -> dict:
        from datetime import UTC, datetime

        from cutover.errors import PolicyError
        from cutover.sample import decide

        result = decide(
            legacy_url(str(run_id)),
            conn_url("target_db"),
            conn_url("staging_store"),
            str(run_id),
            gates_passed=bool(checked["passed"]),
            now=datetime.now(UTC),
            actor=run_actor(),
        )
        if result["decision"] != "go":
            raise PolicyError(f"no-go: {'; '.join(result['reasons'])} (see sample_estimate.json)")
        return result

    @task
    def drop_scratch_target(run_id: str | None = None) -> None:
        from cutover.sample import drop_scratch

        drop_scratch(owner_url(), str(run_id))

    scratch = create_scratch_target()
    check_configuration(plan=True) >> scratch
    sampled = plan_sample()
    scratch >> take_delivery() >> sampled
    gated, load, gates = extract_map_load("scratch", sampled, strict=False)
    gated >> load.start
    target_gate = validate_gate.override(task_id="gate_target")("target", "scratch", False)
    [load.tables, load.done] >> target_gate
    reconciled = reconcile_sample()
    target_gate >> reconciled
    checked = check_sample([*gates, target_gate, reconciled])
    estimated = estimate_downtime(checked)
    # a teardown: it runs after a failure too, and the run's state stays that of the work it cleans up after
    estimated >> drop_scratch_target().as_teardown(setups=scratch)


pt_sample_transfer()
