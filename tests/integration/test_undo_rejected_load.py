"""A target gate or reconciliation that rejects a load leaves the target as it was before the run:
`undo_rejected_load` restores the pre-load snapshot; a failure that is no verdict on the data leaves it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from cutover import pipeline
from cutover.rollback import snapshot_target
from cutover.simulate import simulate
from cutover.target.checksums import table_checksums


def test_a_rejected_load_is_undone_and_an_unjudged_one_kept(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    legacy = f"sqlite:///{tmp_path / 'legacy.db'}"
    simulate(legacy, patients=40, seed=9)
    store = f"file://{tmp_path / 'stage'}"
    pipeline.prepare_target(pg_url)
    before = table_checksums(pg_url)
    run = "cutover-undo"
    pipeline.begin_run(pg_url, run, "pt_cutover", {"mode": "big_bang"}, "tester")
    for table in pipeline.migrated_tables():
        pipeline.extract_table(legacy, store, run, table)
        pipeline.map_table(store, run, table, as_of=date(2026, 11, 27))
    snapshot_target(pg_url, run)
    for table in pipeline.migrated_tables():
        pipeline.load_mapped(pg_url, store, run, table)
    loaded = table_checksums(pg_url)
    assert loaded != before

    # a load task crashed: no gate judged the data, the target stays for a resume
    assert pipeline.undo_if_rejected(pg_url, run, actor="tester")["undone"] is False
    assert table_checksums(pg_url) == loaded

    gates = pipeline.evidence_dir(run) / "gates"
    gates.mkdir(parents=True)
    (gates / "target.json").write_text(json.dumps({"gate": "target", "passed": False, "results": []}))
    result = pipeline.undo_if_rejected(pg_url, run, actor="tester")
    assert result["undone"] is True
    assert result["rejected_by"] == ["gate_target"]
    assert table_checksums(pg_url) == before
