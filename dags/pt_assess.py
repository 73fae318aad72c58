"""
# pt_assess — the pre-migration assessment

Looks at the legacy practice system before a cutover: what each table really holds (a profile per
column, as OHDSI WhiteRabbit does) and what the cutover will reject, flag or normalise (named
checks). Reads the legacy database only; writes nothing to it and nothing to the target.

## Runbook
1. `profile_table` (one mapped task per legacy table, named after the table) streams the table in
   batches and keeps its profile in the staging store under `runs/<run>/assess/profiles/`:
   emptiness, distinct counts, format patterns, and frequent values of code columns only.
2. `run_checks` runs every named check (impossible dates, orphans, duplicate candidates, ICD-9
   codes, placeholder SSNs, invalid NPIs, visits after discharge, 8-minute rule…) and keeps the
   counts and example legacy ids under `runs/<run>/assess/checks.json`.
3. `write_report` writes `assessment.html` and `assessment.json` to the run's evidence folder and
   to the staging store under `runs/<run>/evidence/`, sealed (`manifest.sha256`): the cutover links
   the newest assessment by its manifest's SHA-256.

**Reading the report**: *error* checks count rows the cutover will reject; *warning* rows migrate
with a flag for review; *info* values the mapping normalises. Fix errors in the legacy system
where you can, then assess again. Example ids are legacy keys: look them up in the legacy system.

**Privacy**: the report holds no patient value. PHI columns show patterns and counts only; code
columns show values seen at least five times. Share it with the project team, not further.

**If a task fails**: read its log (tables, ids and counts only). A *terminal* error (an unknown
table, an unreadable database file) fails at once; fix the cause and clear the task. A *transient*
error (database, network) is retried automatically.

Connections: `legacy_db` (a database, or a folder of CSV files), `staging_store`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from pt_common import DAG_SETTINGS, conn_url, legacy_url, profile_param, run_actor
from pt_common.stages import TABLES, check_configuration, take_delivery


@dag(
    dag_id="pt_assess",
    schedule=None,
    description="Pre-migration assessment of the legacy database: profile and named checks, no values shown",
    doc_md=__doc__,
    **DAG_SETTINGS,
    tags=["cutover", "assessment"],
    params={
        "profile": profile_param(),
        "reference_date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Reference date",
            description="The day dates are judged against (two-digit years, dates in the future). "
            "Empty: the day the run was triggered.",
            section="Assessment",
        ),
    },
)
def pt_assess() -> None:
    @task(map_index_template="{{ table }}")
    def profile_table(table: str, run_id: str | None = None) -> dict:
        from cutover.assess.stage import profile_to_store

        return dict(profile_to_store(legacy_url(str(run_id)), conn_url("staging_store"), str(run_id), table))

    @task
    def run_checks(run_id: str | None = None, params: dict | None = None) -> dict:
        from datetime import date

        from cutover.assess.stage import checks_to_store

        chosen = (params or {}).get("reference_date")
        today = date.fromisoformat(chosen) if chosen else get_current_context()["dag_run"].run_after.date()
        return dict(checks_to_store(legacy_url(str(run_id)), conn_url("staging_store"), str(run_id), today))

    @task
    def write_report(run_id: str | None = None) -> dict:
        from cutover.assess.stage import report_from_store

        # the profiles and check results come from the staging store, not through XCom
        return dict(
            report_from_store(
                legacy_url(str(run_id)), conn_url("staging_store"), str(run_id), TABLES, actor=run_actor()
            )
        )

    checked = check_configuration(target=False) >> take_delivery()
    checked >> [profiled := profile_table.expand(table=TABLES), checks := run_checks()]
    [profiled, checks] >> write_report()


pt_assess()
