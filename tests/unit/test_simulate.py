"""The legacy clinic simulator: determinism, counts, ground truth that matches the data, canaries."""

from __future__ import annotations

import doctest
import hashlib
import json
import re
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import phonenumbers
import pytest

import cutover.legacy.schema
import cutover.simulate
import cutover.simulate.defects
import cutover.simulate.formats
import cutover.simulate.pdf
import cutover.simulate.practice
import cutover.simulate.writers
from cutover.errors import ConfigError
from cutover.legacy.schema import LEGACY_TABLES, ddl
from cutover.simulate import DEFECT_KINDS, DEFECTS, RATES, simulate
from cutover.simulate.practice import eight_minute_units, npi_check_digit

PATIENTS = 400
SEED = 11
TIMED = {"97110", "97112", "97116", "97140", "97530", "97535"}
SCORE_TOP = {"LEFS": 80, "ODI": 100, "NDI": 50, "QuickDASH": 100, "PSFS": 10}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("sim") / "legacy.db"
    manifest = simulate(f"sqlite:///{path}", patients=PATIENTS, seed=SEED)
    return path, manifest


@pytest.fixture(scope="module")
def db(sim: tuple[Path, dict[str, Any]]) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(sim[0])
    conn.text_factory = bytes  # see raw bytes: Latin-1 cells must not be decoded here
    yield conn
    conn.close()


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _rows(conn: sqlite3.Connection, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return [tuple(_text(v) for v in row) for row in conn.execute(sql, args)]


def _column(conn: sqlite3.Connection, table: str, column: str) -> dict[int, Any]:
    key = LEGACY_TABLES[table].key
    return {k: v for k, v in conn.execute(f'SELECT "{key}", "{column}" FROM "{table}"')}


def content_hash(path: Path) -> str:
    """SHA-256 over every table's rows in key order, raw values (bytes stay bytes)."""
    digest = hashlib.sha256()
    conn = sqlite3.connect(path)
    conn.text_factory = bytes
    try:
        for name, table in LEGACY_TABLES.items():
            digest.update(name.encode())
            for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY "{table.key}"'):
                digest.update(repr(row).encode())
    finally:
        conn.close()
    return digest.hexdigest()


def _defects(manifest: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [d for d in manifest["defects"] if d["kind"] == kind]


def _parse_date(text: str) -> np.datetime64:
    """The clean dates a test needs, from any spelling the simulator writes (not the impossible ones)."""
    text = text.strip()
    if m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})( 00:00:00)?", text):
        y, mo, d = m.group(1, 2, 3)
    elif m := re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text):
        mo, d, y = m.group(1, 2, 3)
    elif m := re.fullmatch(r"(\d{2})/(\d{2})/(\d{2})", text):
        mo, d, yy = m.group(1, 2, 3)
        y = f"20{yy}"
    elif m := re.fullmatch(r"(\d{2})-([A-Z][a-z]{2})-(\d{4})", text):
        months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        d, mo, y = m.group(1), str(months.index(m.group(2)) + 1), m.group(3)
    elif m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})", text):
        y, mo, d = m.group(1, 2, 3)
    else:
        raise ValueError("unparseable date in the simulator's output")
    return np.datetime64(f"{y}-{int(mo):02d}-{int(d):02d}", "D")


# -- the manifest and the counts -------------------------------------------------------------------


