"""`cutover run pt_backup` end to end: snapshot → encrypted stage → restore test → verified, on embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import evidence_of, run_cutover
from cutover.simulate import simulate

pytestmark = pytest.mark.slow


def test_pt_backup_verifies_its_backup(home: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.db"
    manifest = simulate(f"sqlite:///{legacy}", patients=50, seed=80)
    result = run_cutover(["run", "pt_backup"], home, {"AIRFLOW_CONN_LEGACY_DB": f"sqlite:///{legacy}"})
    folder = evidence_of(result)
    verified = json.loads((folder / "backup_verified.json").read_text())
    assert verified["tables"] == len(manifest["tables"])
    staged = sorted(p.name for p in (home / "staging").rglob("*") if p.is_file())
    assert staged == ["legacy.db.enc", "manifest.json", "verified.json"]
    assert (home / "backup.key").stat().st_mode & 0o777 == 0o600
    assert not any(c in result.stdout for c in manifest["canaries"] if len(c) >= 6)
