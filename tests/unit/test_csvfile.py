"""The streaming CSV reader of legacy extracts: golden cases (input bytes → rows, lines, malformed),
header errors, batching, bounded reading, and round trips through Python's ``csv.writer`` with and
without a corrupted line (hypothesis)."""

from __future__ import annotations

import csv
import doctest
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cutover.legacy.csvfile as csvfile
from cutover.errors import ConfigError, retry_can_help
from cutover.legacy.csvfile import (
    CsvBatch,
    CsvError,
    CsvFormat,
    Malformed,
    count_records,
    read_header,
    read_records,
)

Row = tuple[str | None, ...]
REASON = re.compile(
    r"wrong number of fields \(\d+, expected \d+\)|unclosed quote|NUL byte|undecodable bytes \((utf-8|cp1252)\)"
    r"|quote inside an unquoted field|text after a closing quote|line break inside an unquoted field"
    r"|field too long"
)
"""Every reason a malformed record may give: fixed words and counts, never a value."""


def read_all(
    data: bytes, fmt: CsvFormat | None = None, batch_rows: int = 10_000
) -> tuple[list[Row], list[int], list[Malformed]]:
    """All batches of ``data`` run together."""
    rows: list[Row] = []
    lines: list[int] = []
    bad: list[Malformed] = []
    for batch in read_records(io.BytesIO(data), fmt or CsvFormat(), name="t.csv", batch_rows=batch_rows):
        rows += batch.rows
        lines += batch.lines
        bad += batch.malformed
    assert all(REASON.fullmatch(m.reason) for m in bad), bad
    assert lines == sorted(lines)
    return rows, lines, bad


def bad_of(*items: tuple[int, int, str]) -> list[Malformed]:
    return [Malformed(*item) for item in items]


@dataclass(frozen=True)
class Case:
    title: str
    data: bytes
    rows: list[Row]
    lines: list[int]
    malformed: list[Malformed] = field(default_factory=list)
    fmt: CsvFormat = field(default_factory=CsvFormat)


