"""Counts and completeness: every legacy id of the extract has an outcome, every new id its target row.

The extract's legacy ids (and, for tables that explode one legacy row into several target rows,
the extra parts' row keys) are copied into temporary tables of the target session; the checks
are then set-based SQL against ``migration.crosswalk``, ``migration.reject`` and ``pt``. Only ids
and counts travel, never a value of a chart.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from typing import Any, TypedDict

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg import sql

from cutover.legacy.profile import current, legacy_tables, mapping_specs
from cutover.mapping.engine import KEYLESS_PREFIX
from cutover.staging.parquet import read_manifest
from cutover.staging.store import Store

log = logging.getLogger(__name__)


class TableCounts(TypedDict):
    legacy_rows: int
    migrated: int
    merged: int
    rejected: int
    target_rows: int
    unresolved: int


def _ids(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Legacy ids as the crosswalk's text (integers without a decimal part, like the mapping engine)."""
    if pa.types.is_floating(values.type):
        values = pc.cast(values, pa.int64())
    return pc.cast(values, pa.string())


def _copy_ids(cur: psycopg.Cursor[Any], table: str, data: pa.Table) -> None:
    """COPY a table of id columns (text, never a chart value) into a temporary table, as CSV."""
    if not data.num_rows:
        return
    sink = io.BytesIO()
    pacsv.write_csv(data, sink, pacsv.WriteOptions(include_header=False))
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, data.column_names))
    )
    with cur.copy(statement) as copy:
        copy.write(sink.getvalue())


def _copy_extract(cur: psycopg.Cursor[Any], table: str, parts: Iterator[pa.Array]) -> None:
    """COPY one table's extracted ids into ``rc_extract``, every part in one stream.

    The table's name is the column's default for the statement rather than a value on every row,
    and the server parses a part while the next one is read: one COPY a part, each with the name
    repeated, took 2.6 s for 1.1M ids at load average 8.
    """
    cur.execute(
        sql.SQL("ALTER TABLE rc_extract ALTER COLUMN legacy_table SET DEFAULT {}").format(sql.Literal(table))
    )
    with cur.copy("COPY rc_extract (legacy_id) FROM STDIN (FORMAT csv)") as copy:
        for ids in parts:
            if len(ids):
                sink = io.BytesIO()
                pacsv.write_csv(pa.table({"legacy_id": ids}), sink, pacsv.WriteOptions(include_header=False))
                copy.write(sink.getbuffer())


def _keyless(store: Store, prefix: str) -> pa.Array:
    """The distinct surrogate ids the mapping gave rows without a key (:data:`KEYLESS_PREFIX`)."""
    found: set[str] = set()
    for part in read_manifest(store, prefix)["parts"]:
        ids = pq.read_table(io.BytesIO(store.get(part["key"], sha256=part["sha256"])), columns=["legacy_id"])
        column = ids.column("legacy_id")
        found.update(column.filter(pc.starts_with(column, KEYLESS_PREFIX)).to_pylist())
    return pa.array(sorted(found), pa.string())


def extract_ids(store: Store, run_prefix: str, table: str) -> Iterator[pa.Array]:
    """Every legacy id of one table's extract, part by part, as the crosswalk's text; a row without a
    key under the surrogate id the mapping gave it (read from the mapped parts, after the last part)."""
    key = legacy_tables()[table].key
    blank = 0
    for part in read_manifest(store, f"{run_prefix}/extract/{table}")["parts"]:
        data = pq.read_table(io.BytesIO(store.get(part["key"], sha256=part["sha256"])), columns=[key])
        ids = _ids(data.column(key))
        blank += ids.null_count
        yield pc.drop_null(ids).combine_chunks()
    if blank:
        yield _keyless(store, f"{run_prefix}/mapped/{table}")


