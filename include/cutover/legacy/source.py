"""Read the legacy database in bounded Arrow batches: SQLite, PostgreSQL or MariaDB/MySQL.

Legacy systems are loosely typed: ids are read as int64, everything else as text, except
binary attachments. Text that is not valid UTF-8 (Latin-1 bytes in SQLite) is decoded as
cp1252 here, so Arrow can carry it; cleaning is the mapping stage's job.

A table whose key column is typed ``text`` in its profile (``A-000123``) is keyed by text: the key
is read as text, trimmed, and never parsed as a number; an empty key is a missing one, which the
mapping rejects ``id_invalid`` as it does a blank integer id (:func:`text_key`).
"""

from __future__ import annotations

import contextlib
import math
import re
import sqlite3
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    """The file a ``sqlite:///`` URL names.

    >>> sqlite_path("sqlite:////tmp/legacy.db")
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


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INVALID_IDS = "_invalid_ids"
"""The extract's sidecar column: per row, the id columns (comma-joined) whose legacy value was not
a whole number within int64 (fractional, beyond int64, text). Such a value is never truncated nor
guessed: it is read as NULL and named here, and the mapping rejects the row (``id_invalid``)."""
MALFORMED = "_csv_malformed"
"""The extract's sidecar column of a table read from a CSV delivery (:mod:`cutover.legacy.delivery`):
for a line that could not be read as a row, its file, line and what was wrong (never a value); the
row's other columns are NULL and the mapping rejects it ``csv_malformed``. NULL for a good row."""
_WHOLE = re.compile(r"^\s*[+-]?\d+\s*$")


def as_int(value: Any) -> tuple[int | None, bool]:
    """A legacy id as an int64 and whether it was valid; blank text is a missing id, not an invalid one.

    >>> [as_int(v) for v in (7, 7.0, 2431.5, 1e20, " 42 ", "", "12abc", 2**63, None)]
    [(7, True), (7, True), (None, False), (None, False), (42, True), (None, True), (None, False), (None, False), (None, True)]
    """
    if value is None:
        return None, True
    if isinstance(value, bytes | bytearray | memoryview):
        value = _decode(bytes(value))
    if isinstance(value, bool):
        return None, False
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None, False
        value = int(value)
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            return None, False
        value = int(value)
    elif isinstance(value, str):
        if not value.strip():
            return None, True
        if not _WHOLE.match(value):
            return None, False
        value = int(value)
    if not isinstance(value, int):
        return None, False
    return (value, True) if INT64_MIN <= value <= INT64_MAX else (None, False)


