"""The remediation's pieces that need no database: the overlay, the ``rows`` scope, the corrections file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from cutover import remediation, remediation_run
from cutover.errors import ConfigError
from cutover.matching import match_patients
from cutover.matching.match import pair_key
from cutover.scope import Scope
from cutover.staging.store import open_store


def _patients() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "pat_id": pa.array([7, 8, 9], pa.int64()),
            "clinic_id": pa.array([1, 1, 2], pa.int64()),
            "dob": pa.array(["1961-02-30", "1970-01-01", "00/00/0000"], pa.string()),
        }
    )


def test_the_overlay_replaces_exactly_the_corrected_values_matched_by_key() -> None:
    over = remediation_run.Overlay(
        "patients",
        {
            "dob": (pa.array(["9", "7", "70"]), pa.array(["1959-12-01", "1961-02-28", "2001-01-01"])),
            "clinic_id": (pa.array(["8"]), pa.array([None], pa.int64())),
        },
    )
    out = remediation_run.apply(_patients(), over)
    assert out.column("dob").to_pylist() == ["1961-02-28", "1970-01-01", "1959-12-01"]
    assert out.column("clinic_id").to_pylist() == [1, None, 2]  # a correction to NULL
    assert out.schema == _patients().schema
    assert remediation_run.apply(_patients(), None).equals(_patients())


def test_a_rows_scope_keeps_named_rows_and_whole_tables_and_survives_the_store(tmp_path: Path) -> None:
    scope = Scope("rows", {"patients": pa.array(["9", "7"])}, label="remediation", whole=("allergies",))
    assert scope.keep("patients", _patients()).column("pat_id").to_pylist() == [7, 9]
    assert scope.keep("cases", _patients()).num_rows == 0  # a table it names nothing of
    assert scope.keep("allergies", _patients()).num_rows == 3
    store = open_store(f"file://{tmp_path}")
    scope.save(store, "runs/r")
    loaded = Scope.load(store, "runs/r")
    assert (loaded.kind, loaded.whole, loaded.counts()) == ("rows", ("allergies",), {"patients": 2})
    assert loaded.keep("patients", _patients()).column("pat_id").to_pylist() == [7, 9]


def test_a_corrections_file_is_read_strictly_and_its_errors_name_no_value(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("legacy_table,legacy_id,column,value\npatients,7,dob,1961-02-28\npatients,8,email,\\N\n")
    assert remediation.read_corrections_csv(good) == [
        ("patients", "7", "dob", "1961-02-28"),
        ("patients", "8", "email", None),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("table,id,column,value\npatients,7,dob,1961-02-28\n")
    with pytest.raises(ConfigError, match="the header must be legacy_table,legacy_id,column,value"):
        remediation.read_corrections_csv(bad)
    short = tmp_path / "short.csv"
    short.write_text("legacy_table,legacy_id,column,value\npatients,7,Smith-1961\n")
    with pytest.raises(ConfigError, match="line 2: expected 4 fields") as error:
        remediation.read_corrections_csv(short)
    assert "Smith" not in str(error.value)
    with pytest.raises(ConfigError, match="not found"):
        remediation.read_corrections_csv(tmp_path / "absent.csv")


def test_a_correction_is_checked_against_the_profile_before_anything_is_written() -> None:
    with pytest.raises(ConfigError, match="unknown legacy table 'patient'"):
        remediation._check("patient", "dob", "1961-02-28")
    with pytest.raises(ConfigError, match="unknown column of legacy table patients 'birth_date'"):
        remediation._check("patients", "birth_date", "1961-02-28")
    with pytest.raises(ConfigError, match="legacy int value; this one is not") as error:
        remediation._check("patients", "clinic_id", "Springfield")
    assert "Springfield" not in str(error.value)
    for not_an_id in ("0x10", "1e3", "9223372036854775808", "7.5"):  # read as the extract reads an id
        with pytest.raises(ConfigError, match="legacy int value"):
            remediation._check("patients", "clinic_id", not_an_id)
    remediation._check("patients", "clinic_id", " 42 ")
    remediation._check("patients", "dob", "1961-02-28")


def test_a_corrections_digest_binds_every_field() -> None:
    key = bytes(32)
    base = remediation.Correction(
        "patients", "7", "dob", "1961-02-28", "steward", "2026-12-01T10:00:00+00:00"
    )
    other_value = remediation.Correction("patients", "7", "dob", "1961-02-27", "steward", base.at)
    other_person = remediation.Correction("patients", "7", "dob", base.value, "intruder", base.at)
    assert len({base.digest(key), other_value.digest(key), other_person.digest(key)}) == 3
    assert "1961" not in base.digest(key)


def _pair(**changes: object) -> pd.DataFrame:
    row = dict(
        family_name="Ng",
        given_name="Anna",
        middle_name=None,
        birth_date=dt.date(1980, 5, 1),
        sex="female",
        ssn=None,
        phone_home=None,
        phone_mobile=None,
        postal_code=None,
        address_line1=None,
        email=None,
        created_at=None,
    )
    return pd.DataFrame([dict(row, legacy_id="10"), dict(row, legacy_id="9", given_name="Ana", **changes)])


def test_a_persons_decision_on_a_review_pair_stands_in_for_the_scores() -> None:
    # same name and birth date, nothing else in common: the matcher leaves it to a person
    alone = match_patients(_pair())
    assert (alone.pairs["decision"].tolist(), len(alone.review)) == (["review"], 1)
    same = match_patients(_pair(), decisions={pair_key("10", "9"): "same"})
    assert same.survivor.to_dict() == {"9": "9", "10": "9"}  # one person: the lower id survives
    assert same.review.empty
    # a pair the scores would merge (a phone in common) that a person says are two people
    merged = match_patients(_pair(phone_home="+16175550134").assign(phone_home="+16175550134"))
    assert merged.pairs["decision"].tolist() == ["merge"]
    apart = match_patients(
        _pair(phone_home="+16175550134").assign(phone_home="+16175550134"),
        decisions={("9", "10"): "different"},
    )
    assert apart.survivor.to_dict() == {"10": "10", "9": "9"}
    assert apart.pairs["decision"].tolist() == ["distinct"]
    # a decision on a pair the matcher never compared changes nothing
    other = match_patients(_pair(), decisions={("9", "11"): "same"})
    assert other.pairs["decision"].tolist() == ["review"]
