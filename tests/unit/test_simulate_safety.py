"""The simulator's patient-safety tables (allergies, medications, precautions): shape, references,
planted defects true of the data, and the tables that existed before them left as they were."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from datetime import date, datetime
from typing import Any

import pytest

from cutover.legacy.schema import LEGACY_TABLES
from cutover.simulate import RATES
from cutover.simulate import vocab as V
from cutover.simulate.practice import Legacy, generate

SAFETY = ("allergies", "medications", "precautions")
NEW_KINDS = ("allergy_no_known", "precaution_in_note", "safety_duplicate", "safety_text_unmapped")
PRE_EXISTING = (
    "clinics",
    "providers",
    "ref_physicians",
    "payers",
    "patients",
    "coverage",
    "referrals",
    "cases",
    "authorizations",
    "plans_of_care",
    "appointments",
    "visits",
    "procedures",
    "diagnoses",
    "outcomes",
    "charges",
    "payments",
    "documents",
)
PRE_EXISTING_DIGEST_300_7 = "90aa56b2c27c0181cf097b8f532e60d04149d1602e1be24766c607f244ef935f"
"""Pins the tables that existed before the safety tables: SHA-256 of generate(patients=300, seed=7)'s
rows of PRE_EXISTING, measured before build_safety was added. The safety tables draw from their own
generator, so adding them must not move a byte of these; change this only on purpose."""

CANONICAL = {s: name for name, spellings in V.ALLERGENS.items() for s in spellings} | {
    s: "no_known" for s in V.NO_KNOWN_ALLERGIES
}
CODE_OF_TEXT = {t: code for code, texts in V.PRECAUTIONS.items() for t in texts}
_DATE_SPELLINGS = ("%Y-%m-%d", "%m/%d/%Y", "%d-%b-%Y", "%Y%m%d", "%Y-%m-%d %H:%M:%S")


def _day(text: str | None) -> date | None:
    """The date of any spelling the simulator writes for a safety date (never an impossible one)."""
    if text is None:
        return None
    for spelling in _DATE_SPELLINGS:
        try:
            return datetime.strptime(text, spelling).date()
        except ValueError:
            continue
    raise AssertionError(f"unparseable date {text!r}")


def _rows(legacy: Legacy, table: str) -> dict[int, dict[str, Any]]:
    names = LEGACY_TABLES[table].column_names
    key = LEGACY_TABLES[table].key
    return {row[names.index(key)]: dict(zip(names, row, strict=True)) for row in legacy.rows(table)}


def _defects(legacy: Legacy, table: str) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in legacy.defects:
        if d["table"] == table:
            out[d["legacy_id"]].append(d)
    return out


@pytest.fixture(scope="module", params=[7, 11])
def legacy(request: pytest.FixtureRequest) -> Legacy:
    return generate(patients=300, seed=request.param)


def test_columns_are_the_schema(legacy: Legacy) -> None:
    for table in SAFETY:
        columns = legacy.tables[table]
        assert tuple(columns) == LEGACY_TABLES[table].column_names
        assert len({len(values) for values in columns.values()}) == 1
        assert legacy.row_count(table) > 0
        ids = columns[LEGACY_TABLES[table].key].tolist()
        assert ids == list(range(1, len(ids) + 1))


def test_every_new_kind_is_planted_and_takes_its_share(legacy: Legacy) -> None:
    kinds = Counter(d["kind"] for d in legacy.defects if d["table"] in SAFETY)
    assert all(kinds[k] >= 1 for k in NEW_KINDS), kinds
    assert kinds["date_mixed_format"] >= 3
    assert not {d["kind"] for d in legacy.defects if d["table"] in SAFETY} - {*NEW_KINDS, "date_mixed_format"}
    for inj in legacy.injections:
        if inj["table"] in SAFETY:
            expected = max(1, round(RATES[inj["kind"]] * inj["eligible"])) if inj["eligible"] else 0
            assert inj["selected"] == expected, inj
    dup_tables = {d["table"] for d in legacy.defects if d["kind"] == "safety_duplicate"}
    assert dup_tables == set(SAFETY)
    unmapped = {(d["table"], d["field"]) for d in legacy.defects if d["kind"] == "safety_text_unmapped"}
    assert unmapped == {
        ("allergies", "allergen"),
        ("allergies", "severity"),
        ("allergies", "status"),
        ("medications", "med_status"),
        ("precautions", "prec_text"),
    }


def test_references_are_whole(legacy: Legacy) -> None:
    """Every record's case exists and is of its patient; a precaution's visit is a surviving,
    non-canary visit of its own case; no orphan is recorded on these tables."""
    cases = _rows(legacy, "cases")
    visits = _rows(legacy, "visits")
    canary_visits = {c["legacy_id"] for c in legacy.canary_cells if c["table"] == "visits"}
    impossible = {
        d["legacy_id"] for d in legacy.defects if d["kind"] == "date_impossible" and d["table"] == "visits"
    }
    for table in SAFETY:
        for row in _rows(legacy, table).values():
            assert row["pat_id"] == cases[row["case_id"]]["pat_id"]
    for row in _rows(legacy, "precautions").values():
        if row["visit_id"] is not None:
            assert visits[row["visit_id"]]["case_id"] == row["case_id"]
            assert row["visit_id"] not in canary_visits
            assert row["visit_id"] not in impossible, "a precaution on a visit the pipeline rejects"
    assert not [d for d in legacy.defects if d["kind"] == "orphan" and d["table"] in SAFETY]
    rejected = {d["legacy_id"] for d in legacy.defects if d["kind"] == "discharge_before_start"}
    for table in SAFETY:
        assert not {r["case_id"] for r in _rows(legacy, table).values()} & rejected


def test_one_safety_defect_per_row(legacy: Legacy) -> None:
    for table in SAFETY:
        for legacy_id, found in _defects(legacy, table).items():
            new = [d["kind"] for d in found if d["kind"] in NEW_KINDS]
            assert len(new) <= 1, (table, legacy_id, new)


def test_values_come_from_the_vocabulary(legacy: Legacy) -> None:
    """Recorded cells hold the unmappable values; every other cell a spelling the mapping knows."""
    unmapped = {
        (d["table"], d["legacy_id"], d["field"])
        for d in legacy.defects
        if d["kind"] == "safety_text_unmapped"
    }
    in_note = {d["legacy_id"] for d in legacy.defects if d["kind"] == "precaution_in_note"}

    def check(table: str, column: str, clean: tuple[Any, ...], bad: tuple[Any, ...]) -> None:
        for legacy_id, row in _rows(legacy, table).items():
            allowed = bad if (table, legacy_id, column) in unmapped else clean
            assert row[column] in allowed, (table, legacy_id, column)

    check("allergies", "allergen", (*CANONICAL,), V.ALLERGENS_UNCODED)
    check("allergies", "reaction", V.REACTIONS, V.REACTIONS)
    check("allergies", "severity", V.SEVERITIES, V.SEVERITIES_UNMAPPED)
    check("allergies", "status", V.ALLERGY_STATUSES, V.ALLERGY_STATUSES_UNMAPPED)
    check("medications", "med_status", V.MED_STATUSES, V.MED_STATUSES_UNMAPPED)
    check("medications", "dose", V.DOSES, ())
    drugs = {d.lower() for d in V.DRUGS}
    assert all(r["drug"].lower() in drugs for r in _rows(legacy, "medications").values())
    canary = {c["legacy_id"] for c in legacy.canary_cells if c["table"] == "precautions"}
    for legacy_id, row in _rows(legacy, "precautions").items():
        if (("precautions", legacy_id, "prec_text") in unmapped) or legacy_id in in_note:
            assert row["prec_code"] is None
        if ("precautions", legacy_id, "prec_text") in unmapped:
            assert row["prec_text"] in V.PRECAUTION_TEXTS_UNCLASSIFIED
        elif legacy_id not in in_note:
            text = row["prec_text"].split("; pt ")[0] if legacy_id in canary else row["prec_text"]
            assert CODE_OF_TEXT[text] == row["prec_code"], legacy_id
    # NKDA records: reaction and severity empty, active; all of them recorded (a copy as a duplicate).
    nkda = {k for k, r in _rows(legacy, "allergies").items() if CANONICAL.get(r["allergen"]) == "no_known"}
    recorded = {
        d["legacy_id"]
        for d in legacy.defects
        if d["table"] == "allergies" and d["kind"] in ("allergy_no_known", "safety_duplicate")
    }
    assert nkda <= recorded
    for legacy_id in nkda:
        row = _rows(legacy, "allergies")[legacy_id]
        assert (row["reaction"], row["severity"], row["status"]) == (None, None, "active")


def test_dates_lie_in_the_case(legacy: Legacy) -> None:
    cases = _rows(legacy, "cases")
    as_of = date(2025, 6, 30)
    for table, start_col, end_col in (
        ("allergies", "noted", None),
        ("medications", "start_date", "stop_date"),
        ("precautions", "start_date", "end_date"),
    ):
        copies = {
            d["legacy_id"] for d in legacy.defects if d["kind"] == "safety_duplicate" and d["table"] == table
        }
        for legacy_id, row in _rows(legacy, table).items():
            start = _day(row[start_col])
            assert start is not None
            case_start = _day(cases[row["case_id"]]["start_date"])
            assert case_start is not None
            if legacy_id not in copies:  # a copy keeps the dates of its original, on an earlier case
                assert case_start <= start <= as_of, (table, legacy_id)
            if end_col is not None and row[end_col] is not None:
                end = date.fromisoformat(row[end_col])  # stop and end dates stay clean ISO
                assert start < end <= as_of, (table, legacy_id)


def test_duplicates_copy_an_earlier_record_of_the_patient(legacy: Legacy) -> None:
    cases = _rows(legacy, "cases")
    visits = _rows(legacy, "visits")
    for table in SAFETY:
        rows = _rows(legacy, table)
        defects = _defects(legacy, table)
        for d in (d for d in legacy.defects if d["kind"] == "safety_duplicate" and d["table"] == table):
            copy, original = rows[d["legacy_id"]], rows[d["of"]]
            assert d["legacy_id"] > d["of"]
            assert copy["pat_id"] == original["pat_id"]
            assert copy["case_id"] > original["case_id"]
            assert _day(cases[copy["case_id"]]["start_date"]) >= _day(
                cases[original["case_id"]]["start_date"]
            )
            assert {x["kind"] for x in defects[d["of"]]} & set(NEW_KINDS) <= {"allergy_no_known"}
            if table == "allergies":
                assert CANONICAL[copy["allergen"]] == CANONICAL[original["allergen"]]
                same = ("reaction", "severity", "status")
                assert _day(copy["noted"]) == _day(original["noted"])
            elif table == "medications":
                assert copy["drug"].lower() == original["drug"].lower()
                same = ("dose", "med_status", "stop_date")
                assert _day(copy["start_date"]) == _day(original["start_date"])
            else:
                same = ("prec_code", "prec_text", "end_date")
                assert copy["prec_code"] is not None
                assert _day(copy["start_date"]) == _day(original["start_date"])
                if copy["visit_id"] is not None:
                    assert visits[copy["visit_id"]]["case_id"] == copy["case_id"]
            assert all(copy[c] == original[c] for c in same), (table, d)


def test_precautions_in_notes_name_their_note(legacy: Legacy) -> None:
    rows = _rows(legacy, "precautions")
    visits = _rows(legacy, "visits")
    found = [d for d in legacy.defects if d["kind"] == "precaution_in_note"]
    for d in found:
        row = rows[d["legacy_id"]]
        assert row["prec_code"] is None
        assert row["visit_id"] is not None
        assert visits[row["visit_id"]]["case_id"] == row["case_id"]
        assert any(t in row["prec_text"] for t in V.PRECAUTIONS[d["code"]])
        assert row["prec_text"].startswith("Per MD: ") or row["prec_text"].endswith(". Cont POC.")


def test_the_precaution_canary_is_in_one_clean_precaution(legacy: Legacy) -> None:
    cells = [c for c in legacy.canary_cells if c["table"] == "precautions"]
    assert len(cells) == 1
    cell = cells[0]
    assert cell == {
        "kind": "note",
        "table": "precautions",
        "legacy_id": cell["legacy_id"],
        "field": "prec_text",
    }
    phrases = [p for p in V.CANARY_PHRASES if p in legacy.canaries]
    assert len(phrases) == 3
    texts = legacy.tables["precautions"]["prec_text"].tolist()
    hits = [(i + 1, p) for i, t in enumerate(texts) for p in phrases if p in t]
    assert len(hits) == 1
    assert hits[0][0] == cell["legacy_id"]
    assert not _defects(legacy, "precautions").get(cell["legacy_id"])
    assert cell["legacy_id"] not in {d["of"] for d in legacy.defects if d["kind"] == "safety_duplicate"}
    visit_notes = " ".join(str(v) for v in legacy.tables["visits"]["subjective"].tolist())
    assert hits[0][1] not in visit_notes


def test_pre_existing_tables_are_as_they_were() -> None:
    legacy = generate(patients=300, seed=7)
    digest = hashlib.sha256()
    for name in PRE_EXISTING:
        digest.update(name.encode())
        for row in legacy.rows(name):
            digest.update(repr(row).encode())
    assert digest.hexdigest() == PRE_EXISTING_DIGEST_300_7