CASES = [
    Case("LF line endings", b"id,name\n1,a\n2,b\n", [("1", "a"), ("2", "b")], [2, 3]),
    Case("CRLF line endings", b"id,name\r\n1,a\r\n2,b\r\n", [("1", "a"), ("2", "b")], [2, 3]),
    Case("no newline after the last line", b"id,name\n1,a\n2,b", [("1", "a"), ("2", "b")], [2, 3]),
    Case(
        "quoted field with an embedded newline, delimiter and doubled quotes: the row's line is its first",
        b'id,note\n1,"He said ""no"",\nthen left"\n2,x\n',
        [("1", 'He said "no",\nthen left'), ("2", "x")],
        [2, 4],
    ),
    Case(
        "CRLF inside a quoted field is data, and so is a stray CR",
        b'id,note\r\n1,"a\r\nb\rc"\r\n2,x\r\n',
        [("1", "a\r\nb\rc"), ("2", "x")],
        [2, 4],
    ),
    Case(
        "wrong number of fields: both counts, the record is not a row",
        b"id,a,b\n1,x,y\n2,x\n3,x,y,z,w\n4,x,y\n",
        [("1", "x", "y"), ("4", "x", "y")],
        [2, 5],
        bad_of(
            (3, 1, "wrong number of fields (2, expected 3)"), (4, 1, "wrong number of fields (5, expected 3)")
        ),
    ),
    Case(
        "unclosed quote at the end of the file: its first line only, the lines after it are read again",
        b'id,note\n1,"never closed\n2,x\n3,y\n',
        [("2", "x"), ("3", "y")],
        [3, 4],
        bad_of((2, 1, "unclosed quote")),
    ),
    Case(
        "unclosed quote after max_record_lines lines, then a real note: both read",
        b'id,note\n1,"open\n2,x\n3,y\n4,z\n5,"a\nb"\n',
        [("2", "x"), ("3", "y"), ("4", "z"), ("5", "a\nb")],
        [3, 4, 5, 6],
        bad_of((2, 1, "unclosed quote")),
        CsvFormat(max_record_lines=3),
    ),
    Case(
        "a note of exactly max_record_lines lines is a row",
        b'id,note\n1,"a\nb\nc"\n2,x\n',
        [("1", "a\nb\nc"), ("2", "x")],
        [2, 5],
        fmt=CsvFormat(max_record_lines=3),
    ),
    Case(
        "truncated last line inside a quoted note: malformed, never dropped",
        b'id,note\n1,x\n2,"cut here',
        [("1", "x")],
        [2],
        bad_of((3, 1, "unclosed quote")),
    ),
    Case(
        "truncated multi-line note: its first line unclosed, its other lines re-read (and malformed)",
        b'id,note\n1,x\n2,"line one\nline two',
        [("1", "x")],
        [2],
        bad_of((3, 1, "unclosed quote"), (4, 1, "wrong number of fields (1, expected 2)")),
    ),
    Case(
        "truncated last line without a quote: wrong number of fields",
        b"id,a,b\n1,x,y\n2,x",
        [("1", "x", "y")],
        [2],
        bad_of((3, 1, "wrong number of fields (2, expected 3)")),
    ),
    Case(
        "invalid UTF-8: that record is malformed, the rest is read",
        b"id,name\n1,ok\n2,caf\xe9\n3,\xc3\xa9t\xc3\xa9\n",
        [("1", "ok"), ("3", "été")],
        [2, 4],
        bad_of((3, 1, "undecodable bytes (utf-8)")),
    ),
    Case(
        "invalid UTF-8 under utf-8-sig, inside a multi-line note: the whole record",
        b'id,note\n1,"a\n\xff"\n2,b\n',
        [("2", "b")],
        [4],
        bad_of((2, 2, "undecodable bytes (utf-8)")),
        CsvFormat(encoding="utf-8-sig"),
    ),
    Case(
        "cp1252: the five undefined bytes are malformed, 0xE9 is é",
        b"id,name\n1,\x81\n2,\x8d\n3,\x8f\n4,\x90\n5,\x9d\n6,caf\xe9 \x93q\x94\n",
        [("6", "café “q”")],
        [7],
        bad_of(*((line, 1, "undecodable bytes (cp1252)") for line in range(2, 7))),
        CsvFormat(encoding="cp1252"),
    ),
    Case(
        "a BOM is stripped under utf-8",
        b"\xef\xbb\xbfid,name\n1,a\n",
        [("1", "a")],
        [2],
    ),
    Case(
        "a BOM is stripped under utf-8-sig",
        b"\xef\xbb\xbfid,name\n1,a\n",
        [("1", "a")],
        [2],
        fmt=CsvFormat(encoding="utf-8-sig"),
    ),
    Case(
        "quoting none: quotes are ordinary characters, a record is one line",
        b'id,name\n1,"a\n2,say "hi"\n3,""\n',
        [("1", '"a'), ("2", 'say "hi"'), ("3", '""')],
        [2, 3, 4],
        fmt=CsvFormat(quoting="none"),
    ),
    Case(
        "quoting all reads like minimal",
        b'"id","name"\n"1","a,b"\n"2",""\n',
        [("1", "a,b"), ("2", None)],
        [2, 3],
        fmt=CsvFormat(quoting="all"),
    ),
    Case(
        "pipe delimiter",
        b'id|name\n1|a,b\n2|"x|y"\n',
        [("1", "a,b"), ("2", "x|y")],
        [2, 3],
        fmt=CsvFormat(delimiter="|"),
    ),
    Case(
        "tab delimiter",
        b"id\tname\n1\ta b\n2\t\n",
        [("1", "a b"), ("2", None)],
        [2, 3],
        fmt=CsvFormat(delimiter="\t"),
    ),
    Case("semicolon delimiter", b"id;amount\n1;12,50\n", [("1", "12,50")], [2], fmt=CsvFormat(delimiter=";")),
    Case(
        "an empty line between records is skipped and counted nowhere; a line of delimiters is a record",
        b"id,a,b\n1,x,y\n\n,,\n\r\n2,x,y\n",
        [("1", "x", "y"), (None, None, None), ("2", "x", "y")],
        [2, 4, 6],
    ),
    Case(
        "a line of spaces is not empty",
        b"id,a\n1,x\n   \n2,y\n",
        [("1", "x"), ("2", "y")],
        [2, 4],
        bad_of((3, 1, "wrong number of fields (1, expected 2)")),
    ),
    Case(
        "NUL byte: data, carried as it is (the mapping cleans a note's control characters)",
        b'id,a\n1,x\x00y\n2,"z\n\x00"\n3,w\n',
        [("1", "x\x00y"), ("2", "z\n\x00"), ("3", "w")],
        [2, 3, 5],
        [],
    ),
    Case(
        "NUL byte beside undecodable bytes: that record is malformed, never a crash",
        b"id,a\n1,x\x00\xff\n3,w\n",
        [("3", "w")],
        [3],
        bad_of((2, 1, "NUL byte")),
    ),
    Case(
        "U+2028, U+0085, form feed and other control characters are data, not line breaks",
        "id,a\n1,x\u2028y\u0085z\x0c\x1c\x1d\x1e\x0b\x07\n2,\u2029\n".encode(),
        [("1", "x\u2028y\u0085z\x0c\x1c\x1d\x1e\x0b\x07"), ("2", "\u2029")],
        [2, 3],
    ),
    Case(
        "a stray quote inside an unquoted field: that line alone, nothing swallowed",
        b'id,height\n1,5\'10"\n2,6\'1\n3,"a\nb"\n',
        [("2", "6'1"), ("3", "a\nb")],
        [3, 4],
        bad_of((2, 1, "quote inside an unquoted field")),
    ),
    Case(
        "a quote pair inside an unquoted field is data (as for Python's csv)",
        b'id,a\n1,say "hi" now\n',
        [("1", 'say "hi" now')],
        [2],
    ),
    Case(
        "an even count csv reads as open (a quoted field after a stray quote) does not take the next record",
        b'id,a,b\n1,x"y,"z\n2,p,q\n3,"r",s\n',
        [("2", "p", "q"), ("3", "r", "s")],
        [3, 4],
        bad_of((2, 1, "quote inside an unquoted field")),
    ),
    Case(
        "text after a closing quote",
        b'id,a\n1,"x"y\n2,z\n',
        [("2", "z")],
        [3],
        bad_of((2, 1, "text after a closing quote")),
    ),
    Case(
        "a multi-line record whose quotes pair up but is malformed is one record, all its lines",
        b'id,a\n1,"x"y,"b\nz"\n2,w\n',
        [("2", "w")],
        [4],
        bad_of((2, 2, "text after a closing quote")),
    ),
    Case(
        "a multi-line record with the wrong number of fields: its first line and span",
        b'id,a,b\n1,"x\ny\nz"\n2,p,q\n',
        [("2", "p", "q")],
        [5],
        bad_of((2, 3, "wrong number of fields (2, expected 3)")),
    ),
    Case(
        "a carriage return inside an unquoted field",
        b"id,a\n1,x\ry\n2,z\n",
        [("2", "z")],
        [3],
        bad_of((2, 1, "line break inside an unquoted field")),
    ),
    Case(
        "the null text: a field equal to it is None, an empty field is text",
        b'id,a,b\n1,\\N,\n2,"\\N", \\N\n',
        [("1", None, ""), ("2", None, " \\N")],
        [2, 3],
        fmt=CsvFormat(null="\\N"),
    ),
    Case(
        "the default null: empty and quoted-empty fields are None, whitespace is not",
        b'id,a,b\n1,,""\n2, ,x\n',
        [("1", None, None), ("2", " ", "x")],
        [2, 3],
    ),
    Case("a header and no records", b"id,a\n", [], []),
    Case("a header and only empty lines", b"id,a\n\n\r\n\n", [], []),
    Case(
        "only malformed records",
        b"id,a\n1\n2\n",
        [],
        [],
        bad_of(
            (2, 1, "wrong number of fields (1, expected 2)"), (3, 1, "wrong number of fields (1, expected 2)")
        ),
    ),
    Case(
        "a note longer than the default csv field limit (131072) is a row",
        b'id,note\n1,"' + b"x" * 300_000 + b'"\n2,y\n',
        [("1", "x" * 300_000), ("2", "y")],
        [2, 3],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.title for c in CASES])