def stage_ids(
    conn: psycopg.Connection[Any], store: Store, run_prefix: str, tables: Sequence[str]
) -> dict[str, int]:
    """Copy every extracted legacy id into ``rc_extract`` and exploded row keys into ``rc_part``.

    Returns each table's row count from its extract manifest (what the legacy side holds). A row
    whose key was blank (or not an id) has no id in the extract: it is staged under the surrogate id
    the mapping gave it (``invalid-key-…``, from the mapped parts), so its reject is matched; a count
    of those that differs from the extract's blank keys leaves rows unmatched, and the ledger fails.
    """
    conn.execute("CREATE TEMP TABLE rc_extract (legacy_table text, legacy_id text) ON COMMIT DROP")
    conn.execute("CREATE TEMP TABLE rc_part (legacy_table text, legacy_id text, row_key text) ON COMMIT DROP")
    legacy_rows: dict[str, int] = {}
    with conn.cursor() as cur:
        for table in tables:
            legacy_rows[table] = read_manifest(store, f"{run_prefix}/extract/{table}")["rows"]
            _copy_extract(cur, table, extract_ids(store, run_prefix, table))
            if mapping_specs()[table].explode is None:
                continue
            for part in read_manifest(store, f"{run_prefix}/mapped/{table}")["parts"]:
                data = pq.read_table(
                    io.BytesIO(store.get(part["key"], sha256=part["sha256"])),
                    columns=["legacy_id", "row_key", "reason"],
                )
                data = data.filter(
                    pc.and_(
                        pc.is_null(data.column("reason")),
                        pc.not_equal(data.column("row_key"), data.column("legacy_id")),
                    )
                ).select(["legacy_id", "row_key"])
                names = pa.array([table] * data.num_rows, pa.string())
                _copy_ids(
                    cur,
                    "rc_part",
                    pa.table(
                        {"legacy_table": names, "legacy_id": data["legacy_id"], "row_key": data["row_key"]}
                    ),
                )
        cur.execute("ANALYZE rc_extract")
        cur.execute("ANALYZE rc_part")
    return legacy_rows


# Each extracted legacy row's outcome in the ledger (NULL: none) and the target row that should
# carry it: its own id, or the survivor's for a merged duplicate. One join, read by every check.
# The reject table is looked up only for the rows the crosswalk lacks (a few percent), by its key:
# a second hash join probed by every extracted row took a third of this statement (1.0 of 3.3 s on
# 1.1M rows, load average 8).
_OUTCOMES = """
CREATE TEMP TABLE rc_outcome ON COMMIT DROP AS
SELECT e.legacy_table, e.legacy_id,
       CASE WHEN c.legacy_id IS NOT NULL THEN c.outcome
            WHEN EXISTS (SELECT FROM migration.reject r WHERE r.legacy_system = %(sys)s
                            AND r.legacy_table = e.legacy_table AND r.legacy_id = e.legacy_id)
            THEN 'rejected' END AS outcome,
       coalesce(c.merged_into, c.new_id) AS id
  FROM rc_extract e
  LEFT JOIN migration.crosswalk c
         ON c.legacy_system = %(sys)s AND c.legacy_table = e.legacy_table AND c.legacy_id = e.legacy_id
"""

# The extra parts of an exploded row have ids of their own and no crosswalk row: expected as well.
_PARTS = """
INSERT INTO rc_outcome (legacy_table, legacy_id, outcome, id)
SELECT p.legacy_table, p.legacy_id, 'part', migration.legacy_uuid(%(sys)s, p.legacy_table, p.row_key)
  FROM rc_part p JOIN rc_outcome o USING (legacy_table, legacy_id)
 WHERE o.outcome = 'migrated'
"""

# The last column: the target rows this run should carry (a merged duplicate's survivor counts once,
# by its own row); the missing ones are taken off once ``rc_presence`` knows them (:data:`_ABSENT`).
_COUNTS = """
SELECT legacy_table,
       count(*) FILTER (WHERE outcome = 'migrated'),
       count(*) FILTER (WHERE outcome = 'merged'),
       count(*) FILTER (WHERE outcome = 'rejected'),
       count(*) FILTER (WHERE outcome IS NULL),
       count(*) FILTER (WHERE id IS NOT NULL AND outcome <> 'merged')
  FROM rc_outcome GROUP BY 1
"""

