"""Binary COPY of an Arrow table into PostgreSQL, encoded column by column with Arrow and numpy.

Feeding psycopg one Python tuple per row costs a Python object per value and caps the load well
below what the server can take. Instead each column of a slice of rows becomes one or two Arrow
binary arrays holding, per row, that field's bytes in PostgreSQL's binary COPY layout (int32 length
or -1 for NULL, then the big-endian value); ``binary_join_element_wise`` then concatenates them row
by row in C++, so a row never exists as a Python object. Slices are sized to about
:data:`WRITE_BYTES` of encoded bytes, so memory does not grow with the table.

The layout (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4): an 11-byte
signature, int32 flags and int32 header-extension length, then per row an int16 field count and
the fields, then an int16 -1 trailer. Values use each type's ``*send``/``*recv`` format: dates are
days and timestamps microseconds since 2000-01-01, arrays carry dimensions and the element OID.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from cutover.errors import TerminalError

log = logging.getLogger(__name__)

STAGE_TYPES: dict[str, str] = {"numeric": "float8"}
"""Staging column types where the Arrow value does not dump to the target type in binary."""

CHUNK_ROWS = 20_000
"""Rows per chunk on the per-row fallback path."""

WRITE_BYTES = 8 << 20
"""Encoded bytes per slice of rows (approximate: sized from the Arrow buffers) and at most per ``copy.write``."""

PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
PGCOPY_TRAILER = b"\xff\xff"

_PG_EPOCH_DAYS = 10_957  # 2000-01-01 - 1970-01-01 in days
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000
_TEXT_OID = 25

_ALIASES: dict[str, str] = {
    "varchar": "text",
    "character varying": "text",
    "bpchar": "text",
    "int2": "smallint",
    "int4": "integer",
    "int": "integer",
    "int8": "bigint",
    "double precision": "float8",
    "float4": "real",
    "bool": "boolean",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "_text": "text[]",
}

_logged_fallbacks: set[str] = set()

Encoder = Callable[[pa.Array], list[pa.Array]]
"""A column of one slice → the binary pieces that, concatenated per row, are that field's bytes."""


def stage_type(pg_type: str) -> str:
    return STAGE_TYPES.get(pg_type, pg_type)


# --- building blocks -------------------------------------------------------------------------


def _binary(data: npt.NDArray[Any], offsets: npt.NDArray[np.int32]) -> pa.Array:
    """A binary array over a contiguous byte buffer and its int32 offsets (both handed over, not copied)."""
    return pa.Array.from_buffers(
        pa.binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _offsets(sizes: npt.NDArray[Any]) -> npt.NDArray[np.int32]:
    out = np.zeros(len(sizes) + 1, dtype=np.int32)
    np.cumsum(sizes, out=out[1:])
    return out


def _ragged(matrix: npt.NDArray[np.uint8], sizes: npt.NDArray[Any]) -> pa.Array:
    """Row ``i`` of the binary array is the first ``sizes[i]`` bytes of ``matrix[i]``."""
    width = matrix.shape[1]
    if bool((sizes == width).all()):
        return _binary(matrix.reshape(-1), np.arange(len(matrix) + 1, dtype=np.int32) * width)
    keep = np.arange(width) < sizes[:, None]
    return _binary(matrix[keep], _offsets(sizes))


def _valid(arr: pa.Array) -> npt.NDArray[np.bool_] | None:
    """Validity as numpy, or None when the column has no NULL (the common, fast case)."""
    if arr.null_count == 0:
        return None
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)


def _raw(arr: pa.Array, dtype: str) -> npt.NDArray[Any]:
    """The values buffer of a primitive array as numpy, zero-copy (slots under NULLs are arbitrary)."""
    np_type = np.dtype(dtype)
    return np.frombuffer(
        arr.buffers()[1], dtype=np_type, count=len(arr), offset=arr.offset * np_type.itemsize
    )


def _fixed(values: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None) -> pa.Array:
    """Fields of a fixed-width type: ``values`` already in network byte order, one row each."""
    n = len(values)
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(n, -1)
    width = raw.shape[1]
    matrix = np.empty((n, 4 + width), dtype=np.uint8)
    matrix[:, :4] = np.array([width], dtype=">i4").view(np.uint8)
    matrix[:, 4:] = raw
    if valid is None:
        return _ragged(matrix, np.full(n, 4 + width, dtype=np.int32))
    matrix[~valid, :4] = 0xFF
    return _ragged(matrix, np.where(valid, 4 + width, 4).astype(np.int32))


