"""The target's CHECK constraints, read from the versioned migrations: what a staged value must meet.

One source of truth for two readers: the mapping engine holds every mapped value to its column's
constraint (a value that would break it is invalid, rejected or flagged by the field's policy, so a
hostile legacy value never reaches the load as a constraint violation), and the mapped gate checks
the staged rows against the same constraints (:mod:`cutover.validation.catalog`).

>>> target_constraints()[("clinic", "clinic_state_format")].kind
'regex'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

_TABLE_RE = re.compile(r'(?:CREATE|ALTER) TABLE (\w+)\."?(\w+)"?')
_CONSTRAINT_RE = re.compile(r"CONSTRAINT (\w+)\s+CHECK \(")
_REGEX_RE = re.compile(r"^\(?(\w+) ~ '([^']+)'\)?$")
_IN_RE = re.compile(r"^(\w+) IN \((.*)\)$", re.S)
_NONNEG_RE = re.compile(r"^(\w+) >= 0$")
_ORDERED_RE = re.compile(r"^(\w+) >= (\w+)$")


@dataclass(frozen=True)
class Constraint:
    """A column rule of the target schema that a staged value must meet to load."""

    table: str
    name: str
    kind: Literal["regex", "in_set", "nonnegative", "ordered"]
    column: str
    arg: Any = None


@cache
def target_constraints() -> dict[tuple[str, str], Constraint]:
    """Single-column CHECK constraints of ``pt`` by (table, constraint name); later migrations win.

    Only the shapes a staged row can be checked against are read (a regex, a value list, ``>= 0``,
    one column ``>=`` another); the rest stays the database's job.
    """
    found: dict[tuple[str, str], Constraint] = {}
    for path in sorted(MIGRATIONS.glob("V*.sql")):
        text = re.sub(r"--[^\n]*", "", path.read_text())
        starts = [(m.start(), m.group(1), m.group(2)) for m in _TABLE_RE.finditer(text)]
        for c in _CONSTRAINT_RE.finditer(text):
            owner = [(schema, table) for at, schema, table in starts if at < c.start()]
            if not owner or owner[-1][0] != "pt":
                continue
            table = owner[-1][1]
            name, body = c.group(1), " ".join(_balanced(text, c.end()).split())
            if m := _REGEX_RE.match(body):
                found[(table, name)] = Constraint(table, name, "regex", m.group(1), m.group(2))
            elif m := _IN_RE.match(body):
                values = [v.strip().strip("'") for v in m.group(2).split(",")]
                typed: list[Any] = [int(v) for v in values] if all(v.isdigit() for v in values) else values
                found[(table, name)] = Constraint(table, name, "in_set", m.group(1), typed)
            elif m := _NONNEG_RE.match(body):
                found[(table, name)] = Constraint(table, name, "nonnegative", m.group(1))
            elif m := _ORDERED_RE.match(body):
                found[(table, name)] = Constraint(table, name, "ordered", m.group(1), m.group(2))
    return found


def _balanced(text: str, start: int) -> str:
    """The text from ``start`` up to the parenthesis that closes the one just before it."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]


def constraints_of(target: str) -> list[Constraint]:
    return [c for (table, _), c in target_constraints().items() if table == target]


def non_capturing(regex: str) -> str:
    """The same pattern with ``(?:…)`` groups: pandas warns on capture groups; PostgreSQL reads both alike.

    >>> non_capturing("^[0-9]{5}(-[0-9]{4})?$")
    '^[0-9]{5}(?:-[0-9]{4})?$'
    """
    return re.sub(r"\((?!\?)", "(?:", regex)
