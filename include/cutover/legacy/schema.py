"""The legacy practice system's schema, as data.

A legacy system is described by a profile (:mod:`cutover.legacy.profile`): its tables, their
columns with a logical type (``int`` ids, ``text`` for everything else a legacy system stores loosely —
dates, amounts, units, scores —, ``blob`` for attachments), the key, and the relations the data is
*meant* to have (:attr:`LegacyTable.parents`; legacy systems declare no foreign keys, so orphans
exist), which is what the pipeline checks.

``LEGACY_TABLES`` is the built-in ``simulator`` profile's tables, in load order, parents first.

>>> from cutover.legacy.profile import simulator
>>> simulator().tables["visits"].key, simulator().tables["visits"].patient_key
('visit_id', 'pat_id')
>>> dict(simulator().tables["procedures"].parents)
{'visit_id': 'visits'}
>>> ddl("sqlite")[0][:40]
'CREATE TABLE "clinics" ("clinic_id" INTE'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["int", "text", "blob"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("int", "text", "blob")
Dialect = Literal["sqlite", "postgresql", "mysql"]
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgresql", "mysql")


@dataclass(frozen=True)
class ExportFlag:
    """A column whose code says what an extract row is (WebPT's export flag: 1 new, 2 modified, 3 removed)."""

    column: str
    new: str = "1"
    modified: str = "2"
    removed: str = "3"


@dataclass(frozen=True)
class LegacyTable:
    """One legacy table: its columns in order, its key, the relations it should have."""

    name: str
    key: str
    """The primary-key column: an integer id, or a text id where its column is ``text``."""
    columns: tuple[tuple[str, ColumnType], ...]
    """(column name, logical type) in table order."""
    parents: tuple[tuple[str, str], ...] = ()
    """(foreign-key column, parent table); never declared in the legacy database."""
    patient_key: str | None = None
    """The column that leads to the patient (directly or through a parent), None for reference data."""
    source: str = ""
    """The table's (or file's) name in the legacy system; the profile's table name when empty."""
    modified: str | None = None
    """The change-tracking timestamp column, None when the table has none (the delta sync then
    compares the whole table)."""
    export_flag: ExportFlag | None = None

    @property
    def source_name(self) -> str:
        return self.source or self.name

    @property
    def key_type(self) -> ColumnType:
        return self.column_type(self.key)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def column_type(self, column: str) -> ColumnType:
        return dict(self.columns)[column]


def __getattr__(name: str) -> dict[str, LegacyTable]:
    # LEGACY_TABLES is the built-in simulator profile's, read on first use (the profile imports this module)
    if name == "LEGACY_TABLES":
        from cutover.legacy.profile import simulator

        return simulator().tables
    raise AttributeError(name)


_SQL_TYPES: dict[Dialect, dict[ColumnType, str]] = {
    "sqlite": {"int": "INTEGER", "text": "TEXT", "blob": "BLOB"},
    "postgresql": {"int": "BIGINT", "text": "TEXT", "blob": "BYTEA"},
    # TEXT holds 64 KiB in MySQL/MariaDB; notes stay well below, attachments need LONGBLOB.
    "mysql": {"int": "BIGINT", "text": "TEXT", "blob": "LONGBLOB"},
}


def quote(dialect: Dialect, name: str) -> str:
    """Quote an identifier for ``dialect``.

    >>> quote("mysql", "plan"), quote("postgresql", "plan")
    ('`plan`', '"plan"')
    """
    return f"`{name}`" if dialect == "mysql" else f'"{name}"'


def ddl(dialect: Dialect, tables: Mapping[str, LegacyTable] | None = None) -> list[str]:
    """``CREATE TABLE`` statements for every legacy table (the simulator's by default), in load order;
    no foreign keys.

    >>> print(ddl("postgresql")[3])
    CREATE TABLE "payers" ("payer_id" BIGINT PRIMARY KEY, "payer_name" TEXT, "payer_type" TEXT)
    """
    types = _SQL_TYPES[dialect]
    suffix = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" if dialect == "mysql" else ""
    statements = []
    from cutover.legacy.profile import simulator

    for table in (tables if tables is not None else simulator().tables).values():
        columns = ", ".join(
            f"{quote(dialect, name)} {types[kind]}{' PRIMARY KEY' if name == table.key else ''}"
            for name, kind in table.columns
        )
        statements.append(f"CREATE TABLE {quote(dialect, table.source_name)} ({columns}){suffix}")
    return statements


def drop_ddl(dialect: Dialect, tables: Mapping[str, LegacyTable] | None = None) -> list[str]:
    """``DROP TABLE IF EXISTS`` for every legacy table (the simulator's by default), children first."""
    from cutover.legacy.profile import simulator

    chosen = tables if tables is not None else simulator().tables
    return [f"DROP TABLE IF EXISTS {quote(dialect, t.source_name)}" for t in reversed(list(chosen.values()))]
