"""A first load into an empty target sets the per-row constraint work aside, then puts it back set-based.

Loading into the target schema as it stands, PostgreSQL checks every foreign key of every row with
an index probe and a row lock, and inserts every row into each secondary index at a random place
(the ids are hashes): on a 148k-row visits table, 23k rows/s against 262k into a bare table. When
the ``pt`` tables are still empty (a big bang, or the first wave), :func:`defer_constraints` drops
their foreign keys and non-unique indexes, and the crosswalk's secondary indexes, recording each
definition in ``migration.deferred_constraint``; after the last batch :func:`restore_constraints`
builds each index in one sorted pass and adds each foreign key back, which PostgreSQL checks with
one anti-join over the table (0.33 s for the visits' four indexes, 0.23 s for its four keys).

What stays throughout: primary keys (a re-run's upsert and the batch isolation rely on them),
CHECK and NOT NULL constraints. The loader itself resolves every reference through the crosswalk
before it writes a row, so a foreign key cannot fail on restore unless something else wrote to the
target meanwhile; if one does, it is added ``NOT VALID`` (enforced for new rows) and the restore
fails naming it. A run killed between the two leaves its definitions in the table: the next restore,
of this run or any other, puts every pending one back.

The ledger's crosswalk goes further (V013): its primary key is set aside too, and the single-outcome
triggers of the crosswalk and the reject table disabled. Both cost more than the COPY itself on a
million rows (the key's three text columns are compared with the collation at each level of each
insert; the triggers' transition tables hold every row), and both cost less built or checked once:
after the last batch the key is built in one sorted pass, the triggers enabled, and the rule (no
legacy row in both tables) checked over the whole ledger, every reject probing the key
(:func:`single_outcome`); a row in both fails the restore, naming the first few. Meanwhile the load
finds a parent in the target's primary key, and a merged one in ``crosswalk_merged_idx``
(:func:`cutover.loading.direct.parent_outcomes`), and checks its own batch against the other ledger
table before writing it (:func:`cutover.loading.direct.merge_direct`).

Both need the schemas' owner (``target_owner_db``); a loader without DDL rights keeps the per-row path.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, Queue
from typing import Any, TypedDict

import psycopg
from psycopg import sql

from cutover.errors import IntegrityError, TransientError
from cutover.target import TARGET_SCHEMA, TARGET_TABLES

log = logging.getLogger(__name__)

LEDGER_INDEXED = ("migration", "crosswalk")
"""The ledger table whose key and secondary indexes (by new id, merged_into, run) a first load sets aside."""

LEDGER_KEPT = "crosswalk_merged_idx"
"""The crosswalk's one index a first load reads (a merged parent's survivor), and keeps."""

LEDGER_CHECKED = ("crosswalk", "reject")
"""The ledger tables whose single-outcome triggers a first load disables (the rule checked after)."""

RESTORE_CONNECTIONS = 2
"""Connections :func:`restore_constraints` puts indexes and keys back on, side by side."""

_LOCK = 0x6375_7430_6266_6B31 & 0x7FFF_FFFF_FFFF_FFFF
"""Advisory lock serialising deferrals and restores."""

_SET_ASIDE = """
SELECT n.nspname, c.relname, i.relname, 'index', pg_get_indexdef(x.indexrelid)
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class c ON c.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT x.indisunique AND NOT x.indisprimary
   AND (n.nspname = %(pt)s OR (n.nspname, c.relname) = (%(ledger_schema)s, %(ledger_table)s))
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
   AND i.relname <> %(kept)s
UNION ALL
SELECT n.nspname, c.relname, k.conname, 'primary_key', pg_get_indexdef(k.conindid)
  FROM pg_constraint k
  JOIN pg_class c ON c.oid = k.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE k.contype = 'p' AND (n.nspname, c.relname) = (%(ledger_schema)s, %(ledger_table)s)
UNION ALL
SELECT n.nspname, c.relname, t.tgname, 'trigger', pg_get_triggerdef(t.oid)
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND n.nspname = %(ledger_schema)s
   AND c.relname = ANY(%(checked)s) AND t.tgfoid = 'migration.assert_single_outcome()'::regprocedure
