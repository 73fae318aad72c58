"""Merge mapped batches into the target, one atomic transaction per batch, resumable.

For each staged part of a table: binary COPY into a temporary table, record the mapping
stage's rejects, resolve parent references through the crosswalk (a required parent that was
rejected or never existed rejects the row, which names that parent and its root cause:
:mod:`cutover.lineage`), upsert the target rows by their deterministic id,
record the crosswalk, and mark the batch loaded in the ledger — all in one transaction. A
batch already marked loaded for the run is skipped, so a killed run resumes where it stopped
and a re-run leaves the target exactly as one clean run does.

On a first load (the run set the target's constraints aside, :mod:`cutover.loading.bulk`) a batch
is first written by :mod:`cutover.loading.direct`: the same outcome, by COPY alone, falling back
to the merge below whenever the database refuses it.

Where the time goes (``python -m bench pipeline``; server CPU per statement on 317k legacy rows):
the target's foreign keys are checked by PostgreSQL one row at a time (an index probe and a row
lock per reference), which a loader without owner rights cannot avoid, and together with the
target's indexes they make up most of the INSERTs' cost; psql's own ``\\copy`` into the same
schema runs about five times slower than into bare tables. Around that, the merge is kept lean:
target ids are hashed in the client and sent with the COPY (``migration.legacy_uuid`` per row
cost more server time than the COPY itself); the batch's temporary tables get statistics from a
300-row sample rather than full ANALYZE passes, and joins are hash joins whatever the statistics
say (a crosswalk just loaded often has none yet); and a batch none of whose rows exists yet is
written with plain INSERTs, the upserts running only when a row does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import astuple, dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from cutover.config import LEGACY_SYSTEM
from cutover.errors import TransientError
from cutover.ids import row_ids
from cutover.lineage import BY_REFERENCE, CASCADE, root_of
from cutover.loading.copy import copy_arrow, stage_type
from cutover.loading.direct import eligible, merge_direct
from cutover.mapping.engine import TableSpec
from cutover.staging.parquet import read_manifest, read_part
from cutover.staging.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchCounts:
    rows_in: int
    migrated: int
    merged: int
    rejected: int
    direct: int = 0
    """Parts written by :mod:`cutover.loading.direct` (the others merged the general way)."""


@dataclass(frozen=True)
class LoadResult:
    legacy_table: str
    target_table: str
    batches: int
    resumed_batches: int
    rows_in: int
    migrated: int
    merged: int
    rejected: int
    seconds: float
    direct_batches: int = 0


def _stage_table(spec: TableSpec) -> list[tuple[str, str]]:
    cols = [("legacy_id", "text"), ("row_key", "text"), ("id", "uuid")]
    cols += list(spec.columns)
    cols += [(f"ref_{ref.column}", "text") for ref in spec.refs]
    cols += [("merge_into", "text"), ("reason", "text"), ("detail", "text"), ("flags", "text")]
    return cols


def _resolve_sql(spec: TableSpec) -> sql.Composed:
    """SELECT of the staged rows with parent ids resolved, a load-stage reason (and the legacy column
    it is about, ``load_detail``) and reference flags."""
    from cutover.legacy.profile import mapping_specs

    joins: list[sql.Composable] = []
    picks: list[sql.Composable] = []
    misses: list[tuple[sql.Composable, str]] = []
    loose: list[sql.Composable] = []
    resolved: dict[str, sql.Composable] = {}
    for n, ref in enumerate(spec.refs):
        cw, rj = sql.Identifier(f"cw{n}"), sql.Identifier(f"rj{n}")
        src = sql.SQL("s.{}").format(sql.Identifier(f"ref_{ref.column}"))
        joins.append(
            sql.SQL(
                "LEFT JOIN migration.crosswalk {cw} ON {cw}.legacy_system = %(sys)s"
                " AND {cw}.legacy_table = {parent} AND {cw}.legacy_id = {src}"
                " LEFT JOIN migration.reject {rj} ON {rj}.legacy_system = %(sys)s"
                " AND {rj}.legacy_table = {parent} AND {rj}.legacy_id = {src}"
            ).format(cw=cw, rj=rj, parent=sql.Literal(ref.parent), src=src)
        )
        resolved[ref.column] = sql.SQL("coalesce({cw}.merged_into, {cw}.new_id)").format(cw=cw)
        picks.append(sql.SQL("{} AS {}").format(resolved[ref.column], sql.Identifier(ref.column)))
        unresolved = sql.SQL(
            "WHEN {cw}.new_id IS NOT NULL THEN NULL WHEN {rj}.legacy_id IS NOT NULL THEN 'parent_rejected' ELSE 'orphan'"
        ).format(cw=cw, rj=rj)
        if ref.required:
            misses.append(
                (
                    sql.SQL("CASE WHEN {src} IS NULL THEN 'ref_missing' {u} END").format(
                        src=src, u=unresolved
                    ),
                    ref.source,
                )
            )
        elif ref.strict:
            misses.append(
                (
                    sql.SQL("CASE WHEN {src} IS NULL THEN NULL {u} END").format(src=src, u=unresolved),
                    ref.source,
                )
            )
        else:
            loose.append(
                sql.SQL("CASE WHEN {src} IS NOT NULL AND {cw}.new_id IS NULL THEN {flag} END").format(
                    src=src, cw=cw, flag=sql.Literal(f"{ref.column}_unresolved")
                )
            )
    for n, column in enumerate(spec.same_patient):
        ref = next(r for r in spec.refs if r.column == column)
        owner = sql.Identifier(f"sp{n}")
        joins.append(
            sql.SQL("LEFT JOIN pt.{target} {owner} ON {owner}.id = {parent}").format(
                target=sql.Identifier(mapping_specs()[ref.parent].target),
                owner=owner,
                parent=resolved[column],
            )
        )
        misses.append(
            (
                sql.SQL("CASE WHEN {owner}.patient_id <> {mine} THEN 'patient_mismatch' END").format(
                    owner=owner, mine=resolved["patient_id"]
                ),
                ref.source,
            )
        )
    miss = (
        sql.SQL("coalesce({})").format(sql.SQL(", ").join(m for m, _ in misses))
        if misses
        else sql.SQL("NULL::text")
    )
    about = (
        sql.SQL("CASE {} END").format(
            sql.SQL(" ").join(
                sql.SQL("WHEN {} IS NOT NULL THEN {}").format(m, sql.Literal(column)) for m, column in misses
            )
        )
        if misses
        else sql.SQL("NULL::text")
    )
    flags = sql.SQL("concat_ws(',', s.flags{})").format(sql.SQL("").join(sql.SQL(", ") + f for f in loose))
    cols = sql.SQL("").join(sql.SQL(", s.{}").format(sql.Identifier(name)) for name, _ in spec.columns)
    # the parents' legacy ids as staged: a reject names the one its reference decided (_reject_sql)
    cols += sql.SQL("").join(
        sql.SQL(", s.{}").format(sql.Identifier(f"ref_{ref.column}")) for ref in spec.refs
    )
    return sql.SQL(
        "SELECT s.legacy_id, s.row_key, s.merge_into, s.id"
        "{cols}{picks}, {miss} AS load_reason, {about} AS load_detail, {flags} AS flags"
        " FROM stage_rows s {joins} WHERE s.reason IS NULL"
    ).format(
        cols=cols,
        picks=sql.SQL("").join(sql.SQL(", ") + p for p in picks),
        miss=miss,
        about=about,
        flags=flags,
        joins=sql.SQL(" ").join(joins),
    )


def _upsert_sql(spec: TableSpec, *, plain: bool = False) -> sql.Composed:
    """The target rows of ``resolved``: an upsert by id that leaves an unchanged row untouched, or,
    ``plain``, the same INSERT without the conflict handling (for rows none of which exists yet)."""
    names = ["id", *(name for name, _ in spec.columns), *(ref.column for ref in spec.refs)]
    types = dict(spec.columns)
    select = sql.SQL(", ").join(
        sql.SQL("CAST({} AS {})").format(sql.Identifier(n), sql.SQL(types[n]))
        if n in types
        else sql.Identifier(n)
        for n in names
    )
    updates = [n for n in names if n != "id"]
    target = sql.SQL("pt.{}").format(sql.Identifier(spec.target))
    insert = sql.SQL(
        "INSERT INTO {target} AS t ({cols}) SELECT {select} FROM resolved WHERE load_reason IS NULL AND merge_into IS NULL"
    ).format(target=target, cols=sql.SQL(", ").join(map(sql.Identifier, names)), select=select)
    if plain:
        return insert
    return insert + sql.SQL(
        " ON CONFLICT (id) DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new})"
    ).format(
        sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in updates),
        old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in updates),
        new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) for n in updates),
    )


_REJECT = """
INSERT INTO migration.reject (legacy_system, legacy_table, legacy_id, reason_code, stage, detail, run_id,
                              parent_table, parent_legacy_id, root_table, root_legacy_id, root_reason)
