"""Duplicate-patient matching: golden cases, the cluster guard, survivorship, determinism, no PHI out."""

from __future__ import annotations

import doctest
import importlib
import logging
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cutover.matching import (
    LEVEL_COLUMNS,
    LEVELS,
    PAIR_COLUMNS,
    REQUIRED_COLUMNS,
    MatchConfig,
    MatchInputError,
    completeness,
    match_patients,
    normalised_patients,
    survive_values,
)
from cutover.matching.blocking import candidate_pairs, pairs_within_blocks
from cutover.matching.prepare import natural_order, prepare, soundex
from cutover.simulate import AS_OF, simulate

BASE: dict[str, Any] = {
    "family_name": "Kowalski",
    "given_name": "Margaret",
    "middle_name": "Ann",
    "name_suffix": None,
    "birth_date": date(1961, 4, 9),
    "sex": "female",
    "ssn": "214357689",
    "phone_home": "+16175550134",
    "phone_mobile": "+16175550199",
    "postal_code": "02134",
    "address_line1": "14 Linden Street",
    "email": "mkowalski@mail.example",
    "home_clinic_legacy_id": "1",
    "created_at": datetime(2020, 1, 6, 9, 30),
}


def frame(*rows: dict[str, Any]) -> pd.DataFrame:
    """Patients from partial rows over :data:`BASE`; ids 1, 2, … in order."""
    return pd.DataFrame([{**BASE, "legacy_id": str(i + 1), **row} for i, row in enumerate(rows)])


def pair_row(result: Any, left: str = "1", right: str = "2") -> pd.Series:
    pairs = result.pairs
    hit = pairs[(pairs["left_id"] == left) & (pairs["right_id"] == right)]
    assert len(hit) == 1, f"pair {left}-{right} was not a candidate"
    return hit.iloc[0]