def _lengths(arr: pa.Array) -> npt.NDArray[np.int32]:
    """Byte length of each value of a binary array (from its offsets), -1 where NULL."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    lengths = np.diff(offsets)
    valid = _valid(arr)
    return lengths if valid is None else np.where(valid, lengths, -1).astype(np.int32)


def _int32_fields(values: npt.NDArray[np.int32]) -> pa.Array:
    """A 4-byte piece per row: the int32 in network byte order (a length prefix)."""
    be = values.astype(">i4")
    return _binary(be.view(np.uint8), np.arange(len(values) + 1, dtype=np.int32) * 4)


def _as_binary(arr: pa.Array) -> pa.Array:
    """Strings and binaries as a ``binary`` array (int32 offsets): a view for string, a cast for large."""
    if pa.types.is_binary(arr.type):
        return arr
    return pc.cast(arr, pa.binary())


def _checked(values: npt.NDArray[np.int64], valid: npt.NDArray[np.bool_] | None, low: int, high: int) -> None:
    """Refuse values the PostgreSQL encoding cannot hold instead of letting them wrap around."""
    if len(values) == 0 or (values.min() >= low and values.max() <= high):
        return
    held = values if valid is None else values[valid]
    bad = int(((held < low) | (held > high)).sum())
    if bad:
        raise TerminalError(f"binary COPY: {bad} date/time values outside the PostgreSQL range")


# --- one encoder per PostgreSQL type ---------------------------------------------------------


def _encode_int(dtype: str, arrow_type: pa.DataType) -> Encoder:
    def encode(arr: pa.Array) -> list[pa.Array]:
        if arr.type != arrow_type:
            arr = pc.cast(arr, arrow_type)  # safe cast: an int64 that does not fit int32 raises
        return [_fixed(_raw(arr, dtype).astype(">" + dtype), _valid(arr))]

    return encode


def _encode_float(arr: pa.Array) -> list[pa.Array]:
    if arr.type != pa.float64():
        arr = pc.cast(arr, pa.float64())
    return [_fixed(_raw(arr, "f8").astype(">f8"), _valid(arr))]


def _encode_real(arr: pa.Array) -> list[pa.Array]:
    if arr.type != pa.float32():
        arr = pc.cast(arr, pa.float32())
    return [_fixed(_raw(arr, "f4").astype(">f4"), _valid(arr))]


def _encode_bool(arr: pa.Array) -> list[pa.Array]:
    values = np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=np.bool_)
    return [_fixed(values.view(np.uint8), _valid(arr))]


def _encode_date(arr: pa.Array) -> list[pa.Array]:
    if arr.type != pa.date32():
        arr = pc.cast(arr, pa.date32())
    valid = _valid(arr)
    days = _raw(arr, "i4").astype(np.int64) - _PG_EPOCH_DAYS
    _checked(days, valid, -(2**31), 2**31 - 1)
    return [_fixed(days.astype(">i4"), valid)]


def _encode_timestamp(arr: pa.Array) -> list[pa.Array]:
    unit_type = pa.timestamp("us", arr.type.tz)
    if arr.type != unit_type:
        arr = pc.cast(arr, unit_type)
    valid = _valid(arr)
    micros = _raw(arr, "i8")
    _checked(micros, valid, -(2**63) + _PG_EPOCH_US, 2**63 - 1)
    return [_fixed((micros - _PG_EPOCH_US).astype(">i8"), valid)]


def _encode_uuid(arr: pa.Array) -> list[pa.Array]:
    data = np.frombuffer(arr.buffers()[1], dtype=np.uint8, count=len(arr) * 16, offset=arr.offset * 16)
    return [_fixed(data.reshape(-1, 16), _valid(arr))]


def _encode_bytes(arr: pa.Array) -> list[pa.Array]:
    """Text (UTF-8, the database encoding) and bytea: the value's bytes as they are."""
    arr = _as_binary(arr)
    return [_int32_fields(_lengths(arr)), arr]


