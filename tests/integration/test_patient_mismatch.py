"""A chart never mixes two patients: a visit on another patient's case, or a charge on another
patient's visit, is rejected ``patient_mismatch`` when it is loaded, on the first-load path (COPY)
and on the general merge alike, so the target gate's ``patient_matches_*`` rules never meet it.
A merged duplicate's rows are not a mismatch: they follow their surviving patient."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import psycopg
import pytest

from cutover import pipeline
from cutover.loading.bulk import defer_constraints, restore_constraints
from cutover.simulate import simulate
from cutover.validation.runner import run_gate

pytestmark = pytest.mark.slow

AS_OF = date(2026, 11, 27)


@pytest.mark.parametrize("first_load", [True, False])
def test_a_visit_on_another_patients_case_is_rejected_before_it_is_written(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, first_load: bool
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    path = tmp_path / "legacy.db"
    manifest = simulate(f"sqlite:///{path}", patients=60, seed=8)
    duplicates = {d["legacy_id"] for d in manifest["defects"] if d["kind"] == "duplicate_patient"}
    with sqlite3.connect(path) as conn:
        # two visits and a charge moved onto the case (visit) of another patient who is no duplicate
        rows = conn.execute(
            "SELECT v.visit_id, v.pat_id, c.case_id, c.pat_id FROM visits v JOIN cases c"
            " ON c.pat_id <> v.pat_id AND c.case_id <> v.case_id ORDER BY v.visit_id, c.case_id"
        ).fetchall()
        chosen = [r for r in rows if r[1] not in duplicates and r[3] not in duplicates]
        moved = []
        for visit_id, _, case_id, _ in chosen:
            if visit_id not in moved and len(moved) < 2:
                conn.execute("UPDATE visits SET case_id = ? WHERE visit_id = ?", (case_id, visit_id))
                moved.append(visit_id)
        planted = {d["legacy_id"] for d in manifest["defects"] if d["table"] in ("charges", "visits")}
        charge_id, other_visit = next(
            (c, v)
            for c, v, cp, vp in conn.execute(
                "SELECT ch.charge_id, v.visit_id, ch.pat_id, v.pat_id FROM charges ch JOIN visits v"
                " ON v.pat_id <> ch.pat_id AND v.visit_id <> ch.visit_id ORDER BY ch.charge_id, v.visit_id"
            )
            if c not in planted and v not in planted and v not in moved and {cp, vp}.isdisjoint(duplicates)
        )
        conn.execute("UPDATE charges SET visit_id = ? WHERE charge_id = ?", (other_visit, charge_id))
    run = "mismatch"
    store = f"file://{tmp_path / 'stage'}"
    pipeline.prepare_target(pg_url)
    pipeline.begin_run(pg_url, run, "pt_cutover", {}, "tester")
    for table in pipeline.migrated_tables():
        pipeline.extract_table(f"sqlite:///{path}", store, run, table)
        pipeline.map_table(store, run, table, as_of=AS_OF)
    if first_load:
        defer_constraints(pg_url, run)
    loaded = {t: pipeline.load_mapped(pg_url, store, run, t) for t in pipeline.migrated_tables()}
    if first_load:
        restore_constraints(pg_url, run)
        assert loaded["visits"]["direct_batches"] > 0  # the COPY path decided it
    with psycopg.connect(pg_url) as conn:
        rejected = dict(
            conn.execute(
                "SELECT legacy_table || ' ' || legacy_id, reason_code || ':' || coalesce(detail, '')"
                " FROM migration.reject WHERE reason_code = 'patient_mismatch'"
            ).fetchall()
        )
    expected = {f"visits {v}": "patient_mismatch:case_id" for v in moved}
    expected[f"charges {charge_id}"] = "patient_mismatch:visit_id"
    assert {k: v for k, v in rejected.items() if k in expected} == expected
    report = run_gate("target", store_url=store, run_id=run, target_url=pg_url, out_dir=tmp_path / "out")
    matches = [r for r in report.results if "patient_matches" in r.expectation]
    assert matches
    assert all(r.unexpected_count == 0 for r in matches), [
        (r.expectation, r.unexpected_count) for r in matches
    ]
