"""The named library a legacy profile calls: rules, row checks, explode steps and load checks.

A profile is data and cannot run code of its own: it names an entry here and gives its parameters
(``rule: code`` ``with: {table: {...}, reason: credential_unknown}``). Each entry is a factory
whose keyword parameters are the parameters a profile may give; :func:`build` calls it and says,
in one line, what is wrong when the parameters do not fit.

>>> build(RULES, "integer", {"kind": "smallint"}).title.startswith("whole number (smallint)")
True
>>> build(RULES, "integer", {"knd": "smallint"})
Traceback (most recent call last):
...
ValueError: integer: unknown parameter knd (expected: kind)
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cutover.mapping import normalize as nz
from cutover.mapping import rules as r
from cutover.mapping import safety
from cutover.mapping.engine import Batch, Explode, LoadFlag, Rule


# --- rules -------------------------------------------------------------------------------------------
def _code(*, table: Mapping[str, str], reason: str) -> Rule:
    return r.code({str(k): str(v) for k, v in table.items()}, reason)


def _formats(formats: list[str] | str | None) -> list[str] | None:
    if formats is None:
        return None
    listed = [formats] if isinstance(formats, str) else formats
    if not isinstance(listed, list) or not listed or not all(isinstance(f, str) for f in listed):
        raise ValueError("formats: a list of strptime formats such as ['%d.%m.%Y']")
    return listed


def _date(*, role: nz.DateRole = "event", formats: list[str] | None = None) -> Rule:
    return r.date(role, _formats(formats))


def _timestamp(*, formats: list[str] | None = None) -> Rule:
    return r.timestamp(_formats(formats))


def _name_part(*, part: str, credentials: bool = False, form: r.NameForm = "one_column") -> Rule:
    return r.name_part(part, credentials=credentials, form=form)


def _integer(*, kind: str = "bigint") -> Rule:
    return r.integer(kind)


def _leading_integer(*, kind: str = "bigint") -> Rule:
    return r.leading_integer(kind)


def _icd(*, part: str = "code") -> Rule:
    return r.icd(part)


_MODIFIER_RE = re.compile(r"^[0-9A-Z]{2}$")


def _modifiers() -> Rule:
    """CPT modifiers written in one column (``GP``, ``GP,59``, ``GP 59``) → a list, in written order."""

    def run(b: Batch, src: tuple[str, ...]) -> nz.Normalized:
        raw = r.cell_text(b, src[0]).str.upper()
        read: dict[str, tuple[list[str], bool]] = {}
        for text in raw.dropna().unique().tolist():  # a handful of distinct spellings
            parts = [p for p in re.split(r"[\s,;/:-]+", text) if p]
            kept = list(dict.fromkeys(p for p in parts if _MODIFIER_RE.match(p)))
            read[text] = (kept, len(kept) < len(set(parts)))
        lists = [read[t][0] if isinstance(t, str) else [] for t in raw.tolist()]
        invalid = [isinstance(t, str) and read[t][1] for t in raw.tolist()]
        values = pd.Series(
            pa.array(lists, pa.list_(pa.string())),
            index=raw.index,
            dtype=pd.ArrowDtype(pa.list_(pa.string())),
        )
        none = pd.Series(pd.NA, index=raw.index, dtype="string")
        return nz.Normalized(
            values=values,
            reasons=none,
            flags=none.mask(pd.Series(invalid, index=raw.index), "modifier_invalid"),
        )

    return Rule(
        "CPT modifiers in one column ('GP', 'GP,59', 'GP 59') → a list in written order, repeats dropped; "
        "one that is not two letters or digits is dropped and flagged modifier_invalid; none → an empty list",
        run,
    )


def _upper_except(*, values: Mapping[str, str]) -> Rule:
    """Code text, upper case; a listed value is bookkeeping, not a code: NULL, the row flagged."""
    listed = {str(k).strip().upper(): str(v) for k, v in values.items()}
    if not listed:
        raise ValueError("values: give at least one bookkeeping value and its flag code")

    def run(b: Batch, src: tuple[str, ...]) -> nz.Normalized:
        raw = r.cell_text(b, src[0]).str.upper()
        flags = raw.map(listed).astype("string")
        return nz.Normalized(
            values=raw.mask(flags.notna().to_numpy(dtype=bool)),
            reasons=pd.Series(pd.NA, index=raw.index, dtype="string"),
            flags=flags,
        )

    shown = ", ".join(f"{k} (flagged {v})" for k, v in listed.items())
    return Rule(
        f"code text: trimmed, upper case, null tokens to NULL; a bookkeeping value that is no code is "
        f"NULL and the row flagged: {shown}",
        run,
    )


def _appointment_state(
    *, active: str = "Active", inactive: str = "Inactive", no_show: list[str] | None = None
) -> Rule:
    """An appointment's state from three columns: the scheduler's status, the check-in time, the
    cancellation reason (read in this order)."""
    on = active.strip().upper()
    off = inactive.strip().upper()
    absent = {r.strip().upper() for r in no_show or ()}

    def run(b: Batch, src: tuple[str, ...]) -> nz.Normalized:
        if len(src) != 3:
            raise ValueError(
                f"appointment_state reads 3 columns (status, check-in time, reason), {len(src)} given"
            )
        status = r.cell_text(b, src[0]).str.upper()
        checked_in = r.cell_text(b, src[1]).notna()
        reason = r.cell_text(b, src[2]).str.upper()
        values = pd.Series(pd.NA, index=status.index, dtype="string")
        values = values.mask(status.eq(on).fillna(False), "scheduled")
        off_rows = status.eq(off).fillna(False)
        values = values.mask(off_rows, "cancelled")
        values = values.mask(off_rows & reason.isin(absent).fillna(False), "no_show")
        values = values.mask(checked_in, "arrived")
        unknown = status.notna() & ~status.isin([on, off]).fillna(False) & ~checked_in
        reasons = pd.Series(pd.NA, index=status.index, dtype="string").mask(unknown, "status_unknown")
        return nz.Normalized(values=values.mask(unknown), reasons=reasons)

    return Rule(
        f"appointment state from the status, the check-in time and the cancellation reason: checked in → "
        f"arrived; {active} → scheduled; {inactive} → no_show where the reason is "
        f"{' or '.join(repr(r) for r in no_show or ()) or '(none given)'}, else cancelled; another status "
        "is status_unknown",
        run,
    )


RULES: dict[str, Callable[..., Rule]] = {
    "text": r.text,
    "upper": r.upper,
    "lower": r.lower,
    "code": _code,
    "flag_yn": r.flag_yn,
    "date": _date,
    "timestamp": _timestamp,
    "timezone": r.timezone,
    "name_part": _name_part,
    "phone": r.phone,
    "postal": r.postal,
    "sex": r.sex,
    "ssn": r.ssn,
    "npi": r.npi,
    "npi_digits": r.npi_digits,
    "money": r.money,
    "integer": _integer,
    "leading_integer": _leading_integer,
    "icd": _icd,
    "icd_list": r.icd_list,
    "measure": r.measure,
    "score": r.score,
    "same": r.same,
    "binary": r.binary,
    "sha256": r.sha256,
    "modifiers": _modifiers,
    "upper_except": _upper_except,
    "appointment_state": _appointment_state,
    "allergen": safety.allergen,
    "precaution_kind": safety.precaution_kind,
    "uncoded_text": safety.uncoded_text,
    "record_sources": safety.record_sources,
}
"""Rules by name: one target value from legacy column(s)."""


# --- row checks --------------------------------------------------------------------------------------
CheckFn = Callable[[pd.DataFrame], pd.Series]


def before(*, later: str, earlier: str) -> CheckFn:
    """Fires where ``later`` is before ``earlier`` (both present)."""

    def fires(view: pd.DataFrame) -> pd.Series:
        return (view[later] < view[earlier]).fillna(False)

    return fires


def exceeds(*, value: str, limit: str) -> CheckFn:
    """Fires where ``value`` is greater than ``limit`` (both present)."""

    def fires(view: pd.DataFrame) -> pd.Series:
        return (view[value] > view[limit]).fillna(False)

    return fires


def missing(*, column: str) -> CheckFn:
    """Fires where ``column`` (a target field or legacy column) is empty."""

    def fires(view: pd.DataFrame) -> pd.Series:
        return view[column].isna()

    return fires


def units_rule(*, finding: str) -> CheckFn:
    """Rows where the unit rules (8-minute rule, one-unit untimed codes) report ``finding``."""
    if finding not in ("units_exceed_minutes", "untimed_multiple_units"):
        raise ValueError(
            f"finding {finding} is not a unit rule (units_exceed_minutes, untimed_multiple_units)"
        )

    def fires(view: pd.DataFrame) -> pd.Series:
        return nz.units_check(view[["cpt_code", "units", "minutes"]]).eq(finding)

    return fires


def _first_entry_order(view: pd.DataFrame, key: str) -> pd.Index:
    """The view's index in legacy-id order: of two identical rows, the lower legacy id was entered first
    (integer ids by number; a text key, ``A-000123``, as text)."""
    ids = pd.to_numeric(view[key], errors="coerce")
    return view.assign(_id=ids).sort_values(["_id", key], kind="stable").index


def entered_twice(*, key: str, within: str, columns: list[str]) -> CheckFn:
    """Rows equal to an earlier legacy row (lower ``key``) of the same ``within`` in ``columns``: the
    later ones fire.

    A check sees one mapping batch (:data:`cutover.mapping.engine.MAP_BATCH_ROWS`, 50,000 legacy
    rows): a row re-entered so much later that it falls in another batch is not found.
    """
    compared = [within, *(c for c in columns if c != within)]

    def fires(view: pd.DataFrame) -> pd.Series:
        ordered = view.loc[_first_entry_order(view, key), compared]
        repeated = ordered.duplicated(keep="first") & ordered[within].notna()
        return repeated.reindex(view.index).fillna(False).astype(bool)

    return fires


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def lines_entered_twice(*, key: str, within: str) -> CheckFn:
    """Exploded lines of a legacy row identical to an earlier legacy row (lower ``key``) of its ``within``.

    Two legacy rows are compared by all their lines (code, units, minutes, modifiers, in text
    order): the normalised lines, so ``97110x2`` and ``97110 X 2`` are one entry. Every line of the
    later row fires. One mapping batch at a time (50,000 legacy rows): a repeat entered so much
    later that it lands in another batch is not found.
    """

    def fires(view: pd.DataFrame) -> pd.Series:
        ordered = view.loc[_first_entry_order(view.assign(_seq=pd.to_numeric(view["seq"])), key)]
        modifiers = pc.binary_join(
            pc.cast(pa.chunked_array([pa.array(ordered["modifiers"].array)]), pa.list_(pa.large_string())),
            _text("+"),
        )
        lines = pa.table(
            {
                "key": pa.array(ordered[key].astype("string").array),
                "within": pa.array(ordered[within].astype("string").array),
                "line": pc.binary_join_element_wise(
                    *(
                        pc.fill_null(pc.cast(pa.array(ordered[c].array), pa.large_string()), "")
                        for c in ("seq", "cpt_code", "units", "minutes")
                    ),
                    pc.fill_null(modifiers, ""),
                    _text("|"),
                ),
            }
        )
        # one text per legacy row, its lines in order (an ordered, single-threaded aggregation)
        rows = lines.group_by("key", use_threads=False).aggregate([("within", "first"), ("line", "list")])
        entries = pd.DataFrame(
            {
                "key": rows["key"].to_pandas(types_mapper=pd.ArrowDtype),
                "within": rows["within_first"].to_pandas(types_mapper=pd.ArrowDtype),
                "entry": pc.binary_join(rows["line_list"], _text("\n")).to_pandas(types_mapper=pd.ArrowDtype),
            }
        )
        entries = entries.loc[_first_entry_order(entries, "key")]
        repeated = entries.duplicated(["within", "entry"], keep="first") & entries["within"].notna()
        later = pa.array(entries.loc[repeated, "key"].array)
        hit = pc.is_in(pa.array(view[key].astype("string").array), value_set=later)
        return pd.Series(hit.to_numpy(zero_copy_only=False), index=view.index).fillna(False).astype(bool)

    return fires


def value_in(*, column: str, values: list[str]) -> CheckFn:
    """Fires where ``column`` (a legacy column or a mapped field), read as trimmed text, is one of
    ``values`` (case-insensitive); an empty cell never fires."""
    wanted = [str(v).strip().upper() for v in values]
    if not wanted:
        raise ValueError("values: give at least one value")

    def fires(view: pd.DataFrame) -> pd.Series:
        return view[column].astype("string").str.strip().str.upper().isin(wanted).fillna(False)

    return fires


def untimed_units(*, code: str = "cpt_code", units: str = "units") -> CheckFn:
    """Rows whose untimed code, billed once a session, carries more than one unit: the unit rule of a
    legacy table that keeps no minutes (the 8-minute rule cannot be judged without them)."""

    def fires(view: pd.DataFrame) -> pd.Series:
        lines = pd.DataFrame(
            {"cpt_code": view[code], "units": view[units], "minutes": pd.Series(pd.NA, index=view.index)}
        )
        return nz.units_check(lines).eq("untimed_multiple_units").fillna(False)

    return fires


CHECKS: dict[str, Callable[..., CheckFn]] = {
    "before": before,
    "exceeds": exceeds,
    "missing": missing,
    "units_rule": units_rule,
    "entered_twice": entered_twice,
    "lines_entered_twice": lines_entered_twice,
    "value_in": value_in,
    "untimed_units": untimed_units,
}
"""Row checks by name: True where the check fires. A ``key`` parameter is the table's key, given by
the profile loader."""


# --- explode steps -----------------------------------------------------------------------------------
def cpt_lines(*, key: str, text: str, minutes: str, units: str, modifiers: str) -> Explode:
    """Free-text CPT line(s) → one row per code (columns ``seq``, ``cpt_code``, ``units``, ``minutes``,
    ``modifiers``)."""
    given = {text: "cpt_text", minutes: "minutes", units: "units", modifiers: "modifiers"}

    def fn(frame: pd.DataFrame) -> pd.DataFrame:
        # lines are tied to their legacy row by position, not by key: a row whose key is missing or
        # repeated (a malformed CSV line, an invalid id) is still one legacy row with its own lines
        source = frame[list(given)].rename(columns=given).assign(proc_id=np.arange(len(frame)))
        lines = nz.parse_cpt_lines(source)
        row = lines.pop("proc_id").to_numpy(dtype=np.int64)
        rest = frame.drop(columns=[c for c in given if c != key]).iloc[row].reset_index(drop=True)
        return pd.concat([rest[[key]], lines.reset_index(drop=True), rest.drop(columns=[key])], axis=1)

    return Explode(
        "free-text CPT line ('97110x2, 97140 x1') → one procedure line per code; the line's minutes "
        "split across codes in proportion to units, summing exactly to the legacy total",
        fn,
        sources=(text, minutes, units, modifiers),
    )


EXPLODES: dict[str, Callable[..., Explode]] = {"cpt_lines": cpt_lines}
"""Explode steps by name: one legacy row → several target rows."""


# --- load checks -------------------------------------------------------------------------------------
LOAD_CHECKS: dict[str, tuple[str, LoadFlag]] = {
    "visit_after_discharge": (
        "visit",
        LoadFlag(
            "visit_after_discharge",
            "a visit dated after its episode's discharge (a reopened case): migrated, reported",
            "EXISTS (SELECT 1 FROM pt.episode e WHERE e.id = r.episode_id AND r.visit_date > e.discharge_date)",
        ),
    ),
    "visit_before_birth": (
        "visit",
        LoadFlag(
            "visit_before_birth",
            "a visit dated before the patient's birth",
            "EXISTS (SELECT 1 FROM pt.patient p WHERE p.id = r.patient_id AND r.visit_date < p.birth_date)",
        ),
    ),
}
"""Checks against the target when a row is merged, by name: (the target table they apply to, the flag)."""


def parameters(factory: Callable[..., Any]) -> dict[str, bool]:
    """A library entry's parameters: name → required.

    >>> parameters(RULES["code"])
    {'table': True, 'reason': True}
    """
    return {
        name: p.default is inspect.Parameter.empty
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def build(library: Mapping[str, Callable[..., Any]], name: str, params: Mapping[str, Any] | None) -> Any:
    """The entry ``name`` of ``library`` built with ``params``; a wrong name or parameter is a one-line
    ``ValueError`` naming it and what is expected."""
    if name not in library:
        raise ValueError(f"unknown {name}")
    given = dict(params or {})
    expected = parameters(library[name])
    for unknown in sorted(set(given) - set(expected)):
        raise ValueError(f"{name}: unknown parameter {unknown} (expected: {', '.join(expected) or 'none'})")
    for absent in [p for p, required in expected.items() if required and p not in given]:
        raise ValueError(f"{name}: parameter {absent} is required")
    try:
        return library[name](**given)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None
