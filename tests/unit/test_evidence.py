"""The evidence chain: a sealed folder per DAG run, versions that never overwrite a seal, links by SHA-256."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cutover import evidence
from cutover.errors import IntegrityError
from cutover.report.bundle import MANIFEST, manifest_sha256, verify_bundle, write_bundle_manifest
from cutover.staging.store import open_store

CUTOVER = "manual__2026-12-04T23:00:00+00:00"
BACKUP = "manual__2026-12-04T18:00:00+00:00"
TRIAL = "manual__2026-12-04T19:00:00+00:00"


@pytest.fixture
def store(cutover_home: Path) -> str:
    return f"file://{cutover_home / 'staging'}"


def _as_dag(monkeypatch: pytest.MonkeyPatch, dag_id: str) -> None:
    """What Airflow exports to a task's environment."""
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", dag_id)


def _sealed_run(
    monkeypatch: pytest.MonkeyPatch, store: str, dag_id: str, run_id: str, files: dict[str, str]
) -> evidence.Sealed:
    _as_dag(monkeypatch, dag_id)
    folder = evidence.writable(run_id)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return evidence.seal(run_id, store, actor="engineer")


def _force(path: Path, text: str) -> None:
    """An attacker who owns the files: a read-only mode is no obstacle."""
    path.chmod(0o644)
    path.write_text(text)


def test_a_run_seals_one_folder_per_dag_and_run(monkeypatch: pytest.MonkeyPatch, store: str) -> None:
    sealed = _sealed_run(
        monkeypatch, store, "pt_cutover", CUTOVER, {"summary.json": "{}", "gates/target.json": "{}"}
    )
    assert sealed.folder == evidence.root() / "pt_cutover" / evidence.run_key(CUTOVER)
    assert (sealed.version, sealed.dag_id, sealed.files) == ("v1", "pt_cutover", 3)  # bundle.json too
    assert verify_bundle(sealed.folder) == []
    bundle = json.loads((sealed.folder / evidence.BUNDLE).read_text())
    assert (bundle["run_id"], bundle["sealed_by"], bundle["previous"]) == (CUTOVER, "engineer", None)
    # every sealed file is read-only; the copy in the store is complete and matches the manifest
    for path in sealed.folder.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o400, path  # read-only, the owner's only
    copy = open_store(store).get(f"runs/{evidence.run_key(CUTOVER)}/evidence/{MANIFEST}")
    assert copy == (sealed.folder / MANIFEST).read_bytes()
    # sealing again with nothing new is the same seal, not a new version
    assert evidence.seal(CUTOVER, store) == sealed
    assert [c.problems for c in evidence.verify_chain(CUTOVER, store_url=store)] == [[]]


