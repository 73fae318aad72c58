"""Reject lineage: every reject down to its root cause, and what each root cause cost.

Most rejected rows are not defects of their own: a charge is rejected ``parent_rejected`` because its
visit was, the visit because its episode was, the episode because its patient has an impossible
birth date. The loader records with each reject the reference that decided it and the reject's root
(``migration.reject``'s lineage columns, V011):

- a **cascade** (:data:`CASCADE`, ``parent_rejected``): its parent's table and legacy id, and its
  parent's root, recorded with the parent, which loads first. So the root is found with one lookup
  per reject, never by walking a chain, and it stays right across phased waves and resumed runs: a
  parent rejected by an earlier wave or an earlier attempt is in the ledger with its root;
- a reject another reference decided (:data:`BY_REFERENCE`: an ``orphan``, ``ref_missing``, a
  ``patient_mismatch``): the parent it names (the one the ledger lacks, or another patient's), and
  itself as root: its defect is its own reference;
- any other reject: itself as root.

Decided where the cascade is, rather than by a recursive UPDATE after the load, because the load
already holds the parent's reject row at that point: the lineage costs the rejected rows only (the
general merge's reject INSERT, about 7 µs a reject: +8 ms on a 50k-row part of charges with 1,152
rejects; the first load's Arrow path about 1 ms a part), nothing per migrated row, and a killed
run's committed parts need no pass afterwards.

This module reads the lineage back: :func:`root_causes` groups a run's rejects by root cause, most
costly first (``summary.json``'s ``root_causes``, the report's "Rejects by root cause"), and
:func:`chain` walks one reject's parents for ``cutover trace``. Legacy ids, table names, reason codes
and counts only: a reject's ``detail`` names a legacy column, never a value.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypedDict

import psycopg
from psycopg import sql

from cutover.config import LEGACY_SYSTEM

CASCADE: Final = "parent_rejected"
"""The one reason whose root is another row: the row's required parent was rejected."""

BY_REFERENCE: Final = frozenset({CASCADE, "orphan", "ref_missing", "patient_mismatch"})
"""Reasons a reference decides: their ``detail`` is that reference's legacy column, which names the
parent (:class:`cutover.mapping.engine.Ref`)."""

MAX_DEPTH: Final = 32
"""Parents followed at most by :func:`chain` (the PT schema's deepest chain is four rows: a procedure
line → its visit → its episode → its patient); a guard, not a limit any ledger reaches."""

LINEAGE_COLUMNS: Final = ("parent_table", "parent_legacy_id", "root_table", "root_legacy_id", "root_reason")
"""``migration.reject``'s lineage columns (V011), in the order the loader writes them."""


def root_of(alias: str) -> tuple[sql.Composable, sql.Composable, sql.Composable]:
    """SQL for the root (table, legacy id, reason) of the ``migration.reject`` row ``alias``: as recorded,
    or, where none is (a reject written before V011 or by hand), the row itself unless it is a cascade."""
    r = sql.Identifier(alias)

    def pick(recorded: str, own: str) -> sql.Composable:
        return sql.SQL(
            "CASE WHEN {r}.root_table IS NOT NULL THEN {r}.{recorded}"
            " WHEN {r}.reason_code <> {cascade} THEN {r}.{own} END"
        ).format(
            r=r, recorded=sql.Identifier(recorded), own=sql.Identifier(own), cascade=sql.Literal(CASCADE)
        )

    return (
        pick("root_table", "legacy_table"),
        pick("root_legacy_id", "legacy_id"),
        pick("root_reason", "reason_code"),
    )


class RootCause(TypedDict):
    """One root cause of a run's rejects: legacy rows of one table rejected for one reason, and the rows
    their rejection pulled along."""

    root_table: str | None
    """Legacy table of the root rejects; None for cascades whose root was never recorded (before V011)."""
    root_reason: str | None
    root_detail: str | None
    """The legacy column(s) the root rejects are about (their ``detail``), when they name one."""
    roots: int
    """Distinct root rejects (rejected by this run or, for a phased wave, an earlier one)."""
    rows: dict[str, int]
    """Per legacy table: this run's rejects pulled along by these roots (the roots themselves not counted)."""
    pulled: int
    """All of ``rows``: what the root cause cost beyond the roots."""


_ROOT_CAUSES = """
WITH mine AS (
    SELECT r.legacy_table, r.legacy_id, {root_table} AS root_table, {root_id} AS root_legacy_id,
           {root_reason} AS root_reason
      FROM migration.reject r
     WHERE r.legacy_system = %(sys)s AND r.run_id = %(run)s
)
SELECT m.root_table, m.root_reason, root.detail, m.legacy_table,
       count(*) FILTER (WHERE (m.legacy_table, m.legacy_id) IS DISTINCT FROM (m.root_table, m.root_legacy_id))
  FROM mine m
  LEFT JOIN migration.reject root
    ON root.legacy_system = %(sys)s AND root.legacy_table = m.root_table AND root.legacy_id = m.root_legacy_id
 GROUP BY 1, 2, 3, 4
"""

_ROOTS = """
WITH mine AS (
    SELECT {root_table} AS root_table, {root_id} AS root_legacy_id, {root_reason} AS root_reason
      FROM migration.reject r
     WHERE r.legacy_system = %(sys)s AND r.run_id = %(run)s
)
SELECT m.root_table, m.root_reason, root.detail, count(DISTINCT m.root_legacy_id)
  FROM mine m
  LEFT JOIN migration.reject root
    ON root.legacy_system = %(sys)s AND root.legacy_table = m.root_table AND root.legacy_id = m.root_legacy_id
 GROUP BY 1, 2, 3
"""


