"""End to end through the real path: simulate → `cutover run pt_cutover` (Airflow's dag.test) →
embedded or system PostgreSQL target → summary.json that accounts for every legacy row, checked
against the simulator's ground truth."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cli_helpers import RAISED, evidence_of, logs_of, run_cutover
from cutover.legacy.profile import load_document
from cutover.mapping.specs import SPECS

pytestmark = pytest.mark.slow

TARGETS = {legacy: spec.target for legacy, spec in SPECS.items()}


def _check_accounts(summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    assert summary["run_id"]
    assert set(summary["tables"]) == set(manifest["tables"])
    for table in manifest["tables"]:
        row = summary["tables"][table]
        assert row["legacy_rows"] == manifest["tables"][table], table
        assert row["legacy_rows"] == row["migrated"] + row["merged"] + row["rejected"], table
        assert row["migrated"] > 0, table


def _check_target(url: str, summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    with psycopg.connect(url) as conn:
        for legacy, target in TARGETS.items():
            (count,) = conn.execute(
                f"SELECT count(*) FROM (SELECT DISTINCT legacy_id FROM migration.crosswalk"
                f" JOIN pt.{target} t ON t.id = new_id WHERE legacy_table = %s) x",
                (legacy,),
            ).fetchone()
            assert count == summary["tables"][legacy]["migrated"], legacy
        rejected = {
            (table, int(legacy_id)): reason
            for table, legacy_id, reason in conn.execute(
                "SELECT legacy_table, legacy_id, reason_code FROM migration.reject"
            ).fetchall()
        }
        flagged = {
            (table, int(legacy_id), code)
            for table, legacy_id, code in conn.execute(
                "SELECT legacy_table, legacy_id, flag_code FROM migration.flag"
            ).fetchall()
        }
        (ssn_kept,) = conn.execute(
            "SELECT count(*) FROM pt.patient WHERE ssn IN ('999999999', '000000000', '123456789')"
        ).fetchone()
        owner = dict(
            conn.execute(
                "SELECT legacy_id, coalesce(merged_into, new_id) FROM migration.crosswalk WHERE legacy_table = 'patients'"
            ).fetchall()
        )
    assert ssn_kept == 0
    # Duplicate patients resolve to one patient (precision and recall against the planted pairs).
    truth = {
        frozenset((str(d["legacy_id"]), str(d["of"])))
        for d in manifest["defects"]
        if d["kind"] == "duplicate_patient"
    }
    by_owner: dict[Any, set[str]] = {}
    for legacy_id, new_id in owner.items():
        by_owner.setdefault(new_id, set()).add(legacy_id)
    predicted = {frozenset((a, b)) for ids in by_owner.values() for a in ids for b in ids if a < b}
    findable = {pair for pair in truth if all(i in owner for i in pair)}
    assert findable
    assert len(predicted & truth) / len(predicted) >= 0.99
    assert len(predicted & findable) / len(findable) >= 0.95
    assert summary["tables"]["patients"]["merged"] == sum(len(ids) - 1 for ids in by_owner.values())
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in manifest["defects"]:
        by_kind.setdefault(d["kind"], []).append(d)
    # Rejected with their own reason (the row's own defect is found before its parents are looked up).
    for kind in ("date_impossible", "score_out_of_range", "discharge_before_start"):
        assert by_kind[kind], kind
        for d in by_kind[kind]:
            assert rejected.get((d["table"], d["legacy_id"])) == kind, d
    # Orphans: rejected at load, their parent gone (or itself rejected).
    for d in by_kind["orphan"]:
        assert rejected.get((d["table"], d["legacy_id"])) in {"orphan", "parent_rejected"}, d
    # Flagged kinds migrate (unless a parent was rejected) and carry their flag.
    for kind, code in (
        ("invalid_npi", "npi_invalid"),
        ("note_without_appointment", "note_without_appointment"),
    ):
        for d in by_kind[kind]:
            key = (d["table"], d["legacy_id"])
            assert key in rejected or (*key, code) in flagged, d


SAFETY = {"allergies": "allergy", "medications": "medication", "precautions": "precaution"}
PRECAUTION_KINDS = load_document("simulator").data["tables"]["precautions"]["map"]["fields"]["kind"]["with"][
    "codes"
]
"""The simulator's precaution codes → kinds: the true kind of a precaution its note only names."""


