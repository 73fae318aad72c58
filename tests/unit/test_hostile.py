"""The hostile-value catalogue and the corrupter: every kind the issue names, columns that fit,
deterministic corruption of the requested share, records of ids and kinds only."""

from __future__ import annotations

import doctest
import hashlib
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

import cutover.simulate.hostile
from cutover.errors import ConfigError
from cutover.legacy.schema import LEGACY_TABLES
from cutover.mapping.specs import SPECS
from cutover.simulate import simulate
from cutover.simulate.hostile import (
    CATALOGUE,
    INT64_MAX,
    INT64_MIN,
    KINDS,
    MEANINGS,
    column_meaning,
    corrupt,
    kinds_for,
)

NAMED_KINDS = {
    # ids
    "id_fractional_real", "id_fractional_text", "id_int64_overflow_real", "id_int64_overflow_text",
    "id_negative", "id_zero", "id_text", "id_text_prefix", "id_text_padded", "id_blank", "id_whitespace",
    "id_null",
    # text
    "text_empty", "text_whitespace", "text_nul", "text_control", "text_invalid_utf8", "text_cp1252",
    "text_latin1", "text_mojibake", "text_huge", "text_emoji", "text_astral", "text_bidi", "text_homoglyph",
    "text_sql_injection", "text_html", "text_csv_injection", "text_token_na", "text_token_null",
    "text_token_none", "text_token_question", "text_token_dash", "text_token_tbd", "text_token_unknown",
    "text_padded",
    # dates
    "date_zero", "date_feb30", "date_1899", "date_9999", "date_next_year", "date_two_digit_year",
    "date_excel_serial", "date_epoch_seconds", "date_word", "date_iso_tz", "date_out_of_range",
    # money
    "money_overflow_exp", "money_nan", "money_negative_zero", "money_bad_grouping", "money_parenthesised",
    "money_three_decimals", "money_huge",
    # codes, blobs
    "code_lower", "code_padded", "code_unknown", "blob_empty", "blob_text",
}  # fmt: skip
"""The kinds issue 13 asks for by name."""

RECORD_KEYS = {"table", "column", "legacy_id", "kind", "original_id"}


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "legacy.db"
    simulate(f"sqlite:///{path}", patients=20, seed=13)
    return path


def _copy(small_db: Path, tmp_path: Path, name: str = "copy.db") -> Path:
    target = tmp_path / name
    shutil.copy(small_db, target)
    return target


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with sqlite3.connect(path) as conn:
        conn.text_factory = bytes
        for name, table in LEGACY_TABLES.items():
            for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY "{table.key}"'):
                digest.update(repr(row).encode())
    conn.close()
    return digest.hexdigest()


def _cells(path: Path, table: str, column: str) -> dict[int, object]:
    key = LEGACY_TABLES[table].key
    conn = sqlite3.connect(path)
    conn.text_factory = bytes
    try:
        return dict(conn.execute(f'SELECT "{key}", "{column}" FROM "{table}"').fetchall())
    finally:
        conn.close()


# -- the catalogue -------------------------------------------------------------------------------------


def test_doctests() -> None:
    assert doctest.testmod(cutover.simulate.hostile).failed == 0


def test_every_named_kind_is_catalogued() -> None:
    assert NAMED_KINDS - set(KINDS) == set()
    assert all(h.kind.split("_")[0] in {"id", "text", "date", "money", "number", "code", "name", "phone",
                                        "ident", "blob"} for h in CATALOGUE)  # fmt: skip


def test_key_legal_means_an_integer_in_int64() -> None:
    for h in CATALOGUE:
        value = h.value
        integer = isinstance(value, int) and INT64_MIN <= value <= INT64_MAX
        assert h.key_legal == (h.column_type == "int" and integer), h.kind
    assert {h.kind for h in CATALOGUE if h.key_legal} == {
        "id_negative",
        "id_zero",
        "id_int64_max",
        "id_int64_min",
    }


