"""A WebPT-style Standard Extract on an SFTP server, end to end, under the built-in ``webpt_extract``
profile: ``pt_assess``, ``pt_backup``, ``pt_sample_transfer``, then a phased ``pt_cutover`` in two
waves, then the next nightly delivery through ``pt_delta_sync``.

The first delivery is :func:`cutover.simulate.webpt.write_extract`'s (the simulator's practice in
WebPT's files, with their quirks and CSV-level mess); its manifest is the ground truth: every row of
every file ends with one outcome (migrated, merged or rejected; a RevFlow charge's older states set
aside, its newest migrated once), and every planted defect ends as the manifest says (0
disagreements). The next delivery (:func:`~cutover.simulate.webpt.write_next_delivery`) holds only
changed rows: edits are carried, new rows added, rows flagged removed reported by id and never
deleted, and a row delivered again unchanged changes nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest
from sftp_server import start_sftp_server

from cli_helpers import everything_of, evidence_of, run_cutover
from cutover.simulate.verify import verify_run
from cutover.simulate.webpt import write_extract, write_next_delivery

pytestmark = pytest.mark.slow

PATIENTS = 300


def _ledger(url: str) -> dict[str, dict[str, tuple[str, str]]]:
    """Legacy table → {legacy id: (outcome or reject reason, run id)}, one outcome per legacy row."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT legacy_table, legacy_id, outcome, run_id FROM migration.crosswalk"
            " UNION ALL SELECT legacy_table, legacy_id, 'rejected:' || reason_code, run_id FROM migration.reject"
        ).fetchall()
    ledger: dict[str, dict[str, tuple[str, str]]] = {}
    for table, legacy_id, outcome, run in rows:
        assert legacy_id not in ledger.setdefault(table, {}), f"{table} {legacy_id}: two outcomes"
        ledger[table][legacy_id] = (outcome, run)
    return ledger


def _target_rows(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'pt'")]
        return {t: conn.execute(f"SELECT count(*) FROM pt.{t}").fetchone()[0] for t in tables}  # type: ignore[index]


def test_webpt_extract_over_sftp_phased_then_next_delivery(home: Path, tmp_path: Path, pg_url: str) -> None:
    first, second = tmp_path / "delivery-1", tmp_path / "delivery-2"
    truth = write_extract(first, patients=PATIENTS, seed=11, manifest=tmp_path / "d1.json")
    outbox = tmp_path / "outbox"
    shutil.copytree(first, outbox)
    server = start_sftp_server(outbox)
    env = {
        "AIRFLOW_CONN_LEGACY_DB": server.url("/"),
        "AIRFLOW_CONN_TARGET_DB": pg_url,
        "CUTOVER_PROFILE": "webpt_extract",
    }
    outputs: list[str] = []

    def run(*args: str) -> Path:
        result = run_cutover(["run", *args], home, env)
        outputs.append(everything_of(result))  # the console and the task logs
        return evidence_of(result)

    try:
        assessed = run("pt_assess")
        backup = run("pt_backup")
        trial = run("pt_sample_transfer")
        for wave in ("wave-1", "wave-2"):
            run("pt_cutover", "--conf", json.dumps({"mode": "phased", "wave": wave}))
        ledger = _ledger(pg_url)
        before = _target_rows(pg_url)

        # the next night's delivery replaces the files on the server
        nxt = write_next_delivery(
            first, second, seed=12, manifest=tmp_path / "d1.json", out_manifest=tmp_path / "d2.json"
        )
        for old in outbox.iterdir():
            old.unlink()
        for new in second.iterdir():
            shutil.copy(new, outbox / new.name)
        sync = run("pt_delta_sync")
    finally:
        server.close()

    assert (assessed / "assessment.json").exists() or any(assessed.iterdir())
    taken = json.loads((backup / "delivery.json").read_text())
    assert {name: f["records"] + f["malformed"] for name, f in taken["files"].items()} == {
        name: f["rows"] for name, f in truth["files"].items()
    }
    assert (trial / "sample_estimate.json").exists()

    # every row of every file of the first delivery: one outcome, across the two waves
    from cutover.legacy.profile import load_profile

    mapped = load_profile("webpt_extract").mapped_tables
    assert {t: len(ledger.get(t, {})) for t in mapped} == {t: truth["tables"][t] for t in mapped}
    report = verify_run(pg_url, truth)
    assert {k: r["disagree"] for k, r in report.items() if r["disagree"]} == {}
    superseded = [o for o, _ in ledger["billing_charges"].values() if o == "rejected:charge_state_superseded"]
    assert len(superseded) == sum(1 for d in truth["defects"] if d["kind"] == "charge_state_superseded")

    # the next delivery: edits and new rows carried by the sync, removed rows reported, nothing deleted
    delta = json.loads((sync / "delta_report.json").read_text())
    after = _ledger(pg_url)
    sync_run = delta["run_id"]
    for table, ids in nxt["edited"].items():
        for legacy_id in map(str, ids):
            assert after[table][legacy_id][1] == sync_run, (table, legacy_id)
    for table, ids in nxt["new"].items():
        assert {str(i) for i in ids} <= set(after[table]), table
    removed = (sync / "removed_rows.csv").read_text().splitlines()[1:]
    listed = {(line.split(",")[0].strip('"'), line.split(",")[1].strip('"')) for line in removed}
    migrated_removed = {
        (t, str(i))
        for t, ids in nxt["removed"].items()
        for i in ids
        if ledger[t].get(str(i), ("",))[0] in {"migrated", "merged"}
    }
    assert migrated_removed
    assert listed == migrated_removed
    assert sum(delta["removed_rows"].values()) == len(migrated_removed)
    for table, ids in nxt["removed"].items():  # still in the target, as migrated before
        for legacy_id in map(str, ids):
            assert after[table].get(legacy_id) == ledger[table].get(legacy_id), (table, legacy_id)
    for table, ids in nxt["unchanged_repeat"].items():
        if table not in {"patients"}:  # patients are taken whole by every sync
            for legacy_id in map(str, ids):
                assert after[table][legacy_id] == ledger[table][legacy_id], (table, legacy_id)
    grown = _target_rows(pg_url)
    assert all(grown[t] >= n for t, n in before.items()), "a sync deleted target rows"

    # no planted PHI value in any run's output (task logs included), evidence or staged JSON
    canaries = [c for c in truth["canaries"] if len(c) >= 6]
    assert canaries
    texts = {"output": "\n".join(outputs)}
    for folder in (sync.parent, home / "staging"):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in {".json", ".html", ".md", ".txt", ".log", ".csv"}:
                texts[str(path)] = path.read_text(errors="replace")
    leaked = {where: n for where, text in texts.items() if (n := sum(c in text for c in canaries))}
    assert not leaked, leaked
