"""The legacy practice system's schema, as data.

The legacy system is denormalised and loosely typed: every id is an integer, every other column
is text (dates, amounts, units and scores included), and attachments are binary. It declares no
foreign keys, so orphans exist; :attr:`LegacyTable.parents` records the relations the data is
*meant* to have, which is what the pipeline checks.

``LEGACY_TABLES`` lists the tables in load order, parents first.

>>> LEGACY_TABLES["visits"].key, LEGACY_TABLES["visits"].patient_key
('visit_id', 'pat_id')
>>> dict(LEGACY_TABLES["procedures"].parents)
{'visit_id': 'visits'}
>>> ddl("sqlite")[0][:40]
'CREATE TABLE "clinics" ("clinic_id" INTE'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["int", "text", "blob"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("int", "text", "blob")
Dialect = Literal["sqlite", "postgresql", "mysql"]
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgresql", "mysql")


@dataclass(frozen=True)
class LegacyTable:
    """One legacy table: its columns in order, its key, the relations it should have."""

    name: str
    key: str
    """The primary-key column, always an integer id."""
    columns: tuple[tuple[str, ColumnType], ...]
    """(column name, logical type) in table order."""
    parents: tuple[tuple[str, str], ...] = ()
    """(foreign-key column, parent table); never declared in the legacy database."""
    patient_key: str | None = None
    """The column that leads to the patient (directly or through a parent), None for reference data."""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def column_type(self, column: str) -> ColumnType:
        return dict(self.columns)[column]


def _table(
    name: str,
    spec: str,
    *,
    parents: tuple[tuple[str, str], ...] = (),
    patient_key: str | None = None,
) -> LegacyTable:
    # A compact spec: the first column is the key; every ``*_id`` column is an integer id unless
    # marked ``name:text`` (member_id is the payer's identifier, not ours); ``name:blob`` is binary.
    columns: list[tuple[str, ColumnType]] = []
    for token in spec.split():
        column, _, kind = token.partition(":")
        if not kind:
            kind = "int" if column.endswith("_id") else "text"
        if kind not in COLUMN_TYPES:
            raise ValueError(f"{name}.{column}: unknown column type {kind!r}")
        columns.append((column, kind))
    return LegacyTable(name, columns[0][0], tuple(columns), parents, patient_key)


LEGACY_TABLES: dict[str, LegacyTable] = {
    t.name: t
    for t in (
        _table("clinics", "clinic_id clinic_name address city state zip phone tz"),
        _table(
            "providers",
            "provider_id clinic_id prov_name credential npi active",
            parents=(("clinic_id", "clinics"),),
        ),
        _table("ref_physicians", "ref_phys_id phys_name npi fax phone"),
        _table("payers", "payer_id payer_name payer_type"),
        _table(
            "patients",
            "pat_id clinic_id mrn pat_name dob sex ssn addr1 addr2 city state zip home_phone cell_phone"
            " email emerg_contact emerg_phone created modified",
            parents=(("clinic_id", "clinics"),),
            patient_key="pat_id",
        ),
        _table(
            "coverage",
            "cov_id pat_id payer_id member_id:text group_no priority eff_date term_date modified",
            parents=(("pat_id", "patients"), ("payer_id", "payers")),
            patient_key="pat_id",
        ),
        _table(
            "referrals",
            "referral_id pat_id ref_phys_id referral_date dx_code modified",
            parents=(("pat_id", "patients"), ("ref_phys_id", "ref_physicians")),
            patient_key="pat_id",
        ),
        _table(
            "cases",
            "case_id pat_id clinic_id provider_id referral_id start_date discharge_date status body_region"
            " reopened modified",
            parents=(
                ("pat_id", "patients"),
                ("clinic_id", "clinics"),
                ("provider_id", "providers"),
                ("referral_id", "referrals"),
            ),
            patient_key="pat_id",
        ),
        _table(
            "authorizations",
            "auth_id case_id cov_id visits_authorized visits_used start_date end_date modified",
            parents=(("case_id", "cases"), ("cov_id", "coverage")),
            patient_key="case_id",
        ),
        _table(
            "plans_of_care",
            "poc_id case_id dx_codes goals frequency duration_weeks cert_date certified_by recert_date modified",
            parents=(("case_id", "cases"),),
            patient_key="case_id",
        ),
        _table(
            "appointments",
            "appt_id pat_id case_id provider_id clinic_id appt_time status modified",
            parents=(
                ("pat_id", "patients"),
                ("case_id", "cases"),
                ("provider_id", "providers"),
                ("clinic_id", "clinics"),
            ),
            patient_key="pat_id",
        ),
        _table(
            "visits",
            "visit_id case_id pat_id appt_id provider_id visit_date note_type subjective objective"
            " assessment plan signed_date modified",
            parents=(
                ("case_id", "cases"),
                ("pat_id", "patients"),
                ("appt_id", "appointments"),
                ("provider_id", "providers"),
            ),
            patient_key="pat_id",
        ),
        _table(
            "procedures",
            "proc_id visit_id cpt_text minutes units modifiers modified",
            parents=(("visit_id", "visits"),),
            patient_key="visit_id",
        ),
        _table(
            "diagnoses",
            "dx_id case_id icd_code seq modified",
            parents=(("case_id", "cases"),),
            patient_key="case_id",
        ),
        _table(
            "outcomes",
            "outcome_id case_id visit_id measure score measured_on modified",
            parents=(("case_id", "cases"), ("visit_id", "visits")),
            patient_key="case_id",
        ),
        _table(
            "charges",
            "charge_id visit_id pat_id cpt_code amount posted modified",
            parents=(("visit_id", "visits"), ("pat_id", "patients")),
            patient_key="pat_id",
        ),
        _table(
            "payments",
            "payment_id pat_id payer_id amount kind paid_on modified",
            parents=(("pat_id", "patients"), ("payer_id", "payers")),
            patient_key="pat_id",
        ),
        _table(
            "documents",
            "doc_id pat_id doc_type filename mime content:blob modified",
            parents=(("pat_id", "patients"),),
            patient_key="pat_id",
        ),
    )
}
"""Every legacy table, in load order (parents first)."""

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


def ddl(dialect: Dialect) -> list[str]:
    """``CREATE TABLE`` statements for every legacy table, in load order; no foreign keys.

    >>> print(ddl("postgresql")[3])
    CREATE TABLE "payers" ("payer_id" BIGINT PRIMARY KEY, "payer_name" TEXT, "payer_type" TEXT)
    """
    types = _SQL_TYPES[dialect]
    suffix = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" if dialect == "mysql" else ""
    statements = []
    for table in LEGACY_TABLES.values():
        columns = ", ".join(
            f"{quote(dialect, name)} {types[kind]}{' PRIMARY KEY' if name == table.key else ''}"
            for name, kind in table.columns
        )
        statements.append(f"CREATE TABLE {quote(dialect, table.name)} ({columns}){suffix}")
    return statements


def drop_ddl(dialect: Dialect) -> list[str]:
    """``DROP TABLE IF EXISTS`` for every legacy table, children first."""
    return [f"DROP TABLE IF EXISTS {quote(dialect, name)}" for name in reversed(LEGACY_TABLES)]