def test_golden(case: Case) -> None:
    rows, lines, bad = read_all(case.data, case.fmt)
    assert (rows, lines, bad) == (case.rows, case.lines, case.malformed)


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("case", CASES, ids=[c.title for c in CASES])
def test_golden_with_tiny_chunks_and_batches(case: Case, chunk: int) -> None:
    """The same answers whatever the chunk size (a byte or a few: every boundary) or the batch size."""
    with mock.patch.object(csvfile, "CHUNK_BYTES", chunk):
        assert read_all(case.data, case.fmt, batch_rows=1) == (case.rows, case.lines, case.malformed)


# --- the header ----------------------------------------------------------------------------------------

HEADER_ERRORS = [
    ("empty file", b"", "t.csv: no header line"),
    ("only a BOM", b"\xef\xbb\xbf", "t.csv: no header line"),
    ("empty first line", b"\nid,a\n1,x\n", "t.csv: no header line (the first line is empty)"),
    ("undecodable header", b"id,caf\xe9\n1,x\n", "t.csv: bad header line (undecodable bytes (utf-8))"),
    ("unclosed quote in the header", b'id,"a\n1,x\n', "t.csv: bad header line (unclosed quote)"),
    ("text after a closing quote", b'id,"a"b\n', "t.csv: bad header line (text after a closing quote)"),
    ("a column without a name", b"id,,a\n", "t.csv: column 2 of the header has no name"),
    ("a trailing delimiter", b"id,a,\n1,x,\n", "t.csv: column 3 of the header has no name"),
    ("a duplicate name", b"id,a,id\n", "t.csv: columns 1 and 3 of the header have the same name"),
]


