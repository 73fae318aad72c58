"""A backup belongs to one source (issue 14, item 2): the cutover's gate accepts only a verified
backup whose fingerprint (identity, every table's count and checksum) matches the legacy database
the run reads, now; otherwise one line names each backup and why it was refused, ids and counts only.

Regression: with a verified backup of database A in the store, a cutover of database B started.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cutover.backup import BackupGateError, back_up, require_verified_backup, scratch_on, verify_backup
from cutover.backup.crypto import load_key, new_key
from cutover.simulate import simulate

KEY = load_key(new_key())
NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.fixture(scope="module")
def clinics(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Two simulated clinics, A and B: two legacy databases of the same system."""
    folder = tmp_path_factory.mktemp("clinics")
    made = {}
    for name, patients, seed in (("a", 40, 21), ("b", 45, 22)):
        path = folder / f"{name}.db"
        made[name] = (path, simulate(f"sqlite:///{path}", patients=patients, seed=seed))
    return made


def _verified(legacy_url: str, store_url: str, run_id: str, *, now: datetime = NOW) -> None:
    back_up(legacy_url, store_url, run_id, KEY, now=now)
    verify_backup(store_url, run_id, scratch_on(None), key=KEY, now=now)


def _refusal(store_url: str, legacy_url: str) -> str:
    with pytest.raises(BackupGateError) as refused:
        require_verified_backup(store_url, legacy_url, max_age=DAY, now=NOW + timedelta(hours=1))
    line = str(refused.value)
    assert "\n" not in line
    return line


def test_another_sqlite_database_is_refused_and_its_own_accepted(
    clinics: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path, cutover_home: Path
) -> None:
    (a, truth_a), (b, truth_b) = clinics["a"], clinics["b"]
    store_url = f"file://{tmp_path / 'stage'}"
    _verified(f"sqlite:///{a}", store_url, "backup-of-a")

    line = _refusal(store_url, f"sqlite:///{b}")
    assert line == (
        "refusing to start the cutover: no verified backup of this sqlite legacy database among 1 in "
        "the staging store: backup backup-of-a: another database (another file, contents differ); "
        "run pt_backup"
    )
    assert not any(c in line for c in truth_a["canaries"] + truth_b["canaries"])

    info = require_verified_backup(store_url, f"sqlite:///{a}", max_age=DAY, now=NOW + timedelta(hours=1))
    assert (info.run_key, info.refused) == ("backup-of-a", ())
    assert info.rows == sum(truth_a["tables"].values())
    # a copy of the same file is the same database: a SQLite backup is bound by its contents
    copy = tmp_path / "moved.db"
    shutil.copyfile(a, copy)
    assert (
        require_verified_backup(store_url, f"sqlite:///{copy}", max_age=DAY, now=NOW).run_key == "backup-of-a"
    )

    # a newer verified backup of B: the gate passes over it for A, and says why
    _verified(f"sqlite:///{b}", store_url, "backup-of-b", now=NOW + timedelta(minutes=30))
    info = require_verified_backup(store_url, f"sqlite:///{a}", max_age=DAY, now=NOW + timedelta(hours=1))
    assert info.run_key == "backup-of-a"
    assert info.refused == ("backup backup-of-b: another database (another file, contents differ)",)