def _encode_text_array(arr: pa.Array) -> list[pa.Array]:
    """One-dimensional text[]: header (ndim, has-null, element OID, length, lower bound 1), then elements.

    An empty list is a zero-dimension array (its header stops after the element OID), as
    PostgreSQL itself sends it.
    """
    elements = _as_binary(arr.flatten())  # only the elements of this slice's non-NULL lists
    counts = np.asarray(pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False), np.int64)
    bounds = _offsets(counts)
    element_lengths = _lengths(elements)
    # bytes per list: a 4-byte length per element plus the bytes of the non-NULL ones
    payload_per_list = _segment_sums(4 + np.maximum(element_lengths, 0).astype(np.int64), bounds)
    nulls_per_list = _segment_sums((element_lengths < 0).astype(np.int64), bounds)
    header = np.where(counts > 0, 20, 12)
    valid = _valid(arr)
    fields = np.zeros((len(arr), 6), dtype=">i4")
    fields[:, 0] = header + payload_per_list
    fields[:, 1] = (counts > 0).astype(np.int32)
    fields[:, 2] = (nulls_per_list > 0).astype(np.int32)
    fields[:, 3] = _TEXT_OID
    fields[:, 4] = counts
    fields[:, 5] = 1
    sizes = 4 + header
    if valid is not None:
        fields[~valid, 0] = -1
        sizes = np.where(valid, sizes, 4)
    encoded = pc.binary_join_element_wise(
        _int32_fields(element_lengths), elements, b"", null_handling="replace", null_replacement=""
    )
    lists = pa.ListArray.from_arrays(
        pa.array(bounds), encoded, mask=None if valid is None else pa.array(~valid)
    )
    return [_ragged(fields.view(np.uint8).reshape(len(arr), 24), sizes), pc.binary_join(lists, b"")]