def _kinds(values: Sequence[Any]) -> set[type]:
    """The Python types of a column's non-null values (one C-level pass, no per-value Python)."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    return kinds


def utf8_text(raw: pa.Array) -> pa.Array:
    """Binary text as an Arrow string array: UTF-8 where it is valid, else decoded as cp1252.

    The same result as :func:`_decode` per value, at Arrow speed: valid UTF-8 (nearly every value)
    is cast without a copy; only the values holding a byte above 0x7F in a column that fails the
    UTF-8 check are decoded one by one.

    >>> utf8_text(pa.array([b"caf\\xc3\\xa9", b"caf\\xe9", None])).to_pylist()
    ['café', 'café', None]
    """
    try:
        return raw.cast(pa.string())
    except pa.ArrowInvalid:
        pass
    offsets = np.frombuffer(raw.buffers()[1], dtype=np.int32)[raw.offset : raw.offset + len(raw) + 1]
    data = np.frombuffer(raw.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    high = np.flatnonzero(data >= 0x80) + offsets[0]
    rows = np.unique(np.searchsorted(offsets, high, side="right") - 1)
    texts = [_decode(v) for v in raw.take(pa.array(rows)).to_pylist()]
    mask = np.zeros(len(raw), dtype=bool)
    mask[rows] = True
    fixed = pc.replace_with_mask(raw, pa.array(mask), pa.array([t.encode() for t in texts], pa.binary()))
    return fixed.cast(pa.string())


def _blob(value: Any) -> bytes | None:
    if value is None:
        return None
    return (
        value.encode()
        if isinstance(value, str)
        else str(value).encode()
        if isinstance(value, int | float)
        else bytes(value)
    )


def _ids(values: Sequence[Any]) -> tuple[pa.Array, np.ndarray | None]:
    """An id column as int64, and a mask of the values that were not valid ids (None when all were)."""
    if _kinds(values) <= {int}:
        with contextlib.suppress(OverflowError, pa.ArrowInvalid):
            return pa.array(values, type=pa.int64()), None  # the usual case: one C-level pass
    checked = [as_int(v) for v in values]
    invalid = np.fromiter((not ok for _, ok in checked), dtype=bool, count=len(checked))
    return pa.array([v for v, _ in checked], type=pa.int64()), invalid if invalid.any() else None


def _column(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    kinds = _kinds(values)
    if pa.types.is_string(kind):
        if kinds <= {bytes}:  # SQLite text, read as bytes: decoded here, column-wise
            return utf8_text(pa.array(values, pa.binary()))
        if not kinds <= {str}:
            values = list(map(_as_text, values))
    elif pa.types.is_binary(kind) and not kinds <= {bytes}:
        values = list(map(_blob, values))
    return pa.array(values, type=kind)


def to_batch(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    """Column-wise conversion of DB-API rows into one Arrow batch of ``schema``.

    Text may arrive as ``str`` or as UTF-8/cp1252 ``bytes`` (SQLite); ids as ``int``, ``float``,
    ``Decimal`` or text: an id that is not a whole number within int64 is read as NULL, never
    truncated, and when ``schema`` ends with the :data:`INVALID_IDS` column (:func:`extract_schema`)
    that column names it. No value of any type raises here.

    >>> schema = extract_schema([("visit_id", "int"), ("case_id", "int"), ("note", "text")])
    >>> to_batch([(1, 2431.5, "a"), (2, 7, None), (3, 1e20, b"x")], schema).to_pydict()
    {'visit_id': [1, 2, 3], 'case_id': [None, 7, None], 'note': ['a', None, 'x'], '_invalid_ids': ['case_id', None, 'case_id']}
    """
    sidecar = schema.names[-1:] == [INVALID_IDS]
    fields = list(schema)[:-1] if sidecar else list(schema)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    arrays: list[pa.Array] = []
    invalid: list[tuple[str, np.ndarray]] = []
    for values, field in zip(columns, fields, strict=True):
        if pa.types.is_integer(field.type):
            array, bad = _ids(values)
            if bad is not None:
                invalid.append((field.name, bad))
            arrays.append(array)
        else:
            arrays.append(_column(values, field.type))
    if sidecar:
        named: list[str | None] = [None] * len(rows)
        for name, bad in invalid:
            for row in np.flatnonzero(bad).tolist():
                named[row] = name if named[row] is None else f"{named[row]},{name}"
        arrays.append(pa.array(named, type=pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def text_key(batch: pa.RecordBatch, key: str) -> pa.RecordBatch:
    """``batch`` with its ``key`` column trimmed and an empty key NULL, where the key is text.

    A text key is an id as the legacy system wrote it: surrounding blanks are not part of it (a
    child's reference to it is compared trimmed too, :func:`read_where`), and a key of blanks is
    no key. An integer key is left as :func:`to_batch` read it.

    >>> schema = arrow_schema([("appt_ref", "text"), ("note", "text")])
    >>> text_key(to_batch([(" A-000007 ", " x "), ("  ", "y"), (None, "z")], schema), "appt_ref").to_pydict()
    {'appt_ref': ['A-000007', None, None], 'note': [' x ', 'y', 'z']}
    """
    at = batch.schema.get_field_index(key)
    if at < 0 or not pa.types.is_string(batch.schema.field(at).type):
        return batch
    trimmed = pc.utf8_trim_whitespace(batch.column(at))
    keyed = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    return batch.set_column(at, batch.schema.field(at), keyed)


def flagged(values: pa.Array, code: str) -> pa.Array:
    """True where an export-flag column holds ``code`` (read as trimmed text), False elsewhere.

    >>> flagged(pa.array([3, 1, None]), "3").to_pylist()
    [True, False, False]
    """
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(pc.cast(values, pa.string())), code), False)


def arrow_schema(columns: Sequence[tuple[str, str]]) -> pa.Schema:
    return pa.schema([pa.field(name, ARROW_TYPES[kind]) for name, kind in columns])


def extract_schema(columns: Sequence[tuple[str, str]], *, malformed: bool = False) -> pa.Schema:
    """The extract's schema: the legacy columns, the :data:`MALFORMED` sidecar for a table read from
    a CSV delivery, and the :data:`INVALID_IDS` sidecar (last)."""
    schema = arrow_schema([*columns, *([(MALFORMED, "text")] if malformed else [])])
    return schema.append(pa.field(INVALID_IDS, pa.string()))


@contextlib.contextmanager
def connect(url: str, *, read_only: bool = True) -> Iterator[Any]:
    """A DB-API connection to the legacy database (read-only where the driver allows)."""
    dialect = dialect_of(url)
    try:
        if dialect == "sqlite":
            path = sqlite_path(url)
            conn: Any = sqlite3.connect(f"file:{path}?mode={'ro' if read_only else 'rw'}", uri=True)
            # text as bytes: decoding it per value in a Python callback was most of the extract's
            # time; to_batch decodes whole columns (utf8_text)
            conn.text_factory = bytes
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


def _select(
    dialect: Dialect, table: str, columns: Sequence[tuple[str, str]], key: str, where: str = ""
) -> str:
    """``SELECT`` of ``columns`` of a legacy table in key order, ``where`` a filter (placeholders only).

    >>> _select("mysql", "visits", [("visit_id", "int")], "visit_id", "`pat_id` IN (%s)")
    'SELECT `visit_id` FROM `visits` WHERE `pat_id` IN (%s) ORDER BY `visit_id`'
    """
    cols = ", ".join(_quote(dialect, name) for name, _ in columns)
    filtered = f" WHERE {where}" if where else ""
    return f"SELECT {cols} FROM {_quote(dialect, table)}{filtered} ORDER BY {_quote(dialect, key)}"


BATCH_ROWS = 10_000
"""Rows fetched at a time. Fetched rows are Python objects, several times their Arrow size: at
50,000 rows the fetch buffer, not the staged part, set the extract's peak (visits at 20k
patients: 309 MB peak RSS at 50,000, 250 MB at 10,000; no slower)."""
BLOB_BATCH_ROWS = 1_000
"""Rows per batch of a table with binary attachments: a batch is bounded in bytes, not just rows."""


def read_batches(
    url: str,
    table: str,
    columns: Sequence[tuple[str, str]],
    key: str,
    *,
    batch_rows: int = BATCH_ROWS,
    invalid_ids: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Stream a legacy table ordered by its key, ``batch_rows`` rows at a time (fewer for attachments).

    With ``invalid_ids`` each batch ends with the :data:`INVALID_IDS` column (:func:`extract_schema`).
    The cursor and the connection are closed on every exit path, a consumer that stops early or
    fails included, so nothing the read opened outlives it.
    """
    if any(kind == "blob" for _, kind in columns):
        batch_rows = min(batch_rows, BLOB_BATCH_ROWS)
    dialect = dialect_of(url)
    schema = extract_schema(columns) if invalid_ids else arrow_schema(columns)
    sql = _select(dialect, table, columns, key)
    with connect(url) as conn:
        if dialect == "postgresql":
            cur = conn.cursor(name=f"extract_{table}")  # server-side: memory stays bounded
            cur.itersize = batch_rows
        else:
            cur = conn.cursor()
        with contextlib.closing(cur):
            cur.execute(sql)
            while rows := cur.fetchmany(batch_rows):
                yield text_key(to_batch(rows, schema), key)


