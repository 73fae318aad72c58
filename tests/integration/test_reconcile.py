"""Reconciliation against a real load: a clean clinic passes, and a planted change in one chart is found.

The simulated clinic is extracted, mapped and loaded once into a template database; each test
reconciles a fresh copy of it (``CREATE DATABASE … TEMPLATE``), so a planted change never leaks
into another test.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from cutover import pipeline
from cutover.pipeline import run_key
from cutover.reconcile import ReconcileFailed, reconcile
from cutover.simulate import simulate
from cutover.staging.store import open_store

RUN = "manual__2026-11-27T18:00:00+00:00"


def _db_url(admin_url: str, name: str) -> str:
    return urlsplit(admin_url)._replace(path="/" + name).geturl()


@pytest.fixture(scope="module")
def loaded(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A 120-patient clinic loaded into a template database; the staging store beside it."""
    folder = tmp_path_factory.mktemp("reconcile")
    legacy = f"sqlite:///{folder / 'legacy.db'}"
    manifest = simulate(legacy, patients=120, seed=2024)
    template = f"t_rc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{template}"')
    url, store = _db_url(pg_admin_url, template), f"file://{folder / 'stage'}"
    pipeline.prepare_target(url)
    pipeline.begin_run(url, RUN, "test", {}, "tester")
    for table in pipeline.migrated_tables():
        pipeline.extract_table(legacy, store, RUN, table)
        pipeline.map_table(store, RUN, table, as_of=date(2026, 11, 27))
    for table in pipeline.migrated_tables():
        pipeline.load_mapped(url, store, RUN, table)
    yield {"template": template, "store": store, "manifest": manifest, "legacy": folder / "legacy.db"}
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


