"""`cutover trace` on a loaded simulated clinic: migrated, merged, rejected and exploded records traced
against the simulator's manifest, every lookup audited; the run's real evidence rendered, sealed and
scanned for the simulator's canaries.

The clinic is loaded once per module through the pipeline's stages (no Airflow), as in test_pipeline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cutover import pipeline
from cutover.errors import ConfigError, TransientError
from cutover.ids import legacy_uuid
from cutover.report.bundle import publish_bundle, verify_bundle, verify_published, write_bundle_manifest
from cutover.report.migration_report import render_report, write_report
from cutover.simulate import simulate
from cutover.trace import cmd_trace, format_trace, trace

RUN_ID = "trace-run-1"
ACTOR = "auditor.jane"


@dataclass(frozen=True)
class Clinic:
    url: str
    manifest: dict[str, Any]
    evidence: Path
    store: str


@pytest.fixture(scope="module")
def clinic(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clinic]:
    """A simulated clinic (120 patients) extracted, mapped and loaded into its own database."""
    root = tmp_path_factory.mktemp("trace")
    legacy = f"sqlite:///{root / 'legacy.db'}"
    manifest = simulate(legacy, patients=120, seed=2024)
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    from urllib.parse import urlsplit

    target = urlsplit(pg_admin_url)._replace(path=f"/{name}").geturl()
    store = f"file://{root / 'stage'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUTOVER_HOME", str(root / "home"))
        pipeline.prepare_target(target)
        pipeline.begin_run(target, RUN_ID, "test", {}, "tester")
        for table in pipeline.migrated_tables():
            pipeline.extract_table(legacy, store, RUN_ID, table)
            pipeline.map_table(store, RUN_ID, table, as_of=date(2026, 11, 27))
        for table in pipeline.migrated_tables():
            pipeline.load_mapped(target, store, RUN_ID, table)
        result = pipeline.write_summary(target, store, RUN_ID, "test", max_reject_rate=0.5)
        yield Clinic(target, manifest, Path(result["evidence"]), store)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _defects(manifest: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    by_row: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in manifest["defects"]:
        by_row[(d["table"], str(d["legacy_id"]))].add(d["kind"])
    return by_row


def _audit_rows(url: str) -> list[tuple[str, dict[str, Any]]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT actor, detail FROM migration.audit_log WHERE action = 'trace' ORDER BY id"
        ).fetchall()


def test_a_clean_patient_traces_to_its_deterministic_id(clinic: Clinic) -> None:
    involved = {str(d["legacy_id"]) for d in clinic.manifest["defects"] if d["table"] == "patients"}
    involved |= {str(d.get("of")) for d in clinic.manifest["defects"] if d["kind"] == "duplicate_patient"}
    clean = next(str(i) for i in range(1, 200) if str(i) not in involved)
    result = trace(clinic.url, "patients", clean, actor=ACTOR)
    assert result["outcome"] == "migrated"
    assert result["new_table"] == "pt.patient"
    assert result["new_id"] == str(legacy_uuid("legacy", "patients", clean))
    assert result["target_rows"] == [result["new_id"]]
    assert result["in_target"] is True
    assert result["run_id"] == RUN_ID
    assert result["flags"] == []
    assert result["merged_from"] == []
    assert format_trace(result).startswith(
        f"patients {clean} (legacy system legacy): MIGRATED to pt.patient "
    )


def test_duplicates_trace_to_their_surviving_patient(clinic: Clinic) -> None:
    dups = [d for d in clinic.manifest["defects"] if d["kind"] == "duplicate_patient"]
    copies_of: dict[str, set[str]] = defaultdict(set)
    for d in dups:
        copies_of[str(d["of"])].add(str(d["legacy_id"]))
    merged = agree = 0
    for d in dups:
        dup, original = str(d["legacy_id"]), str(d["of"])
        a = trace(clinic.url, "patients", dup, actor=ACTOR)
        b = trace(clinic.url, "patients", original, actor=ACTOR)
        if "rejected" in (a["outcome"], b["outcome"]):
            continue  # nothing to merge into
        loser, survivor = (a, b) if a["outcome"] == "merged" else (b, a)
        if loser["outcome"] != "merged":
            continue  # a missed match: counted against recall below
        merged += 1
        family = {original} | copies_of[original]
        assert loser["survivor_legacy_id"] in family - {loser["legacy_id"]}
        assert loser["merged_into"] is not None
        assert loser["target_rows"] == [loser["merged_into"]]
        assert loser["in_target"] is True
        assert loser["new_id"] == str(legacy_uuid("legacy", "patients", loser["legacy_id"]))
        if survivor["outcome"] == "migrated" and survivor["new_id"] == loser["merged_into"]:
            agree += 1
            assert loser["legacy_id"] in survivor["merged_from"]
        text = format_trace(loser)
        assert "MERGED into pt.patient " + loser["merged_into"] in text
        assert f"survivor     legacy patients {loser['survivor_legacy_id']}" in text
    assert merged >= 0.9 * len(dups), (merged, len(dups))
    assert agree == merged


def test_a_rejected_record_names_reason_and_stage(clinic: Clinic) -> None:
    by_row = _defects(clinic.manifest)
    rejecting = {k for k, v in clinic.manifest["defect_kinds"].items() if v["expected"] == "reject"}
    candidates = [
        key
        for key, kinds in by_row.items()
        if key[0] == "patients"
        and kinds & rejecting == {"date_impossible"}
        and "duplicate_patient" not in kinds
    ]
    assert candidates
    for table, legacy_id in candidates:
        result = trace(clinic.url, table, legacy_id, actor=ACTOR)
        assert result["outcome"] == "rejected"
        assert result["reason_code"] == "date_impossible"
        assert result["stage"] == "map"
        assert result["new_id"] is None
        assert result["target_rows"] == []
        assert result["run_id"] == RUN_ID
        assert format_trace(result).endswith(f"run          {RUN_ID}")
        assert "REJECTED at map: date_impossible" in format_trace(result)


def test_an_orphan_visit_is_rejected_with_its_cascade_reason(clinic: Clinic) -> None:
    orphans = [
        str(d["legacy_id"])
        for d in clinic.manifest["defects"]
        if d["kind"] == "orphan" and d["table"] == "visits"
    ]
    assert orphans
    result = trace(clinic.url, "visits", orphans[0], actor=ACTOR)
    assert result["outcome"] == "rejected"
    assert result["reason_code"] in {"orphan", "ref_missing", "parent_rejected"}
    assert result["stage"] == "load"  # references resolve through the crosswalk at load


def test_a_cascaded_charge_traces_to_its_root_cause(clinic: Clinic) -> None:
    """A charge rejected because its visit was (because its episode was, because its patient was): the
    trace names every link and the root, whose reason is the root reject's own."""
    with psycopg.connect(clinic.url) as conn:
        picked = conn.execute(
            "SELECT legacy_id, parent_table, parent_legacy_id, root_table, root_legacy_id, root_reason"
            " FROM migration.reject WHERE legacy_table = 'charges' AND reason_code = 'parent_rejected'"
            " ORDER BY root_table = 'patients' DESC, length(legacy_id), legacy_id LIMIT 1"
        ).fetchone()
        assert picked is not None, "the simulated clinic has no cascaded charge"
        charge, parent_table, parent_id, root_table, root_id, root_reason = picked
        (root_reject,) = conn.execute(
            "SELECT reason_code FROM migration.reject WHERE legacy_system = 'legacy' AND legacy_table = %s"
            " AND legacy_id = %s",
            (root_table, root_id),
        ).fetchone() or (None,)
    assert (parent_table, root_table) == ("visits", "patients")
    assert root_reason == root_reject
    assert root_reason not in {"parent_rejected", None}
    result = trace(clinic.url, "charges", charge, actor=ACTOR)
    assert (result["root_table"], result["root_legacy_id"], result["root_reason"]) == (
        root_table,
        root_id,
        root_reject,
    )
    steps = result["lineage"]
    assert (steps[0]["legacy_table"], steps[0]["legacy_id"]) == ("charges", charge)
    assert (steps[1]["legacy_table"], steps[1]["legacy_id"]) == ("visits", parent_id)
    assert (steps[-1]["legacy_table"], steps[-1]["legacy_id"], steps[-1]["reason_code"]) == (
        root_table,
        root_id,
        root_reject,
    )
    assert {s["reason_code"] for s in steps[:-1]} == {"parent_rejected"}
    text = format_trace(result)
    assert (
        f"  lineage      charges {charge}: rejected parent_rejected ← visits {parent_id} (parent_rejected) ← "
        in text
    )
    assert f"← patients {root_id} ({root_reject})" in text
    assert f"  root cause   patients {root_id}: {root_reject}" in text
    root = trace(clinic.url, "patients", root_id, actor=ACTOR)
    assert root["pulled_along"]["charges"] >= 1
    assert "  pulled along " in format_trace(root)