# Title, the second record's differences from the first (or both records'), the expected decision.
GOLDEN: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("typo in the given name", {}, {"given_name": "Margeret", "phone_home": None}, "merge"),
    (
        "typo in the family name, another phone format normalised alike",
        {},
        {"family_name": "Kowalksi"},
        "merge",
    ),
    ("middle name missing on one side", {}, {"middle_name": None, "ssn": None}, "merge"),
    ("middle initial against the full middle name", {}, {"middle_name": "A", "email": None}, "merge"),
    (
        "day and month swapped in the birth date, same phone",
        {},
        {"birth_date": date(1961, 9, 4), "ssn": None, "email": None, "address_line1": "2 Elm St"},
        "merge",
    ),
    (
        "placeholder SSN on one side is ignored",
        {"ssn": "999999999"},
        {"given_name": "Margret", "email": None},
        "merge",
    ),
    (
        "twins: same birth date, address and phone, different given names",
        {"ssn": None, "email": None},
        {"given_name": "Elizabeth", "middle_name": "Rose", "ssn": None, "email": None},
        "distinct",
    ),
    (
        "father and son, Sr and Jr: same name, address and phone, birth dates 30 years apart",
        {
            "sex": "male",
            "given_name": "Robert",
            "middle_name": None,
            "name_suffix": "Sr",
            "ssn": None,
            "email": None,
            "birth_date": date(1955, 3, 12),
        },
        {
            "sex": "male",
            "given_name": "Robert",
            "middle_name": None,
            "name_suffix": "Jr",
            "ssn": None,
            "email": None,
            "birth_date": date(1985, 3, 12),
        },
        "distinct",
    ),
    (
        "father and son without a recorded suffix: birth dates one digit apart but 30 years",
        {
            "sex": "male",
            "given_name": "Robert",
            "middle_name": None,
            "ssn": None,
            "email": None,
            "birth_date": date(1955, 3, 12),
        },
        {
            "sex": "male",
            "given_name": "Robert",
            "middle_name": None,
            "ssn": None,
            "email": None,
            "birth_date": date(1985, 3, 12),
        },
        "distinct",
    ),
    (
        "family and given name swapped, everything else equal",
        {},
        {"family_name": "Margaret", "given_name": "Kowalski"},
        "merge",
    ),
    (
        "names swapped with a typo in one of them",
        {"ssn": None},
        {"family_name": "Margeret", "given_name": "Kowalski", "ssn": None},
        "merge",
    ),
    (
        "names swapped, no SSN or e-mail: the phone and address corroborate",
        {"ssn": None, "email": None},
        {"family_name": "Margaret", "given_name": "Kowalski", "ssn": None, "email": None},
        "merge",
    ),
    (
        "names swapped and nothing but birth date and sex in common: a human decides",
        {"ssn": None, "email": None, "phone_home": None, "phone_mobile": None},
        {
            "family_name": "Margaret",
            "given_name": "Kowalski",
            "ssn": None,
            "email": None,
            "phone_home": None,
            "phone_mobile": None,
            "address_line1": "900 Lake Shore Dr",
            "postal_code": "60611",
        },
        "review",
    ),
    (
        "Jr and Sr, everything else equal (one birth date typed for both): never merged",
        {"sex": "male", "given_name": "Robert", "name_suffix": "Sr", "ssn": None, "email": None},
        {"sex": "male", "given_name": "Robert", "name_suffix": "Jr", "ssn": None, "email": None},
        "distinct",
    ),
    (
        "II and III with the same SSN: a conflict a human resolves, never a merge",
        {"sex": "male", "given_name": "Robert", "name_suffix": "II"},
        {"sex": "male", "given_name": "Robert", "name_suffix": "III"},
        "review",
    ),
    (
        "a suffix on one side only is no conflict (clerks leave it out)",
        {"sex": "male", "given_name": "Robert", "name_suffix": "Jr"},
        {"sex": "male", "given_name": "Robert", "name_suffix": None},
        "merge",
    ),
    ("conflicting real SSNs, everything else equal", {}, {"ssn": "521447803"}, "distinct"),
    ("SSN one digit off, everything else equal: a human decides", {}, {"ssn": "214357680"}, "review"),
    ("female against male, no SSN", {"ssn": None}, {"sex": "male"}, "distinct"),
    ("female against male, same SSN: a miscoded sex is a human's call", {}, {"sex": "male"}, "review"),
    (
        "same name and birth date, every contact differs: ambiguous",
        {"ssn": None, "email": None, "middle_name": None, "birth_date": date(1961, 4, 19)},
        {
            "ssn": None,
            "email": None,
            "middle_name": None,
            "phone_home": "+13125550111",
            "phone_mobile": None,
            "address_line1": "900 Lake Shore Dr",
            "postal_code": "60611",
        },
        "review",
    ),
]


