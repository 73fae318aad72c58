"""SQLite legacy backup: snapshot → encrypt → local store → restore test → verified; tampering fails;
the cutover's gate refuses a missing, unverified, stale or altered backup."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cutover.backup import (
    BackupGateError,
    back_up,
    require_verified_backup,
    restore_test,
    scratch_on,
    verify_backup,
)
from cutover.backup.crypto import key_id, load_key, new_key
from cutover.errors import ConfigError, IntegrityError
from cutover.simulate import simulate

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
KEY = load_key(new_key())
DAY = timedelta(hours=24)


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    path = tmp_path_factory.mktemp("legacy") / "legacy.db"
    return f"sqlite:///{path}", simulate(f"sqlite:///{path}", patients=150, seed=77)


@pytest.fixture
def store(tmp_path: Path, cutover_home: Path) -> tuple[str, Path]:
    folder = tmp_path / "stage"
    return f"file://{folder}", folder


def test_backup_then_restore_test_marks_it_verified(
    legacy: tuple[str, dict[str, Any]], store: tuple[str, Path], cutover_home: Path
) -> None:
    url, truth = legacy
    store_url, folder = store
    made = back_up(url, store_url, "r1", KEY, now=NOW)
    assert {t: f["rows"] for t, f in made["tables"].items()} == truth["tables"]
    assert made["dialect"] == "sqlite"
    assert made["encryption"]["key_id"] == key_id(KEY)
    [obj] = made["objects"]
    assert obj["key"] == "runs/r1/backup/legacy.db.enc"
    sealed = (folder / obj["key"]).read_bytes()
    assert obj["bytes"] == len(sealed)
    assert obj["plain_bytes"] < obj["bytes"]
    # nothing of the legacy data is readable in the stored object, and no plaintext is left behind
    assert b"SQLite format 3" not in sealed
    assert not any(c.encode() in sealed for c in truth["canaries"])
    assert not list((cutover_home / "backup-work").rglob("*.db"))
    manifest_text = (folder / "runs/r1/backup/manifest.json").read_text()
    assert not any(c in manifest_text for c in truth["canaries"])

    with pytest.raises(BackupGateError, match=r"among 1 in the staging store: backup r1: not verified"):
        require_verified_backup(store_url, url, max_age=DAY, now=NOW)
    result = verify_backup(store_url, "r1", scratch_on(None), key=KEY, now=NOW)
    assert result.ok
    assert set(result.tables) == set(truth["tables"])
    assert all(row["match"] for row in result.tables.values())
    verified = json.loads((folder / "runs/r1/backup/verified.json").read_text())
    assert verified["verified_at"] == NOW.isoformat()
    assert verified["mismatched"] == []

    info = require_verified_backup(store_url, url, max_age=DAY, now=NOW + timedelta(hours=3))
    assert (info.run_key, info.dialect, info.age) == ("r1", "sqlite", timedelta(hours=3))
    assert info.rows == sum(truth["tables"].values())
    with pytest.raises(BackupGateError, match=r"backup r1: taken 48.0 h ago, more than the 24.0 h allowed"):
        require_verified_backup(store_url, url, max_age=DAY, now=NOW + 2 * DAY)

    # a newer backup, not yet verified: the gate still takes the verified one
    back_up(url, store_url, "r2", KEY, now=NOW + timedelta(hours=1))
    info = require_verified_backup(store_url, url, max_age=DAY, now=NOW + timedelta(hours=2))
    assert (info.run_key, info.refused) == (
        "r1",
        ("backup r2: not verified (its restore test has not passed)",),
    )
    # a manifest altered after verification no longer counts as verified
    manifest = folder / "runs/r1/backup/manifest.json"
    manifest.write_text(manifest.read_text().replace('"rows": ', '"rows":  '))
    with pytest.raises(BackupGateError, match="backup r1: not verified"):
        require_verified_backup(store_url, url, max_age=DAY, now=NOW)


def test_gate_refuses_without_any_backup(legacy: tuple[str, dict[str, Any]], store: tuple[str, Path]) -> None:
    with pytest.raises(BackupGateError, match="no backup in the staging store"):
        require_verified_backup(store[0], legacy[0], max_age=DAY, now=NOW)


@pytest.mark.parametrize("where", ["sealed", "plain-table"])
def test_tampered_backup_is_not_verified(
    legacy: tuple[str, dict[str, Any]], store: tuple[str, Path], where: str
) -> None:
    url, _ = legacy
    store_url, folder = store
    made = back_up(url, store_url, "r3", KEY, now=NOW)
    if where == "sealed":
        obj = folder / made["objects"][0]["key"]
        data = bytearray(obj.read_bytes())
        data[len(data) // 2] ^= 0xFF
        obj.write_bytes(bytes(data))
        expected = "does not match its manifest checksum"
    else:
        # the object is intact, but the manifest's checksum of one table is not the restored one
        path = folder / "runs/r3/backup/manifest.json"
        manifest = json.loads(path.read_text())
        manifest["tables"]["visits"]["sha256"] = "0" * 64
        path.write_text(json.dumps(manifest))
        expected = r"restored tables differ from the source .*'visits'"
    with pytest.raises(IntegrityError, match=expected):
        verify_backup(store_url, "r3", scratch_on(None), key=KEY, now=NOW)
    assert not (folder / "runs/r3/backup/verified.json").exists()


def test_wrong_key_is_named_before_decrypting(
    legacy: tuple[str, dict[str, Any]], store: tuple[str, Path]
) -> None:
    back_up(legacy[0], store[0], "r4", KEY, now=NOW)
    other = load_key(new_key())
    with pytest.raises(ConfigError, match=f"key id {key_id(KEY)}, the configured key has id {key_id(other)}"):
        restore_test(store[0], "r4", scratch_on(None), other)
