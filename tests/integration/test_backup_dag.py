"""The pt_backup DAG: its shape, and `cutover run pt_backup` end to end on the embedded defaults with a
simulated SQLite legacy database: snapshot → encrypted stage → restore test → verified, evidence copied."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli_helpers import everything_of, evidence_of, run_cutover
from cutover.backup import require_verified_backup
from cutover.report.bundle import verify_bundle
from cutover.simulate import simulate

DAGS = Path(__file__).resolve().parents[2] / "dags"
# a SQLite backup never touches the target: an address where nothing listens proves it (and no
# embedded PostgreSQL starts for the run)
UNUSED_TARGET = "postgresql://unused@127.0.0.1:9/unused"


def test_dag_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=DAGS, bundle_path=DAGS)
    assert not bag.import_errors
    dag = bag.dags["pt_backup"]
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert "## Runbook" in (dag.doc_md or "")
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {
        "check_configuration",
        "take_delivery",
        "snapshot_legacy",
        "encrypt_and_store",
        "restore_test",
        "mark_verified",
    }
    assert tasks["take_delivery"].upstream_task_ids == {"check_configuration"}
    assert tasks["snapshot_legacy"].upstream_task_ids == {"take_delivery"}
    assert tasks["encrypt_and_store"].upstream_task_ids == {"snapshot_legacy"}
    assert tasks["restore_test"].upstream_task_ids == {"encrypt_and_store"}
    assert tasks["mark_verified"].upstream_task_ids == {"restore_test"}


@pytest.mark.slow
def test_cutover_run_pt_backup(home: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.db"
    truth = simulate(f"sqlite:///{legacy}", patients=150, seed=80)
    result = run_cutover(
        ["run", "pt_backup"],
        home,
        # the embedded default key (no CUTOVER_BACKUP_KEY): created in the state folder, mode 0600
        {
            "AIRFLOW_CONN_LEGACY_DB": f"sqlite:///{legacy}",
            "AIRFLOW_CONN_TARGET_DB": UNUSED_TARGET,
            "CUTOVER_BACKUP_KEY": "",
        },
    )
    folder = evidence_of(result)
    manifest = json.loads((folder / "backup_manifest.json").read_text())
    verified = json.loads((folder / "backup_verified.json").read_text())
    assert {t: fp["rows"] for t, fp in manifest["tables"].items()} == truth["tables"]
    assert verified["mismatched"] == []
    assert set(verified["tables"]) == set(truth["tables"])
    backup = home / "staging" / "runs" / folder.name / "backup"
    assert sorted(p.name for p in backup.iterdir()) == ["legacy.db.enc", "manifest.json", "verified.json"]
    assert json.loads((backup / "manifest.json").read_text()) == manifest
    assert stat.S_IMODE((home / "backup.key").stat().st_mode) == 0o600
    assert not list((home / "backup-work").rglob("*.db"))  # no plaintext left behind
    assert not (home / "pg").exists()  # the target was never needed
    info = require_verified_backup(
        f"file://{home / 'staging'}", f"sqlite:///{legacy}", max_age=timedelta(hours=1), now=datetime.now(UTC)
    )
    assert info.run_key == folder.name
    assert verify_bundle(folder) == []  # sealed: manifest.sha256 over the evidence folder
    published = home / "staging" / "runs" / folder.name / "evidence"
    assert (published / "manifest.sha256").read_bytes() == (folder / "manifest.sha256").read_bytes()
    for text in (everything_of(result), json.dumps(manifest), json.dumps(verified)):
        assert not any(c in text for c in truth["canaries"])