def test_the_kinds_named_by_value_hold_what_they_say() -> None:
    assert KINDS["id_fractional_real"].value == 2431.5
    assert KINDS["id_fractional_text"].value == "2431.5"
    assert KINDS["id_int64_overflow_real"].value == 1e20
    assert KINDS["id_int64_overflow_text"].value == "99999999999999999999"
    assert KINDS["id_negative"].value_for(17) == -17
    assert isinstance(KINDS["text_invalid_utf8"].value, bytes)
    with pytest.raises(UnicodeDecodeError):
        KINDS["text_invalid_utf8"].value.decode("utf-8")  # type: ignore[union-attr]
    assert len(KINDS["text_huge"].value) >= 10 * 1024 * 1024  # type: ignore[arg-type]
    assert "\x00" in str(KINDS["text_nul"].value)
    assert "\u202e" in str(KINDS["text_bidi"].value)
    assert any(0x400 <= ord(c) <= 0x4FF for c in str(KINDS["text_homoglyph"].value))
    assert any(ord(c) > 0xFFFF for c in str(KINDS["text_astral"].value))
    assert KINDS["code_lower"].value_for(b"OPEN") == "open"
    assert KINDS["code_padded"].value_for("DN") == "  DN  "


def test_every_legacy_column_has_kinds_of_its_type() -> None:
    for table, spec in LEGACY_TABLES.items():
        for column, column_type in spec.columns:
            kinds = kinds_for(table, column)
            assert kinds, f"{table}.{column}"
            assert {h.column_type for h in kinds} == {column_type}, f"{table}.{column}"
            assert column_meaning(table, column) in MEANINGS
        assert kinds_for(table, spec.key, key_legal_only=True), table


def test_text_meanings_agree_with_the_rules_that_read_the_columns() -> None:
    """A column a spec reads with the date, money, name or phone rule has that meaning here."""
    by_title = {"date in mixed": "date", "timestamp": "date", "money": "money", "person name": "name",
                "phone number": "phone"}  # fmt: skip
    checked = 0
    for table, spec in SPECS.items():
        for f in spec.fields:
            meaning = next((m for prefix, m in by_title.items() if f.rule.title.startswith(prefix)), None)
            if meaning is None:
                continue
            assert column_meaning(table, f.sources[0]) == meaning, f"{table}.{f.sources[0]}"
            checked += 1
    assert checked > 20
    assert {h.kind for h in kinds_for("visits", "visit_date")} >= {"date_feb30", "text_nul"}
    assert "date_feb30" not in {h.kind for h in kinds_for("charges", "amount")}


# -- the corrupter -------------------------------------------------------------------------------------


def test_corrupt_is_deterministic(small_db: Path, tmp_path: Path) -> None:
    first, second, other = (_copy(small_db, tmp_path, f"{n}.db") for n in ("a", "b", "c"))
    records = corrupt(first, rate=0.05, seed=7)
    assert records == corrupt(f"sqlite:///{second}", rate=0.05, seed=7)
    assert _digest(first) == _digest(second) != _digest(small_db)
    assert corrupt(other, rate=0.05, seed=8) != records
    assert _digest(other) != _digest(first)


def test_corrupt_replaces_the_requested_share(small_db: Path, tmp_path: Path) -> None:
    path = _copy(small_db, tmp_path)
    before = {c: _cells(small_db, "visits", c) for c in ("visit_date", "pat_id", "subjective")}
    records = corrupt(
        path, rate=0.25, seed=3, tables=["visits"], columns=["visit_date", "visits.pat_id", "subjective"]
    )
    rows = len(before["visit_date"])
    per_column = Counter(r["column"] for r in records)
    assert per_column == dict.fromkeys(before, round(0.25 * rows))
    assert {r["table"] for r in records} == {"visits"}
    for column, cells in before.items():
        after = _cells(path, "visits", column)
        replaced = {r["legacy_id"] for r in records if r["column"] == column}
        assert len(replaced) == per_column[column], column  # one record per cell
        changed = {k for k in cells if after[k] != cells[k]}
        # a replacement may by chance equal the old value (a lower-cased code already lower case)
        assert changed <= replaced, column
        assert len(changed) >= 0.8 * len(replaced), column
    untouched = _cells(path, "visits", "objective") == _cells(small_db, "visits", "objective")
    assert untouched
    assert _cells(path, "patients", "pat_name") == _cells(small_db, "patients", "pat_name")