def test_manifest_file_equals_the_returned_manifest(sim: tuple[Path, dict[str, Any]]) -> None:
    path, manifest = sim
    on_disk = json.loads(Path(f"{path}.manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["seed"] == SEED
    assert manifest["patients"] == PATIENTS
    assert manifest["generator"]["name"] == "cutover.simulate"
    assert manifest["rates"] == dict(RATES)
    assert set(manifest["defect_kinds"]) == set(DEFECT_KINDS)
    for kind, spec in manifest["defect_kinds"].items():
        assert spec["expected"] in {"normalise", "reject", "merge", "flag"}, kind
        assert spec["table"] in LEGACY_TABLES, kind


def test_manifest_counts_equal_the_rows_written(
    sim: tuple[Path, dict[str, Any]], db: sqlite3.Connection
) -> None:
    _, manifest = sim
    assert list(manifest["tables"]) == list(LEGACY_TABLES)
    for table, count in manifest["tables"].items():
        (actual,) = db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
        assert actual == count, table
    # Roughly 100 legacy rows a patient, and more patient rows than patients (duplicates).
    total = sum(manifest["tables"].values())
    assert 60 * PATIENTS < total < 200 * PATIENTS
    assert manifest["tables"]["patients"] > PATIENTS
    assert 3 <= manifest["tables"]["clinics"] <= 6


def test_sqlite_schema_is_the_contract(db: sqlite3.Connection) -> None:
    for name, table in LEGACY_TABLES.items():
        info = db.execute(f'PRAGMA table_info("{name}")').fetchall()
        assert [_text(row[1]) for row in info] == list(table.column_names), name
        declared = {_text(row[1]): _text(row[2]) for row in info}
        for column, kind in table.columns:
            assert declared[column] == {"int": "INTEGER", "text": "TEXT", "blob": "BLOB"}[kind]
        assert [_text(row[1]) for row in info if row[5]] == [table.key], name
        assert not db.execute(f'PRAGMA foreign_key_list("{name}")').fetchall()
        ints = {column for column, kind in table.columns if kind == "int"}
        assert ints == {table.key} | {fk for fk, _ in table.parents}, name  # ids only; the rest is text
        for fk, parent in table.parents:
            assert parent in LEGACY_TABLES
            assert list(LEGACY_TABLES).index(parent) < list(LEGACY_TABLES).index(name)
            assert table.column_type(fk) == "int"


def test_ddl_covers_every_dialect_without_foreign_keys() -> None:
    for dialect in ("sqlite", "postgresql", "mysql"):
        statements = ddl(dialect)
        assert len(statements) == len(LEGACY_TABLES)
        assert all("REFERENCES" not in s.upper() and "FOREIGN" not in s.upper() for s in statements)
    documents = list(LEGACY_TABLES).index("documents")  # the one table with attachments
    assert "LONGBLOB" in ddl("mysql")[documents]
    assert "BYTEA" in ddl("postgresql")[documents]


def test_same_seed_same_bytes_other_seed_other_data(sim: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, _ = sim
    again = tmp_path / "again.db"
    simulate(f"sqlite:///{again}", patients=PATIENTS, seed=SEED)
    assert content_hash(again) == content_hash(path)
    assert Path(f"{again}.manifest.json").read_bytes() == Path(f"{path}.manifest.json").read_bytes()
    other = tmp_path / "other.db"
    simulate(f"sqlite:///{other}", patients=PATIENTS, seed=SEED + 1)
    assert content_hash(other) != content_hash(path)


def test_rerun_replaces_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    simulate(f"sqlite:///{path}", patients=120, seed=1)
    second = simulate(f"sqlite:///{path}", patients=60, seed=2)
    with sqlite3.connect(path) as conn:
        for table, count in second["tables"].items():
            assert conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone() == (count,)


# -- the defects: present, at their rates, and true of the data -------------------------------------


def test_every_defect_kind_is_present(sim: tuple[Path, dict[str, Any]]) -> None:
    kinds = Counter(d["kind"] for d in sim[1]["defects"])
    assert set(kinds) == set(DEFECT_KINDS)
    assert set(DEFECTS) == set(DEFECT_KINDS) == set(RATES)


def test_every_defect_names_an_existing_row(sim: tuple[Path, dict[str, Any]], db: sqlite3.Connection) -> None:
    keys = {
        name: {k for (k,) in db.execute(f'SELECT "{t.key}" FROM "{name}"')}
        for name, t in LEGACY_TABLES.items()
    }
    for d in sim[1]["defects"]:
        assert d["legacy_id"] in keys[d["table"]], (d["kind"], d["table"], d["legacy_id"])
        if d.get("field") and d["kind"] != "visit_after_discharge":
            assert d["field"] in LEGACY_TABLES[d["table"]].column_names, d
    for d in _defects(sim[1], "orphan"):
        (parent_ref,) = db.execute(
            f'SELECT "{d["field"]}" FROM "{d["table"]}" WHERE "{LEGACY_TABLES[d["table"]].key}" = ?',
            (d["legacy_id"],),
        ).fetchone()
        assert parent_ref not in keys[d["parent"]]


def test_orphans_recorded_are_exactly_the_orphans_in_the_data(
    sim: tuple[Path, dict[str, Any]], db: sqlite3.Connection
) -> None:
    found = set()
    for name, table in LEGACY_TABLES.items():
        for fk, parent in table.parents:
            pkey = LEGACY_TABLES[parent].key
            sql = (
                f'SELECT c."{table.key}" FROM "{name}" c LEFT JOIN "{parent}" p ON c."{fk}" = p."{pkey}" '
                f'WHERE c."{fk}" IS NOT NULL AND p."{pkey}" IS NULL'
            )
            found |= {(name, k, fk) for (k,) in db.execute(sql)}
    recorded = {(d["table"], d["legacy_id"], d["field"]) for d in _defects(sim[1], "orphan")}
    assert found == recorded
    assert {t for t, _, _ in found} >= {"visits", "procedures", "charges", "coverage"}


def test_each_injection_takes_its_exact_share(sim: tuple[Path, dict[str, Any]]) -> None:
    """Each (kind, table, field) stratum picks max(1, round(rate × eligible)) units, and the defects
    recorded for it are exactly that many."""
    manifest = sim[1]
    assert {inj["kind"] for inj in manifest["injections"]} == set(DEFECT_KINDS)
    for inj in manifest["injections"]:
        rate, eligible, selected = manifest["rates"][inj["kind"]], inj["eligible"], inj["selected"]
        assert selected == (max(1, round(rate * eligible)) if eligible else 0), inj
        if inj["kind"] == "orphan":
            continue  # one stratum deletes visits: its defects land on the children (next tests)
        found = [
            d
            for d in manifest["defects"]
            if d["kind"] == inj["kind"]
            and d["table"] == inj["table"]
            and (inj["field"] is None or d.get("field") == inj["field"])
        ]
        if inj["kind"] == "visit_after_discharge":
            units = {d["case_id"] for d in found}  # the unit is the case; each flags 2-4 visits
            assert len(found) >= 2 * len(units)
        else:
            units = {(d["legacy_id"], d.get("field")) for d in found}
            assert len(units) == len(found)
        assert len(units) == selected, inj


def test_rates_seen_in_the_data_are_the_configured_rates(
    sim: tuple[Path, dict[str, Any]], db: sqlite3.Connection
) -> None:
    """Observed share = recorded defects / rows counted in the database, for whole-table kinds."""
    manifest = sim[1]
    n_dup = len(_defects(manifest, "duplicate_patient"))
    n_pat = manifest["tables"]["patients"]
    (zeros,) = db.execute("SELECT COUNT(*) FROM patients WHERE state IN ('MA', 'NJ', 'CT')").fetchone()
    (timed,) = db.execute(
        f"SELECT COUNT(*) FROM procedures WHERE cpt_text IN ({','.join(repr(c) for c in TIMED)})"
    ).fetchone()
    denominators = {
        "duplicate_patient": n_pat - n_dup,
        "sex_code": n_pat,
        "placeholder_ssn": n_pat,
        "name_format": n_pat,
        "zip_lost_zero": zeros,
        "note_without_appointment": manifest["tables"]["visits"],
        "latin1_text": manifest["tables"]["visits"],
        "control_chars": manifest["tables"]["visits"],
        "score_out_of_range": manifest["tables"]["outcomes"],
        "units_exceed_minutes": timed,
        "money_format": manifest["tables"]["charges"] + manifest["tables"]["payments"],
        "icd9_code": manifest["tables"]["diagnoses"] + manifest["tables"]["referrals"],
        "icd10_no_dot": manifest["tables"]["diagnoses"] + manifest["tables"]["referrals"],
    }
    counts = Counter(d["kind"] for d in manifest["defects"])
    for kind, denominator in denominators.items():
        observed = counts[kind] / denominator
        rate = manifest["rates"][kind]
        assert abs(observed - rate) <= 0.25 * rate + 2 / denominator, (kind, observed, rate)
    # Orphaned visits: 0.5% lose their case; the children of another 0.5% (deleted) are orphans.
    visits = manifest["tables"]["visits"]
    orphan_visits = {d["legacy_id"] for d in _defects(manifest, "orphan") if d["table"] == "visits"}
    assert abs(len(orphan_visits) / visits - RATES["orphan"]) <= 0.25 * RATES["orphan"] + 2 / visits
    orphan_procs = {d["legacy_id"] for d in _defects(manifest, "orphan") if d["table"] == "procedures"}
    assert 0 < len(orphan_procs) / manifest["tables"]["procedures"] < 4 * RATES["orphan"]


def test_defects_are_true_of_the_stored_values(
    sim: tuple[Path, dict[str, Any]], db: sqlite3.Connection
) -> None:
    manifest = sim[1]
    cells: dict[tuple[str, str], dict[int, Any]] = {}

    def value(d: dict[str, Any], column: str | None = None) -> Any:
        column = column or d["field"]
        if (d["table"], column) not in cells:
            cells[(d["table"], column)] = _column(db, d["table"], column)
        return cells[(d["table"], column)][d["legacy_id"]]

    def text(d: dict[str, Any], column: str | None = None) -> str:
        return str(_text(value(d, column)))

    checks = {
        "date_mixed_format": lambda d: (
            not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text(d)) and _parse_date(text(d))
        ),
        "date_two_digit_year": lambda d: re.fullmatch(r"\d{2}/\d{2}/\d{2}", text(d)),
        "date_impossible": lambda d: (
            text(d) == "0000-00-00" or re.fullmatch(r"02/30/\d{4}|\d{4}-13-45", text(d))
        ),
        "name_format": lambda d: (
            text(d) != text(d).strip() or text(d) in (text(d).upper(), text(d).lower()) or "  " in text(d)
        ),
        "phone_format": lambda d: not re.fullmatch(r"\d{3}-\d{3}-\d{4}", text(d)),
        "zip_lost_zero": lambda d: re.fullmatch(r"[1-9]\d{3}", text(d)),
        "sex_code": lambda d: text(d) in {"Male", "Female", "male", "female", "1", "2", "U", ""},
        "null_token": lambda d: text(d) in {"N/A", "NULL", "none", "", " "},
        "latin1_text": lambda d: isinstance(value(d), bytes) and _not_utf8(value(d)),
        "control_chars": lambda d: re.search(r"[\x00\x0b\x1a\r]", text(d)),
        "cpt_free_text": lambda d: len(re.findall(r"97\d{3}", text(d))) == d["codes"] >= 2,
        "icd9_code": lambda d: re.fullmatch(r"(\d{3}|V\d{2})\.?\d{0,2}", text(d)),
        "icd10_no_dot": lambda d: re.fullmatch(r"[A-Z]\d{2}[0-9A-Z]{1,4}", text(d)),
        "note_without_appointment": lambda d: value(d) is None,
        "placeholder_ssn": lambda d: text(d) in {"999999999", "000000000", "123456789", ""},
        "invalid_npi": lambda d: not _npi_ok(text(d)),
        "units_exceed_minutes": lambda d: (
            int(text(d, "units")) > eight_minute_units(np.array(int(text(d, "minutes"))))
        ),
        "money_format": lambda d: not re.fullmatch(r"\d+\.\d{2}", text(d)),
        "score_out_of_range": lambda d: float(text(d)) > SCORE_TOP[d["measure"]],
        "discharge_before_start": lambda d: _parse_date(text(d)) < _parse_date(text(d, "start_date")),
    }
    for kind, check in checks.items():
        for d in _defects(manifest, kind):
            assert check(d), (kind, d["table"], d["legacy_id"], d.get("field"))
    # Visits after discharge: dated after the (reopened) case's discharge.
    cases = {r[0]: r[1:] for r in _rows(db, "SELECT case_id, discharge_date, status FROM cases")}
    visit_dates = _column(db, "visits", "visit_date")
    for d in _defects(manifest, "visit_after_discharge"):
        discharge, status = cases[d["case_id"]]
        assert status == "REOPENED"
        visit_date = _text(visit_dates[d["legacy_id"]])
        if re.search(r"\d", visit_date) and not re.fullmatch(
            r"0000-00-00|02/30/\d{4}|\d{4}-13-45", visit_date
        ):
            assert _parse_date(visit_date) > _parse_date(discharge)


def test_messy_phones_are_still_valid_numbers(
    sim: tuple[Path, dict[str, Any]], db: sqlite3.Connection
) -> None:
    """A format defect changes the spelling, never the number: phonenumbers accepts every variant."""
    phones = {c: _column(db, "patients", c) for c in ("home_phone", "cell_phone", "emerg_phone")}
    seen = Counter()
    for d in _defects(sim[1], "phone_format"):
        raw = _text(phones[d["field"]][d["legacy_id"]])
        number = phonenumbers.parse(raw, "US")
        assert phonenumbers.is_valid_number(number), d["format"]
        assert (number.extension is not None) == (d["format"] == "extension")
        seen[d["format"]] += 1
    assert set(seen) == {"parens", "dots", "digits", "plus_one", "extension"}


def test_duplicates_point_at_a_similar_original(
    sim: tuple[Path, dict[str, Any]], db: sqlite3.Connection
) -> None:
    names = {k: _text(v) for k, v in _column(db, "patients", "pat_name").items()}
    dups = _defects(sim[1], "duplicate_patient")
    originals = {d["of"] for d in dups}
    assert len(originals) == len(dups)
    assert not originals & {d["legacy_id"] for d in dups}
    owning = {pid for (pid,) in db.execute("SELECT DISTINCT pat_id FROM cases")}
    for d in dups:
        assert d["legacy_id"] > d["of"]
        dup, orig = names[d["legacy_id"]].strip().lower(), names[d["of"]].strip().lower()
        assert dup != orig
        # One-letter typo at most in each part: the family names stay close.
        assert _edit_distance(dup.split(",")[0].replace(" ", ""), orig.split(",")[0].replace(" ", "")) <= 2
    assert owning & {d["legacy_id"] for d in dups}, "some cases must point at the duplicate"


def test_unrecorded_values_are_clean(sim: tuple[Path, dict[str, Any]], db: sqlite3.Connection) -> None:
    """The reverse direction: what the manifest does not list is clean, so the ground truth is complete."""
    manifest = sim[1]
    recorded: dict[tuple[str, str], set[int]] = defaultdict(set)
    for d in manifest["defects"]:
        recorded[(d["table"], d.get("field") or "")].add(d["legacy_id"])

    def clean(table: str, column: str) -> Iterator[tuple[int, Any]]:
        skip = recorded[(table, column)]
        for k, v in _column(db, table, column).items():
            if k not in skip:
                yield k, _text(v)

    for column in ("home_phone", "cell_phone", "emerg_phone"):
        for _, phone in clean("patients", column):
            if phone is not None:
                assert re.fullmatch(r"\d{3}-\d{3}-\d{4}", phone)
                assert phonenumbers.is_valid_number(phonenumbers.parse(phone, "US")), "invalid clean phone"
    for table in ("providers", "ref_physicians"):
        assert all(_npi_ok(npi) for _, npi in clean(table, "npi"))
    for column in ("dob",):
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for _, v in clean("patients", column))
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for _, v in clean("visits", "visit_date"))
    assert all(re.fullmatch(r"\d+\.\d{2}", v) for _, v in clean("charges", "amount"))
    assert all(v in {"M", "F"} for _, v in clean("patients", "sex"))
    assert all(v is None or re.fullmatch(r"\d{3}-\d{2}-\d{4}", v) for _, v in clean("patients", "ssn"))
    for column in ("email", "addr2", "emerg_contact"):
        assert all(
            v is None or v.strip() not in {"", "N/A", "NULL", "none"} for _, v in clean("patients", column)
        )
    bad_dx = [
        v for _, v in clean("diagnoses", "icd_code") if not re.fullmatch(r"[A-Z]\d{2}\.[0-9A-Z]{1,4}", v)
    ]
    assert not bad_dx
    for column in ("subjective", "objective", "assessment", "plan"):
        for _, v in clean("visits", column):
            assert isinstance(v, str)
            assert not re.search(r"[\x00-\x08\x0b-\x1f]", v)
    exceed = recorded[("procedures", "units")]
    for proc_id, minutes, units, code in _rows(
        db, "SELECT proc_id, minutes, units, cpt_text FROM procedures"
    ):
        if code in TIMED and proc_id not in exceed:
            assert int(units) == eight_minute_units(np.array(int(minutes))), (
                "8-minute rule broken on a clean line"
            )
    (nulls,) = db.execute("SELECT COUNT(*) FROM visits WHERE appt_id IS NULL").fetchone()
    assert nulls == len(_defects(manifest, "note_without_appointment"))
    scores = recorded[("outcomes", "score")]
    for outcome_id, measure, score in _rows(db, "SELECT outcome_id, measure, score FROM outcomes"):
        if outcome_id not in scores:
            assert 0 <= float(score) <= SCORE_TOP[measure]


