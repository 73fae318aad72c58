"""The reject policy as a gate before any write: what the load would reject, decided from the staged rows.

The validation gates check the rows that survived mapping, so a mass rejection is invisible to
them; the policy of ``thresholds.yaml`` used to be checked only after the load, when the rows that
did survive were already in the target. This gate counts, per legacy table and before anything is
written, the rows the load is going to reject:

- the mapping's rejects (the staged ``reason``);
- the cascades the staged outcomes decide: a row whose required (or strict) parent was rejected
  (``parent_rejected``), or names a parent that is neither staged by this run nor, when the target
  is given, already migrated there (``orphan``), parents first, so a rejected patient's cases
  reject their visits too.

A breach of a table's limit fails the run here, with the target untouched, whether it is a first
load or not. What the gate cannot know before the load (a parent refused by the target's own
constraints, a case of another patient: ``patient_mismatch``) the load decides, and the reject
policy checked after the load (:func:`cutover.pipeline.write_summary`) stays as the second line.

Memory holds the staged legacy ids of the tables that are parents (ids only, no other column).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from cutover.config import LEGACY_SYSTEM
from cutover.mapping.engine import MAP_BATCH_ROWS, TableSpec
from cutover.policy import SET_ASIDE, evaluate, thresholds_path
from cutover.staging.parquet import iter_batches, read_manifest
from cutover.staging.store import Store

log = logging.getLogger(__name__)


@dataclass
class Projected:
    """What the load of one legacy table is going to reject, by cause."""

    legacy_rows: int
    mapping: int = 0
    parent_rejected: int = 0
    orphan: int = 0
    set_aside: int = 0
    """Of ``mapping``: rows set aside (:data:`~cutover.policy.SET_ASIDE`), not counted by the policy."""

    @property
    def rejected(self) -> int:
        return self.mapping + self.parent_rejected + self.orphan


def _migrated(target_url: str, parent: str, ids: pa.Array) -> pa.Array:
    """Those of ``ids`` already migrated (or merged) into the target by an earlier run."""
    if not len(ids):
        return ids
    with psycopg.connect(target_url) as conn:
        found = conn.execute(
            "SELECT legacy_id FROM migration.crosswalk WHERE legacy_system = %s AND legacy_table = %s"
            " AND legacy_id = ANY(%s::text[])",
            (LEGACY_SYSTEM, parent, ids.to_pylist()),
        ).fetchall()
    return pa.array([row[0] for row in found], pa.string())


def _outcomes(store: Store, prefix: str, columns: list[str]) -> pa.Table:
    """One row per legacy row of a mapped table (an exploded row's parts share reason and parents)."""
    batches = list(iter_batches(store, prefix, max_rows=MAP_BATCH_ROWS, columns=columns))
    data = (
        pa.Table.from_batches(batches)
        if batches
        else pa.table({c: pa.array([], pa.string()) for c in columns})
    )
    grouped = data.group_by("legacy_id", use_threads=False).aggregate([(c, "first") for c in columns[1:]])
    return grouped.select(["legacy_id", *(f"{c}_first" for c in columns[1:])]).rename_columns(columns)


def project(
    store: Store, run_prefix: str, specs: dict[str, TableSpec], tables: list[str], target_url: str | None
) -> dict[str, Projected]:
    """Per legacy table (``tables`` in load order, parents first): the rows the load will reject."""
    kept: dict[str, pa.Array] = {}
    rejected: dict[str, pa.Array] = {}
    out: dict[str, Projected] = {}
    for table in tables:
        spec = specs[table]
        checked = [ref for ref in spec.refs if (ref.required or ref.strict) and ref.parent in kept]
        columns = ["legacy_id", "reason", *(f"ref_{ref.column}" for ref in checked)]
        data = _outcomes(store, f"{run_prefix}/mapped/{table}", columns)
        projected = Projected(read_manifest(store, f"{run_prefix}/extract/{table}")["rows"])
        mapped = pc.is_null(data["reason"])
        projected.mapping = data.num_rows - (pc.sum(mapped).as_py() or 0)
        aside = pc.is_in(data["reason"], value_set=pa.array(sorted(SET_ASIDE), pa.string()))
        projected.set_aside = pc.sum(pc.fill_null(aside, False)).as_py() or 0
        gone = [data["legacy_id"].filter(pc.invert(mapped)).combine_chunks()]
        data = data.filter(mapped)
        decided = pa.array(np.zeros(data.num_rows, dtype=bool))
        for ref in checked:
            src = data[f"ref_{ref.column}"].combine_chunks()
            dead = pc.fill_null(pc.is_in(src, value_set=rejected[ref.parent]), False)
            missing = pc.and_(
                pc.is_valid(src),
                pc.invert(pc.fill_null(pc.is_in(src, value_set=kept[ref.parent]), False)),
            )
            missing = pc.and_(missing, pc.invert(dead))
            if target_url and pc.any(missing).as_py():
                # a parent this run did not stage may be in the target already (an earlier wave)
                elsewhere = _migrated(target_url, ref.parent, pc.unique(src.filter(missing)))
                missing = pc.and_(missing, pc.invert(pc.fill_null(pc.is_in(src, value_set=elsewhere), False)))
            # the load's rule: a row's first failing reference gives its reason
            new_dead = pc.and_(dead, pc.invert(decided))
            new_missing = pc.and_(missing, pc.invert(decided))
            projected.parent_rejected += pc.sum(new_dead).as_py() or 0
            projected.orphan += pc.sum(new_missing).as_py() or 0
            decided = pc.or_(decided, pc.or_(dead, missing))
        gone.append(data["legacy_id"].filter(decided).combine_chunks())
        kept[table] = data["legacy_id"].filter(pc.invert(decided)).combine_chunks()
        rejected[table] = pa.concat_arrays(gone)
        out[table] = projected
    return out


def check_rejects(
    store: Store,
    run_prefix: str,
    specs: dict[str, TableSpec],
    tables: list[str],
    *,
    target_url: str | None,
    max_reject_rate: float | None = None,
) -> dict[str, Any]:
    """The reject gate's report: per table the projected rejects by cause against ``thresholds.yaml``
    (counts only), and whether every table is within its limit (``passed``)."""
    projected = project(store, run_prefix, specs, tables, target_url)
    policy = {
        p.table: p
        for p in evaluate(
            {
                t: {"legacy_rows": p.legacy_rows, "rejected": p.rejected, "set_aside": p.set_aside}
                for t, p in projected.items()
            },
            max_reject_rate,
        )
    }
    for p in policy.values():
        if not p.ok:
            log.error(
                "reject gate: %s would reject %d of %d legacy rows (%.1f%%, limit %.1f%%)",
                p.table, p.rejected, p.legacy_rows, 100 * p.rate, 100 * p.limit,
            )  # fmt: skip
    return {
        "gate": "rejects",
        "policy": thresholds_path().name,
        "passed": all(p.ok for p in policy.values()),
        "tables": {
            t: {
                "legacy_rows": p.legacy_rows,
                "rejected_by_mapping": p.mapping,
                "parent_rejected": p.parent_rejected,
                "orphan": p.orphan,
                "rejected": p.rejected,
                **policy[t].as_dict(),
            }
            for t, p in projected.items()
        },
    }


def breach_message(report: dict[str, Any]) -> str:
    """One line naming every table over its limit (counts only)."""
    over = ", ".join(
        f"{t} {o['rejected']}/{o['legacy_rows']} (limit {o['limit']:.1%})"
        for t, o in report["tables"].items()
        if not o["ok"]
    )
    return (
        f"reject gate: the load would reject more rows than the reject policy ({report['policy']}) allows:"
        f" {over}; nothing was written to the target (gates/rejects.json has the causes per table)"
    )
