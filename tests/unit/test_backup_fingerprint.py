"""Table fingerprints: deterministic, independent of batch sizes, sensitive to one changed cell."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cutover.backup import fingerprint as fp_module
from cutover.backup.fingerprint import fingerprint
from cutover.legacy.schema import LEGACY_TABLES
from cutover.simulate import simulate


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("legacy") / "legacy.db"
    simulate(f"sqlite:///{path}", patients=20, seed=5)
    return path


def test_deterministic_and_complete(legacy: Path) -> None:
    first = fingerprint(f"sqlite:///{legacy}")
    assert first == fingerprint(f"sqlite:///{legacy}")
    assert set(first) == set(LEGACY_TABLES)
    with sqlite3.connect(legacy) as conn:
        for table, fp in first.items():
            assert fp["rows"] == conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def test_batch_size_does_not_matter(legacy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = fp_module.table_fingerprint(f"sqlite:///{legacy}", "visits")
    real = fp_module.read_batches

    def small(*args: Any, **kw: Any) -> Any:
        return real(*args, **{**kw, "batch_rows": 7})

    monkeypatch.setattr(fp_module, "read_batches", small)
    assert fp_module.table_fingerprint(f"sqlite:///{legacy}", "visits") == whole


@pytest.mark.parametrize(
    ("table", "sql"),
    [
        (
            "visits",
            "UPDATE visits SET plan = plan || '.' WHERE visit_id = (SELECT min(visit_id) FROM visits)",
        ),
        (
            "documents",
            "UPDATE documents SET content = CAST(content || x'00' AS BLOB) WHERE doc_id = (SELECT max(doc_id) FROM documents)",
        ),
        # NULL and an empty string are different cells
        (
            "patients",
            "UPDATE patients SET addr2 = CASE WHEN addr2 IS NULL THEN '' ELSE NULL END WHERE pat_id = (SELECT min(pat_id) FROM patients)",
        ),
    ],
)
def test_one_changed_cell_changes_only_its_table(legacy: Path, tmp_path: Path, table: str, sql: str) -> None:
    copy = tmp_path / "copy.db"
    shutil.copy(legacy, copy)
    before = fingerprint(f"sqlite:///{copy}")
    with sqlite3.connect(copy) as conn:
        changed = conn.execute(sql).rowcount
    after = fingerprint(f"sqlite:///{copy}")
    assert changed == 1
    assert [t for t in before if before[t] != after[t]] == [table]
    assert after[table]["rows"] == before[table]["rows"]


def test_doctests() -> None:
    import doctest

    failures, tried = doctest.testmod(fp_module)
    assert tried
    assert not failures


def test_ids_are_hashed_as_their_raw_text(legacy: Path, tmp_path: Path) -> None:
    """The extract reads an id that is no int64 as NULL; the fingerprint tells 1e20, 2e20, '12abc'
    and NULL apart, so any change of a cell changes the checksum."""
    copy = tmp_path / "copy.db"
    shutil.copy(legacy, copy)
    seen = []
    for value in ("1e20", "2e20", "'12abc'", "NULL", "1e20"):
        with sqlite3.connect(copy) as conn:
            conn.execute(
                f"UPDATE procedures SET visit_id = {value} WHERE proc_id = (SELECT min(proc_id) FROM procedures)"
            )
        seen.append(fp_module.table_fingerprint(f"sqlite:///{copy}", "procedures")["sha256"])
    assert len(set(seen[:4])) == 4
    assert seen[4] == seen[0]  # the same value again: the same checksum
    assert all(kind == "text" for _, kind in fp_module.raw_columns(LEGACY_TABLES["procedures"]))