UNION ALL
SELECT n.nspname, c.relname, k.conname, 'foreign_key', pg_get_constraintdef(k.oid)
  FROM pg_constraint k
  JOIN pg_class c ON c.oid = k.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE k.contype = 'f' AND n.nspname = %(pt)s
 ORDER BY 4 DESC, 1, 2, 3
"""


class Deferral(TypedDict):
    run_id: str
    deferred: bool
    """True when this run's load goes without the set-aside constraints."""
    reason: str
    indexes: int
    foreign_keys: int
    primary_keys: int
    triggers: int


class Restore(TypedDict):
    run_id: str
    indexes: int
    foreign_keys: int
    primary_keys: int
    triggers: int
    seconds: float


Pending = tuple[str, str, str, str, str, str]
"""A set-aside constraint: (run_id, schema, table, name, kind, definition)."""

_KINDS = ("index", "foreign_key", "primary_key", "trigger")


def _kept(run_id: str, reason: str) -> Deferral:
    """Nothing set aside (now)."""
    return Deferral(
        run_id=run_id,
        deferred=reason == "already set aside",
        reason=reason,
        indexes=0,
        foreign_keys=0,
        primary_keys=0,
        triggers=0,
    )


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url)
    except psycopg.OperationalError as exc:
        raise TransientError(f"target_db: cannot connect ({type(exc).__name__})") from exc


def _pending(conn: psycopg.Connection[Any]) -> list[Pending]:
    return list(
        conn.execute(
            "SELECT run_id, schema_name, table_name, name, kind, definition FROM migration.deferred_constraint"
            " WHERE restored_at IS NULL ORDER BY kind DESC, schema_name, table_name, name"
        )
    )


def _empty(conn: psycopg.Connection[Any]) -> bool:
    probes = sql.SQL(" OR ").join(
        sql.SQL("EXISTS (SELECT 1 FROM {}.{})").format(sql.Identifier(TARGET_SCHEMA), sql.Identifier(t))
        for t in TARGET_TABLES
    )
    (any_row,) = conn.execute(sql.SQL("SELECT ") + probes).fetchone() or (True,)
    return not any_row


def _set_aside(conn: psycopg.Connection[Any], schema: str, table: str, name: str, kind: str) -> None:
    relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    if kind in ("foreign_key", "primary_key"):
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(relation, sql.Identifier(name)))
    elif kind == "trigger":
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(relation, sql.Identifier(name)))
    else:
        conn.execute(sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))