def test_evidence_written_after_the_seal_goes_to_a_new_version(
    monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    first = _sealed_run(monkeypatch, store, "pt_cutover", CUTOVER, {"summary.json": '{"v": 1}'})
    before = (first.folder / MANIFEST).read_bytes()
    again = evidence.writable(CUTOVER)  # a cleared write_evidence
    assert again == first.folder / "v2"
    assert json.loads((again / "summary.json").read_text()) == {"v": 1}  # a complete copy to amend
    (again / "summary.json").write_text('{"v": 2}')
    assert evidence.writable(CUTOVER) == again  # open until sealed
    second = evidence.seal(CUTOVER, store)
    assert second.version == "v2"
    # v1 is as it was sealed, and still verifies: v2 is a bundle of its own, outside v1's manifest
    assert (first.folder / MANIFEST).read_bytes() == before
    assert json.loads((first.folder / "summary.json").read_text()) == {"v": 1}
    assert verify_bundle(first.folder) == []
    assert verify_bundle(second.folder) == []
    bundle = json.loads((second.folder / evidence.BUNDLE).read_text())
    assert bundle["previous"]["manifest_sha256"] == manifest_sha256(first.folder)
    assert evidence.latest(CUTOVER) == second.folder == evidence.latest_sealed(CUTOVER)
    assert all(c.ok for c in evidence.verify_chain(CUTOVER, store_url=store))
    assert [c.subject.split()[-1] for c in evidence.verify_chain(CUTOVER)] == ["v1", "v2"]


def test_verify_names_what_changed(monkeypatch: pytest.MonkeyPatch, store: str) -> None:
    first = _sealed_run(monkeypatch, store, "pt_cutover", CUTOVER, {"summary.json": "{}"})
    (evidence.writable(CUTOVER) / "late.json").write_text("{}")
    evidence.seal(CUTOVER, store)
    _force(first.folder / "summary.json", '{"rejected": 0}')
    (first.folder / "extra.json").write_text("{}")
    checks = {c.subject.split()[-1]: c.problems for c in evidence.verify_chain(CUTOVER, store_url=store)}
    assert checks["v1"] == ["seal: extra: extra.json", "seal: changed: summary.json"]
    assert checks["v2"] == []
    # a v1 resealed by whoever changed it no longer is the v1 that v2 names
    (first.folder / "extra.json").unlink()
    (first.folder / MANIFEST).unlink()
    write_bundle_manifest(first.folder)
    checks = {c.subject.split()[-1]: c.problems for c in evidence.verify_chain(CUTOVER, store_url=store)}
    assert checks["v2"] == ["previous: the SHA-256 of v1's manifest differs"]
    assert checks["v1"] == [
        "store: the copy's manifest is not this folder's"
    ]  # the store keeps the sealed one


def test_a_cutover_links_the_evidence_it_relies_on(monkeypatch: pytest.MonkeyPatch, store: str) -> None:
    backup = _sealed_run(monkeypatch, store, "pt_backup", BACKUP, {"backup_verified.json": "{}"})
    trial = _sealed_run(monkeypatch, store, "pt_sample_transfer", TRIAL, {"sample_estimate.json": "{}"})
    _as_dag(monkeypatch, "pt_cutover")
    links = evidence.link(CUTOVER, store, backup_run_key=evidence.run_key(BACKUP))
    assert links["backup"]["manifest_sha256"] == backup.manifest_sha256
    assert links["trial"]["path"] == f"pt_sample_transfer/{evidence.run_key(TRIAL)}"
    assert links["trial"]["manifest_sha256"] == trial.manifest_sha256
    assert links["assessment"] == {"dag_id": "pt_assess", "found": False}
    sealed = evidence.seal(CUTOVER, store)
    bundle = json.loads((sealed.folder / evidence.BUNDLE).read_text())
    assert bundle["links"]["backup"]["verified"] is True
    # the chain: the cutover, then each bundle it links
    subjects = [c.subject for c in evidence.verify_chain(CUTOVER, store_url=store)]
    assert [s.split("/")[0] for s in subjects] == ["pt_cutover", "pt_backup", "pt_sample_transfer"]
    # a linked bundle changed after the cutover relied on it: named, in the cutover's check and its own
    _force(backup.folder / "backup_verified.json", '{"ok": true}')
    checks = {c.subject.split("/")[0]: c.problems for c in evidence.verify_chain(CUTOVER, store_url=store)}
    assert checks["pt_backup"] == ["seal: changed: backup_verified.json"]
    assert checks["pt_cutover"] == []  # its manifest still is the one linked: the change is below it


def test_a_link_to_a_bundle_changed_in_the_store_is_refused(
    monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    _sealed_run(monkeypatch, store, "pt_backup", BACKUP, {"backup_verified.json": "{}"})
    open_store(store).put(f"runs/{evidence.run_key(BACKUP)}/evidence/backup_verified.json", b'{"ok": 1}')
    _as_dag(monkeypatch, "pt_cutover")
    with pytest.raises(IntegrityError, match=r"backup evidence .* no longer matches its manifest"):
        evidence.link(CUTOVER, store, backup_run_key=evidence.run_key(BACKUP))


def test_a_run_id_under_two_dags_is_refused_outside_them(monkeypatch: pytest.MonkeyPatch, store: str) -> None:
    _sealed_run(monkeypatch, store, "pt_backup", CUTOVER, {"a.json": "{}"})
    _sealed_run(monkeypatch, store, "pt_assess", CUTOVER, {"b.json": "{}"})
    assert evidence.latest(CUTOVER).parent.name == "pt_assess"  # the running DAG's own
    _as_dag(monkeypatch, "pt_cutover")
    with pytest.raises(IntegrityError, match="several DAGs"):
        evidence.latest(CUTOVER)


def test_an_unknown_run_is_one_line_naming_the_known_ones(
    monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    _sealed_run(monkeypatch, store, "pt_backup", BACKUP, {"a.json": "{}"})
    with pytest.raises(Exception, match=evidence.run_key(BACKUP)):
        evidence.verify_chain("manual__1999-01-01T00:00:00+00:00")


def test_a_target_not_migrated_yet_records_no_run_and_the_chain_still_verifies(
    monkeypatch: pytest.MonkeyPatch, store: str, pg_url: str
) -> None:
    """A backup or a trial verified before any cutover migrated the target: nothing to compare there."""
    _sealed_run(monkeypatch, store, "pt_backup", BACKUP, {"a.json": "{}"})
    checks = evidence.verify_chain(BACKUP, store_url=store, target_url=pg_url)
    assert [c.problems for c in checks] == [[]]
