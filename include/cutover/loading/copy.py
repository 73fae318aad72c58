"""Binary COPY of an Arrow table into PostgreSQL, encoded column by column with Arrow and numpy.

Feeding psycopg one Python tuple per row costs a Python object per value and caps the load well
below what the server can take. Instead each column of a slice of rows becomes parts holding, per
row, that field's bytes in PostgreSQL's binary COPY layout (int32 length or -1 for NULL, then the
big-endian value): numpy matrices for what has the same width in every row, Arrow binary arrays for
what varies. Adjacent matrices are laid side by side (fixed-width columns are sent first, so they
and the field count form one block), and ``binary_join_element_wise`` concatenates the pieces row
by row in C++: no row ever exists as a Python object. Slices are sized to about
:data:`WRITE_BYTES` of encoded bytes and encoded by a worker thread a couple of slices ahead of
the connection, so encoding overlaps sending and memory does not grow with the table.

The layout (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4): an 11-byte
signature, int32 flags and int32 header-extension length, then per row an int16 field count and
the fields, then an int16 -1 trailer. Values use each type's ``*send``/``*recv`` format: dates are
days and timestamps microseconds since 2000-01-01, arrays carry dimensions and the element OID.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from queue import Empty, Full, Queue
from typing import Any, TypeAlias

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

AHEAD = 2
"""Encoded pieces queued ahead of the connection (each ≤ WRITE_BYTES): encode and send overlap."""

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


@dataclass(frozen=True)
class Fixed:
    """The same number of bytes in every row of a slice: row ``i`` is ``matrix[i]``.

    Adjacent fixed parts of a row (the field count, integers, dates, the length prefix of a
    nullable or text field…) are laid side by side into one block, so the row join handles one
    piece for all of them instead of one per field. What varies per row (a text value, the value
    of a nullable field, empty under NULL) is a binary array instead.
    """

    matrix: npt.NDArray[np.uint8]


Part: TypeAlias = Fixed | pa.Array
"""A piece of every row of a slice: a :class:`Fixed` block or a binary array (NULL reads as empty)."""


@dataclass(frozen=True)
class ColumnEncoder:
    """A column of one slice → the parts that, concatenated per row, are that field's bytes."""

    encode: Callable[[pa.Array], list[Part]]
    variable: bool
    """Whether the parts include a binary array; fixed-only columns are sent first so they form one block."""


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


def _block(parts: list[Fixed]) -> pa.Array:
    """Adjacent fixed parts side by side as one binary array (one value a row)."""
    matrix = parts[0].matrix if len(parts) == 1 else np.hstack([p.matrix for p in parts])
    n, width = matrix.shape
    return _binary(np.ascontiguousarray(matrix).reshape(-1), np.arange(n + 1, dtype=np.int32) * width)


def _ragged(matrix: npt.NDArray[np.uint8], sizes: npt.NDArray[Any]) -> pa.Array:
    """Row ``i`` of the binary array is the first ``sizes[i]`` bytes of ``matrix[i]``."""
    keep = np.arange(matrix.shape[1]) < sizes[:, None]
    return _binary(matrix[keep], _offsets(sizes))


def _pieces(parts: Iterable[Part]) -> list[pa.Array]:
    """Parts to join: each run of adjacent fixed parts becomes one block."""
    pieces: list[pa.Array] = []
    run: list[Fixed] = []
    for part in parts:
        if isinstance(part, Fixed):
            run.append(part)
            continue
        if run:
            pieces.append(_block(run))
            run = []
        pieces.append(part)
    if run:
        pieces.append(_block(run))
    return pieces


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


def _fixed(values: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None) -> list[Part]:
    """Fields of a fixed-width type: ``values`` already in network byte order, one row each.

    Without NULLs, length and value are one fixed part. With NULLs, the length (-1 under NULL)
    stays fixed and the values become a binary array that is NULL, so joined as empty, there.
    """
    n = len(values)
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(n, -1)
    width = raw.shape[1]
    if valid is None:  # the block copies both once; the constant length is not even materialised
        return [Fixed(np.broadcast_to(np.array([width], dtype=">i4").view(np.uint8), (n, 4))), Fixed(raw)]
    lengths = _int32_fields(np.where(valid, width, -1).astype(np.int32))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int32) * width)
    return [lengths, pa.Array.from_buffers(pa.binary(), n, [bitmap, offsets, pa.py_buffer(raw)])]