def defer_constraints(owner_url: str, run_id: str) -> Deferral:
    """Set the target's foreign keys and secondary indexes, and the crosswalk's key and the ledger's
    single-outcome triggers, aside if the ``pt`` tables are empty.

    Idempotent: a retried or resumed run whose constraints are already aside finds them recorded
    and does nothing; a target holding rows (a later wave, a re-run) keeps every constraint.

    Raises :class:`IntegrityError` when a killed run's constraints, put back first, do not hold
    (its crosswalk key, or a legacy row in both crosswalk and reject): nothing is set aside then,
    and that run must be rolled back.
    """
    with _connect(owner_url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        pending = _pending(conn)
        if any(row[0] == run_id for row in pending):
            return _kept(run_id, "already set aside")
        # a killed run's: put them back before judging emptiness
        if pending:
            _, _, broken, unheld = _restore(conn, pending)
            if broken:
                log.warning("foreign keys %s came back NOT VALID: loaded rows break them", ", ".join(broken))
            if unheld:
                raise IntegrityError(f"a killed first load's ledger does not hold: {'; '.join(unheld)}")
        if not _empty(conn):
            return _kept(run_id, "target holds rows")
        (owner,) = conn.execute(
            "SELECT bool_and(pg_has_role(c.relowner, 'USAGE')) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
            " AND (n.nspname = %s OR (n.nspname = %s AND c.relname = ANY(%s)))",
            (TARGET_SCHEMA, LEDGER_INDEXED[0], [LEDGER_INDEXED[1], *LEDGER_CHECKED]),
        ).fetchone() or (False,)
        if not owner:
            log.warning(
                "first load without the schema owner (target_owner_db): constraints stay, rows check one by one"
            )
            return _kept(run_id, "not the tables' owner")
        found = conn.execute(
            _SET_ASIDE,
            {
                "pt": TARGET_SCHEMA,
                "ledger_schema": LEDGER_INDEXED[0],
                "ledger_table": LEDGER_INDEXED[1],
                "kept": LEDGER_KEPT,
                "checked": list(LEDGER_CHECKED),
            },
        ).fetchall()
        for schema, table, name, kind, definition in found:
            conn.execute(
                "INSERT INTO migration.deferred_constraint (run_id, schema_name, table_name, name, kind, definition)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (run_id, schema, table, name, kind, definition),
            )
            _set_aside(conn, schema, table, name, kind)
    counts = {kind: sum(1 for row in found if row[3] == kind) for kind in _KINDS}
    log.info(
        "first load: %d indexes, %d foreign keys, %d primary keys and %d triggers set aside",
        *(counts[kind] for kind in _KINDS),
    )
    return Deferral(
        run_id=run_id,
        deferred=True,
        reason="target empty",
        indexes=counts["index"],
        foreign_keys=counts["foreign_key"],
        primary_keys=counts["primary_key"],
        triggers=counts["trigger"],
    )


def _mark(conn: psycopg.Connection[Any], entry: Pending, seconds: float) -> None:
    run_id, schema, table, name = entry[:4]
    conn.execute(
        "UPDATE migration.deferred_constraint SET restored_at = clock_timestamp(), restore_seconds = %s"
        " WHERE run_id = %s AND schema_name = %s AND table_name = %s AND name = %s",
        (seconds, run_id, schema, table, name),
    )


_DUPLICATES = sql.SQL(
    "SELECT count(*) OVER (), legacy_system, legacy_table, legacy_id FROM {}.{}"
    " GROUP BY legacy_system, legacy_table, legacy_id HAVING count(*) > 1 ORDER BY 2, 3, 4 LIMIT 5"
)


def _first_ids(rows: list[tuple[Any, ...]]) -> str:
    """``count legacy rows, first: system.table id, …`` of (count, system, table, id) rows; ids only."""
    return f"{rows[0][0]} legacy rows, first: " + ", ".join(f"{s}.{t} {i}" for _, s, t, i in rows)


def _put_back(conn: psycopg.Connection[Any], entry: Pending) -> str | None:
    """Rebuild one index or key, add one foreign key back or enable one trigger, and record it.

    A foreign key the rows break comes back ``NOT VALID`` (enforced for new rows) and its name is
    returned. A primary key the rows break (a legacy row twice in the crosswalk) cannot come back:
    it stays pending and the returned text names it and the first duplicate legacy ids.
    """
    _, schema, table, name, kind, definition = entry
    relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    started = time.perf_counter()
    broken = None
    if kind == "index":
        conn.execute(sql.SQL(definition))  # pg_get_indexdef's text, from the catalog
    elif kind == "primary_key":
        # the index first (a SHARE lock: other index builds on the table go on meanwhile), then the key
        try:
            with conn.transaction():
                conn.execute(sql.SQL(definition))  # pg_get_indexdef's text of the key's index
        except psycopg.errors.UniqueViolation:
            duplicates = conn.execute(_DUPLICATES.format(sql.Identifier(schema), sql.Identifier(table)))
            return f"{schema}.{table}.{name} ({_first_ids(duplicates.fetchall())} twice)"
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}").format(
                relation, sql.Identifier(name), sql.Identifier(name)
            )
        )
    elif kind == "trigger":
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(relation, sql.Identifier(name)))
    else:
        add = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(relation, sql.Identifier(name)) + sql.SQL(
            definition
        )  # pg_get_constraintdef's text, from the catalog
        try:
            with conn.transaction():
                conn.execute(add)
        except psycopg.errors.ForeignKeyViolation:
            conn.execute(add + sql.SQL(" NOT VALID"))
            broken = f"{schema}.{table}.{name}"
    _mark(conn, entry, time.perf_counter() - started)
    return broken


