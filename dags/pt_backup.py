"""
# pt_backup — a verified, encrypted backup of the legacy database

Run before every cutover: `pt_cutover` needs a backup verified by a restore test.

## Runbook
1. `back_up_legacy` takes a consistent snapshot of the legacy database (SQLite online backup,
   `pg_dump`, `mariadb-dump --single-transaction`; attachments are inside the database),
   encrypts it with AES-256-GCM and stages it under `runs/<run>/backup/` with a manifest: SHA-256
   of every object, per-table row counts and row fingerprints. On S3 every object also gets
   server-side encryption and, when configured, an Object Lock retention.
2. `restore_test` decrypts the backup into a scratch database, recomputes every table's
   fingerprint and compares it with the source's; only then it writes `verified.json`.

**If a task fails**: a failed restore test means the backup is not usable (altered object, wrong
key, tool error); the message names the table or object, never a value. Fix the cause and run
the DAG again: a new run makes a new backup.

Key: `CUTOVER_BACKUP_KEY` (base64, 32 bytes), or on the embedded defaults the state folder's key
file. Connections: `legacy_db`, `target_db` (scratch database for a PostgreSQL restore), `staging_store`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from pt_common import DEFAULT_ARGS, conn_url


@dag(
    dag_id="pt_backup",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["cutover"],
)
def pt_backup() -> None:
    @task
    def back_up_legacy(run_id: str | None = None) -> dict:
        from cutover.backup import back_up
        from cutover.pipeline import run_key

        manifest = back_up(
            conn_url("legacy_db"), conn_url("staging_store"), run_key(str(run_id)), now=pendulum.now("UTC")
        )
        return {
            "objects": len(manifest["objects"]),
            "tables": len(manifest["tables"]),
            "dialect": manifest["dialect"],
        }

    @task
    def restore_test(run_id: str | None = None) -> dict:
        import json

        from cutover.backup import verify
        from cutover.pipeline import evidence_dir, run_key

        verified = verify(
            conn_url("staging_store"),
            run_key(str(run_id)),
            legacy_url=conn_url("legacy_db"),
            target_url=conn_url("target_db"),
            now=pendulum.now("UTC"),
        )
        (evidence_dir(str(run_id)) / "backup_verified.json").write_text(json.dumps(verified, indent=2))
        return verified

    back_up_legacy() >> restore_test()


pt_backup()
