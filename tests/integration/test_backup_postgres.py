"""PostgreSQL legacy backup: pg_dump (client matching the server) → encrypted → restored into a
scratch database on the same server → fingerprints compared → verified; scratch dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from cutover.backup import back_up, require_verified_backup, scratch_on, verify_backup
from cutover.backup.crypto import load_key, new_key
from cutover.backup.postgres import _client_major, pg_bin, server_major
from cutover.simulate import simulate

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def test_postgres_backup_round_trip(
    pg_url: str, pg_admin_url: str, tmp_path: Path, cutover_home: Path
) -> None:
    truth = simulate(pg_url, patients=60, seed=78, manifest_path=tmp_path / "m.json")
    key = load_key(new_key())
    store_url = f"file://{tmp_path / 'stage'}"
    made = back_up(pg_url, store_url, "pg1", key, now=NOW)
    assert made["dialect"] == "postgresql"
    assert {t: f["rows"] for t, f in made["tables"].items()} == truth["tables"]
    sealed = (tmp_path / "stage" / made["objects"][0]["key"]).read_bytes()
    assert b"PGDMP" not in sealed
    assert not any(c.encode() in sealed for c in truth["canaries"])
    result = verify_backup(store_url, "pg1", scratch_on(pg_admin_url), key=key, now=NOW)
    assert result.ok
    assert len(result.tables) == len(truth["tables"])
    assert require_verified_backup(store_url, pg_url, max_age=timedelta(hours=1), now=NOW).run_key == "pg1"
    with psycopg.connect(pg_admin_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'cutover_restore_%'"
        ).fetchone()
    assert left == (0,)


def test_client_matches_the_server(pg_admin_url: str) -> None:
    major = server_major(pg_admin_url)
    program = pg_bin("pg_dump", major)
    found = _client_major(program)
    assert found is not None
    assert found >= major