def _check_safety(url: str, summary: dict[str, Any], manifest: dict[str, Any], folder: Path) -> None:
    """Every legacy safety record arrived (its own row or merged into the first of its patient), none
    rejected on its own; the rejected patients' records are on the worklist; the report says so."""
    safety = summary["safety"]
    for legacy, target in SAFETY.items():
        row = summary["tables"][legacy]
        assert set(summary["reject_reasons"].get(legacy, {})) <= {"parent_rejected"}, legacy
        assert safety["tables"][target]["records"] == row["migrated"] + row["merged"], legacy
        assert safety["tables"][target]["rows"] == row["migrated"], legacy
    planted = {(d["kind"], d["table"], d["legacy_id"]): d for d in manifest["defects"]}
    with psycopg.connect(url) as conn:
        nka = {
            int(i)
            for (i,) in conn.execute(
                "SELECT c.legacy_id FROM migration.crosswalk c JOIN pt.allergy a ON a.id = c.new_id"
                " WHERE c.legacy_table = 'allergies' AND a.no_known_allergies"
            ).fetchall()
        }
        kinds = dict(
            conn.execute(
                "SELECT c.legacy_id::bigint, p.kind FROM migration.crosswalk c"
                " JOIN pt.precaution p ON p.id = c.new_id WHERE c.legacy_table = 'precautions' AND p.kind_from_text"
            ).fetchall()
        )
        rejected_patients = {
            i
            for (i,) in conn.execute("SELECT legacy_id FROM migration.reject WHERE legacy_table = 'patients'")
        }
    # an NKDA spelling is an explicit record; a precaution buried in a note has the kind its code had
    assert {i for kind, t, i in planted if kind == "allergy_no_known"} >= nka > set()
    in_note = {i: d["code"] for (kind, _, i), d in planted.items() if kind == "precaution_in_note"}
    assert {i: PRECAUTION_KINDS[c] for i, c in in_note.items() if i in kinds} == {
        i: k for i, k in kinds.items() if i in in_note
    }
    assert len(set(kinds) & set(in_note)) >= len(in_note) - summary["tables"]["precautions"]["rejected"] > 0
    lines = (folder / "safety_worklist.csv").read_text().splitlines()
    assert lines[0].startswith("patient_legacy_id,patient_reject_reason,safety_records")
    listed = {line.split(",")[0] for line in lines[1:]}
    counts = [int(line.split(",")[2]) for line in lines[1:]]
    assert listed <= rejected_patients
    assert counts == sorted(counts, reverse=True)  # most records first
    held = safety["rejected_patients"]
    assert held["records"] == sum(counts) == sum(summary["tables"][t]["rejected"] for t in SAFETY)
    report = (folder / "report.html").read_text()
    assert "Patient-safety records" in report
    assert "chart_safety 0" in report


def _no_canaries(manifest: dict[str, Any], output: str, *folders: Path) -> None:
    """No planted PHI value in the run's output (task logs included) or in any evidence file."""
    canaries = [c for c in manifest["canaries"] if len(c) >= 6]
    assert canaries
    texts = {"output": output}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in {".json", ".html", ".md", ".txt", ".log"}:
                texts[str(path)] = path.read_text(errors="replace")
    for where, text in texts.items():
        leaked = [c for c in canaries if c in text]
        assert not leaked, f"{len(leaked)} canaries in {where}"


def _check_console(result: subprocess.CompletedProcess[str], home: Path) -> None:
    """A quiet console (issue 18): a line per stage, the summary and the checks, no task logging; the
    task logs in one file per run under the state folder, each named once."""
    lines = result.stdout.splitlines()
    assert len(lines) < 150, result.stdout
    assert lines[-1].startswith("evidence: ")
    assert not [line for line in lines if RAISED.match(line)], result.stdout  # nothing failed, nothing raised
    assert "\x1b[" not in result.stdout  # no terminal control codes in a pipe
    stages = {line.split()[1] for line in lines if line.startswith("  ") and len(line.split()) > 1}
    assert {"snapshot_legacy", "estimate_downtime", "gate_target", "reconcile", "write_evidence"} <= stages
    assert "[DAG TEST]" not in result.stdout + result.stderr  # Airflow's task logging went to the logs
    logs = logs_of(result)
    assert [path.parent.name for path in logs] == ["pt_backup", "pt_sample_transfer", "pt_cutover"]
    for path in logs:
        assert path.is_relative_to(home / "logs"), path
        assert path.stat().st_mode & 0o077 == 0, path  # the owner's only, as the rest of the state folder
        text = path.read_text()
        assert "[DAG TEST] starting task_id=" in text, path  # Airflow's task log, all of it
        assert "Task instance state updated" in text, path


