r"""Read a legacy CSV extract (one file per table) in bounded batches; every bad record is reported.

A clinic leaving a PT system often gets a CSV export delivered over SFTP (WebPT's "Standard
Extract", for one). :func:`read_records` streams such a file in batches of good rows; a record it
cannot read becomes a :class:`Malformed` with its physical line number and a value-free reason,
never a crash and never a silent drop. Only a problem with the header raises (:class:`CsvError`).

>>> import io
>>> data = b'id,note,amount\n1,"knee, left\nsee ""plan"" 2x",12.50\n2,x\n3,,0\n'
>>> [(b.rows, b.lines, b.malformed) for b in read_records(io.BytesIO(data), CsvFormat(), name="visits.csv")]
[([('1', 'knee, left\nsee "plan" 2x', '12.50'), ('3', None, '0')], [2, 5], [Malformed(line=4, lines=1, reason='wrong number of fields (2, expected 3)')])]

How it reads (and why this way):

1. **Bytes in chunks.** The stream is read 64 KiB at a time (:data:`CHUNK_BYTES`) and cut after its
   last ``\n``; the complete lines are decoded at once (strictly first; only a chunk that fails
   is decoded again with ``surrogateescape`` and its records screened for the escapes). A ``\n``
   byte never occurs inside a UTF-8 or cp1252 character, so a cut never splits one. Memory is
   one chunk, one batch and at most ``max_record_lines`` carried lines, whatever the file's size;
   a line longer than :data:`FIELD_LIMIT` is dropped as it streams by (its quote parity kept),
   never held.
2. **Physical lines, split on ``\n`` only.** ``str.splitlines`` would also split on U+2028, ``\x1c``
   and friends, which are data here; a ``\r`` before the ``\n`` stays on the line, where the
   ``csv`` module takes it as the end of the record (or as data inside quotes).
3. **Records by quote parity.** RFC 4180 doubles a quote inside a quoted field, so a record ends on
   the first line at which its count of ``"`` is even: an odd line opens a record that the next
   odd line closes, and every line between two such records is a record of its own. In a clean
   chunk (no NUL, no undecodable byte) this grouping is done in C: split the text at its quotes,
   every other piece is inside a quoted field, its line breaks become NULs, the text splits into
   records at the remaining ones (:meth:`_Source._split_quoted`). A per-line walk over the odd
   lines with a ``csv`` check of each multi-line record (:meth:`_Source._group`, about twice as slow
   on notes) takes over for a chunk where that guess fails, and decides:

   - a multi-line record that ``csv`` rejects while reading its first line alone as a whole
     record has an odd quote inside an unquoted field (``5'10"``): that line alone is malformed
     and reading goes on with the next line, so the stray quote swallows nothing;
   - otherwise the quotes pair up, and the record, all its lines, is one malformed record;
   - a quote still open after ``max_record_lines`` lines, or at the end of the file, is an
     "unclosed quote" for its first line only, and reading resumes at the line after it (the
     lines it would have swallowed are read again as records); so is a record longer than
     :data:`FIELD_LIMIT` ("field too long").

   So a corruption that keeps a line's quote parity (a lost or extra delimiter, a cut that drops
   an even number of quotes) costs exactly the record it is in; so does a stray quote inside an
   unquoted field. A quote added at the start of a field opens a quoted field, as the grammar
   says: the lines up to the next odd line become one record, malformed unless its fields
   happen to count right. Whatever the damage, every non-empty line ends up in a row or a
   malformed record, and the chunk size changes nothing (``tests/unit/test_csvfile.py`` checks
   these properties on random files).
4. **Parse in bulk with the C parser.** The records of a chunk go through one ``csv.reader``
   (``strict=True``); a record the parser reads as still open (an even count with a stray quote)
   would swallow the next one, so a chunk whose parse does not give one result per record is
   parsed again one record at a time. Rows become tuples column by column: ``zip`` transposes,
   only a column holding the null text is mapped (``{null: None}.get``), ``zip`` builds the rows.

Measured by ``python -m bench csv`` (``bench/results/csv.json``; 11 columns, a third of the rows
with a multi-line note; a shared 2-core machine): 265,000 to 320,000 rows/s, 0.31 to 0.35 times
a bare ``csv.reader`` that only counts its rows (no tuples, no line numbers, nothing held), and a
peak of 34 MB for 100 MB and for 1 GB alike (17 MB of it is the interpreter). Narrow rows (7 short
columns) read at about 700,000 rows/s. Python's garbage collector takes about a fifth of the time
(the rows of a batch are many young objects); the library leaves its settings alone.

Blank lines: a physical line that is entirely empty (``""``, or ``"\r"`` in a CRLF file) between
records is skipped and counted nowhere; a line of delimiters only is an ordinary record. A quote
pair inside an unquoted field (``a "b" c``) is data, as for Python's ``csv``: only an odd count is
detected. Python's ``csv.field_size_limit`` is raised (process-wide) to :data:`FIELD_LIMIT`.
"""

