"""pt_monitor's library: after an accepted cutover, re-checking the target finds a chart changed since,
names it as new, and as resolved once it is put back; the trend keeps every run."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import psycopg
import pytest

from cutover import pipeline
from cutover.monitor import HISTORY, NothingToMonitor, monitor
from cutover.simulate import simulate
from cutover.staging.store import open_store

pytestmark = pytest.mark.slow


def test_monitor_tracks_new_resolved_and_persisting_failures(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    legacy = f"sqlite:///{tmp_path / 'legacy.db'}"
    truth = simulate(legacy, patients=80, seed=5)
    store = f"file://{tmp_path / 'stage'}"
    pipeline.prepare_target(pg_url)
    with pytest.raises(NothingToMonitor):
        monitor(pg_url, store, "monitor-0")
    run = "cutover-1"
    pipeline.begin_run(pg_url, run, "pt_cutover", {"mode": "big_bang"}, "tester")
    for table in pipeline.migrated_tables():
        pipeline.extract_table(legacy, store, run, table)
        pipeline.map_table(store, run, table, as_of=date(2026, 11, 27))
    for table in pipeline.migrated_tables():
        pipeline.load_mapped(pg_url, store, run, table)
    pipeline.write_summary(pg_url, store, run, "pt_cutover", max_reject_rate=0.5)

    first = monitor(pg_url, store, "monitor-1")
    assert first["accuracy"] == 1.0
    assert first["completeness"] == 1.0

    with psycopg.connect(pg_url) as conn:  # a charge changed in the new system after the cutover
        charge_id, amount, legacy_patient = conn.execute(
            "SELECT ch.id, ch.amount_cents, c.legacy_id FROM pt.charge ch"
            " JOIN migration.crosswalk c ON c.new_id = ch.patient_id AND c.legacy_table = 'patients'"
            " ORDER BY ch.id LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE pt.charge SET amount_cents = amount_cents + 1 WHERE id = %s", (charge_id,))
    second = monitor(pg_url, store, "monitor-2")
    assert second["accuracy"] < 1.0
    assert second["new"] >= 1
    current = json.loads((pipeline.latest_evidence("monitor-2") / "monitor.json").read_text())["current"]
    assert any(f.endswith(f":patients:{legacy_patient}") and f.startswith("chart_") for f in current["new"])

    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE pt.charge SET amount_cents = %s WHERE id = %s", (amount, charge_id))
    third = monitor(pg_url, store, "monitor-3")
    assert third["accuracy"] == 1.0
    assert third["resolved"] == second["new"]
    history = json.loads(open_store(store).get(HISTORY))
    assert [h["run_id"] for h in history] == ["monitor-1", "monitor-2", "monitor-3"]
    page = (pipeline.latest_evidence("monitor-3") / "monitor.html").read_text()
    assert page.count("<tr>") == 4
    for text in (page, json.dumps(history)):
        assert not any(c in text for c in truth["canaries"] if len(c) >= 6)
