"""A third legacy layout, ClinicNote (:mod:`profile_layout`), end to end: ``pt_backup`` then ``pt_cutover``
through ``cutover run``, with ``CUTOVER_PROFILE`` naming its folder profile and ``legacy_db`` its SQLite
database, into a real PostgreSQL target. No Python of the layout's own: the profile is all the
pipeline is told.

Every legacy row is accounted for (``summary.json``: migrated + merged + rejected is what the
generator wrote, per legacy table), the ledger holds one outcome per legacy row, and the target
holds the rows it should: the text-keyed appointments under their text ids, the visits linked to
them, the patients' names, sex codes and dates read as the layout writes them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest
from profile_layout import APPT_KEY, BLANK_KEY_ROWS, PADDED_APPT, PROFILE, SEX_CODES, write_layout

from cli_helpers import evidence_of, run_cutover
from cutover.legacy.profile import load_profile
from cutover.legacy.source import sqlite_path

pytestmark = pytest.mark.slow

TARGET = {
    "site": "clinic",
    "staff": "provider",
    "pt_master": "patient",
    "episode": "episode",
    "appt": "appointment",
    "tx_visit": "visit",
    "tx_line": "procedure_line",
    "fee": "charge",
}


def _ledger(url: str) -> dict[str, dict[str, str]]:
    """Legacy table → {legacy id: outcome} over the crosswalk and the reject table (one outcome each)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT legacy_table, legacy_id, outcome FROM migration.crosswalk"
            " UNION ALL SELECT legacy_table, legacy_id, 'rejected:' || reason_code FROM migration.reject"
        ).fetchall()
    ledger: dict[str, dict[str, str]] = {}
    for table, legacy_id, outcome in rows:
        assert legacy_id not in ledger.setdefault(table, {}), f"{table} {legacy_id}: two outcomes"
        ledger[table][legacy_id] = outcome
    return ledger


def test_clinicnote_through_pt_backup_and_pt_cutover(home: Path, tmp_path: Path, pg_url: str) -> None:
    layout = write_layout(tmp_path / "layout")
    profile = load_profile(PROFILE)
    written = {name: layout.rows[table.source_name] for name, table in profile.tables.items()}
    env = {
        "AIRFLOW_CONN_LEGACY_DB": layout.url,
        "AIRFLOW_CONN_TARGET_DB": pg_url,
        "CUTOVER_PROFILE": str(PROFILE),
    }

    backup = evidence_of(run_cutover(["run", "pt_backup"], home, env))
    manifest = json.loads((backup / "backup_manifest.json").read_text())
    assert {t: fp["rows"] for t, fp in manifest["tables"].items()} == written

    evidence = evidence_of(run_cutover(["run", "pt_cutover"], home, env))
    summary = json.loads((evidence / "summary.json").read_text())
    assert summary["accounted"]
    assert set(summary["tables"]) == set(written)
    for name, rows in written.items():
        row = summary["tables"][name]
        assert row["legacy_rows"] == rows, name
        assert row["migrated"] + row["merged"] + row["rejected"] == rows, name
    assert summary["tables"]["pt_master"]["merged"] > 0  # the simulator's duplicates, merged
    assert summary["reject_reasons"]["appt"]["id_invalid"] == BLANK_KEY_ROWS["cn_appt"]

    ledger = _ledger(pg_url)
    assert {name: len(ids) for name, ids in ledger.items()} == written
    appts = ledger["appt"]
    assert appts[APPT_KEY % PADDED_APPT] == "migrated"  # its key read trimmed
    assert sum(1 for i in appts if i.startswith("A-")) == written["appt"] - BLANK_KEY_ROWS["cn_appt"]

    with psycopg.connect(pg_url) as conn:
        counts = {
            name: conn.execute(f"SELECT count(*) FROM pt.{target}").fetchone()[0]  # type: ignore[index]
            for name, target in TARGET.items()
        }
        migrated = {name: summary["tables"][name]["migrated"] for name in TARGET}
        lines = conn.execute(
            "SELECT count(DISTINCT c.legacy_id) FROM migration.crosswalk c JOIN pt.procedure_line p"
            " ON p.id = c.new_id WHERE c.legacy_table = 'tx_line'"
        ).fetchone()
        linked = conn.execute(
            "SELECT count(*) FROM pt.visit v JOIN migration.crosswalk c ON c.new_id = v.appointment_id"
            " AND c.legacy_table = 'appt' WHERE c.legacy_id LIKE 'A-%'"
        ).fetchone()
        patients = conn.execute(
            "SELECT c.legacy_id, p.family_name, p.given_name, p.sex, p.birth_date FROM pt.patient p"
            " JOIN migration.crosswalk c ON c.new_id = p.id AND c.legacy_table = 'pt_master'"
            " AND c.outcome = 'migrated'"
        ).fetchall()
    for name in TARGET:
        if name != "tx_line":  # one legacy line may hold several codes: one target row each
            assert counts[name] == migrated[name], name
    assert lines is not None
    assert lines[0] == migrated["tx_line"] <= counts["tx_line"]
    assert linked is not None
    assert linked[0] > 0.9 * migrated["tx_visit"]

    with sqlite3.connect(sqlite_path(layout.url)) as legacy:
        raw = {
            str(pt_no): (last_nm, birth_dt, sex_cd)
            for pt_no, last_nm, birth_dt, sex_cd in legacy.execute(
                "SELECT pt_no, last_nm, birth_dt, sex_cd FROM cn_pt_master"
            )
        }
    # a survivor of duplicates may take a duplicate's values (survivorship): nearly all are their own
    sexes = {code: sex for sex, code in SEX_CODES.items()}
    assert all(family and given for _, family, given, _, _ in patients)
    own_birth = sum(born.strftime("%d.%m.%Y") == raw[i][1] for i, _, _, _, born in patients)
    own_sex = sum(sexes.get(raw[i][2]) == sex for i, _, _, sex, _ in patients)
    assert own_birth >= 0.9 * len(patients)
    assert own_sex >= 0.9 * len(patients)
    assert {"female", "male"} <= {sex for *_, sex, _ in patients}

    # the legacy recheck of every patient (the run's samples 25, chosen by the run id) agrees with the
    # staged rows, the appointment whose key is blank (staged under its surrogate id) included
    from datetime import date

    from cutover.legacy.profile import use
    from cutover.reconcile.recheck import recheck
    from cutover.staging.store import open_store

    store, prefix = open_store(f"file://{home / 'staging'}"), f"runs/{evidence.name}"
    as_of = date.fromisoformat(json.loads(store.get(f"{prefix}/mapped/pt_master/_stats.json"))["as_of"])
    with use(profile):
        checked, mismatched = recheck(
            layout.url, store, prefix, summary["run_id"], as_of=as_of, tables=list(profile.specs), size=10_000
        )
    assert len(checked) > 25
    assert mismatched == {}
