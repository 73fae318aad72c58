"""Draft a legacy profile for a legacy system nobody has profiled yet: ``cutover profile draft``.

:func:`write_draft` reads the legacy database's own catalog (``sqlite_master`` and ``PRAGMA
table_info``; ``information_schema`` of the URL's search path in PostgreSQL, of the URL's database
in MySQL/MariaDB), samples every table, and writes a profile in the format of the built-in
``simulator.yaml``, every suggestion with its reason as a YAML comment and everything undecided as
``TODO`` (the profile check refuses a profile that still holds one). What it proposes:

- each column's logical type (``int`` for keys and references whose values are whole numbers,
  ``blob`` for files, ``text`` otherwise: legacy systems store numbers and dates as text);
- the key: a column whose sampled values are unique and non-null (an ``*_id`` name and the first
  column preferred), confirmed on the whole table by ``COUNT(DISTINCT)``;
- parent relations by value containment: at least :data:`PARENT_SHARE` of a column's sampled
  values are another table's key values (checked by the database, a join of the sample against
  the parent's key) and the names are close; weaker candidates are written as comments;
- the target table of each legacy table and the target field of each column, from names
  (:func:`~cutover.legacy.profile_draft_measure.similarity`) and the values' patterns
  (:func:`~cutover.legacy.profile_draft_measure.value_facts`), with a rule of the mapping library
  and its parameters; a table no name places, that a placed table's relation points to, from the
  one foreign key of that table's target left for it (:func:`_targets_of_parents`);
- for the patient-safety tables (allergies, medications, precautions: :func:`_safety`), what the
  profile check asks of them: the allergen and precaution-kind rules, ``invalid: flag`` where a rule
  could reject, no field required, what the code tables leave kept (``uncoded_text``), the record's
  key in ``source_records`` and ``duplicates`` merging a record entered twice for a patient. A code
  table (the practice's codes) is a ``TODO`` written once: the fields that read it alias it.

**A delivery of CSV files** (``csv:///folder``, ``sftp://…``: :mod:`cutover.legacy.transport`) is
drafted by the same code (:func:`survey_delivery`): each ``*.csv`` file is a table (named by its
stem in snake_case), its header the columns; a bounded sample of its records
(:func:`~cutover.legacy.csvfile.read_records`, stopped after :data:`SAMPLE_ROWS`) goes into a
temporary SQLite database, which is then surveyed like any legacy database. The draft adds the
delivery's format: the delimiter sniffed from each header line, the encoding found on the sample
(UTF-8 where it decodes strictly, a byte-order mark or not, Windows-1252 otherwise), the profile's
``source`` from what most files have and a table's ``csv`` where its file differs, each table's
file name, and ``changes.export_flag`` where a column named so holds only 1, 2 and 3. Why a
temporary database rather than a second drafter: keys, relations (joins of samples), targets and
rules stay one implementation, and the CSV path is only the sampling and the format.

Bounded: at most :data:`SAMPLE_ROWS` rows of a table are read (the first the database returns),
each value cut to :data:`VALUE_CHARS` characters by the database, and one table's sample is held
at a time; memory follows the number of columns, never a table's size. The whole table is only
counted (``COUNT(*)``, the key's ``COUNT(DISTINCT)``), never loaded. A delivered file is read up
to its sample only (its key is then unique in the sample: confirmed by a person, a ``TODO``),
and the samples wait on disk in a private temporary folder, removed when the draft is written.
The draft holds names, counts and shares: no value of the database.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cutover.errors import ConfigError, CutoverError, TransientError
from cutover.legacy.csvfile import CsvError, CsvFormat, read_header, read_records
from cutover.legacy.profile_draft_measure import (
    FIELD_ALIASES,
    ICD_PARTS,
    NAME_PARTS,
    PATTERN_WORDS,
    STRONG,
    TODO,
    Pattern,
    ValueFacts,
    choose_rule,
    expects,
    field_score,
    similarity,
    spelled_out,
    value_facts,
    words,
)
from cutover.legacy.profile_rules import NEVER_REJECTING
from cutover.legacy.schema import ColumnType, Dialect
from cutover.legacy.source import connect, dialect_of
from cutover.legacy.transport import DeliverySource, is_delivery, open_delivery
from cutover.mapping.safety import UNMAPPED
from cutover.target import SAFETY_TABLES
from cutover.target.columns import TargetColumn, target_columns

log = logging.getLogger(__name__)

SAMPLE_ROWS = 20_000
"""Rows sampled per table: every share in the draft is of at most this many values."""
VALUE_CHARS = 256
"""Characters (bytes of a binary column) of each sampled value the database returns: a sample of
scanned documents or long notes stays small."""
FETCH_ROWS = 2_000
"""Rows fetched at a time while sampling."""
PARENT_SHARE = 0.98
"""Share of a column's sampled values found among a table's key values for a parent relation."""
PARENT_NAME = 0.6
"""Name similarity a contained column named like an id needs to its parent (0.85 for other names:
small numbers, a priority or a count of units, are in every key range)."""
TABLE_SCORE = 0.55
"""Score a target table needs: 0.6 × name similarity (of the table, or of its key: ``ApptID``) + 0.4 ×
the share of its columns (of 5 at least) close to the target's fields."""
FIELD_SCORE = 0.75
"""Score a target field needs: name similarity plus the pattern bonus (up to 0.6)."""
_COMPANIONS = frozenset({*ICD_PARTS, "sha256"})
"""Fields a column gives beside its main one (an ICD code's source, a document's digest): filled
from that column, not matched on their own (so are the name parts and the credentials after a
clinician's name, when no column of their own matched)."""
_SAFETY_MADE = frozenset({"unmapped_text", "source_records", "substance_coded", "kind_from_text"})
"""Fields of the patient-safety tables the draft fills itself, never matched to a column by name:
what the code tables leave, the record's own ids, what is read from another field's column."""
SAFETY_SAME: dict[str, tuple[str, ...]] = {
    "allergy": ("no_known_allergies", "substance", "reaction", "severity", "status"),
    "medication": ("name", "dose_text", "status"),
    "precaution": ("kind", "description", "starts_on", "ends_on"),
}
"""The fields that make two safety records of one patient one record entered twice (``duplicates``'
``same``, those mapped), as the built-in profiles compare them: what was recorded, not when."""
_ALLERGEN_PARTS = {"substance": "substance", "no_known_allergies": "no_known", "substance_coded": "coded"}
"""Allergy fields one allergen text gives: field → the ``allergen`` rule's ``part``."""
_EXPLODED = ("cpt_code", "units", "minutes", "modifiers")
"""The columns the ``cpt_lines`` explode step makes."""
_CHANGE_WORDS = frozenset({"updated", "changed", "update", "change", "edited"})
_BINARY_TYPES = re.compile(r"blob|bytea|binary|image|raw")
_NUMERIC_TYPES = re.compile(r"int|serial|numeric|decimal|real|double|float|number")
_CHANGES_REASON = (
    "the legacy change timestamp: read by the delta sync to find rows changed after a wave's cutover"
)


# --- what the database says ----------------------------------------------------------------------------
@dataclass
class Column:
    name: str
    declared: str
    """The catalog's type, lower case ('' when none)."""
    facts: ValueFacts

    @property
    def binary(self) -> bool:
        return self.facts.share("binary") > 0.5


