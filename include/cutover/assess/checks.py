"""Named pre-migration checks over the legacy database: what will be rejected, flagged or normalised.

Each check is one function, wrapped by :func:`check` into a :class:`Check` that carries its name,
title, severity and explanation; :data:`CHECKS` is the tuple of them, in report order, and
:func:`run_checks` runs them (sqlglot's optimizer rules, composed as data, are the model). A check
returns one :class:`CheckResult` per place it looked (a table, usually one column or relation):
the number of rows with the defect and up to :data:`MAX_EXAMPLES` legacy ids of such rows, never a
value. A result with ``count == 0`` is a place that was checked and found clean.

The checks use the mapping stage's own normalisers (:mod:`cutover.mapping.normalize`), so what
the assessment predicts is what the migration will do. The legacy columns a check needs are read
once, with :func:`cutover.legacy.source.read_batches`, into narrow Arrow tables (ids and a few
short text columns, never note text or documents).

>>> [c.name for c in CHECKS][:3]
['impossible_dates', 'unparseable_dates', 'dates_out_of_range']
>>> soundex("Robert"), soundex("Rupert"), soundex("Tymczak"), soundex("Pfister")
('R163', 'R163', 'T522', 'P236')
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Final, Literal, TypeVar, cast, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cutover.legacy.profile import legacy_tables
from cutover.legacy.source import arrow_schema, read_batches
from cutover.mapping import normalize as nz

log = logging.getLogger(__name__)
T = TypeVar("T")

Severity = Literal["info", "warning", "error"]
"""``error``: the migration will reject rows; ``warning``: rows migrate with a flag someone must
review; ``info``: values the mapping normalises on its own."""
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)
MAX_EXAMPLES: Final = 10


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check at one place: a count and example legacy ids, never values."""

    name: str
    title: str
    table: str
    count: int
    examples: list[int | str]
    """Up to :data:`MAX_EXAMPLES` legacy ids (the table's key) of rows with the defect, smallest first."""
    severity: Severity
    explanation: str
    column: str | None = None
    """The column (or foreign-key column of a relation) looked at, when there is one."""
    examined: int = 0
    """Rows looked at (non-empty values of the column, for a column check)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Finding:
    """What a check function returns: the rows with the defect at one place."""

    table: str
    column: str | None
    ids: np.ndarray
    examined: int


# --- the legacy data the checks read ------------------------------------------------------------


class LegacyData:
    """Narrow, cached reads of legacy columns (each table read at most once when prefetched).

    ``today`` is the reference day for date checks (two-digit years, dates in the future).
    """

    def __init__(self, legacy_url: str, *, today: date | None = None, batch_rows: int = 100_000) -> None:
        self.url = legacy_url
        self.today = today or date.today()
        self.batch_rows = batch_rows
        self._tables: dict[str, pa.Table] = {}
        self._shared: dict[Hashable, Any] = {}

    def prefetch(self, needs: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        """Read the union of the columns the checks declared, one pass per table."""
        wanted: dict[str, set[str]] = {}
        for table, columns in needs:
            wanted.setdefault(table, set()).update(columns)
        for table, names in wanted.items():
            self.table(table, sorted(names))

    def table(self, table: str, columns: Iterable[str]) -> pa.Table:
        """The key and ``columns`` of a legacy table, in key order."""
        spec = legacy_tables()[table]
        have = self._tables.get(table)
        wanted = {spec.key, *columns}
        if have is not None and wanted <= set(have.column_names):
            return have
        if have is not None:
            wanted |= set(have.column_names)
        cols = [(name, kind) for name, kind in spec.columns if name in wanted]
        batches = list(read_batches(self.url, spec.source_name, cols, spec.key, batch_rows=self.batch_rows))
        self._tables[table] = pa.Table.from_batches(batches, schema=arrow_schema(cols))
        return self._tables[table]

    def frame(self, table: str, columns: Iterable[str]) -> pd.DataFrame:
        columns = list(columns)
        key = legacy_tables()[table].key
        return (
            self.table(table, columns)
            .select([key, *[c for c in columns if c != key]])
            .to_pandas(types_mapper=pd.ArrowDtype)
        )

    def ids(self, table: str) -> np.ndarray:
        key = legacy_tables()[table].key
        return self.table(table, [key])[key].to_numpy()

    def shared(self, key: Hashable, compute: Callable[[], T]) -> T:
        """A reading several checks use (parsed dates, CPT lines, ICD codes): computed once."""
        if key not in self._shared:
            self._shared[key] = compute()
        return cast(T, self._shared[key])

    def dates(self, table: str, column: str) -> nz.Normalized:
        """``column`` read by :func:`cutover.mapping.normalize.parse_date`."""
        role: nz.DateRole = "birth" if column == "dob" else "event"
        return self.shared(
            ("dates", table, column),
            lambda: nz.parse_date(self.frame(table, [column])[column], role=role, today=self.today),
        )


# --- checks as data -----------------------------------------------------------------------------

FindFn = Callable[[LegacyData], list[Finding]]


@dataclass(frozen=True)
class Check:
    """A named check: metadata plus the function that finds the defective rows."""

    name: str
    title: str
    severity: Severity
    explanation: str
    declared: tuple[tuple[str, tuple[str, ...]], ...] | Callable[[], tuple[tuple[str, tuple[str, ...]], ...]]
    """(table, columns) the check reads, or how to derive them from the profile in use."""
    find: FindFn

    @property
    def needs(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(table, columns) the check reads: prefetched together, one pass per table."""
        return self.declared() if callable(self.declared) else self.declared

    def applies(self) -> bool:
        """The profile in use has every table and column the check reads (a check written for the
        simulator's layout does not apply to another layout that lacks them)."""
        tables = legacy_tables()
        return all(t in tables and set(c) <= set(tables[t].column_names) for t, c in self.needs)

    def __call__(self, data: LegacyData) -> list[CheckResult]:
        results = []
        for f in self.find(data):
            ids = np.sort(np.asarray(f.ids))
            results.append(
                CheckResult(
                    name=self.name,
                    title=self.title,
                    table=f.table,
                    count=int(ids.size),
                    examples=[i.item() if hasattr(i, "item") else i for i in ids[:MAX_EXAMPLES]],
                    severity=self.severity,
                    explanation=self.explanation,
                    column=f.column,
                    examined=int(f.examined),
                )
            )
        return results


