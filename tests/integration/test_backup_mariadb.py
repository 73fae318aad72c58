"""MariaDB legacy backup: mariadb-dump --single-transaction --hex-blob → encrypted → loaded into a
scratch database on the same server → verified; scratch dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pymysql

from cutover.backup import back_up, scratch_on, verify_backup
from cutover.backup.crypto import load_key, new_key
from cutover.simulate import simulate

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def test_mariadb_backup_round_trip(mariadb_url: str, tmp_path: Path, cutover_home: Path) -> None:
    truth = simulate(mariadb_url, patients=60, seed=79, manifest_path=tmp_path / "m.json")
    key = load_key(new_key())
    store_url = f"file://{tmp_path / 'stage'}"
    made = back_up(mariadb_url, store_url, "my1", key, now=NOW)
    assert made["dialect"] == "mysql"
    assert {t: f["rows"] for t, f in made["tables"].items()} == truth["tables"]
    result = verify_backup(store_url, "my1", scratch_on(mariadb_url), key=key, now=NOW)
    assert result.ok
    assert len(result.tables) == len(truth["tables"])
    assert (tmp_path / "stage/runs/my1/backup/verified.json").exists()
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'cutover_restore_%'")
        assert cur.fetchall() == ()
    conn.close()
