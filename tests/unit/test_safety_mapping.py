"""Patient-safety records through the simulator profile's mapping: coded, carried, never rejected alone."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from cutover.legacy.profile import load_document, mapping_specs
from cutover.legacy.profile_check import check
from cutover.mapping.dedupe import apply_merges, plan_record_merges
from cutover.mapping.engine import map_batch
from cutover.mapping.safety import PRECAUTION_KINDS, read_allergen, read_precaution
from cutover.target.columns import target_columns
from cutover.target.constraints import MIGRATIONS

AS_OF = date(2026, 11, 30)


def _batch(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    from cutover.legacy.schema import LEGACY_TABLES

    columns = LEGACY_TABLES[table].columns
    return pa.table(
        {
            name: pa.array([r.get(name) for r in rows], pa.int64() if kind == "int" else pa.string())
            for name, kind in columns
        }
    )


def _mapped(table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = map_batch(mapping_specs()[table], _batch(table, rows), as_of=AS_OF)
    frame = frame.replace_schema_metadata(None).to_pandas()
    return frame.set_index("legacy_id")


@pytest.mark.parametrize(
    "text",
    [
        "NKDA",
        "nkda",
        "N.K.D.A.",
        "NKA",
        "No known allergies",
        "no known drug allergies",
        "none known",
        "NKDA!!",
        "none!",
    ],
)
def test_every_spelling_of_no_known_allergies_is_an_explicit_record(text: str) -> None:
    frame = _mapped("allergies", [{"allergy_id": 1, "pat_id": 7, "allergen": text, "status": "active"}])
    row = frame.loc["1"]
    assert bool(row["no_known_allergies"])
    assert pd.isna(row["substance"])
    assert pd.isna(row["reason"])
    assert pd.isna(row["flags"])


def test_allergens_are_coded_or_carried_as_written_and_flagged_never_rejected() -> None:
    rows = [
        {"allergy_id": 1, "pat_id": 7, "allergen": "PCN!!", "severity": "MOD", "status": "A"},
        {"allergy_id": 2, "pat_id": 7, "allergen": "latex!!", "severity": "SEVERE"},
        {"allergy_id": 3, "pat_id": 7, "allergen": "kiwi fruit", "severity": "see chart", "status": "??"},
        {"allergy_id": 4, "pat_id": 7, "allergen": "PCN and latex", "noted": "31/31/2020"},
        {"allergy_id": 5, "pat_id": 7, "allergen": None},
    ]
    frame = _mapped("allergies", rows)
    assert frame["reason"].isna().all()  # not one rejected
    assert frame.loc["1", "substance"] == "penicillin"
    assert frame.loc["1", "severity"] == "moderate"
    assert frame.loc["1", "status"] == "active"
    assert bool(frame.loc["1", "substance_coded"])
    assert frame.loc["2", "substance"] == "latex"
    assert frame.loc["2", "severity"] == "severe"
    # what the rules cannot code: kept as written, flagged
    assert frame.loc["3", "substance"] == "kiwi fruit"
    assert not frame.loc["3", "substance_coded"]
    assert pd.isna(frame.loc["3", "severity"])
    assert pd.isna(frame.loc["3", "status"])
    assert frame.loc["3", "unmapped_text"] == "severity: see chart; status: ??"
    assert "safety_text_unmapped" in frame.loc["3", "flags"]
    assert frame.loc["4", "substance"] == "PCN and latex"  # two allergens in one record: a person splits it
    assert "recorded_on" in frame.loc["4", "flags"] or "date" in frame.loc["4", "flags"]
    assert frame.loc["5", "flags"] == "allergen_missing"
    assert [list(v) for v in frame["source_records"]] == [["1"], ["2"], ["3"], ["4"], ["5"]]


def test_a_precautions_kind_comes_from_its_code_else_its_text_else_it_is_other_and_flagged() -> None:
    rows = [
        {"prec_id": 1, "pat_id": 7, "prec_code": "WB", "prec_text": "WBAT R LE"},
        {
            "prec_id": 2,
            "pat_id": 7,
            "prec_text": "2024-03-01 pt seen, reports Pacemaker - NO E-STIM. Cont POC.",
        },
        {"prec_id": 3, "pat_id": 7, "prec_text": "see MD note"},
        {
            "prec_id": 4,
            "pat_id": 7,
            "prec_code": "XX",
            "prec_text": "Per MD: No resisted shoulder flexion x 6 weeks",
        },
        {
            "prec_id": 5,
            "pat_id": 7,
            "prec_code": "FALL",
            "prec_text": "x",
            "start_date": "2024-05-01",
            "end_date": "2024-04-01",
        },
    ]
    frame = _mapped("precautions", rows)
    assert frame["reason"].isna().all()
    assert frame["kind"].tolist() == [
        "weight_bearing",
        "no_electrical_stimulation",
        "other",
        "no_resisted_exercise",
        "fall_risk",
    ]
    assert frame["kind_from_text"].tolist() == [False, True, False, True, False]
    assert frame.loc["3", "flags"] == "safety_text_unmapped"
    assert frame.loc["4", "unmapped_text"] == "prec_code: XX"
    assert "precaution_dates_inverted" in frame.loc["5", "flags"]


def test_an_unresolved_episode_or_note_never_rejects_a_safety_record() -> None:
    spec = mapping_specs()["precautions"]
    refs = {r.column: r for r in spec.refs}
    assert refs["patient_id"].required
    assert not refs["episode_id"].required
    assert not refs["episode_id"].strict
    assert not refs["source_visit_id"].required
    assert not refs["source_visit_id"].strict


def test_the_profile_check_refuses_a_safety_field_that_could_reject() -> None:
    document = load_document("simulator")
    fields = document.data["tables"]["allergies"]["map"]["fields"]
    fields["recorded_on"] = {"from": "noted", "rule": "date", "with": {"role": "event"}}
    fields["reaction"]["required"] = True
    document.data["tables"]["medications"]["map"]["refs"]["episode_id"]["required"] = True
    problems = check(document)
    assert sum("never rejected on its own" in m for m in problems) == 3, problems


def test_one_record_entered_in_two_episodes_merges_into_the_first_with_its_sources() -> None:
    spec = mapping_specs()["allergies"]
    rows = [
        {
            "allergy_id": 30,
            "pat_id": 7,
            "case_id": 2,
            "allergen": "Penicillin",
            "severity": "mild",
            "status": "active",
        },
        {"allergy_id": 4, "pat_id": 7, "case_id": 1, "allergen": "PCN", "severity": "Mild", "status": "A"},
        {
            "allergy_id": 12,
            "pat_id": 8,
            "case_id": 3,
            "allergen": "PCN",
            "severity": "mild",
            "status": "active",
        },
        {
            "allergy_id": 13,
            "pat_id": 7,
            "case_id": 2,
            "allergen": "PCN",
            "severity": "severe",
            "status": "active",
        },
        {"allergy_id": 9, "pat_id": 7, "case_id": 2, "allergen": "NKDA"},
        {"allergy_id": 40, "pat_id": 7, "case_id": 5, "allergen": "nkda"},
    ]
    mapped = map_batch(spec, _batch("allergies", rows), as_of=AS_OF)
    plan = plan_record_merges(spec, lambda: [mapped])
    out = apply_merges(spec, mapped, plan).replace_schema_metadata(None).to_pandas().set_index("legacy_id")
    # same patient, same allergy: 30 merges into 4 (the lower id); another patient's or another
    # severity's record stays its own
    assert out["merge_into"].dropna().to_dict() == {"30": "4", "40": "9"}
    assert list(out.loc["4", "source_records"]) == ["4", "30"]
    assert list(out.loc["9", "source_records"]) == ["9", "40"]
    assert list(out.loc["12", "source_records"]) == ["12"]
    assert list(out.loc["13", "source_records"]) == ["13"]
    assert plan.summary["merged"] == 2


def test_the_precaution_kinds_are_those_of_the_code_table() -> None:
    sql = (MIGRATIONS / "V009__patient_safety.sql").read_text()
    seeded = set(re.findall(r"\('(\w+)', '", sql.split("INSERT INTO pt.precaution_kind")[1].split(";")[0]))
    assert seeded == {*PRECAUTION_KINDS, "other"}
    assert set(target_columns()["precaution"]) >= {"kind", "source_visit_id", "source_records"}


def test_readers_on_hostile_text() -> None:
    for text in ["", "   ", "\x00", "NKDA" * 1000, "٣", "'; DROP TABLE pt.allergy; --", "\u2028"]:
        assert read_allergen(text).no_known in (True, False)
        assert read_precaution(text) in (None, *PRECAUTION_KINDS)
    assert read_allergen("latex, PCN").coded is False


def test_a_hostile_id_in_an_episode_or_note_reference_keeps_the_record_flagged() -> None:
    from cutover.legacy.source import INVALID_IDS

    rows = [
        {"prec_id": 1, "pat_id": 7, "prec_code": "FALL"},  # case_id read as NULL: it held "1e20"
        {"prec_id": 2, "pat_id": 7, "prec_code": "FALL"},  # case_id and visit_id both held text
        {"prec_id": 3, "prec_code": "FALL"},  # the patient's id held text: whose record is it?
    ]
    batch = _batch("precautions", rows).append_column(
        INVALID_IDS, pa.array(["case_id", "case_id,visit_id", "pat_id"])
    )
    frame = map_batch(mapping_specs()["precautions"], batch, as_of=AS_OF)
    frame = frame.replace_schema_metadata(None).to_pandas().set_index("legacy_id")
    assert frame.loc["1", "flags"] == "id_invalid"
    assert pd.isna(frame.loc["1", "reason"])
    assert frame.loc["2", "flags"] == "id_invalid"
    assert pd.isna(frame.loc["2", "reason"])
    assert frame.loc["3", "reason"] == "id_invalid"  # only the patient's reference (or the key) rejects


def test_elsewhere_a_hostile_id_in_an_optional_reference_still_rejects() -> None:
    from cutover.legacy.source import INVALID_IDS

    batch = _batch("appointments", [{"appt_id": 1, "pat_id": 7, "appt_time": "2024-01-02 09:00"}])
    batch = batch.append_column(INVALID_IDS, pa.array(["case_id"]))
    frame = (
        map_batch(mapping_specs()["appointments"], batch, as_of=AS_OF)
        .replace_schema_metadata(None)
        .to_pandas()
    )
    assert frame["reason"].tolist() == ["id_invalid"]