def _query(template: str) -> sql.Composed:
    table, legacy_id, reason = root_of("r")
    return sql.SQL(template).format(root_table=table, root_id=legacy_id, root_reason=reason)


def root_causes(target_url: str, run_id: str, *, system: str = LEGACY_SYSTEM) -> list[RootCause]:
    """The run's rejects grouped by root cause (root table, reason and column), most costly first: the
    most rows pulled along, then the most roots.

    Every reject of the run is counted once: as a root (``roots``, where its root is itself) or as a
    row its root pulled along (``rows``). A root outside the run (an earlier wave's patient) is
    counted in ``roots`` too, so ``roots`` says how many legacy defects to fix.
    """
    params = {"sys": system, "run": run_id}
    with psycopg.connect(target_url) as conn:
        per_table = conn.execute(_query(_ROOT_CAUSES), params).fetchall()
        roots = conn.execute(_query(_ROOTS), params).fetchall()
    causes: dict[tuple[str | None, str | None, str | None], RootCause] = {
        (table, reason, detail): RootCause(
            root_table=table, root_reason=reason, root_detail=detail, roots=int(count), rows={}, pulled=0
        )
        for table, reason, detail, count in roots
    }
    for table, reason, detail, legacy_table, pulled in per_table:
        cause = causes[(table, reason, detail)]
        if pulled:
            cause["rows"][legacy_table] = int(pulled)
            cause["pulled"] += int(pulled)
    for cause in causes.values():
        cause["rows"] = dict(sorted(cause["rows"].items(), key=lambda kv: (-kv[1], kv[0])))
    return sorted(
        causes.values(),
        key=lambda c: (
            -c["pulled"],
            -c["roots"],
            c["root_table"] or "",
            c["root_reason"] or "",
            c["root_detail"] or "",
        ),
    )


class Step(TypedDict):
    """One link of a reject's chain: a legacy row and what the ledger holds for it."""

    legacy_table: str
    legacy_id: str | None
    """None: the row names no parent (``ref_missing``)."""
    outcome: Literal["rejected", "migrated", "merged", "absent"]
    """``absent``: no outcome in the ledger (the parent an orphan names)."""
    reason_code: str | None


_CHAIN = """
WITH RECURSIVE walk (depth, legacy_table, legacy_id, reason_code, parent_table, parent_legacy_id) AS (
    SELECT 0, legacy_table, legacy_id, reason_code, parent_table, parent_legacy_id
      FROM migration.reject
     WHERE legacy_system = %(sys)s AND legacy_table = %(table)s AND legacy_id = %(id)s
    UNION ALL
    SELECT w.depth + 1, p.legacy_table, p.legacy_id, p.reason_code, p.parent_table, p.parent_legacy_id
      FROM walk w
      JOIN migration.reject p
        ON p.legacy_system = %(sys)s AND p.legacy_table = w.parent_table AND p.legacy_id = w.parent_legacy_id
     WHERE w.reason_code = %(cascade)s AND w.depth < %(most)s
)
SELECT legacy_table, legacy_id, reason_code, parent_table, parent_legacy_id FROM walk ORDER BY depth
"""


def chain(
    conn: psycopg.Connection[Any], legacy_table: str, legacy_id: str, *, system: str = LEGACY_SYSTEM
) -> list[Step]:
    """A reject and its parents, down to the root: the rejected row first, then each cascade's parent
    (``parent_rejected`` links), then, where the last reject names a parent that is not rejected (an
    orphan's missing parent, a ``patient_mismatch``'s other patient's row), that parent and its
    outcome. Empty for a legacy row that is not rejected.
    """
    rows = conn.execute(
        _CHAIN,
        {"sys": system, "table": legacy_table, "id": legacy_id, "cascade": CASCADE, "most": MAX_DEPTH},
    ).fetchall()
    steps = [
        Step(legacy_table=table, legacy_id=key, outcome="rejected", reason_code=reason)
        for table, key, reason, _, _ in rows
    ]
    if not rows:
        return steps
    _, _, _, parent_table, parent_id = rows[-1]
    if parent_table is None:
        return steps
    if parent_id is None:
        return [*steps, Step(legacy_table=parent_table, legacy_id=None, outcome="absent", reason_code=None)]
    found = conn.execute(
        "SELECT outcome FROM migration.crosswalk WHERE legacy_system = %s AND legacy_table = %s AND legacy_id = %s",
        (system, parent_table, parent_id),
    ).fetchone()
    outcome: Literal["migrated", "merged", "absent"] = found[0] if found else "absent"
    return [*steps, Step(legacy_table=parent_table, legacy_id=parent_id, outcome=outcome, reason_code=None)]


def pulled_along(
    conn: psycopg.Connection[Any], legacy_table: str, legacy_id: str, *, system: str = LEGACY_SYSTEM
) -> dict[str, int]:
    """Per legacy table, the rejects (of any run) whose root is this legacy row, itself not counted."""
    rows = conn.execute(
        "SELECT legacy_table, count(*) FROM migration.reject"
        " WHERE legacy_system = %(sys)s AND root_table = %(table)s AND root_legacy_id = %(id)s"
        " AND (legacy_table, legacy_id) <> (%(table)s, %(id)s) GROUP BY 1 ORDER BY 2 DESC, 1",
        {"sys": system, "table": legacy_table, "id": legacy_id},
    ).fetchall()
    return {table: int(count) for table, count in rows}
