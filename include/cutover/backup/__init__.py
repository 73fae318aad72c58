"""Verified, encrypted backups of the legacy database, and the gate that a cutover needs one.

``back_up`` snapshots the legacy database consistently (SQLite online backup, ``pg_dump``,
``mariadb-dump``), encrypts it (AES-256-GCM, :mod:`cutover.backup.crypto`) and stages it with a
manifest of checksums and per-table fingerprints. ``verify`` restores it into a scratch database
and compares the fingerprints; only then is the backup marked verified. ``require_verified_backup``
refuses a cutover without a verified backup younger than a given age.

The key: ``CUTOVER_BACKUP_KEY`` (base64, 32 bytes); on the embedded defaults a key file
``<state>/backup.key`` (mode 0600) made once. Never stored with the backup: whoever holds the
staging store alone cannot read the legacy data.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from cutover.backup.crypto import load_key, new_key
from cutover.backup.sqlite import BackupGateError, require_verified_backup
from cutover.config import state_dir
from cutover.legacy.source import dialect_of
from cutover.staging.store import open_store

__all__ = ["BackupGateError", "back_up", "backup_key", "require_verified_backup", "verify"]


def backup_key() -> bytes:
    """The backup key: ``CUTOVER_BACKUP_KEY``, else the state folder's key file (made once, 0600)."""
    value = os.environ.get("CUTOVER_BACKUP_KEY")
    if value:
        return load_key(value)
    path: Path = state_dir() / "backup.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key())
    return load_key(path.read_text().strip())


def back_up(legacy_url: str, store_url: str, run_key: str, *, now: datetime) -> dict[str, Any]:
    """Snapshot, encrypt and stage the legacy database; returns the manifest (keys, sizes, checksums, counts)."""
    store, key = open_store(store_url), backup_key()
    dialect = dialect_of(legacy_url)
    if dialect == "sqlite":
        from cutover.backup.sqlite import back_up_sqlite

        return back_up_sqlite(legacy_url, store, run_key, key, now=now)
    if dialect == "postgresql":
        from cutover.backup.postgres import back_up_postgres

        return back_up_postgres(legacy_url, store, run_key, key, now=now)
    from cutover.backup.mariadb import back_up_mariadb

    return back_up_mariadb(legacy_url, store, run_key, key, now=now)


def verify(
    store_url: str, run_key: str, *, legacy_url: str, target_url: str, now: datetime
) -> dict[str, Any]:
    """The restore test. Scratch databases: a temp file (SQLite), one on the target's server
    (PostgreSQL: the pipeline may create databases there, not on the legacy server), one on the
    legacy server (MariaDB: restoring needs a MariaDB server)."""
    store, key = open_store(store_url), backup_key()
    dialect = dialect_of(legacy_url)
    if dialect == "sqlite":
        from cutover.backup.sqlite import verify_sqlite_backup

        return verify_sqlite_backup(store, run_key, key, now=now)
    if dialect == "postgresql":
        from cutover.backup.postgres import verify_postgres_backup

        return verify_postgres_backup(store, run_key, key, scratch_server_url=target_url, now=now)
    from cutover.backup.mariadb import verify_mariadb_backup

    return verify_mariadb_backup(store, run_key, key, server_url=legacy_url, now=now)
