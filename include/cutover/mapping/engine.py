"""Run a table's mapping spec over one Arrow batch of legacy rows.

A spec is data: for each target field its legacy source column(s), the rule that normalises them
and whether the field is required; references to parent rows; row checks; and, for one-to-many
tables, an explode step. The engine runs it vectorised over a batch and, for every legacy row,
says whether it maps or is rejected (a reason code, never a value) and what was flagged.

References stay legacy ids here: the loader resolves them through the crosswalk when it merges,
so a row whose parent was rejected or never existed is rejected there, in the same transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cutover.legacy.source import INVALID_IDS, MALFORMED
from cutover.mapping.normalize import REASON_DISPOSITION, Normalized
from cutover.target.constraints import Constraint, constraints_of, non_capturing

PG_TO_ARROW: dict[str, pa.DataType] = {
    "text": pa.string(),
    "text[]": pa.list_(pa.string()),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "boolean": pa.bool_(),
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "numeric": pa.float64(),
    "bytea": pa.binary(),
}

MAP_BATCH_ROWS = 50_000
"""Rows mapped at a time: a staged part is mapped in slices, so the mapping's working set (pandas
frames, each rule's intermediates) is bounded by this, not by the part (visits, 20k patients:
425 MB peak RSS mapping whole 100,000-row parts, 360 MB at 50,000). Smaller slices cost time in
per-slice overhead (procedures: 2.6 s at 100,000, 3.5 s at 50,000, 4.4 s at 25,000). Every rule
is row-local, so the slicing never changes a mapped value."""


class Batch:
    """One batch of legacy rows, with the run's as-of date and a per-batch cache.

    Several fields may come from one computation (a name split into family, given and middle);
    ``once`` runs it once per batch.
    """

    def __init__(self, frame: pd.DataFrame, as_of: date) -> None:
        self.frame = frame
        self.as_of = as_of
        self._cache: dict[Hashable, Any] = {}

    def __getitem__(self, column: str) -> pd.Series:
        return self.frame[column]

    def once(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


@dataclass(frozen=True)
class Rule:
    """A named transform of legacy column(s) into one target value."""

    title: str
    """What the rule does, for the mapping specification document."""
    fn: Callable[[Batch, tuple[str, ...]], Normalized]


@dataclass(frozen=True)
class Field:
    """One target column: where it comes from, how it is normalised, what a bad value does."""

    name: str
    type: str
    """PostgreSQL type of the target column (a key of :data:`PG_TO_ARROW`)."""
    sources: tuple[str, ...]
    rule: Rule
    required: bool = False
    """A missing value rejects the row with ``<name>_missing``."""
    invalid: Literal["reject", "flag"] = "reject"
    """What a value the rule cannot take does: reject the row, or store NULL and flag the row."""
    assumed: bool = False
    """The field rests on an assumption about the source (the profile says so; the mapping
    specification shows it)."""


@dataclass(frozen=True)
class Ref:
    """A foreign key of the target row, given in the legacy row as the parent's legacy id."""

    column: str
    """Target foreign-key column, e.g. ``episode_id``."""
    source: str
    """Legacy column holding the parent's legacy id, e.g. ``case_id``."""
    parent: str
    """Legacy table of the parent, e.g. ``cases``."""
    required: bool = True
    """Required: a missing or unresolved parent rejects the row."""
    strict: bool = False
    """For an optional reference: a parent id that is given but does not resolve rejects the row
    (an orphan) instead of becoming NULL with a flag."""
    assumed: bool = False
    """The reference rests on an assumption about the source."""


@dataclass(frozen=True)
class Check:
    """A rule over the mapped row (several fields at once)."""

    code: str
    title: str
    fn: Callable[[pd.DataFrame], pd.Series]
    """Mapped frame (target fields plus the legacy columns) → True where the rule fires."""
    action: Literal["reject", "flag"] = "reject"


@dataclass(frozen=True)
class LoadFlag:
    """A rule that needs the target (a parent's values): checked in SQL when the row is merged.

    ``predicate`` is SQL over the resolved row ``r`` (its target columns and resolved parent
    ids); the row migrates, flagged ``code`` where the predicate holds.
    """

    code: str
    title: str
    predicate: str


@dataclass(frozen=True)
class Explode:
    """One legacy row → several target rows (e.g. a free-text CPT line → one row per code).

    ``fn`` returns the legacy frame repeated per part with a ``seq`` column (1-based), its own
    columns, and optional ``reason``/``flag`` columns. A rejected part rejects its whole legacy
    row: a legacy row has exactly one outcome.
    """

    title: str
    fn: Callable[[pd.DataFrame], pd.DataFrame]
    sources: tuple[str, ...] = ()
    """Legacy columns the step consumes."""


