"""The delta sync reports legacy rows deleted after their wave's cutover, and deletes nothing.

Real PostgreSQL target, a simulated SQLite legacy database, the pipeline's stages called directly
(no Airflow): two waves of a three-wave plan cut over, a delta sync that re-stamps rows of both,
then deletions in the legacy system and a second sync whose report must name exactly the deleted
migrated rows, with the wave each belonged to, and no patient value.
"""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pipeline_stages import extract_map_load

from cutover import delta, pipeline
from cutover.simulate import simulate

AS_OF = date(2026, 11, 27)
LATER = "2030-01-05 10:00:00"


def _cutover(legacy: str, target: str, store: str, run_id: str, wave: str) -> None:
    pipeline.prepare_target(target)
    pipeline.begin_run(target, run_id, "pt_cutover", {"mode": "phased", "wave": wave}, "tester")
    pipeline.plan_scope(legacy, store, run_id, kind="wave", as_of=AS_OF, wave=wave)
    extract_map_load(legacy, target, store, run_id)
    pipeline.write_summary(target, store, run_id, "pt_cutover", max_reject_rate=0.5)


def _sync(legacy: str, target: str, store: str, run_id: str) -> dict[str, Any]:
    """What pt_delta_sync's tasks call, in their order (the GX gate left out)."""
    planned = delta.plan_delta(legacy, store, target, run_id, as_of=AS_OF)
    pipeline.begin_run(target, run_id, "pt_delta_sync", {"waves": planned["waves"]}, "tester")
    extract_map_load(legacy, target, store, run_id)
    result = delta.write_delta_report(store, run_id, planned, legacy_url=legacy, target_url=target)
    pipeline.write_summary(target, store, run_id, "pt_delta_sync", max_reject_rate=0.5)
    return result


def _crosswalk(target: str) -> dict[tuple[str, int], tuple[str, str, str]]:
    """(legacy table, legacy id) → (outcome, the pt row's id, run id)."""
    with psycopg.connect(target) as conn:
        rows = conn.execute(
            "SELECT legacy_table, legacy_id, outcome, coalesce(merged_into, new_id)::text, run_id"
            " FROM migration.crosswalk"
        ).fetchall()
    return {(t, int(i)): (o, n, r) for t, i, o, n, r in rows}


