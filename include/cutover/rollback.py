"""Undo a cutover run: a pre-load snapshot of the target, and an exact, verified restore from it.

Why a snapshot and not the ledger: the loader *upserts* by deterministic id and rewrites the
ledger's ``run_id`` on every row it touches (crosswalk, reject, flag), and moves a legacy row
between crosswalk and reject when its outcome changes. After a second run on top of a first one
(a re-run, a phased wave, a patient seen at two clinics) the ledger knows which rows the run
*wrote*, but not what those rows held before, nor whether they existed: a ledger-based undo can
delete what a run inserted, but cannot restore what it updated or re-create what it moved. The
snapshot holds the before-image of everything a run can write, so the undo is exact, and it is
cheap in the usual case (the first cutover starts from an empty target).

:func:`snapshot_target` copies, inside PostgreSQL (``CREATE TABLE … AS TABLE``, no row through
Python), every ``pt`` table and the ledger tables a load writes (batch, crosswalk, reject, flag)
into the schema ``rollback_<run key>``, and records each table's rows and checksum there.
:func:`rollback_run` restores the target from it in one transaction, touching only rows that
differ (an empty snapshot table is truncated), checks counts and checksums before committing,
marks the run ``rolled_back`` and writes the audit log. :func:`drop_snapshot` removes it once the
run is accepted. Only ids, table names and counts leave the database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from typing import Any, TypedDict

import psycopg
from psycopg import sql

from cutover.errors import IntegrityError, TerminalError, TransientError
from cutover.legacy.profile import current
from cutover.loading.bulk import restore_pending
from cutover.target import TARGET_SCHEMA, TARGET_TABLES
from cutover.target.checksums import TableChecksum, table_checksum

log = logging.getLogger(__name__)

LEDGER_SCHEMA = "migration"
LEDGER_TABLES: tuple[str, ...] = ("batch", "crosswalk", "reject", "flag")
"""The ledger tables a load writes; ``run`` and ``audit_log`` are history and are never restored."""

SNAPSHOT_PREFIX = "rollback_"
META_TABLE = "snapshot"
"""The table in a snapshot schema that records whose snapshot it is, when, and what it holds."""

LOCK_TIMEOUT = "30s"
"""How long a rollback waits for a running load to release the tables before it gives up (retryable)."""

Table = tuple[str, str]

PATIENT_PATH: dict[str, tuple[str, str | None]] = {
    "patient": ("id", None),
    **dict.fromkeys(
        (
            "allergy",
            "appointment",
            "charge",
            "coverage",
            "document",
            "episode",
            "medication",
            "payment",
            "precaution",
            "referral",
            "visit",
        ),
        ("patient_id", None),
    ),
    **{
        t: ("episode_id", "episode")
        for t in ("authorization", "diagnosis", "outcome_measure", "plan_of_care")
    },
    "procedure_line": ("visit_id", "visit"),
}
"""How a row of a ``pt`` table leads to its patient: a column holding the patient's id, or one holding
the id of a row of the given table that holds it. The other ``pt`` tables are reference data
(:data:`REFERENCE_TABLES`), shared by every patient."""

REFERENCE_TABLES = frozenset({"clinic", "payer", "provider", "referring_physician"})


class SnapshotResult(TypedDict):
    run_id: str
    schema: str
    kept: bool
    """True when a snapshot taken before this run loaded anything was kept (a retried task)."""
    tables: int
    rows: int
    bytes: int
    seconds: float


class RollbackCheck(TypedDict):
    run_id: str
    dag_id: str
    state: str
    schema: str
    taken_at: str
    loaded_batches: int


class RollbackResult(TypedDict):
    run_id: str
    schema: str
    deleted: dict[str, int]
    inserted: dict[str, int]
    truncated: list[str]
    rows: dict[str, int]
    seconds: float


def snapshot_tables() -> tuple[Table, ...]:
    """Every table a cutover load writes, parents first: the ``pt`` tables, then the ledger."""
    return tuple((TARGET_SCHEMA, t) for t in TARGET_TABLES) + tuple((LEDGER_SCHEMA, t) for t in LEDGER_TABLES)


def snapshot_schema(run_id: str) -> str:
    """The schema holding a run's snapshot: ``rollback_<run key>``, shortened with a digest past 63 bytes.

    >>> snapshot_schema("manual__2026-11-27T18:00:00+00:00")
    'rollback_manual__2026-11-27T18-00-00-00-00'
    >>> len(snapshot_schema("x" * 80))
    63
    """
    from cutover.pipeline import run_key

    name = SNAPSHOT_PREFIX + run_key(run_id)
    if len(name) <= 63:
        return name
    return name[:50] + "_" + hashlib.sha256(run_id.encode()).hexdigest()[:12]


def _copy_name(table: Table) -> str:
    return f"{table[0]}__{table[1]}"


def _label(table: Table) -> str:
    return f"{table[0]}.{table[1]}"


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, application_name="cutover-rollback")
    except psycopg.OperationalError as exc:
        # the URL may carry a password: name the failure, not the URL
        raise TransientError(f"target_db: cannot connect ({type(exc).__name__})") from exc


def _lock_key(run_id: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"cutover.rollback/{run_id}".encode()).digest()[:8], "big", signed=True
    )


def _meta(
    conn: psycopg.Connection[Any], schema: str
) -> tuple[str, str, int, dict[str, TableChecksum]] | None:
    """(run_id, taken_at, schema version, per-table checksums) of a snapshot, None when there is none."""
    found = conn.execute(
        "SELECT to_regclass(%s)", (sql.Identifier(schema, META_TABLE).as_string(conn),)
    ).fetchone()
    if not found or found[0] is None:
        return None
    row = conn.execute(
        sql.SQL("SELECT run_id, taken_at::text, schema_version, tables FROM {}").format(
            sql.Identifier(schema, META_TABLE)
        )
    ).fetchone()
    if row is None:
        return None
    return str(row[0]), str(row[1]), int(row[2]), dict(row[3])


def _loaded_batches(conn: psycopg.Connection[Any], run_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM migration.batch WHERE run_id = %s AND state = 'loaded'", (run_id,)
    ).fetchone()
    return int(row[0]) if row else 0


def _schema_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM migration.schema_version").fetchone()
    return int(row[0]) if row else 0


def _checksums(conn: psycopg.Connection[Any], tables: Iterable[Table]) -> dict[str, TableChecksum]:
    return {_label(t): table_checksum(conn, t[1], t[0]) for t in tables}


def snapshot_target(target_url: str, run_id: str, *, actor: str = "system") -> SnapshotResult:
    """Record the target's state before ``run_id`` loads, so :func:`rollback_run` can restore it exactly.

    One transaction (repeatable read, so all tables are copied as of one instant): a schema
    ``rollback_<run key>`` with a server-side copy of every table of :func:`snapshot_tables`, and a
    row in its ``snapshot`` table with the per-table rows and checksums. Idempotent: a snapshot
    taken before the run loaded a batch is kept (a retried task must not photograph a half-loaded
    target); one taken while nothing was loaded yet is taken again. Cost: one copy of the target
    (time and disk about those of the tables themselves); trivial on an empty target.
    """
    started = time.perf_counter()
    schema = snapshot_schema(run_id)
    tables = snapshot_tables()
    with _connect(target_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(run_id),))
            meta = _meta(conn, schema)
            if meta is not None and meta[0] != run_id:
                raise TerminalError(f"schema {schema} holds the snapshot of another run ({meta[0]})")
            if meta is not None and _loaded_batches(conn, run_id):
                sums = meta[3]
                log.info("snapshot %s kept: run %s has loaded batches since it was taken", schema, run_id)
                return SnapshotResult(
                    run_id=run_id,
                    schema=schema,
                    kept=True,
                    tables=len(sums),
                    rows=sum(s["rows"] for s in sums.values()),
                    bytes=_size(conn, schema),
                    seconds=round(time.perf_counter() - started, 3),
                )
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(
                sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                    sql.Identifier(schema),
                    sql.Literal(f"Cutover: the target before run {run_id}, for pt_rollback. Holds PHI."),
                )
            )
            for table in tables:
                conn.execute(
                    sql.SQL("CREATE TABLE {} AS TABLE {}").format(
                        sql.Identifier(schema, _copy_name(table)), sql.Identifier(*table)
                    )
                )
            sums = _checksums(conn, tables)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (run_id text PRIMARY KEY, taken_at timestamptz NOT NULL DEFAULT now(),"
                    " schema_version integer NOT NULL, tables jsonb NOT NULL)"
                ).format(sql.Identifier(schema, META_TABLE))
            )
            conn.execute(
                sql.SQL("INSERT INTO {} (run_id, schema_version, tables) VALUES (%s, %s, %s)").format(
                    sql.Identifier(schema, META_TABLE)
                ),
                (run_id, _schema_version(conn), json.dumps(sums)),
            )
            rows = sum(s["rows"] for s in sums.values())
            size = _size(conn, schema)
            _audit(conn, actor, "snapshot target", run_id, {"schema": schema, "rows": rows, "bytes": size})
    seconds = round(time.perf_counter() - started, 3)
    log.info("snapshot %s: %d tables, %d rows, %d bytes in %.2f s", schema, len(tables), rows, size, seconds)
    return SnapshotResult(
        run_id=run_id, schema=schema, kept=False, tables=len(tables), rows=rows, bytes=size, seconds=seconds
    )


def _size(conn: psycopg.Connection[Any], schema: str) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
        (schema,),
    ).fetchone()
    return int(row[0]) if row else 0


def _audit(
    conn: psycopg.Connection[Any], actor: str, action: str, run_id: str, detail: dict[str, Any]
) -> None:
    conn.execute(
        "INSERT INTO migration.audit_log (actor, action, run_id, detail) VALUES (%s, %s, %s, %s)",
        (actor, action, run_id, json.dumps(detail)),
    )


def _check(
    conn: psycopg.Connection[Any], run_id: str, *, undo_outside_changes: bool = False
) -> tuple[RollbackCheck, dict[str, TableChecksum]]:
    """The refusals, inside the caller's transaction: unknown run, no snapshot, a later run on top,
    and (unless ``undo_outside_changes``) rows of other patients changed since the snapshot."""
    known = conn.execute("SELECT to_regclass('migration.run') IS NOT NULL").fetchone()
    run = (
        conn.execute("SELECT dag_id, state FROM migration.run WHERE run_id = %s", (run_id,)).fetchone()
        if known and known[0]
        else None
    )
    if run is None:
        raise TerminalError(f"unknown run {run_id!r}: it is not in migration.run of this target")
    schema = snapshot_schema(run_id)
    meta = _meta(conn, schema)
    if meta is None or meta[0] != run_id:
        raise TerminalError(
            f"run {run_id!r} has no rollback snapshot (schema {schema}): it was never taken, or was "
            "dropped after the run was accepted; restore from a backup of the target instead"
        )
    recorded, taken_at, version, sums = meta
    now = _schema_version(conn)
    if version != now:
        raise TerminalError(
            f"the target schema changed since the snapshot of {run_id!r} (version {version} → {now}): "
            "the snapshot no longer fits the tables"
        )
    later = conn.execute(
        sql.SQL(
            "SELECT b.run_id, count(*) FROM migration.batch b WHERE b.run_id <> %s AND b.state = 'loaded'"
            " AND NOT EXISTS (SELECT 1 FROM {} s WHERE s.run_id = b.run_id AND s.legacy_table = b.legacy_table"
            " AND s.batch_no = b.batch_no AND s.state = 'loaded')"
            " GROUP BY b.run_id ORDER BY min(b.started_at)"
        ).format(sql.Identifier(schema, _copy_name((LEDGER_SCHEMA, "batch")))),
        (run_id,),
    ).fetchall()
    if later:
        names = ", ".join(f"{r} ({n} batches)" for r, n in later)
        raise TerminalError(
            f"refused: run(s) {names} loaded on top of {run_id!r} after its snapshot; rolling {run_id!r} "
            "back would undo them too. Roll back the latest run first."
        )
    outside = {} if undo_outside_changes else changed_outside(conn, run_id, schema, sums)
    if outside:
        where = ", ".join(f"{t} {n}" for t, n in outside.items())
        raise TerminalError(
            f"refused: {sum(outside.values())} rows of patients that {run_id!r} did not load changed "
            f"since its snapshot ({where}), entered in the new system meanwhile; the restore would undo "
            "them. Export them, then roll back with undo_outside_changes."
        )
    check = RollbackCheck(
        run_id=recorded,
        dag_id=str(run[0]),
        state=str(run[1]),
        schema=schema,
        taken_at=taken_at,
        loaded_batches=_loaded_batches(conn, run_id),
    )
    return check, sums


def changed_outside(
    conn: psycopg.Connection[Any], run_id: str, schema: str, snapshot: dict[str, TableChecksum]
) -> dict[str, int]:
    """``pt`` table → rows that differ from the snapshot (new, changed or gone) and belong to a
    patient ``run_id`` did not load: in a phased migration, what the earlier waves' clinics entered
    in the new system since the snapshot, which a restore would undo.

    The run's patients are the legacy patients its ledger accounts (migrated, merged into a
    survivor, whose id counts too, or rejected: a rejected patient's earlier rows may have changed
    with it); a row whose patient reference is empty is not counted. ``snapshot``: the rows and
    checksums the snapshot recorded per table. Counts only, tables in load order.
    """
    conn.execute(
        "CREATE TEMPORARY TABLE run_patient ON COMMIT DROP AS"
        " SELECT new_id AS id FROM migration.crosswalk WHERE run_id = %(run)s AND legacy_table = %(patients)s"
        " UNION SELECT merged_into FROM migration.crosswalk"
        " WHERE run_id = %(run)s AND legacy_table = %(patients)s AND merged_into IS NOT NULL"
        " UNION SELECT migration.legacy_uuid(legacy_system, legacy_table, legacy_id) FROM migration.reject"
        " WHERE run_id = %(run)s AND legacy_table = %(patients)s",
        {"run": run_id, "patients": current().patient_table},
    )
    counts: dict[str, int] = {}
    for name in TARGET_TABLES:
        if name not in PATIENT_PATH:
            continue
        column, via = PATIENT_PATH[name]
        live, copy = (TARGET_SCHEMA, name), (schema, _copy_name((TARGET_SCHEMA, name)))
        owner: sql.Composable = sql.SQL("c.{}").format(sql.Identifier(column))
        lookup: sql.Composable = sql.SQL("")
        if via is not None:
            owner = sql.SQL("o.patient_id")
            lookup = sql.SQL(
                "JOIN (SELECT id, patient_id FROM {} UNION SELECT id, patient_id FROM {}) AS o ON o.id = c.{}"
            ).format(
                sql.Identifier(TARGET_SCHEMA, via),
                sql.Identifier(schema, _copy_name((TARGET_SCHEMA, via))),
                sql.Identifier(column),
            )
        # every row differs from an empty copy (a first load's): no need to compare them
        rows = (
            sql.SQL("{}").format(sql.Identifier(*live))
            if snapshot[_label(live)]["rows"] == 0
            else sql.SQL(
                "((TABLE {live} EXCEPT TABLE {copy}) UNION ALL (TABLE {copy} EXCEPT TABLE {live}))"
            ).format(live=sql.Identifier(*live), copy=sql.Identifier(*copy))
        )
        (n,) = conn.execute(
            sql.SQL(
                "SELECT count(DISTINCT c.id) FROM {rows} AS c {lookup}"
                " WHERE NOT EXISTS (SELECT 1 FROM run_patient r WHERE r.id = {owner}) AND {owner} IS NOT NULL"
            ).format(rows=rows, lookup=lookup, owner=owner)
        ).fetchone() or (0,)
        if n:
            counts[_label(live)] = int(n)
    conn.execute("DROP TABLE run_patient")
    return counts


def check_rollback(
    target_url: str, run_id: str, *, confirm: str | None = None, undo_outside_changes: bool = False
) -> RollbackCheck:
    """Say whether ``run_id`` can be rolled back, without changing anything; raise TerminalError if not.

    ``confirm`` is the operator's typed confirmation: it must equal the run id.
    ``undo_outside_changes``: roll back even though rows of other patients changed since the
    snapshot (:func:`changed_outside`); the restore undoes them too.
    """
    if not run_id:
        raise TerminalError("no run id given: name the cutover run to undo")
    if confirm is not None and confirm != run_id:
        raise TerminalError("confirmation does not match: type the run id to roll back exactly as given")
    with _connect(target_url) as conn, conn.transaction():
        check, _ = _check(conn, run_id, undo_outside_changes=undo_outside_changes)
    return check


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[str, str]]:
    return [
        (str(n), str(t))
        for n, t in conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (sql.Identifier(schema, table).as_string(conn),),
        ).fetchall()
    ]


def _primary_key(conn: psycopg.Connection[Any], table: Table) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY a.attnum",
        (sql.Identifier(*table).as_string(conn),),
    ).fetchall()
    if not rows:
        raise TerminalError(f"{_label(table)} has no primary key: cannot restore it row by row")
    return [str(r[0]) for r in rows]


def truncatable(empty: set[str], references: Iterable[tuple[str, str]]) -> set[str]:
    """The tables that may be emptied with one TRUNCATE: empty in the snapshot, and every table
    that references them (a foreign key ``child → parent``) is emptied with them.

    >>> sorted(truncatable({"a", "b"}, [("b", "a"), ("c", "b")]))
    []
    >>> sorted(truncatable({"a", "b", "c"}, [("b", "a"), ("c", "b")]))
    ['a', 'b', 'c']
    >>> sorted(truncatable({"a", "c"}, [("b", "a"), ("c", "b")]))
    ['c']
    """
    edges = list(references)
    kept = set(empty)
    changed = True
    while changed:
        blocked = {parent for child, parent in edges if parent in kept and child not in kept}
        changed = bool(blocked)
        kept -= blocked
    return kept


def _references(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Every foreign key of the database as (child, parent), schema-qualified."""
    return [
        (str(c), str(p))
        for c, p in conn.execute(
            "SELECT cn.nspname || '.' || cc.relname, pn.nspname || '.' || pc.relname FROM pg_constraint k"
            " JOIN pg_class cc ON cc.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace"
            " JOIN pg_class pc ON pc.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace"
            " WHERE k.contype = 'f'"
        ).fetchall()
    ]


