"""MariaDB legacy backup: mariadb-dump → encrypted → staged → loaded into a scratch database → verified."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cutover.backup.crypto import load_key, new_key
from cutover.backup.mariadb import back_up_mariadb, verify_mariadb_backup
from cutover.simulate import simulate
from cutover.staging.store import LocalStore

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def test_mariadb_backup_round_trip(mariadb_url: str, tmp_path: Path) -> None:
    manifest = simulate(mariadb_url, patients=40, seed=79, manifest_path=tmp_path / "m.json")
    key = load_key(new_key())
    store = LocalStore(tmp_path / "stage")
    made = back_up_mariadb(mariadb_url, store, "my1", key, now=NOW)
    assert {t: f["rows"] for t, f in made["tables"].items()} == manifest["tables"]
    verified = verify_mariadb_backup(store, "my1", key, server_url=mariadb_url, now=NOW)
    assert verified["tables"] == len(manifest["tables"])
    assert store.exists("runs/my1/backup/verified.json")