@dataclass
class Relation:
    column: str
    parent: str
    parent_key: str
    share: float
    sampled: int
    name: float
    doubt: str = ""
    """Why a candidate is not taken."""

    def why(self) -> str:
        return (
            f"{self.share:.0%} of {self.sampled:,} sampled values are {self.parent}.{self.parent_key} values; "
            f"name similarity {self.name:.2f}"
        )


@dataclass(frozen=True)
class CsvFile:
    """What a draft says of one file of a CSV delivery: its name, sizes, counts and format, no value."""

    name: str
    bytes: int
    encoding: str
    """``utf-8`` (the sampled rows decode strictly; a BOM too) or ``cp1252`` (they do not)."""
    bom: bool
    delimiter: str
    complete: bool
    """The sample reached the end of the file: every row of it was read."""
    malformed: int
    """Records of the sample that are not rows (wrong number of fields, undecodable…)."""
    export_flag: str | None = None
    """A column named ``export_flag`` whose sampled values are all 1, 2 or 3 (new, modified, removed)."""


@dataclass
class Table:
    name: str
    rows: int
    sampled: int
    columns: list[Column]
    key: str | None = None
    key_why: str = ""
    parents: list[Relation] = field(default_factory=list)
    candidates: list[Relation] = field(default_factory=list)
    file: CsvFile | None = None
    """The delivered file the table is sampled from (None: a table of a database)."""

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def all_rows(self, count: int) -> str:
        """The rows a check on the whole table saw: of a file read in part, only the sample's."""
        if self.file is None:
            return f"all {count:,} rows (COUNT DISTINCT)"
        if self.file.complete:
            return f"all {count:,} rows of the file"
        return f"the {count:,} rows sampled ({TODO} confirm on the whole file)"

    @property
    def numeric_key(self) -> bool:
        return self.key is not None and self.column(self.key).facts.integral


def _q(dialect: Dialect, name: str) -> str:
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _sqlite_text(raw: bytes) -> str:
    # legacy text stored raw is UTF-8 or cp1252 (as the extract reads it); BLOBs stay bytes
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


@contextlib.contextmanager
def _open(url: str) -> Iterator[Any]:
    with connect(url) as conn:
        if dialect_of(url) == "sqlite":
            conn.text_factory = _sqlite_text
        yield conn