def _delete_changed(conn: psycopg.Connection[Any], table: Table, schema: str) -> int:
    """Delete the rows whose key is not in the copy or whose content differs from it (EXCEPT: NULLs equal)."""
    live = sql.Identifier(*table)
    key = _primary_key(conn, table)
    return conn.execute(
        sql.SQL(
            "DELETE FROM {live} t USING (SELECT {cols} FROM (TABLE {live} EXCEPT TABLE {copy}) AS d) AS d"
            " WHERE ({tcols}) = ({dcols})"
        ).format(
            live=live,
            copy=sql.Identifier(schema, _copy_name(table)),
            cols=sql.SQL(", ").join(map(sql.Identifier, key)),
            tcols=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in key),
            dcols=sql.SQL(", ").join(sql.SQL("d.{}").format(sql.Identifier(k)) for k in key),
        )
    ).rowcount


def _insert_missing(conn: psycopg.Connection[Any], table: Table, schema: str) -> int:
    """Insert the copy's rows the table lacks; after :func:`_delete_changed` no key can conflict."""
    return conn.execute(
        sql.SQL("INSERT INTO {live} SELECT * FROM (TABLE {copy} EXCEPT TABLE {live}) AS d").format(
            live=sql.Identifier(*table), copy=sql.Identifier(schema, _copy_name(table))
        )
    ).rowcount