def check(
    name: str,
    title: str,
    severity: Severity,
    explanation: str,
    needs: Iterable[tuple[str, Iterable[str]]] | Callable[[], tuple[tuple[str, tuple[str, ...]], ...]],
) -> Callable[[FindFn], Check]:
    """Turn a function ``LegacyData -> list[Finding]`` into a named :class:`Check`."""

    def wrap(fn: FindFn) -> Check:
        declared = needs if callable(needs) else tuple((t, tuple(c)) for t, c in needs)
        return Check(name, title, severity, explanation, declared, fn)

    return wrap


def _np(arr: Any) -> np.ndarray:
    """A boolean mask as numpy, NA as False."""
    if isinstance(arr, pd.Series):
        return np.array(arr.fillna(False).to_numpy(dtype=bool))
    return np.array(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _present(series: pd.Series) -> np.ndarray:
    """Non-empty: not NULL and not a null token."""
    return nz.null_tokens(series).values.notna().to_numpy(dtype=bool)


def _reason_finding(table: str, column: str, frame: pd.DataFrame, reasons: pd.Series, *codes: str) -> Finding:
    key = legacy_tables()[table].key
    hit = _np(reasons.isin(list(codes)))
    return Finding(table, column, frame[key].to_numpy()[hit], int(_present(frame[column]).sum()))


# --- dates --------------------------------------------------------------------------------------

DATE_RULES: Final = frozenset({"date", "timestamp"})


def date_columns() -> tuple[tuple[str, str], ...]:
    """Every legacy column the profile in use reads as a date or a date-time (its fields' rules),
    and its change-tracking column."""
    from cutover.legacy.profile import current

    profile = current()
    found: dict[tuple[str, str], None] = {}
    for name, table in profile.tables.items():
        fields = (profile.document["tables"][name].get("map") or {}).get("fields") or {}
        for field in fields.values():
            if field.get("rule") in DATE_RULES:
                sources = [field["from"]] if isinstance(field["from"], str) else field["from"]
                found[(name, sources[0])] = None
        if table.modified is not None:
            found[(name, table.modified)] = None
    return tuple(found)


def _date_needs() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((t, (c,)) for t, c in date_columns())


def _date_findings(data: LegacyData, reason: nz.Reason) -> list[Finding]:
    out = []
    for table, column in date_columns():
        parsed = data.dates(table, column)
        frame = data.frame(table, [column])
        out.append(_reason_finding(table, column, frame, parsed.reasons, reason))
    return out


@check(
    "impossible_dates",
    "Impossible dates",
    "error",
    "A date with the shape of a date that names no calendar day (Feb 30, 0000-00-00, month 13). "
    "The mapping rejects the row with reason date_impossible.",
    _date_needs,
)
def impossible_dates(data: LegacyData) -> list[Finding]:
    return _date_findings(data, "date_impossible")


@check(
    "unparseable_dates",
    "Unparseable dates",
    "error",
    "Text in a date column in none of the date formats the mapping reads. "
    "The mapping rejects the row with reason date_unparseable.",
    _date_needs,
)
def unparseable_dates(data: LegacyData) -> list[Finding]:
    return _date_findings(data, "date_unparseable")


@check(
    "dates_out_of_range",
    "Dates out of range",
    "error",
    "A real calendar date the chart cannot hold: before 1900, a birth after the assessment day, an event "
    "after next year. The mapping rejects the row with reason date_out_of_range.",
    _date_needs,
)
def dates_out_of_range(data: LegacyData) -> list[Finding]:
    return _date_findings(data, "date_out_of_range")


# --- relations ----------------------------------------------------------------------------------


def _relation_needs() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        need
        for t in legacy_tables().values()
        for need in ((t.name, tuple(fk for fk, _ in t.parents)), *((p, ()) for _, p in t.parents))
    )