@pytest.mark.parametrize(("title", "data", "message"), HEADER_ERRORS, ids=[h[0] for h in HEADER_ERRORS])
def test_header_errors(title: str, data: bytes, message: str) -> None:
    with pytest.raises(CsvError) as raised:
        read_header(io.BytesIO(data), CsvFormat(), name="t.csv")
    assert str(raised.value) == message
    with pytest.raises(CsvError) as again:
        list(read_records(io.BytesIO(data), CsvFormat(), name="t.csv"))
    assert str(again.value) == message


def test_header_error_is_terminal_and_one_line() -> None:
    with pytest.raises(ConfigError) as raised:
        read_header(io.BytesIO(b'"a\nb\n'), CsvFormat(max_record_lines=1), name="patients.csv")
    assert not retry_can_help(raised.value)
    assert "\n" not in str(raised.value)


def test_header_may_be_quoted_and_span_lines() -> None:
    data = b'"id","last\nname"\r\n1,x\r\n'
    assert read_header(io.BytesIO(data), CsvFormat(), name="t.csv") == ["id", "last\nname"]
    assert read_all(data) == ([("1", "x")], [3], [])


class CountingStream(io.RawIOBase):
    """A binary stream over ``size`` bytes of rows that counts what was read and answers short reads."""

    def __init__(self, data: bytes, most: int | None = None) -> None:
        self.data, self.pos, self.most, self.reads = data, 0, most, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        end = len(self.data) if size < 0 else self.pos + size
        if self.most is not None:
            end = min(end, self.pos + self.most)
        out, self.pos = self.data[self.pos : end], min(end, len(self.data))
        return out