@pytest.mark.parametrize(("title", "first", "second", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_pairs(title: str, first: dict[str, Any], second: dict[str, Any], expected: str) -> None:
    result = match_patients(frame(first, {**first, **second}))
    row = pair_row(result)
    assert row["decision"] == expected, (
        f"{title}: score {row['score']}, levels {row[list(LEVEL_COLUMNS)].tolist()}"
    )
    merged = result.survivor["1"] == result.survivor["2"]
    assert merged == (expected == "merge")
    assert result.clusters == (1 if expected == "merge" else 0)
    assert (len(result.review) == 1) == (expected == "review")


def test_three_swapped_name_pairs_are_each_merged_or_reviewed() -> None:
    """The issue's case: three patients entered twice with family and given name swapped, otherwise
    identical (with and without SSN and contacts); none may stay two patients without a review entry."""
    people = []
    for i, (family, given, extra) in enumerate(
        [
            ("Kowalski", "Margaret", {}),
            ("Thomas", "James", {"ssn": None, "sex": "male"}),
            ("Lee", "Jordan", {"ssn": None, "email": None, "phone_mobile": None, "sex": "unknown"}),
        ]
    ):
        row = {
            **BASE,
            "birth_date": date(1950 + i, 2, 3),
            "phone_home": f"+1617555020{i}",
            "email": f"p{i}@mail.example",
            "address_line1": f"{i + 1} Elm St",
            **extra,
        }
        if row.get("ssn"):
            row["ssn"] = f"21435768{i}"
        people += [
            {**row, "family_name": family, "given_name": given},
            {**row, "family_name": given, "given_name": family},
        ]
    patients = pd.DataFrame([{**p, "legacy_id": str(i + 1)} for i, p in enumerate(people)])
    result = match_patients(patients)
    reviewed = set(zip(result.review["left_id"], result.review["right_id"], strict=True))
    for left, right in (("1", "2"), ("3", "4"), ("5", "6")):
        row = pair_row(result, left, right)
        assert (row["family_name_level"], row["given_name_level"]) == ("swapped", "swapped")
        assert not row["veto"]
        assert result.survivor[left] == result.survivor[right] or (left, right) in reviewed
    assert result.merged == 3


def test_placeholder_ssns_do_not_link_strangers() -> None:
    # Two different people who both carry the 999-99-9999 placeholder: no SSN evidence either way.
    result = match_patients(
        frame(
            {"ssn": "999999999", "phone_home": None, "phone_mobile": None, "email": None},
            {
                "ssn": "999-99-9999",
                "family_name": "Okafor",
                "given_name": "Chidi",
                "sex": "male",
                "birth_date": date(1990, 7, 1),
                "phone_home": None,
                "phone_mobile": None,
                "email": None,
            },
        )
    )
    assert result.survivor.tolist() == ["1", "2"]
    assert all(result.pairs["ssn_level"] == "missing")


def test_ssn_agreement_outweighs_a_name_typo_and_moved_house() -> None:
    result = match_patients(
        frame(
            {},
            {
                "given_name": "Margarat",
                "address_line1": "3 Oak Rd",
                "postal_code": "02139",
                "phone_home": None,
                "phone_mobile": None,
                "email": None,
            },
        )
    )
    row = pair_row(result)
    assert (row["ssn_level"], row["decision"]) == ("agree", "merge")


def test_a_merge_needs_a_contact_in_common() -> None:
    # Same name, birth date and sex, nothing else shared: strangers score this high too.
    alone = frame(
        {"ssn": None, "email": None, "phone_mobile": None},
        {
            "ssn": None,
            "email": None,
            "phone_mobile": None,
            "phone_home": "+13125550111",
            "address_line1": "900 Lake Shore Dr",
            "postal_code": "60611",
        },
    )
    row = pair_row(match_patients(alone))
    assert (row["decision"], row["reason"]) == ("review", "uncorroborated")
    assert row["score"] >= MatchConfig().merge_threshold
    assert (
        pair_row(match_patients(alone, config=MatchConfig(require_corroboration=False)))["decision"]
        == "merge"
    )
    # The same ZIP is enough.
    moved = alone.assign(postal_code="02134")
    assert pair_row(match_patients(moved))["decision"] == "merge"


def test_chain_across_a_conflict_is_refused() -> None:
    # A~B and B~C each look like one person; A and C hold different real SSNs, so A, B, C are not one.
    result = match_patients(frame({"ssn": "214357689"}, {"ssn": None}, {"ssn": "521447803"}))
    assert result.survivor["1"] != result.survivor["3"]
    assert pair_row(result, "1", "3")["decision"] == "distinct"
    guarded = result.review[result.review["reason"] == "cluster_guard"]
    assert len(guarded) == 1
    assert result.clusters == 1
    assert result.survivor.nunique() == 2


def test_chain_without_conflict_joins_transitively() -> None:
    result = match_patients(
        frame({}, {"given_name": "Margeret"}, {"given_name": "Margeret", "family_name": "Kowalsky"})
    )
    assert result.survivor.nunique() == 1
    assert result.clusters == 1


def test_survivor_most_complete_then_earliest_then_lowest_id() -> None:
    # Record 2 is the most complete (the others lack e-mail): it survives though created later.
    result = match_patients(
        frame(
            {"email": None},
            {"created_at": datetime(2022, 5, 1)},
            {"email": None, "created_at": datetime(2019, 1, 1)},
        )
    )
    assert result.survivor.tolist() == ["2", "2", "2"]
    # Equal completeness: the earliest created survives.
    result = match_patients(frame({}, {"created_at": datetime(2018, 2, 2)}))
    assert result.survivor.tolist() == ["2", "2"]
    # Equal completeness and creation: the lowest id in natural order ("9" before "10").
    df = frame({}, {}).assign(legacy_id=["10", "9"])
    assert match_patients(df).survivor.to_dict() == {"9": "9", "10": "9"}


def test_survive_values_rules() -> None:
    df = frame(
        {"email": None, "phone_mobile": None, "sex": "unknown", "created_at": datetime(2021, 3, 1)},
        {"email": "old@mail.example", "phone_mobile": "+16175550100", "created_at": datetime(2019, 3, 1)},
        {
            "email": "new@mail.example",
            "phone_mobile": None,
            "ssn": "521447803",
            "sex": "female",
            "created_at": datetime(2020, 3, 1),
        },
        {"legacy_id": "4", "family_name": "Solo", "given_name": "Han", "created_at": pd.NaT},
    )
    survivor = pd.Series({"1": "1", "2": "1", "3": "1", "4": "4"})
    out = survive_values(df, survivor)
    assert out.index.tolist() == ["1", "4"]
    assert list(out.columns) == [c for c in df.columns if c != "legacy_id"]
    first = out.loc["1"]
    assert first["family_name"] == "Kowalski"  # the survivor's own value
    assert first["email"] == "new@mail.example"  # survivor has none: the most recently created member's
    assert first["phone_mobile"] == "+16175550100"  # the only member that has one
    assert first["sex"] == "female"  # unknown counts as missing
    assert pd.isna(first["ssn"])  # two different SSNs in the cluster: none survives
    assert first["created_at"] == datetime(2019, 3, 1)  # the first registration
    assert out.loc["4", "family_name"] == "Solo"


def test_contract_errors_name_counts_not_values() -> None:
    with pytest.raises(MatchInputError, match=r"missing columns \['email'\]"):
        match_patients(frame({}).drop(columns=["email"]))
    with pytest.raises(MatchInputError, match="1 repeated legacy ids") as info:
        match_patients(frame({}, {}).assign(legacy_id=["7", "7"]))
    assert "Kowalski" not in str(info.value)


def test_config_validation_and_weights() -> None:
    with pytest.raises(ValueError, match="review_threshold"):
        MatchConfig(merge_threshold=5, review_threshold=6)
    with pytest.raises(ValueError, match="blocking"):
        MatchConfig(blocking=())
    cfg = MatchConfig()
    for comparison in LEVELS:
        weights = cfg.weights(comparison)
        assert weights[-1] == 0.0  # missing: no evidence
        assert weights[0] > 0 > min(weights)  # the best level is evidence for, some level against
    stricter = match_patients(
        frame({}, {"given_name": "Margeret"}), config=MatchConfig(merge_threshold=200, review_threshold=100)
    )
    assert pair_row(stricter)["decision"] == "distinct"


def test_helpers() -> None:
    assert [soundex(n) for n in ("robert", "rupert", "pfister", "honeyman")] == [
        "R163",
        "R163",
        "P236",
        "H555",
    ]
    assert natural_order(pd.Series(["10", "9", "b", "a", "09x"])).tolist() == [1, 0, 4, 3, 2]
    left, right = pairs_within_blocks(np.arange(6), np.array([1, 1, 1, 2, 2, -1]), max_size=2)
    assert sorted(zip(left.tolist(), right.tolist(), strict=True)) == [
        (3, 4)
    ]  # the block of three is over the cap
    df = frame({}, {"email": None, "sex": "unknown", "middle_name": ""})
    assert completeness(df).tolist() == [11, 8]


@pytest.fixture(scope="module")
def small_clinic(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = tmp_path_factory.mktemp("match") / "legacy.db"
    manifest = simulate(f"sqlite:///{path}", patients=400, seed=4105)
    return normalised_patients(path, today=date.fromisoformat(AS_OF)), manifest


def test_every_id_resolves_to_one_survivor(small_clinic: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    patients, _ = small_clinic
    result = match_patients(patients)
    survivor = result.survivor
    assert survivor.index.is_unique
    assert sorted(survivor.index) == sorted(patients["legacy_id"])
    assert survivor.notna().all()
    assert (survivor[survivor.to_numpy()].to_numpy() == survivor.to_numpy()).all()  # a survivor is its own
    assert result.clusters > 0
    assert result.merged == len(survivor) - survivor.nunique()
    values = survive_values(patients, survivor)
    assert sorted(values.index) == sorted(set(survivor))


def test_candidate_pairs_are_a_small_fraction(small_clinic: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    patients, _ = small_clinic
    prep = prepare(patients)
    left, right = candidate_pairs(prep, MatchConfig().blocking, 500)
    n = len(prep)
    assert (left < right).all()
    assert len(np.unique(left * n + right)) == len(left)
    assert len(left) < n * (n - 1) / 2 / 20


def test_same_result_whatever_the_row_order(small_clinic: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    patients, _ = small_clinic
    first = match_patients(patients)
    shuffled = patients.sample(frac=1.0, random_state=3).reset_index(drop=True)
    second = match_patients(shuffled)
    pd.testing.assert_series_equal(first.survivor, second.survivor)
    pd.testing.assert_frame_equal(first.pairs, second.pairs)
    pd.testing.assert_frame_equal(first.review, second.review)
    pd.testing.assert_frame_equal(
        survive_values(patients, first.survivor), survive_values(shuffled, second.survivor)
    )


def test_no_patient_values_in_pairs_review_or_logs(
    small_clinic: tuple[pd.DataFrame, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    patients, manifest = small_clinic
    with caplog.at_level(logging.DEBUG, logger="cutover.matching"):
        result = match_patients(patients)
    for table in (result.pairs, result.review):
        assert list(table.columns) == list(PAIR_COLUMNS)
        for column in LEVEL_COLUMNS:
            comparison = column.removesuffix("_level")
            assert set(table[column].astype(str)) <= set(LEVELS[comparison])  # type: ignore[index]
    ids = set(patients["legacy_id"])
    assert set(result.pairs["left_id"]) | set(result.pairs["right_id"]) <= ids
    phi = {
        str(v)
        for column in (
            "family_name",
            "given_name",
            "ssn",
            "phone_home",
            "phone_mobile",
            "email",
            "birth_date",
            "address_line1",
        )
        for v in patients[column].dropna().tolist()
    } | set(manifest["canaries"])
    cells = {
        str(v) for v in result.pairs.drop(columns=["left_id", "right_id"]).astype(str).to_numpy().ravel()
    }
    assert not (cells & phi)
    logged = caplog.text
    assert caplog.records, "matching logs its counts"
    assert not [c for c in manifest["canaries"] if c in logged]


def test_doctests() -> None:
    for name in ("config", "prepare", "blocking", "match", "survive", "truth", "__init__"):
        module = importlib.import_module("cutover.matching" + ("" if name == "__init__" else f".{name}"))
        failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert failures == 0, name
        assert tried > 0, name


def test_path_accepts_str_and_path(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    simulate(f"sqlite:///{path}", patients=30, seed=4106)
    a = normalised_patients(path, today=date.fromisoformat(AS_OF))
    b = normalised_patients(str(path), today=date.fromisoformat(AS_OF))
    pd.testing.assert_frame_equal(a, b)
    assert set(REQUIRED_COLUMNS) <= set(a.columns)
    assert a["sex"].isin(["female", "male", "unknown"]).all()


def _marked_whole(spec: Any, mapped: Any) -> Any:
    """The whole-table marking as the mapping stage first did it: every survivor (singletons too) takes
    its winning values, over one frame of every field of every patient. The reference for the batch-wise one."""
    import pyarrow as pa

    frame = mapped.to_pandas(types_mapper=pd.ArrowDtype)
    fields = [name for name, _ in spec.columns]
    ok = frame[frame["reason"].isna()]
    people = ok[["legacy_id", *fields]].copy()
    people["home_clinic_legacy_id"] = ok["ref_home_clinic_id"]
    people["legacy_id"] = people["legacy_id"].astype(str)
    survivor = match_patients(people).survivor.astype(str)
    moved = survivor[survivor.index != survivor.to_numpy()]
    by_id = pd.Series(frame.index, index=frame["legacy_id"].astype(str))
    frame.loc[by_id[moved.index].to_numpy(), "merge_into"] = moved.to_numpy()
    winners = survive_values(people, survivor)
    rows = by_id[winners.index.astype(str)].to_numpy()
    for column in [c for c in fields if c in winners.columns]:
        frame.loc[rows, column] = winners[column].to_numpy()
    return pa.Table.from_pandas(frame, schema=spec.staged_schema, preserve_index=False)


def test_batch_wise_dedupe_marks_what_the_whole_table_marking_did(tmp_path: Path) -> None:
    """Deduplication holds only the matcher's columns and marks batch by batch; the rows it stages
    are those of marking one frame of the whole table, whatever the batch size."""
    import pyarrow as pa

    from cutover.legacy.schema import LEGACY_TABLES
    from cutover.legacy.source import read_batches
    from cutover.mapping.dedupe import MATCH_COLUMNS, apply_merges, plan_merges
    from cutover.mapping.engine import map_batch
    from cutover.mapping.specs import SPECS

    path = tmp_path / "legacy.db"
    simulate(f"sqlite:///{path}", patients=400, seed=4105)
    spec, table = SPECS["patients"], LEGACY_TABLES["patients"]
    raw = pa.Table.from_batches(list(read_batches(f"sqlite:///{path}", "patients", table.columns, table.key)))
    mapped = map_batch(spec, raw, as_of=date.fromisoformat(AS_OF))
    expected = _marked_whole(spec, mapped)
    assert _merged(expected) > 10  # the sample has duplicates to merge
    assert len(MATCH_COLUMNS) < len(spec.staged_schema)
    for rows in (37, 1_000):
        batches = mapped.to_batches(max_chunksize=rows)
        plan = plan_merges(spec, lambda batches=batches: batches)  # type: ignore[misc]
        marked = pa.concat_tables([apply_merges(spec, batch, plan) for batch in batches])
        assert marked.equals(expected), f"batches of {rows} rows"
        assert plan.summary["merged"] == _merged(expected)


def test_mapped_suffix_and_swapped_names_reach_the_matcher() -> None:
    """Through the mapping: a father and son (SR/JR) at one address stay two patients; a patient
    entered twice with the names swapped becomes one."""
    import pyarrow as pa

    from cutover.legacy.schema import LEGACY_TABLES
    from cutover.legacy.source import arrow_schema
    from cutover.mapping.dedupe import dedupe
    from cutover.mapping.engine import map_batch
    from cutover.mapping.specs import SPECS

    common = {
        "dob": "1955-03-12",
        "sex": "M",
        "addr1": "14 Linden Street",
        "zip": "02134",
        "state": "MA",
        "home_phone": "617-555-0134",
    }
    rows = [
        {"pat_id": 1, "pat_name": "SMITH, ROBERT SR", **common},
        {"pat_id": 2, "pat_name": "SMITH, ROBERT JR", **common},
        {"pat_id": 3, "pat_name": "OKAFOR, CHIDI", **common, "dob": "1990-07-01"},
        {"pat_id": 4, "pat_name": "CHIDI, OKAFOR", **common, "dob": "1990-07-01"},
    ]
    legacy = LEGACY_TABLES["patients"]
    batch = pa.table(
        {name: [row.get(name) for row in rows] for name in legacy.column_names},
        schema=arrow_schema(legacy.columns),
    )
    spec = SPECS["patients"]
    mapped = map_batch(spec, batch, as_of=date.fromisoformat(AS_OF))
    assert mapped.column("name_suffix").to_pylist() == ["Sr", "Jr", None, None]
    marked, summary, _review = dedupe(spec, mapped)
    assert marked.column("merge_into").to_pylist() == [None, None, None, "3"]
    assert summary["merged"] == 1


def _merged(table: Any) -> int:
    return int(len(table) - table.column("merge_into").null_count)


def test_birth_date_blocking_pairs_births_before_1970() -> None:
    """Days before 1970 are negative; a negative block key means no key, so they are shifted."""
    people = frame(
        {
            "birth_date": date(1931, 5, 2),
            "ssn": None,
            "email": None,
            "phone_home": None,
            "phone_mobile": None,
        },
        {
            "birth_date": date(1931, 5, 2),
            "family_name": "Alvarez",
            "given_name": "Rosa",
            "ssn": None,
            "email": None,
            "phone_home": None,
            "phone_mobile": None,
        },
    )
    left, right = candidate_pairs(prepare(people), ("birth_date",), 10)
    assert (left.tolist(), right.tolist()) == ([0], [1])