def _compare(expected: dict[str, TableChecksum], actual: dict[str, TableChecksum]) -> list[str]:
    """The tables whose rows or checksum differ from the snapshot's, as ``pt.visit 130 rows (snapshot 120)``."""
    differ = []
    for table in sorted(expected):
        want, got = expected[table], actual.get(table)
        if got == want:
            continue
        rows = got["rows"] if got else "no"
        same_count = got is not None and got["rows"] == want["rows"]
        differ.append(
            f"{table} {rows} rows (snapshot {want['rows']})" + (", checksum differs" if same_count else "")
        )
    return differ


def rollback_run(
    target_url: str, run_id: str, *, actor: str, undo_outside_changes: bool = False
) -> RollbackResult:
    """Restore the target to its state before ``run_id`` loaded, in one transaction, verified.

    Locks every table a load writes (a load still running makes this wait, at most
    :data:`LOCK_TIMEOUT`, then fail retryably), re-checks the refusals of :func:`check_rollback`
    under the lock, defers the foreign keys, empties with one TRUNCATE the tables that were empty
    before the run (the usual first cutover) and, elsewhere, deletes and re-inserts only the rows
    that differ from the snapshot. Before committing it compares every table's rows and checksum
    with the snapshot and raises :class:`IntegrityError` (naming tables and counts; nothing is
    committed) if one differs. It puts back the constraints a killed first load left aside. Then
    marks the run ``rolled_back`` and appends to the audit log (with ``undo_outside_changes``, the
    rows of other patients it undid, per table).
    Running it again on a rolled-back run changes nothing and logs the attempt.
    """
    started = time.perf_counter()
    tables = snapshot_tables()
    with _connect(target_url) as conn, conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        try:
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(sql.Identifier(*t) for t in tables)
                )
            )
        except psycopg.errors.LockNotAvailable as exc:
            raise TransientError(
                f"the target's tables are busy (a load still running?): no lock within {LOCK_TIMEOUT}"
            ) from exc
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            raise TerminalError(f"unknown run {run_id!r}: the target has no cutover schema") from exc
        check, expected = _check(conn, run_id, undo_outside_changes=undo_outside_changes)
        schema = check["schema"]
        outside = changed_outside(conn, run_id, schema, expected) if undo_outside_changes else {}
        for table in tables:
            if _columns(conn, *table) != _columns(conn, schema, _copy_name(table)):
                raise TerminalError(f"{_label(table)}: its columns differ from the snapshot's copy")
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        before = {
            _label(t): int(
                (
                    conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*t))).fetchone()
                    or (0,)
                )[0]
            )
            for t in tables
        }
        empty = {_label(t) for t in tables if expected[_label(t)]["rows"] == 0}
        # one TRUNCATE for the tables that were empty before the run (all of them on a first cutover)
        emptied = truncatable(empty, _references(conn))
        truncated = sorted(t for t in emptied if before[t])
        if truncated:
            conn.execute(
                sql.SQL("TRUNCATE {}").format(
                    sql.SQL(", ").join(sql.Identifier(*t.split(".", 1)) for t in sorted(emptied))
                )
            )
        deleted = {t: before[t] for t in truncated}
        inserted: dict[str, int] = {}
        rest = [
            t
            for t in tables
            if _label(t) not in emptied and (before[_label(t)] or expected[_label(t)]["rows"])
        ]
        # all deletes before any insert: the ledger's one-outcome trigger (crosswalk vs reject) is
        # checked per statement, so a row moving back from reject to crosswalk must leave reject first
        for table in reversed(rest):
            if gone := _delete_changed(conn, table, schema):
                deleted[_label(table)] = gone
        for table in rest:
            if added := _insert_missing(conn, table, schema):
                inserted[_label(table)] = added
        try:
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        except psycopg.errors.ForeignKeyViolation as exc:
            raise IntegrityError(
                f"rollback of {run_id!r} would break foreign key {exc.diag.constraint_name} "
                f"(table {exc.diag.table_name}); nothing committed"
            ) from exc
        actual = _checksums(conn, tables)
        differ = _compare(expected, actual)
        # a first load killed before its restore left the target's foreign keys and indexes aside
        if broken := restore_pending(conn):
            differ.append(f"foreign keys {', '.join(broken)} do not hold")
        if differ:
            raise IntegrityError(
                f"rollback of {run_id!r} does not match its snapshot, nothing committed: {'; '.join(differ)}"
            )
        conn.execute(
            "UPDATE migration.run SET state = 'rolled_back', finished_at = greatest(now(), started_at)"
            " WHERE run_id = %s",
            (run_id,),
        )
        rows = {t: s["rows"] for t, s in actual.items()}
        _audit(
            conn,
            actor,
            f"rollback {check['dag_id']}",
            run_id,
            {
                "snapshot": schema,
                "state_before": check["state"],
                "rows_before": before,
                "rows_after": rows,
                "deleted": deleted,
                "inserted": inserted,
                "truncated": truncated,
                "outside_changes_undone": outside,
            },
        )
    seconds = round(time.perf_counter() - started, 3)
    log.info(
        "rolled back %s from %s: %d rows deleted, %d inserted, %d tables truncated, %.2f s",
        run_id,
        schema,
        sum(deleted.values()),
        sum(inserted.values()),
        len(truncated),
        seconds,
    )
    return RollbackResult(
        run_id=run_id,
        schema=schema,
        deleted=deleted,
        inserted=inserted,
        truncated=truncated,
        rows=rows,
        seconds=seconds,
    )