SELECT DISTINCT ON (x.legacy_id) %(sys)s, %(table)s, x.legacy_id, x.why, {stage}, x.about, %(run_id)s,
       x.parent_table, x.parent_legacy_id,
       CASE WHEN x.why = {cascade} THEN {root_table} ELSE %(table)s END,
       CASE WHEN x.why = {cascade} THEN {root_id} ELSE x.legacy_id END,
       CASE WHEN x.why = {cascade} THEN {root_reason} ELSE x.why END
FROM (SELECT legacy_id, row_key, {reason} AS why, {detail} AS about,
             CASE WHEN {reason} IN ({by_reference}) THEN {parent_table} END AS parent_table,
             CASE WHEN {reason} IN ({by_reference}) THEN {parent_id} END AS parent_legacy_id
      FROM {source} WHERE {reason} IS NOT NULL) x
LEFT JOIN migration.reject p ON x.why = {cascade} AND p.legacy_system = %(sys)s
      AND p.legacy_table = x.parent_table AND p.legacy_id = x.parent_legacy_id
ORDER BY x.legacy_id, x.row_key
ON CONFLICT (legacy_system, legacy_table, legacy_id) DO UPDATE
SET reason_code = EXCLUDED.reason_code, stage = EXCLUDED.stage, detail = EXCLUDED.detail, run_id = EXCLUDED.run_id,
    parent_table = EXCLUDED.parent_table, parent_legacy_id = EXCLUDED.parent_legacy_id,
    root_table = EXCLUDED.root_table, root_legacy_id = EXCLUDED.root_legacy_id, root_reason = EXCLUDED.root_reason
