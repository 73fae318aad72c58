"""The rollback's pure parts: snapshot names, which tables one TRUNCATE may empty, how a mismatch
is reported, the typed confirmation (refused before any connection), and the DAG's shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutover.errors import TerminalError
from cutover.rollback import (
    PATIENT_PATH,
    REFERENCE_TABLES,
    _compare,
    check_rollback,
    snapshot_schema,
    snapshot_tables,
    truncatable,
)
from cutover.target import TARGET_TABLES
from cutover.target.checksums import TableChecksum

DAGS = Path(__file__).resolve().parents[2] / "dags"
NOWHERE = "postgresql://nobody@127.0.0.1:9/none"  # nothing listens: a connection attempt would fail


@pytest.mark.parametrize(
    ("run_id", "schema"),
    [
        ("run-a", "rollback_run-a"),
        ("manual__2026-11-27T18:00:00+00:00", "rollback_manual__2026-11-27T18-00-00-00-00"),
        ("scheduled__2026-12-04T18:00:00.123456+00:00", None),
    ],
)
def test_snapshot_schema_is_a_valid_identifier_per_run(run_id: str, schema: str | None) -> None:
    name = snapshot_schema(run_id)
    assert len(name.encode()) <= 63
    assert name.startswith("rollback_")
    if schema is not None:
        assert name == schema
    assert snapshot_schema(run_id + "x") != name


def test_long_run_ids_stay_distinct() -> None:
    a, b = snapshot_schema("x" * 70 + "a"), snapshot_schema("x" * 70 + "b")
    assert a != b
    assert len(a) == len(b) == 63


def test_snapshot_covers_every_pt_table_and_the_load_ledger_parents_first() -> None:
    tables = snapshot_tables()
    assert [t for s, t in tables if s == "pt"] == list(TARGET_TABLES)
    assert {t for s, t in tables if s == "migration"} == {"batch", "crosswalk", "reject", "flag"}
    assert ("migration", "audit_log") not in tables  # append-only history is never rolled back
    assert ("migration", "run") not in tables


@pytest.mark.parametrize(
    ("title", "empty", "references", "expected"),
    [
        (
            "all empty",
            {"pt.clinic", "pt.patient"},
            [("pt.patient", "pt.clinic")],
            {"pt.clinic", "pt.patient"},
        ),
        (
            "child keeps rows: its parent cannot be truncated",
            {"pt.clinic"},
            [("pt.patient", "pt.clinic")],
            set(),
        ),
        ("a leaf alone", {"pt.visit"}, [("pt.visit", "pt.patient")], {"pt.visit"}),
        ("self reference", {"pt.a"}, [("pt.a", "pt.a")], {"pt.a"}),
        (
            "a referencing table outside the set blocks a chain",
            {"pt.a", "pt.b"},
            [("pt.b", "pt.a"), ("other.c", "pt.b")],
            set(),
        ),
    ],
)
def test_truncatable(
    title: str, empty: set[str], references: list[tuple[str, str]], expected: set[str]
) -> None:
    assert truncatable(empty, references) == expected, title


def test_mismatch_names_tables_and_counts_only() -> None:
    want = {
        "pt.visit": TableChecksum(rows=120, checksum="1:2"),
        "pt.payer": TableChecksum(rows=4, checksum="3:4"),
        "pt.clinic": TableChecksum(rows=2, checksum="5:6"),
    }
    got = {**want, "pt.visit": TableChecksum(rows=130, checksum="9:9")}
    got["pt.payer"] = TableChecksum(rows=4, checksum="0:0")
    del got["pt.clinic"]
    assert _compare(want, got) == [
        "pt.clinic no rows (snapshot 2)",
        "pt.payer 4 rows (snapshot 4), checksum differs",
        "pt.visit 130 rows (snapshot 120)",
    ]
    assert _compare(want, dict(want)) == []


def test_confirmation_must_equal_the_run_id_before_anything_is_touched() -> None:
    with pytest.raises(TerminalError, match="confirmation does not match"):
        check_rollback(NOWHERE, "manual__2026-11-27T18:00:00+00:00", confirm="manual__2026-11-27")
    with pytest.raises(TerminalError, match="no run id given"):
        check_rollback(NOWHERE, "", confirm="")


def test_dag_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=DAGS, bundle_path=DAGS)
    assert not {p for p in bag.import_errors if p.endswith("pt_rollback.py")}
    dag = bag.dags["pt_rollback"]
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert "## Runbook" in (dag.doc_md or "")
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"check_rollback", "restore_target", "verify_restored"}
    assert tasks["restore_target"].upstream_task_ids == {"check_rollback"}
    assert tasks["verify_restored"].upstream_task_ids == {"restore_target"}
    params = dag.params.dump()
    assert set(params) == {"run_id", "confirm", "undo_outside_changes"}
    assert params["undo_outside_changes"] is False  # refusing is the default
    for name in params:
        param = dag.params.get_param(name)
        assert param.schema["title"]
        assert param.description
        assert param.schema["section"] == "Rollback"
        if name != "undo_outside_changes":
            assert param.schema["minLength"] == 1  # required: the form cannot be sent without it


def test_every_pt_table_leads_to_its_patient_or_is_reference_data() -> None:
    """A table the outside-changes check does not know would be restored without the check."""
    assert set(PATIENT_PATH) | REFERENCE_TABLES == set(TARGET_TABLES)
    assert not set(PATIENT_PATH) & REFERENCE_TABLES
    for _, via in PATIENT_PATH.values():
        assert via is None or PATIENT_PATH[via] == ("patient_id", None)