_BOTH_OUTCOMES = """
SELECT count(*) OVER (), r.legacy_system, r.legacy_table, r.legacy_id
  FROM migration.reject r
 WHERE EXISTS (SELECT 1 FROM migration.crosswalk c WHERE c.legacy_system = r.legacy_system
                  AND c.legacy_table = r.legacy_table AND c.legacy_id = r.legacy_id)
 ORDER BY 2, 3, 4 LIMIT 5
"""


def single_outcome(conn: psycopg.Connection[Any]) -> str | None:
    """The single-outcome rule over the whole ledger, set-based: None when no legacy row is in both
    ``migration.crosswalk`` and ``migration.reject``, else their count and the first ids.

    Every reject probes the crosswalk's key (rejects are a few percent of the rows; 18,814 against
    1.08M crosswalk rows in a few tens of milliseconds): the planner would otherwise merge-join the
    two whole keys. Without the key (it did not come back) the planner chooses.
    """
    (keyed,) = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'migration.crosswalk'::regclass"
        " AND contype = 'p')"
    ).fetchone() or (False,)
    joins = ("enable_mergejoin", "enable_hashjoin")
    before = [conn.execute("SELECT current_setting(%s)", (name,)).fetchone() for name in joins]
    if keyed:  # for this statement only: the caller's transaction (a rollback) plans as it did
        for name in joins:
            conn.execute("SELECT set_config(%s, 'off', true)", (name,))
    both = conn.execute(_BOTH_OUTCOMES).fetchall()
    if keyed:
        for name, value in zip(joins, before, strict=True):
            conn.execute("SELECT set_config(%s, %s, true)", (name, value[0] if value else "on"))
    return f"{_first_ids(both)} in both crosswalk and reject" if both else None


def _side_by_side(owner_url: str, entries: list[Pending]) -> list[str]:
    """Put ``entries`` back on :data:`RESTORE_CONNECTIONS` connections, each taking the next one
    when done, each entry with its record in one transaction (one killed halfway stays pending);
    what did not hold (see :func:`_put_back`).

    An index build and a key check on the same table wait for each other (their locks conflict);
    two key checks never wait in a cycle, since the tables' references have none.
    """
    todo: Queue[Pending] = Queue()
    for entry in entries:
        todo.put(entry)
    broken: list[str] = []

    def lane() -> None:
        with _connect(owner_url) as conn:
            conn.execute("SET maintenance_work_mem = '256MB'")
            conn.commit()
            while True:
                try:
                    entry = todo.get_nowait()
                except Empty:
                    return
                with conn.transaction():
                    if (name := _put_back(conn, entry)) is not None:
                        broken.append(name)

    with ThreadPoolExecutor(RESTORE_CONNECTIONS, thread_name_prefix="restore") as pool:
        for done in [pool.submit(lane) for _ in range(RESTORE_CONNECTIONS)]:
            done.result()
    return sorted(broken)


def _by_size(conn: psycopg.Connection[Any], entries: list[Pending]) -> list[Pending]:
    """``entries``, indexes and keys before foreign keys, each with the largest tables first (they take longest)."""
    sizes = dict(
        conn.execute(
            "SELECT t, pg_relation_size(to_regclass(t)) FROM unnest(%s::text[]) AS t",
            ([f'"{e[1]}"."{e[2]}"' for e in entries],),
        ).fetchall()
    )
    return sorted(
        entries,
        key=lambda e: (e[4] == "foreign_key", -(sizes.get(f'"{e[1]}"."{e[2]}"') or 0), e[4] != "primary_key"),
    )


