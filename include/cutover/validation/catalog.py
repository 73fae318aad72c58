"""The one source of truth for the validation gates: every check, derived from what already says it.

Nothing here is typed twice. The extract checks come from the legacy schema
(:data:`cutover.legacy.schema.LEGACY_TABLES`: keys, id columns, the parents each table should
have); the mapped checks from the mapping specs (:data:`cutover.mapping.specs.SPECS`: types,
required fields, references) and from the target's own ``CHECK`` constraints, read out of the
versioned migrations (formats, code sets, non-negative counts, ordered dates), so a staged row
that would break the load is stopped before the load starts; the code tables (ICD-10-CM, CPT,
outcome ranges) come from :mod:`cutover.mapping.codes`. The target checks are the PT rules as
SQL in :mod:`cutover.validation.target_rules`.

A :class:`Check` is data: the gate, the table, a stable dotted name
(``<gate>.<table>.<column>.<rule>``), the GX expectation and its arguments, and the Kahn
dimension it belongs to (conformance, completeness, plausibility, as OHDSI DQD files its
checks). Severity and threshold come from ``gates.yaml`` (:mod:`cutover.validation.config`).

A *derived* check validates a boolean column that the gate computes from the data before GX sees
it (``check__npi_luhn``): true passes, false fails, NULL does not apply. That is how rules that
need a code table or arithmetic (NPI check digits, ICD-10-CM membership, the 8-minute rule) run
as GX expectations without putting a 74,000-code value set into a suite, and why a failing row is
only ever shown as a boolean, never its value.

>>> names = [c.name for c in checks("extract", "visits")]
>>> "extract.visits.visit_id.key_unique" in names, "extract.visits.case_id.present" in names
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cutover.legacy.profile import current, legacy_tables, mapping_specs
from cutover.legacy.source import INVALID_IDS, MALFORMED
from cutover.mapping import codes
from cutover.mapping.engine import TableSpec
from cutover.target.constraints import constraints_of, non_capturing

Gate = Literal["extract", "mapped", "target"]
GATES: tuple[Gate, ...] = get_args(Gate)
Dimension = Literal["conformance", "completeness", "plausibility"]

DERIVED_PREFIX = "check__"
"""Columns a gate computes before validation (booleans: true passes, false fails, NULL not applicable)."""


@dataclass(frozen=True)
class Check:
    """One expectation of one gate on one table."""

    gate: Gate
    table: str
    """Legacy table (extract and mapped gates) or target table (target gate)."""
    name: str
    """Stable dotted name, the key of ``gates.yaml`` and of every report."""
    expectation: str
    """GX Core expectation class, e.g. ``ExpectColumnValuesToNotBeNull``."""
    kwargs: dict[str, Any]
    why: str
    """What the check protects, in a sentence (rendered as the expectation's notes)."""
    dimension: Dimension = "conformance"
    table_level: bool = False
    """A check on the table as a whole (its columns), not row by row: one element."""
    derived: str | None = None
    """Key of :data:`DERIVED` that computes the checked column (mapped gate)."""

    @property
    def column(self) -> str | None:
        value = self.kwargs.get("column")
        return str(value) if value is not None else None


# --- the target's CHECK constraints, read from the migrations ------------------------------------

# --- derived columns (mapped gate) ---------------------------------------------------------------


def _bool(values: np.ndarray, applies: np.ndarray) -> pa.Array:
    # an empty part builds its arrays from empty lists, which numpy types as float: cast first
    return pa.array(np.asarray(values, dtype=bool), pa.bool_(), mask=~np.asarray(applies, dtype=bool))


def _npi_luhn(column: str) -> Callable[[pa.Table], pa.Array]:
    """True where a 10-digit NPI passes its Luhn check digit (prefix 80840); NULL where there is none."""

    def derive(table: pa.Table) -> pa.Array:
        text = pc.cast(table[column], pa.string()).to_numpy(zero_copy_only=False)
        ten = np.array([isinstance(v, str) and len(v) == 10 and v.isdigit() for v in text])
        ok = np.zeros(len(text), dtype=bool)
        if ten.any():
            digits = np.array([[ord(ch) - 48 for ch in v] for v in text[ten]], dtype=np.int64)
            doubled = digits[:, 0:9:2] * 2
            doubled = np.where(doubled > 9, doubled - 9, doubled)
            ok[ten] = (24 + doubled.sum(axis=1) + digits[:, 1:10:2].sum(axis=1)) % 10 == 0
        return _bool(ok, ten)

    return derive


@cache
def _icd10_bare() -> pa.Array:
    return pa.array(sorted(codes.icd10cm_codes()), pa.string())


def _icd10_known(column: str) -> Callable[[pa.Table], pa.Array]:
    """True where an ICD-10-CM code (dotted) is in the CMS code set; list columns: every element."""

    def derive(table: pa.Table) -> pa.Array:
        values = table[column].combine_chunks()
        if pa.types.is_list(values.type):
            flat = pc.replace_substring(pc.cast(pc.list_flatten(values), pa.string()), ".", "")
            known = pc.is_in(flat, value_set=_icd10_bare()).to_numpy(zero_copy_only=False)
            parents = pc.list_parent_indices(values).to_numpy(zero_copy_only=False)
            bad = (
                np.bincount(parents[~known], minlength=len(values)) if len(parents) else np.zeros(len(values))
            )
            lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
            return _bool(bad == 0, lengths > 0)
        bare = pc.replace_substring(pc.cast(values, pa.string()), ".", "")
        known = pc.is_in(bare, value_set=_icd10_bare()).to_numpy(zero_copy_only=False)
        return _bool(known, pc.is_valid(bare).to_numpy(zero_copy_only=False))

    return derive


def _score_in_range(table: pa.Table) -> pa.Array:
    """True where an outcome score lies in its instrument's range (LEFS 0-80, ODI 0-100, NDI 0-50, …)."""
    instrument = pc.cast(table["instrument"], pa.string()).to_numpy(zero_copy_only=False)
    score = pc.cast(table["score"], pa.float64()).to_numpy(zero_copy_only=False)
    low = np.array([codes.OUTCOME_RANGES.get(i, (np.nan, np.nan))[0] for i in instrument], dtype=float)
    high = np.array([codes.OUTCOME_RANGES.get(i, (np.nan, np.nan))[1] for i in instrument], dtype=float)
    applies = ~np.isnan(low) & ~np.isnan(score)
    with np.errstate(invalid="ignore"):
        return _bool((score >= low) & (score <= high), applies)


def _untimed_one_unit(table: pa.Table) -> pa.Array:
    """True where a once-a-session untimed code (evaluations, 97010, 97150…) carries at most one unit."""
    code = pc.cast(table["cpt_code"], pa.string())
    one = pc.is_in(code, value_set=pa.array(sorted(codes.ONE_UNIT_CODES))).to_numpy(zero_copy_only=False)
    units = pc.cast(table["units"], pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        return _bool(units <= 1, one & ~np.isnan(units))


def _timed_units_8_minute(table: pa.Table) -> pa.Array:
    """True where a timed line's units do not exceed what its minutes allow under the 8-minute rule."""
    code = pc.cast(table["cpt_code"], pa.string())
    timed = pc.is_in(code, value_set=pa.array(sorted(codes.TIMED_CODES))).to_numpy(zero_copy_only=False)
    units = pc.cast(table["units"], pa.float64()).to_numpy(zero_copy_only=False)
    minutes = pc.cast(table["minutes"], pa.float64()).to_numpy(zero_copy_only=False)
    applies = timed & ~np.isnan(units) & ~np.isnan(minutes) & (np.nan_to_num(minutes, nan=-1) >= 0)
    allowed = (np.floor(np.nan_to_num(minutes)) + 7) // 15
    return _bool(units <= allowed, applies)


def _used_within_authorized(table: pa.Table) -> pa.Array:
    """True where an authorization's visits used do not exceed the visits authorized."""
    used = pc.cast(table["visits_used"], pa.float64()).to_numpy(zero_copy_only=False)
    authorized = pc.cast(table["visits_authorized"], pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        return _bool(used <= authorized, ~np.isnan(used) & ~np.isnan(authorized))


DERIVED: dict[str, Callable[[pa.Table], pa.Array]] = {
    "providers.npi_luhn": _npi_luhn("npi"),
    "ref_physicians.npi_luhn": _npi_luhn("npi"),
    "plans_of_care.certifying_npi_luhn": _npi_luhn("certifying_npi"),
    "referrals.diagnosis_code_icd10cm": _icd10_known("diagnosis_code"),
    "plans_of_care.diagnosis_codes_icd10cm": _icd10_known("diagnosis_codes"),
    "diagnoses.icd10_code_icd10cm": _icd10_known("icd10_code"),
    "outcomes.score_in_range": _score_in_range,
    "procedures.untimed_one_unit": _untimed_one_unit,
    "procedures.timed_units_8_minute": _timed_units_8_minute,
    "authorizations.used_within_authorized": _used_within_authorized,
}
"""Derived boolean columns of the mapped gate, by ``<legacy table>.<rule>``."""

_DERIVED_WHY: dict[str, tuple[str, Dimension]] = {
    "npi_luhn": ("an NPI must pass its Luhn check digit (prefix 80840); the mapping migrates and flags it", "conformance"),
    "certifying_npi_luhn": ("the certifying physician's NPI must pass its Luhn check digit", "conformance"),
    "diagnosis_code_icd10cm": ("a referral diagnosis must be a code of the CMS ICD-10-CM code set", "conformance"),
    "diagnosis_codes_icd10cm": ("every plan-of-care diagnosis must be a CMS ICD-10-CM code", "conformance"),
    "icd10_code_icd10cm": ("a diagnosis must be a code of the CMS ICD-10-CM code set", "conformance"),
    "score_in_range": ("outcome scores lie in the instrument's range: LEFS 0-80, ODI 0-100, NDI 0-50, QuickDASH 0-100, PSFS 0-10", "plausibility"),
    "untimed_one_unit": ("untimed codes billed once a session (evaluations, 97010, 97150...) carry one unit", "plausibility"),
    "timed_units_8_minute": ("timed-code units do not exceed what the minutes allow (8-minute rule, per line)", "plausibility"),
    "used_within_authorized": ("visits used do not exceed the visits authorized", "plausibility"),
}  # fmt: skip


# --- extract gate --------------------------------------------------------------------------------


def _required_parent_columns(table: str) -> set[str]:
    spec = mapping_specs().get(table)
    return {ref.source for ref in spec.refs if ref.required} if spec else set()


def extract_checks(table: str) -> list[Check]:
    """Conformance of what was read: the columns, the key, integer ids, the parent-id columns."""
    legacy = legacy_tables()[table]
    p = f"extract.{table}"
    csv = current().source_format == "csv"
    out = [
        Check(
            "extract",
            table,
            f"{p}.columns",
            "ExpectTableColumnsToMatchSet",
            {
                "column_set": [*legacy.column_names, *([MALFORMED] if csv else []), INVALID_IDS],
                "exact_match": True,
            },
            "the extract carries exactly the legacy table's columns (and the reader's list of invalid ids)",
            table_level=True,
        ),
        *(
            [
                Check(
                    "extract",
                    table,
                    f"{p}.{MALFORMED}.lines_read",
                    "ExpectColumnValuesToBeNull",
                    {"column": MALFORMED},
                    "every line of the delivered file was read as a row; a malformed line (wrong number of"
                    " fields, an unclosed quote, undecodable bytes) is rejected csv_malformed, naming its line",
                )
            ]
            if csv
            else []
        ),
        Check(
            "extract",
            table,
            f"{p}.{INVALID_IDS}.ids_valid",
            "ExpectColumnValuesToBeNull",
            {"column": INVALID_IDS},
            "every id column holds a whole number within int64; a row with a fractional, oversized or"
            " text id is rejected id_invalid, naming the column",
        ),
        Check(
            "extract",
            table,
            f"{p}.{legacy.key}.key_present",
            "ExpectColumnValuesToNotBeNull",
            {"column": legacy.key},
            "every legacy row has its key (a non-integer key arrives as NULL)",
            "completeness",
        ),
        Check(
            "extract",
            table,
            f"{p}.{legacy.key}.key_unique",
            "ExpectColumnValuesToBeUnique",
            {"column": legacy.key},
            "legacy keys are unique: one outcome per legacy row depends on it",
        ),
    ]
    if legacy.key_type == "int":  # a key the profile types text is read as text (trimmed)
        out.append(
            Check(
                "extract",
                table,
                f"{p}.{legacy.key}.integer",
                "ExpectColumnValuesToBeInTypeList",
                {"column": legacy.key, "type_list": ["int", "int64"]},
                "legacy keys are integers",
            )
        )
    required = _required_parent_columns(table)
    for column, parent in legacy.parents:
        out.append(
            Check(
                "extract",
                table,
                f"{p}.{column}.exists",
                "ExpectColumnToExist",
                {"column": column},
                f"the id column leading to {parent} is present",
                table_level=True,
            )
        )
        if legacy.column_type(column) == "int":
            out.append(
                Check(
                    "extract",
                    table,
                    f"{p}.{column}.integer",
                    "ExpectColumnValuesToBeInTypeList",
                    {"column": column, "type_list": ["int", "int64"]},
                    f"ids of {parent} are integers",
                )
            )
        if column in required:
            out.append(
                Check(
                    "extract",
                    table,
                    f"{p}.{column}.present",
                    "ExpectColumnValuesToNotBeNull",
                    {"column": column},
                    f"every row names its {parent} parent (a non-integer id arrives as NULL); without it the row"
                    " is rejected as an orphan",
                    "completeness",
                )
            )
    return out


# --- mapped gate ---------------------------------------------------------------------------------

_TYPE_LISTS: dict[str, list[str]] = {
    "text": ["str", "StringDtype"],
    "date": ["date"],
    "timestamp": ["datetime64[us]", "datetime64[ns]", "Timestamp"],
    "boolean": ["bool"],
    "smallint": ["int", "int16", "int64"],
    "integer": ["int", "int32", "int64"],
    "bigint": ["int", "int64"],
    "numeric": ["float", "float64"],
}
"""pandas types a staged value may have, per target column type (text[] and bytea are not type-checked)."""

PLAUSIBLE: dict[tuple[str, str], tuple[float, float, str]] = {
    ("procedures", "minutes"): (0, 240, "a procedure line lasts at most 4 hours"),
    ("procedures", "units"): (0, 16, "at most 16 units of one code a visit (4 hours of 15-minute units)"),
    ("charges", "amount_cents"): (0, 1_000_000, "a charge is between $0 and $10,000"),
    ("payments", "amount_cents"): (-1_000_000, 1_000_000, "a payment or adjustment is within $10,000"),
    ("plans_of_care", "frequency_per_week"): (0, 7, "at most one visit a day"),
    ("plans_of_care", "duration_weeks"): (0, 52, "a plan of care spans at most a year"),
    ("authorizations", "visits_authorized"): (0, 200, "an authorization covers at most 200 visits"),
    ("coverage", "priority"): (1, 3, "primary, secondary or tertiary"),
}
"""Plausibility ranges of staged numbers (DQD's plausibility dimension)."""

COMPLETENESS: dict[str, tuple[str, ...]] = {
    "patients": ("sex", "postal_code", "ref_home_clinic_id"),
    "visits": ("signed_on", "ref_provider_id"),
    "procedures": ("minutes",),
    "cases": ("ref_provider_id",),
    "outcomes": ("measured_on",),
    "charges": ("posted_on",),
}
"""Optional fields whose absence is a data-quality finding (completeness), not a contract break."""


DERIVED_READS: dict[str, tuple[str, ...]] = {
    "npi_luhn": ("npi",),
    "certifying_npi_luhn": ("certifying_npi",),
    "diagnosis_code_icd10cm": ("diagnosis_code",),
    "diagnosis_codes_icd10cm": ("diagnosis_codes",),
    "icd10_code_icd10cm": ("icd10_code",),
    "score_in_range": ("instrument", "score"),
    "untimed_one_unit": ("cpt_code", "units"),
    "timed_units_8_minute": ("cpt_code", "units", "minutes"),
    "used_within_authorized": ("visits_used", "visits_authorized"),
}
"""The mapped columns each derived rule reads."""


@cache
def _target_of() -> dict[str, str]:
    """The target table of each table :data:`PLAUSIBLE`, :data:`COMPLETENESS` and :data:`DERIVED` name
    (the built-in simulator profile's legacy tables: the rules are about the target's rows)."""
    from cutover.legacy.profile import simulator

    return {name: spec.target for name, spec in simulator().specs.items()}


def _applies(named: str, columns: tuple[str, ...], spec: TableSpec) -> bool:
    """A data-quality rule written for ``named``'s rows applies to ``spec``'s when they map onto the same
    target table and ``spec`` stages every column the rule reads (another profile may map fewer)."""
    staged = {f.name for f in spec.staged_schema}
    return _target_of().get(named) == spec.target and set(columns) <= staged


def _derived(spec: TableSpec) -> list[str]:
    """The keys of :data:`DERIVED` that apply to ``spec``'s mapped rows."""
    return [key for key in DERIVED if _applies(key.split(".")[0], DERIVED_READS[key.split(".")[1]], spec)]


def _derived_columns(spec: TableSpec) -> list[str]:
    return [DERIVED_PREFIX + key.split(".")[1] for key in _derived(spec)]


def _mapped_contract(spec: TableSpec) -> list[Check]:
    p = f"mapped.{spec.legacy}"
    t = spec.legacy
    out: list[Check] = [
        Check(
            "mapped",
            t,
            f"{p}.columns",
            "ExpectTableColumnsToMatchSet",
            {
                "column_set": [f.name for f in spec.staged_schema] + _derived_columns(spec),
                "exact_match": True,
            },
            "the staged Parquet carries the spec's schema (and the gate adds its derived check__ columns)",
            table_level=True,
        ),
        Check(
            "mapped",
            t,
            f"{p}.row_key.key_unique",
            "ExpectColumnValuesToBeUnique",
            {"column": "row_key"},
            f"one target row per key: pt.{spec.target}'s primary key is computed from it",
        ),
        Check(
            "mapped",
            t,
            f"{p}.legacy_id.key_present",
            "ExpectColumnValuesToNotBeNull",
            {"column": "legacy_id"},
            "every staged row traces back to its legacy row",
            "completeness",
        ),
    ]
    for f in spec.fields:
        if f.type in _TYPE_LISTS:
            out.append(
                Check(
                    "mapped",
                    t,
                    f"{p}.{f.name}.type",
                    "ExpectColumnValuesToBeInTypeList",
                    {"column": f.name, "type_list": _TYPE_LISTS[f.type]},
                    f"pt.{spec.target}.{f.name} is {f.type}",
                )
            )
        if f.required:
            out.append(
                Check(
                    "mapped",
                    t,
                    f"{p}.{f.name}.required",
                    "ExpectColumnValuesToNotBeNull",
                    {"column": f.name},
                    f"pt.{spec.target}.{f.name} is required",
                    "completeness",
                )
            )
    for ref in spec.refs:
        if ref.required:
            out.append(
                Check(
                    "mapped",
                    t,
                    f"{p}.ref_{ref.column}.required",
                    "ExpectColumnValuesToNotBeNull",
                    {"column": f"ref_{ref.column}"},
                    f"every row names its {ref.parent} parent (pt.{spec.target}.{ref.column} is required)",
                    "completeness",
                )
            )
    return out


def _mapped_constraints(spec: TableSpec) -> list[Check]:
    p = f"mapped.{spec.legacy}"
    t = spec.legacy
    fields = {f.name for f in spec.fields}
    out: list[Check] = []
    for c in constraints_of(spec.target):
        if c.column not in fields:
            continue
        why = f"the target's CHECK {c.name} must hold, or the load of the batch fails"
        if c.kind == "regex":
            out.append(
                Check("mapped", t, f"{p}.{c.column}.format", "ExpectColumnValuesToMatchRegex",
                      {"column": c.column, "regex": non_capturing(c.arg)}, why)
            )  # fmt: skip
        elif c.kind == "in_set":
            out.append(
                Check("mapped", t, f"{p}.{c.column}.code_set", "ExpectColumnValuesToBeInSet",
                      {"column": c.column, "value_set": c.arg}, why)
            )  # fmt: skip
        elif c.kind == "nonnegative":
            out.append(
                Check("mapped", t, f"{p}.{c.column}.nonnegative", "ExpectColumnValuesToBeBetween",
                      {"column": c.column, "min_value": 0}, why)
            )  # fmt: skip
        elif c.kind == "ordered" and c.arg in fields:
            out.append(
                Check("mapped", t, f"{p}.{c.column}.not_before_{c.arg}",
                      "ExpectColumnPairValuesAToBeGreaterThanB",
                      {"column_A": c.column, "column_B": c.arg, "or_equal": True,
                       "ignore_row_if": "either_value_is_missing"}, why)
            )  # fmt: skip
    return out


def _mapped_quality(spec: TableSpec) -> list[Check]:
    p = f"mapped.{spec.legacy}"
    t = spec.legacy
    out: list[Check] = []
    for (table, column), (low, high, why) in PLAUSIBLE.items():
        if _applies(table, (column,), spec):
            out.append(
                Check("mapped", t, f"{p}.{column}.plausible", "ExpectColumnValuesToBeBetween",
                      {"column": column, "min_value": low, "max_value": high}, why, "plausibility")
            )  # fmt: skip
    for column in (c for named, cs in COMPLETENESS.items() for c in cs if _applies(named, (c,), spec)):
        out.append(
            Check("mapped", t, f"{p}.{column}.recorded", "ExpectColumnValuesToNotBeNull", {"column": column},
                  f"{column} is recorded (completeness)", "completeness")
        )  # fmt: skip
    for key in _derived(spec):
        rule = key.split(".")[1]
        why, dimension = _DERIVED_WHY[rule]
        out.append(
            Check("mapped", t, f"{p}.{rule}", "ExpectColumnValuesToBeInSet",
                  {"column": DERIVED_PREFIX + rule, "value_set": [True]}, why, dimension, derived=key)
        )  # fmt: skip
    return out


def mapped_checks(table: str) -> list[Check]:
    """The target's contract on rows that will load (types, formats, code sets, required, keys) and DQ."""
    spec = mapping_specs()[table]
    return _mapped_contract(spec) + _mapped_constraints(spec) + _mapped_quality(spec)


# --- all gates -----------------------------------------------------------------------------------


def tables(gate: Gate) -> list[str]:
    """The tables a gate validates, in load order."""
    if gate == "target":
        from cutover.validation.target_rules import RULES

        return list(dict.fromkeys(rule.table for rule in RULES))
    return [t for t in legacy_tables() if t in mapping_specs()]


def checks(gate: Gate, table: str) -> list[Check]:
    if gate == "extract":
        return extract_checks(table)
    if gate == "mapped":
        return mapped_checks(table)
    from cutover.validation.target_rules import target_checks

    return target_checks(table)


@dataclass(frozen=True)
class Catalog:
    """Every check of every gate, by gate and table."""

    by_gate: dict[Gate, dict[str, list[Check]]] = field(default_factory=dict)

    def all(self) -> list[Check]:
        return [c for tables_ in self.by_gate.values() for cs in tables_.values() for c in cs]


def catalog() -> Catalog:
    """The checks of the profile in use (built once per profile)."""
    return _catalog(current().sha256)


@cache
def _catalog(profile_sha256: str) -> Catalog:
    return Catalog({gate: {t: checks(gate, t) for t in tables(gate)} for gate in GATES})
