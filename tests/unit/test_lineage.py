"""Reject lineage read back from a hand-built ledger on a real PostgreSQL: root causes grouped and
ordered by cost, a reject's chain down to its root, what a root pulled along, the V011 constraints,
and ``cutover trace``'s lines.

The ledger is written as the loader writes it (:mod:`cutover.loading.load`): each reject with the
parent its reference named and its root. ``tests/integration/test_lineage.py`` has the loader write it.
"""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import cutover.trace
from cutover import pipeline
from cutover.lineage import chain, pulled_along, root_causes
from cutover.trace import format_trace, trace

RUN, EARLIER = "lineage-run-2", "lineage-run-1"
"""This run, and an earlier wave of a phased cutover."""

Row = tuple[str, str, str, str | None, tuple[str | None, str | None] | None, tuple[str, str, str] | None, str]
"""(table, legacy id, reason, detail, parent (table, id), root (table, id, reason), run)."""

PATIENT = ("patients", "11", "date_impossible")
ORPHAN = ("visits", "77", "orphan")
OLD = ("patients", "5", "name_unparseable")
LEDGER: list[Row] = [
    # a patient with an impossible birth date takes its case, the case's visits and their charges along
    ("patients", "11", "date_impossible", "dob", None, PATIENT, RUN),
    ("cases", "301", "parent_rejected", "patient_id", ("patients", "11"), PATIENT, RUN),
    ("visits", "551", "parent_rejected", "case_id", ("cases", "301"), PATIENT, RUN),
    ("visits", "552", "parent_rejected", "case_id", ("cases", "301"), PATIENT, RUN),
    ("charges", "119", "parent_rejected", "visit_id", ("visits", "551"), PATIENT, RUN),
    ("charges", "120", "parent_rejected", "visit_id", ("visits", "552"), PATIENT, RUN),
    ("charges", "121", "parent_rejected", "visit_id", ("visits", "552"), PATIENT, RUN),
    # an orphan visit (its case is in no legacy table) is its own root, and takes its charge along
    ("visits", "77", "orphan", "case_id", ("cases", "9999"), ORPHAN, RUN),
    ("charges", "700", "parent_rejected", "visit_id", ("visits", "77"), ORPHAN, RUN),
    # rejects that pull nothing along: one own defect, a missing reference, another patient's case
    ("charges", "800", "cpt_invalid", "cpt", None, ("charges", "800", "cpt_invalid"), RUN),
    ("charges", "801", "ref_missing", "visit_id", ("visits", None), ("charges", "801", "ref_missing"), RUN),
    (
        "visits",
        "802",
        "patient_mismatch",
        "case_id",
        ("cases", "40"),
        ("visits", "802", "patient_mismatch"),
        RUN,
    ),
    # a phased cutover: a patient rejected by an earlier wave, its case in this one
    ("patients", "5", "name_unparseable", "name", None, OLD, EARLIER),
    ("cases", "60", "parent_rejected", "patient_id", ("patients", "5"), OLD, RUN),
]


@pytest.fixture(scope="module")
def migrated(pg_admin_url: str) -> Iterator[str]:
    """One migrated target for the module (the migrations run once); each test empties its ledger."""
    import uuid

    from conftest import _with_db

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(pg_admin_url, name)
    pipeline.prepare_target(url)
    yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _write(conn: psycopg.Connection[Any], rows: list[Row]) -> None:
    for table, legacy_id, reason, detail, parent, root, run in rows:
        conn.execute(
            "INSERT INTO migration.reject (legacy_system, legacy_table, legacy_id, reason_code, stage, detail,"
            " run_id, parent_table, parent_legacy_id, root_table, root_legacy_id, root_reason)"
            " VALUES ('legacy', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                table,
                legacy_id,
                reason,
                "map" if parent is None else "load",
                detail,
                run,
                *(parent or (None, None)),
                *(root or (None, None, None)),
            ),
        )


@pytest.fixture
def ledger(migrated: str) -> str:
    with psycopg.connect(migrated) as conn:
        conn.execute("DELETE FROM migration.reject")
        conn.execute("DELETE FROM migration.crosswalk")
        _write(conn, LEDGER)
        # the case of another patient that visit 802 names migrated
        conn.execute(
            "INSERT INTO migration.crosswalk (legacy_system, legacy_table, legacy_id, new_table, new_id, outcome, run_id)"
            " VALUES ('legacy', 'cases', '40', 'episode', migration.legacy_uuid('legacy', 'cases', '40'), 'migrated', %s)",
            (RUN,),
        )
    return migrated