def _restore(
    conn: psycopg.Connection[Any], pending: list[Pending], owner_url: str | None = None
) -> tuple[int, int, list[str], list[str]]:
    """Rebuild the pending indexes and keys, add the foreign keys back, then enable the triggers and
    check the single-outcome rule they were not there to check; (indexes and keys, foreign keys,
    foreign keys that did not hold, what else did not hold: a primary key, the rule).

    With ``owner_url`` the indexes and keys are put back side by side on connections of their own
    (see :func:`_side_by_side`); without, in ``conn``'s transaction, one after the other. The
    triggers come back last, on ``conn``: the rule's check reads the crosswalk's key.
    """
    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    triggers = [entry for entry in pending if entry[4] == "trigger"]
    rest = [entry for entry in pending if entry[4] != "trigger"]
    if owner_url is not None and len(rest) > 1:
        failed = _side_by_side(owner_url, _by_size(conn, rest))
    else:
        failed = [name for entry in _by_size(conn, rest) if (name := _put_back(conn, entry)) is not None]
    for entry in triggers:
        _put_back(conn, entry)
    if triggers and (both := single_outcome(conn)):
        failed.append(f"single_outcome ({both})")
    keys = {f"{e[1]}.{e[2]}.{e[3]}" for e in pending if e[4] == "foreign_key"}
    broken = [name for name in failed if name in keys]
    indexes = sum(1 for entry in pending if entry[4] in ("index", "primary_key"))
    return indexes, len(keys), broken, [name for name in failed if name not in keys]


def restore_pending(conn: psycopg.Connection[Any]) -> list[str]:
    """Inside the caller's transaction (a rollback): put back every constraint still set aside;
    the foreign keys the rows break, which are back ``NOT VALID``, and what else does not hold
    (a crosswalk key, a legacy row in both crosswalk and reject)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
    _, _, broken, unheld = _restore(conn, _pending(conn))
    return broken + unheld


def restore_constraints(owner_url: str, run_id: str) -> Restore:
    """Put back every constraint still set aside (this run's, and a killed run's), side by side,
    then enable the ledger's triggers and check the single-outcome rule over the whole ledger.

    Each index, key or trigger is put back with its record in a transaction of its own, so a
    restore killed halfway leaves exactly the rest pending, for the next restore.

    Raises :class:`IntegrityError` naming each foreign key the loaded rows break (never a value);
    that key is then back as ``NOT VALID``, enforced for new rows, and everything else restored.
    Raises it too, with the first legacy ids, when a legacy row is twice in the crosswalk (its key
    then stays pending) or in both crosswalk and reject: the run is not accepted.
    """
    started = time.perf_counter()
    with _connect(owner_url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        pending = _pending(conn)
        indexes, keys, broken, unheld = _restore(conn, pending, owner_url)
    seconds = round(time.perf_counter() - started, 3)
    if broken or unheld:
        problems = [*unheld]
        if broken:
            problems.append(
                f"{len(broken)} foreign keys do not hold after the load: {', '.join(broken[:10])}"
                " (added NOT VALID; the loaded rows that break them must be found and fixed)"
            )
        raise IntegrityError(f"run {run_id}: {'; '.join(problems)}")
    if pending:
        log.info("restored %d indexes and keys and %d foreign keys in %.2f s", indexes, keys, seconds)
    triggers = sum(1 for entry in pending if entry[4] == "trigger")
    primary = sum(1 for entry in pending if entry[4] == "primary_key")
    return Restore(
        run_id=run_id,
        indexes=indexes - primary,
        foreign_keys=keys,
        primary_keys=primary,
        triggers=triggers,
        seconds=seconds,
    )


def restore_seconds(target_url: str, run_id: str) -> dict[str, float]:
    """Seconds the run's restore spent per table (``schema.table``); empty when it set nothing aside."""
    with psycopg.connect(target_url) as conn:
        return {
            f"{schema}.{table}": float(seconds)
            for schema, table, seconds in conn.execute(
                "SELECT schema_name, table_name, sum(restore_seconds) FROM migration.deferred_constraint"
                " WHERE run_id = %s AND restored_at IS NOT NULL GROUP BY 1, 2",
                (run_id,),
            )
        }