from __future__ import annotations

import csv
import itertools
import logging
import operator
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, BinaryIO, Final, Literal, get_args

from cutover.errors import ConfigError

log = logging.getLogger(__name__)

CsvQuoting = Literal["minimal", "all", "none"]
"""``minimal`` and ``all``: RFC 4180 quoting (a doubled quote inside a quoted field); reading treats
them alike. ``none``: a quote is an ordinary character and a record is one line."""

QUOTINGS: tuple[CsvQuoting, ...] = get_args(CsvQuoting)
ENCODINGS: tuple[str, ...] = ("utf-8", "utf-8-sig", "cp1252")
"""The encodings an extract may declare; ``utf-8`` and ``utf-8-sig`` both strip a leading BOM."""

CHUNK_BYTES = 64 << 10
"""Bytes read and parsed at a time. Measured (narrow rows): 64 KiB reads 2.2 times as fast as 1 MiB,
whose rows, lists and strings no longer fit the CPU's caches while they are parsed; 16 KiB gains
little more."""

HEADER_CHUNK_BYTES = 16 << 10
"""Bytes read at a time by :func:`read_header`, which needs the first record only."""

MALFORMED_PER_BATCH = 10_000
"""A batch ends after this many malformed records even if it has fewer good rows than asked: a file of
garbage must not grow a batch without bound."""

FIELD_LIMIT = 64 << 20
"""The longest physical line (in bytes) and record (in characters); a longer one is ``field too long``."""

QUOTE: Final = '"'
_BOM: Final = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\udc80-\udcff]")
_LF = itertools.repeat("\n")
_OPEN: Final = "open"
"""What :func:`_probe` says of text that ``csv`` leaves inside a quoted field."""


@dataclass(frozen=True)
class CsvFormat:
    """How an extract is written (the profile of a legacy system names it per file).

    >>> CsvFormat(delimiter="|", encoding="cp1252")
    CsvFormat(encoding='cp1252', delimiter='|', quoting='minimal', null='', max_record_lines=200)
    >>> CsvFormat(encoding="latin-1")
    Traceback (most recent call last):
    ...
    cutover.legacy.csvfile.CsvError: csv format: encoding 'latin-1' is not one of utf-8, utf-8-sig, cp1252
    """

    encoding: str = "utf-8"
    """One of :data:`ENCODINGS`; ``utf-8`` also strips a leading BOM (real exports mix both)."""
    delimiter: str = ","
    """One character: ``,``, ``|``, ``\\t``, ``;`` …"""
    quoting: CsvQuoting = "minimal"
    """See :data:`CsvQuoting`."""
    null: str = ""
    """The text of a missing value: a field equal to it (untrimmed, after unquoting) is ``None``."""
    max_record_lines: int = 200
    """A quoted field may span lines (notes); a quote still open after this many lines is unclosed."""

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise CsvError(f"csv format: encoding {self.encoding!r} is not one of {', '.join(ENCODINGS)}")
        if self.quoting not in QUOTINGS:
            raise CsvError(f"csv format: quoting {self.quoting!r} is not one of {', '.join(QUOTINGS)}")
        if len(self.delimiter) != 1 or self.delimiter in '\r\n\x00"':
            raise CsvError("csv format: the delimiter must be one character, not a quote or a line break")
        if self.max_record_lines < 1:
            raise CsvError("csv format: max_record_lines must be at least 1")


