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
"""The ledger table whose secondary indexes (by new id, merged_into, run) no load reads."""

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


class Restore(TypedDict):
    run_id: str
    indexes: int
    foreign_keys: int
    seconds: float


Pending = tuple[str, str, str, str, str, str]
"""A set-aside constraint: (run_id, schema, table, name, kind, definition)."""


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


def defer_constraints(owner_url: str, run_id: str) -> Deferral:
    """Set the target's foreign keys and secondary indexes aside if the ``pt`` tables are empty.

    Idempotent: a retried or resumed run whose constraints are already aside finds them recorded
    and does nothing; a target holding rows (a later wave, a re-run) keeps every constraint.
    """
    with _connect(owner_url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        pending = _pending(conn)
        if any(row[0] == run_id for row in pending):
            return Deferral(
                run_id=run_id, deferred=True, reason="already set aside", indexes=0, foreign_keys=0
            )
        # a killed run's: put them back before judging emptiness
        if pending and (broken := _restore(conn, pending)[2]):
            log.warning("foreign keys %s came back NOT VALID: loaded rows break them", ", ".join(broken))
        if not _empty(conn):
            return Deferral(
                run_id=run_id, deferred=False, reason="target holds rows", indexes=0, foreign_keys=0
            )
        (owner,) = conn.execute(
            "SELECT bool_and(pg_has_role(c.relowner, 'USAGE')) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
            " AND (n.nspname = %s OR (n.nspname, c.relname) = (%s, %s))",
            (TARGET_SCHEMA, *LEDGER_INDEXED),
        ).fetchone() or (False,)
        if not owner:
            log.warning(
                "first load without the schema owner (target_owner_db): constraints stay, rows check one by one"
            )
            return Deferral(
                run_id=run_id, deferred=False, reason="not the tables' owner", indexes=0, foreign_keys=0
            )
        found = conn.execute(
            _SET_ASIDE,
            {"pt": TARGET_SCHEMA, "ledger_schema": LEDGER_INDEXED[0], "ledger_table": LEDGER_INDEXED[1]},
        ).fetchall()
        for schema, table, name, kind, definition in found:
            conn.execute(
                "INSERT INTO migration.deferred_constraint (run_id, schema_name, table_name, name, kind, definition)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (run_id, schema, table, name, kind, definition),
            )
            if kind == "foreign_key":
                conn.execute(
                    sql.SQL("ALTER TABLE {}.{} DROP CONSTRAINT {}").format(
                        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(name)
                    )
                )
            else:
                conn.execute(sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
    counts = {kind: sum(1 for row in found if row[3] == kind) for kind in ("index", "foreign_key")}
    log.info("first load: %d indexes and %d foreign keys set aside", counts["index"], counts["foreign_key"])
    return Deferral(
        run_id=run_id,
        deferred=True,
        reason="target empty",
        indexes=counts["index"],
        foreign_keys=counts["foreign_key"],
    )


def _mark(conn: psycopg.Connection[Any], entry: Pending, seconds: float) -> None:
    run_id, schema, table, name = entry[:4]
    conn.execute(
        "UPDATE migration.deferred_constraint SET restored_at = clock_timestamp(), restore_seconds = %s"
        " WHERE run_id = %s AND schema_name = %s AND table_name = %s AND name = %s",
        (seconds, run_id, schema, table, name),
    )


def _put_back(conn: psycopg.Connection[Any], entry: Pending) -> str | None:
    """Rebuild one index or add one foreign key back, and record it; a key the rows break comes
    back ``NOT VALID`` (enforced for new rows) and its name is returned."""
    _, schema, table, name, kind, definition = entry
    started = time.perf_counter()
    broken = None
    if kind == "index":
        conn.execute(sql.SQL(definition))  # pg_get_indexdef's text, from the catalog
    else:
        add = sql.SQL("ALTER TABLE {}.{} ADD CONSTRAINT {} ").format(
            sql.Identifier(schema), sql.Identifier(table), sql.Identifier(name)
        ) + sql.SQL(definition)  # pg_get_constraintdef's text, from the catalog
        try:
            with conn.transaction():
                conn.execute(add)
        except psycopg.errors.ForeignKeyViolation:
            conn.execute(add + sql.SQL(" NOT VALID"))
            broken = f"{schema}.{table}.{name}"
    _mark(conn, entry, time.perf_counter() - started)
    return broken


def _side_by_side(owner_url: str, entries: list[Pending]) -> list[str]:
    """Put ``entries`` back on :data:`RESTORE_CONNECTIONS` connections, each taking the next one
    when done, each entry with its record in one transaction (one killed halfway stays pending);
    the foreign keys that did not hold.

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
    """``entries``, indexes before keys, each with the largest tables first (they take longest)."""
    sizes = dict(
        conn.execute(
            "SELECT t, pg_relation_size(to_regclass(t)) FROM unnest(%s::text[]) AS t",
            ([f'"{e[1]}"."{e[2]}"' for e in entries],),
        ).fetchall()
    )
    return sorted(entries, key=lambda e: (e[4] != "index", -(sizes.get(f'"{e[1]}"."{e[2]}"') or 0)))


def _restore(
    conn: psycopg.Connection[Any], pending: list[Pending], owner_url: str | None = None
) -> tuple[int, int, list[str]]:
    """Rebuild the pending indexes, then add the foreign keys back; (indexes, keys, keys that did not hold).

    With ``owner_url`` they are put back side by side on connections of their own (see
    :func:`_side_by_side`); without, in ``conn``'s transaction, one after the other.
    """
    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    if owner_url is not None and len(pending) > 1:
        broken = _side_by_side(owner_url, _by_size(conn, pending))
    else:
        broken = [name for entry in pending if (name := _put_back(conn, entry)) is not None]
    indexes = sum(1 for entry in pending if entry[4] == "index")
    return indexes, len(pending) - indexes, broken


def restore_pending(conn: psycopg.Connection[Any]) -> list[str]:
    """Inside the caller's transaction (a rollback): put back every constraint still set aside;
    the foreign keys the rows break, which are back ``NOT VALID``."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
    return _restore(conn, _pending(conn))[2]


def restore_constraints(owner_url: str, run_id: str) -> Restore:
    """Put back every constraint still set aside (this run's, and a killed run's), side by side.

    Each index or key is put back with its record in a transaction of its own, so a restore
    killed halfway leaves exactly the rest pending, for the next restore.

    Raises :class:`IntegrityError` naming each foreign key the loaded rows break (never a value);
    that key is then back as ``NOT VALID``, enforced for new rows, and everything else restored.
    """
    started = time.perf_counter()
    with _connect(owner_url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        pending = _pending(conn)
        indexes, keys, broken = _restore(conn, pending, owner_url)
    seconds = round(time.perf_counter() - started, 3)
    if broken:
        raise IntegrityError(
            f"run {run_id}: {len(broken)} foreign keys do not hold after the load: {', '.join(broken[:10])}"
            " (added NOT VALID; the loaded rows that break them must be found and fixed)"
        )
    if pending:
        log.info("restored %d indexes and %d foreign keys in %.2f s", indexes, keys, seconds)
    return Restore(run_id=run_id, indexes=indexes, foreign_keys=keys, seconds=seconds)


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