@check(
    "orphans",
    "Orphans (parent row missing)",
    "error",
    "A foreign key whose parent row does not exist (the legacy database declares no foreign keys). "
    "Every relation of the legacy schema is checked; the mapping rejects orphans.",
    _relation_needs,
)
def orphans(data: LegacyData) -> list[Finding]:
    out = []
    for spec in legacy_tables().values():
        for fk, parent in spec.parents:
            child = data.table(spec.name, [fk])
            keys = data.table(parent, [])[legacy_tables()[parent].key]
            values = child[fk]
            missing = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=keys)))
            ids = child[spec.key].to_numpy()[_np(missing)]
            out.append(Finding(spec.name, fk, ids, values.length() - values.null_count))
    return out


# --- duplicate candidate patients ---------------------------------------------------------------

_SOUNDEX_CODES: Final = {
    **dict.fromkeys("BFPV", "1"),
    **dict.fromkeys("CGJKQSXZ", "2"),
    **dict.fromkeys("DT", "3"),
    "L": "4",
    **dict.fromkeys("MN", "5"),
    "R": "6",
}


def soundex(name: str) -> str:
    """American Soundex (letters only; H and W do not separate equal codes). Empty for no letters."""
    letters = re.sub(r"[^A-Z]", "", name.upper())
    if not letters:
        return ""
    out = letters[0]
    last = _SOUNDEX_CODES.get(letters[0], "")
    for ch in letters[1:]:
        code = _SOUNDEX_CODES.get(ch, "")
        if code and code != last:
            out += code
        if ch not in "HW":
            last = code
    return (out + "000")[:4]


def _arrow(series: pd.Series) -> pa.Array:
    arr = pa.array(series.array)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def duplicate_keys(names: pd.Series, dob: pd.Series, *, today: date | None = None) -> pd.Series:
    """A blocking key per patient: birth date (day and month in either order), the family name's
    Soundex, the given name's first letter; NA when the name or the date cannot be read.

    A cheap proxy for "probably the same person", not a matcher: it finds typos that keep the sound
    of the family name and a day/month swap in the birth date; the real matcher scores pairs.

    >>> keys = duplicate_keys(pd.Series(["SMITH, JOHN", "Smyth, Jon A", "Smith, Mary"]),
    ...                       pd.Series(["1970-03-07", "07/03/1970", "1970-03-07"]))
    >>> keys.tolist()
    ['1970-03-07 S530 J', '1970-03-07 S530 J', '1970-03-07 S530 M']
    """
    parts = nz.split_person_name(names)
    born = _arrow(nz.parse_date(dob, role="birth", today=today).values)
    month, day = pc.month(born), pc.day(born)
    born_key = pc.binary_join_element_wise(
        pc.cast(pc.year(born), pa.string()),
        pc.utf8_lpad(pc.cast(pc.min_element_wise(month, day), pa.string()), 2, "0"),
        pc.utf8_lpad(pc.cast(pc.max_element_wise(month, day), pa.string()), 2, "0"),
        "-",
    )
    family = pc.dictionary_encode(pc.cast(_arrow(parts["family"]), pa.string()))
    codes = pa.array([soundex(f) or None for f in family.dictionary.to_pylist()], pa.string())
    sound = codes.take(family.indices)
    initial = pc.utf8_upper(pc.utf8_slice_codeunits(pc.cast(_arrow(parts["given"]), pa.string()), 0, 1))
    key = pc.binary_join_element_wise(born_key, sound, initial, " ")  # null when any part is null
    return pd.Series(key.to_pandas(types_mapper=pd.ArrowDtype), index=names.index).astype(nz.TEXT)