class CsvError(ConfigError):
    """The file cannot be read as the table it should be: no header, an unreadable or duplicate header.

    Terminal: retrying cannot help. The message is one line, names the file and never a value.
    """


@dataclass(frozen=True)
class Malformed:
    """A record that is not a row: where it starts, how many physical lines it spans and why (no value)."""

    line: int
    """1-based physical line of the file where the record starts (the header is line 1)."""
    lines: int
    """How many physical lines it spans (at least 1)."""
    reason: str
    """Value-free: ``wrong number of fields (5, expected 7)``, ``unclosed quote``, ``NUL byte``,
    ``undecodable bytes (utf-8)``, ``quote inside an unquoted field``, ``text after a closing
    quote``, ``line break inside an unquoted field``, ``field too long``."""


@dataclass(frozen=True)
class CsvBatch:
    """Good rows of one stretch of the file and the malformed records met in that stretch."""

    rows: list[tuple[str | None, ...]]
    """Each with exactly the header's number of fields, in its order; ``None`` where a field is the null text."""
    lines: list[int]
    """The physical line on which each row starts."""
    malformed: list[Malformed] = field(default_factory=list)
    """Bad records met in this batch's stretch of the file, in file order."""


def read_header(stream: BinaryIO, fmt: CsvFormat, *, name: str) -> list[str]:
    r"""The column names of the file's first record (read in small chunks: the rest is not scanned).

    Raises :class:`CsvError` for an empty file or first line, a header that is not valid CSV or
    not decodable, a column without a name, or a name that appears twice. The stream's position
    afterwards is unspecified: :func:`read_records` reads the header again from the start.

    >>> import io
    >>> read_header(io.BytesIO(b'\xef\xbb\xbfid|"last name"\r\n1|x\r\n'), CsvFormat(delimiter="|"), name="p.csv")
    ['id', 'last name']
    >>> read_header(io.BytesIO(b"id,date,id\n"), CsvFormat(), name="visits.csv")
    Traceback (most recent call last):
    ...
    cutover.legacy.csvfile.CsvError: visits.csv: columns 1 and 3 of the header have the same name
    """
    header, _ = _take_header(_Source(stream, fmt, HEADER_CHUNK_BYTES), name)
    return header


NUL_STAND_IN = "\ud800"
"""What a NUL byte of a file is while it is parsed: a lone surrogate, which strict decoding never
yields (a chunk that failed strict decoding keeps its NULs, and its records with one are malformed)."""


def _with_nul(row: tuple[str | None, ...]) -> tuple[str | None, ...]:
    return tuple(v.replace(NUL_STAND_IN, "\x00") if v else v for v in row)


