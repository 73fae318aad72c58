"""PostgreSQL legacy backup: pg_dump → encrypted → staged → restored into a scratch database → verified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from cutover.backup.crypto import load_key, new_key
from cutover.backup.postgres import back_up_postgres, verify_postgres_backup
from cutover.backup.sqlite import require_verified_backup
from cutover.simulate import simulate
from cutover.staging.store import LocalStore

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def test_postgres_backup_round_trip(pg_url: str, pg_admin_url: str, tmp_path: Path) -> None:
    manifest = simulate(pg_url, patients=40, seed=78, manifest_path=tmp_path / "m.json")
    key = load_key(new_key())
    store = LocalStore(tmp_path / "stage")
    made = back_up_postgres(pg_url, store, "pg1", key, now=NOW)
    assert {t: f["rows"] for t, f in made["tables"].items()} == manifest["tables"]
    verify_postgres_backup(store, "pg1", key, scratch_server_url=pg_admin_url, now=NOW)
    assert require_verified_backup(store, max_age=timedelta(hours=1), now=NOW)["run_key"] == "pg1"
    with psycopg.connect(pg_admin_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'cutover_restore_%'"
        ).fetchone()
    assert left == (0,)
