"""A backup task that fails leaves nothing that blocks its retry: no plaintext work file, no open
handle; its error names the table, never a value; the retry in the same process completes.

Regression for issue 13: a parent id of 1e20 made ``snapshot_legacy`` fail with a bare
OverflowError, the retry then waited forever in SQLite's online backup (a copy held open by the
failed try, deaf to SIGTERM/SIGINT), and a plaintext copy of the legacy database stayed in
``backup-work/``. The reader no longer raises on such an id (``legacy/source.py``); these tests
provoke a failure mid-table another way.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cli_helpers import everything_of, evidence_of, run_cutover
from cutover.backup import back_up, scratch_on, snapshot_legacy, verify_backup
from cutover.backup import fingerprint as fp_module
from cutover.backup import sqlite as sqlite_engine
from cutover.backup.crypto import load_key, new_key
from cutover.backup.fingerprint import fingerprint
from cutover.errors import TerminalError, TransientError
from cutover.legacy import source
from cutover.simulate import simulate

KEY = load_key(new_key())
NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
UNUSED_TARGET = "postgresql://unused@127.0.0.1:9/unused"


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    path = tmp_path_factory.mktemp("legacy") / "legacy.db"
    return f"sqlite:///{path}", simulate(f"sqlite:///{path}", patients=40, seed=13)


def _work_files(home: Path) -> list[Path]:
    """Every file under backup-work/, dot-files included."""
    return sorted(p for p in (home / "backup-work").rglob("*") if p.is_file())


@contextmanager
def _fail_mid_table(table: str, leaks: list[sqlite3.Cursor]) -> Iterator[None]:
    """Within the block, the reader fails on the second batch of ``table`` (50-row batches), as the
    1e20 id did, after opening a reader of the snapshot copy that it never closes (the handle a
    failed try leaves behind)."""
    real_read, real_batch = fp_module.read_batches, source.to_batch
    state = {"table": "", "batches": 0}

    def read(url: str, name: str, *args: Any, **kw: Any) -> Any:
        state["table"], state["batches"] = name, 0
        if name == table and not leaks:
            leaked = sqlite3.connect(f"file:{source.sqlite_path(url)}?mode=ro", uri=True)
            cursor = leaked.execute(f'SELECT * FROM "{table}"')
            cursor.fetchmany(1)  # mid-statement, so it holds a read lock on the copy until closed
            leaks.append(cursor)
        return real_read(url, name, *args, **{**kw, "batch_rows": 50})

    def to_batch(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
        state["batches"] += 1
        if state["table"] == table and state["batches"] == 2:
            raise OverflowError("Python int too large to convert to C long: 100000000000000000000")
        return real_batch(rows, schema)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fp_module, "read_batches", read)
        patch.setattr(source, "to_batch", to_batch)
        yield


@pytest.mark.timeout(120, method="thread")  # a hang in C code ignores SIGALRM too
def test_failed_snapshot_leaves_no_plaintext_and_its_retry_completes(
    legacy: tuple[str, dict[str, Any]], cutover_home: Path
) -> None:
    url, truth = legacy
    leaks: list[sqlite3.Cursor] = []
    with _fail_mid_table("visits", leaks), pytest.raises(TerminalError) as failed:
        snapshot_legacy(url, "r1")
    kept = failed.value  # as Airflow keeps a failed try's exception, and with it its frames
    message = str(kept)
    assert "legacy table visits" in message
    assert "after 50 rows" in message
    assert "OverflowError" in message
    assert "1000000" not in message  # the driver's message (which may quote a value) is not repeated
    assert isinstance(kept.__cause__, OverflowError)
    assert _work_files(cutover_home) == []  # the plaintext copy is gone before the error propagates
    assert leaks, "the failure was provoked while a reader of the copy was open"

    started = time.monotonic()
    info = snapshot_legacy(url, "r1")  # the retry: same run, same process, the leaked reader still open
    assert time.monotonic() - started < 60
    assert info["tables"] == truth["tables"]
    assert [p.name for p in _work_files(cutover_home)] == ["legacy.db", "snapshot.json"]
    assert (cutover_home / "backup-work" / "r1" / "legacy.db").stat().st_mode & 0o077 == 0
    assert leaks[0].fetchone() is not None  # the leaked reader was mid-statement all along
    leaks[0].connection.close()


@pytest.mark.timeout(120, method="thread")  # a hang in C code ignores SIGALRM too
def test_failed_backup_then_full_backup_verifies(
    legacy: tuple[str, dict[str, Any]], cutover_home: Path, tmp_path: Path
) -> None:
    url, truth = legacy
    store_url = f"file://{tmp_path / 'stage'}"
    leaks: list[sqlite3.Cursor] = []
    with _fail_mid_table("charges", leaks), pytest.raises(TerminalError, match="legacy table charges"):
        back_up(url, store_url, "r2", KEY, now=NOW)
    assert _work_files(cutover_home) == []
    made = back_up(url, store_url, "r2", KEY, now=NOW)
    assert {t: f["rows"] for t, f in made["tables"].items()} == truth["tables"]
    assert verify_backup(store_url, "r2", scratch_on(None), key=KEY, now=NOW).ok
    assert _work_files(cutover_home) == []
    assert leaks[0].fetchone() is not None  # the leaked reader was mid-statement all along
    leaks[0].connection.close()


def test_engine_failure_is_named_and_leaves_nothing(
    legacy: tuple[str, dict[str, Any]], cutover_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = legacy

    def broken(legacy_url: str, workdir: Path, **kw: Any) -> list[Path]:
        (workdir / "legacy.db").write_bytes(b"SQLite format 3\x00 half a copy")
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(sqlite_engine, "snapshot", broken)
    with pytest.raises(
        TerminalError, match=r"snapshot of the sqlite legacy database failed \(DatabaseError\)"
    ):
        snapshot_legacy(url, "r3")
    assert _work_files(cutover_home) == []


def test_leftovers_of_killed_backups_are_removed(
    legacy: tuple[str, dict[str, Any]], cutover_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, truth = legacy
    work = cutover_home / "backup-work"
    (work / "manual__killed" / ".hidden").mkdir(parents=True)
    (work / "manual__killed" / "legacy.db").write_bytes(
        b"SQLite format 3\x00 " + truth["canaries"][0].encode()
    )
    (work / "manual__killed" / ".hidden" / "legacy.sql").write_text("INSERT ...")
    (work / "manual__killed-restore").mkdir()
    (work / "manual__killed-restore" / "legacy.db").write_bytes(b"plain")
    (work / ".legacy.db.tmp").write_bytes(b"plain")
    with caplog.at_level(logging.INFO, logger="cutover.backup"):
        snapshot_legacy(url, "r4")
    assert sorted(p.name for p in work.iterdir()) == ["r4"]
    swept = [r.getMessage() for r in caplog.records if "leftover" in r.getMessage()]
    assert len(swept) == 3
    assert any("manual__killed-restore" in m for m in swept)
    assert not any(c in r.getMessage() for r in caplog.records for c in truth["canaries"])


@pytest.mark.timeout(60, method="thread")
def test_a_locked_database_fails_the_snapshot_in_bounded_time(
    legacy: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, _ = legacy
    writer = sqlite3.connect(source.sqlite_path(url), isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # the legacy application in the middle of a write
    try:
        started = time.monotonic()
        with pytest.raises(TransientError, match=r"legacy database legacy.db: locked for 1s"):
            sqlite_engine.snapshot(url, tmp_path, locked_seconds=1)
        assert time.monotonic() - started < 10
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert sqlite_engine.snapshot(url, tmp_path)  # once the lock is gone, over the failed copy


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cutover_run_pt_backup_on_an_id_beyond_int64(home: Path, tmp_path: Path) -> None:
    """The reported case end to end: a parent id of 1e20 fails nothing, leaves nothing, leaks nothing."""
    legacy = tmp_path / "legacy.db"
    truth = simulate(f"sqlite:///{legacy}", patients=60, seed=81)
    with sqlite3.connect(legacy) as conn:
        conn.execute("UPDATE visits SET case_id = 1e20 WHERE visit_id = (SELECT min(visit_id) FROM visits)")
    env = {"AIRFLOW_CONN_LEGACY_DB": f"sqlite:///{legacy}", "AIRFLOW_CONN_TARGET_DB": UNUSED_TARGET}
    result = run_cutover(["run", "pt_backup"], home, env)
    evidence_of(result)
    assert _work_files(home) == []
    assert "OverflowError" not in result.stdout + result.stderr
    assert not any(c in everything_of(result) for c in truth["canaries"])  # the console and the task logs


def test_fingerprint_closes_its_reader_when_it_fails(
    legacy: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = legacy
    monkeypatch.setattr(fp_module, "canonical_row", _raise_on_third_row())
    monkeypatch.setattr(
        fp_module, "read_batches", lambda *a, **kw: source.read_batches(*a, **{**kw, "batch_rows": 5})
    )
    with pytest.raises(TerminalError, match=r"fingerprint of legacy table clinics failed after 0 rows"):
        fingerprint(url)
    # the reader's connection is closed: a writer gets its exclusive lock at once
    writer = sqlite3.connect(source.sqlite_path(url), timeout=0, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("ROLLBACK")
    writer.close()


def _raise_on_third_row() -> Any:
    count = {"rows": 0}

    def canonical_row(row: Sequence[Any]) -> bytes:
        count["rows"] += 1
        if count["rows"] == 3:
            raise ValueError(f"cannot encode {row!r}")
        return b""

    return canonical_row