def test_episodes_are_realistic(sim: tuple[Path, dict[str, Any]], db: sqlite3.Connection) -> None:
    """Cases open with an evaluation, visits lie between start and discharge, counts look like PT."""
    manifest = sim[1]
    visits = _rows(db, "SELECT visit_id, case_id, visit_date, note_type FROM visits ORDER BY visit_id")
    case_ids = {k for (k,) in db.execute("SELECT case_id FROM cases")}
    first: dict[int, str] = {}
    for _, case_id, _, note in visits:
        if case_id in case_ids:  # not the orphans
            first.setdefault(case_id, note)
    assert sum(n == "IE" for n in first.values()) >= 0.98 * len(first)  # a deleted visit may be the IE
    assert sum(note == "IE" for *_, note in visits) <= len(first)
    counts = Counter(note for *_, note in visits)
    assert set(counts) == {"IE", "DN", "PN", "RE", "DC"}
    assert counts["DN"] > counts["IE"] > counts["PN"]

    odd_dates = {
        d["legacy_id"]
        for d in manifest["defects"]
        if d["kind"] in {"date_impossible", "date_two_digit_year"} and d["table"] == "visits"
    }
    skip_cases = {d["legacy_id"] for d in _defects(manifest, "discharge_before_start")}
    cases = {r[0]: r[1:] for r in _rows(db, "SELECT case_id, start_date, discharge_date, status FROM cases")}
    dob = {r[0]: r[1] for r in _rows(db, "SELECT pat_id, dob FROM patients")}
    odd_dob = {
        d["legacy_id"]
        for d in manifest["defects"]
        if d["kind"] in {"date_impossible"} and d["table"] == "patients"
    }
    checked = 0
    for visit_id, case_id, visit_date, _ in visits:
        if visit_id in odd_dates or case_id not in cases or case_id in skip_cases:
            continue
        start, discharge, status = cases[case_id]
        day = _parse_date(visit_date)
        assert day >= _parse_date(start)
        if status == "DISCHARGED":
            assert day <= _parse_date(discharge)
        checked += 1
    assert checked > 0.9 * len(visits)
    for pat_id, case_start in _rows(db, "SELECT pat_id, start_date FROM cases"):
        if pat_id not in odd_dob and re.fullmatch(r"\d{4}-\d{2}-\d{2}", dob[pat_id]):
            assert _parse_date(case_start) > _parse_date(dob[pat_id])

    per_case = [n for (n,) in db.execute("SELECT COUNT(*) FROM visits GROUP BY case_id")]
    assert max(per_case) <= 25
    assert 8 <= float(np.median(per_case)) <= 16
    lines = [n for (n,) in db.execute("SELECT COUNT(*) FROM procedures GROUP BY visit_id")]
    assert max(lines) <= 4
    assert 1.3 <= float(np.mean(lines)) <= 2.5
    codes = {c for (c,) in _rows(db, "SELECT DISTINCT cpt_code FROM charges")}
    assert codes <= TIMED | {"97161", "97162", "97163", "97164", "97010", "97014", "97150"}
    tz = {t for (t,) in _rows(db, "SELECT tz FROM clinics")}
    assert tz <= {"America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"}
    statuses = {s for (s,) in _rows(db, "SELECT status FROM appointments")}
    assert statuses == {"ARRIVED", "CANCELLED", "NOSHOW", "SCHEDULED"}


