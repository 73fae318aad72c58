"""SQLite backup: snapshot → encrypt → stage → restore test → verified; the gate refuses otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cutover.backup.crypto import load_key, new_key
from cutover.backup.fingerprint import fingerprint
from cutover.backup.sqlite import (
    BackupGateError,
    back_up_sqlite,
    require_verified_backup,
    verify_sqlite_backup,
)
from cutover.errors import IntegrityError
from cutover.simulate import simulate
from cutover.staging.store import LocalStore

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
KEY = load_key(new_key())


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    path = tmp_path_factory.mktemp("legacy") / "legacy.db"
    return f"sqlite:///{path}", simulate(f"sqlite:///{path}", patients=60, seed=77)


def test_backup_is_verified_by_restoring_it(legacy: tuple[str, dict], tmp_path: Path) -> None:
    url, manifest = legacy
    store = LocalStore(tmp_path / "stage")
    made = back_up_sqlite(url, store, "r1", KEY, now=NOW)
    assert {t: f["rows"] for t, f in made["tables"].items()} == manifest["tables"]
    with pytest.raises(BackupGateError, match="none verified"):
        require_verified_backup(store, max_age=timedelta(hours=12), now=NOW)
    verify_sqlite_backup(store, "r1", KEY, now=NOW)
    assert require_verified_backup(store, max_age=timedelta(hours=12), now=NOW)["run_key"] == "r1"
    with pytest.raises(BackupGateError, match="h old"):
        require_verified_backup(store, max_age=timedelta(hours=12), now=NOW + timedelta(days=2))
    # nothing of the legacy data is readable in the staged object
    sealed = (tmp_path / "stage" / made["objects"][0]["key"]).read_bytes()
    assert b"SQLite format 3" not in sealed
    assert not any(c.encode() in sealed for c in manifest["canaries"])


def test_gate_refuses_without_any_backup(tmp_path: Path) -> None:
    with pytest.raises(BackupGateError, match="no backup at all"):
        require_verified_backup(LocalStore(tmp_path), max_age=timedelta(hours=12), now=NOW)


def test_tampered_backup_is_not_verified(legacy: tuple[str, dict], tmp_path: Path) -> None:
    url, _ = legacy
    store = LocalStore(tmp_path / "stage")
    made = back_up_sqlite(url, store, "r2", KEY, now=NOW)
    obj = tmp_path / "stage" / made["objects"][0]["key"]
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        verify_sqlite_backup(store, "r2", KEY, now=NOW)
    assert not store.exists("runs/r2/backup/verified.json")


def test_fingerprint_sees_a_single_changed_cell(legacy: tuple[str, dict], tmp_path: Path) -> None:
    import shutil
    import sqlite3

    url, _ = legacy
    copy = tmp_path / "copy.db"
    shutil.copy(url.removeprefix("sqlite:///"), copy)
    before = fingerprint(f"sqlite:///{copy}")
    with sqlite3.connect(copy) as conn:
        conn.execute(
            "UPDATE visits SET plan = plan || '.' WHERE visit_id = (SELECT min(visit_id) FROM visits)"
        )
    after = fingerprint(f"sqlite:///{copy}")
    assert [t for t in before if before[t] != after[t]] == ["visits"]
    assert after["visits"]["rows"] == before["visits"]["rows"]