_UNRESOLVED = """
INSERT INTO migration.validation_failure (run_id, table_name, legacy_id, new_id, kind)
SELECT DISTINCT %(run)s, legacy_table, legacy_id, NULL::uuid, 'unresolved' FROM rc_outcome WHERE outcome IS NULL
ON CONFLICT DO NOTHING
"""

# One full join between the rows this run should have put in the target and the rows there, every
# table at once (the target tables stacked, each row labelled with its legacy table): an expected
# row absent is missing (one failure per legacy row, even when several of its exploded parts are
# gone); a target row not expected by this run is extra unless some crosswalk row (an earlier run or
# wave) accounts for it. Only those two kinds of rows are kept, in ``rc_presence``: a handful on a
# sound load, where the join itself reads a million.
_PRESENCE = """
CREATE TEMP TABLE rc_presence ON COMMIT DROP AS
SELECT coalesce(o.legacy_table, t.legacy_table) AS legacy_table, o.legacy_id, o.outcome,
       o.id AS expected, t.id AS present
  FROM (SELECT legacy_table, legacy_id, outcome, id FROM rc_outcome WHERE id IS NOT NULL) AS o
  FULL JOIN ({stacked}) AS t ON t.legacy_table = o.legacy_table AND t.id = o.id
 WHERE o.id IS NULL OR t.id IS NULL
"""

_MISSING = """
INSERT INTO migration.validation_failure (run_id, table_name, legacy_id, new_id, kind)
SELECT DISTINCT ON (legacy_table, legacy_id) %(run)s, legacy_table, legacy_id, expected, 'missing'
  FROM rc_presence WHERE present IS NULL ORDER BY legacy_table, legacy_id, expected
ON CONFLICT DO NOTHING
"""

# An extra row has no legacy id: the failure's legacy_id holds the new id's text (the column is part
# of the key and NOT NULL).
_EXTRA = """
INSERT INTO migration.validation_failure (run_id, table_name, legacy_id, new_id, kind)
SELECT %(run)s, %(table)s, j.present::text, j.present, 'extra'
  FROM rc_presence j
 WHERE j.legacy_table = %(table)s AND j.expected IS NULL
   AND NOT EXISTS (SELECT 1 FROM migration.crosswalk c WHERE c.new_table = %(new_table)s AND c.new_id = j.present)
   {earlier_parts}
ON CONFLICT DO NOTHING
"""

# Per table: the expected target rows that are missing, to take off the expected count of
# :data:`_COUNTS` (one pass over ``rc_outcome`` for both, not a second one).
_ABSENT = """
SELECT legacy_table, count(*) FROM rc_presence WHERE present IS NULL AND outcome <> 'merged' GROUP BY 1
"""


def _stacked(tables: Sequence[str]) -> sql.Composable:
    """Every target row of the tables, as (legacy table, id)."""
    return sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}::text AS legacy_table, id FROM {}").format(
            sql.Literal(table), sql.Identifier("pt", mapping_specs()[table].target)
        )
        for table in tables
    )


def _earlier_parts(spec: Any) -> sql.Composable:
    """For a table that explodes legacy rows into parts: a part has no crosswalk row of its own, so
    a part an earlier run (another wave) loaded is not this run's extra row. It is told apart by its
    parent, which the crosswalk credits to that other run."""
    if spec.explode is None or not spec.refs:
        return sql.SQL("")
    ref = spec.refs[0]
    return sql.SQL(
        "AND NOT EXISTS (SELECT 1 FROM {target} t2 JOIN migration.crosswalk p"
        " ON p.legacy_system = %(sys)s AND p.legacy_table = {parent} AND p.new_id = t2.{column}"
        " WHERE t2.id = j.present AND p.run_id <> %(source_run)s)"
    ).format(
        target=sql.Identifier("pt", spec.target),
        parent=sql.Literal(ref.parent),
        column=sql.Identifier(ref.column),
    )