def test_documents_are_small_valid_pdfs(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT content, mime FROM documents").fetchall()
    assert rows
    for content, mime in rows:
        assert mime == b"application/pdf"
        assert content.startswith(b"%PDF-1.4")
        assert content.rstrip().endswith(b"%%EOF")
        assert 300 <= len(content) <= 8_000
        xref = int(content.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
        assert content[xref : xref + 4] == b"xref"


# -- canaries ------------------------------------------------------------------------------------------


def test_canaries_occur_in_the_data_once(sim: tuple[Path, dict[str, Any]], db: sqlite3.Connection) -> None:
    manifest = sim[1]
    canaries = manifest["canaries"]
    assert len(canaries) >= 10
    assert len(set(canaries)) == len(canaries)
    text_columns = [
        (name, column) for name, t in LEGACY_TABLES.items() for column, kind in t.columns if kind == "text"
    ]
    e164 = [c for c in canaries if re.fullmatch(r"\+1\d{10}", c)]
    assert len(e164) >= 2
    for canary in canaries:
        needle = canary
        if canary in e164:
            digits = canary[2:]
            needle = f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
            assert needle in canaries, "the raw form of each E.164 canary is a canary too"
        hits = 0
        for table, column in text_columns:
            (n,) = db.execute(
                f'SELECT COUNT(*) FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0', (needle,)
            ).fetchone()
            hits += n
        assert hits >= 1, "canary missing from the data"
        if canary not in e164 and "@" not in canary and "-" not in canary[:4]:
            assert hits <= 3, "a canary must be distinctive"
    for cell in manifest["canary_cells"]:
        stored = _text(_column(db, cell["table"], cell["field"])[cell["legacy_id"]])
        assert any(c in stored for c in canaries)


# -- contract edges ------------------------------------------------------------------------------------


def test_server_url_needs_a_manifest_path() -> None:
    with pytest.raises(ConfigError):
        simulate("postgresql://nobody@127.0.0.1:1/none", patients=30, seed=1)
    with pytest.raises(ConfigError):
        simulate("oracle://x/y", patients=30, seed=1, manifest_path="/tmp/never.json")


def test_too_small_a_practice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        simulate(f"sqlite:///{tmp_path / 'x.db'}", patients=3, seed=1)
    assert not (tmp_path / "x.db").exists()


def test_npi_check_digit_matches_the_cms_rule() -> None:
    assert npi_check_digit(np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9]])).tolist() == [3]
    assert _npi_ok("1234567893")
    assert not _npi_ok("1234567890")


