"""A run's side of the remediation loop (:mod:`cutover.remediation`): what a run takes, plans and writes.

- :func:`bind_run` (every run's ``begin_run``): the run's own copy of the corrections, each vouched
  for by the audit log, and of the duplicate decisions, so every stage of the run applies the same;
- :func:`overlay` and :func:`apply` (``map_table``): the corrected values laid over the extracted
  rows, matched by key; :func:`decisions`: the verdicts the duplicate matcher applies;
- :func:`plan_run` (``pt_remediate``'s first task): the ``rows`` scope of the corrected rows still
  rejected and every reject rooted in them; :func:`write_report`: what became of each of them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from cutover.config import LEGACY_SYSTEM
from cutover.legacy.profile import legacy_tables
from cutover.remediation import (
    NothingToRemediate,
    cast_value,
    load_corrections,
    save_corrections,
    vouched,
)
from cutover.staging.store import Store

log = logging.getLogger(__name__)


def run_copy(run_key: str) -> str:
    """Where a run keeps the corrections it applies: every stage of the run reads the same ones."""
    return f"runs/{run_key}/corrections.enc"


def decisions_copy(run_key: str) -> str:
    """Where a run keeps the duplicate decisions it applies (ids only: plain JSON)."""
    return f"runs/{run_key}/duplicate_decisions.json"


def bind_run(store: Store, audit_url: str, run_key: str) -> int:
    """Copy the corrections, vouched for by the audit log of ``audit_url`` (the target), and the
    duplicate decisions recorded there, under the run (a retried task copies them again: a run not
    yet mapping may take a correction made since). The number of corrections copied."""
    corrections = load_corrections(store)
    vouched(audit_url, corrections)
    if corrections:
        save_corrections(store, corrections, run_copy(run_key))
    decided = _decisions(audit_url)
    if decided:
        store.put(decisions_copy(run_key), json.dumps(decided, sort_keys=True).encode())
    return len(corrections)


def _decisions(target_url: str) -> dict[str, list[list[str]]]:
    """Legacy table → its decided pairs, ``[left, right, verdict]``; none where the target has no
    ledger yet (a first cutover's trial)."""
    try:
        with psycopg.connect(target_url) as conn:
            rows = conn.execute(
                "SELECT legacy_table, left_id, right_id, decision FROM migration.duplicate_decision"
                " WHERE legacy_system = %s ORDER BY 1, 2, 3",
                (LEGACY_SYSTEM,),
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return {}
    decided: dict[str, list[list[str]]] = {}
    for table, left, right, verdict in rows:
        decided.setdefault(table, []).append([left, right, verdict])
    return decided


def decisions(store: Store, run_key: str, table: str) -> dict[tuple[str, str], str]:
    """The duplicate decisions a run applies to ``table``: (left, right) → verdict."""
    name = decisions_copy(run_key)
    if not store.exists(name):
        return {}
    return {(left, right): verdict for left, right, verdict in json.loads(store.get(name)).get(table, [])}


def plan_remediation(store: Store, target_url: str, prefix: str) -> dict[str, Any]:
    """Stage the scope of a remediation run at ``prefix``: the corrected rows still rejected, and every
    reject whose root is one of them; their tables of :func:`~cutover.scope.whole_in_delta` whole.
    Counts only. NothingToRemediate when no correction waits."""
    from cutover.scope import Scope, whole_in_delta

    corrections = load_corrections(store)
    vouched(target_url, corrections)
    roots = sorted({(c.legacy_table, c.legacy_id) for c in corrections})
    with psycopg.connect(target_url) as conn:
        rows = conn.execute(
            "SELECT r.legacy_table, r.legacy_id FROM migration.reject r"
            " JOIN unnest(%(tables)s::text[], %(ids)s::text[]) AS c(t, i)"
            "   ON (r.legacy_table = c.t AND r.legacy_id = c.i) OR (r.root_table = c.t AND r.root_legacy_id = c.i)"
            " WHERE r.legacy_system = %(sys)s",
            {"sys": LEGACY_SYSTEM, "tables": [t for t, _ in roots], "ids": [i for _, i in roots]},
        ).fetchall()
    if not rows:
        raise NothingToRemediate("no correction waits for a run: every corrected row is carried already")
    ids: dict[str, list[str]] = {}
    for table, legacy_id in rows:
        ids.setdefault(table, []).append(legacy_id)
    whole = tuple(sorted(t for t in whole_in_delta() if t in ids))
    scope = Scope(
        "rows",
        {t: pa.array(sorted(v), pa.string()) for t, v in ids.items()},
        label="remediation",
        whole=whole,
    )
    scope.save(store, prefix)
    carried_roots = {(t, i) for t, i in rows} & set(roots)
    log.info("remediation: %d corrected rows, %d rows in scope", len(carried_roots), len(rows))
    return {
        "corrected_rows": len(carried_roots),
        "rows": {t: len(v) for t, v in sorted(ids.items())},
        "whole": list(whole),
    }


def plan_run(store_url: str, target_url: str, run_id: str) -> dict[str, Any]:
    """``pt_remediate``'s first step: :func:`plan_remediation` under the run's prefix."""
    from cutover.evidence import run_key
    from cutover.staging.store import open_store

    return plan_remediation(open_store(store_url), target_url, f"runs/{run_key(run_id)}")


_CARRIED = """
SELECT s.t, coalesce(c.outcome, CASE WHEN r.legacy_id IS NOT NULL THEN 'rejected' END, 'absent'), count(*)
  FROM unnest(%(tables)s::text[], %(ids)s::text[]) AS s(t, i)
  LEFT JOIN migration.crosswalk c
    ON c.legacy_system = %(sys)s AND c.legacy_table = s.t AND c.legacy_id = s.i
  LEFT JOIN migration.reject r
    ON r.legacy_system = %(sys)s AND r.legacy_table = s.t AND r.legacy_id = s.i
 GROUP BY 1, 2
"""


def write_report(target_url: str, store_url: str, run_id: str, planned: dict[str, Any]) -> dict[str, Any]:
    """``remediation_report.json`` in the run's evidence: what became of every row of its scope (the
    rejects it set out to carry; a table taken whole counts only those), per table and outcome."""
    from cutover.evidence import run_key, writable
    from cutover.scope import Scope
    from cutover.staging.store import open_store

    scope = Scope.load(open_store(store_url), f"runs/{run_key(run_id)}")
    tables = [t for t, ids in scope.ids.items() for _ in range(len(ids))]
    ids = [i for v in scope.ids.values() for i in v.to_pylist()]
    with psycopg.connect(target_url) as conn:
        rows = conn.execute(_CARRIED, {"sys": LEGACY_SYSTEM, "tables": tables, "ids": ids}).fetchall()
    outcomes: dict[str, dict[str, int]] = {}
    for table, outcome, count in rows:
        outcomes.setdefault(table, {})[outcome] = int(count)
    carried = sum(n for per in outcomes.values() for o, n in per.items() if o in ("migrated", "merged"))
    report = {
        "run_id": run_id,
        "corrected_rows": planned["corrected_rows"],
        "scope_rows": len(ids),
        "carried": carried,
        "rejected_again": sum(per.get("rejected", 0) for per in outcomes.values()),
        "tables": dict(sorted(outcomes.items())),
    }
    (writable(run_id) / "remediation_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    log.info("remediation %s: %d of %d rows carried", run_id, carried, len(ids))
    return report


@dataclass(frozen=True)
class Overlay:
    """One table's corrections, by column: the legacy ids (text) and their values (the column's type)."""

    table: str
    columns: dict[str, tuple[pa.Array, pa.Array]]


def overlay(store: Store, run_key: str, table: str) -> Overlay | None:
    """The corrections a run applies to ``table``, None when it has none."""
    mine = [c for c in load_corrections(store, run_copy(run_key)) if c.legacy_table == table]
    if not mine:
        return None
    spec = legacy_tables()[table]
    columns: dict[str, tuple[pa.Array, pa.Array]] = {}
    for column in sorted({c.column for c in mine}):
        chosen = [c for c in mine if c.column == column]
        ids = pa.array([c.legacy_id for c in chosen], pa.string())
        values = pa.concat_arrays([cast_value(spec.column_type(column), c.value) for c in chosen])
        columns[column] = (ids, values)
    return Overlay(table, columns)


def apply(batch: pa.RecordBatch | pa.Table, over: Overlay | None) -> pa.RecordBatch | pa.Table:
    """``batch`` with the corrected values in place of the legacy ones (rows matched by their key as
    text); the extract itself is never changed."""
    if over is None or not batch.num_rows:
        return batch
    key = legacy_tables()[over.table].key
    keys = pc.cast(batch.column(key), pa.string())
    for column, (ids, values) in over.columns.items():
        at = pc.index_in(keys, value_set=ids)
        hit = pc.is_valid(at)
        if not pc.any(hit).as_py():
            continue
        where = batch.schema.get_field_index(column)
        current = batch.column(where)
        corrected = pc.if_else(hit, pc.take(values.cast(current.type), pc.fill_null(at, 0)), current)
        batch = batch.set_column(where, batch.schema.field(where), corrected)
    return batch