def check_ledger(
    conn: psycopg.Connection[Any],
    run_id: str,
    system: str,
    legacy_rows: dict[str, int],
    *,
    source_run_id: str | None = None,
) -> dict[str, TableCounts]:
    """Counts per table and outcome; write ``unresolved``, ``missing`` and ``extra`` failures.

    Needs :func:`stage_ids` in the same session; leaves ``rc_outcome`` for the chart checks.
    """
    params: dict[str, Any] = {"sys": system, "run": run_id, "source_run": source_run_id or run_id}
    conn.execute(_OUTCOMES, params)
    conn.execute(_PARTS, params)
    conn.execute("ANALYZE rc_outcome")
    counts = {
        t: TableCounts(legacy_rows=n, migrated=0, merged=0, rejected=0, target_rows=0, unresolved=0)
        for t, n in legacy_rows.items()
    }
    expected: dict[str, int] = {}
    for table, migrated, merged, rejected, unresolved, carried in conn.execute(_COUNTS).fetchall():
        counts[table] |= {
            "migrated": migrated,
            "merged": merged,
            "rejected": rejected,
            "unresolved": unresolved,
        }
        expected[table] = int(carried)
    conn.execute(_UNRESOLVED, params)
    conn.execute(sql.SQL(_PRESENCE).format(stacked=_stacked(list(legacy_rows))))
    conn.execute(_MISSING, params)
    extra = {
        t for (t,) in conn.execute("SELECT DISTINCT legacy_table FROM rc_presence WHERE expected IS NULL")
    }
    for table in sorted(extra):
        spec = mapping_specs()[table]
        query = sql.SQL(_EXTRA).format(earlier_parts=_earlier_parts(spec))
        conn.execute(query, {**params, "table": table, "new_table": spec.target})
    absent = dict(conn.execute(_ABSENT).fetchall())
    for table, carried in expected.items():
        if table in counts:
            counts[table]["target_rows"] = carried - int(absent.get(table, 0))
    return counts


# The ledger's rejected rows of some tables: a reject record and no crosswalk row (as ``rc_outcome``
# has it). Read without the extract: a mapped part holds only its extract's ids, so the legacy side
# drops the same rows. The crosswalk is looked up by its key for each reject record (a scalar
# subquery, never made a join: a few percent of the rows, where a hash of the crosswalk costs a
# second).
_REJECTED = """
SELECT r.legacy_table, r.legacy_id FROM migration.reject r
 WHERE r.legacy_system = %(sys)s AND r.legacy_table = ANY(%(tables)s)
   AND (SELECT c.outcome FROM migration.crosswalk c WHERE c.legacy_system = r.legacy_system
           AND c.legacy_table = r.legacy_table AND c.legacy_id = r.legacy_id) IS NULL
"""


def rejected_ids(conn: psycopg.Connection[Any], system: str, tables: Sequence[str]) -> dict[str, pa.Array]:
    """Per table, the legacy ids the ledger rejected (a small share, by policy)."""
    found: dict[str, list[str]] = {table: [] for table in tables}
    for table, legacy_id in conn.execute(_REJECTED, {"sys": system, "tables": list(tables)}).fetchall():
        found[table].append(legacy_id)
    return {table: pa.array(ids, pa.string()) for table, ids in found.items()}


# The surviving patients in scope, each with its 64-bit key (the uuid's first 8 bytes, signed) and
# its own legacy id. In scope: the target patient of every extracted patient the ledger migrated or
# merged ({survivors}: from ``rc_outcome``, or straight from the extract's patient ids).
_PATIENTS = """
CREATE TEMP TABLE rc_patient ON COMMIT DROP AS
SELECT s.patient_id,
       ('x' || encode(substring(uuid_send(s.patient_id) FROM 1 FOR 8), 'hex'))::bit(64)::bigint AS key,
       w.legacy_id
  FROM ({survivors}) AS s
  LEFT JOIN migration.crosswalk w
         ON w.legacy_system = %(sys)s AND w.legacy_table = %(patients)s AND w.new_table = 'patient'
        AND w.new_id = s.patient_id AND w.outcome = 'migrated'
"""

