"""A delivery of CSV files on an SFTP server, end to end: ``pt_backup`` then ``pt_cutover`` through
``cutover run``, with ``legacy_db`` naming the folder on a real SFTP server on loopback (key
authentication, a checked host key) and ``CUTOVER_PROFILE`` a profile reading CSV files.

The delivery is the simulator's practice (:mod:`csv_layout`), plus one line the delivery system cut
short: every line of every file is accounted for (``summary.json``: migrated + merged + rejected is
what was delivered, the cut line rejected ``csv_malformed`` under ``csv-line-<n>``), the planted
defects end as the simulator's manifest says (0 disagreements), the backup holds the delivered
files with their SHA-256, and the evidence records what was taken (files, SHA-256, sizes, counts).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import psycopg
import pytest
from csv_layout import write_delivery
from sftp_server import start_sftp_server

from cli_helpers import evidence_of, run_cutover
from cutover.simulate.verify import verify_run

pytestmark = pytest.mark.slow

CUT_SHORT = b'999999,1,1,"2024-03-0'
"""A last line the delivery cut short: an unclosed quote at the end of the file."""


def test_sftp_delivery_through_pt_backup_and_pt_cutover(home: Path, tmp_path: Path, pg_url: str) -> None:
    made = write_delivery(tmp_path / "practice", patients=60)
    visits = made.outbox / "visits.csv"
    cut_line = visits.read_bytes().count(b"\n") + 1
    with visits.open("ab") as out:
        out.write(CUT_SHORT)
    delivered = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in made.outbox.iterdir()}
    written = {**made.rows, "visits": made.rows["visits"] + 1}

    server = start_sftp_server(made.outbox)
    try:
        env = {
            "AIRFLOW_CONN_LEGACY_DB": server.url("/"),
            "AIRFLOW_CONN_TARGET_DB": pg_url,
            "CUTOVER_PROFILE": str(made.profile),
        }
        backup = evidence_of(run_cutover(["run", "pt_backup"], home, env))
        evidence = evidence_of(run_cutover(["run", "pt_cutover"], home, env))
    finally:
        server.close()

    manifest = json.loads((backup / "backup_manifest.json").read_text())
    assert manifest["dialect"] == "csv"
    assert {f["file"]: f["sha256"] for f in manifest["delivered"].values()} == delivered
    assert {t: fp["rows"] for t, fp in manifest["tables"].items()} == written
    verified = json.loads((backup / "backup_verified.json").read_text())
    assert verified["run_key"] == manifest["run_key"]

    taken = json.loads((evidence / "delivery.json").read_text())
    assert {name: f["sha256"] for name, f in taken["files"].items()} == delivered
    assert taken["files"]["visits.csv"]["malformed"] == 1
    assert "key_file" not in taken["source"]
    assert "host_key" not in taken["source"]

    summary = json.loads((evidence / "summary.json").read_text())
    assert summary["accounted"]
    for name, rows in written.items():
        row = summary["tables"][name]
        assert row["legacy_rows"] == rows, name
        assert row["migrated"] + row["merged"] + row["rejected"] == rows, name
    assert summary["reject_reasons"]["visits"]["csv_malformed"] == 1
    with psycopg.connect(pg_url) as conn:
        detail = conn.execute(
            "SELECT detail FROM migration.reject WHERE legacy_table = 'visits' AND legacy_id = %s",
            (f"csv-line-{cut_line}",),
        ).fetchone()
    assert detail == (f"visits.csv line {cut_line}: unclosed quote",)

    report = verify_run(pg_url, made.manifest)
    assert {k: r["disagree"] for k, r in report.items() if r["disagree"]} == {}
    assert all(r["ok"] for r in report.values())