def test_corrupt_rate_edges(small_db: Path, tmp_path: Path) -> None:
    path = _copy(small_db, tmp_path)
    assert corrupt(path, rate=0, seed=1) == []
    assert _digest(path) == _digest(small_db)
    # a small table still gets one cell at a small rate
    records = corrupt(path, rate=0.001, seed=1, tables=["clinics"], columns=["tz"])
    assert len(records) == 1
    with pytest.raises(ValueError, match="rate"):
        corrupt(path, rate=1.5, seed=1)
    with pytest.raises(ConfigError):
        corrupt("postgresql://nobody@127.0.0.1:1/x", rate=0.1, seed=1)
    with pytest.raises(ConfigError):
        corrupt(tmp_path / "missing.db", rate=0.1, seed=1)
    with pytest.raises(ConfigError):
        corrupt(path, rate=0.1, seed=1, tables=["nosuchtable"])


def test_corrupt_returns_ids_and_kinds_only(small_db: Path, tmp_path: Path) -> None:
    path = _copy(small_db, tmp_path)
    records = corrupt(path, rate=0.3, seed=5)
    assert len(records) > 500
    for record in records:
        assert set(record) <= RECORD_KEYS
        assert record["kind"] in KINDS
        assert isinstance(record["legacy_id"], int)
        assert record["table"] in LEGACY_TABLES
        assert record["column"] in LEGACY_TABLES[record["table"]].column_names
        assert isinstance(record.get("original_id", 0), int)
    # nothing else: a record's text is names of the schema and the catalogue
    assert all(isinstance(v, str | int) for r in records for v in r.values())
    # a good share of the catalogue was planted, and at most two megabyte values
    kinds = Counter(r["kind"] for r in records)
    assert len(kinds) > 0.8 * len(CATALOGUE)
    assert sum(n for k, n in kinds.items() if KINDS[k].huge) <= 2


def test_corrupted_keys_stay_unique_integers(small_db: Path, tmp_path: Path) -> None:
    path = _copy(small_db, tmp_path)
    records = corrupt(path, rate=0.5, seed=11)
    keys = [r for r in records if r["column"] == LEGACY_TABLES[r["table"]].key]
    assert keys
    assert all(KINDS[r["kind"]].key_legal and r["original_id"] != r["legacy_id"] for r in keys)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for name, table in LEGACY_TABLES.items():
            types = {t for (t,) in conn.execute(f'SELECT DISTINCT typeof("{table.key}") FROM "{name}"')}
            assert types == {"integer"}, name
        # records of other columns name the key the row ends with
        for r in records:
            key = LEGACY_TABLES[r["table"]].key
            sql = f'SELECT COUNT(*) FROM "{r["table"]}" WHERE "{key}" = ?'
            assert conn.execute(sql, (r["legacy_id"],)).fetchone() == (1,), (r["table"], r["legacy_id"])
    finally:
        conn.close()


def test_corrupted_cells_hold_what_sqlite_stores(small_db: Path, tmp_path: Path) -> None:
    """The values land as SQLite keeps them: bytes in a TEXT column as BLOB, 1e20 as REAL."""
    path = _copy(small_db, tmp_path)
    records = corrupt(path, rate=1.0, seed=2, tables=["visits", "charges"])
    conn = sqlite3.connect(path)
    expected = {"id_fractional_real": "real", "id_int64_overflow_real": "real", "id_text": "text",
                "text_invalid_utf8": "blob", "text_latin1": "blob", "id_null": "null", "id_blank": "text"}  # fmt: skip
    seen = set()
    try:
        for r in records:
            if r["kind"] not in expected:
                continue
            key = LEGACY_TABLES[r["table"]].key
            sql = f'SELECT typeof("{r["column"]}") FROM "{r["table"]}" WHERE "{key}" = ?'
            (stored,) = conn.execute(sql, (r["legacy_id"],)).fetchone()
            assert stored == expected[r["kind"]], r["kind"]
            seen.add(r["kind"])
    finally:
        conn.close()
    assert seen == set(expected)