@check(
    "duplicate_patients",
    "Duplicate candidate patients",
    "warning",
    "Patients who share a birth date (day and month in either order), the Soundex of the family name and "
    "the given name's first letter with an earlier patient: candidates for the matcher and for review, "
    "counted once per extra record. A cheap blocking proxy: it misses some duplicates and proposes some "
    "strangers; the matching stage decides.",
    (("patients", ("pat_name", "dob")),),
)
def duplicate_patients(data: LegacyData) -> list[Finding]:
    frame = data.frame("patients", ["pat_name", "dob"])
    keys = duplicate_keys(frame["pat_name"], frame["dob"], today=data.today)
    known = keys.notna().to_numpy(dtype=bool)
    # frames are in key order: the first patient of a block is the earliest record, the rest are candidates
    later = keys[known].duplicated(keep="first").to_numpy(dtype=bool)
    return [
        Finding(
            "patients",
            "pat_name",
            frame[legacy_tables()["patients"].key].to_numpy()[known][later],
            int(known.sum()),
        )
    ]


# --- codes and identifiers ----------------------------------------------------------------------


@dataclass(frozen=True)
class _IcdReading:
    table: str
    column: str
    ids: np.ndarray
    """The legacy id of each code read (a plan of care lists several codes)."""
    read: pd.DataFrame
    """:func:`cutover.mapping.normalize.icd10` of each code."""
    examined: int


def _icd_readings(data: LegacyData) -> list[_IcdReading]:
    """Every diagnosis code of the legacy database, read with its date of service.

    The date decides a code that could be either system (E8889: ICD-10-CM E88.89 or ICD-9-CM E888.9).
    """

    def dated(table: str, column: str) -> pd.Series:
        return data.dates(table, column).values

    diagnoses = data.frame("diagnoses", ["case_id", "icd_code"])
    start = _arrow(dated("cases", "start_date"))
    where = pc.index_in(_arrow(diagnoses["case_id"]), value_set=pa.array(data.ids("cases")))
    service = pd.Series(start.take(where).to_pandas(types_mapper=pd.ArrowDtype), index=diagnoses.index)
    referrals = data.frame("referrals", ["dx_code"])
    out = [
        _IcdReading(
            table,
            column,
            frame[legacy_tables()[table].key].to_numpy(),
            nz.icd10(frame[column], service_date=when),
            int(_present(frame[column]).sum()),
        )
        for table, column, frame, when in (
            ("diagnoses", "icd_code", diagnoses, service),
            ("referrals", "dx_code", referrals, dated("referrals", "referral_date")),
        )
    ]
    # plans of care list several codes in one column: each code is read, a row counts once
    poc = data.frame("plans_of_care", ["dx_codes"])
    listed = nz.null_tokens(poc["dx_codes"]).values.str.split(r"[,;]", regex=True).explode()
    listed = listed[listed.notna() & (listed.str.strip() != "")]
    rows = listed.index.to_numpy()
    cert = dated("plans_of_care", "cert_date").iloc[rows].reset_index(drop=True)
    read = nz.icd10(listed.reset_index(drop=True), service_date=cert)
    out.append(
        _IcdReading(
            "plans_of_care",
            "dx_codes",
            poc["poc_id"].to_numpy()[rows],
            read,
            int(_present(poc["dx_codes"]).sum()),
        )
    )
    return out


def _icd(data: LegacyData, hit: Callable[[pd.DataFrame], np.ndarray]) -> list[Finding]:
    return [
        Finding(r.table, r.column, np.unique(r.ids[hit(r.read)]), r.examined)
        for r in data.shared("icd", lambda: _icd_readings(data))
    ]