def read_records(
    stream: BinaryIO, fmt: CsvFormat, *, name: str, batch_rows: int = 10_000
) -> Iterator[CsvBatch]:
    r"""The file's records after the header, in batches of at most ``batch_rows`` good rows.

    ``stream`` must be at the start of the file (the header is read first). Each malformed record
    is attached to the batch in whose stretch of the file it was met: the batch holding the next
    good row, or the last batch. A batch also ends after :data:`MALFORMED_PER_BATCH` malformed
    records, so that a file of garbage is read in bounded memory too; only then, or at the end of
    the file, can a batch have no rows. A file with a header and no records yields nothing. Only
    the header raises (:class:`CsvError`); ``name`` (the file's name) is used in messages only.

    >>> import io
    >>> data = b'id,note\r\n1,"a\r\nb"\r\n2,"never closed\r\n3,c\r\n'
    >>> for batch in read_records(io.BytesIO(data), CsvFormat(), name="notes.csv", batch_rows=1):
    ...     print(batch.rows, batch.lines, [(m.line, m.reason) for m in batch.malformed])
    [('1', 'a\r\nb')] [2] []
    [('3', 'c')] [5] [(4, 'unclosed quote')]
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    source = _Source(stream, fmt, CHUNK_BYTES)
    header, first = _take_header(source, name)
    ncols, source.quick = len(header), True
    rows: list[tuple[str | None, ...]] = []
    lines: list[int] = []
    bad: list[Malformed] = []
    good_total = bad_total = 0
    bad_cap = MALFORMED_PER_BATCH
    for piece in itertools.chain([first], source.pieces):
        new_rows, new_lines, new_bad = source.parse(piece, ncols)
        if source.stood_in:
            new_rows = [
                _with_nul(row) if any(NUL_STAND_IN in (v or "") for v in row) else row for row in new_rows
            ]
        rows += new_rows
        lines += new_lines
        bad += new_bad
        while len(rows) >= batch_rows or len(bad) >= bad_cap:
            # the batch ends at its batch_rows-th row or bad_cap-th malformed record, whichever first
            ends = [lines[batch_rows - 1]] if len(rows) >= batch_rows else []
            ends += [bad[bad_cap - 1].line] if len(bad) >= bad_cap else []
            cut = min(ends)
            n_rows, n_bad = bisect_right(lines, cut), bisect_right(bad, cut, key=attrgetter("line"))
            good_total, bad_total = good_total + n_rows, bad_total + n_bad
            yield CsvBatch(rows[:n_rows], lines[:n_rows], bad[:n_bad])
            rows, lines, bad = rows[n_rows:], lines[n_rows:], bad[n_bad:]
    if rows or bad:
        good_total, bad_total = good_total + len(rows), bad_total + len(bad)
        yield CsvBatch(rows, lines, bad)
    log.info("%s: %d rows, %d malformed records", name, good_total, bad_total)


def count_records(stream: BinaryIO, fmt: CsvFormat, *, name: str) -> tuple[int, int]:
    r"""(good rows, malformed records) of the file after its header, streaming (evidence for a run).

    >>> import io
    >>> count_records(io.BytesIO(b'id,n\n1,a\n\n2\n3,"b\nc"\n'), CsvFormat(), name="x.csv")
    (2, 1)
    """
    good = bad = 0
    for batch in read_records(stream, fmt, name=name):
        good, bad = good + len(batch.rows), bad + len(batch.malformed)
    return good, bad


# --- the machinery ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Chunk:
    """Decoded physical lines of one read, without their ``\\n``."""

    first: int
    lines: list[str] | None
    """None until :func:`_lines` splits ``text``."""
    quoted: bool
    """A quote character occurs in some line."""
    undecodable: bool
    """Some bytes did not decode: the lines carry ``surrogateescape`` escapes."""
    dirty: bool
    """Undecodable bytes, a NUL or an overlong line somewhere: each record needs a look."""
    final: bool
    text: str
    """The lines joined by ``\n`` (as decoded) when the chunk is clean, else empty."""


@dataclass(slots=True)
class _Piece:
    """The records of a chunk, before parsing, and the records already known to be bad."""

    records: list[str]
    starts: Sequence[int]
    spans: dict[int, int]
    """Start line → physical lines, for the records spanning more than one line."""
    bad: list[Malformed]
    guessed: _Chunk | None = None
    """The chunk, when its records were grouped by :meth:`_Source._split_quoted` (to group again)."""


class _Source:
    """One pass over a stream: chunks of lines, records, parsed rows."""

    def __init__(self, stream: BinaryIO, fmt: CsvFormat, chunk_bytes: int) -> None:
        self.stream, self.fmt, self.chunk_bytes = stream, fmt, chunk_bytes
        self.limit = FIELD_LIMIT
        if csv.field_size_limit() < self.limit:
            csv.field_size_limit(self.limit)
        self.codec = "cp1252" if fmt.encoding == "cp1252" else "utf-8"
        self.dialect: Any = csv.reader(
            [],
            delimiter=fmt.delimiter,
            quotechar=QUOTE,
            doublequote=True,
            skipinitialspace=False,
            strict=True,
            quoting=csv.QUOTE_NONE if fmt.quoting == "none" else csv.QUOTE_MINIMAL,
        ).dialect  # the C dialect object: csv.reader takes it as is, no attribute look-ups per call
        self.too_long: set[int] = set()
        """Lines longer than the limit (their text is dropped: a stand-in keeps their quote parity)."""
        self.carry: list[str] = []
        """The lines of a record still open at the end of the last chunk (at most ``max_record_lines``)."""
        self.carry_first = 0
        self.carry_odd: list[int] = []
        self.carry_probe: tuple[int, str | None] = (0, None)
        """The carried record's first line and what :func:`_probe` said of it (not asked again per chunk)."""
        self.carry_undecodable = self.carry_dirty = False
        self.quick = False
        self.stood_in = False
        """Whether a NUL byte of the file travels as :data:`NUL_STAND_IN` (restored in the rows)."""
        """Group clean chunks with :meth:`_split_quoted` (set once the header is read)."""
        self.pieces = self._pieces()
        """The file's records, a piece per chunk: one iterator, shared by the header and the rows."""

    # bytes → lines

    def chunks(self) -> Iterator[_Chunk]:
        read, size, limit, codec = self.stream.read, self.chunk_bytes, self.limit, self.codec
        held: list[bytes] = []  # the start of a line whose "\n" is not read yet (joined once, when it is)
        held_bytes = 0
        line_no = 1
        prefix: list[str] = []  # markers of overlong lines, ahead of the next chunk's lines
        skipping, skip_quotes = False, 0
        data = read(size)
        if codec == "utf-8":
            while 0 < len(data) < len(_BOM):  # a stream may return short reads
                more = read(size)
                if not more:
                    break
                data += more
            if data.startswith(_BOM):
                data = data[len(_BOM) :] or read(size)
        while True:
            eof = not data
            if skipping:  # the rest of a line longer than the limit, up to its "\n"
                cut = data.find(b"\n")
                skip_quotes += data.count(b'"', 0, len(data) if cut < 0 else cut)
                if cut < 0 and not eof:
                    data = read(size)
                    continue
                data = b"" if cut < 0 else data[cut + 1 :]
                self.too_long.add(line_no + len(prefix))
                prefix.append(_marker(skip_quotes))
                skipping = False
            if not eof and b"\n" not in data:
                held_bytes += len(data)
                if held_bytes > limit:  # no line break in sight: drop the line rather than hold it
                    skipping, skip_quotes = True, sum(part.count(b'"') for part in [*held, data])
                    held, held_bytes = [], 0
                else:
                    held.append(data)
                data = read(size)
                continue
            buf = b"".join([*held, data]) if held else data
            if eof:
                body, held, held_bytes = buf, [], 0
            else:
                cut = buf.rfind(b"\n")
                body, rest = buf[:cut], buf[cut + 1 :]
                held, held_bytes = ([rest], len(rest)) if rest else ([], 0)
            try:
                text, undecodable = body.decode(codec), False
            except UnicodeDecodeError:
                text, undecodable = body.decode(codec, "surrogateescape"), True
            if "\x00" in text and not undecodable:
                # a NUL is data (a legacy note's control character, which the mapping cleans), but the
                # grouping and Python's csv cannot carry it: it travels as a lone surrogate, which no
                # strict decoding produces, and is restored in the rows (read_records)
                text, self.stood_in = text.replace("\x00", NUL_STAND_IN), True
            some = bool(body) or not eof  # not eof: the body ends at a "\n", so it is one line at least
            lines = None  # split when needed: grouping a clean chunk works on its text
            marked = bool(prefix)
            if len(body) > limit:  # a line's length in bytes, as when it streams by without a "\n"
                lines = text.split("\n")
                for i, line in enumerate(lines):
                    if len(line) * 4 > limit and len(line.encode(codec, "surrogateescape")) > limit:
                        self.too_long.add(line_no + len(prefix) + i)
                        lines[i], marked = _marker(line.count(QUOTE)), True
            dirty = undecodable or marked or "\x00" in text
            quoted = QUOTE in text or marked
            if dirty or not some:
                lines = prefix + (lines if lines is not None else text.split("\n") if some else [])
                prefix = []
                yield _Chunk(line_no, lines, quoted, undecodable, dirty, eof, "")
                line_no += len(lines)
            else:
                yield _Chunk(line_no, lines, quoted, False, False, eof, text)
                line_no += text.count("\n") + 1
            if eof:
                return
            data = read(size)

    # lines → records

    def _pieces(self) -> Iterator[_Piece]:
        for chunk in self.chunks():
            yield self.assemble(chunk)

    def assemble(self, chunk: _Chunk) -> _Piece:
        quick = self.quick and bool(chunk.text) and self.fmt.quoting != "none"
        if quick and self.carry and not self.carry_dirty:  # the open record goes ahead of the chunk
            text = "\n".join(self.carry) + "\n" + chunk.text
            chunk = _Chunk(self.carry_first, None, True, False, False, chunk.final, text)
            self.carry = []
        if quick and chunk.quoted and not self.carry:
            piece = self._split_quoted(chunk)
            if piece is not None:
                return piece
        lines, first, quoted = _lines(chunk), chunk.first, chunk.quoted
        undecodable, dirty = chunk.undecodable, chunk.dirty
        if quoted and self.fmt.quoting != "none":
            odd = [i for i, line in enumerate(lines) if line.count(QUOTE) & 1]
        else:
            odd = []
        if self.carry:  # its lines were counted already: a 64 MiB line is not counted again per chunk
            held = len(self.carry)
            odd = self.carry_odd + [held + i for i in odd]
            lines, first = self.carry + lines, self.carry_first
            undecodable, dirty = undecodable or self.carry_undecodable, dirty or self.carry_dirty
            self.carry = []
        if odd:
            piece = self._group(lines, first, odd, chunk.final)
            if self.carry:
                self.carry_undecodable, self.carry_dirty = undecodable, dirty
        else:  # no quote: every line is a record
            piece = _Piece(lines, range(first, first + len(lines)), {}, [])
        if dirty:
            self._screen(piece, undecodable)
        return piece

    def _group(self, lines: list[str], first: int, odd: list[int], final: bool) -> _Piece:
        """Records by quote parity (see the module's docstring); may leave an open record in ``carry``."""
        records: list[str] = []
        starts: list[int] = []
        spans: dict[int, int] = {}
        bad: list[Malformed] = []
        dialect, reader, limit = self.dialect, csv.reader, self.limit
        max_lines, n, pos, k = self.fmt.max_record_lines, len(lines), 0, 0
        while k < len(odd):
            at = odd[k]
            records += lines[pos:at]
            starts += range(first + pos, first + at)
            line_no = first + at
            pos, k = at + 1, k + 1  # unless a record closes below: then read on after it
            closer = odd[k] if k < len(odd) and odd[k] - at < max_lines else -1
            if closer >= 0:  # the next odd line closes it, if all is well
                record = "\n".join(lines[at : closer + 1])
                if len(record) <= limit:
                    try:
                        next(reader((record,), dialect), None)
                    except csv.Error as exc:
                        if _probe(lines[at], dialect) is None:  # csv reads the first line as a whole record
                            bad.append(self._bad(line_no, 1, "quote inside an unquoted field"))
                        else:  # the quotes pair up: one record, a malformed one
                            bad.append(self._bad(line_no, closer - at + 1, _reason(exc)))
                            pos, k = closer + 1, k + 1
                    else:
                        records.append(record)
                        starts.append(line_no)
                        spans[line_no] = closer - at + 1
                        pos, k = closer + 1, k + 1
                    continue
            # No closing line within reach: report the first line only and read on from the next.
            known = self.carry_probe
            reason = known[1] if known[0] == line_no else _probe(lines[at], dialect)
            if reason is None:  # csv reads it as a whole record: an odd quote sits inside an unquoted field
                reason = "quote inside an unquoted field"
            elif closer >= 0 or sum(map(len, lines[at : at + max_lines])) > limit:
                reason = "field too long"
            elif final or k < len(odd) or n - at >= max_lines:
                reason = "unclosed quote" if reason == _OPEN else reason
            else:  # it may close in the next chunk
                self.carry, self.carry_first, pos = lines[at:], line_no, n
                self.carry_odd, self.carry_probe = [i - at for i in odd[k - 1 :]], (line_no, reason)
                break
            bad.append(self._bad(line_no, 1, reason))
        records += lines[pos:]
        starts += range(first + pos, first + n)
        return _Piece(records, starts, spans, bad)

    def _split_quoted(self, chunk: _Chunk) -> _Piece | None:
        """The records of a clean chunk grouped by quote parity in C (None: leave it to :meth:`_group`).

        Splitting the text at its quotes, every other piece is inside a quoted field: its line
        breaks are record-internal. They become NULs (a clean chunk has none), the text splits into
        records at the remaining ones, and the NULs are line breaks again. This is the grouping
        of :meth:`_group` when every multi-line record turns out well-formed, in a fraction of its
        time; :meth:`parse` groups the chunk again with :meth:`_group` when one does not. A record
        still open at the end of the chunk is carried to the next one.
        """
        text, max_lines = chunk.text, self.fmt.max_record_lines
        pieces = text.split(QUOTE)
        if len(text) > self.limit or (len(pieces) % 2 == 0 and chunk.final):
            return None
        for i in itertools.compress(range(1, len(pieces), 2), map(operator.contains, pieces[1::2], _LF)):
            pieces[i] = pieces[i].replace("\n", "\x00")
        records = QUOTE.join(pieces).split("\n")
        inner = list(map(str.count, records, itertools.repeat("\x00")))
        if max(inner) >= max_lines:
            return None
        starts = list(itertools.accumulate(map((1).__add__, inner), initial=chunk.first))
        starts.pop()
        if len(pieces) % 2 == 0:  # the last record is still open: its lines go ahead of the next chunk
            carry = records.pop().split("\x00")
            self.carry, self.carry_first = carry, starts.pop()
            self.carry_odd = [i for i, line in enumerate(carry) if line.count(QUOTE) & 1]
            self.carry_probe, self.carry_undecodable, self.carry_dirty = (0, None), False, False
            inner.pop()
        spans: dict[int, int] = {}
        for i in itertools.compress(range(len(records)), inner):
            records[i] = records[i].replace("\x00", "\n")
            spans[starts[i]] = inner[i] + 1
        return _Piece(records, starts, spans, [], chunk)

    def _bad(self, line: int, lines: int, reason: str) -> Malformed:
        """A malformed record; one holding a line longer than the limit is that, whatever else is wrong."""
        if self.too_long and not self.too_long.isdisjoint(range(line, line + lines)):
            reason = "field too long"
        return Malformed(line, lines, reason)

    def _screen(self, piece: _Piece, undecodable: bool) -> None:
        """Move the records with an overlong line, a NUL or undecodable bytes to ``piece.bad``."""
        records: list[str] = []
        starts: list[int] = []
        bad, spans, too_long = piece.bad, piece.spans, self.too_long
        for record, start in zip(piece.records, piece.starts, strict=True):
            span = spans.get(start, 1)
            if too_long and not too_long.isdisjoint(range(start, start + span)):
                reason = "field too long"
            elif "\x00" in record:
                reason = "NUL byte"
            elif undecodable and _SURROGATE.search(record):
                reason = f"undecodable bytes ({self.codec})"
            else:
                records.append(record)
                starts.append(start)
                continue
            spans.pop(start, None)
            bad.append(Malformed(start, span, reason))
        bad.sort(key=attrgetter("line"))
        piece.records, piece.starts = records, starts

    # records → rows

    def parse(self, piece: _Piece, ncols: int) -> tuple[list[Any], list[int], list[Malformed]]:
        """The piece's good rows (as tuples), their lines, and its malformed records in file order."""
        records, starts, spans = piece.records, piece.starts, piece.spans
        null = self.fmt.null
        null_of = {null: None}.get
        parsed, errors = _parse_all(records, self.dialect)
        if errors and piece.guessed and any(starts[i] in spans for i in errors):  # group it with care
            chunk, self.carry = piece.guessed, []  # _group carries what is open at its end anew
            physical = _lines(chunk)
            odd = [i for i, line in enumerate(physical) if line.count(QUOTE) & 1]
            self.carry_undecodable = self.carry_dirty = False  # a guessed chunk is clean
            return self.parse(self._group(physical, chunk.first, odd, chunk.final), ncols)
        if not errors and parsed and set(map(len, parsed)) == {ncols}:
            # Column by column: only a column holding the null text is mapped, and zip builds the
            # row tuples in C (half the time of a tuple(map(...)) per row, measured on 11 columns).
            columns: list[Any] = list(zip(*parsed, strict=True))
            for i, column in enumerate(columns):
                if null in column:
                    columns[i] = map(null_of, column, column)
            return list(zip(*columns, strict=True)), list(starts), piece.bad
        rows: list[tuple[str | None, ...]] = []
        lines: list[int] = []
        bad: list[Malformed] = []
        for i, (row, start) in enumerate(zip(parsed, starts, strict=True)):
            if row is None:
                bad.append(Malformed(start, spans.get(start, 1), errors[i]))
            elif len(row) == ncols:
                rows.append(tuple(map(null_of, row, row)))
                lines.append(start)
            elif row or records[i] not in ("", "\r"):  # an entirely empty line is skipped
                reason = f"wrong number of fields ({len(row)}, expected {ncols})"
                bad.append(Malformed(start, spans.get(start, 1), reason))
        if piece.bad:
            bad = sorted(bad + piece.bad, key=attrgetter("line"))
        return rows, lines, bad