def test_the_summary_groups_rejects_by_root_cause_as_the_ledger_counts_them(clinic: Clinic) -> None:
    summary = json.loads((clinic.evidence / "summary.json").read_text())
    causes = summary["root_causes"]
    assert causes
    assert all(c["root_table"] is not None for c in causes)  # the loader recorded every root
    assert [c["pulled"] for c in causes] == sorted((c["pulled"] for c in causes), reverse=True)
    roots: dict[tuple[str, str], int] = defaultdict(int)
    pulled: dict[tuple[str, str, str], int] = defaultdict(int)
    for c in causes:  # a root cause is also split by the legacy column it is about
        roots[(c["root_table"], c["root_reason"])] += c["roots"]
        for table, n in c["rows"].items():
            pulled[(c["root_table"], c["root_reason"], table)] += n
    with psycopg.connect(clinic.url) as conn:
        by_sql = conn.execute(
            "SELECT root_table, root_reason, legacy_table, count(*) FROM migration.reject"
            " WHERE run_id = %s AND root_table IS NOT NULL AND (legacy_table, legacy_id) <> (root_table, root_legacy_id)"
            " GROUP BY 1, 2, 3",
            (RUN_ID,),
        ).fetchall()
        roots_by_sql = conn.execute(
            "SELECT root_table, root_reason, count(DISTINCT root_legacy_id) FROM migration.reject"
            " WHERE run_id = %s AND root_table IS NOT NULL GROUP BY 1, 2",
            (RUN_ID,),
        ).fetchall()
    assert dict(pulled) == {(t, r, table): n for t, r, table, n in by_sql}
    assert dict(roots) == {(t, r): n for t, r, n in roots_by_sql}
    costliest = causes[0]
    assert costliest["pulled"] > 0
    page = render_report(clinic.evidence)
    section = page[page.index("<h2>Rejects by root cause</h2>") :]
    assert (
        f"{costliest['roots']:,} <code>{costliest['root_table']}</code> rejected <code>{costliest['root_reason']}</code>"
        in section
    )


