"""Golden tests of the binary COPY encoder: Arrow values in, exact PostgreSQL wire bytes out.

Each case is titled and spells its expected field bytes out with ``struct`` (int32 length or -1,
then the big-endian value), independently of the vectorised encoder it checks. The server-side
round trip of the same types is in tests/integration/test_copy_arrow.py.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from cutover.errors import TerminalError
from cutover.loading import copy as copy_mod
from cutover.loading.copy import PGCOPY_HEADER, PGCOPY_TRAILER, encode_copy, encoders_for

NULL = b"\xff\xff\xff\xff"
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"


def f(value: bytes) -> bytes:
    """One non-NULL field: int32 length, then the bytes."""
    return struct.pack(">i", len(value)) + value


def text_array(*items: str | None) -> bytes:
    """A one-dimensional text[] as array_send writes it (element OID 25, lower bound 1)."""
    if not items:
        return struct.pack(">iii", 0, 0, 25)
    has_null = int(any(i is None for i in items))
    out = struct.pack(">iiiii", 1, has_null, 25, len(items), 1)
    return out + b"".join(NULL if i is None else f(i.encode()) for i in items)


def micros(value: datetime) -> bytes:
    """A timestamp as timestamp_send writes it: int64 microseconds since 2000-01-01."""
    return struct.pack(">q", (value - datetime(2000, 1, 1)) // timedelta(microseconds=1))


# title → (PostgreSQL type, Arrow type, values, expected field bytes per row)
GOLDEN: dict[str, tuple[str, pa.DataType, list[Any], list[bytes]]] = {
    "text: empty string is not NULL": ("text", pa.string(), ["", None, "a"], [f(b""), NULL, f(b"a")]),
    "text: unicode as UTF-8": (
        "text",
        pa.string(),
        ["Zoë", "中文🙂"],
        [f("Zoë".encode()), f("中文🙂".encode())],
    ),
    "text: large_string": ("text", pa.large_string(), ["ab", None], [f(b"ab"), NULL]),
    "smallint: negative, extremes, NULL": (
        "smallint",
        pa.int16(),
        [-1, 32767, -32768, None],
        [f(struct.pack(">h", v)) for v in (-1, 32767, -32768)] + [NULL],
    ),
    "integer: negative, NULL": (
        "integer",
        pa.int32(),
        [-2, None, 2**31 - 1],
        [f(struct.pack(">i", -2)), NULL, f(struct.pack(">i", 2**31 - 1))],
    ),
    "bigint: extremes, NULL": (
        "bigint",
        pa.int64(),
        [-(2**63), None, 42],
        [f(struct.pack(">q", -(2**63))), NULL, f(struct.pack(">q", 42))],
    ),
    "numeric staged as float8": (
        "numeric",
        pa.float64(),
        [-12.5, None, 0.1],
        [f(struct.pack(">d", -12.5)), NULL, f(struct.pack(">d", 0.1))],
    ),
    "boolean: true, false, NULL": (
        "boolean",
        pa.bool_(),
        [True, False, None],
        [f(b"\x01"), f(b"\x00"), NULL],
    ),
    "date: days from 2000-01-01, before 1970 and after 2038": (
        "date",
        pa.date32(),
        [date(2000, 1, 1), date(1969, 12, 31), date(2040, 1, 1), None, date(1, 1, 1)],
        [
            f(struct.pack(">i", 0)),
            f(struct.pack(">i", -10958)),
            f(struct.pack(">i", (date(2040, 1, 1) - date(2000, 1, 1)).days)),
            NULL,
            f(struct.pack(">i", (date(1, 1, 1) - date(2000, 1, 1)).days)),
        ],
    ),
    "timestamp: microseconds from 2000-01-01, before 1970 and after 2038": (
        "timestamp",
        pa.timestamp("us"),
        [datetime(2000, 1, 1, 0, 0, 0, 1), datetime(1960, 1, 1), datetime(2050, 6, 1, 12), None],
        [
            f(micros(datetime(2000, 1, 1, 0, 0, 0, 1))),
            f(micros(datetime(1960, 1, 1))),
            f(micros(datetime(2050, 6, 1, 12))),
            NULL,
        ],
    ),
    "timestamp[s] is converted to microseconds": (
        "timestamp",
        pa.timestamp("s"),
        [datetime(2000, 1, 1, 0, 0, 2)],
        [f(struct.pack(">q", 2_000_000))],
    ),
    "bytea: zero-length is not NULL": (
        "bytea",
        pa.binary(),
        [b"", None, b"\x00\xff"],
        [f(b""), NULL, f(b"\x00\xff")],
    ),
    "text[]: NULL elements, empty list, NULL list": (
        "text[]",
        pa.list_(pa.string()),
        [["a", None, ""], [], None, [None], ["ü"]],
        [f(text_array("a", None, "")), f(text_array()), NULL, f(text_array(None)), f(text_array("ü"))],
    ),
    "uuid from 16 bytes": ("uuid", pa.binary(16), [bytes(range(16)), None], [f(bytes(range(16))), NULL]),
}


def _expected_stream(fields_per_row: list[list[bytes]]) -> bytes:
    rows = b"".join(struct.pack(">h", len(fields)) + b"".join(fields) for fields in fields_per_row)
    return HEADER + rows + b"\xff\xff"


@pytest.mark.parametrize("title", list(GOLDEN))
def test_golden_single_column(title: str) -> None:
    pg_type, arrow_type, values, fields = GOLDEN[title]
    table = pa.table({"v": pa.array(values, arrow_type)})
    assert encode_copy(table, [pg_type]) == _expected_stream([[field] for field in fields])


def test_golden_rows_interleave_columns_in_order() -> None:
    """Each row: its field count, then each column's field, in the table's column order."""
    table = pa.table(
        {
            "id": pa.array(["p1", "p2"]),
            "n": pa.array([None, -3], pa.int32()),
            "codes": pa.array([["97110"], None], pa.list_(pa.string())),
            "ok": pa.array([True, None]),
        }
    )
    expected = _expected_stream(
        [
            [f(b"p1"), NULL, f(text_array("97110")), f(b"\x01")],
            [f(b"p2"), f(struct.pack(">i", -3)), NULL, NULL],
        ]
    )
    assert encode_copy(table, ["text", "integer", "text[]", "boolean"]) == expected


def test_empty_batch_is_header_and_trailer_only() -> None:
    table = pa.table({"a": pa.array([], pa.string()), "b": pa.array([], pa.list_(pa.string()))})
    assert encode_copy(table, ["text", "text[]"]) == PGCOPY_HEADER + PGCOPY_TRAILER == HEADER + b"\xff\xff"


def test_slices_and_chunks_do_not_change_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A multi-chunk, sliced table encodes as the concatenation of its rows, whatever the slice size."""
    base = pa.table(
        {
            "s": pa.array(["x" * (i % 7) if i % 5 else None for i in range(50)]),
            "d": pa.array([date(1950 + i, 1, 1) if i % 3 else None for i in range(50)]),
            "l": pa.array([[str(i)] * (i % 4) if i % 6 else None for i in range(50)], pa.list_(pa.string())),
        }
    )
    table = pa.concat_tables([base.slice(3, 20), base.slice(30)])
    types = ["text", "date", "text[]"]
    whole = encode_copy(table.combine_chunks(), types)
    monkeypatch.setattr(copy_mod, "WRITE_BYTES", 37)
    assert encode_copy(table, types) == whole
    pieces = list(copy_mod.copy_stream(table, encoders_for(table.schema, types) or []))
    assert max(len(p) for p in pieces) <= 37
    assert b"".join(bytes(p) for p in pieces) == whole