def test_read_header_reads_the_first_record_only() -> None:
    stream = CountingStream(b"id,note\n" + b"1,some text\n" * 500_000)  # 6 MB
    assert read_header(cast(BinaryIO, stream), CsvFormat(), name="t.csv") == ["id", "note"]
    assert stream.pos <= csvfile.HEADER_CHUNK_BYTES


def test_short_reads_and_a_bom_split_across_them() -> None:
    data = b'\xef\xbb\xbfid,note\r\n1,"a\r\nb"\r\n\n2,\xc3\xa9\r\n'  # line 4 is empty
    for most in (1, 2, 5):
        stream = CountingStream(data, most=most)
        batches = list(read_records(cast(BinaryIO, stream), CsvFormat(), name="t.csv"))
        assert [(b.rows, b.lines, b.malformed) for b in batches] == [
            ([("1", "a\r\nb"), ("2", "é")], [2, 5], [])
        ]


# --- streaming, batches, limits ----------------------------------------------------------------------


def test_reads_in_chunks_not_the_whole_file() -> None:
    """After the first batch only a chunk or two of a 12 MB file has been read."""
    stream = CountingStream(b"id,note\n" + b"1,some text here\n" * 700_000)
    batches = read_records(cast(BinaryIO, stream), CsvFormat(), name="t.csv", batch_rows=100)
    first = next(batches)
    assert len(first.rows) == 100
    assert stream.pos <= 2 * csvfile.CHUNK_BYTES
    assert len(stream.data) > 100 * csvfile.CHUNK_BYTES


def test_batches_attach_malformed_records_where_they_were_met() -> None:
    data = b"id,a\n1,x\nbad\n2,y\n3,z\nbad\nbad\n4,w\nbad\n"
    batches = list(read_records(io.BytesIO(data), CsvFormat(), name="t.csv", batch_rows=2))
    wrong = "wrong number of fields (1, expected 2)"
    assert batches == [
        CsvBatch([("1", "x"), ("2", "y")], [2, 4], bad_of((3, 1, wrong))),
        CsvBatch([("3", "z"), ("4", "w")], [5, 8], bad_of((6, 1, wrong), (7, 1, wrong))),
        CsvBatch([], [], bad_of((9, 1, wrong))),  # the last batch may hold only malformed records
    ]


def test_a_file_of_garbage_is_batched_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csvfile, "MALFORMED_PER_BATCH", 3)
    data = b"id,a\n" + b"bad\n" * 7 + b"1,x\n"
    batches = list(read_records(io.BytesIO(data), CsvFormat(), name="t.csv", batch_rows=10))
    assert [(len(b.rows), [m.line for m in b.malformed]) for b in batches] == [
        (0, [2, 3, 4]),
        (0, [5, 6, 7]),
        (1, [8]),
    ]


def test_batch_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_rows"):
        next(read_records(io.BytesIO(b"a\n1\n"), CsvFormat(), name="t.csv", batch_rows=0))


def test_a_line_longer_than_the_limit_is_malformed_and_never_held() -> None:
    """64 MiB + 1 of one field without a line break: dropped as it streams by, the next rows read."""
    huge = b'1,"' + b"x" * csvfile.FIELD_LIMIT + b'"\n'
    data = b"id,note\n" + huge + b"2,y\n" + b'3,"' + b"z" * 1000 + b'"\n'
    assert read_all(data) == ([("2", "y"), ("3", "z" * 1000)], [3, 4], bad_of((2, 1, "field too long")))


