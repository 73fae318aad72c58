"""The gate suites: generated from one catalog, committed as generated, every check with a policy."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from cutover.errors import ConfigError
from cutover.target.constraints import target_constraints
from cutover.validation import config
from cutover.validation.catalog import DERIVED, GATES, catalog
from cutover.validation.suites import build_suite, count_expectations, suite_documents
from cutover.validation.target_rules import RULES, table_query

ROOT = Path(__file__).resolve().parents[2] / "expectations"


def test_committed_suites_equal_the_generated_ones() -> None:
    generated = suite_documents()
    committed = {
        str(p.relative_to(ROOT)): p.read_text()
        for p in ROOT.rglob("*")
        if p.is_file() and "uncommitted" not in p.parts and p.name != ".gitkeep"
    }
    assert sorted(committed) == sorted(generated), "run: python -m cutover.validation.suites"
    for path, text in generated.items():
        assert committed[path] == text, f"{path} is stale: run python -m cutover.validation.suites"


def test_every_gate_has_suites_and_every_expectation_a_unique_name_and_policy() -> None:
    counts = count_expectations()
    assert set(counts) == set(GATES)
    assert all(n > 20 for n in counts.values())
    names = [c.name for c in catalog().all()]
    assert len(names) == len(set(names))
    for name in names:
        found = config.policy(name)
        assert found.severity in ("fatal", "warning")
        assert 0.0 <= found.threshold <= 1.0


def test_a_name_without_a_rule_in_gates_yaml_is_refused() -> None:
    with pytest.raises(ConfigError, match="no rule"):
        config.policy("nonsense.table.rule")


def test_suites_build_as_gx_objects_with_mostly_from_the_threshold() -> None:
    suite = build_suite("target", "visit")
    by_name = {e.meta["name"]: e for e in suite.expectations}
    signed = by_name["target.visit.signed_on_or_after_visit"]
    assert signed.mostly == pytest.approx(
        1 - config.policy("target.visit.signed_on_or_after_visit").threshold
    )
    assert by_name["target.visit.within_episode"].severity.value == "critical"  # fatal
    assert by_name["target.visit.timed_units_8_minute"].severity.value == "warning"


def test_a_cross_table_target_rule_is_gx_unexpected_rows_expectation_reading_as_its_rule() -> None:
    import great_expectations.expectations as gxe

    by_name = {e.meta["name"]: e for e in build_suite("target", "visit").expectations}
    within = by_name["target.visit.within_episode"]
    assert isinstance(within, gxe.UnexpectedRowsExpectation)
    assert within.description is not None
    assert within.description.startswith("a visit falls within its episode's dates")
    assert str(within.unexpected_rows_query).startswith(
        "SELECT t.id FROM {batch} AS t LEFT JOIN pt.episode AS e "
    )
    assert not hasattr(within, "mostly")  # the gate's threshold decides, GX's verdict is "no row"
    assert isinstance(by_name["target.visit.signed_on_or_after_visit"], gxe.ExpectColumnValuesToBeInSet)
    # every rule reading beyond its row, and only those, is an unexpected-rows expectation
    kinds = {c.name: c.expectation for c in catalog().by_gate["target"]["visit"]}
    assert {n for n, k in kinds.items() if k == "UnexpectedRowsExpectation"} == {
        f"target.visit.{r.name}" for r in RULES if r.table == "visit" and r.joins
    }


def test_mapped_contract_reads_the_targets_check_constraints_latest_migration_winning() -> None:
    constraints = target_constraints()
    # V003 widened the CPT format to HCPCS Level II; the suite must carry the widened one
    assert "[A-Z][0-9]{4}" in constraints[("procedure_line", "procedure_line_cpt_format")].arg
    assert constraints[("coverage", "coverage_priority_known")].arg == [1, 2, 3]
    names = {c.name: c for c in catalog().by_gate["mapped"]["procedures"]}
    assert (
        names["mapped.procedures.cpt_code.format"].kwargs["regex"] == "^(?:[0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})$"
    )
    assert names["mapped.procedures.units.nonnegative"].kwargs == {"column": "units", "min_value": 0}
    cases = {c.name for c in catalog().by_gate["mapped"]["cases"]}
    assert "mapped.cases.discharge_date.not_before_start_date" in cases
    assert "mapped.cases.status.code_set" in cases


def test_extract_checks_come_from_the_legacy_schema() -> None:
    names = {c.name for c in catalog().by_gate["extract"]["visits"]}
    assert {"extract.visits.visit_id.key_unique", "extract.visits.case_id.present"} <= names
    assert "extract.visits.appt_id.exists" in names
    assert "extract.visits.appt_id.present" not in names


def test_derived_npi_check_matches_the_luhn_rule() -> None:
    table = pa.table({"npi": ["1234567893", "1234567890", None, "12345"]})
    assert DERIVED["providers.npi_luhn"](table).to_pylist() == [True, False, None, None]


def test_derived_icd10_membership_on_scalars_and_lists() -> None:
    scalars = pa.table({"icd10_code": ["M54.50", "M99.99X", None]})
    assert DERIVED["diagnoses.icd10_code_icd10cm"](scalars).to_pylist() == [True, False, None]
    lists = pa.table({"diagnosis_codes": pa.array([["M54.50", "S83.511A"], ["M54.50", "ZZZ"], []])})
    assert DERIVED["plans_of_care.diagnosis_codes_icd10cm"](lists).to_pylist() == [True, False, None]


def test_derived_billing_rules() -> None:
    lines = pa.table(
        {
            "cpt_code": ["97110", "97110", "97161", "97161", "97010"],
            "units": pa.array([2, 1, 2, 1, 1], pa.int32()),
            "minutes": pa.array([20, 8, 45, 45, None], pa.int32()),
        }
    )
    assert DERIVED["procedures.timed_units_8_minute"](lines).to_pylist() == [False, True, None, None, None]
    assert DERIVED["procedures.untimed_one_unit"](lines).to_pylist() == [None, None, False, True, True]
    scores = pa.table({"instrument": ["LEFS", "LEFS", "NDI", "ODI"], "score": [80.0, 81.0, 51.0, 100.0]})
    assert DERIVED["outcomes.score_in_range"](scores).to_pylist() == [True, False, False, True]


def test_target_queries_hold_no_percent_sign_and_select_the_id_first() -> None:
    # the query passes through SQLAlchemy + psycopg, where % starts a parameter
    for table in {r.table for r in RULES}:
        query = table_query(table)
        assert "%" not in query
        assert query.startswith("SELECT t.id, ")