def test_type_without_encoder_is_reported_not_guessed() -> None:
    schema = pa.schema([("a", pa.string()), ("b", pa.duration("us"))])
    assert encoders_for(schema, ["text", "interval"]) is None
    assert encoders_for(pa.schema([("a", pa.int32())]), ["text"]) is None  # wrong Arrow type for text
    with pytest.raises(TerminalError, match="2 columns but 1"):
        encoders_for(schema, ["text"])


def test_integer_overflow_is_an_error_not_a_wrap() -> None:
    table = pa.table({"n": pa.array([2**40], pa.int64())})
    with pytest.raises(pa.ArrowInvalid):
        encode_copy(table, ["integer"])


def test_nanoseconds_are_truncated_to_microseconds() -> None:
    table = pa.table({"t": pa.array([1_500, -1_500], pa.timestamp("ns"))})  # 1970-01-01 ± 1.5 µs
    epoch = (datetime(1970, 1, 1) - datetime(2000, 1, 1)) // timedelta(microseconds=1)
    expected = [[f(struct.pack(">q", epoch + 1))], [f(struct.pack(">q", epoch - 1))]]
    assert encode_copy(table, ["timestamp"]) == _expected_stream(expected)


def test_encoding_ahead_hands_over_items_and_errors() -> None:
    """The worker thread's items arrive in order; its failure is raised in the consumer."""

    def failing() -> Iterator[memoryview]:
        yield memoryview(b"a")
        raise ValueError("boom")

    assert [bytes(x) for x in copy_mod._ahead(iter([memoryview(b"1"), memoryview(b"2")]))] == [b"1", b"2"]
    got: list[bytes] = []
    with pytest.raises(ValueError, match="boom"):
        got.extend(bytes(x) for x in copy_mod._ahead(failing()))
    assert got == [b"a"]


def test_consumer_stopping_early_stops_the_worker() -> None:
    """When the server refuses the COPY, the writer stops reading: the worker must not block forever."""
    produced: list[int] = []

    def endless() -> Iterator[memoryview]:
        while True:
            produced.append(1)
            yield memoryview(b"x")

    before = threading.active_count()
    stream = copy_mod._ahead(endless(), depth=2)
    next(stream)
    stream.close()  # runs the generator's finally: stop and join the worker
    assert threading.active_count() == before
    assert len(produced) <= 5
