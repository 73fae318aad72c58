"""
# pt_cutover — the cutover load

Moves the legacy practice system's records into the new system's PostgreSQL, and proves that
every legacy row has exactly one outcome: **migrated**, **merged** into a duplicate, or
**rejected** with a reason.

## Runbook
1. `migrate_target_schema` creates or upgrades the target schemas (versioned migrations).
2. `begin_run` records the run and who triggered it in `migration.run` and the audit log.
3. `extract_table` (one mapped task per legacy table) streams the table into zstd Parquet
   parts in the staging store, under `runs/<run>/extract/<table>/`.
4. `map_table` (one per table) normalises the rows with the mapping specs; rejects carry a
   reason code, never a value.
5. `load.<table>` merges each mapped part in one transaction (COPY, resolve parents through the
   crosswalk, upsert by deterministic id, ledger). Parents load before children. A re-run skips
   parts the batch ledger marks loaded.
6. `write_evidence` writes `summary.json` (per table: legacy rows, migrated, merged, rejected)
   and fails if any legacy row has no outcome.

**If a task fails**: read its log (ids and counts only). A *terminal* error (bad data, broken
contract) fails at once; fix the cause, then clear the task: the run resumes from its ledger.
A *transient* error (database, network) is retried automatically.

Connections: `legacy_db`, `target_db`, `staging_store`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task, task_group

from cutover.legacy.schema import LEGACY_TABLES
from pt_common import DAG_SETTINGS, conn_url

# Parse time stays light: the legacy schema is plain data; the mapping (pandas, Arrow) loads in tasks.
TABLES = list(LEGACY_TABLES)


@dag(
    dag_id="pt_cutover",
    schedule=None,
    doc_md=__doc__,
    **DAG_SETTINGS,
    tags=["cutover"],
    params={
        "mode": Param(
            "big_bang",
            enum=["big_bang", "phased"],
            title="Cutover mode",
            description="big_bang moves every clinic at once; phased moves one wave of clinics.",
            section="Cutover",
        ),
        "max_reject_rate": Param(
            0.05,
            type="number",
            minimum=0,
            maximum=1,
            title="Reject threshold",
            description="Share of a table's legacy rows that may be rejected before the run fails "
            "(reference tables and patients keep the stricter limits of thresholds.yaml).",
            section="Cutover",
        ),
    },
)
def pt_cutover() -> None:
    @task
    def migrate_target_schema() -> list[int]:
        from cutover.pipeline import prepare_target

        return prepare_target(conn_url("target_db"))

    @task
    def begin_run(run_id: str | None = None, params: dict | None = None) -> None:
        from cutover.pipeline import begin_run as begin

        user = get_current_context()["dag_run"].triggering_user_name or "system"
        begin(conn_url("target_db"), str(run_id), "pt_cutover", dict(params or {}), user)

    @task(map_index_template="{{ table }}")
    def extract_table(table: str, run_id: str | None = None) -> dict:
        from cutover.pipeline import extract_table as extract

        return dict(extract(conn_url("legacy_db"), conn_url("staging_store"), str(run_id), table))

    @task(map_index_template="{{ manifest['table'] }}")
    def map_table(manifest: dict, run_id: str | None = None, logical_date=None) -> dict:
        from cutover.pipeline import map_table as map_rows

        # a run triggered without a logical date (Airflow 3) maps as of its run_after
        as_of = (logical_date or get_current_context()["dag_run"].run_after).date()
        return dict(map_rows(conn_url("staging_store"), str(run_id), manifest["table"], as_of=as_of))

    @task
    def write_evidence(run_id: str | None = None, params: dict | None = None) -> dict:
        from cutover.pipeline import write_summary

        limit = float((params or {}).get("max_reject_rate", 0.05))
        return write_summary(
            conn_url("target_db"), conn_url("staging_store"), str(run_id), "pt_cutover", max_reject_rate=limit
        )

    started = begin_run()
    migrate_target_schema() >> started
    extracts = extract_table.expand(table=TABLES)
    started >> extracts
    mapped = map_table.expand(manifest=extracts)

    @task_group(group_id="load")
    def load_tables() -> None:
        loads = {}
        for table in TABLES:

            @task(task_id=table)
            def load_table(table: str = table, run_id: str | None = None) -> dict:
                from cutover.pipeline import load_mapped

                return load_mapped(conn_url("target_db"), conn_url("staging_store"), str(run_id), table)

            loads[table] = load_table()
        for table, load in loads.items():
            for parent in {p for _, p in LEGACY_TABLES[table].parents if p in loads and p != table}:
                loads[parent] >> load

    loaded = load_tables()
    mapped >> loaded
    loaded >> write_evidence()


pt_cutover()