def _lines(chunk: _Chunk) -> list[str]:
    if chunk.lines is None:
        chunk.lines = chunk.text.split("\n")
    return chunk.lines


def _take_header(source: _Source, name: str) -> tuple[list[str], _Piece]:
    """The header (the record on line 1) and what is left of the piece it was in."""
    for piece in source.pieces:
        if piece.bad and piece.bad[0].line == 1:
            raise CsvError(f"{name}: bad header line ({piece.bad[0].reason})")
        if not piece.records:
            continue
        record = piece.records[0]
        try:
            header = next(csv.reader((record,), source.dialect), [])
        except csv.Error as exc:
            raise CsvError(f"{name}: bad header line ({_reason(exc)})") from None
        if not header:
            raise CsvError(f"{name}: no header line (the first line is empty)")
        seen: dict[str, int] = {}
        for number, column in enumerate(header, start=1):
            if column == "":
                raise CsvError(f"{name}: column {number} of the header has no name")
            if column in seen:
                # positions only: a file delivered without its header has a patient's values here
                raise CsvError(
                    f"{name}: columns {seen[column]} and {number} of the header have the same name"
                )
            seen[column] = number
        piece.spans.pop(1, None)
        return header, _Piece(piece.records[1:], piece.starts[1:], piece.spans, piece.bad)
    raise CsvError(f"{name}: no header line")