def test_a_row_the_target_refused_names_the_constraint(clinic: Clinic) -> None:
    # The simulator plants nothing the mapping lets through and the target refuses, so this ledger row
    # is written as the loader writes one (cutover.loading.load._reject_whole), for a legacy id no run has.
    with psycopg.connect(clinic.url) as conn:
        conn.execute(
            "INSERT INTO migration.reject (legacy_system, legacy_table, legacy_id, reason_code, stage, detail, run_id)"
            " VALUES ('legacy', 'visits', '900001', 'target_constraint', 'load', 'visit_within_episode', %s)",
            (RUN_ID,),
        )
    result = trace(clinic.url, "visits", "900001", actor=ACTOR)
    assert (result["outcome"], result["reason_code"], result["stage"]) == (
        "rejected",
        "target_constraint",
        "load",
    )
    assert result["detail"] == "visit_within_episode"
    assert "  detail       visit_within_episode" in format_trace(result)


def test_an_exploded_cpt_line_lists_every_target_row_and_flags_carry(clinic: Clinic) -> None:
    lines = [d for d in clinic.manifest["defects"] if d["kind"] == "cpt_free_text" and d.get("codes", 1) >= 2]
    traced = [trace(clinic.url, "procedures", str(d["legacy_id"]), actor=ACTOR) for d in lines]
    migrated = [(d, r) for d, r in zip(lines, traced, strict=True) if r["outcome"] == "migrated"]
    assert migrated
    for d, r in migrated:
        assert len(r["target_rows"]) == d["codes"], d
        assert r["target_rows"][1] == str(legacy_uuid("legacy", "procedures", f"{d['legacy_id']}#2"))
        assert r["in_target"] is True
        assert f"exploded     {d['codes']} target rows" in format_trace(r)
    npi = next(
        d for d in clinic.manifest["defects"] if d["kind"] == "invalid_npi" and d["table"] == "providers"
    )
    provider = trace(clinic.url, "providers", str(npi["legacy_id"]), actor=ACTOR)
    assert provider["outcome"] == "migrated"
    assert "npi_invalid" in provider["flags"]
    assert "flags        " in format_trace(provider)