"""


def _reject_sql(spec: TableSpec, reason: str, detail: str, stage: str, source: str) -> sql.Composed:
    """The rejects of ``source`` (``stage_rows`` for the mapping's, ``resolved`` for the load's), each
    with its lineage (:mod:`cutover.lineage`).

    A reason a reference decided (:data:`~cutover.lineage.BY_REFERENCE`) has that reference's legacy
    column as its detail: it names the parent (its table, and the legacy id the row gives). A cascade's
    root is its parent's root, one lookup of the rejected parent by its key, for the rejected rows only;
    any other reject is its own root.
    """
    by_source = [(sql.Literal(ref.source), ref) for ref in spec.refs]
    parent_table: sql.Composable = sql.SQL("NULL::text")
    parent_id: sql.Composable = sql.SQL("NULL::text")
    if by_source:
        parent_table = sql.SQL("CASE {} {} END").format(
            sql.SQL(detail),
            sql.SQL(" ").join(
                sql.SQL("WHEN {} THEN {}").format(s, sql.Literal(r.parent)) for s, r in by_source
            ),
        )
        parent_id = sql.SQL("CASE {} {} END").format(
            sql.SQL(detail),
            sql.SQL(" ").join(
                sql.SQL("WHEN {} THEN {}").format(s, sql.Identifier(f"ref_{r.column}")) for s, r in by_source
            ),
        )
    root_table, root_id, root_reason = root_of("p")
    return sql.SQL(_REJECT).format(
        reason=sql.SQL(reason),
        detail=sql.SQL(detail),
        stage=sql.Literal(stage),
        source=sql.SQL(source),
        cascade=sql.Literal(CASCADE),
        by_reference=sql.SQL(", ").join(map(sql.Literal, sorted(BY_REFERENCE))),
        parent_table=parent_table,
        parent_id=parent_id,
        root_table=root_table,
        root_id=root_id,
        root_reason=root_reason,
    )


# One crosswalk row per legacy row: an exploded row is represented by its first part.
_CROSSWALK_INSERT = """
INSERT INTO migration.crosswalk (legacy_system, legacy_table, legacy_id, new_table, new_id, outcome, merged_into, run_id)
SELECT %(sys)s, %(table)s, legacy_id, %(target)s, id,
       CASE WHEN merge_into IS NULL THEN 'migrated' ELSE 'merged' END,
       CASE WHEN merge_into IS NULL THEN NULL ELSE migration.legacy_uuid(%(sys)s, %(table)s, merge_into) END,
       %(run_id)s
