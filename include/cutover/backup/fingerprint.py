"""Per-table fingerprints of a legacy database: row count and a SHA-256 over the rows in key order;
and the database's identity. Together they bind a backup to its source.

The same function runs on the source and on a restored copy; equal fingerprints prove that the
copy holds the same rows, cell for cell. Rows are read through the legacy reader
(:func:`cutover.legacy.source.read_batches`, ordered by the table's key), id columns as their raw
text (:func:`raw_columns`: the extract reads an id that is not a whole int64 as NULL, which
would make ``1e20``, ``2e20`` and NULL hash alike), and each row is hashed
through a canonical, type-tagged and length-prefixed encoding (:func:`canonical_row`), so the
digest depends neither on batch sizes nor on how an engine formats a row, and ``NULL`` differs
from an empty string. One caveat: the reader decodes text that is not UTF-8 as cp1252, so two
invalid byte sequences that decode alike are not told apart; for SQLite the restore test also
compares the SHA-256 of the whole database file.

The reader's connection is closed as soon as a table is done or fails (the generator is closed
explicitly, not whenever the garbage collector gets to it), and an unexpected error is re-raised
as a TerminalError naming the table and the rows read before it, never a value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypedDict

from cutover.errors import CutoverError, TerminalError, TransientError
from cutover.legacy.profile import legacy_tables
from cutover.legacy.schema import ColumnType, LegacyTable
from cutover.legacy.source import connect, dialect_of, read_batches, sqlite_path

VERSION = 2
"""The fingerprint's definition. 2: id columns hashed as their raw text (1: as int64, an invalid
id as NULL). Fingerprints of different versions are not comparable."""


class TableFingerprint(TypedDict):
    rows: int
    sha256: str


def raw_columns(spec: LegacyTable) -> list[tuple[str, ColumnType]]:
    """The columns a fingerprint reads: id columns as text, so any change of a cell changes the digest.

    >>> raw_columns(legacy_tables()["procedures"])[:3]
    [('proc_id', 'text'), ('visit_id', 'text'), ('cpt_text', 'text')]
    """
    return [(name, "text" if kind == "int" else kind) for name, kind in spec.columns]


def _cell(value: Any) -> bytes:
    if value is None:
        return b"N"
    if isinstance(value, int):
        return b"I%d;" % value
    raw = value.encode() if isinstance(value, str) else bytes(value)
    return (b"S" if isinstance(value, str) else b"B") + b"%d:" % len(raw) + raw


def canonical_row(row: Sequence[Any]) -> bytes:
    """The bytes a row contributes to its table's digest.

    >>> canonical_row([7, "ab", None, b"\\x00"])
    b'R4|I7;S2:abNB1:\\x00'
    >>> canonical_row(["", None]) != canonical_row([None, ""])
    True
    """
    return b"R%d|" % len(row) + b"".join(_cell(v) for v in row)


def is_transient(exc: BaseException) -> bool:
    """A lost connection, a lock, a timeout (every driver's ``OperationalError``, an ``OSError``):
    a retry may succeed; anything else is about the data or the code.

    >>> is_transient(ConnectionResetError()), is_transient(OverflowError())
    (True, False)
    """
    return isinstance(exc, OSError) or type(exc).__name__ == "OperationalError"


@contextmanager
def closed_after(batches: Iterator[Any]) -> Iterator[Iterator[Any]]:
    """``batches``, closed on leaving the block however it is left: a reader's generator closes its
    database connection then, not when the garbage collector gets to it (a failed try's frames may
    keep it alive, and its lock with it)."""
    try:
        yield batches
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def table_fingerprint(url: str, table: str) -> TableFingerprint:
    spec = legacy_tables()[table]
    digest, rows = hashlib.sha256(), 0
    try:
        with closed_after(read_batches(url, spec.source_name, raw_columns(spec), spec.key)) as batches:
            for batch in batches:
                for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                    digest.update(canonical_row(row))
                rows += batch.num_rows
    except CutoverError:
        raise
    except Exception as exc:  # the type only: a driver's or Arrow's message may quote a value
        kind = TransientError if is_transient(exc) else TerminalError
        raise kind(
            f"fingerprint of legacy table {table} failed after {rows} rows ({type(exc).__name__})"
        ) from exc
    return TableFingerprint(rows=rows, sha256=digest.hexdigest())


def fingerprint(url: str) -> dict[str, TableFingerprint]:
    """Fingerprints of every legacy table."""
    return {table: table_fingerprint(url, table) for table in legacy_tables()}


def identity(url: str) -> dict[str, str]:
    """Which database ``url`` names, as the server knows it (ids only, never a value).

    PostgreSQL: the cluster's ``system_identifier`` (``pg_control_system()``), the database's name
    and oid. MariaDB/MySQL: ``@@server_uuid`` where the server has one (MySQL; MariaDB has not),
    else its host name, port and data folder, with ``@@server_id``; and the schema's name. SQLite:
    the file's path, recorded only: a file has no identity of its own (a copy is the same
    database), so a SQLite backup is bound by its contents (every table's count and checksum).
    """
    dialect = dialect_of(url)
    if dialect == "sqlite":
        return {"file": sqlite_path(url)}
    try:
        with connect(url) as conn:
            cur = conn.cursor()
            if dialect == "postgresql":
                cur.execute(
                    "SELECT (SELECT system_identifier FROM pg_control_system())::text,"
                    " current_database(), (SELECT oid FROM pg_database WHERE datname = current_database())::text"
                )
                row = cur.fetchone()
            else:
                cur.execute("SHOW GLOBAL VARIABLES LIKE 'server_uuid'")  # MySQL; none on MariaDB
                uuid = cur.fetchall()
                cur.execute("SELECT CONCAT_WS(':', @@hostname, @@port, @@datadir, @@server_id), DATABASE()")
                server, database = cur.fetchone()
                row = (uuid[0][1] if uuid else server, database)
            cur.close()
    except CutoverError:
        raise
    except Exception as exc:
        kind = TransientError if is_transient(exc) else TerminalError
        raise kind(f"identity of the {dialect} legacy database: query failed ({type(exc).__name__})") from exc
    if dialect == "postgresql":
        return {"system_identifier": str(row[0]), "database": str(row[1]), "oid": str(row[2])}
    return {"server": str(row[0]), "database": str(row[1])}


def count(url: str, table: str) -> int:
    """A table's row count: the cheap half of a comparison, read before any checksum."""
    from cutover.legacy.source import count_rows

    try:
        return count_rows(url, legacy_tables()[table].source_name)
    except CutoverError:
        raise
    except Exception as exc:
        kind = TransientError if is_transient(exc) else TerminalError
        raise kind(f"count of legacy table {table} failed ({type(exc).__name__})") from exc
