"""Write a generated legacy database to SQLite, PostgreSQL (COPY) or MariaDB/MySQL (batched INSERTs).

Each writer drops and recreates the legacy tables in one go. The data is the same on every engine
except where an engine cannot hold it: PostgreSQL and MariaDB store text as valid UTF-8, so the
Latin-1 bytes that SQLite keeps raw become mojibake there (``é`` → ``Ã©``, what a UTF-8 column
read through a Latin-1 client really looks like), and PostgreSQL cannot hold NUL, so a NUL becomes
``\\x01`` there.

>>> dialect_of("sqlite:////tmp/legacy.db"), sqlite_path("sqlite:////tmp/legacy.db")
('sqlite', PosixPath('/tmp/legacy.db'))
>>> sqlite_path("sqlite:///legacy.db")
PosixPath('legacy.db')
>>> to_server_text(b"caf\\xe9", "postgresql"), to_server_text("a\\x00b", "postgresql")
('cafÃ©', 'a\\x01b')
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cutover.errors import ConfigError, TransientError
from cutover.legacy.schema import LEGACY_TABLES, Dialect, ddl, drop_ddl, quote
from cutover.legacy.source import dialect_of
from cutover.simulate.practice import Legacy

log = logging.getLogger(__name__)

MYSQL_BATCH_ROWS = 2_000
UNKNOWN_DATABASE = 1049
"""MariaDB/MySQL's error number for a database that does not exist (ER_BAD_DB_ERROR)."""


def sqlite_path(url: str) -> Path:
    """The file of ``sqlite:////abs/path.db`` (absolute) or ``sqlite:///relative.db``."""
    path = unquote(urlsplit(url).path)
    if not path or path == "/":
        raise ConfigError("legacy database URL: a SQLite URL needs a file path")
    return Path(path[1:])


def require_sqlite_folder(url: str) -> None:
    """A SQLite URL given as the database to write must name a file in an existing folder (a typo in
    the folder is a missing database, as with a server; only ``cutover simulate --out`` makes folders)."""
    if dialect_of(url) == "sqlite" and not sqlite_path(url).parent.is_dir():
        raise ConfigError(
            f"legacy database: no folder {sqlite_path(url).parent} for the SQLite file "
            f"{sqlite_path(url).name}; create the folder first"
        )


def to_server_text(value: Any, dialect: Dialect) -> Any:
    """A text value as a server engine can store it (see the module docstring)."""
    if isinstance(value, bytes):
        # The bytes are Latin-1; the server column is UTF-8, read back through a cp1252 client.
        value = value.decode("latin-1").encode("utf-8").decode("cp1252")
    if dialect == "postgresql" and isinstance(value, str) and "\x00" in value:
        value = value.replace("\x00", "\x01")
    return value


def _server_rows(legacy: Legacy, table: str, dialect: Dialect) -> Iterator[tuple[Any, ...]]:
    dirty = [
        i
        for i, (name, kind) in enumerate(LEGACY_TABLES[table].columns)
        if kind == "text" and (table, name) in legacy.dirty_text
    ]
    if not dirty:
        yield from legacy.rows(table)
        return
    for row in legacy.rows(table):
        values = list(row)
        for i in dirty:
            values[i] = to_server_text(values[i], dialect)
        yield tuple(values)


def _insert_sql(dialect: Dialect, table: str) -> str:
    names = LEGACY_TABLES[table].column_names
    marker = "?" if dialect == "sqlite" else "%s"
    columns = ", ".join(quote(dialect, n) for n in names)
    return f"INSERT INTO {quote(dialect, table)} ({columns}) VALUES ({', '.join([marker] * len(names))})"


