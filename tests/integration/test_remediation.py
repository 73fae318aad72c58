"""The remediation loop, end to end on a real PostgreSQL target and a simulated legacy clinic.

A big-bang cutover (the pipeline's stages, called as the DAG's tasks call them) rejects patients with an
impossible birth date and, with each, the chart that hangs off it. A steward corrects one patient's
birth date; a remediation run (``pt_remediate``'s tasks, in order) must then carry exactly that patient
and every row that waited on it, close the reject, and leave the correction in the audit log with the
steward's name and no value. The worklist, the corrections file and every message hold no value either.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pipeline_stages import extract_map_load

from cutover import pipeline, remediation, remediation_run
from cutover.errors import ConfigError, IntegrityError
from cutover.evidence import run_key
from cutover.legacy.profile import legacy_tables
from cutover.simulate import simulate
from cutover.staging.store import open_store

CUTOVER = "manual__2026-11-27T18:00:00+00:00"
REMEDIATE = "manual__2026-11-30T09:00:00+00:00"
GOOD_DOB = "1961-04-12"


def _outcome(target: str, table: str, legacy_id: str) -> str | None:
    with psycopg.connect(target) as conn:
        crossed = conn.execute(
            "SELECT outcome FROM migration.crosswalk WHERE legacy_table = %s AND legacy_id = %s",
            (table, legacy_id),
        ).fetchone()
        rejected = conn.execute(
            "SELECT reason_code FROM migration.reject WHERE legacy_table = %s AND legacy_id = %s",
            (table, legacy_id),
        ).fetchone()
    return crossed[0] if crossed else (f"rejected {rejected[0]}" if rejected else None)


def _everything_in(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def migrated(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    legacy = f"sqlite:///{tmp_path / 'legacy.db'}"
    truth = simulate(legacy, patients=150, seed=11)
    store = f"file://{tmp_path / 'store'}"
    pipeline.prepare_target(pg_url)
    pipeline.begin_run(pg_url, CUTOVER, "pt_cutover", {"mode": "big_bang"}, "engineer", store_url=store)
    extract_map_load(legacy, pg_url, store, CUTOVER)
    pipeline.write_summary(pg_url, store, CUTOVER, "pt_cutover", max_reject_rate=0.5)
    return {"legacy": legacy, "target": pg_url, "store": store, "truth": truth}


def _rejected_patient_with_chart(target: str) -> tuple[str, dict[str, set[str]]]:
    """A patient rejected for an impossible birth date whose rejection pulled rows along, and those rows."""
    with psycopg.connect(target) as conn:
        rows = conn.execute(
            "SELECT root_legacy_id, legacy_table, legacy_id FROM migration.reject"
            " WHERE root_table = 'patients' AND root_reason = 'date_impossible' AND reason_code = 'parent_rejected'"
        ).fetchall()
    charts: dict[str, dict[str, set[str]]] = {}
    for root, table, legacy_id in rows:
        charts.setdefault(root, {}).setdefault(table, set()).add(legacy_id)
    patient = max(charts, key=lambda p: (sum(len(v) for v in charts[p].values()), p))
    return patient, charts[patient]


def test_a_corrected_birth_date_carries_the_patient_and_every_row_that_waited_on_it(
    migrated: dict[str, Any], tmp_path: Path
) -> None:
    target, store_url, legacy = migrated["target"], migrated["store"], migrated["legacy"]
    patient, chart = _rejected_patient_with_chart(target)
    assert sum(len(v) for v in chart.values()) > 0
    assert _outcome(target, "patients", patient) == "rejected date_impossible"

    # the cutover's evidence holds the worklist: the patient, the column at fault, what it pulled along
    cut_evidence = pipeline.latest_evidence(CUTOVER)
    with (cut_evidence / remediation.WORKLIST).open() as handle:
        worklist = {(r["legacy_table"], r["legacy_id"]): r for r in csv.DictReader(handle)}
    entry = worklist[("patients", patient)]
    assert (entry["reason"], entry["status"]) == ("date_impossible", "open")
    assert "dob" in entry["field"].split(",")  # the legacy column(s) the rule read
    assert int(entry["dependants"]) == sum(len(v) for v in chart.values())
    assert entry["opened_run"] == CUTOVER
    # and the ambiguous duplicate pairs the matcher left to a person: ids and scores, as staged
    with (cut_evidence / remediation.REVIEW).open() as handle:
        review = [
            (r["legacy_table"], r["left_id"], r["right_id"], float(r["score"]))
            for r in csv.DictReader(handle)
        ]
    staged = json.loads(open_store(store_url).get(f"runs/{run_key(CUTOVER)}/mapped/patients/_review.json"))
    assert review == [("patients", p["left_id"], p["right_id"], p["score"]) for p in staged["pairs"]]

    # refusals, one line each: a migrated row, a cascade, the key, a value the column cannot hold
    store = open_store(store_url)
    with psycopg.connect(target) as conn:
        (migrated_patient,) = conn.execute(
            "SELECT legacy_id FROM migration.crosswalk WHERE legacy_table = 'patients' AND outcome = 'migrated' LIMIT 1"
        ).fetchone()
    with pytest.raises(ConfigError, match="is not rejected"):
        remediation.correct(target, store, [("patients", migrated_patient, "dob", GOOD_DOB)], actor="steward")
    table, ids = next(iter(chart.items()))
    column = next(c for c, kind in legacy_tables()[table].columns if kind == "text")
    with pytest.raises(ConfigError, match=f"its root is patients {patient}"):
        remediation.correct(target, store, [(table, min(ids), column, "x")], actor="steward")
    with pytest.raises(ConfigError, match="the row's key"):
        remediation.correct(target, store, [("patients", patient, "pat_id", "1")], actor="steward")
    with pytest.raises(ConfigError, match="legacy int value"):
        remediation.correct(target, store, [("patients", patient, "clinic_id", GOOD_DOB)], actor="steward")
    assert remediation.load_corrections(store) == []

    # the steward corrects the birth date; the remediation run carries it
    (done,) = remediation.correct(target, store, [("patients", patient, "dob", GOOD_DOB)], actor="steward")
    assert done.by == "steward"
    sealed = store.get(remediation.CORRECTIONS)
    assert GOOD_DOB.encode() not in sealed  # encrypted at rest, on every kind of store

    planned = remediation_run.plan_run(store_url, target, REMEDIATE)
    assert planned["corrected_rows"] == 1
    pipeline.begin_run(
        target, REMEDIATE, "pt_remediate", {"corrected_rows": 1}, "steward", store_url=store_url
    )
    extract_map_load(legacy, target, store_url, REMEDIATE)
    report = remediation_run.write_report(target, store_url, REMEDIATE, planned)
    pipeline.write_summary(target, store_url, REMEDIATE, "pt_remediate", max_reject_rate=1.0)

    # the patient and every row that waited on it are migrated now
    assert _outcome(target, "patients", patient) == "migrated"
    still = {
        (t, i): _outcome(target, t, i)
        for t, ids in chart.items()
        for i in ids
        if _outcome(target, t, i) not in ("migrated", "merged")
    }
    assert still == {}
    assert report["carried"] == 1 + sum(len(v) for v in chart.values())
    assert report["rejected_again"] == 0
    with psycopg.connect(target) as conn:
        (left,) = conn.execute(
            "SELECT count(*) FROM migration.reject WHERE root_table = 'patients' AND root_legacy_id = %s",
            (patient,),
        ).fetchone()
        status, closed_run, decided_by, columns = conn.execute(
            "SELECT status, closed_run, decided_by, columns FROM migration.remediation"
            " WHERE legacy_table = 'patients' AND legacy_id = %s",
            (patient,),
        ).fetchone()
        audit = conn.execute(
            "SELECT actor, detail FROM migration.audit_log WHERE action = 'correct'"
        ).fetchall()
        (dob,) = conn.execute(
            "SELECT p.birth_date FROM pt.patient p JOIN migration.crosswalk c ON c.new_id = p.id"
            " WHERE c.legacy_table = 'patients' AND c.legacy_id = %s",
            (patient,),
        ).fetchone()
    assert left == 0
    assert (status, closed_run, decided_by, columns) == ("closed", REMEDIATE, "steward", ["dob"])
    assert str(dob) == GOOD_DOB
    ((actor, detail),) = audit
    assert actor == "steward"
    assert {k: detail[k] for k in ("legacy_table", "legacy_id", "column")} == {
        "legacy_table": "patients",
        "legacy_id": patient,
        "column": "dob",
    }
    assert GOOD_DOB not in json.dumps(detail)

    # the worklist no longer lists it; the other rejects stay open; no value in any evidence
    summary = json.loads((pipeline.latest_evidence(REMEDIATE) / "summary.json").read_text())
    assert summary["remediation"]["closed"] == 1
    assert summary["remediation"]["open"] == len(worklist) - 1
    rows = remediation.worklist(target)
    assert ("patients", patient) not in {(r["legacy_table"], r["legacy_id"]) for r in rows}
    for folder in (cut_evidence, pipeline.latest_evidence(REMEDIATE)):
        assert GOOD_DOB not in _everything_in(folder)

    # nothing more to do: a second remediation run has no scope
    with pytest.raises(remediation.NothingToRemediate):
        remediation_run.plan_run(store_url, target, "manual__2026-11-30T10:00:00+00:00")


def test_a_correction_the_audit_log_does_not_vouch_for_is_refused(migrated: dict[str, Any]) -> None:
    """Someone who can write to the staging store (and even knows the staging key) plants a correction
    without ``cutover remediation``: every run refuses to start rather than apply it."""
    target, store_url = migrated["target"], migrated["store"]
    patient, _ = _rejected_patient_with_chart(target)
    store = open_store(store_url)
    planted = remediation.Correction(
        "patients", patient, "dob", GOOD_DOB, "steward", "2026-11-30T09:00:00+00:00"
    )
    remediation.save_corrections(store, [planted])
    with pytest.raises(IntegrityError, match=f"not in the audit log \\(patients {patient} dob\\)") as refused:
        remediation_run.plan_run(store_url, target, REMEDIATE)
    assert GOOD_DOB not in str(refused.value)
    with pytest.raises(IntegrityError, match="not in the audit log"):
        pipeline.begin_run(target, REMEDIATE, "pt_remediate", {}, "steward", store_url=store_url)
    assert not store.exists(f"runs/{run_key(REMEDIATE)}/corrections.enc")


def test_a_row_accepted_as_not_carried_leaves_the_open_worklist(migrated: dict[str, Any]) -> None:
    target = migrated["target"]
    patient, _ = _rejected_patient_with_chart(target)
    with pytest.raises(ConfigError, match="lower-case code"):
        remediation.accept(target, "patients", patient, note="Test patient 1961", actor="steward")
    for beyond_the_ledgers_check in ("x" * 65, "café"):  # refused in one line, not by the CHECK of V012
        with pytest.raises(ConfigError, match="lower-case code"):
            remediation.accept(target, "patients", patient, note=beyond_the_ledgers_check, actor="steward")
    remediation.accept(target, "patients", patient, note="test_patient", actor="steward")
    rows = {(r["legacy_table"], r["legacy_id"]): r for r in remediation.worklist(target)}
    assert (rows[("patients", patient)]["status"], rows[("patients", patient)]["decided_by"]) == (
        "accepted",
        "steward",
    )
    with psycopg.connect(target) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM migration.audit_log WHERE action = 'accept not carried' AND actor = 'steward'"
        ).fetchone()
    assert n == 1


def test_a_duplicate_decision_is_applied_by_the_next_cutover_and_refused_once_carried(
    migrated: dict[str, Any], pg_admin_url: str
) -> None:
    """A pair the matcher merged at the first target is decided "different" before a second target's
    cutover: there both arrive, as two patients. On the first target, where both are carried, the same
    decision is refused (the new system merges or splits them)."""
    target, store_url, legacy = migrated["target"], migrated["store"], migrated["legacy"]
    with psycopg.connect(target) as conn:
        left, right = conn.execute(
            "SELECT m.legacy_id, s.legacy_id FROM migration.crosswalk m JOIN migration.crosswalk s"
            "  ON s.legacy_table = 'patients' AND s.new_id = m.merged_into"
            " WHERE m.legacy_table = 'patients' AND m.outcome = 'merged' ORDER BY 1 LIMIT 1"
        ).fetchone()
    with pytest.raises(ConfigError, match="already carried"):
        remediation.decide(target, "patients", left, right, "different", actor="steward")
    with pytest.raises(ConfigError, match="unknown legacy table whose duplicates are matched 'visits'"):
        remediation.decide(target, "visits", left, right, "different", actor="steward")

    second = target.rsplit("/", 1)[1] + "_decided"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{second}"')
        conn.execute(f'CREATE DATABASE "{second}"')
    other = target.rsplit("/", 1)[0] + f"/{second}"
    try:
        pipeline.prepare_target(other)
        remediation.decide(other, "patients", right, left, "different", actor="steward")
        run = "manual__2026-12-04T18:00:00+00:00"
        pipeline.begin_run(other, run, "pt_cutover", {"mode": "big_bang"}, "engineer", store_url=store_url)
        extract_map_load(legacy, other, store_url, run)
        assert _outcome(other, "patients", left) == "migrated"
        assert _outcome(other, "patients", right) == "migrated"
        with psycopg.connect(other) as conn:
            (actor, detail) = conn.execute(
                "SELECT actor, detail FROM migration.audit_log WHERE action = 'decide duplicate pair'"
            ).fetchone()
        assert actor == "steward"
        assert detail["decision"] == "different"
        assert {detail["left_id"], detail["right_id"]} == {left, right}
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{second}" WITH (FORCE)')


def test_every_run_refreshes_a_stale_root_reason_on_the_rows_a_root_pulled_along(
    migrated: dict[str, Any],
) -> None:
    target = migrated["target"]
    patient, chart = _rejected_patient_with_chart(target)
    with psycopg.connect(target) as conn:
        conn.execute(
            "UPDATE migration.reject SET root_reason = 'stale_reason'"
            " WHERE root_table = 'patients' AND root_legacy_id = %s AND reason_code = 'parent_rejected'",
            (patient,),
        )
    remediation.track(target, CUTOVER)
    with psycopg.connect(target) as conn:
        reasons = conn.execute(
            "SELECT root_reason, count(*) FROM migration.reject"
            " WHERE root_table = 'patients' AND root_legacy_id = %s AND reason_code = 'parent_rejected' GROUP BY 1",
            (patient,),
        ).fetchall()
    assert reasons == [("date_impossible", sum(len(v) for v in chart.values()))]
