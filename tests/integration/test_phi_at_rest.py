"""PHI at rest on the embedded default (issue 14, item 6): nothing under the state folder is readable
by group or others, staged parts are sealed, and a killed or failed pt_backup on a PostgreSQL source
leaves no plaintext once the next backup has run.

Regression: staged Parquet was 0644 and plaintext, the state and staging folders 0755, ``legacy.db``
and ``airflow.db`` 0644; a kill -9 of pt_backup on PostgreSQL left ``backup-work/<key>/legacy.dump``
(0644) behind.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli_helpers import evidence_of, run_cutover
from cutover.backup import back_up, encrypt_and_store, snapshot_legacy
from cutover.backup import stage as backup_stage
from cutover.backup.crypto import load_key, new_key
from cutover.errors import TransientError
from cutover.simulate import simulate
from cutover.staging.parquet import read_manifest, read_part

KEY = load_key(new_key())
NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
UNUSED_TARGET = "postgresql://unused@127.0.0.1:9/unused"


def _readable_by_others(home: Path) -> list[str]:
    return [
        f"{p.relative_to(home)} {stat.S_IMODE(p.lstat().st_mode):o}"
        for p in sorted(home.rglob("*"))
        if not p.is_symlink() and p.lstat().st_mode & 0o077
    ]


@pytest.mark.slow
def test_nothing_under_the_state_folder_is_readable_by_others(
    fresh_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = fresh_home
    legacy = home / "legacy.db"  # where the embedded default keeps the simulated clinic
    made = run_cutover(["simulate", "--patients", "40", "--seed", "3", "--out", str(legacy)], home)
    assert made.returncode == 0, made.stderr[-2000:]
    env = {"AIRFLOW_CONN_LEGACY_DB": f"sqlite:///{legacy}", "AIRFLOW_CONN_TARGET_DB": UNUSED_TARGET}
    evidence_of(run_cutover(["run", "pt_backup"], home, env))
    # stage: an extract into the state folder's staging store, from this process (umask 022 here:
    # the store makes its files 0600 and folders 0700 itself)
    monkeypatch.setenv("CUTOVER_HOME", str(home))
    from cutover import pipeline

    store_url = f"file://{home / 'staging'}"
    staged = pipeline.extract_table(f"sqlite:///{legacy}", store_url, "manual__phi", "patients")
    assert staged["rows"] > 0

    assert (home / "airflow" / "airflow.db").is_file()
    assert legacy.is_file()
    assert _readable_by_others(home) == []
    # the staged part is sealed: not Parquet on disk, Parquet through the store
    from cutover.staging.store import open_store

    store = open_store(store_url)
    [part] = read_manifest(store, staged["prefix"])["parts"]
    assert not (home / "staging" / part["key"]).read_bytes().startswith(b"PAR1")
    assert read_part(store, part).num_rows == staged["rows"]


def test_a_failed_or_killed_postgres_backup_leaves_no_plaintext_after_the_next(
    pg_url: str, tmp_path: Path, cutover_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = simulate(pg_url, patients=40, seed=61, manifest_path=tmp_path / "m.json")
    store_url = f"file://{tmp_path / 'stage'}"
    work = cutover_home / "backup-work"

    # an exception mid-way: encrypt_and_store fails while storing; its plaintext goes with it
    snapshot_legacy(pg_url, "failed")
    dump = work / "failed" / "legacy.dump"
    assert dump.read_bytes().startswith(b"PGDMP")
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600  # private whatever the umask (022 here)
    assert stat.S_IMODE(work.stat().st_mode) == 0o700

    def outage(*_args: object, **_kw: object) -> None:
        raise TransientError("staging store unreachable")

    monkeypatch.setattr(backup_stage, "_put_file", outage)
    with pytest.raises(TransientError):
        encrypt_and_store(store_url, "failed", KEY, now=NOW)
    assert not (work / "failed").exists()
    monkeypatch.undo()
    monkeypatch.setenv("CUTOVER_HOME", str(cutover_home))

    # a kill -9: after the dump, and another in the middle of encrypting (a half-written file)
    snapshot_legacy(pg_url, "killed")
    killed = work / "killed"
    (killed / ".legacy.dump.enc.4242.tmp").write_bytes(b"half")
    os.close(os.open(killed / ".partial", os.O_CREAT | os.O_WRONLY, 0o600))
    assert (killed / "legacy.dump").exists()

    back_up(pg_url, store_url, "next", KEY, now=NOW)
    assert sorted(p.name for p in work.rglob("*")) == []  # the next backup swept it all
    everything = [p for root in (cutover_home, tmp_path / "stage") for p in root.rglob("*") if p.is_file()]
    for path in everything:
        data = path.read_bytes()
        assert b"PGDMP" not in data, path
        assert not any(c.encode() in data for c in truth["canaries"]), path