def test_root_causes_group_a_runs_rejects_by_root_most_costly_first(ledger: str) -> None:
    assert root_causes(ledger, RUN) == [
        {
            "root_table": "patients",
            "root_reason": "date_impossible",
            "root_detail": "dob",
            "roots": 1,
            "rows": {"charges": 3, "visits": 2, "cases": 1},
            "pulled": 6,
        },
        {
            "root_table": "patients",
            "root_reason": "name_unparseable",
            "root_detail": "name",
            "roots": 1,  # rejected by the earlier wave: still the defect to fix
            "rows": {"cases": 1},
            "pulled": 1,
        },
        {
            "root_table": "visits",
            "root_reason": "orphan",
            "root_detail": "case_id",
            "roots": 1,
            "rows": {"charges": 1},
            "pulled": 1,
        },
        {
            "root_table": "charges",
            "root_reason": "cpt_invalid",
            "root_detail": "cpt",
            "roots": 1,
            "rows": {},
            "pulled": 0,
        },
        {
            "root_table": "charges",
            "root_reason": "ref_missing",
            "root_detail": "visit_id",
            "roots": 1,
            "rows": {},
            "pulled": 0,
        },
        {
            "root_table": "visits",
            "root_reason": "patient_mismatch",
            "root_detail": "case_id",
            "roots": 1,
            "rows": {},
            "pulled": 0,
        },
    ]
    earlier = root_causes(ledger, EARLIER)
    assert [(c["root_table"], c["roots"], c["pulled"]) for c in earlier] == [("patients", 1, 0)]
    assert root_causes(ledger, "no-such-run") == []


def test_every_reject_of_the_run_is_a_root_or_pulled_along_once(ledger: str) -> None:
    causes = root_causes(ledger, RUN)
    with psycopg.connect(ledger) as conn:
        (rejected,) = conn.execute(
            "SELECT count(*) FROM migration.reject WHERE run_id = %s", (RUN,)
        ).fetchone() or (0,)
        (own_roots,) = conn.execute(
            "SELECT count(*) FROM migration.reject WHERE run_id = %s"
            " AND (root_table, root_legacy_id) = (legacy_table, legacy_id)",
            (RUN,),
        ).fetchone() or (0,)
    assert sum(c["pulled"] for c in causes) + own_roots == rejected
    assert sum(c["roots"] for c in causes) == own_roots + 1  # the earlier wave's patient


def test_a_chain_runs_from_the_row_to_its_root(ledger: str) -> None:
    with psycopg.connect(ledger) as conn:
        steps = chain(conn, "charges", "121")
        orphan = chain(conn, "charges", "700")
        assert chain(conn, "charges", "800") == [
            {
                "legacy_table": "charges",
                "legacy_id": "800",
                "outcome": "rejected",
                "reason_code": "cpt_invalid",
            }
        ]
        missing = chain(conn, "charges", "801")
        other_patient = chain(conn, "visits", "802")
        assert chain(conn, "charges", "99999") == []
    assert [(s["legacy_table"], s["legacy_id"], s["reason_code"]) for s in steps] == [
        ("charges", "121", "parent_rejected"),
        ("visits", "552", "parent_rejected"),
        ("cases", "301", "parent_rejected"),
        ("patients", "11", "date_impossible"),
    ]
    assert {s["outcome"] for s in steps} == {"rejected"}
    # an orphan's missing parent closes its chain, with no outcome in the ledger
    assert [(s["legacy_table"], s["legacy_id"], s["outcome"]) for s in orphan] == [
        ("charges", "700", "rejected"),
        ("visits", "77", "rejected"),
        ("cases", "9999", "absent"),
    ]
    assert missing[-1] == {
        "legacy_table": "visits",
        "legacy_id": None,
        "outcome": "absent",
        "reason_code": None,
    }
    assert other_patient[-1]["outcome"] == "migrated"


def test_a_chain_stops_where_the_ledger_lost_a_parent(ledger: str) -> None:
    """A parent corrected and migrated since: the chain ends at the parent's present outcome."""
    with psycopg.connect(ledger) as conn:
        conn.execute("DELETE FROM migration.reject WHERE legacy_table = 'visits' AND legacy_id = '552'")
        steps = chain(conn, "charges", "121")
    assert [(s["legacy_table"], s["legacy_id"], s["outcome"]) for s in steps] == [
        ("charges", "121", "rejected"),
        ("visits", "552", "absent"),
    ]