def _all(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    with contextlib.closing(cur):
        cur.execute(sql, params) if params else cur.execute(sql)
        return list(cur.fetchall())


def catalog(conn: Any, dialect: Dialect) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every table and its (column, declared type), as the database's own catalog lists them."""
    if dialect == "sqlite":
        names = [
            _text(r[0])
            for r in _all(conn, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
            if not _text(r[0]).startswith("sqlite_")
        ]
        return [
            (
                n,
                [
                    (_text(r[1]), _text(r[2] or "").lower())
                    for r in _all(conn, f"PRAGMA table_info({_q(dialect, n)})")
                ],
            )
            for n in names
        ]
    schema = "current_schema()" if dialect == "postgresql" else "DATABASE()"
    tables = [
        _text(r[0])
        for r in _all(
            conn,
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = {schema} AND table_type = 'BASE TABLE' ORDER BY table_name",
        )
    ]
    columns: dict[str, list[tuple[str, str]]] = {t: [] for t in tables}
    for table, column, kind in _all(
        conn,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = {schema} ORDER BY table_name, ordinal_position",
    ):
        if _text(table) in columns:
            columns[_text(table)].append((_text(column), _text(kind).lower()))
    return [(t, columns[t]) for t in tables]


def _cut(dialect: Dialect, name: str, declared: str) -> str:
    """The column as sampled: text and bytes cut to :data:`VALUE_CHARS` by the database."""
    col = _q(dialect, name)
    binary = bool(_BINARY_TYPES.search(declared))
    if dialect == "sqlite":  # any column may hold any value there: every one is cut
        return f"substr({col}, 1, {VALUE_CHARS})"
    if dialect == "postgresql":
        return (
            f"substring({col} from 1 for {VALUE_CHARS})"
            if binary
            else f"left(CAST({col} AS text), {VALUE_CHARS})"
        )
    return f"SUBSTRING({col}, 1, {VALUE_CHARS})" if binary else f"LEFT(CAST({col} AS CHAR), {VALUE_CHARS})"


def sample_table(conn: Any, dialect: Dialect, name: str, declared: list[tuple[str, str]]) -> Table:
    """One table's row count and its columns' facts from at most :data:`SAMPLE_ROWS` rows."""
    ((rows,),) = _all(conn, f"SELECT COUNT(*) FROM {_q(dialect, name)}")
    exprs = ", ".join(_cut(dialect, c, t) for c, t in declared)
    values: list[list[Any]] = [[] for _ in declared]
    cur = conn.cursor()
    with contextlib.closing(cur):
        cur.execute(f"SELECT {exprs} FROM {_q(dialect, name)} LIMIT {int(SAMPLE_ROWS)}")
        while batch := cur.fetchmany(FETCH_ROWS):
            for row in batch:
                for i, value in enumerate(row):
                    values[i].append(
                        None if value is None else value if isinstance(value, str | bytes) else str(value)
                    )
    sampled = len(values[0]) if values else 0
    columns = [
        Column(c, t, value_facts(v, binary_column=bool(_BINARY_TYPES.search(t))))
        for (c, t), v in zip(declared, values, strict=True)
    ]
    return Table(name, int(rows), sampled, columns)


def _id_named(column: str) -> bool:
    return bool(words(column)) and words(column)[-1] in {"id", "key", "no", "number", "num", "code", "ref"}


def choose_key(conn: Any, dialect: Dialect, table: Table) -> None:
    """The first candidate key that holds on the whole table (``COUNT(DISTINCT)``).

    Candidates: columns whose sampled values are unique, in at least 99% of the rows (a legacy key
    left blank on a row or two is still the key: the person finishing the draft confirms it),
    named like an id first, then like the table, then in column order.
    """
    singular = " ".join(words(table.name))

    def keyish(c: Column) -> bool:
        f = c.facts
        return not c.binary and f.present > 0 and f.distinct == f.present and f.present >= 0.99 * f.sampled

    ranked = sorted(
        (c for c in table.columns if keyish(c)),
        key=lambda c: (
            not _id_named(c.name),
            not c.facts.unique,
            -similarity(c.name, f"{singular} id"),
            table.columns.index(c),
        ),
    )
    for column in ranked[:3]:
        col = _q(dialect, column.name)
        ((count, present, distinct),) = _all(
            conn, f"SELECT COUNT(*), COUNT({col}), COUNT(DISTINCT {col}) FROM {_q(dialect, table.name)}"
        )
        if not (distinct == present and present >= 0.99 * count and count):
            continue
        table.key = column.name
        reasons = [f"unique in {table.all_rows(count)}"]
        missing = column.facts.sampled - column.facts.present
        if present == count and not missing:
            reasons[0] = f"unique and non-null in {table.all_rows(count)}"
        else:
            reasons.append(
                f"{TODO} confirm: {missing:,} of {column.facts.sampled:,} sampled rows have no value"
            )
        if table.columns.index(column) == 0:
            reasons.append("the first column")
        if _id_named(column.name):
            reasons.append("named like an id")
        table.key_why = "; ".join(reasons)
        return
    unique = ", ".join(c.name for c in ranked[:3]) or "none"
    table.key_why = f"no column is unique and non-null in the sample (candidates checked: {unique})"


def _contained(conn: Any, dialect: Dialect, child: Table, column: Column, parent: Table) -> tuple[int, int]:
    """(sampled non-null values, how many are the parent's key values): the database joins them."""
    assert parent.key is not None
    key = parent.column(parent.key)
    value, ref = "s.v", f"p.{_q(dialect, parent.key)}"
    if dialect == "postgresql" and bool(_NUMERIC_TYPES.search(column.declared)) != bool(
        _NUMERIC_TYPES.search(key.declared)
    ):
        value, ref = f"CAST({value} AS text)", f"CAST({ref} AS text)"
    col = _q(dialect, column.name)
    ((n, found),) = _all(
        conn,
        f"SELECT COUNT(*), COUNT({ref}) FROM (SELECT {col} AS v FROM {_q(dialect, child.name)} "
        f"WHERE {col} IS NOT NULL LIMIT {int(SAMPLE_ROWS)}) s "
        f"LEFT JOIN {_q(dialect, parent.name)} p ON {ref} = {value}",
    )
    return int(n), int(found)


def _parent_name(column: str, parent: Table) -> float:
    assert parent.key is not None
    return max(similarity(column, parent.key), similarity(column, f"{parent.name}_id"))


def find_parents(conn: Any, dialect: Dialect, tables: list[Table]) -> None:
    """Parent relations by containment of a column's sampled values in another table's key.

    Small numbers (a priority, a count of units) are in every key range: a relation is taken where
    at least :data:`PARENT_SHARE` of the values are contained and the names agree; weaker ones are
    candidates. Only pairs whose names could agree are asked (a schema of hundreds of tables is not
    joined table by table). Relations that form a cycle lose their weakest to the candidates
    (:func:`_break_cycles`).
    """
    keyed = [t for t in tables if t.key is not None]
    for table in tables:
        for column in table.columns:
            if column.name == table.key or column.binary or not column.facts.present:
                continue
            named = _id_named(column.name)
            found: list[Relation] = []
            for parent in keyed:
                name = _parent_name(column.name, parent) if parent is not table else 0.0
                if column.facts.integral != parent.numeric_key or name < (0.4 if named else 0.7):
                    continue  # the names could not agree: not asked
                n, hits = _contained(conn, dialect, table, column, parent)
                if n:
                    found.append(Relation(column.name, parent.name, parent.key or "", hits / n, n, name))
            accepted = [
                r
                for r in found
                if r.share >= PARENT_SHARE and (r.name >= 0.85 or (named and r.name >= PARENT_NAME))
            ]
            if accepted:
                table.parents.append(max(accepted, key=lambda r: (r.name, r.share)))
                continue
            weaker = [
                r
                for r in found
                if (r.share >= 0.5 and r.name >= (PARENT_NAME if named else 0.7))
                or (named and r.share >= PARENT_SHARE)
            ]
            for r in weaker:
                r.doubt = (
                    f"{r.share:.0%} contained, below {PARENT_SHARE:.0%}"
                    if r.share < PARENT_SHARE
                    else f"names {r.name:.2f} alike, {0.85 if not named else PARENT_NAME:.2f} wanted"
                    + ("" if named else f" for {column.name}, not named like an id")
                )
            table.candidates += sorted(weaker, key=lambda r: (-r.name, -r.share))[:2]
    _break_cycles(tables)


def _cycle(tables: list[Table]) -> list[tuple[Table, Relation]]:
    """The relations of one cycle of parent relations (child, relation), or none."""
    by_name = {t.name: t for t in tables}
    state: dict[str, str] = {}
    path: list[tuple[Table, Relation]] = []

    def visit(table: Table) -> list[tuple[Table, Relation]]:
        state[table.name] = "open"
        for rel in table.parents:
            path.append((table, rel))
            if state.get(rel.parent) == "open":
                return path[next(i for i, (t, _) in enumerate(path) if t.name == rel.parent) :]
            if rel.parent not in state and (found := visit(by_name[rel.parent])):
                return found
            path.pop()
        state[table.name] = "done"
        return []

    return next((found for t in tables if t.name not in state and (found := visit(t))), [])


def _break_cycles(tables: list[Table]) -> None:
    """No cycle of parent relations (the profile check refuses one): the relation of a cycle whose
    name agrees least (then the least contained) becomes a candidate, until none is left. A wide
    table's small codes (a type, a company) are contained in many a key range and close one.
    """
    while cycle := _cycle(tables):
        table, rel = min(cycle, key=lambda tr: (tr[1].name, tr[1].share))
        table.parents.remove(rel)
        shown = " → ".join([*(t.name for t, _ in cycle), cycle[0][0].name])
        rel.doubt = f"the weakest relation of a cycle: {shown}"
        table.candidates.append(rel)


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """A driver's error as Cutover's, naming what was read (never the driver's text: it may quote a value)."""
    try:
        yield
    except CutoverError:
        raise
    except Exception as exc:
        raise TransientError(f"profile draft: reading {what} failed ({type(exc).__name__})") from exc


def survey(url: str, files: Mapping[str, CsvFile] | None = None) -> tuple[Dialect, list[Table]]:
    """Every table of the legacy database at ``url``: counted, sampled, keyed, related.

    ``files``: the delivered file each table was sampled from (:func:`survey_delivery`).
    """
    dialect = dialect_of(url)
    with _open(url) as conn:
        with _reading("the catalog"):
            listed = [(name, cols) for name, cols in catalog(conn, dialect) if cols]
        tables = []
        for name, cols in listed:
            with _reading(f"table {name}"):
                tables.append(sample_table(conn, dialect, name, cols))
                tables[-1].file = (files or {}).get(name)
                choose_key(conn, dialect, tables[-1])
        with _reading("the parent relations"):
            find_parents(conn, dialect, tables)
    log.info("profile draft: %d tables surveyed (at most %d rows sampled each)", len(tables), SAMPLE_ROWS)
    return dialect, tables


# --- a delivery of CSV files --------------------------------------------------------------------------
HEADER_BYTES = 64 << 10
"""The most bytes read of a file's first line (its byte-order mark, delimiter and header)."""
DELIMITERS = (",", ";", "|", "\t")
"""The delimiters looked for in a header line, the first preferred on a tie."""
_BOM = b"\xef\xbb\xbf"
_FLAG_REASON = (
    "the delivery's row code (1 new, 2 modified, 3 removed): read by the delta sync; a removed row "
    "is set aside removed_in_source"
)


def table_name(file: str) -> str:
    """A file's table: its stem in snake_case.

    >>> table_name("visits_soap2.csv"), table_name("PatientMaster.CSV"), table_name("Billing Charges.csv")
    ('visits_soap2', 'patient_master', 'billing_charges')
    """
    stem = file.rsplit(".", 1)[0]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", stem)
    return re.sub(r"[^0-9a-z]+", "_", snake.lower()).strip("_") or "file"


def sniff_delimiter(line: bytes) -> str:
    r"""The delimiter of a header line: the one of :data:`DELIMITERS` found most often outside quotes.

    >>> sniff_delimiter(b'id;"last, first";dob\r\n'), sniff_delimiter(b"id|name"), sniff_delimiter(b"id")
    (';', '|', ',')
    """
    unquoted = re.sub(rb'"[^"]*"', b"", line)
    count, _, best = max((unquoted.count(d.encode()), -i, d) for i, d in enumerate(DELIMITERS))
    return best if count else DELIMITERS[0]


def _header(first: bytes, fmt: CsvFormat, name: str) -> list[str]:
    """The header of a file's first line; refused (one line naming the file, no value) where it cannot
    be a table's: unreadable, longer than :data:`HEADER_BYTES`, names SQLite would take for one
    (``ID``, ``id``), or no header at all (most names without a letter: a record's values)."""
    if len(first) >= HEADER_BYTES and not first.endswith(b"\n"):
        raise CsvError(f"{name}: no end of the header line in its first {HEADER_BYTES:,} bytes")
    header = read_header(io.BytesIO(first), fmt, name=name)
    folded = [c.casefold() for c in header]
    twice = next((i for i, c in enumerate(folded) if c in folded[:i]), None)
    if twice is not None:
        first_at = folded.index(folded[twice]) + 1
        raise CsvError(f"{name}: columns {first_at} and {twice + 1} of the header differ only in case")
    unnamed = sum(1 for c in header if not re.search(r"[^\W\d_]", c))
    if 2 * unnamed > len(header):
        raise CsvError(
            f"{name}: {unnamed} of the {len(header)} header fields have no letter: "
            "the file seems to begin with a record, not a header"
        )
    return header


def sample_file(
    conn: sqlite3.Connection, source: DeliverySource, name: str, size: int, table: str
) -> CsvFile:
    """At most :data:`SAMPLE_ROWS` records of one delivered file into table ``table`` of ``conn``.

    The delimiter is sniffed from the header line, the encoding found on the sample: UTF-8 where
    every sampled record decodes strictly (after a byte-order mark, if any), Windows-1252 otherwise.
    Reading stops after the sample (never the whole file); values are cut to :data:`VALUE_CHARS`.
    """
    with source.open(name) as stream:
        first = stream.readline(HEADER_BYTES)
    bom, delimiter = first.startswith(_BOM), sniff_delimiter(first)
    try:
        first.decode("utf-8")
        encodings = ("utf-8",) if bom else ("utf-8", "cp1252")
    except UnicodeDecodeError:
        encodings = ("cp1252",)
    quoted = _q("sqlite", table)
    for encoding in encodings:
        fmt = CsvFormat(encoding=encoding, delimiter=delimiter)
        header = _header(first, fmt, name)
        conn.execute(f"DROP TABLE IF EXISTS {quoted}")
        conn.execute(f"CREATE TABLE {quoted} ({', '.join(_q('sqlite', c) for c in header)})")
        insert = f"INSERT INTO {quoted} VALUES ({', '.join('?' * len(header))})"
        rows = malformed = undecodable = 0
        complete = True
        with source.open(name) as stream:  # a break leaves the rest of the file unread
            for batch in read_records(stream, fmt, name=name, batch_rows=min(FETCH_ROWS, SAMPLE_ROWS)):
                taken = batch.rows[: SAMPLE_ROWS - rows - malformed]
                conn.executemany(
                    insert, ([v if v is None else v[:VALUE_CHARS] for v in row] for row in taken)
                )
                rows += len(taken)
                malformed += len(batch.malformed)
                undecodable += sum(1 for m in batch.malformed if m.reason.startswith("undecodable"))
                if rows + malformed >= SAMPLE_ROWS:
                    complete = False
                    break
        if not undecodable:
            break
    flag = next((c for c in header if words(c) == ("export", "flag") and _codes_123(conn, quoted, c)), None)
    return CsvFile(name, size, encoding, bom, delimiter, complete, malformed, flag)


def _codes_123(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Every sampled value of ``column`` is 1, 2 or 3, and there is one."""
    col = _q("sqlite", column)
    ((present, other),) = _all(conn, f"SELECT COUNT({col}), TOTAL({col} NOT IN ('1', '2', '3')) FROM {table}")
    return bool(present) and not other


def survey_delivery(url: str) -> tuple[Dialect, list[Table]]:
    """Every ``*.csv`` file of the delivery at ``url`` (a folder, local or on SFTP) as a table.

    A bounded sample of each file is loaded into a temporary SQLite database (in a private temporary
    folder, removed afterwards: the sample holds patient data), which :func:`survey` then reads as it
    reads any legacy database: one drafter for both.
    """
    with open_delivery(url) as source, tempfile.TemporaryDirectory(prefix="cutover-draft-") as tmp:
        found = source.files()
        listed = {n: size for n, size in found.items() if n.lower().endswith(".csv")}
        if not listed:
            raise ConfigError(f"profile draft: {source.describe()} holds no .csv file")
        db = Path(tmp) / "sample.db"
        files: dict[str, CsvFile] = {}
        conn = sqlite3.connect(db)
        with contextlib.closing(conn):
            for name, size in listed.items():
                table = table_name(name)
                while table in files:  # Patients.csv and patients.csv
                    table = f"{table}_2"
                with _reading(f"file {name}"):
                    files[table] = sample_file(conn, source, name, size, table)
            conn.commit()
        surveyed = survey(f"sqlite:///{db}", files)
    log.info(
        "profile draft: %d CSV files sampled (%d other files left out)", len(listed), len(found) - len(listed)
    )
    return surveyed


# --- what the draft proposes -----------------------------------------------------------------------
@dataclass
class FieldDraft:
    field: str
    sources: list[str]
    rule: str
    params: dict[str, Any]
    required: bool
    why: str
    flagged: bool = False
    """``invalid: flag``: a value the rule cannot read is NULL and the row flagged, not rejected."""


@dataclass(frozen=True)
class Shared:
    """A parameter a person writes once for several fields (a code column's table, read by its
    ``code`` rule and by ``uncoded_text``): the first field holds it under a YAML anchor
    (``&precautions_prec_code TODO``), the others alias it (``*precautions_prec_code``)."""

    name: str
    first: bool


@dataclass
class TableDraft:
    table: Table
    target: str | None = None
    target_why: str = ""
    kinds: dict[str, ColumnType] = field(default_factory=dict)
    fields: list[FieldDraft] = field(default_factory=list)
    refs: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    explode: dict[str, Any] | None = None
    explode_why: str = ""
    not_carried: list[tuple[str, str, str]] = field(default_factory=list)
    """(column, reason or TODO, why)."""
    missing: list[str] = field(default_factory=list)
    patient: str | None = None
    patient_why: str = ""
    changes: str | None = None
    changes_why: str = ""
    duplicates: dict[str, Any] | None = None
    duplicates_why: str = ""


def _target_fields(target: str) -> dict[str, TargetColumn]:
    return {n: c for n, c in target_columns()[target].items() if n != "id" and c.references is None}


def _identity(table: Table, target: str) -> float:
    """How close a legacy table's name, or its key's (``ApptID`` names an appointment), is to a target."""
    name = similarity(table.name, target)
    if table.key is not None and _id_named(table.key):
        name = max(name, similarity(table.key, f"{target}_id"))
    return name


def choose_targets(tables: list[Table]) -> dict[str, tuple[str | None, str]]:
    """The target table of each legacy table (one legacy table a target at most), with why."""
    targets = target_columns()
    scored: list[tuple[float, float, float, str, str]] = []
    for table in tables:
        columns = [c.name for c in table.columns if c.name != table.key]
        for target, cols in targets.items():
            name = _identity(table, target)
            names = [n for n in cols if n != "id"]
            close = sum(
                1 for c in columns if max((similarity(c, n, table.name) for n in names), default=0) >= 0.8
            )
            cover = close / max(len(columns), 5)  # two close columns of two say little
            scored.append((0.6 * name + 0.4 * cover, name, cover, table.name, target))
    scored.sort(key=lambda s: (-s[0], s[3], s[4]))
    chosen: dict[str, tuple[str | None, str]] = {}
    taken: set[str] = set()
    for score, name, cover, table_name, target in scored:
        if table_name in chosen or target in taken or score < TABLE_SCORE:
            continue
        chosen[table_name] = (
            target,
            f"name similarity {name:.2f} to {target} (the table's or its key's name); "
            f"{cover:.0%} of its columns close to its fields",
        )
        taken.add(target)
    _targets_of_parents(tables, chosen, taken)
    for table in tables:
        if table.name not in chosen:
            near = [s for s in scored if s[3] == table.name][:2]
            shown = ", ".join(f"{s[4]} ({s[0]:.2f}{', taken' if s[4] in taken else ''})" for s in near)
            chosen[table.name] = (None, f"no target table is close enough: nearest {shown}")
    return chosen


def _targets_of_parents(
    tables: list[Table], chosen: dict[str, tuple[str | None, str]], taken: set[str]
) -> None:
    """Targets from the relations, for tables no name placed: where a placed table's parent relations
    leave exactly one of them unplaced and its target foreign keys to exactly one untaken target,
    that parent is that target's table (``patient_insurance`` → coverage points through
    ``insurance_company_id`` to ``insurance_companies``; coverage's ``payer_id`` is left: a payer)."""
    targets = target_columns()
    changed = True
    while changed:
        changed = False
        for child in tables:
            target = chosen.get(child.name, (None, ""))[0]
            if target is None:
                continue
            fks = {n: c.references for n, c in targets[target].items() if c.references is not None}
            left = {n: ref for n, ref in fks.items() if ref not in taken}  # a placed parent's is taken
            unplaced = {r.parent: r for r in child.parents if r.parent not in chosen}
            if len(set(left.values())) != 1 or len(unplaced) != 1:
                continue
            (fk, parent_target), *_ = left.items()
            ((parent, rel),) = unplaced.items()
            assert parent_target is not None
            chosen[parent] = (
                parent_target,
                f"a parent of {child.name} (mapped to {target}) through {rel.column}, where the one "
                f"foreign key of {target} no other parent fills, {fk}, references {parent_target}",
            )
            taken.add(parent_target)
            changed = True


def _explode(draft: TableDraft, fields: dict[str, TargetColumn], free: list[Column]) -> set[str]:
    """The ``cpt_lines`` step where a column holds free-text CPT lines and the target takes its lines."""
    if not set(_EXPLODED[:2]) <= set(fields):
        return set()
    lines = [c for c in free if c.facts.share("cpt_lines") >= STRONG and c.facts.multi_codes > 0]
    if not lines:
        return set()
    text = max(lines, key=lambda c: c.facts.share("cpt_lines"))
    used = {text.name}
    step: dict[str, Any] = {"text": text.name}
    for part in _EXPLODED[1:]:
        near = max(
            (c for c in free if c.name not in used),
            key=lambda c: similarity(c.name, part, draft.table.name),
            default=None,
        )
        if near is not None and similarity(near.name, part, draft.table.name) >= FIELD_SCORE:
            step[part] = near.name
            used.add(near.name)
        else:
            step[part] = TODO
    draft.explode = {"step": "cpt_lines", "with": step}
    draft.explode_why = (
        f"{text.facts.share('cpt_lines'):.0%} of {text.facts.present:,} sampled values of {text.name} "
        f"{PATTERN_WORDS['cpt_lines']}, {text.facts.multi_codes:.0%} with several codes or units"
    )
    for out in _EXPLODED:
        if out in fields:
            draft.fields.append(
                FieldDraft(out, [out], "same", {}, fields[out].required, "made by the cpt_lines explode step")
            )
    return used


def _stamped(column: Column) -> Pattern:
    """What a change stamp's values are: date-times, or dates (a system that keeps the day only)."""
    return "datetime" if column.facts.share("datetime") >= 0.9 else "date"


def _is_change_stamp(column: Column) -> bool:
    said = set(spelled_out(words(column.name)))
    return bool(said & _CHANGE_WORDS) and column.facts.share(_stamped(column)) >= 0.9


def propose_fields(draft: TableDraft) -> None:
    """Target fields from the columns (the key and parent columns aside): best scores first, a column
    to one field (and its companions)."""
    assert draft.target is not None
    table = draft.table
    fields = _target_fields(draft.target)
    parents = {r.column for r in table.parents}
    flag = table.file.export_flag if table.file is not None else None
    free = [c for c in table.columns if c.name not in {table.key, flag} and c.name not in parents]
    used = _explode(draft, fields, free)
    free = [c for c in free if c.name not in used]
    change = next((c for c in free if _is_change_stamp(c)), None)
    if change is not None:
        draft.changes = change.name
        stamp = _stamped(change)
        draft.changes_why = f"{change.facts.share(stamp):.0%} of {change.facts.present:,} sampled values {PATTERN_WORDS[stamp]}; named like a change stamp"
    taken_fields = {f.field for f in draft.fields}
    options: list[tuple[float, int, int, Column, str, str]] = []
    for i, column in enumerate(free):
        for j, (name, target) in enumerate(fields.items()):
            if name in taken_fields or name in _COMPANIONS or name in _SAFETY_MADE:
                continue
            score, why = _field_score(draft, column, name, target)
            if column is change and similarity(column.name, name, table.name) < FIELD_SCORE:
                continue  # the change stamp is carried only into a field named for it
            if score >= FIELD_SCORE:
                options.append((score, i, j, column, name, why))
    options.sort(key=lambda o: (-o[0], o[1], o[2]))
    given: dict[str, str] = {}
    for _, _, _, column, name, why in options:
        if name in given.values() or column.name in given:
            continue
        given[column.name] = name
        rule, params, note = choose_rule(column.facts, name, fields[name], draft.target)
        draft.fields.append(
            FieldDraft(name, [column.name], rule, params, fields[name].required, _join(why, note))
        )
    _companions(draft, fields, free, given)
    _name_columns(draft, fields)
    _pair_sources(draft)
    _safety(draft)
    carried = {s for f in draft.fields for s in f.sources} | used
    if flag is not None:
        draft.not_carried.append((flag, _FLAG_REASON, "the export flag (changes.export_flag)"))
    for column in free:
        if column.name in carried:
            continue
        if column is change:
            draft.not_carried.append((column.name, _CHANGES_REASON, "the change stamp (changes.modified)"))
            continue
        near = sorted(
            ((_field_score(draft, column, n, t)[0], n) for n, t in fields.items() if n not in _SAFETY_MADE),
            reverse=True,
        )[:1]
        shown = f"nearest {near[0][1]} ({near[0][0]:.2f})" if near else "the target has no fields"
        draft.not_carried.append(
            (column.name, TODO, f"no target field is close: {shown}; map it or say why not")
        )
    mapped = {f.field for f in draft.fields}
    draft.missing += [
        f"{n} ({c.type}, NOT NULL) has no source column"
        for n, c in fields.items()
        if c.required and n not in mapped
    ]


def _field_score(draft: TableDraft, column: Column, name: str, target: TargetColumn) -> tuple[float, str]:
    aliases = FIELD_ALIASES.get((draft.target or "", name), ())
    return field_score(column.name, column.facts, name, target, draft.table.name, aliases)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _companions(
    draft: TableDraft, fields: dict[str, TargetColumn], free: list[Column], given: dict[str, str]
) -> None:
    """The other parts a matched column gives: name parts, an ICD code's source, a document's digest."""
    assert draft.target is not None
    mapped = {f.field for f in draft.fields}
    by_name = {c.name: c for c in free}
    for source, main in list(given.items()):
        column = by_name[source]
        extra: list[str] = []
        if main in NAME_PARTS and column.facts.share("person") >= 0.7:
            extra = [n for n in (*NAME_PARTS, "credential") if n in fields]
            if column.facts.share("credentials") < 0.5:
                extra = [n for n in extra if n != "credential"]
        elif fields[main].type != "text[]" and expects(main, fields[main]) == "icd":
            extra = [n for n in ICD_PARTS if n in fields]
        elif fields[main].type == "bytea":
            extra = [n for n in ("sha256",) if n in fields]
        for name in extra:
            if name in mapped:
                continue
            mapped.add(name)
            rule, params, note = choose_rule(column.facts, name, fields[name], draft.target)
            draft.fields.append(
                FieldDraft(
                    name,
                    [source],
                    rule,
                    params,
                    fields[name].required,
                    _join(f"from {source}, as {main}", note),
                )
            )


def _name_columns(draft: TableDraft, fields: dict[str, TargetColumn]) -> None:
    """A name kept in columns of its own (family, given, middle): every part read from them together
    (``name_part``'s ``form``), so suffixes and the parts' checks are the one-column name's."""
    assert draft.target is not None
    by_field = {f.field: f for f in draft.fields}
    family, given = by_field.get("family_name"), by_field.get("given_name")
    if family is None or given is None or family.sources == given.sources:
        return
    middle = by_field.get("middle_name")
    columns = [family.sources[0], given.sources[0]]
    if middle is not None and middle.sources[0] not in columns:
        columns.append(middle.sources[0])
    form = "family_given_middle" if len(columns) == 3 else "family_given"
    for name, part in NAME_PARTS.items():
        if name not in fields:
            continue
        params: dict[str, Any] = {"part": part, "form": form}
        if "credential" in target_columns()[draft.target]:
            params["credentials"] = True
        why = f"the name kept in {len(columns)} columns ({form}): every part read from them together"
        f = by_field.get(name)
        if f is None:
            f = FieldDraft(name, [], "", {}, fields[name].required, "")
            draft.fields.append(f)
        f.sources, f.rule, f.params, f.why = list(columns), "name_part", params, _join(f.why, why)


def _safety(draft: TableDraft) -> None:
    """A patient-safety record (allergy, medication, precaution) as the profile check wants it: never
    rejected on its own (no field required; ``invalid: flag`` where a rule could reject, a code outside
    its table flagged ``safety_text_unmapped``), its allergen or precaution kind read by the safety
    rules, what the code tables leave kept as written (``uncoded_text``), its own id in
    ``source_records`` and a record entered twice for a patient merged (``duplicates``)."""
    if draft.target not in SAFETY_TABLES:
        return
    table = draft.table
    shared: dict[str, str] = {}  # a code column → the anchor of its code table, written once

    def code_table(column: str) -> Shared:
        first = column not in shared
        shared.setdefault(column, re.sub(r"\W+", "_", f"{table.name}_{column}").strip("_"))
        return Shared(shared[column], first)

    if draft.target == "allergy":
        _allergen(draft)
    if draft.target == "precaution":
        _precaution_kind(draft, code_table)
    for f in draft.fields:
        if f.rule == "code":
            f.params = {"table": code_table(f.sources[0]), "reason": UNMAPPED}
            f.why = _join(f.why, f"a value outside it is kept as written and flagged {UNMAPPED}")
        f.required = False  # a NULL is kept: the record is not rejected
        f.flagged = f.rule not in NEVER_REJECTING
    order = [c.name for c in table.columns]
    coded = sorted(shared, key=order.index)
    if coded:
        draft.fields.append(
            FieldDraft(
                "unmapped_text",
                coded,
                "uncoded_text",
                {"tables": {c: Shared(shared[c], False) for c in coded}},
                False,
                "what the code tables above do not hold, as written: no legacy text is lost",
            )
        )
    key = [table.key] if table.key else [TODO]
    draft.fields.append(
        FieldDraft(
            "source_records",
            key,
            "record_sources",
            {},
            False,
            "the record's key; a merge adds its duplicates' keys" if table.key else "the key: none found",
        )
    )
    mapped = {f.field for f in draft.fields}
    same = [n for n in SAFETY_SAME[draft.target] if n in mapped]
    if same and any(name == "patient_id" for name, _, _ in draft.refs):
        draft.duplicates = {"merge_within": "patient_id", "same": same}
        draft.duplicates_why = (
            "the same record entered again for the patient (in a later episode) is merged into the first"
        )


def _allergen(draft: TableDraft) -> None:
    """The allergen column read by the ``allergen`` rule: the substance, no known allergies, coded."""
    by_field = {f.field: f for f in draft.fields}
    substance = by_field.get("substance")
    if substance is None:
        return
    column = substance.sources[0]
    for name, part in _ALLERGEN_PARTS.items():
        f = by_field.get(name)
        if f is None:
            f = FieldDraft(name, [column], "", {}, False, f"from {column}, as substance")
            draft.fields.append(f)
        elif name != "substance":
            continue  # a column of its own (a no-known-allergies flag)
        f.rule, f.params = "allergen", {"part": part}
    substance.why = _join(substance.why, "an allergen text: a known one coded, NKDA read, another kept")


def _precaution_kind(draft: TableDraft, code_table: Callable[[str], Shared]) -> None:
    """A precaution's kind from its code column (the practice's codes: a table to write), else read
    from its text (``precaution_kind``); with no code column, from the text alone."""
    by_field = {f.field: f for f in draft.fields}
    kind, text = by_field.get("kind"), by_field.get("description")
    if text is None:
        if kind is not None:
            kind.rule, kind.params = TODO, {}
            kind.why = _join(kind.why, "precaution_kind reads a code and a text column: no text column found")
        return
    codes: Shared | dict[str, str]
    also: Shared | dict[str, str]
    if kind is None:  # an empty code table: every kind read from the text
        kind = FieldDraft("kind", [], "", {}, False, "no code column: the kind read from the text alone")
        draft.fields.append(kind)
        column, codes, also = text.sources[0], {}, {}
    else:
        column = kind.sources[0]
        codes, also = code_table(column), code_table(column)
        said = f"the practice's codes; where {column} is empty, read from {text.sources[0]}"
        kind.why = _join(kind.why, said)
    kind.sources, kind.rule, kind.params = [column, text.sources[0]], "precaution_kind", {"codes": codes}
    draft.fields.append(
        FieldDraft(
            "kind_from_text",
            list(kind.sources),
            "precaution_kind",
            {"codes": also, "part": "from_text"},
            False,
            f"from {', '.join(dict.fromkeys(kind.sources))}, as kind",
        )
    )


def _pair_sources(draft: TableDraft) -> None:
    """Rules that read a second column: a birth date its record's created stamp, a ZIP its state, a
    score its instrument."""
    by_field = {f.field: f for f in draft.fields}
    # (the partner's field, the rule, its date role, whether the partner is read first)
    second = (
        ("created_at", "date", "birth", False),
        ("state", "postal", None, False),
        ("instrument", "score", None, True),
    )
    for other, rule, role, first in second:
        partner = by_field.get(other)
        if partner is None:
            continue
        for f in draft.fields:
            if (
                f.rule == rule
                and (role is None or f.params.get("role") == role)
                and f.sources[0] != partner.sources[0]
            ):
                pair = [partner.sources[0], f.sources[0]] if first else [f.sources[0], partner.sources[0]]
                f.sources = pair
                f.why = _join(f.why, f"with {partner.sources[0]} ({other})")
    for f in draft.fields:
        if f.rule == "score" and len(f.sources) < 2:
            f.rule, f.why = TODO, _join(f.why, "a score is read with its instrument: no column gives it")


def propose_refs(draft: TableDraft, drafts: dict[str, TableDraft]) -> set[str]:
    """Foreign keys of the target filled from the parent relations; the parent columns used."""
    table = draft.table
    used: set[str] = set()
    if draft.target is None:
        return used
    fks = {n: c for n, c in target_columns()[draft.target].items() if c.references is not None}
    given: set[str] = set()
    for rel in table.parents:
        parent_target = drafts[rel.parent].target
        options = [n for n, c in fks.items() if c.references == parent_target and n not in given]
        if parent_target is None or not options:
            continue
        name = max(options, key=lambda n: similarity(rel.column, n, table.name))
        given.add(name)
        used.add(rel.column)
        spec: dict[str, Any] = {"from": rel.column, "parent": rel.parent}
        if not fks[name].required:
            spec["required"] = False
        draft.refs.append((name, spec, f"{rel.parent} maps to {parent_target}"))
    draft.missing += [
        f"{n} (foreign key to {c.references}, NOT NULL) has no parent relation"
        for n, c in fks.items()
        if c.required and n not in given
    ]
    return used


def _patient_paths(drafts: dict[str, TableDraft]) -> None:
    """The column leading to the patient: the key of the patient table, else the first parent
    column on a shortest path of parent relations to it."""
    home = {n for n, d in drafts.items() if d.target == "patient"}
    depth: dict[str, int] = {}
    for name in home:
        draft = drafts[name]
        depth[name] = 0
        draft.patient, draft.patient_why = draft.table.key, "the patient table's key"
    changed = True
    while changed:
        changed = False
        for name, draft in drafts.items():
            steps = [
                (depth[r.parent] + 1, i, r) for i, r in enumerate(draft.table.parents) if r.parent in depth
            ]
            if not steps or name in home:
                continue
            d, _, rel = min(steps, key=lambda s: (s[0], s[1]))
            if depth.get(name, 1 << 30) > d:
                depth[name] = d
                draft.patient = rel.column
                draft.patient_why = (
                    "a parent relation to the patient table"
                    if d == 1
                    else f"leads to the patient through {rel.parent}"
                )
                changed = True


def _parents_first(tables: list[Table]) -> list[Table]:
    by_name = {t.name: t for t in tables}
    done: list[Table] = []
    seen: set[str] = set()

    def visit(table: Table, path: set[str]) -> None:
        if table.name in seen or table.name in path:
            return  # a cycle is left to the person finishing the draft
        for rel in table.parents:
            visit(by_name[rel.parent], path | {table.name})
        seen.add(table.name)
        done.append(table)

    for table in tables:
        visit(table, set())
    return done


def propose(tables: list[Table]) -> list[TableDraft]:
    """Everything the draft proposes, tables parents first."""
    ordered = _parents_first(tables)
    targets = choose_targets(ordered)
    drafts = {t.name: TableDraft(t, *targets[t.name]) for t in ordered}
    for draft in drafts.values():
        table = draft.table
        refs = {r.column for r in table.parents}
        for column in table.columns:
            whole = column.facts.integral or (
                not column.facts.present and _NUMERIC_TYPES.search(column.declared)
            )
            draft.kinds[column.name] = (
                "blob"
                if column.binary
                else "int"
                if (column.name == table.key or column.name in refs) and whole
                else "text"
            )
        used = propose_refs(draft, drafts)
        if draft.target is not None:
            propose_fields(draft)
        for rel in table.parents:
            if rel.column not in used and draft.target is not None:
                draft.not_carried.append(
                    (
                        rel.column,
                        TODO,
                        f"a parent relation to {rel.parent} that no foreign key of {draft.target} takes",
                    )
                )
    _patient_paths(drafts)
    return list(drafts.values())


# --- the YAML ------------------------------------------------------------------------------------------
def _y(value: Any) -> str:
    """A YAML scalar or flow collection on one line; a :class:`Shared` value as its anchor or alias.

    >>> _y({"table": Shared("cases_status", True), "reason": "status_unknown"})
    '{table: &cases_status TODO, reason: status_unknown}'
    >>> _y({"tables": {"status": Shared("cases_status", False)}})
    '{tables: {status: *cases_status}}'
    """
    if isinstance(value, Shared):
        return f"&{value.name} {TODO}" if value.first else f"*{value.name}"
    if _shares(value):
        if isinstance(value, dict):
            return "{" + ", ".join(f"{_y([k])[1:-1]}: {_y(v)}" for k, v in value.items()) + "}"
        return "[" + ", ".join(_y(v) for v in value) + "]"
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 20, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def _shares(value: Any) -> bool:
    if isinstance(value, Shared):
        return True
    if isinstance(value, dict):
        return any(_shares(v) for v in value.values())
    return isinstance(value, list) and any(_shares(v) for v in value)


def _c(why: str) -> str:
    return f"  # {' '.join(why.split())}" if why else ""


def _csv_source(files: list[CsvFile]) -> tuple[list[str], dict[str, str]]:
    """The profile's ``source`` of a CSV delivery (the encoding and delimiter most files have), and them."""

    def most(values: list[str], preferred: str) -> tuple[str, str]:
        counts = Counter(values)
        best = max(counts, key=lambda v: (counts[v], v == preferred))
        return best, f"{counts[best]} of {len(values)} files"

    encoding, enc_why = most([f.encoding for f in files], "utf-8")
    delimiter, del_why = most([f.delimiter for f in files], DELIMITERS[0])
    boms = sum(f.bom for f in files)
    if boms:
        enc_why += f"; {boms} begin with a byte-order mark, which utf-8 reads too"
    lines = [
        "  format: csv",
        f"  encoding: {_y(encoding)}{_c(enc_why)}",
        f"  delimiter: {_y(delimiter)}{_c('in the header line of ' + del_why)}",
        "  quoting: minimal  # RFC 4180: a quoted field may hold the delimiter, a line break, a doubled quote",
        "  'null': ''  # an empty field is a missing value",
    ]
    return lines, {"encoding": encoding, "delimiter": delimiter}


def _csv_table(file: CsvFile, sampled: int, common: dict[str, str]) -> list[str]:
    """A table's file: its size and sample, its name, how it differs from the profile's ``source``."""
    read = "the whole file" if file.complete else f"at most {SAMPLE_ROWS:,} a file"
    notes = [f"{file.bytes:,} bytes; {sampled:,} rows sampled ({read})"]
    if file.malformed:
        notes.append(f"{file.malformed:,} malformed in the sample, not read")
    if file.bom:
        notes.append("begins with a byte-order mark")
    out = [f"    # {'; '.join(notes)}", f"    source: {_y(file.name)}"]
    own = {"encoding": file.encoding, "delimiter": file.delimiter}
    own = {k: v for k, v in own.items() if v != common[k]}
    if own:
        why = {"cp1252": "the sampled records are not UTF-8", "utf-8": "the sampled records are UTF-8"}
        said = [why[file.encoding]] if "encoding" in own else []
        said += ["its header line's delimiter"] if "delimiter" in own else []
        out.append(f"    csv: {_y(own)}{_c('; '.join(said))}")
    return out


def render(drafts: list[TableDraft], dialect: Dialect) -> str:
    files = [d.table.file for d in drafts if d.table.file is not None]
    source, common = _csv_source(files) if files else (["  format: database"], {})
    what = "a delivery of CSV files" if files else f"a {dialect} database"
    out = [
        f"# Cutover legacy profile: a DRAFT written by `cutover profile draft` from {what}.",
        "# Comments say why each suggestion was made (names, counts and shares: no value of the database).",
        f"# Finish every {TODO}, check what is proposed, then run: cutover profile check THIS_FILE",
        f"profile: {TODO}-name",
        f"title: {TODO}  # one line: the legacy system and its version",
        "source:",
        *source,
        "tables:",
    ]
    for d in drafts:
        t = d.table
        out.append(f"  {_y(t.name)}:")
        if t.file is None:
            out.append(f"    # {t.rows:,} rows, {t.sampled:,} sampled (at most {SAMPLE_ROWS:,} a table)")
        else:
            out += _csv_table(t.file, t.sampled, common)
        out.append(f"    key: {_y(t.key) if t.key else TODO}{_c(t.key_why)}")
        out.append("    columns:")
        for c in t.columns:
            kind = d.kinds[c.name]
            note = ""
            if kind == "int" and t.file is not None:
                note = "whole numbers"
            elif kind == "int" and not _NUMERIC_TYPES.search(c.declared):
                note = f"declared {c.declared or 'without a type'}; whole numbers"
            elif kind == "text" and _BINARY_TYPES.search(c.declared):
                note = f"declared {c.declared}; the values are text"
            elif kind == "blob" and not _BINARY_TYPES.search(c.declared):
                note = f"declared {c.declared or 'without a type'}; {c.facts.share('binary'):.0%} of the values are files"
            out.append(f"      {_y(c.name)}: {kind}{_c(note)}")
        if t.parents:
            out.append("    parents:")
            for rel in t.parents:
                out.append(f"      {_y(rel.column)}: {_y(rel.parent)}{_c(rel.why())}")
        for rel in t.candidates:
            out.append(
                f"    # parent? {_y(rel.column)}: {_y(rel.parent)}  # {TODO} candidate ({rel.doubt}): "
                f"{rel.why()}"
            )
        if d.patient:
            out.append(f"    patient: {_y(d.patient)}{_c(d.patient_why)}")
        changes: dict[str, Any] = {"modified": d.changes} if d.changes else {}
        flag = t.file.export_flag if t.file is not None else None
        if flag is not None:
            changes["export_flag"] = {"column": flag}
        if changes:
            flag_why = f"{flag}: every sampled value is 1, 2 or 3 (new, modified, removed)" if flag else ""
            out.append(f"    changes: {_y(changes)}{_c(_join(d.changes_why, flag_why))}")
        out.append("    map:")
        out.append(f"      to: {_y(d.target) if d.target else TODO}{_c(d.target_why)}")
        out.append(f"      doc: {TODO}  # one sentence: what a row of {t.name} is")
        if d.target is None:
            continue
        if d.duplicates:
            out.append(f"      duplicates: {_y(d.duplicates)}{_c(d.duplicates_why)}")
        if d.fields:
            out.append("      fields:")
            for f in d.fields:
                spec: dict[str, Any] = {
                    "from": f.sources[0] if len(f.sources) == 1 else f.sources,
                    "rule": f.rule,
                }
                if f.params:
                    spec["with"] = f.params
                if f.required:
                    spec["required"] = True
                if f.flagged:
                    spec["invalid"] = "flag"
                out.append(f"        {_y(f.field)}: {_y(spec)}{_c(f.why)}")
        if d.refs:
            out.append("      refs:")
            for name, spec, why in d.refs:
                out.append(f"        {_y(name)}: {_y(spec)}{_c(why)}")
        if d.explode:
            out.append(f"      explode: {_y(d.explode)}{_c(d.explode_why)}")
        if d.not_carried:
            out.append("      not_carried:")
            for column, reason, why in d.not_carried:
                out.append(f"        {_y(column)}: {_y(reason)}{_c(why)}")
        for missing in d.missing:
            out.append(f"      # {TODO}: {missing}")
    return "\n".join(out) + "\n"


def write_draft(url: str, out: Path) -> str:
    """Survey the legacy database (or CSV delivery) at ``url``, write a draft profile to ``out``; one
    line says what it holds.

    Reads at most :data:`SAMPLE_ROWS` rows of each table or file (values cut to :data:`VALUE_CHARS`),
    one table at a time; whole tables are only counted. The line: ``draft: 21 tables, 173 columns,
    120 target fields proposed, 35 TODOs → draft.yaml``.
    """
    dialect, tables = survey_delivery(url) if is_delivery(url) else survey(url)
    drafts = propose(tables)
    text = render(drafts, dialect)
    yaml.safe_load(text)  # the draft is YAML: a person edits it, the loader reads it
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    columns = sum(len(d.table.columns) for d in drafts)
    fields = sum(len(d.fields) for d in drafts)
    # the places to finish: not the header's words about them
    todos = sum(line.count(TODO) for line in text.splitlines() if not line.startswith("# "))
    return f"draft: {len(drafts)} tables, {columns} columns, {fields} target fields proposed, {todos} TODOs → {out}"