def write_sqlite(path: Path, legacy: Legacy) -> None:
    """One transaction of ``executemany`` per table; no journal while loading (a simulator may)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise ConfigError(f"legacy database: cannot open the SQLite file ({type(exc).__name__})") from exc
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        for statement in drop_ddl("sqlite") + ddl("sqlite"):
            conn.execute(statement)
        for table in LEGACY_TABLES:
            conn.executemany(_insert_sql("sqlite", table), legacy.rows(table))
        conn.execute("COMMIT")
    finally:
        conn.close()


def write_postgresql(url: str, legacy: Legacy) -> None:
    """Drop, create and ``COPY`` every table in one transaction."""
    import psycopg

    try:
        conn = psycopg.connect(url.replace("postgres://", "postgresql://", 1))
    except psycopg.OperationalError as exc:
        parts = urlsplit(url)
        database = unquote(parts.path.lstrip("/"))
        if f'database "{database}" does not exist' in str(exc):  # the server's words, not a value
            raise ConfigError(
                f"legacy database: the PostgreSQL server at {parts.hostname}:{parts.port or 5432} has no "
                f"database {database!r}; create it first (createdb {database})"
            ) from exc
        server = f"{parts.hostname}:{parts.port or 5432}"
        user = unquote(parts.username or "")
        if user and f'role "{user}" does not exist' in str(exc):
            raise ConfigError(
                f"legacy database: the PostgreSQL server at {server} has no role {user!r}"
            ) from exc
        raise TransientError(
            f"legacy database: cannot connect to PostgreSQL at {server} ({type(exc).__name__})"
        ) from exc
    with conn:
        with conn.cursor() as cur:
            for statement in drop_ddl("postgresql") + ddl("postgresql"):
                cur.execute(statement)
            for table in LEGACY_TABLES:
                columns = ", ".join(quote("postgresql", n) for n in LEGACY_TABLES[table].column_names)
                sql = f"COPY {quote('postgresql', table)} ({columns}) FROM STDIN"
                with cur.copy(sql) as copy:
                    for row in _server_rows(legacy, table, "postgresql"):
                        copy.write_row(row)
        conn.commit()


def mysql_params(url: str) -> dict[str, Any]:
    """pymysql connection arguments from ``mysql://user:pw@host:port/db``.

    >>> sorted(mysql_params("mysql://root@127.0.0.1:3306/legacy").items())  # doctest: +NORMALIZE_WHITESPACE
    [('charset', 'utf8mb4'), ('database', 'legacy'), ('host', '127.0.0.1'), ('password', ''),
     ('port', 3306), ('user', 'root')]
    """
    parts = urlsplit(url)
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ConfigError("legacy database URL: a MariaDB/MySQL URL needs a database name")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": database,
        "charset": query.get("charset", "utf8mb4"),
    }


def _batches(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def write_mysql(url: str, legacy: Legacy) -> None:
    """Drop and create the tables, then ``executemany`` in batches (pymysql folds them into
    multi-row INSERTs); one commit at the end."""
    import pymysql

    params = mysql_params(url)
    try:
        conn = pymysql.connect(autocommit=False, **params)
    except pymysql.err.OperationalError as exc:
        if exc.args and exc.args[0] == UNKNOWN_DATABASE:
            raise ConfigError(
                f"legacy database: the MariaDB server at {params['host']}:{params['port']} has no database "
                f"{params['database']!r}; create it first (CREATE DATABASE `{params['database']}`)"
            ) from exc
        raise TransientError(f"legacy database: cannot connect to MariaDB ({type(exc).__name__})") from exc
    try:
        with conn.cursor() as cur:
            for statement in drop_ddl("mysql") + ddl("mysql"):
                cur.execute(statement)
            for table in LEGACY_TABLES:
                sql = _insert_sql("mysql", table)
                for batch in _batches(_server_rows(legacy, table, "mysql"), MYSQL_BATCH_ROWS):
                    cur.executemany(sql, batch)
        conn.commit()
    finally:
        conn.close()


def write(url: str, legacy: Legacy) -> None:
    """Write ``legacy`` to the database ``url`` names, replacing the legacy tables there."""
    dialect = dialect_of(url)
    if dialect == "sqlite":
        write_sqlite(sqlite_path(url), legacy)
    elif dialect == "postgresql":
        write_postgresql(url, legacy)
    else:
        write_mysql(url, legacy)