@pytest.mark.parametrize("chunk", [7, 64, 1 << 16])
def test_field_too_long_in_every_shape(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(csvfile, "FIELD_LIMIT", 100)
    monkeypatch.setattr(csvfile, "CHUNK_BYTES", chunk)
    long = b"x" * 150
    data = (
        b"id,note\n"
        + b"1," + long + b"\n"  # one long line
        + b"2,ok\n"
        + b'3,"' + long + b'\nmore"\n'  # a long line opening a note
        + b"4,ok\n"
        + b'5,"' + b"y" * 60 + b"\n" + b"y" * 60 + b'"\n'  # a note longer than the limit, short lines
        + b"6,ok\n"
    )  # fmt: skip
    # 2: one long line; 4-5: a note whose first line is long (the record, both lines); 7-8: a note
    # longer than the limit, of short lines (its first line, like an unclosed quote: 8 is read again)
    assert read_all(data) == (
        [("2", "ok"), ("4", "ok"), ("6", "ok")],
        [3, 6, 9],
        bad_of(
            (2, 1, "field too long"),
            (4, 2, "field too long"),
            (7, 1, "field too long"),
            (8, 1, "quote inside an unquoted field"),
        ),
    )


def test_count_records() -> None:
    data = b'id,a\n1,x\nbad\n2,"y\nz"\n\n3,\xff\n'
    assert count_records(io.BytesIO(data), CsvFormat(), name="t.csv") == (2, 2)


def test_the_summary_log_names_counts_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cutover.legacy.csvfile"):
        list(read_records(io.BytesIO(b"id,a\n1,secret-value\nsecret\n"), CsvFormat(), name="t.csv"))
    assert [r.getMessage() for r in caplog.records] == ["t.csv: 1 rows, 1 malformed records"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encoding": "latin-1"}, "encoding 'latin-1' is not one of"),
        ({"delimiter": ",,"}, "the delimiter must be one character"),
        ({"delimiter": '"'}, "the delimiter must be one character"),
        ({"delimiter": "\n"}, "the delimiter must be one character"),
        ({"quoting": "some"}, "quoting 'some' is not one of"),
        ({"max_record_lines": 0}, "max_record_lines must be at least 1"),
    ],
)
def test_format_is_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(CsvError, match=message):
        CsvFormat(**kwargs)


def test_doctests() -> None:
    failures, tried = doctest.testmod(csvfile)
    assert tried >= 10
    assert failures == 0


# --- round trips through csv.writer (hypothesis) ------------------------------------------------------

TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(['"', ",", "\n", "\r", "\u2028", "é", " ", "\t", "|", ";", "x"]),
        st.characters(codec="utf-8", exclude_characters="\x00"),  # any character but a surrogate or NUL
    ),
    max_size=12,
)


@dataclass(frozen=True)
class Written:
    """A CSV file as ``csv.writer`` wrote it, and where each record is."""

    data: bytes
    rows: list[list[str]]
    starts: list[int]
    ends: list[int]
    delimiter: str
    minimal: bool
    """QUOTE_MINIMAL (else QUOTE_ALL)."""


@st.composite
def written(draw: st.DrawFn) -> Written:
    ncols = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(TEXT, min_size=ncols, max_size=ncols), max_size=25))
    delimiter = draw(st.sampled_from([",", "|", "\t", ";"]))
    # "\r\n" terminators with minimal quoting; "\n" with all fields quoted (csv.writer only quotes a
    # field with a lone "\r" under QUOTE_MINIMAL when "\r" is in its line terminator)
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    minimal = terminator == "\r\n"
    out = io.StringIO()
    quoting = csv.QUOTE_MINIMAL if minimal else csv.QUOTE_ALL
    writer = csv.writer(out, delimiter=delimiter, lineterminator=terminator, quoting=quoting)  # type: ignore[arg-type]
    writer.writerow([f"c{i}" for i in range(ncols)])
    starts, ends, line = [], [], 2
    for row in rows:
        before = out.tell()
        writer.writerow(row)
        span = out.getvalue()[before:].count("\n")
        starts.append(line)
        ends.append(line + span - 1)
        line += span
    return Written(out.getvalue().encode(), rows, starts, ends, delimiter, minimal)