def test_demo_on_embedded_defaults(fresh_home: Path) -> None:
    home = fresh_home  # a user's first `make demo`: nothing prepared, not even Airflow's metadata database
    result = run_cutover(["demo", "--patients", "300", "--seed", "11"], home)
    folder = evidence_of(result)
    summary = json.loads((folder / "summary.json").read_text())
    manifest = json.loads((home / "legacy.db.manifest.json").read_text())
    _check_accounts(summary, manifest)
    _check_console(result, home)
    # every run of the demo (backup, trial, cutover) left evidence and a log; none holds a planted value
    evidence = home / "evidence"  # every run's (evidence/<dag_id>/<run key>/, a version per seal)
    _no_canaries(manifest, result.stdout + result.stderr, evidence, home / "staging", home / "logs")
    runs = {json.loads(p.read_text())["dag_id"] for p in evidence.rglob("summary.json")}
    assert runs == {"pt_sample_transfer", "pt_cutover"}
    trials = list(evidence.rglob("sample_estimate.json"))
    assert trials
    assert {json.loads(trial.read_text())["decision"] for trial in trials} == {"go"}
    assert (folder / "report.html").is_file()
    sealed = subprocess.run(
        ["sha256sum", "-c", "--strict", "manifest.sha256"], cwd=folder, capture_output=True
    )
    assert sealed.returncode == 0, sealed.stdout[-2000:]
    assert b"defect_verification.json: OK" in sealed.stdout
    # the whole chain: the cutover's two versions (the demo's check is the second), the backup and
    # the trial it relied on, their store copies and the target's record
    assert folder.name == "v2"
    run_id = json.loads((folder / "bundle.json").read_text())["run_id"]
    chain = run_cutover(["evidence", "verify", run_id], home)
    assert chain.returncode == 0, chain.stdout + chain.stderr
    verified = [line.split()[1:3] for line in chain.stdout.splitlines() if line.startswith("ok")]
    assert [(where.split("/")[0], version.rstrip(":")) for where, version in verified] == [
        ("pt_cutover", "v1"),
        ("pt_cutover", "v2"),
        ("pt_backup", "v1"),
        ("pt_sample_transfer", "v1"),
    ]
    verification = json.loads((folder / "defect_verification.json").read_text())
    assert set(verification) == {d["kind"] for d in manifest["defects"]}
    for kind, row in verification.items():
        assert row["ok"], (kind, row["examples"])
        if row["expected"] != "merge":
            assert row["disagree"] == 0, (kind, row["examples"])
        assert row["agree"] + row["explained"] == row["planted"], kind
        assert row["agree"] > 0, kind
    from cutover.embedded import embedded_postgres_url

    os.environ["CUTOVER_HOME"] = str(home)
    try:
        _check_target(embedded_postgres_url(), summary, manifest)
        _check_safety(embedded_postgres_url(), summary, manifest, folder)
    finally:
        os.environ.pop("CUTOVER_HOME")


def test_mariadb_legacy_into_system_postgres(
    home: Path, tmp_path: Path, mariadb_url: str, pg_url: str
) -> None:
    manifest_path = tmp_path / "legacy.manifest.json"
    sim = run_cutover(
        [
            "simulate",
            "--patients",
            "200",
            "--seed",
            "5",
            "--url",
            mariadb_url,
            "--manifest",
            str(manifest_path),
        ],
        home,
    )
    assert sim.returncode == 0, sim.stderr[-3000:]
    env = {"AIRFLOW_CONN_LEGACY_DB": mariadb_url, "AIRFLOW_CONN_TARGET_DB": pg_url}
    evidence_of(run_cutover(["run", "pt_backup"], home, env))  # mariadb-dump, restore test on the server
    folder = evidence_of(run_cutover(["run", "pt_cutover"], home, env))
    summary = json.loads((folder / "summary.json").read_text())
    manifest = json.loads(manifest_path.read_text())
    _check_accounts(summary, manifest)
    _check_target(pg_url, summary, manifest)