_ICD_NEEDS = (
    ("diagnoses", ("case_id", "icd_code")),
    ("cases", ("start_date",)),
    ("referrals", ("dx_code", "referral_date")),
    ("plans_of_care", ("dx_codes", "cert_date")),
)


@check(
    "icd9_codes",
    "ICD-9-CM diagnosis codes",
    "info",
    "Diagnosis codes in ICD-9-CM (724.2, 7242, V57.1), read by their shape and, for an ambiguous code, the "
    "date of service. The mapping carries them to ICD-10-CM through the CMS GEMs, which are not one-to-one: "
    "a mapped code is marked approximate where the GEMs say so; an unmappable one is rejected.",
    _ICD_NEEDS,
)
def icd9_codes(data: LegacyData) -> list[Finding]:
    return _icd(
        data, lambda read: _np(read["source_system"] == "icd9cm") | _np(read["reason"] == "icd9_unmapped")
    )


@check(
    "invalid_icd_codes",
    "Invalid or unmappable diagnosis codes",
    "error",
    "A diagnosis code that is neither ICD-10-CM nor ICD-9-CM in shape, or an ICD-9-CM code without a GEM "
    "entry: the mapping rejects the row (icd_invalid, icd9_unmapped).",
    _ICD_NEEDS,
)
def invalid_icd_codes(data: LegacyData) -> list[Finding]:
    return _icd(data, lambda read: _np(read["reason"].isin(["icd_invalid", "icd9_unmapped"])))


@check(
    "placeholder_ssns",
    "Placeholder SSNs",
    "info",
    "An SSN that was keyed but is no SSN: blank or a null token, all one digit (999999999), 123456789 and "
    "other known fakes, or a number SSA never issues. The mapping stores NULL and migrates the patient; "
    "a NULL SSN (never keyed) is not counted.",
    (("patients", ("ssn",)),),
)
def placeholder_ssns(data: LegacyData) -> list[Finding]:
    frame = data.frame("patients", ["ssn"])
    raw = frame["ssn"]
    keyed = raw.notna().to_numpy(dtype=bool)
    blank = keyed & ~_present(raw)
    fake = _np(nz.ssn(raw).reasons == "ssn_placeholder")
    return [
        Finding(
            "patients",
            "ssn",
            frame[legacy_tables()["patients"].key].to_numpy()[blank | fake],
            int(keyed.sum()),
        )
    ]


_NPI_COLUMNS: Final = (("providers", "npi"), ("ref_physicians", "npi"), ("plans_of_care", "certified_by"))


@check(
    "invalid_npis",
    "Invalid NPIs",
    "warning",
    "An NPI that is not 10 digits whose last digit is the Luhn check digit over 80840 and the first nine. "
    "The provider or physician migrates (rejecting it would strand its visits); its NPI is reported and "
    "not trusted.",
    tuple((t, (c,)) for t, c in _NPI_COLUMNS),
)
def invalid_npis(data: LegacyData) -> list[Finding]:
    out = []
    for table, column in _NPI_COLUMNS:
        frame = data.frame(table, [column])
        out.append(_reason_finding(table, column, frame, nz.npi_valid(frame[column]).reasons, "npi_invalid"))
    return out


# --- episodes and visits ------------------------------------------------------------------------


@check(
    "notes_without_appointment",
    "Visit notes without an appointment",
    "warning",
    "A visit note whose appointment id is empty (a walk-in, a telephone call, or a lost link). The visit "
    "migrates without an appointment and is flagged for review.",
    (("visits", ("appt_id",)),),
)
def notes_without_appointment(data: LegacyData) -> list[Finding]:
    visits = data.table("visits", ["appt_id"])
    mask = _np(pc.is_null(visits["appt_id"]))
    return [
        Finding("visits", "appt_id", visits[legacy_tables()["visits"].key].to_numpy()[mask], visits.num_rows)
    ]


def _days(dates: pd.Series) -> np.ndarray:
    """``date32`` values as days since 1970 (float, NaN where missing or unreadable)."""
    days = pc.cast(_arrow(dates), pa.int32()).to_numpy(zero_copy_only=False)
    return np.asarray(days, dtype=np.float64)