def test_pulled_along_counts_a_roots_dependants_of_every_run(ledger: str) -> None:
    with psycopg.connect(ledger) as conn:
        assert pulled_along(conn, "patients", "11") == {"charges": 3, "visits": 2, "cases": 1}
        assert pulled_along(conn, "patients", "5") == {"cases": 1}
        assert pulled_along(conn, "charges", "800") == {}


def test_rejects_without_recorded_lineage_count_as_their_own_root_unless_cascades(ledger: str) -> None:
    """Rows written before V011 (or by hand): an own defect is its own root; a cascade's root is unknown."""
    with psycopg.connect(ledger) as conn:
        for legacy_id, reason in (("900", "date_impossible"), ("901", "parent_rejected")):
            conn.execute(
                "INSERT INTO migration.reject (legacy_system, legacy_table, legacy_id, reason_code, stage, run_id)"
                " VALUES ('legacy', 'documents', %s, %s, 'load', 'old-run')",
                (legacy_id, reason),
            )
    assert root_causes(ledger, "old-run") == [
        {
            "root_table": None,
            "root_reason": None,
            "root_detail": None,
            "roots": 0,
            "rows": {"documents": 1},
            "pulled": 1,
        },
        {
            "root_table": "documents",
            "root_reason": "date_impossible",
            "root_detail": None,
            "roots": 1,
            "rows": {},
            "pulled": 0,
        },
    ]
    result = trace(ledger, "documents", "901", actor="auditor.jane")
    assert "root cause   not recorded" in format_trace(result)


@pytest.mark.parametrize(
    ("row", "constraint"),
    [
        # a root is never a cascade, and a code is never a value
        (
            (
                "charges",
                "1",
                "parent_rejected",
                None,
                ("visits", "2"),
                ("visits", "2", "parent_rejected"),
                RUN,
            ),
            "reject_root_not_cascade",
        ),
        (
            ("charges", "1", "parent_rejected", None, ("visits", "2"), ("patients", "1", "Smith, John"), RUN),
            "reject_root_reason_format",
        ),
        # a cascade names its parent; any other reject is its own root
        (("charges", "1", "parent_rejected", None, None, PATIENT, RUN), "reject_cascade_has_parent"),
        (("charges", "1", "cpt_invalid", None, None, PATIENT, RUN), "reject_root_is_self"),
        (
            ("charges", "1", "orphan", None, (None, "2"), ("charges", "1", "orphan"), RUN),
            "reject_parent_id_has_table",
        ),
    ],
)
def test_the_ledger_refuses_an_inconsistent_lineage(migrated: str, row: Row, constraint: str) -> None:
    with psycopg.connect(migrated) as conn, pytest.raises(psycopg.errors.CheckViolation) as refused:
        _write(conn, [row])
    assert refused.value.diag.constraint_name == constraint


def test_the_ledger_refuses_half_a_root(migrated: str) -> None:
    with psycopg.connect(migrated) as conn, pytest.raises(psycopg.errors.CheckViolation) as refused:
        conn.execute(
            "INSERT INTO migration.reject (legacy_system, legacy_table, legacy_id, reason_code, stage, root_table)"
            " VALUES ('legacy', 'charges', '1', 'cpt_invalid', 'map', 'charges')"
        )
    assert refused.value.diag.constraint_name == "reject_root_whole"


def test_trace_names_the_chain_and_the_root(ledger: str) -> None:
    result = trace(ledger, "charges", "119", actor="auditor.jane")
    assert (result["parent_table"], result["parent_legacy_id"]) == ("visits", "551")
    assert (result["root_table"], result["root_legacy_id"], result["root_reason"]) == PATIENT
    text = format_trace(result)
    assert (
        "  lineage      charges 119: rejected parent_rejected ← visits 551 (parent_rejected)"
        " ← cases 301 (parent_rejected) ← patients 11 (date_impossible)"
    ) in text
    assert "  root cause   patients 11: date_impossible" in text
    root = trace(ledger, "patients", "11", actor="auditor.jane")
    assert root["lineage"] == [
        {
            "legacy_table": "patients",
            "legacy_id": "11",
            "outcome": "rejected",
            "reason_code": "date_impossible",
        }
    ]
    assert "  pulled along 3 charges, 2 visits, 1 cases" in format_trace(root)
    assert "root cause" not in format_trace(root)  # it is its own
    orphan = format_trace(trace(ledger, "visits", "77", actor="auditor.jane"))
    assert "visits 77: rejected orphan ← cases 9999 (no outcome in the ledger)" in orphan


def test_doctests() -> None:
    assert doctest.testmod(cutover.trace).failed == 0
