"""The target's columns, read from the versioned migrations: what a legacy profile may map to.

The migrations are the one source of the ``pt`` schema; a profile names target tables and fields,
and this module says which exist, their PostgreSQL type (a key of the mapping engine's type table),
whether they are required (``NOT NULL``) and which are foreign keys (filled from references, not
fields).

>>> cols = target_columns()
>>> cols["clinic"]["timezone"]
TargetColumn(name='timezone', type='text', required=True, references=None)
>>> cols["visit"]["episode_id"].references
'episode'
>>> cols["patient"]["name_suffix"].type
'text'
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from cutover.target.constraints import MIGRATIONS

_CREATE_RE = re.compile(r"CREATE TABLE pt\.\"?(\w+)\"? \((.*?)\n\);", re.S)
_ALTER_RE = re.compile(r"ALTER TABLE pt\.\"?(\w+)\"?((?:\s+ADD COLUMN [^,;]+[,;])+)", re.S)
_ADD_RE = re.compile(r"ADD COLUMN (\w+)\s+([^,;]+)")
_COLUMN_RE = re.compile(r"^\s*(\w+)\s+(\w+(?:\s*\(\s*\d+(?:\s*,\s*\d+)?\s*\))?(?:\[\])?)(.*)$")
_REFERENCES_RE = re.compile(r"REFERENCES pt\.\"?(\w+)\"?")

_TYPES = {
    "text": "text",
    "char": "text",
    "varchar": "text",
    "text[]": "text[]",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamp",
    "boolean": "boolean",
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "numeric": "numeric",
    "bytea": "bytea",
    "uuid": "uuid",
}
"""SQL type (without its length) → the mapping engine's type name."""


@dataclass(frozen=True)
class TargetColumn:
    name: str
    type: str
    required: bool
    """``NOT NULL`` without a ``DEFAULT``: a profile must map it (or, for a foreign key, reference it)."""
    references: str | None
    """The ``pt`` table a foreign key points to."""


def _column(line: str) -> TargetColumn | None:
    match = _COLUMN_RE.match(line)
    if not match or match.group(1) in {"CONSTRAINT", "PRIMARY", "UNIQUE", "FOREIGN", "CHECK", "EXCLUDE"}:
        return None
    name, sql_type, rest = match.groups()
    base = re.sub(r"\s*\(.*\)", "", sql_type).lower()
    kind = _TYPES.get(base)
    if kind is None:
        raise ValueError(f"target column {name}: type {sql_type} has no mapping type")
    ref = _REFERENCES_RE.search(rest)
    return TargetColumn(
        name,
        kind,
        ("NOT NULL" in rest and "DEFAULT" not in rest) or "PRIMARY KEY" in rest,
        ref.group(1) if ref else None,
    )


@functools.cache
def target_columns() -> dict[str, dict[str, TargetColumn]]:
    """Every ``pt`` table's columns after all migrations, in creation order (``id`` included)."""
    tables: dict[str, dict[str, TargetColumn]] = {}
    for path in sorted(MIGRATIONS.glob("V*.sql")):
        sql = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))
        for table, body in _CREATE_RE.findall(sql):
            columns = (_column(line) for line in re.split(r",\s*\n", body))
            tables[table] = {c.name: c for c in columns if c is not None}
        for table, adds in _ALTER_RE.findall(sql):
            for name, definition in _ADD_RE.findall(adds):
                column = _column(f"{name} {definition}")
                if column is not None:
                    tables[table][name] = column
    return tables
