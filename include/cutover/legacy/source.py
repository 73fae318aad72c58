"""Read the legacy database in bounded Arrow batches: SQLite, PostgreSQL or MariaDB/MySQL.

Legacy systems are loosely typed: ids are read as int64, everything else as text, except
binary attachments. Text that is not valid UTF-8 (Latin-1 bytes in SQLite) is decoded as
cp1252 here, so Arrow can carry it; cleaning is the mapping stage's job.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa

from cutover.errors import ConfigError, TransientError
from cutover.legacy.schema import Dialect

ARROW_TYPES: dict[str, pa.DataType] = {"int": pa.int64(), "text": pa.string(), "blob": pa.binary()}


def dialect_of(url: str) -> Dialect:
    """The engine a URL names: ``sqlite``, ``postgresql`` or ``mysql`` (MariaDB)."""
    scheme = urlsplit(url).scheme.split("+")[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in {"postgresql", "postgres"}:
        return "postgresql"
    if scheme in {"mysql", "mariadb"}:
        return "mysql"
    raise ConfigError(f"legacy_db: unsupported scheme {scheme!r}")


def sqlite_path(url: str) -> str:
    """>>> sqlite_path("sqlite:////tmp/legacy.db")
    '/tmp/legacy.db'
    """
    return unquote(urlsplit(url).path)[1:] if url.startswith("sqlite:///") else unquote(urlsplit(url).path)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _as_text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return _decode(bytes(value))
    return value if value is None or isinstance(value, str) else str(value)


def _as_int(value: Any) -> Any:
    if value is None or isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def to_batch(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    """Column-wise conversion of DB-API rows into one Arrow batch of ``schema``."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for values, field in zip(columns, schema, strict=True):
        if pa.types.is_string(field.type):
            if not all(v is None or isinstance(v, str) for v in values):
                values = tuple(map(_as_text, values))
        elif pa.types.is_integer(field.type):
            if not all(v is None or isinstance(v, int) for v in values):
                values = tuple(map(_as_int, values))
        elif pa.types.is_binary(field.type):
            values = tuple(None if v is None else bytes(v) for v in values)
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def arrow_schema(columns: Sequence[tuple[str, str]]) -> pa.Schema:
    return pa.schema([pa.field(name, ARROW_TYPES[kind]) for name, kind in columns])


@contextlib.contextmanager
def connect(url: str, *, read_only: bool = True) -> Iterator[Any]:
    """A DB-API connection to the legacy database (read-only where the driver allows)."""
    dialect = dialect_of(url)
    try:
        if dialect == "sqlite":
            path = sqlite_path(url)
            conn: Any = sqlite3.connect(f"file:{path}?mode={'ro' if read_only else 'rw'}", uri=True)
            conn.text_factory = _decode
        elif dialect == "postgresql":
            import psycopg

            conn = psycopg.connect(url.replace("postgres://", "postgresql://", 1))
            if read_only:
                conn.read_only = True
        else:
            import pymysql

            parts = urlsplit(url)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            conn = pymysql.connect(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 3306,
                user=unquote(parts.username or "root"),
                password=unquote(parts.password or ""),
                database=unquote(parts.path.lstrip("/")),
                charset=query.get("charset", "utf8mb4"),
                cursorclass=pymysql.cursors.SSCursor,
            )
    except sqlite3.Error as exc:
        raise ConfigError(f"legacy_db: cannot open the SQLite database ({type(exc).__name__})") from exc
    except Exception as exc:
        raise TransientError(f"legacy_db: cannot connect ({type(exc).__name__})") from exc
    try:
        yield conn
    finally:
        conn.close()


def _quote(dialect: Dialect, name: str) -> str:
    return f"`{name}`" if dialect == "mysql" else f'"{name}"'


BLOB_BATCH_ROWS = 1_000
"""Rows per batch of a table with binary attachments: a batch is bounded in bytes, not just rows."""


def read_batches(
    url: str, table: str, columns: Sequence[tuple[str, str]], key: str, *, batch_rows: int = 50_000
) -> Iterator[pa.RecordBatch]:
    """Stream a legacy table ordered by its key, ``batch_rows`` rows at a time (fewer for attachments)."""
    if any(kind == "blob" for _, kind in columns):
        batch_rows = min(batch_rows, BLOB_BATCH_ROWS)
    dialect = dialect_of(url)
    schema = arrow_schema(columns)
    cols = ", ".join(_quote(dialect, name) for name, _ in columns)
    sql = f"SELECT {cols} FROM {_quote(dialect, table)} ORDER BY {_quote(dialect, key)}"
    with connect(url) as conn:
        if dialect == "postgresql":
            cur = conn.cursor(name=f"extract_{table}")  # server-side: memory stays bounded
            cur.itersize = batch_rows
        else:
            cur = conn.cursor()
        cur.execute(sql)
        while rows := cur.fetchmany(batch_rows):
            yield to_batch(rows, schema)
        cur.close()


def count_rows(url: str, table: str) -> int:
    dialect = dialect_of(url)
    with connect(url) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {_quote(dialect, table)}")
        (count,) = cur.fetchone()
        cur.close()
    return int(count)
