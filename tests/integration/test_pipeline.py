"""The pipeline's stages without Airflow, against a real PostgreSQL: accounting, reject policy, idempotence."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from cutover import pipeline
from cutover.errors import PolicyError
from cutover.mapping.specs import SPECS
from cutover.policy import evaluate, reject_limit
from cutover.simulate import simulate


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    path = tmp_path_factory.mktemp("legacy") / "legacy.db"
    manifest = simulate(f"sqlite:///{path}", patients=120, seed=2024)
    return f"sqlite:///{path}", manifest


def _run(legacy_url: str, target: str, store: str, run_id: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    from datetime import date

    pipeline.prepare_target(target)
    pipeline.begin_run(target, run_id, "test", {}, "tester")
    for table in pipeline.migrated_tables():
        pipeline.extract_table(legacy_url, store, run_id, table)
        pipeline.map_table(store, run_id, table, as_of=date(2026, 11, 27))
    for table in pipeline.migrated_tables():
        pipeline.load_mapped(target, store, run_id, table)
    return pipeline.write_summary(target, store, run_id, "test", **kw)


def _fingerprint(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return {
            spec.target: conn.execute(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM pt.\"{spec.target}\" t"
            ).fetchone()[0]
            for spec in SPECS.values()
        }


def test_every_row_accounted_and_two_clean_runs_give_the_same_target(
    legacy: tuple[str, dict], pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    url, manifest = legacy
    store = f"file://{tmp_path / 'stage'}"
    result = _run(url, pg_url, store, "run-1", max_reject_rate=0.5)
    summary = json.loads((Path(result["evidence"]) / "summary.json").read_text())
    for table, count in manifest["tables"].items():
        row = summary["tables"][table]
        assert row["legacy_rows"] == count
        assert row["migrated"] + row["merged"] + row["rejected"] == count
    assert (Path(result["evidence"]) / "mapping_spec.html").exists()
    first = _fingerprint(pg_url)
    _run(url, pg_url, store, "run-2", max_reject_rate=0.5)
    assert _fingerprint(pg_url) == first


def test_reject_policy_fails_the_run_after_writing_the_evidence(
    legacy: tuple[str, dict], pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    url, _ = legacy
    with pytest.raises(PolicyError, match=r"visits \d+/\d+ rejected"):
        _run(url, pg_url, f"file://{tmp_path / 'stage'}", "run-strict", max_reject_rate=0.0001)
    summary = json.loads((pipeline.latest_evidence("run-strict") / "summary.json").read_text())
    assert summary["reject_policy"]["visits"]["ok"] is False
    with psycopg.connect(pg_url) as conn:
        (state,) = conn.execute("SELECT state FROM migration.run WHERE run_id = 'run-strict'").fetchone()
    assert state == "failed"


def test_policy_limits_come_from_the_thresholds_file() -> None:
    assert reject_limit("clinics", 0.5) == 0.0
    assert reject_limit("visits") == 0.05
    verdicts = {p.table: p.ok for p in evaluate({"visits": {"legacy_rows": 100, "rejected": 6}})}
    assert verdicts == {"visits": False}