def _lengths(arr: pa.Array) -> npt.NDArray[np.int32]:
    """Byte length of each value of a binary array (from its offsets), -1 where NULL."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    lengths = np.diff(offsets)
    valid = _valid(arr)
    return lengths if valid is None else np.where(valid, lengths, -1).astype(np.int32)


def _int32_fields(values: npt.NDArray[np.int32]) -> Fixed:
    """A 4-byte part per row: the int32 in network byte order (a length prefix)."""
    return Fixed(values.astype(">i4").view(np.uint8).reshape(len(values), 4))


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


def _encode_int(dtype: str, arrow_type: pa.DataType) -> Callable[[pa.Array], list[Part]]:
    def encode(arr: pa.Array) -> list[Part]:
        if arr.type != arrow_type:
            arr = pc.cast(arr, arrow_type)  # safe cast: an int64 that does not fit int32 raises
        return _fixed(_raw(arr, dtype).astype(">" + dtype), _valid(arr))

    return encode


def _encode_float(arr: pa.Array) -> list[Part]:
    if arr.type != pa.float64():
        arr = pc.cast(arr, pa.float64())
    return _fixed(_raw(arr, "f8").astype(">f8"), _valid(arr))


def _encode_real(arr: pa.Array) -> list[Part]:
    if arr.type != pa.float32():
        arr = pc.cast(arr, pa.float32())
    return _fixed(_raw(arr, "f4").astype(">f4"), _valid(arr))


def _encode_bool(arr: pa.Array) -> list[Part]:
    values = np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=np.bool_)
    return _fixed(values.view(np.uint8), _valid(arr))


def _encode_date(arr: pa.Array) -> list[Part]:
    if arr.type != pa.date32():
        arr = pc.cast(arr, pa.date32())
    valid = _valid(arr)
    days = _raw(arr, "i4").astype(np.int64) - _PG_EPOCH_DAYS
    _checked(days, valid, -(2**31), 2**31 - 1)
    return _fixed(days.astype(">i4"), valid)


def _encode_timestamp(arr: pa.Array) -> list[Part]:
    unit_type = pa.timestamp("us", arr.type.tz)
    if arr.type != unit_type:  # nanoseconds are truncated, as psycopg's dumper of a datetime does
        arr = pc.cast(arr, options=pc.CastOptions(unit_type, allow_time_truncate=True))
    valid = _valid(arr)
    micros = _raw(arr, "i8")
    _checked(micros, valid, -(2**63) + _PG_EPOCH_US, 2**63 - 1)
    return _fixed((micros - _PG_EPOCH_US).astype(">i8"), valid)


def _encode_uuid(arr: pa.Array) -> list[Part]:
    data = np.frombuffer(arr.buffers()[1], dtype=np.uint8, count=len(arr) * 16, offset=arr.offset * 16)
    return _fixed(data.reshape(-1, 16), _valid(arr))


def _encode_bytes(arr: pa.Array) -> list[Part]:
    """Text (UTF-8, the database encoding) and bytea: the value's bytes as they are."""
    arr = _as_binary(arr)
    return [_int32_fields(_lengths(arr)), arr]


def _encode_text_array(arr: pa.Array) -> list[Part]:
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
        *_pieces([_int32_fields(element_lengths), elements]),
        b"",
        null_handling="replace",
        null_replacement="",
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


def _decoded(encoder: ColumnEncoder) -> ColumnEncoder:
    """Dictionary-encoded columns (as pandas categoricals become) are encoded by their values."""
    return ColumnEncoder(lambda arr: encoder.encode(arr.dictionary_decode()), encoder.variable)