def test_a_legacy_edit_after_the_backup_is_refused(
    clinics: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path, cutover_home: Path
) -> None:
    legacy = tmp_path / "legacy.db"
    shutil.copyfile(clinics["a"][0], legacy)
    url, store_url = f"sqlite:///{legacy}", f"file://{tmp_path / 'stage'}"
    with sqlite3.connect(legacy) as conn:  # an id that is no int64: the extract reads it as NULL
        conn.execute(
            "UPDATE procedures SET visit_id = 1e20 WHERE proc_id = (SELECT min(proc_id) FROM procedures)"
        )
        visits = conn.execute("SELECT count(*) FROM visits").fetchone()[0]
    _verified(url, store_url, "friday")

    # rows added: the counts alone refuse it, and the line says which table and how many rows
    with sqlite3.connect(legacy) as conn:
        conn.execute("CREATE TEMP TABLE v AS SELECT * FROM visits ORDER BY visit_id DESC LIMIT 3")
        conn.execute("UPDATE v SET visit_id = visit_id + 1000000")
        conn.execute("INSERT INTO visits SELECT * FROM v")
    assert _refusal(store_url, url) == (
        "refusing to start the cutover: no verified backup of this sqlite legacy database among 1 in "
        f"the staging store: backup friday: legacy table visits (rows {visits} → {visits + 3}) changed "
        "since the snapshot; run pt_backup"
    )
    with sqlite3.connect(legacy) as conn:
        conn.execute("DELETE FROM visits WHERE visit_id > 1000000")
    assert require_verified_backup(store_url, url, max_age=DAY, now=NOW).run_key == "friday"

    # the same count, one cell changed: the checksums refuse it; 1e20 → 2e20 is a change too
    with sqlite3.connect(legacy) as conn:
        procedures = conn.execute("SELECT count(*) FROM procedures").fetchone()[0]
        conn.execute("UPDATE procedures SET visit_id = 2e20 WHERE visit_id = 1e20")
    assert f"backup friday: legacy table procedures (rows {procedures}, contents differ) changed" in _refusal(
        store_url, url
    )


def test_a_backup_without_its_source_fingerprint_is_refused(
    clinics: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path, cutover_home: Path
) -> None:
    """A backup taken before backups recorded their source (verified, recent) does not count."""
    folder = tmp_path / "stage"
    url, store_url = f"sqlite:///{clinics['a'][0]}", f"file://{folder}"
    _verified(url, store_url, "old")
    manifest_path, verified_path = (
        folder / "runs/old/backup/manifest.json",
        folder / "runs/old/backup/verified.json",
    )
    manifest = json.loads(manifest_path.read_text())
    del manifest["source"]
    raw = json.dumps(manifest).encode()
    manifest_path.write_bytes(raw)
    verified = json.loads(verified_path.read_text())
    verified_path.write_text(json.dumps({**verified, "manifest_sha256": hashlib.sha256(raw).hexdigest()}))
    assert "backup old: made before backups recorded their source's fingerprint" in _refusal(store_url, url)


def test_another_postgres_database_is_refused(
    pg_url: str, pg_admin_url: str, tmp_path: Path, cutover_home: Path
) -> None:
    """Two databases on one server: the same system_identifier, another name and oid."""
    simulate(pg_url, patients=30, seed=31, manifest_path=tmp_path / "a.json")
    other = pg_url.rsplit("/", 1)[1] + "_other"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{other}"')
        conn.execute(f'CREATE DATABASE "{other}"')
    other_url = pg_url.rsplit("/", 1)[0] + f"/{other}"
    try:
        # the same simulated clinic in both: only the identity tells them apart
        simulate(other_url, patients=30, seed=31, manifest_path=tmp_path / "b.json")
        store_url = f"file://{tmp_path / 'stage'}"
        back_up(pg_url, store_url, "pg-a", KEY, now=NOW)
        verify_backup(store_url, "pg-a", scratch_on(pg_admin_url), key=KEY, now=NOW)
        assert _refusal(store_url, other_url) == (
            "refusing to start the cutover: no verified backup of this postgresql legacy database "
            "among 1 in the staging store: backup pg-a: another database (identity differs); run pt_backup"
        )
        assert require_verified_backup(store_url, pg_url, max_age=DAY, now=NOW).run_key == "pg-a"
        manifest = json.loads((tmp_path / "stage/runs/pg-a/backup/manifest.json").read_text())
        assert manifest["source"]["identity"]["database"] == pg_url.rsplit("/", 1)[1]
        assert set(manifest["source"]["identity"]) == {"system_identifier", "database", "oid"}
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')


def test_a_backup_of_another_engine_is_refused(
    clinics: dict[str, tuple[Path, dict[str, Any]]], pg_url: str, tmp_path: Path, cutover_home: Path
) -> None:
    store_url = f"file://{tmp_path / 'stage'}"
    _verified(f"sqlite:///{clinics['a'][0]}", store_url, "sqlite-backup")
    simulate(pg_url, patients=40, seed=32, manifest_path=tmp_path / "m.json")
    assert "backup sqlite-backup: another database (a sqlite backup; the legacy database is postgresql)" in (
        _refusal(store_url, pg_url)
    )