_SURVIVORS_OF_OUTCOMES = """
SELECT DISTINCT id AS patient_id FROM rc_outcome
 WHERE legacy_table = %(patients)s AND outcome IN ('migrated', 'merged')
"""

# The same set from the patient ids alone (``rc_extract`` holding only those): a crosswalk row, not a
# reject, is what gives an extracted row an id in ``rc_outcome``.
_SURVIVORS_OF_EXTRACT = """
SELECT DISTINCT coalesce(c.merged_into, c.new_id) AS patient_id
  FROM rc_extract e
  JOIN migration.crosswalk c
    ON c.legacy_system = %(sys)s AND c.legacy_table = e.legacy_table AND c.legacy_id = e.legacy_id
 WHERE e.legacy_table = %(patients)s AND c.outcome IN ('migrated', 'merged')
"""


def _create_patients(conn: psycopg.Connection[Any], system: str, survivors: str) -> None:
    patients = current().patient_table
    conn.execute(
        sql.SQL(_PATIENTS).format(survivors=sql.SQL(survivors)), {"sys": system, "patients": patients}
    )
    conn.execute("CREATE UNIQUE INDEX ON rc_patient (patient_id)")
    conn.execute("ANALYZE rc_patient")


# Every extracted patient id the ledger migrated or merged → its survivor's key.
_KEYS_OF_EXTRACT = """
SELECT e.legacy_id, p.key
  FROM rc_extract e
  JOIN migration.crosswalk c
    ON c.legacy_system = %(sys)s AND c.legacy_table = e.legacy_table AND c.legacy_id = e.legacy_id
  JOIN rc_patient p ON p.patient_id = coalesce(c.merged_into, c.new_id)
 WHERE e.legacy_table = %(patients)s AND c.outcome IN ('migrated', 'merged')
"""


def stage_patients_from_extract(
    conn: psycopg.Connection[Any], store: Store, run_prefix: str, system: str
) -> tuple[pa.Array, pa.Array]:
    """Create ``rc_patient`` from the patient table's extract alone; return legacy patient id → survivor key.

    The same patients as :func:`stage_patients` (which needs the whole ledger's ``rc_outcome``),
    so a second session holding the same snapshot can find them, build the charts of both sides
    and aggregate the target's while the first checks the ledger.
    """
    patients = current().patient_table
    conn.execute("CREATE TEMP TABLE rc_extract (legacy_table text, legacy_id text) ON COMMIT DROP")
    with conn.cursor() as cur:
        _copy_extract(cur, patients, extract_ids(store, run_prefix, patients))
    conn.execute("ANALYZE rc_extract")
    _create_patients(conn, system, _SURVIVORS_OF_EXTRACT)
    rows = conn.execute(_KEYS_OF_EXTRACT, {"sys": system, "patients": patients}).fetchall()
    return pa.array([r[0] for r in rows], pa.string()), pa.array([r[1] for r in rows], pa.int64())


def stage_patients(conn: psycopg.Connection[Any], system: str) -> tuple[pa.Array, pa.Array]:
    """Create ``rc_patient`` (the surviving patients in scope) from the ledger's ``rc_outcome``; return
    legacy patient id → survivor key. The definition :func:`stage_patients_from_extract` is held to
    (the reconciliation uses that one, which needs no ledger)."""
    patients = current().patient_table
    _create_patients(conn, system, _SURVIVORS_OF_OUTCOMES)
    rows = conn.execute(
        "SELECT o.legacy_id, p.key FROM rc_outcome o JOIN rc_patient p ON p.patient_id = o.id"
        " WHERE o.legacy_table = %s AND o.outcome IN ('migrated', 'merged')",
        (patients,),
    ).fetchall()
    return pa.array([r[0] for r in rows], pa.string()), pa.array([r[1] for r in rows], pa.int64())