def expected(row: list[str]) -> Row:
    return tuple(None if f == "" else f for f in row)


def span_of(row: Row) -> int:
    return 1 + sum(f.count("\n") for f in row if f is not None)


@given(written(), st.sampled_from([1, 3, 17, 1 << 16]), st.integers(1, 30))
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(w: Written, chunk: int, batch_rows: int) -> None:
    """Rows written by csv.writer come back exactly, each with the line it starts on."""
    with mock.patch.object(csvfile, "CHUNK_BYTES", chunk):
        got = read_all(w.data, CsvFormat(delimiter=w.delimiter), batch_rows=batch_rows)
    assert got == ([expected(r) for r in w.rows], w.starts, [])


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[Written, bytes, int, str]:
    """A written file with one physical data line corrupted: the file, its corrupted line, the kind."""
    w = draw(written())
    assume(w.rows)
    text = w.data.decode()
    lines = text.split("\n")  # the last item is "" (the file ends with a line break)
    at = draw(st.integers(1, len(lines) - 2))  # 0-based: not the header, not the final ""
    line = lines[at]
    kind = draw(st.sampled_from(["truncate", "delimiter", "quote", "stray"]))
    if kind == "truncate":  # cut the line short (keeping a character: an empty line would be skipped)
        assume(len(line) >= 2)
        line = line[: draw(st.integers(1, len(line) - 1))]
    elif kind == "delimiter":
        cut = draw(st.integers(0, len(line)))
        line = line[:cut] + w.delimiter + line[cut:]
    elif kind == "quote":  # a quote anywhere
        cut = draw(st.integers(0, len(line)))
        line = line[:cut] + '"' + line[cut:]
    else:  # "stray": a quote inside an unquoted field of a one-line record, after its first character
        record = w.starts.index(at + 1) if at + 1 in w.starts else -1
        assume(record >= 0 and w.starts[record] == w.ends[record])
        row = w.rows[record]
        plain = [i for i, f in enumerate(row) if f and _written(f, w.delimiter) == f]
        assume(plain and w.minimal)
        i = draw(st.sampled_from(plain))
        cut = draw(st.integers(1, len(row[i])))
        fields = [_written(f, w.delimiter) if j != i else f[:cut] + '"' + f[cut:] for j, f in enumerate(row)]
        line = w.delimiter.join(fields) + "\r"
        assert len(row) > 1 or line == lines[at][:cut] + '"' + lines[at][cut:]
    lines[at] = line
    return w, "\n".join(lines).encode(), at + 1, kind


def _written(value: str, delimiter: str) -> str:
    """How csv.writer (QUOTE_MINIMAL, "\\r\\n") writes ``value`` as one of several fields."""
    if value == "":
        return ""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerow([value])  # "\r" quotes a "\r"
    return out.getvalue().removesuffix("\r\n")