def _is_naive_timestamp(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) and t.tz is None


def _is_aware_timestamp(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) and t.tz is not None


def _is_uuid_bytes(t: pa.DataType) -> bool:
    return pa.types.is_fixed_size_binary(t) and t.byte_width == 16


_ENCODERS: dict[str, tuple[Callable[[pa.DataType], bool], ColumnEncoder]] = {
    "text": (_is_text, ColumnEncoder(_encode_bytes, variable=True)),
    "bytea": (_is_bytes, ColumnEncoder(_encode_bytes, variable=True)),
    "text[]": (_is_text_list, ColumnEncoder(_encode_text_array, variable=True)),
    "smallint": (pa.types.is_integer, ColumnEncoder(_encode_int("i2", pa.int16()), variable=False)),
    "integer": (pa.types.is_integer, ColumnEncoder(_encode_int("i4", pa.int32()), variable=False)),
    "bigint": (pa.types.is_integer, ColumnEncoder(_encode_int("i8", pa.int64()), variable=False)),
    "float8": (pa.types.is_floating, ColumnEncoder(_encode_float, variable=False)),
    "real": (pa.types.is_floating, ColumnEncoder(_encode_real, variable=False)),
    "boolean": (pa.types.is_boolean, ColumnEncoder(_encode_bool, variable=False)),
    "date": (pa.types.is_date, ColumnEncoder(_encode_date, variable=False)),
    "timestamp": (_is_naive_timestamp, ColumnEncoder(_encode_timestamp, variable=False)),
    "timestamptz": (_is_aware_timestamp, ColumnEncoder(_encode_timestamp, variable=False)),
    "uuid": (_is_uuid_bytes, ColumnEncoder(_encode_uuid, variable=False)),
}
"""Staging type → (which Arrow types it takes, its encoder). Anything else goes row by row."""


def _encoder(pg_type: str, arrow_type: pa.DataType) -> ColumnEncoder | None:
    """The encoder for this (staging type, Arrow type) pair, or None when there is none."""
    if pa.types.is_dictionary(arrow_type):
        inner = _encoder(pg_type, arrow_type.value_type)
        return None if inner is None else _decoded(inner)
    kind = _ALIASES.get(pg_type.strip().lower(), pg_type.strip().lower())
    accepts, encoder = _ENCODERS.get(kind, (None, None))
    return encoder if accepts is not None and accepts(arrow_type) else None


# --- the stream ------------------------------------------------------------------------------


def encode_rows(batch: pa.RecordBatch, encoders: Sequence[ColumnEncoder]) -> pa.Buffer:
    """The binary COPY rows (no header, no trailer) of ``batch``, one contiguous buffer."""
    n = batch.num_rows
    if n == 0:
        return pa.py_buffer(b"")
    parts: list[Part] = [Fixed(np.full(n, batch.num_columns, dtype=">i2").view(np.uint8).reshape(n, 2))]
    for column, encoder in zip(batch.columns, encoders, strict=True):
        parts += encoder.encode(column)
    rows = pc.binary_join_element_wise(*_pieces(parts), b"", null_handling="replace", null_replacement="")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=n + 1, offset=rows.offset * 4)
    return rows.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def encodable(pg_type: str, arrow_type: pa.DataType) -> bool:
    """Whether a column of ``arrow_type`` is written into a ``pg_type`` column as it is (no staging type)."""
    return pg_type not in STAGE_TYPES and _encoder(pg_type, arrow_type) is not None


def encoders_for(schema: pa.Schema, pg_types: Sequence[str]) -> list[ColumnEncoder] | None:
    """One encoder per column, or None when some column has none (logged once per type pair)."""
    if len(schema) != len(pg_types):
        raise TerminalError(f"binary COPY: {len(schema)} columns but {len(pg_types)} PostgreSQL types")
    encoders: list[ColumnEncoder] = []
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