def test_docstring_examples_run() -> None:
    for module in (
        cutover.legacy.schema,
        cutover.simulate,
        cutover.simulate.defects,
        cutover.simulate.formats,
        cutover.simulate.practice,
        cutover.simulate.pdf,
        cutover.simulate.writers,
    ):
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failures == 0, module.__name__
        assert tried > 0, module.__name__


def test_command_line_writes_a_practice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cutover.simulate.__main__ import main

    assert main([f"sqlite:///{tmp_path / 'cli.db'}", "--patients", "30", "--seed", "4"]) == 0
    manifest = json.loads((tmp_path / "cli.db.manifest.json").read_text())
    out = capsys.readouterr().out
    printed = {
        name: int(count.replace(",", "")) for name, count in (line.split() for line in out.splitlines())
    }
    assert printed == manifest["tables"]
    assert not any(c in out for c in manifest["canaries"])


def test_speed_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A small practice end to end; prints throughput (the 10,000-patient figure is in the report)."""
    started = time.perf_counter()
    manifest = simulate(f"sqlite:///{tmp_path / 'speed.db'}", patients=1_000, seed=3)
    elapsed = time.perf_counter() - started
    rows = sum(manifest["tables"].values())
    with capsys.disabled():
        print(f"\nsimulate 1,000 patients: {rows:,} rows in {elapsed:.2f}s ({rows / elapsed:,.0f} rows/s)")
    assert 60_000 < rows < 200_000


# -- helpers -----------------------------------------------------------------------------------------


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _npi_ok(npi: str) -> bool:
    """The NPI Luhn rule, written independently of the simulator."""
    if not re.fullmatch(r"\d{10}", npi):
        return False
    digits = [int(c) for c in "80840" + npi]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2 == 1:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return total % 10 == 0


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@pytest.mark.slow
def test_ten_thousand_patients_well_under_a_minute(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The brief's figure: 10,000 patients (about 1M legacy rows) into SQLite, measured and printed."""
    started = time.perf_counter()
    manifest = simulate(f"sqlite:///{tmp_path / 'big.db'}", patients=10_000, seed=7)
    elapsed = time.perf_counter() - started
    rows = sum(manifest["tables"].values())
    with capsys.disabled():
        print(f"\nsimulate 10,000 patients: {rows:,} rows in {elapsed:.1f}s ({rows / elapsed:,.0f} rows/s)")
    assert 800_000 < rows < 1_400_000