def _parse_all(records: list[str], dialect: Any) -> tuple[list[Any], dict[int, str]]:
    """One ``csv`` result per record (``None`` where it failed) and the reasons of the failures."""
    reader = csv.reader(records, dialect)
    parsed: list[Any] = []
    errors: dict[int, str] = {}
    while True:
        try:
            parsed.extend(reader)  # extend keeps what it took before an error; the reader resumes after it
            break
        except csv.Error as exc:
            errors[len(parsed)] = _reason(exc)
            parsed.append(None)
    if len(parsed) == len(records):  # every result took one record
        return parsed, errors
    # A record csv read as still open took the next one: read them one at a time (rare, slower).
    parsed, errors = [], {}
    for i, record in enumerate(records):
        try:
            parsed.append(next(csv.reader((record,), dialect), []))
        except csv.Error as exc:
            errors[i] = _reason(exc)
            parsed.append(None)
    return parsed, errors


def _probe(text: str, dialect: Any) -> str | None:
    """None if ``csv`` reads ``text`` as one whole record, :data:`_OPEN` if it ends inside quotes, else why not.

    >>> d = csv.reader([], strict=True).dialect
    >>> _probe('a,"b', d), _probe('a,5\\'10"', d), _probe('"a"b,c', d)
    ('open', None, 'text after a closing quote')
    """
    try:
        next(csv.reader((text,), dialect), None)
    except csv.Error as exc:
        return _OPEN if "unexpected end of data" in str(exc) else _reason(exc)
    return None


def _reason(exc: csv.Error) -> str:
    """The value-free reason for a ``csv`` error (its message may quote the delimiter: map it)."""
    message = str(exc)
    if "expected after" in message:
        return "text after a closing quote"
    if "unexpected end of data" in message:  # csv still in quotes where parity said the record ended
        return "quote inside an unquoted field"
    if "new-line character" in message:
        return "line break inside an unquoted field"
    if "field larger than field limit" in message:
        return "field too long"
    return "not valid CSV"


def _marker(quotes: int) -> str:
    """The line that stands in for an overlong one: its quote parity, so records still pair up."""
    return QUOTE * (quotes & 1)