def _slices(data: pa.Table | pa.RecordBatch, mask: pa.Array | None = None) -> Iterator[pa.RecordBatch]:
    """Slices of about WRITE_BYTES encoded bytes: rows per slice from the Arrow bytes per row.

    With ``mask`` (a boolean per row of ``data``), each slice keeps only its rows where the mask
    holds: the selection is made a slice at a time, never as a copy of the whole table.
    """
    batches = data.to_batches() if isinstance(data, pa.Table) else [data]
    fields = len(data.schema)
    offset = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        per_row = batch.nbytes / batch.num_rows + 2 + 4 * fields
        step = max(1, int(WRITE_BYTES // per_row))
        for start in range(0, batch.num_rows, step):
            piece = batch.slice(start, step)
            if mask is not None:
                piece = piece.filter(mask.slice(offset + start, piece.num_rows))
            if piece.num_rows:
                yield piece
        offset += batch.num_rows


def copy_stream(
    data: pa.Table | pa.RecordBatch, encoders: Sequence[ColumnEncoder], mask: pa.Array | None = None
) -> Iterator[memoryview]:
    """The whole binary COPY stream of ``data`` (header, rows, trailer) in pieces of ≤ WRITE_BYTES."""
    yield memoryview(PGCOPY_HEADER)
    for part in _slices(data, mask):
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


def _ahead(items: Iterator[memoryview], depth: int = AHEAD) -> Generator[memoryview, None, None]:
    """``items`` produced by a worker thread, up to ``depth`` ahead of the consumer.

    Encoding (Arrow and numpy release the GIL) then overlaps sending, the way psql's reading of
    its file overlaps the server's parsing. A failure in the worker is raised in the consumer; a
    consumer that stops early (the server refused the data) stops the worker.
    """
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put((False, exc))
            return
        put((False, None))

    worker = threading.Thread(target=produce, name="copy-encode", daemon=True)
    worker.start()
    try:
        while True:
            try:
                more, value = queue.get(timeout=1.0)
            except Empty:
                if not worker.is_alive():
                    raise RuntimeError("binary COPY: the encoding thread ended without a result") from None
                continue
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        worker.join()


Relation: TypeAlias = str | tuple[str, str]
"""A table: its name (a temporary or search-path table), or (schema, name)."""


def _copy_statement(table: Relation, names: Sequence[str]) -> sql.Composed:
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in names)
    relation = sql.Identifier(table) if isinstance(table, str) else sql.Identifier(*table)
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(relation, columns)


def _copy_rows(cur: Any, table: Relation, data: pa.Table, pg_types: Sequence[str]) -> None:
    """Per-row path through psycopg's dumpers, for a column type the encoder does not know."""
    with cur.copy(_copy_statement(table, data.column_names)) as copy:
        copy.set_types([stage_type(t) for t in pg_types])
        for batch in data.to_batches(max_chunksize=CHUNK_ROWS):
            for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                copy.write_row(row)


def copy_arrow(
    cur: Any, table: Relation, data: pa.Table, pg_types: Sequence[str], mask: pa.Array | None = None
) -> int:
    """COPY ``data`` (only its rows where ``mask`` holds, if given) into ``table`` (columns named
    as the Arrow fields) in binary format; the rows copied.

    ``pg_types`` are the target columns' types (``numeric`` is staged as ``float8``, see
    :func:`stage_type`). Encoded bytes, and the masked selection, exist for one slice at a time,
    so memory stays bounded.
    """
    if mask is not None and isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    encoders = encoders_for(data.schema, pg_types)
    if encoders is None:
        data = data if mask is None else data.filter(mask)
        _copy_rows(cur, table, data, pg_types)
        return data.num_rows
    # fixed-width columns first: with the field count they form one block a row (COPY names the order)
    order = sorted(range(len(encoders)), key=lambda i: encoders[i].variable)
    data = data.select(order)
    stream = _ahead(copy_stream(data, [encoders[i] for i in order], mask))
    with cur.copy(_copy_statement(table, data.column_names)) as copy, closing(stream):
        for piece in stream:
            copy.write(piece)
    return data.num_rows if mask is None else int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)