FROM resolved WHERE load_reason IS NULL AND row_key = legacy_id
"""
_CROSSWALK_UPSERT = """ON CONFLICT (legacy_system, legacy_table, legacy_id) DO UPDATE
SET new_table = EXCLUDED.new_table, new_id = EXCLUDED.new_id, outcome = EXCLUDED.outcome,
    merged_into = EXCLUDED.merged_into, run_id = EXCLUDED.run_id
"""


def _counted(insert: str) -> sql.SQL:
    """The crosswalk write, returning the legacy rows it migrated and merged.

    Every part of a legacy row shares its reasons, parents and merge target, and its first part
    (``row_key = legacy_id``) is the one recorded, so these are the batch's migrated and merged
    legacy rows, counted as they are written instead of by another pass over ``resolved``.
    """
    return sql.SQL(
        f"WITH written AS ({insert} RETURNING outcome)"
        " SELECT count(*) FILTER (WHERE outcome = 'migrated'), count(*) FILTER (WHERE outcome = 'merged')"
        " FROM written"
    )


_FLAGS = """
INSERT INTO migration.flag (legacy_system, legacy_table, legacy_id, flag_code, run_id)
SELECT DISTINCT %(sys)s, %(table)s, legacy_id, code, %(run_id)s
FROM (SELECT legacy_id, unnest(string_to_array(flags, ',')) AS code
      FROM resolved WHERE load_reason IS NULL AND flags <> '') AS f
WHERE code <> ''
ON CONFLICT (legacy_system, legacy_table, legacy_id, flag_code) DO UPDATE SET run_id = EXCLUDED.run_id
"""

# A legacy row has exactly one outcome: clear the opposite record before writing this one.
_CLEAR_REJECTS = """
DELETE FROM migration.reject r USING resolved x
WHERE x.load_reason IS NULL AND r.legacy_system = %(sys)s AND r.legacy_table = %(table)s AND r.legacy_id = x.legacy_id
"""
_CLEAR_CROSSWALK = """
DELETE FROM migration.crosswalk c USING stage_rows s
LEFT JOIN resolved x ON x.row_key = s.row_key
WHERE coalesce(s.reason, x.load_reason) IS NOT NULL
  AND c.legacy_system = %(sys)s AND c.legacy_table = %(table)s AND c.legacy_id = s.legacy_id
