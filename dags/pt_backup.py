"""
# pt_backup — a verified, encrypted backup of the legacy database

Run before every cutover, once the practice has stopped entering data: `pt_cutover` refuses to
start without a backup that passed its restore test recently.

## Runbook
0. `take_delivery`, when `legacy_db` is a folder of CSV files (local or SFTP), fetches each file once
   into the staging store; the backup is then those files, checked against their SHA-256, and the
   restore test reads them again into a scratch SQLite database.
1. `snapshot_legacy` takes a consistent snapshot of the whole legacy database (SQLite online
   backup API, `pg_dump -Fc` with the client matching the server, `mariadb-dump
   --single-transaction --hex-blob --routines`) into a private folder (0700) under the state
   folder, and fingerprints every table: row count and SHA-256 of its rows in key order.
   Attachments (`documents.content`) are inside the database, so they are in the snapshot.
2. `encrypt_and_store` encrypts it (AES-256-GCM, 4 MiB chunks, each authenticated), deletes the
   plaintext, and stores it under `runs/<run>/backup/` with `manifest.json` (SHA-256 of every
   object encrypted and plain, per-table counts and checksums, the key's id, never the key). On
   S3 every object also gets server-side encryption, S3's SHA-256 check and, when the
   connection sets `object_lock_days`, a compliance-mode retention. A copy of the manifest goes to
   the evidence folder (`backup_manifest.json`).
3. `restore_test` decrypts the backup into a scratch database of the same engine (SQLite: a
   temporary file; PostgreSQL: a new database on the `target_db` server; MariaDB: a new database
   on the legacy server), recomputes every table's fingerprint, compares it with the manifest and
   drops the scratch database.
4. `mark_verified` writes `verified.json` beside the manifest (and `backup_verified.json` to the
   evidence) only if every table matched, then seals the evidence folder
   (`evidence/pt_backup/<run>/`, `manifest.sha256`) and publishes it to `runs/<run>/evidence/` in
   the staging store, where the cutover that relies on this backup links it.

**Key**: the `backup_key` extra of the `staging_store` connection, else `CUTOVER_BACKUP_KEY`
(base64 of 32 bytes), else the state folder's `backup.key` (0600, created once: fine for a
demo; for a real cutover configure the key and keep a copy offline, or the backup is lost with it).

**If a task fails**: messages name tables, objects, counts and key ids, never a value.
`restore_test` failing means the backup is not usable (altered object, wrong key, tool error,
or the legacy data changed during the backup): fix the cause and trigger a new run, which makes a
new backup. `snapshot_legacy` and `encrypt_and_store` must run on the same worker (the plaintext
never leaves it); clear both together.

Connections: `legacy_db` (a database, or a folder of CSV files), `staging_store`, `target_db`
(PostgreSQL legacy only).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from pt_common import DAG_SETTINGS, conn_url, profile_param, run_actor
from pt_common.assets import VERIFIED_BACKUP
from pt_common.stages import check_configuration, owner_url, take_delivery


def _key() -> bytes:
    from airflow.sdk import BaseHook

    from cutover.backup import backup_key

    extra = BaseHook.get_connection("staging_store").extra_dejson or {}
    return backup_key(extra.get("backup_key"))


@dag(
    dag_id="pt_backup",
    schedule=None,
    description="Encrypted, verified backup of the legacy database (or delivery): restore-tested",
    doc_md=__doc__,
    **DAG_SETTINGS,
    tags=["cutover", "backup"],
    params={"profile": profile_param()},
)
def pt_backup() -> None:
    @task
    def snapshot_legacy(run_id: str | None = None) -> dict:
        from cutover.backup import snapshot_legacy

        # a CSV delivery is backed up as the files the run took (take_delivery)
        return dict(snapshot_legacy(conn_url("legacy_db"), str(run_id), store_url=conn_url("staging_store")))

    @task
    def encrypt_and_store(run_id: str | None = None) -> dict:
        import json
        from datetime import UTC, datetime

        from cutover.backup import encrypt_and_store
        from cutover.pipeline import evidence_dir

        manifest = encrypt_and_store(conn_url("staging_store"), str(run_id), _key(), now=datetime.now(UTC))
        (evidence_dir(str(run_id)) / "backup_manifest.json").write_text(json.dumps(manifest, indent=1))
        return {
            "run_key": manifest["run_key"],
            "objects": [{k: o[k] for k in ("key", "bytes", "sha256")} for o in manifest["objects"]],
            "rows": {t: fp["rows"] for t, fp in manifest["tables"].items()},
        }

    @task
    def restore_test(run_id: str | None = None) -> dict:
        from airflow.sdk import BaseHook

        from cutover.backup import restore_test, scratch_on
        from cutover.legacy.source import dialect_of
        from cutover.legacy.transport import is_delivery

        legacy = conn_url("legacy_db")
        dialect = "csv" if is_delivery(legacy) else dialect_of(legacy)  # a delivery restores into SQLite
        # the scratch of the restore test: a server account that may create databases, named in the
        # staging_store's extra where the legacy reader may not (a MariaDB legacy under least privilege),
        # else the target's owner (CREATEDB) for a PostgreSQL backup, the legacy server for MariaDB
        named = (BaseHook.get_connection("staging_store").extra_dejson or {}).get("backup_scratch_url")
        server = named or {"sqlite": None, "csv": None, "postgresql": owner_url(), "mysql": legacy}[dialect]
        return restore_test(conn_url("staging_store"), str(run_id), scratch_on(server), _key()).as_dict()

    @task(outlets=[VERIFIED_BACKUP])
    def mark_verified(result: Any, run_id: str | None = None) -> dict:
        import json
        from datetime import UTC, datetime

        from cutover.backup import VerifyResult, mark_verified
        from cutover.evidence import seal
        from cutover.pipeline import evidence_dir

        verified = mark_verified(
            conn_url("staging_store"), VerifyResult.from_dict(result), now=datetime.now(UTC)
        )
        folder = evidence_dir(str(run_id))
        (folder / "backup_verified.json").write_text(json.dumps(verified, indent=1))
        # sealed like a cutover's evidence, which links it: manifest.sha256 over the folder, published
        # to the store, recorded in the target's audit log when the target is migrated already
        seal(str(run_id), conn_url("staging_store"), target_url=conn_url("target_db"), actor=run_actor())
        return {
            "run_key": verified["run_key"],
            "verified_at": verified["verified_at"],
            "tables": len(result["tables"]),
        }

    # the snapshot waits on the worker's disk, the manifest in the store: only the comparison is passed on
    tested = restore_test()
    check_configuration(target=False) >> take_delivery() >> snapshot_legacy() >> encrypt_and_store() >> tested
    mark_verified(tested)


pt_backup()