def test_every_lookup_is_audited_and_an_unknown_id_says_so(clinic: Clinic) -> None:
    before = len(_audit_rows(clinic.url))
    result = trace(clinic.url, "patients", "99999999", actor=ACTOR)
    assert result["outcome"] == "unknown"
    assert "no outcome in the migration ledger" in format_trace(result)
    rows = _audit_rows(clinic.url)
    assert len(rows) == before + 1
    assert rows[-1] == (ACTOR, {"legacy_table": "patients", "legacy_id": "99999999"})
    with pytest.raises(ConfigError, match="unknown legacy table"):
        trace(clinic.url, "no_such_table", "1", actor=ACTOR)
    with pytest.raises(ConfigError, match="actor"):
        trace(clinic.url, "patients", "1", actor="")
    assert len(_audit_rows(clinic.url)) == before + 1  # refused lookups read nothing, so log nothing


def test_cmd_trace_prints_for_the_terminal(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TARGET_DB", clinic.url)
    args = argparse.Namespace(legacy_table="clinics", legacy_id="1", actor="ops.sam", json=False)
    assert cmd_trace(args) == 0
    assert capsys.readouterr().out.startswith("clinics 1 (legacy system legacy): MIGRATED to pt.clinic ")
    assert cmd_trace(argparse.Namespace(legacy_table="clinics", legacy_id="1", actor=None, json=True)) == 0
    assert json.loads(capsys.readouterr().out)["new_id"] == str(legacy_uuid("legacy", "clinics", "1"))
    assert (
        cmd_trace(argparse.Namespace(legacy_table="clinics", legacy_id="404", actor="ops.sam", json=False))
        == 1
    )
    actors = [actor for actor, _ in _audit_rows(clinic.url)[-3:]]
    assert actors[0] == "ops.sam"
    assert actors[1]  # the login name when no --actor is given
    capsys.readouterr()


def test_the_runs_evidence_renders_seals_and_leaks_nothing(clinic: Clinic, tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    shutil.copytree(clinic.evidence, folder)
    report = write_report(folder)
    page = report.read_text()
    summary = json.loads((folder / "summary.json").read_text())
    for table, row in summary["tables"].items():
        assert (
            f"{row['legacy_rows']:,} legacy · {row['migrated']:,} / {row['merged']:,} / {row['rejected']:,}"
            in page
        ), table
    assert "mapping_spec.html" in page
    write_bundle_manifest(folder)
    assert verify_bundle(folder) == []
    if shutil.which("sha256sum"):
        check = subprocess.run(
            ["sha256sum", "-c", "manifest.sha256"], cwd=folder, capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout
    publish_bundle(folder, clinic.store, RUN_ID)
    assert verify_published(clinic.store, RUN_ID) == []
    canaries = [c for c in clinic.manifest["canaries"] if len(c) >= 4]
    assert canaries
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            hits = [c for c in canaries if c in text]
            assert not hits, (path.name, len(hits))


def test_an_unreachable_target_is_transient_and_names_no_url() -> None:
    with pytest.raises(TransientError, match="target database unreachable") as caught:
        trace("postgresql://etl:s3cret@127.0.0.1:1/pt", "patients", "1", actor=ACTOR)
    assert "s3cret" not in str(caught.value)


def test_a_role_that_cannot_write_the_audit_log_cannot_trace(clinic: Clinic) -> None:
    from psycopg import sql

    from cutover.security.roles import with_user

    role = f"peek_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(clinic.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA migration, pt TO {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA migration, pt TO {}").format(sql.Identifier(role))
        )
    try:
        before = len(_audit_rows(clinic.url))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            trace(with_user(clinic.url, role), "patients", "1", actor=role)
        assert len(_audit_rows(clinic.url)) == before
    finally:
        with psycopg.connect(clinic.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