"""


def _insert_or_upsert(
    cur: psycopg.Cursor[Any],
    plain: sql.Composed | sql.SQL,
    upsert: sql.Composed | sql.SQL,
    params: dict[str, Any],
) -> tuple[Any, ...] | None:
    """Run ``plain`` (an INSERT); if a row already exists, undo it and run ``upsert`` instead.

    On a first load no row exists, and a plain INSERT skips the speculative insertion that
    ``ON CONFLICT`` does for every row. Any unique violation (the row exists, or another unique
    rule) rolls the attempt back to its savepoint and the upsert runs exactly as it always did,
    so the outcome is the upsert's; a re-run pays only for the first conflicting row. Returns the
    statement's result row, if it has one.
    """
    try:
        with cur.connection.transaction():
            cur.execute(plain, params)
    except psycopg.errors.UniqueViolation:
        cur.execute(upsert, params)
    return cur.fetchone() if cur.description else None


def merge_part(
    conn: psycopg.Connection[Any],
    spec: TableSpec,
    data: pa.Table,
    params: dict[str, Any],
    direct: bool = False,
) -> BatchCounts:
    """Merge one mapped part inside the caller's transaction.

    With ``direct`` (a first load, see :mod:`cutover.loading.direct`) the part is first written by
    COPY alone, in a savepoint; if the target or the ledger refuses that, the savepoint is rolled
    back and the part merged the general way. Only the constraint's name is logged, never a value.
    """
    data = data.append_column("id", row_ids(params["sys"], params["table"], data.column("row_key")))
    rows_in = pc.count_distinct(data.column("legacy_id")).as_py()
    if direct:
        try:
            with conn.transaction():
                migrated, merged = merge_direct(conn, spec, data, params)
            return BatchCounts(rows_in, migrated, merged, rows_in - migrated - merged, direct=1)
        except psycopg.Error as exc:  # the general merge decides, exactly as without this path
            log.info("%s: merged the general way (%s)", spec.legacy, refused_by(exc))
    stage = _stage_table(spec)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS stage_rows, resolved")
        # Joins over the whole batch: a nested loop is never the right plan for them, yet the planner
        # picks one when statistics are missing (a temporary table, a crosswalk just loaded).
        cur.execute("SET LOCAL enable_nestloop = off")
        cur.execute(
            sql.SQL("CREATE TEMP TABLE stage_rows ({}) ON COMMIT DROP").format(
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(stage_type(t))) for n, t in stage
                )
            )
        )
        copy_arrow(cur, "stage_rows", data.select([n for n, _ in stage]), [t for _, t in stage])
        # Statistics from a small sample (300 rows): enough for the row count and the share of rows the
        # mapping rejected, which decide the hash joins' sides, at a fraction of a full ANALYZE.
        cur.execute("SET LOCAL default_statistics_target = 1")
        cur.execute("ANALYZE stage_rows")
        cur.execute(sql.SQL("CREATE TEMP TABLE resolved ON COMMIT DROP AS ") + _resolve_sql(spec), params)
        # load-time flags: an UPDATE lets the planner turn each rule's EXISTS into a hash semi-join
        for rule in spec.load_flags:
            cur.execute(
                sql.SQL(
                    "UPDATE resolved r SET flags = concat_ws(',', nullif(r.flags, ''), {code}) WHERE {pred}"
                ).format(code=sql.Literal(rule.code), pred=sql.SQL(rule.predicate))
            )
        cur.execute(_CLEAR_CROSSWALK, params)
        # The reject inserts join nothing, but the single-outcome trigger they fire looks each new
        # reject up in the whole crosswalk: by index (a nested loop), not by hashing the crosswalk.
        cur.execute("SET LOCAL enable_nestloop = on")
        for reason, detail, stage_name, source in (
            ("reason", "detail", "map", "stage_rows"),
            ("load_reason", "load_detail", "load", "resolved"),
        ):
            cur.execute(_reject_sql(spec, reason, detail, stage_name, source), params)
        cur.execute("SET LOCAL enable_nestloop = off")
        _insert_or_upsert(cur, _upsert_sql(spec, plain=True), _upsert_sql(spec), params)
        cur.execute(_CLEAR_REJECTS, params)
        migrated, merged = _insert_or_upsert(
            cur, _counted(_CROSSWALK_INSERT), _counted(_CROSSWALK_INSERT + _CROSSWALK_UPSERT), params
        ) or (0, 0)
        cur.execute(_FLAGS, params)
    return BatchCounts(rows_in, migrated, merged, rows_in - migrated - merged)


def refused_by(exc: psycopg.Error) -> str:
    """The constraint (or, for a type error, the error class) the target refused a row with; never a value."""
    return getattr(exc.diag, "constraint_name", None) or type(exc).__name__


def _reject_whole(
    conn: psycopg.Connection[Any], legacy_id: str, exc: psycopg.Error, params: dict[str, Any]
) -> BatchCounts:
    """Reject one legacy row the target refused (a constraint it broke), naming the constraint."""
    constraint = refused_by(exc)
    conn.execute(
        "DELETE FROM migration.crosswalk WHERE legacy_system = %(sys)s AND legacy_table = %(table)s"
        " AND legacy_id = %(id)s",
        {**params, "id": legacy_id},
    )
    conn.execute(
        "INSERT INTO migration.reject (legacy_system, legacy_table, legacy_id, reason_code, stage, detail, run_id,"
        " root_table, root_legacy_id, root_reason)"
        " VALUES (%(sys)s, %(table)s, %(id)s, 'target_constraint', 'load', %(detail)s, %(run_id)s,"
        " %(table)s, %(id)s, 'target_constraint')"
        " ON CONFLICT (legacy_system, legacy_table, legacy_id) DO UPDATE SET reason_code = EXCLUDED.reason_code,"
        " stage = EXCLUDED.stage, detail = EXCLUDED.detail, run_id = EXCLUDED.run_id,"
        " parent_table = NULL, parent_legacy_id = NULL, root_table = EXCLUDED.root_table,"
        " root_legacy_id = EXCLUDED.root_legacy_id, root_reason = EXCLUDED.root_reason",
        {**params, "id": legacy_id, "detail": constraint},
    )
    return BatchCounts(1, 0, 0, 1)


def merge_isolating(
    conn: psycopg.Connection[Any],
    spec: TableSpec,
    data: pa.Table,
    params: dict[str, Any],
    direct: bool = False,
) -> BatchCounts:
    """Merge a part; if the target refuses some row, bisect by legacy id to reject only the rows it refuses.

    One bad row never aborts the load: each attempt runs in a savepoint, and a refused half is
    split until the refused legacy rows stand alone, each rejected with ``target_constraint``
    and the constraint's name (never a value).
    """
    try:
        with conn.transaction():
            return merge_part(conn, spec, data, params, direct)
    except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
        ids = pc.unique(data.column("legacy_id"))
        if len(ids) == 1:
            log.warning(
                "%s: legacy row %s refused by the target (%s)", spec.legacy, ids[0], exc.diag.constraint_name
            )
            return _reject_whole(conn, ids[0].as_py(), exc, params)
        half = len(ids) // 2
        total = BatchCounts(0, 0, 0, 0, 0)
        for part_ids in (ids[:half], ids[half:]):
            part = data.filter(pc.is_in(data.column("legacy_id"), value_set=part_ids))
            counts = merge_isolating(conn, spec, part, params, direct)
            total = BatchCounts(*(a + b for a, b in zip(astuple(total), astuple(counts), strict=True)))
        return total


def _first_load(conn: psycopg.Connection[Any], run_id: str) -> bool:
    """Whether this run set the target's constraints aside: its batches load into an empty target."""
    (deferred,) = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM migration.deferred_constraint WHERE run_id = %s AND restored_at IS NULL)",
        (run_id,),
    ).fetchone() or (False,)
    conn.commit()
    return bool(deferred)