def test_a_sync_reports_exactly_the_migrated_rows_deleted_in_the_legacy_system(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "timezone: America/New_York\n"
        "waves:\n"
        "  - {name: wave-1, go_live: 2026-12-04, clinics: [1]}\n"
        "  - {name: wave-2, go_live: 2026-12-11, clinics: [2]}\n"
        "  - {name: wave-3, go_live: 2026-12-18, clinics: remaining}\n"
    )
    monkeypatch.setenv("CUTOVER_PLAN", str(plan))
    path = tmp_path / "legacy.db"
    legacy = f"sqlite:///{path}"
    truth = simulate(legacy, patients=150, seed=7)
    store = f"file://{tmp_path / 'stage'}"
    db = sqlite3.connect(path)
    home_clinic = dict(db.execute("SELECT pat_id, clinic_id FROM patients").fetchall())

    _cutover(legacy, pg_url, store, "cut-1", "wave-1")
    _cutover(legacy, pg_url, store, "cut-2", "wave-2")
    ledger = _crosswalk(pg_url)

    # a wave-1 patient whose name is a canary, with two migrated visits and a migrated document
    canaries = {c["legacy_id"] for c in truth["canary_cells"] if c["table"] == "patients"}
    visits_of: dict[int, list[int]] = {}
    for visit, patient in db.execute("SELECT visit_id, pat_id FROM visits ORDER BY visit_id"):
        if ledger.get(("visits", visit), ("",))[0] == "migrated":
            visits_of.setdefault(patient, []).append(visit)
    docs_of: dict[int, list[int]] = {}
    for doc, patient in db.execute("SELECT doc_id, pat_id FROM documents ORDER BY doc_id"):
        if ledger.get(("documents", doc), ("",))[0] == "migrated":
            docs_of.setdefault(patient, []).append(doc)
    patient = next(
        p
        for p in sorted(canaries)
        if home_clinic.get(p) == 1 and len(visits_of.get(p, [])) >= 2 and docs_of.get(p)
    )
    visits, document = visits_of[patient][:2], docs_of[patient][0]
    merged = next(i for (t, i), (o, _, _) in sorted(ledger.items()) if t == "patients" and o == "merged")
    survivor = next(
        i
        for (t, i), (o, new_id, _) in ledger.items()
        if t == "patients" and o == "migrated" and new_id == ledger[("patients", merged)][1]
    )
    merged_wave = {1: "wave-1", 2: "wave-2"}[home_clinic[survivor]]  # a duplicate goes with its survivor
    (merged_name,) = db.execute("SELECT pat_name FROM patients WHERE pat_id = ?", (merged,)).fetchone()
    payer = min(i for t, i in ledger if t == "payers")
    with psycopg.connect(pg_url) as conn:
        rejected_visit = int(
            conn.execute(
                "SELECT min(legacy_id::bigint) FROM migration.reject WHERE legacy_table = 'visits'"
            ).fetchone()[0]
        )
    wave3_visit = next(
        v for v, p in db.execute("SELECT visit_id, pat_id FROM visits") if home_clinic.get(p) == 3
    )
    assert ("visits", wave3_visit) not in ledger  # not migrated: wave 3 has not gone live

    # a late edit of one of those visits: the first sync (both waves) re-stamps its ledger row; and a
    # late edit of an allergy that stands for two legacy records (entered in two episodes)
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            "SELECT source_records FROM pt.allergy WHERE cardinality(source_records) > 1 ORDER BY id LIMIT 1"
        ).fetchone()
    assert found is not None, "the clinic holds an allergy entered in two episodes"
    sources = found[0]
    with db:
        db.execute("UPDATE visits SET modified = ? WHERE visit_id = ?", (LATER, visits[0]))
        db.execute("UPDATE allergies SET modified = ? WHERE allergy_id = ?", (LATER, int(sources[0])))
    first = _sync(legacy, pg_url, store, "sync-1")
    assert first == {
        "changed_rows": first["changed_rows"],
        "waves": ["wave-1", "wave-2"],
        "deleted_rows": 0,
        "removed_rows": 0,  # no row of a database is flagged removed: only an extract's export flag says so
    }
    restamped = _crosswalk(pg_url)
    assert restamped[("visits", visits[0])][2] == "sync-1"
    # the synced survivor still stands for both records, its duplicate still merged into it
    with psycopg.connect(pg_url) as conn:
        (after,) = conn.execute(
            "SELECT a.source_records FROM pt.allergy a JOIN migration.crosswalk c ON c.new_id = a.id"
            " WHERE c.legacy_table = 'allergies' AND c.legacy_id = %s",
            (sources[0],),
        ).fetchone()
    assert after == sources
    assert restamped[("allergies", int(sources[1]))][:2] == (
        "merged",
        restamped[("allergies", int(sources[0]))][1],
    )
    assert restamped[("patients", merged)][2] == "sync-1"  # patients are taken whole by a sync
    report = json.loads((pipeline.latest_evidence("sync-1") / "delta_report.json").read_text())
    assert report["deleted_rows"] == dict.fromkeys(pipeline.migrated_tables(), 0)

    # deleted in the legacy system: 2 visits and a document of the wave-1 patient, a merged
    # duplicate, a payer (reference data); also a rejected visit and a wave-3 visit, never migrated
    with db:
        db.executemany(
            "DELETE FROM visits WHERE visit_id = ?", [(v,) for v in [*visits, rejected_visit, wave3_visit]]
        )
        db.execute("DELETE FROM documents WHERE doc_id = ?", (document,))
        db.execute("DELETE FROM patients WHERE pat_id = ?", (merged,))
        db.execute("DELETE FROM payers WHERE payer_id = ?", (payer,))
    caplog.set_level(logging.INFO)
    second = _sync(legacy, pg_url, store, "sync-2")

    assert second["deleted_rows"] == 5
    folder = pipeline.latest_evidence("sync-2")
    report = json.loads((folder / "delta_report.json").read_text())
    assert report["deleted_rows"] == {
        **dict.fromkeys(pipeline.migrated_tables(), 0),
        "visits": 2,
        "documents": 1,
        "patients": 1,
        "payers": 1,
    }
    assert {"waves", "since", "last_runs", "run_id", "changed_rows"} <= set(report)  # kept as they were
    with (folder / "deleted_rows.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {
            "legacy_table": "payers",
            "legacy_id": str(payer),
            "new_id": ledger[("payers", payer)][1],
            "wave": "",
        },
        {
            "legacy_table": "patients",
            "legacy_id": str(merged),
            "new_id": ledger[("patients", merged)][1],
            "wave": merged_wave,
        },
        *(
            {
                "legacy_table": "visits",
                "legacy_id": str(v),
                "new_id": ledger[("visits", v)][1],
                "wave": "wave-1",
            }
            for v in sorted(visits)
        ),
        {
            "legacy_table": "documents",
            "legacy_id": str(document),
            "new_id": ledger[("documents", document)][1],
            "wave": "wave-1",
        },
    ]

    # a failed sync's loaded rows still count; a wave whose cutover failed is not migrated
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE migration.run SET state = 'failed' WHERE run_id = 'sync-1'")
        conn.execute(
            "INSERT INTO migration.run (run_id, dag_id, mode, state, conf) VALUES"
            " ('cut-3', 'pt_cutover', 'phased', 'failed', '{\"mode\": \"phased\", \"wave\": \"wave-3\"}')"
        )
    assert delta.covering_runs(pg_url) == {
        "cut-1": ["wave-1"],
        "cut-2": ["wave-2"],
        "sync-1": ["wave-1", "wave-2"],
        "sync-2": ["wave-1", "wave-2"],
    }
    assert delta.deleted_rows(legacy, pg_url, store).to_pylist() == rows

    # nothing deleted in the target: the rows, and the surviving patient, are all still there
    with psycopg.connect(pg_url) as conn:
        held = {
            table: conn.execute(
                f"SELECT count(*) FROM pt.{table} WHERE id = ANY(%s::uuid[])", (ids,)
            ).fetchone()[0]
            for table, ids in {
                "visit": [ledger[("visits", v)][1] for v in visits],
                "document": [ledger[("documents", document)][1]],
                "patient": [ledger[("patients", merged)][1]],
                "payer": [ledger[("payers", payer)][1]],
            }.items()
        }
    assert held == {"visit": 2, "document": 1, "patient": 1, "payer": 1}

    # ids and counts only: no canary, and none of the deleted rows' values, in the evidence or the log
    texts = [(folder / name).read_text() for name in ("delta_report.json", "deleted_rows.csv")] + [
        caplog.text
    ]
    values = [*truth["canaries"], merged_name]
    assert not [v for v in values if any(v.lower() in t.lower() for t in texts)]
    assert "visits 2, documents 1" in caplog.text  # counts are logged