def verify_restored(target_url: str, run_id: str) -> dict[str, Any]:
    """Check, after the commit and in a fresh snapshot of the database, that the target equals the
    run's snapshot (rows and checksum of every table) and that the run is marked ``rolled_back``."""
    tables = snapshot_tables()
    with _connect(target_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            meta = _meta(conn, snapshot_schema(run_id))
            if meta is None or meta[0] != run_id:
                raise TerminalError(f"run {run_id!r} has no rollback snapshot to verify against")
            state = conn.execute("SELECT state FROM migration.run WHERE run_id = %s", (run_id,)).fetchone()
            actual = _checksums(conn, tables)
    differ = _compare(meta[3], actual)
    if differ:
        raise IntegrityError(f"target does not match the snapshot of {run_id!r}: {'; '.join(differ)}")
    if not state or state[0] != "rolled_back":
        raise IntegrityError(
            f"run {run_id!r} is not marked rolled_back (state {state[0] if state else None})"
        )
    return {
        "run_id": run_id,
        "tables": len(actual),
        "rows": {t: s["rows"] for t, s in actual.items() if s["rows"]},
        "matched": True,
    }


def drop_snapshot(target_url: str, run_id: str, *, actor: str = "system") -> bool:
    """Drop a run's snapshot once the run is accepted (it holds a copy of PHI); True if there was one."""
    schema = snapshot_schema(run_id)
    with _connect(target_url) as conn, conn.transaction():
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if not exists:
            return False
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        _audit(conn, actor, "drop rollback snapshot", run_id, {"schema": schema})
    log.info("dropped rollback snapshot %s of %s", schema, run_id)
    return True