def read_where(
    url: str,
    table: str,
    columns: Sequence[tuple[str, str]],
    key: str,
    column: str,
    ids: Sequence[int | str],
    *,
    chunk: int = 500,
) -> Iterator[pa.RecordBatch]:
    """The rows of a legacy table whose ``column`` is one of ``ids`` (with the :data:`INVALID_IDS`
    sidecar), ``chunk`` ids a query: a few rows read again, as the extract read them.

    A ``column`` typed ``text`` (a text key, or a reference to a text-keyed table) is compared
    trimmed, as :func:`text_key` reads a text key; any other column as an integer id.
    """
    dialect = dialect_of(url)
    schema = extract_schema(columns)
    mark = "?" if dialect == "sqlite" else "%s"
    text = dict(columns).get(column) == "text"
    compared = f"TRIM({_quote(dialect, column)})" if text else _quote(dialect, column)
    with connect(url) as conn:
        cur = conn.cursor()
        with contextlib.closing(cur):
            for start in range(0, len(ids), chunk):
                part: list[Any] = [str(i).strip() if text else int(i) for i in ids[start : start + chunk]]
                where = f"{compared} IN ({', '.join([mark] * len(part))})"
                cur.execute(_select(dialect, table, columns, key, where), part)
                if rows := cur.fetchall():
                    yield text_key(to_batch(rows, schema), key)


def count_rows(url: str, table: str) -> int:
    dialect = dialect_of(url)
    with connect(url) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {_quote(dialect, table)}")
        (count,) = cur.fetchone()
        cur.close()
    return int(count)