@pytest.fixture
def target(pg_admin_url: str, loaded: dict[str, Any], cutover_home: Path) -> Iterator[str]:
    """A fresh copy of the loaded target for one test."""
    name = f"t_rc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{loaded["template"]}"')
    yield _db_url(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _failures(url: str) -> list[tuple[str, str, str | None, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, legacy_id, new_id::text, kind FROM migration.validation_failure"
            " WHERE run_id = %s ORDER BY 1, 2, 4",
            (RUN,),
        ).fetchall()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _surviving_patient(conn: psycopg.Connection[Any], patient_id: Any) -> str:
    """The legacy id the crosswalk gives the surviving patient row."""
    (legacy_id,) = conn.execute(
        "SELECT legacy_id FROM migration.crosswalk WHERE legacy_table = 'patients' AND new_id = %s"
        " AND outcome = 'migrated'",
        (patient_id,),
    ).fetchone()
    return str(legacy_id)


def _no_canary(text: str, manifest: dict[str, Any]) -> None:
    hits = [c for c in manifest["canaries"] if str(c) and str(c) in text]
    assert not hits, f"{len(hits)} canary values leaked"


def test_clean_clinic_passes_with_counts_equal_to_the_extract(
    target: str, loaded: dict[str, Any], cutover_home: Path
) -> None:
    report = reconcile(target, loaded["store"], RUN)
    assert report.passed
    assert report.failures_by_kind == {}
    assert _failures(target) == []
    for table, rows in loaded["manifest"]["tables"].items():
        counts = report.tables[table]
        assert counts["legacy_rows"] == rows, table
        assert counts["migrated"] + counts["merged"] + counts["rejected"] == rows, table
        assert counts["unresolved"] == 0, table
    with psycopg.connect(target) as conn:
        (patients,) = conn.execute("SELECT count(*) FROM pt.patient").fetchone()
        (lines,) = conn.execute("SELECT count(*) FROM pt.procedure_line").fetchone()
    assert report.patients_compared == patients == report.tables["patients"]["migrated"]
    assert report.tables["patients"]["merged"] > 0
    assert report.tables["procedures"]["target_rows"] == lines > report.tables["procedures"]["migrated"]
    assert report.bisection["leaves"] == 0  # equal segment checksums: no chart left the target
    evidence = (pipeline.latest_evidence(RUN) / "reconciliation.json").read_text()
    assert json.loads(evidence)["passed"] is True
    _no_canary(evidence, loaded["manifest"])


def test_one_procedure_lines_units_changed_is_found_with_the_patients_legacy_id(
    target: str, loaded: dict[str, Any]
) -> None:
    with psycopg.connect(target) as conn:
        (patient_id,) = conn.execute(
            "UPDATE pt.procedure_line l SET units = units + 1 FROM pt.visit v"
            " WHERE l.id = (SELECT id FROM pt.procedure_line ORDER BY id LIMIT 1) AND v.id = l.visit_id"
            " RETURNING v.patient_id"
        ).fetchone()
        legacy_id = _surviving_patient(conn, patient_id)
    with pytest.raises(ReconcileFailed) as failed:
        reconcile(target, loaded["store"], RUN)
    assert _failures(target) == [("patients", legacy_id, str(patient_id), "chart_units")]
    message = str(failed.value)
    assert "chart_units 1" in message
    assert f"patients {legacy_id}" in message
    _no_canary(message, loaded["manifest"])
    report = json.loads((pipeline.latest_evidence(RUN) / "reconciliation.json").read_text())
    assert (report["passed"], report["patients_mismatched"]) == (False, 1)


def test_one_charge_amount_changed_is_found_as_charges_and_balance(
    target: str, loaded: dict[str, Any]
) -> None:
    with psycopg.connect(target) as conn:
        (patient_id,) = conn.execute(
            "UPDATE pt.charge SET amount_cents = amount_cents + 100"
            " WHERE id = (SELECT id FROM pt.charge ORDER BY id DESC LIMIT 1) RETURNING patient_id"
        ).fetchone()
        legacy_id = _surviving_patient(conn, patient_id)
    with pytest.raises(ReconcileFailed, match="chart_charges 1"):
        reconcile(target, loaded["store"], RUN)
    assert _failures(target) == [
        ("patients", legacy_id, str(patient_id), "chart_balance"),
        ("patients", legacy_id, str(patient_id), "chart_charges"),
    ]


def test_one_deleted_visit_is_missing_and_changes_its_patients_chart(
    target: str, loaded: dict[str, Any]
) -> None:
    with psycopg.connect(target) as conn:
        visit_id, patient_id = conn.execute(
            "SELECT id, patient_id FROM pt.visit ORDER BY id LIMIT 1"
        ).fetchone()
        # the visit goes with everything that hangs off it, as a botched delete would take it
        conn.execute("UPDATE pt.outcome_measure SET visit_id = NULL WHERE visit_id = %s", (visit_id,))
        conn.execute("DELETE FROM pt.procedure_line WHERE visit_id = %s", (visit_id,))
        conn.execute("DELETE FROM pt.charge WHERE visit_id = %s", (visit_id,))
        conn.execute("DELETE FROM pt.visit WHERE id = %s", (visit_id,))
        (visit_legacy_id,) = conn.execute(
            "SELECT legacy_id FROM migration.crosswalk WHERE legacy_table = 'visits' AND new_id = %s",
            (visit_id,),
        ).fetchone()
        legacy_id = _surviving_patient(conn, patient_id)
    with pytest.raises(ReconcileFailed, match=r"missing \d+"):
        reconcile(target, loaded["store"], RUN)
    failures = _failures(target)
    assert ("visits", visit_legacy_id, str(visit_id), "missing") in failures
    assert ("patients", legacy_id, str(patient_id), "chart_visits") in failures
    assert {f[1] for f in failures if f[0] == "patients"} == {legacy_id}  # no other chart touched
    assert {f[3] for f in failures if f[0] != "patients"} == {"missing"}


def test_a_target_row_without_crosswalk_is_extra(target: str, loaded: dict[str, Any]) -> None:
    planted = uuid.uuid4()
    with psycopg.connect(target) as conn:
        conn.execute(
            "INSERT INTO pt.payment (id, patient_id, amount_cents, kind)"
            " SELECT %s, id, 1, 'payment' FROM pt.patient ORDER BY id LIMIT 1",
            (planted,),
        )
    with pytest.raises(ReconcileFailed):
        reconcile(target, loaded["store"], RUN)
    failures = _failures(target)
    assert ("payments", str(planted), str(planted), "extra") in failures
    assert {f[3] for f in failures} == {"extra", "chart_payments", "chart_balance"}


def test_a_merged_duplicates_records_count_under_the_survivor(target: str, loaded: dict[str, Any]) -> None:
    with psycopg.connect(target) as conn:
        survivor, merged_visits, _own_visits = conn.execute(
            "SELECT m.merged_into, count(v.legacy_id) FILTER (WHERE v.pat = m.legacy_id),"
            " count(v.legacy_id) FILTER (WHERE v.pat <> m.legacy_id)"
            " FROM migration.crosswalk m"
            " JOIN (SELECT c.legacy_id, x.legacy_id AS pat FROM migration.crosswalk c"
            "       JOIN pt.visit t ON t.id = c.new_id"
            "       JOIN migration.crosswalk x ON x.legacy_table = 'patients'"
            "        AND coalesce(x.merged_into, x.new_id) = t.patient_id"
            "      WHERE c.legacy_table = 'visits') v ON true"
            " WHERE m.legacy_table = 'patients' AND m.outcome = 'merged' GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        (target_visits,) = conn.execute(
            "SELECT count(*) FROM pt.visit WHERE patient_id = %s", (survivor,)
        ).fetchone()
    assert merged_visits > 0
    # the survivor's target chart holds the duplicate's visits; reconciliation agrees with it
    assert target_visits >= merged_visits
    report = reconcile(target, loaded["store"], RUN)
    assert report.passed
    # moving one of the survivor's visits to another patient breaks both charts
    with psycopg.connect(target) as conn:
        other = conn.execute(
            "SELECT id FROM pt.patient WHERE id <> %s ORDER BY id LIMIT 1", (survivor,)
        ).fetchone()[0]
        conn.execute(
            "UPDATE pt.visit SET patient_id = %s WHERE id = (SELECT id FROM pt.visit WHERE patient_id = %s"
            " ORDER BY id LIMIT 1)",
            (other, survivor),
        )
        survivor_legacy = _surviving_patient(conn, survivor)
    with pytest.raises(ReconcileFailed):
        reconcile(target, loaded["store"], RUN)
    visits_failures = {(f[1], f[3]) for f in _failures(target) if f[3] == "chart_visits"}
    assert (survivor_legacy, "chart_visits") in visits_failures
    assert len(visits_failures) == 2


def test_a_rerun_replaces_the_runs_failures(target: str, loaded: dict[str, Any]) -> None:
    with psycopg.connect(target) as conn:
        conn.execute(
            "UPDATE pt.payment SET amount_cents = amount_cents - 1 WHERE id = (SELECT id FROM pt.payment ORDER BY id LIMIT 1)"
        )
    for _ in range(2):
        with pytest.raises(ReconcileFailed):
            reconcile(target, loaded["store"], RUN)
    assert [f[3] for f in _failures(target)] == ["chart_balance", "chart_payments"]
    with psycopg.connect(target) as conn:
        conn.execute(
            "UPDATE pt.payment SET amount_cents = amount_cents + 1 WHERE id = (SELECT id FROM pt.payment ORDER BY id LIMIT 1)"
        )
    assert reconcile(target, loaded["store"], RUN).passed
    assert _failures(target) == []


def test_a_failure_rate_within_the_threshold_passes(target: str, loaded: dict[str, Any]) -> None:
    with psycopg.connect(target) as conn:
        conn.execute(
            "UPDATE pt.charge SET amount_cents = 0 WHERE id = (SELECT id FROM pt.charge ORDER BY id LIMIT 1)"
        )
    report = reconcile(target, loaded["store"], RUN, max_failure_rate=0.05)
    assert report.passed
    assert report.patients_mismatched == 1
    assert report.failures_by_kind == {"chart_balance": 1, "chart_charges": 1}
    assert len(_failures(target)) == 2  # written even when the gate passes


def test_the_legacy_recheck_maps_a_sample_again_and_finds_what_changed_since_the_extract(
    target: str, loaded: dict[str, Any], tmp_path: Path
) -> None:
    """Issue 14: a change anywhere between the legacy system and the target is found, even one that
    the staged Parquet and the target agree on (the chart reconciliation compares only those two)."""
    from cutover.reconcile.recheck import SAMPLE_PATIENTS, sample_patients

    report = reconcile(target, loaded["store"], RUN, legacy_url=f"sqlite:///{loaded['legacy']}")
    assert report.passed
    assert report.legacy_recheck == {"patients": SAMPLE_PATIENTS, "mismatched_rows": {}}
    # the legacy system moves on after the extract: one visit of a sampled patient is edited
    sample = sample_patients(open_store(loaded["store"]), f"runs/{run_key(RUN)}", RUN)
    moved = tmp_path / "legacy.db"
    shutil.copy(loaded["legacy"], moved)
    with sqlite3.connect(moved) as conn:
        (visit_id,) = conn.execute(
            f"SELECT min(visit_id) FROM visits WHERE pat_id IN ({', '.join('?' * len(sample))})"
            " AND note_type = 'DN'",
            sample,
        ).fetchone()
        conn.execute("UPDATE visits SET note_type = 'PN' WHERE visit_id = ?", (visit_id,))
    with pytest.raises(ReconcileFailed, match="legacy_recheck 1"):
        reconcile(target, loaded["store"], RUN, legacy_url=f"sqlite:///{moved}")
    assert ("visits", str(visit_id), None, "legacy_recheck") in _failures(target)


def test_one_removed_precaution_fails_the_run_whatever_the_tolerated_rate(
    target: str, loaded: dict[str, Any]
) -> None:
    with psycopg.connect(target) as conn:
        (patient_id,) = conn.execute(
            "DELETE FROM pt.precaution WHERE id = (SELECT id FROM pt.precaution ORDER BY id LIMIT 1)"
            " RETURNING patient_id"
        ).fetchone()
        legacy_id = _surviving_patient(conn, patient_id)
    # a run that tolerates every other mismatch still may not open a chart without its precautions
    with pytest.raises(ReconcileFailed, match=r"safety records .* of 1 migrated patient\(s\)") as failed:
        reconcile(target, loaded["store"], RUN, max_failure_rate=1.0)
    assert ("patients", legacy_id, str(patient_id), "chart_safety") in _failures(target)
    _no_canary(str(failed.value), loaded["manifest"])
    report = json.loads((pipeline.latest_evidence(RUN) / "reconciliation.json").read_text())
    assert report["passed"] is False
    assert report["failures_by_kind"]["chart_safety"] == 1


def test_a_merged_safety_record_dropped_from_its_survivor_is_found(
    target: str, loaded: dict[str, Any]
) -> None:
    # the ledger still says merged, the survivor row is there: only the chart sees the record gone
    with psycopg.connect(target) as conn:
        found = conn.execute(
            "UPDATE pt.medication SET source_records = source_records[1:1]"
            " WHERE id = (SELECT id FROM pt.medication WHERE cardinality(source_records) > 1 ORDER BY id LIMIT 1)"
            " RETURNING patient_id"
        ).fetchone()
        assert found is not None, "the clinic holds a medication entered in two episodes"
        legacy_id = _surviving_patient(conn, found[0])
    with pytest.raises(ReconcileFailed, match="chart_safety"):
        reconcile(target, loaded["store"], RUN, max_failure_rate=1.0)
    assert _failures(target) == [("patients", legacy_id, str(found[0]), "chart_safety")]


def test_a_precaution_whose_kind_was_changed_is_found(target: str, loaded: dict[str, Any]) -> None:
    with psycopg.connect(target) as conn:
        (patient_id,) = conn.execute(
            "UPDATE pt.precaution SET kind = CASE kind WHEN 'fall_risk' THEN 'other' ELSE 'fall_risk' END"
            " WHERE id = (SELECT id FROM pt.precaution ORDER BY id DESC LIMIT 1) RETURNING patient_id"
        ).fetchone()
        legacy_id = _surviving_patient(conn, patient_id)
    with pytest.raises(ReconcileFailed, match="chart_safety"):
        reconcile(target, loaded["store"], RUN)
    assert _failures(target) == [("patients", legacy_id, str(patient_id), "chart_safety")]


def test_a_rejected_row_whose_reject_record_is_gone_is_unresolved_with_its_legacy_id(
    target: str, loaded: dict[str, Any]
) -> None:
    # the reject table is looked up only for the rows the crosswalk lacks: a row in neither is unresolved
    with psycopg.connect(target) as conn:
        table, legacy_id = conn.execute(
            "DELETE FROM migration.reject WHERE (legacy_system, legacy_table, legacy_id) = ("
            " SELECT legacy_system, legacy_table, legacy_id FROM migration.reject r WHERE NOT EXISTS ("
            "  SELECT FROM migration.crosswalk c WHERE (c.legacy_system, c.legacy_table, c.legacy_id)"
            "   = (r.legacy_system, r.legacy_table, r.legacy_id)) ORDER BY 2, 3 LIMIT 1)"
            " RETURNING legacy_table, legacy_id"
        ).fetchone()
    report = reconcile(target, loaded["store"], RUN, max_failure_rate=1.0)
    assert _failures(target) == [(table, legacy_id, None, "unresolved")]
    assert report.tables[table]["unresolved"] == 1
    rows = loaded["manifest"]["tables"][table]
    counts = report.tables[table]
    assert counts["migrated"] + counts["merged"] + counts["rejected"] == rows - 1


def test_the_second_session_finds_the_ledgers_patients_in_scope(target: str, loaded: dict[str, Any]) -> None:
    """Both sides' charts are built on a session of its own, whose patients in scope come from the
    patient extract alone and whose rejected rows from the ledger tables: the same as the ledger's,
    a merged duplicate's survivor once and a patient without a crosswalk row left out."""
    from cutover.pipeline import migrated_tables
    from cutover.reconcile.chart import chart_tables
    from cutover.reconcile.ledger import (
        check_ledger,
        rejected_ids,
        stage_ids,
        stage_patients,
        stage_patients_from_extract,
    )

    prefix = f"runs/{run_key(RUN)}"
    store = open_store(loaded["store"])
    charted = [t for t in chart_tables().values() if t is not None]
    with psycopg.connect(target) as conn:
        (dropped,) = conn.execute(
            "DELETE FROM migration.crosswalk WHERE legacy_table = 'patients' AND legacy_id = ("
            " SELECT legacy_id FROM migration.crosswalk WHERE legacy_table = 'patients'"
            " AND outcome = 'migrated' AND new_id NOT IN (SELECT merged_into FROM migration.crosswalk"
            "  WHERE merged_into IS NOT NULL) ORDER BY legacy_id LIMIT 1) RETURNING new_id"
        ).fetchone()
    scopes, maps, rejects = [], [], []
    for ledger in (True, False):
        with psycopg.connect(target) as conn, conn.transaction(force_rollback=True):
            if ledger:
                rows = stage_ids(conn, store, prefix, migrated_tables())
                check_ledger(conn, RUN, "legacy", rows)
                ids, keys = stage_patients(conn, "legacy")
                found = conn.execute(
                    "SELECT legacy_table, legacy_id FROM rc_outcome WHERE outcome = 'rejected'"
                    " AND legacy_table = ANY(%s)",
                    (charted,),
                ).fetchall()
                rejects.append(sorted((t, i) for t, i in found))
            else:
                ids, keys = stage_patients_from_extract(conn, store, prefix, "legacy")
                by_table = rejected_ids(conn, "legacy", charted)
                rejects.append(sorted((t, i) for t, a in by_table.items() for i in a.to_pylist()))
            scopes.append(
                conn.execute("SELECT patient_id, key, legacy_id FROM rc_patient ORDER BY 1").fetchall()
            )
            maps.append(sorted(zip(ids.to_pylist(), keys.to_pylist(), strict=True)))
    assert scopes[0] == scopes[1]
    assert maps[0] == maps[1]
    assert rejects[0] == rejects[1]
    assert rejects[0]
    assert dropped not in {p for p, _, _ in scopes[0]}
    assert len(scopes[0]) == len({p for p, _, _ in scopes[0]})
    assert len(maps[0]) > len(scopes[0])  # merged duplicates map onto their survivors' keys


def test_the_target_charts_are_read_in_the_ledgers_snapshot(target: str, loaded: dict[str, Any]) -> None:
    """A change committed after the reconciliation's snapshot is not seen by its second session."""
    from concurrent.futures import ThreadPoolExecutor

    from cutover.reconcile.run import _ChartSides

    prefix = f"runs/{run_key(RUN)}"

    def charges(change: str | None = None) -> tuple[int, int]:
        """The target's and the legacy side's charges of the patients in scope, in a snapshot exported
        before ``change``."""
        with psycopg.connect(target) as first:
            first.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with first.transaction(force_rollback=True):
                (snapshot,) = first.execute("SELECT pg_export_snapshot()").fetchone()
                if change:
                    with psycopg.connect(target, autocommit=True) as other:
                        other.execute(change)
                with _ChartSides(target, snapshot) as sides, ThreadPoolExecutor(1) as pool:
                    legacy, _ = sides.build(loaded["store"], prefix, "legacy", {}, pool)
                    (total,) = sides.conn.execute("SELECT sum(charges) FROM rc_chart").fetchone()
        return int(total), sum(legacy.table.column("charges").to_pylist())

    before, legacy = charges(
        "UPDATE pt.charge SET amount_cents = amount_cents + 100"
        " WHERE id = (SELECT id FROM pt.charge ORDER BY id LIMIT 1)"
    )
    assert before == legacy
    after, legacy_after = charges()
    assert (after - before, legacy_after) == (100, legacy)