@given(corrupted())
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
def test_one_corrupted_line(case: tuple[Written, bytes, int, str]) -> None:
    """What one corrupted line may cost, exactly.

    Let R be the record holding the corrupted line X. Always: no exception; every record that ends
    before R comes back exactly (values and line); and every non-empty physical line of the file
    after the header lies in the span of a returned row or of a malformed record (nothing vanishes).
    When the corruption keeps X's quote parity (an extra delimiter; a cut that drops an even number
    of quotes) or is a stray quote inside an unquoted field: every record but R comes back exactly,
    R is either one malformed record (at R's first line, spanning R's lines) or one row on R's first
    line, and nothing else is returned: good + malformed == records written.
    """
    w, data, x, kind = case
    rows, lines, bad = read_all(data, CsvFormat(delimiter=w.delimiter))
    r = next(i for i in range(len(w.rows)) if w.starts[i] <= x <= w.ends[i])
    got = dict(zip(lines, rows, strict=True))
    for i in range(r):
        assert got.get(w.starts[i]) == expected(w.rows[i])
    physical = data.decode("utf-8", "replace").split("\n")
    covered: set[int] = set()
    for line, row in zip(lines, rows, strict=True):
        covered.update(range(line, line + span_of(row)))
    for m in bad:
        covered.update(range(m.line, m.line + m.lines))
    nonempty = {n for n in range(2, len(physical) + 1) if physical[n - 1] not in ("", "\r")}
    assert nonempty <= covered
    before, after = w.data.decode().split("\n")[x - 1], data.decode().split("\n")[x - 1]
    keeps_parity = (before.count('"') - after.count('"')) % 2 == 0
    if keeps_parity or kind == "stray":
        others = [i for i in range(len(w.rows)) if i != r]
        assert all(got.get(w.starts[i]) == expected(w.rows[i]) for i in others)
        start, end = w.starts[r], w.ends[r]
        assert len(rows) + len(bad) == len(w.rows)
        if start in got:
            assert bad == []
        else:
            assert bad == [Malformed(start, 1 if kind == "stray" else end - start + 1, bad[0].reason)]


@given(corrupted(), st.integers(1, 40), st.integers(1, 4), st.sampled_from([30, 1 << 26]))
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
def test_chunk_size_changes_nothing(
    case: tuple[Written, bytes, int, str], chunk: int, max_record_lines: int, limit: int
) -> None:
    """Damaged files read the same in 64 KiB chunks and in chunks of a few bytes (every boundary
    falls somewhere), with records cut short by a low ``max_record_lines`` and ``FIELD_LIMIT``."""
    w, data, _, _ = case
    fmt = CsvFormat(delimiter=w.delimiter, max_record_lines=max_record_lines)
    with mock.patch.object(csvfile, "FIELD_LIMIT", limit):
        whole = read_all(data, fmt)
        with mock.patch.object(csvfile, "CHUNK_BYTES", chunk):
            assert read_all(data, fmt, batch_rows=3) == whole


def test_corrupted_examples() -> None:
    """The cases the property covers, spelled out."""
    w = b'id,note,n\r\n1,"a\r\nb",x\r\n2,plain,y\r\n3,"c\r\nd",z\r\n'
    # an extra delimiter in the note's second line: the whole note record, nothing else
    assert read_all(w.replace(b'b",x', b'b",,x')) == (
        [("2", "plain", "y"), ("3", "c\r\nd", "z")],
        [4, 5],
        bad_of((2, 2, "wrong number of fields (4, expected 3)")),
    )
    # a stray quote in a plain field: that line
    assert read_all(w.replace(b"plain", b'pl"ain')) == (
        [("1", "a\r\nb", "x"), ("3", "c\r\nd", "z")],
        [2, 5],
        bad_of((4, 1, "quote inside an unquoted field")),
    )
    # a quote opening a field swallows up to the next odd line: reported, not dropped
    rows, lines, bad = read_all(w.replace(b"2,plain", b'2,"plain'))
    assert (rows, lines) == ([("1", "a\r\nb", "x")], [2])
    assert [(m.line, m.lines) for m in bad] == [(4, 2), (6, 1)]


def _iter_rows(batches: Iterator[CsvBatch]) -> list[Row]:
    return [row for batch in batches for row in batch.rows]


def test_encodings_round_trip_text() -> None:
    text = "id,name\n1,Zoë “quoted” – ok\n"
    assert _iter_rows(
        read_records(io.BytesIO(text.encode("cp1252")), CsvFormat(encoding="cp1252"), name="t")
    ) == [("1", "Zoë “quoted” – ok")]
    assert _iter_rows(read_records(io.BytesIO(text.encode("utf-8-sig")), CsvFormat(), name="t")) == [
        ("1", "Zoë “quoted” – ok")
    ]