def _case_dates(data: LegacyData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(case ids, start days, discharge days), NaN where a date is missing or unreadable."""
    return (
        data.ids("cases"),
        _days(data.dates("cases", "start_date").values),
        _days(data.dates("cases", "discharge_date").values),
    )


@check(
    "discharge_before_start",
    "Discharge before the start of care",
    "error",
    "An episode of care discharged before it started: a keying error. The mapping rejects the case.",
    (("cases", ("start_date", "discharge_date")),),
)
def discharge_before_start(data: LegacyData) -> list[Finding]:
    ids, start, discharge = _case_dates(data)
    both = ~np.isnan(start) & ~np.isnan(discharge)
    bad = both & (discharge < start)
    return [Finding("cases", "discharge_date", ids[bad], int(both.sum()))]


@check(
    "visits_after_discharge",
    "Visits after discharge",
    "warning",
    "A visit dated after its episode's discharge, on an episode whose dates are otherwise consistent "
    "(typically a reopened case). The visit migrates and is flagged; episodes discharged before their start "
    "are reported by their own check instead.",
    (("visits", ("case_id", "visit_date")), ("cases", ("start_date", "discharge_date"))),
)
def visits_after_discharge(data: LegacyData) -> list[Finding]:
    ids, start, discharge = _case_dates(data)
    visits = data.table("visits", ["case_id", "visit_date"])
    when = _days(data.dates("visits", "visit_date").values)
    where = pc.index_in(visits["case_id"], value_set=pa.array(ids)).to_numpy(zero_copy_only=False)
    found = ~np.isnan(where)
    at = np.where(found, where, 0).astype(np.int64)
    dc = np.where(found, discharge[at], np.nan)
    st = np.where(found, start[at], np.nan)
    with np.errstate(invalid="ignore"):  # NaN compares False: an unreadable date judges nothing
        judged = ~np.isnan(when) & ~np.isnan(dc) & (dc >= st)
        after = judged & (when > dc)
    return [
        Finding(
            "visits", "visit_date", visits[legacy_tables()["visits"].key].to_numpy()[after], int(judged.sum())
        )
    ]


# --- outcomes, procedures, money ----------------------------------------------------------------


def _scores(data: LegacyData, *codes: str) -> list[Finding]:
    frame = data.frame("outcomes", ["measure", "score"])
    reasons = data.shared("scores", lambda: nz.outcome_score(frame["measure"], frame["score"]).reasons)
    return [_reason_finding("outcomes", "score", frame, reasons, *codes)]


@check(
    "scores_out_of_range",
    "Outcome scores out of range",
    "error",
    "An outcome score outside its instrument's scale (LEFS 0-80, ODI 0-100, NDI 0-50, QuickDASH 0-100, "
    "PSFS 0-10; percents converted). The mapping rejects the row with reason score_out_of_range.",
    (("outcomes", ("measure", "score")),),
)
def scores_out_of_range(data: LegacyData) -> list[Finding]:
    return _scores(data, "score_out_of_range")


@check(
    "unreadable_scores",
    "Unreadable outcome scores",
    "error",
    "An outcome score that is not a number, or whose instrument is unknown (score_invalid, measure_unknown): "
    "the mapping rejects the row.",
    (("outcomes", ("measure", "score")),),
)
def unreadable_scores(data: LegacyData) -> list[Finding]:
    return _scores(data, "score_invalid", "measure_unknown")


_PROCEDURE_NEEDS = (("procedures", ("cpt_text", "minutes", "units", "modifiers")),)


def _cpt_lines(data: LegacyData) -> pd.DataFrame:
    """The procedure lines as the mapping splits them: one row per CPT code (shared by two checks)."""
    columns = ["cpt_text", "minutes", "units", "modifiers"]
    return data.shared("cpt_lines", lambda: nz.parse_cpt_lines(data.frame("procedures", columns)))


@check(
    "multi_code_cpt_lines",
    "Procedure lines holding several CPT codes",
    "info",
    "A free-text procedure line with several codes (97110x2, 97140 x1). The mapping splits it into one line "
    "per code and shares the minutes out in proportion to units.",
    _PROCEDURE_NEEDS,
)
def multi_code_cpt_lines(data: LegacyData) -> list[Finding]:
    lines = _cpt_lines(data)
    codes = lines[lines["cpt_code"].notna()].groupby("proc_id").size()
    examined = int(_present(data.frame("procedures", ["cpt_text"])["cpt_text"]).sum())
    return [Finding("procedures", "cpt_text", codes.index.to_numpy()[codes.to_numpy() > 1], examined)]


@check(
    "units_exceed_minutes",
    "Units above what the minutes allow",
    "warning",
    "A timed CPT line billed with more units than its minutes allow under the 8-minute rule, per line "
    "(8-22 min: 1 unit, 23-37: 2, +1 per 15). A compliance finding: the legacy units migrate unchanged and "
    "the line is flagged.",
    _PROCEDURE_NEEDS,
)
def units_exceed_minutes(data: LegacyData) -> list[Finding]:
    lines = _cpt_lines(data)
    flags = nz.units_check(lines, rule="per_line")
    judged = lines["units"].notna() & lines["minutes"].notna() & lines["cpt_code"].notna()
    flagged = np.unique(lines["proc_id"].to_numpy()[_np(flags == "units_exceed_minutes")])
    return [
        Finding(
            "procedures", "units", flagged, int(lines.loc[judged.to_numpy(dtype=bool), "proc_id"].nunique())
        )
    ]


_MONEY_COLUMNS: Final = (("charges", "amount"), ("payments", "amount"))


def _money_reasons(data: LegacyData, table: str, column: str) -> pd.Series:
    return data.shared(
        ("money", table, column), lambda: nz.money_cents(data.frame(table, [column])[column]).reasons
    )


_CANONICAL_MONEY: Final = r"^-?[0-9]+\.[0-9]{2}$"


@check(
    "noncanonical_money",
    "Amounts in non-canonical formats",
    "info",
    "An amount not written as plain dollars with two decimals (125.00): $1,234.50, 125, 125.5, spaces, "
    "(12.00). The mapping reads them into exact cents.",
    tuple((t, (c,)) for t, c in _MONEY_COLUMNS),
)
def noncanonical_money(data: LegacyData) -> list[Finding]:
    out = []
    for table, column in _MONEY_COLUMNS:
        frame = data.frame(table, [column])
        present = _present(frame[column])
        canonical = _np(frame[column].str.match(_CANONICAL_MONEY))
        ok = _np(_money_reasons(data, table, column).isna())
        bad = present & ~canonical & ok
        out.append(
            Finding(table, column, frame[legacy_tables()[table].key].to_numpy()[bad], int(present.sum()))
        )
    return out


@check(
    "invalid_money",
    "Unreadable amounts",
    "error",
    "An amount that is no amount of money (letters, fractions of a cent, two signs): the mapping rejects the "
    "row with reason money_invalid.",
    tuple((t, (c,)) for t, c in _MONEY_COLUMNS),
)
def invalid_money(data: LegacyData) -> list[Finding]:
    out = []
    for table, column in _MONEY_COLUMNS:
        frame = data.frame(table, [column])
        out.append(
            _reason_finding(table, column, frame, _money_reasons(data, table, column), "money_invalid")
        )
    return out


CHECKS: Final[tuple[Check, ...]] = (
    impossible_dates,
    unparseable_dates,
    dates_out_of_range,
    orphans,
    duplicate_patients,
    icd9_codes,
    invalid_icd_codes,
    placeholder_ssns,
    invalid_npis,
    notes_without_appointment,
    visits_after_discharge,
    discharge_before_start,
    scores_out_of_range,
    unreadable_scores,
    multi_code_cpt_lines,
    units_exceed_minutes,
    noncanonical_money,
    invalid_money,
)
"""Every pre-migration check, in report order."""


def run_checks(
    legacy_url: str, checks: Iterable[Check] = CHECKS, *, today: date | None = None
) -> list[CheckResult]:
    """Run ``checks`` over the legacy database; each table is read once (narrow columns only)."""
    checks = tuple(c for c in checks if c.applies())
    started = time.perf_counter()
    data = LegacyData(legacy_url, today=today)
    data.prefetch(need for c in checks for need in c.needs)
    read = time.perf_counter()
    results: list[CheckResult] = []
    for c in checks:
        began = time.perf_counter()
        found = c(data)
        results.extend(found)
        log.info(
            "check %s: %d rows in %d places, %.2fs",
            c.name,
            sum(r.count for r in found),
            sum(1 for r in found if r.count),
            time.perf_counter() - began,
        )
    log.info("checks: read %.2fs, %d checks %.2fs", read - started, len(checks), time.perf_counter() - read)
    return results