def _segment_sums(values: npt.NDArray[np.int64], bounds: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    """Sum of ``values`` over each segment ``bounds[i]:bounds[i+1]`` (empty segments sum to 0)."""
    cumulative = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    return cumulative[bounds[1:]] - cumulative[bounds[:-1]]


def _is_text_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_text(t.value_type)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_bytes(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _decoded(encoder: Encoder) -> Encoder:
    """Dictionary-encoded columns (as pandas categoricals become) are encoded by their values."""
    return lambda arr: encoder(arr.dictionary_decode())


def _encoder(pg_type: str, arrow_type: pa.DataType) -> Encoder | None:
    """The encoder for this (staging type, Arrow type) pair, or None when there is none."""
    if pa.types.is_dictionary(arrow_type):
        inner = _encoder(pg_type, arrow_type.value_type)
        return None if inner is None else _decoded(inner)
    kind = _ALIASES.get(pg_type.strip().lower(), pg_type.strip().lower())
    ints = {"smallint": ("i2", pa.int16()), "integer": ("i4", pa.int32()), "bigint": ("i8", pa.int64())}
    if kind in ints and pa.types.is_integer(arrow_type):
        return _encode_int(*ints[kind])
    checks: dict[str, tuple[Callable[[pa.DataType], bool], Encoder]] = {
        "text": (_is_text, _encode_bytes),
        "bytea": (_is_bytes, _encode_bytes),
        "float8": (pa.types.is_floating, _encode_float),
        "real": (pa.types.is_floating, _encode_real),
        "boolean": (pa.types.is_boolean, _encode_bool),
        "date": (pa.types.is_date, _encode_date),
        "timestamp": (lambda t: pa.types.is_timestamp(t) and t.tz is None, _encode_timestamp),
        "timestamptz": (lambda t: pa.types.is_timestamp(t) and t.tz is not None, _encode_timestamp),
        "uuid": (lambda t: pa.types.is_fixed_size_binary(t) and t.byte_width == 16, _encode_uuid),
        "text[]": (_is_text_list, _encode_text_array),
    }
    if kind not in checks:
        return None
    accepts, encoder = checks[kind]
    return encoder if accepts(arrow_type) else None


# --- the stream ------------------------------------------------------------------------------


def encode_rows(batch: pa.RecordBatch, encoders: Sequence[Encoder]) -> pa.Buffer:
    """The binary COPY rows (no header, no trailer) of ``batch``, one contiguous buffer."""
    n = batch.num_rows
    if n == 0:
        return pa.py_buffer(b"")
    count = np.full(n, batch.num_columns, dtype=">i2").view(np.uint8)
    pieces = [_binary(count, np.arange(n + 1, dtype=np.int32) * 2)]
    for column, encode in zip(batch.columns, encoders, strict=True):
        pieces += encode(column)
    rows = pc.binary_join_element_wise(*pieces, b"", null_handling="replace", null_replacement="")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=n + 1, offset=rows.offset * 4)
    return rows.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def encoders_for(schema: pa.Schema, pg_types: Sequence[str]) -> list[Encoder] | None:
    """One encoder per column, or None when some column has none (logged once per type pair)."""
    if len(schema) != len(pg_types):
        raise TerminalError(f"binary COPY: {len(schema)} columns but {len(pg_types)} PostgreSQL types")
    encoders: list[Encoder] = []
    for field, pg_type in zip(schema, pg_types, strict=True):
        encoder = _encoder(stage_type(pg_type), field.type)
        if encoder is None:
            key = f"{pg_type}<-{field.type}"
            if key not in _logged_fallbacks:
                _logged_fallbacks.add(key)
                log.warning("binary COPY: no vectorised encoder for %s, copying row by row", key)
            return None
        encoders.append(encoder)
    return encoders


def _slices(data: pa.Table | pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """Slices of about WRITE_BYTES encoded bytes: rows per slice from the Arrow bytes per row."""
    batches = data.to_batches() if isinstance(data, pa.Table) else [data]
    fields = len(data.schema)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        per_row = batch.nbytes / batch.num_rows + 2 + 4 * fields
        step = max(1, int(WRITE_BYTES // per_row))
        for start in range(0, batch.num_rows, step):
            yield batch.slice(start, step)


def copy_stream(data: pa.Table | pa.RecordBatch, encoders: Sequence[Encoder]) -> Iterator[memoryview]:
    """The whole binary COPY stream of ``data`` (header, rows, trailer) in pieces of ≤ WRITE_BYTES."""
    yield memoryview(PGCOPY_HEADER)
    for part in _slices(data):
        rows = memoryview(encode_rows(part, encoders))
        for start in range(0, len(rows), WRITE_BYTES):
            yield rows[start : start + WRITE_BYTES]
    yield memoryview(PGCOPY_TRAILER)


def encode_copy(data: pa.Table | pa.RecordBatch, pg_types: Sequence[str]) -> bytes:
    r"""The complete binary COPY payload of ``data`` as bytes (for files and tests; loads stream instead).

    >>> encode_copy(pa.table({"n": pa.array([1], pa.int16())}), ["smallint"])[19:]  # after the header
    b'\x00\x01\x00\x00\x00\x02\x00\x01\xff\xff'
    """
    encoders = encoders_for(data.schema, pg_types)
    if encoders is None:
        raise TerminalError("binary COPY: some column type has no vectorised encoder")
    return b"".join(bytes(piece) for piece in copy_stream(data, encoders))


def _copy_statement(table: str, names: Sequence[str]) -> sql.Composed:
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in names)
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), columns)


def _copy_rows(cur: Any, table: str, data: pa.Table, pg_types: Sequence[str]) -> None:
    """Per-row path through psycopg's dumpers, for a column type the encoder does not know."""
    with cur.copy(_copy_statement(table, data.column_names)) as copy:
        copy.set_types([stage_type(t) for t in pg_types])
        for batch in data.to_batches(max_chunksize=CHUNK_ROWS):
            for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                copy.write_row(row)


def copy_arrow(cur: Any, table: str, data: pa.Table, pg_types: Sequence[str]) -> int:
    """COPY ``data`` into ``table`` (columns named as the Arrow fields) in binary format.

    ``pg_types`` are the target columns' types (``numeric`` is staged as ``float8``, see
    :func:`stage_type`). Encoded bytes exist for one slice at a time, so memory stays bounded.
    """
    encoders = encoders_for(data.schema, pg_types)
    if encoders is None:
        _copy_rows(cur, table, data, pg_types)
        return data.num_rows
    with cur.copy(_copy_statement(table, data.column_names)) as copy:
        for piece in copy_stream(data, encoders):
            copy.write(piece)
    return data.num_rows