def load_table(
    target_url: str,
    store: Store,
    spec: TableSpec,
    prefix: str,
    *,
    run_id: str,
    batch_nos: list[int] | None = None,
    system: str = LEGACY_SYSTEM,
) -> LoadResult:
    """Load the staged parts of one mapped table (all, or the ``batch_nos`` given), skipping parts the
    ledger marks loaded: each part is one transaction, so parts of a table may load side by side."""
    started = time.perf_counter()
    manifest = read_manifest(store, prefix)
    wanted = set(range(len(manifest["parts"])) if batch_nos is None else batch_nos)
    totals = [0, 0, 0, 0]
    direct_batches = 0
    resumed = 0
    params = {"sys": system, "table": spec.legacy, "target": spec.target, "run_id": run_id}
    try:
        conn = psycopg.connect(target_url)
        # before the session's first temporary table: room for a batch's two temporary tables in
        # memory, which otherwise go through a temporary file on every pass over them; and for the
        # hash of a parent table's crosswalk rows (162k appointments split in two batches at 4MB)
        conn.execute("SET temp_buffers = '64MB'")
        conn.execute("SET work_mem = '64MB'")
        conn.commit()
    except psycopg.OperationalError as exc:
        raise TransientError(f"target_db: cannot connect ({type(exc).__name__})") from exc
    with conn:
        direct = eligible(spec) and _first_load(conn, run_id)
        for batch_no, part in enumerate(manifest["parts"]):
            if batch_no not in wanted:
                continue
            done = conn.execute(
                "SELECT rows_in, migrated, merged, rejected FROM migration.batch"
                " WHERE run_id = %s AND legacy_table = %s AND batch_no = %s AND state = 'loaded'",
                (run_id, spec.legacy, batch_no),
            ).fetchone()
            conn.commit()
            if done:
                resumed += 1
                counts = BatchCounts(*done)
            else:
                with conn.transaction():
                    counts = merge_isolating(conn, spec, read_part(store, part), params, direct)
                    conn.execute(
                        "INSERT INTO migration.batch (run_id, legacy_table, batch_no, state, rows_in, migrated,"
                        " merged, rejected, staged_object, sha256, started_at, finished_at)"
                        " VALUES (%s, %s, %s, 'loaded', %s, %s, %s, %s, %s, %s, now(), clock_timestamp())"
                        " ON CONFLICT (run_id, legacy_table, batch_no) DO UPDATE SET state = 'loaded',"
                        " rows_in = EXCLUDED.rows_in, migrated = EXCLUDED.migrated, merged = EXCLUDED.merged,"
                        " rejected = EXCLUDED.rejected, staged_object = EXCLUDED.staged_object,"
                        " sha256 = EXCLUDED.sha256, finished_at = EXCLUDED.finished_at",
                        (
                            run_id,
                            spec.legacy,
                            batch_no,
                            counts.rows_in,
                            counts.migrated,
                            counts.merged,
                            counts.rejected,
                            part["key"],
                            part["sha256"],
                        ),
                    )
                log.info(
                    "loaded %s batch %d: %d rows in, %d migrated, %d rejected",
                    spec.legacy,
                    batch_no,
                    counts.rows_in,
                    counts.migrated,
                    counts.rejected,
                )
            for i, value in enumerate((counts.rows_in, counts.migrated, counts.merged, counts.rejected)):
                totals[i] += value
            direct_batches += counts.direct > 0
    rows_in, migrated, merged, rejected = totals
    return LoadResult(
        legacy_table=spec.legacy,
        target_table=spec.target,
        batches=len(wanted),
        resumed_batches=resumed,
        rows_in=rows_in,
        migrated=migrated,
        merged=merged,
        rejected=rejected,
        seconds=time.perf_counter() - started,
        direct_batches=direct_batches,
    )