@dataclass(frozen=True)
class TableSpec:
    """How one legacy table becomes one target table."""

    legacy: str
    target: str
    key: str
    fields: tuple[Field, ...]
    refs: tuple[Ref, ...] = ()
    checks: tuple[Check, ...] = ()
    explode: Explode | None = None
    load_flags: tuple[LoadFlag, ...] = ()
    merges: bool = False
    """Rows may be merged into a surviving duplicate (the staged ``merge_into`` column)."""
    merge_same: tuple[str, ...] = ()
    """For a record table (not the patients): rows of one owner (the first name, a reference column)
    whose other named target columns are equal are one record entered more than once; they merge
    into the lowest legacy id. Empty: the patient matcher decides (the patients table)."""
    removed: tuple[str, str] | None = None
    """(export flag column, its "removed" code): a row the legacy system flags removed is set aside
    ``removed_in_source`` (reported for a person to decide, never migrated nor deleted by a run)."""
    same_patient: tuple[str, ...] = ()
    """References (target columns) whose parent must belong to the row's own patient (``patient_id``),
    merges applied: a visit whose case is another patient's is rejected ``patient_mismatch`` when it is
    resolved, before it is written, so a chart never mixes two patients."""
    doc: str = ""

    @property
    def sources(self) -> set[str]:
        """Every legacy column this spec reads."""
        used = {self.key, *(c for f in self.fields for c in f.sources), *(ref.source for ref in self.refs)}
        used |= {self.removed[0]} if self.removed else set()
        return used | set(self.explode.sources if self.explode else ())

    @property
    def columns(self) -> tuple[tuple[str, str], ...]:
        return tuple((f.name, f.type) for f in self.fields)

    @property
    def staged_schema(self) -> pa.Schema:
        """The mapped Parquet's schema: keys, target columns, parent legacy ids, outcome columns
        (``detail`` names the legacy column(s) a reject is about, never a value)."""
        fields = [pa.field("legacy_id", pa.string(), nullable=False), pa.field("row_key", pa.string())]
        fields += [pa.field(name, PG_TO_ARROW[kind]) for name, kind in self.columns]
        fields += [pa.field(f"ref_{ref.column}", pa.string()) for ref in self.refs]
        fields += [
            pa.field("merge_into", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("detail", pa.string()),
            pa.field("flags", pa.string()),
        ]
        return pa.schema(fields)


NULLED_REASONS = tuple(r for r, d in REASON_DISPOSITION.items() if d == "null")
"""Reasons whose value is stored as NULL and flagged, the row migrating (a placeholder SSN)."""


def legacy_ids(values: pd.Series) -> pd.Series:
    """Legacy ids as text, the crosswalk's key type (integers without a trailing .0).

    >>> legacy_ids(pd.Series([7, None], dtype=pd.ArrowDtype(pa.int64()))).tolist()
    ['7', <NA>]
    >>> legacy_ids(pd.Series(["A-0012", None], dtype=pd.ArrowDtype(pa.string()))).tolist()
    ['A-0012', <NA>]
    """
    if isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_integer(values.dtype.pyarrow_dtype):
        # the extracted ids are Arrow int64 already: one cast, no round trip through pandas' Int64
        return _string_series(pc.cast(_combine(pa.array(values.array)), pa.large_string()), values.index)
    if (isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_string(values.dtype.pyarrow_dtype)) or (
        isinstance(values.dtype, pd.StringDtype)
    ):
        return values.astype("string").str.strip()  # a text key (the profile types it text), trimmed as read
    return values.astype("Int64").astype("string")


def _na(index: pd.Index) -> pd.Series:
    return pd.Series(pd.NA, index=index, dtype="string")


def _text(values: pd.Series) -> pa.Array:
    return _combine(pa.array(values.astype("string"), type=pa.large_string()))


def _combine(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _string_series(arr: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(pd.StringDtype("pyarrow").__from_arrow__(arr), index=index, copy=False)


def first_of(*codes: pd.Series) -> pd.Series:
    """The first non-missing code per row.

    >>> first_of(pd.Series([None, "a"]), pd.Series(["b", "c"])).tolist()
    ['b', 'a']
    """
    return _string_series(pc.coalesce(*[_text(code) for code in codes]), codes[0].index)


def join_flags(*flags: pd.Series) -> pd.Series:
    """All non-missing flags per row, comma-joined and deduplicated (first occurrence kept), NA where none.

    >>> join_flags(pd.Series([None, "a"]), pd.Series(["b", "a"])).tolist()
    ['b', 'a']
    """
    index = flags[0].index
    columns = [c for c in map(_text, flags) if c.null_count < len(c)]  # most rules flag nothing
    if not columns:
        return _na(index)
    # a flag equal to one of an earlier column in its row is dropped; the rest joined, nulls skipped
    kept = [
        pc.if_else(
            pc.fill_null(
                functools.reduce(pc.or_kleene, (pc.equal(column, earlier) for earlier in columns[:i])), False
            ),
            pa.scalar(None, pa.large_string()),
            column,
        )
        if i
        else column
        for i, column in enumerate(columns)
    ]
    # pairwise, not null_handling="skip": pyarrow 26 drops the rows where every input is null
    comma = pa.scalar(",", pa.large_string())
    joined = functools.reduce(
        lambda left, right: pc.coalesce(pc.binary_join_element_wise(left, right, comma), left, right), kept
    )
    return _string_series(joined, index)


def _as_series(values: Any, index: pd.Index) -> pd.Series:
    return values if isinstance(values, pd.Series) else pd.Series(values, index=index)


@functools.cache
def _constraints(target: str, column: str) -> tuple[Constraint, ...]:
    return tuple(c for c in constraints_of(target) if c.column == column)


_INT_RANGES = {"smallint": 2**15, "integer": 2**31}
"""Target integer types by their bound: a value must lie in [-bound, bound). A bigint's range is the
staged Int64's own, so nothing is left to check there (and float64 cannot hold its edge exactly)."""


def _pg_regex(pattern: str) -> str:
    """A CHECK's regex for Python: non-capturing groups, and ``$`` at the end matching only the very
    end, as PostgreSQL's does (Python's also matches before a final newline: ``'MA\n'``).

    >>> import re
    >>> [bool(re.search(_pg_regex("^[A-Z]{2}$"), v)) for v in ("MA", "MA\\n", "MAS")]
    [True, False, False]
    """
    pattern = non_capturing(pattern)
    return pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern


def _breaks(target: str, f: Field, values: pd.Series) -> pd.Series:
    """``<field>_invalid`` where a mapped value would not fit its target column: outside its integer
    type's range, not finite, or breaking the column's CHECK (a format, a code set, ``>= 0``); else NA.

    Every rule normalises what it recognises; this holds whatever a rule let through (a hostile legacy
    value it did not foresee, a number of 40 digits) to the target's own contract, so it is rejected or
    flagged by the field's policy here instead of failing the batch's conversion or the load.
    """
    broken = np.zeros(len(values), dtype=bool)
    present = values.notna().to_numpy(dtype=bool)
    if f.type in _INT_RANGES or f.type == "numeric":
        number = pd.to_numeric(values, errors="coerce").astype("float64")
        bound = float(_INT_RANGES.get(f.type, np.inf))
        ok = np.isfinite(number) & (number >= -bound) & (number < bound)
        broken |= present & ~ok.fillna(False).to_numpy(dtype=bool)
    for c in _constraints(target, f.name):
        if c.kind == "regex":
            text = values.astype("string")
            matches = text.str.contains(_pg_regex(c.arg), regex=True).fillna(True)
            broken |= present & ~matches.to_numpy(dtype=bool)
        elif c.kind == "in_set":
            broken |= present & ~values.isin(c.arg).fillna(True).to_numpy(dtype=bool)
        elif c.kind == "nonnegative":
            broken |= present & (values < 0).fillna(False).to_numpy(dtype=bool)
    return _na(values.index).mask(broken, f"{f.name}_invalid")


_KEYLESS = "_keyless_id"
KEYLESS_PREFIX = "invalid-key-"
"""The legacy id of a row whose key is not an id (text, fractional, blank, in a legacy table whose
key column is untyped): ``invalid-key-`` and 16 hex digits of a hash of the row's other values, with
``-<n>`` for the n-th repeat of an identical row. Such a row is rejected ``id_invalid`` under that
id, so it is counted and traceable; the id carries no value of the row."""


def _keyless_ids(frame: pd.DataFrame, key: str) -> pd.Series | None:
    """Surrogate legacy ids for the rows whose key is missing (see :data:`KEYLESS_PREFIX`), else None."""
    missing = frame[key].isna().to_numpy(dtype=bool)
    if not missing.any():
        return None
    rows = frame.loc[missing].drop(columns=[key]).astype("string")
    digests = pd.util.hash_pandas_object(rows, index=False).map(lambda h: f"{KEYLESS_PREFIX}{int(h):016x}")
    repeat = digests.groupby(digests).cumcount()
    named = digests.where(repeat == 0, digests + "-" + repeat.astype(str))
    return _na(frame.index).mask(missing, pd.Series(named.to_numpy(), index=frame.index[missing]))


def malformed_ids(details: pd.Series) -> pd.Series:
    """The legacy id of each malformed CSV line from its detail (:data:`~cutover.legacy.source.MALFORMED`):
    ``csv-line-<n>``, or ``csv-<delivery>-line-<n>`` for a line of a later delivery than the first.

    >>> malformed_ids(pd.Series(["visits.csv line 12: unclosed quote",
    ...     "visits.csv (delivery 0badc0de) line 3: wrong number of fields (2, expected 9)"])).tolist()
    ['csv-line-12', 'csv-0badc0de-line-3']
    """
    parts = details.astype("string").str.extract(r"(?:\(delivery (\w+)\) )?line (\d+):")
    prefix = ("csv-" + parts[0] + "-").fillna("csv-")
    return (prefix + "line-" + parts[1]).astype("string")


def loose_ref_sources(spec: TableSpec) -> set[str]:
    """For a patient-safety table (never rejected on its own), the legacy columns of its optional,
    non-strict references: an invalid id there leaves the reference NULL, flagged, the row kept."""
    from cutover.target import SAFETY_TABLES

    if spec.target not in SAFETY_TABLES:
        return set()
    return {ref.source for ref in spec.refs if not ref.required and not ref.strict}


def map_batch(spec: TableSpec, batch: pa.Table | pa.RecordBatch, *, as_of: date) -> pa.Table:
    """Map one batch of legacy rows.

    Every legacy row yields exactly one output row, or, with an explode step, one per part; the
    outcome columns (``reason``, ``detail``) agree across the parts of a legacy row. A row whose
    id columns held a value that is not an id (the extract's :data:`~cutover.legacy.source.INVALID_IDS`)
    is rejected ``id_invalid``, and one without a required parent id ``ref_missing`` (an orphan),
    before any rule reads it; ``detail`` names the column.
    """
    frame = batch.to_pandas(types_mapper=pd.ArrowDtype)
    reasons: list[pd.Series] = []
    details: list[pd.Series] = []
    flags: list[pd.Series] = []

    def reject(reason: pd.Series, about: pd.Series | str) -> None:
        # a detail exactly where its reason is given ("" for none), so the first detail of a row is
        # the detail of its first reason, the one first_of keeps
        given = reason.notna().to_numpy(dtype=bool, na_value=False)
        reasons.append(reason)
        details.append(
            _na(reason.index).mask(given, about.astype("string") if isinstance(about, pd.Series) else about)
        )

    if INVALID_IDS in frame:
        invalid = frame[INVALID_IDS].astype("string")
        frame = frame.drop(columns=[INVALID_IDS])
    else:
        invalid = None
    malformed = frame.pop(MALFORMED).astype("string") if MALFORMED in frame else None
    keyless = _keyless_ids(frame, spec.key)
    if malformed is not None and malformed.notna().any():
        keyless = (keyless if keyless is not None else _na(frame.index)).mask(
            malformed.notna(), malformed_ids(malformed)
        )
    if spec.explode is not None:
        if invalid is not None:
            frame = frame.assign(**{INVALID_IDS: invalid})
        if keyless is not None:
            frame = frame.assign(**{_KEYLESS: keyless})
        if malformed is not None:
            frame = frame.assign(**{MALFORMED: malformed})
        frame = spec.explode.fn(frame).reset_index(drop=True)
        if invalid is not None:
            invalid = frame.pop(INVALID_IDS).astype("string")
        if keyless is not None:
            keyless = frame.pop(_KEYLESS).astype("string")
        if malformed is not None:
            malformed = frame.pop(MALFORMED).astype("string")
    index = frame.index
    if malformed is not None:  # first: nothing else of a malformed line can be trusted
        reject(_na(index).mask(malformed.notna(), "csv_malformed"), malformed)
    if spec.removed is not None:
        column, code = spec.removed
        flagged = frame[column].astype("string").str.strip().eq(code).fillna(False).to_numpy(dtype=bool)
        reject(_na(index).mask(flagged, "removed_in_source"), column)
    if keyless is not None:
        reject(_na(index).mask(keyless.notna(), "id_invalid"), spec.key)
    if invalid is not None:
        loose = loose_ref_sources(spec)
        if loose:
            # a safety record is never rejected on its own: a hostile id in a loose reference (its
            # episode, its note) is NULL already and flagged; only its key or its patient rejects it
            only_loose = invalid.str.split(",").map(lambda cols: set(cols) <= loose, na_action="ignore")
            flags.append(_na(index).mask(only_loose.fillna(False).astype(bool), "id_invalid"))
            invalid = invalid.mask(only_loose.fillna(False).astype(bool))
        reject(_na(index).mask(invalid.notna(), "id_invalid"), invalid)
    for ref in spec.refs:
        if ref.required:
            missing = frame[ref.source].isna().to_numpy(dtype=bool)
            if invalid is not None:
                missing = missing & invalid.isna().to_numpy(dtype=bool)
            reject(_na(index).mask(missing, "ref_missing"), ref.source)
    if spec.explode is not None:
        for column, into in (("reason", reasons), ("flag", flags)):
            if column in frame:
                if into is reasons:
                    reject(frame[column].astype("string"), ",".join(spec.explode.sources))
                else:
                    into.append(frame[column].astype("string"))
    b = Batch(frame, as_of)
    out: dict[str, Any] = {"legacy_id": legacy_ids(frame[spec.key])}
    if keyless is not None:
        out["legacy_id"] = out["legacy_id"].fillna(keyless)
    out["row_key"] = (
        out["legacy_id"].where(
            frame["seq"].astype("Int64") == 1, out["legacy_id"] + "#" + frame["seq"].astype("string")
        )
        if spec.explode is not None
        else out["legacy_id"]
    )
    mapped: dict[str, pd.Series] = {}
    for f in spec.fields:
        result = f.rule.fn(b, f.sources)
        values = _as_series(result.values, index)
        reason = _as_series(result.reasons, index).astype("string")
        broken = _breaks(spec.target, f, values)
        values = values.mask(broken.notna().to_numpy(dtype=bool))  # never staged: it would not even convert
        reason = reason.fillna(broken)
        nulled = reason.isin(NULLED_REASONS).fillna(False).astype(bool)
        flags.append(reason.where(nulled))
        reason = reason.mask(nulled)
        if f.invalid == "flag":
            flags.append(reason)
            values = values.mask(reason.notna())
        else:
            reject(reason, ",".join(f.sources))
        if f.required:
            reject(_na(index).mask(values.isna() & reason.isna(), f"{f.name}_missing"), ",".join(f.sources))
        if result.flags is not None:
            flags.append(_as_series(result.flags, index).astype("string"))
        mapped[f.name] = values
    if spec.checks:
        view = pd.DataFrame({**{c: frame[c] for c in frame.columns}, **mapped}, index=index)
        for check in spec.checks:
            fires = check.fn(view).fillna(False).astype(bool)
            if check.action == "reject":
                reject(_na(index).mask(fires, check.code), "")
            else:
                flags.append(_na(index).mask(fires, check.code))
    for f in spec.fields:
        # a pair of fields the target orders (discharge on or after start), where no check of the spec
        # already says so: the later one is invalid
        for c in _constraints(spec.target, f.name):
            if c.kind == "ordered" and c.arg in mapped:
                broken = (mapped[f.name] < mapped[c.arg]).fillna(False).to_numpy(dtype=bool)
                code = f"{f.name}_before_{c.arg}"
                if f.invalid == "flag":
                    flags.append(_na(index).mask(broken, code))
                    mapped[f.name] = mapped[f.name].mask(broken)
                else:
                    reject(_na(index).mask(broken, code), ",".join(f.sources))
    reason = first_of(*reasons) if reasons else _na(index)
    detail = first_of(*details) if details else _na(index)
    detail = detail.mask(detail == "")
    if spec.explode is not None:
        # one outcome per legacy row: a rejected part rejects every part of its row
        grouped = pd.DataFrame({"reason": reason, "detail": detail}).groupby(out["legacy_id"])
        reason = grouped["reason"].transform("first").astype("string")
        detail = grouped["detail"].transform("first").astype("string").mask(reason.isna())
    result_frame = pd.DataFrame(out, index=index)
    for name in mapped:
        result_frame[name] = mapped[name]
    for ref in spec.refs:
        result_frame[f"ref_{ref.column}"] = legacy_ids(frame[ref.source])
    result_frame["merge_into"] = _na(index)
    result_frame["reason"] = reason
    result_frame["detail"] = detail
    result_frame["flags"] = join_flags(*flags) if flags else _na(index)
    return pa.Table.from_pandas(result_frame, schema=spec.staged_schema, preserve_index=False)
