"""Changes made in the legacy system after a wave's cutover, found and carried over (``pt_delta_sync``).

During a phased migration the later waves' clinics still work in the legacy system, and a wave
already migrated may still see late edits there (a note signed late, a payment posted on
Monday). Every extract records each table's high-water mark: the largest ``modified`` value it
read. A row of a migrated wave whose ``modified`` is above the mark of the last run that covered
the wave (its cutover or a later delta sync) changed afterwards — or is new. The delta sync moves
exactly those rows through the same map and load (upsert by deterministic id: a changed row
updates its target row, a new one is inserted), then raises the marks.

What this does not see: a row *deleted* in the legacy system (no row, no timestamp) and an edit
that did not touch ``modified``. Both are reported by the reconciliation, not carried.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any

import psycopg

from cutover.pipeline import evidence_dir, migrated_tables, run_key
from cutover.plan import load_plan
from cutover.scope import delta_scope
from cutover.staging.store import open_store

log = logging.getLogger(__name__)


class NothingMigrated(Exception):
    """No wave has been migrated yet: there is nothing to sync."""


def migrated_waves(target_url: str) -> dict[str, list[str]]:
    """Wave → the successful runs that covered it (its cutover, then delta syncs), oldest first."""
    waves: dict[str, list[str]] = {}
    with psycopg.connect(target_url) as conn:
        rows = conn.execute(
            "SELECT run_id, dag_id, conf FROM migration.run WHERE state = 'success'"
            " AND dag_id IN ('pt_cutover', 'pt_delta_sync') ORDER BY started_at, run_id"
        ).fetchall()
    for run_id, dag_id, conf in rows:
        conf = conf or {}
        if dag_id == "pt_cutover" and conf.get("mode") == "phased" and conf.get("wave"):
            waves.setdefault(conf["wave"], []).append(run_id)
        elif dag_id == "pt_delta_sync":
            for wave in conf.get("waves") or []:
                waves.setdefault(wave, []).append(run_id)
    return waves


def high_water(store_url: str, runs: list[str]) -> dict[str, str]:
    """Table → the largest ``modified`` any of ``runs`` extracted."""
    store = open_store(store_url)
    marks: dict[str, str] = {}
    for run in runs:
        for table in migrated_tables():
            key = f"runs/{run_key(run)}/extract/{table}/_stats.json"
            if store.exists(key):
                mark = json.loads(store.get(key)).get("high_water")
                if mark and mark > marks.get(table, ""):
                    marks[table] = mark
    return marks


def plan_delta(
    legacy_url: str, store_url: str, target_url: str, run_id: str, *, as_of: date
) -> dict[str, Any]:
    """Stage the scope of a delta sync: changed rows of every migrated wave. Counts and marks only."""
    waves = migrated_waves(target_url)
    if not waves:
        raise NothingMigrated("no wave has been migrated yet: nothing to sync")
    plan = load_plan()
    marks = {wave: high_water(store_url, runs) for wave, runs in waves.items()}
    scope = delta_scope(legacy_url, plan, marks, as_of=as_of)
    scope.save(open_store(store_url), f"runs/{run_key(run_id)}")
    log.info("delta sync %s: waves %s since their last runs", run_id, ", ".join(waves))
    return {"waves": sorted(waves), "since": marks, "last_runs": {w: r[-1] for w, r in waves.items()}}


def write_delta_report(store_url: str, run_id: str, planned: dict[str, Any]) -> dict[str, Any]:
    """``delta_report.json``: per table, how many rows changed since each wave's mark (counts only)."""
    store = open_store(store_url)
    changed = {}
    for table in migrated_tables():
        key = f"runs/{run_key(run_id)}/extract/{table}/_stats.json"
        if store.exists(key):
            changed[table] = json.loads(store.get(key))["rows"]
    report = {**planned, "run_id": run_id, "changed_rows": changed}
    body = json.dumps(report, indent=2, sort_keys=True).encode()
    (evidence_dir(run_id) / "delta_report.json").write_bytes(body)
    return {"changed_rows": sum(changed.values()), "waves": planned["waves"]}
