"""Normalisers: vectorised functions that turn messy legacy values into clean, typed ones.

Every normaliser takes a pandas Series (any dtype: ``string[pyarrow]``, ``str``, object with
``bytes``, numbers, dates) and returns a :class:`Normalized`: ``values`` (same index, NA where the
input is missing or was rejected), ``reasons`` (NA where fine, else one code of :data:`REASONS`)
and ``flags`` (NA, or one code of :data:`FLAGS`: the value was kept but something is worth
recording, e.g. a dropped phone extension). Normalisers that split one value into several columns
return a DataFrame with a ``reason`` column instead.

Rules every normaliser keeps:

- A missing input (null, or a token of :data:`NULL_TOKENS`) is a NA value with a NA reason:
  missing is not an error, required-ness is the caller's policy.
- Reasons and flags are fixed codes; they never carry the value (the values are PHI).
- Idempotent: normalising an already normalised value yields the same value and no reason.
- Vectorised: the work runs as Arrow compute kernels over the *distinct* values of the batch
  (``dictionary_encode`` then ``take``), so repetitive legacy columns cost what their distinct
  values cost. The only per-value Python is where a library must be called per value
  (``phonenumbers``, ``ftfy``) or an ``object`` column must be decoded (``bytes``), and that too
  runs once per distinct value.

Output dtypes are Arrow-backed: text ``string[pyarrow]``, dates ``date32[pyarrow]`` (a calendar date,
any year 1-9999, maps to PostgreSQL ``date`` and Parquet ``date32`` without a time or a time
zone), timestamps ``timestamp[s][pyarrow]`` (naive local wall time), integers ``int64[pyarrow]``,
floats ``double[pyarrow]``, booleans ``bool[pyarrow]``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Final, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cutover.mapping import codes

log = logging.getLogger(__name__)

Reason = Literal[
    "date_impossible",
    "date_unparseable",
    "date_out_of_range",
    "name_unparseable",
    "phone_invalid",
    "postal_invalid",
    "sex_unrecognized",
    "ssn_placeholder",
    "ssn_invalid",
    "npi_invalid",
    "money_invalid",
    "score_invalid",
    "score_out_of_range",
    "measure_unknown",
    "icd_invalid",
    "icd9_unmapped",
    "cpt_invalid",
]
"""Why a value could not be taken as is."""
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)

Flag = Literal[
    "phone_extension_dropped",
    "postal_state_mismatch",
    "sex_other_as_unknown",
    "icd10_not_billable",
    "icd10_unknown",
    "cpt_unknown",
    "cpt_units_conflict",
    "modifier_invalid",
    "units_exceed_minutes",
    "untimed_multiple_units",
    "birth_year_ambiguous",
    "date_future",
    "text_bidi_control",
    "name_confusable",
]
"""Something worth recording about a value that was kept (a finding, not a reject)."""
FLAGS: Final[tuple[Flag, ...]] = get_args(Flag)

Disposition = Literal["reject", "null"]
REASON_DISPOSITION: Final[dict[Reason, Disposition]] = {
    reason: ("null" if reason == "ssn_placeholder" else "reject") for reason in REASONS
}
"""Default handling of each reason: ``reject`` the row, or store NULL and migrate the row.

A default only: whether a reject on an optional column rejects the row is the caller's policy.
"""

NULL_TOKENS: Final[tuple[str, ...]] = ("", "n/a", "na", "n.a.", "#n/a", "null", "(null)", "none", "-", "--")
"""Values (compared trimmed and case-insensitively) that mean "missing"."""

TEXT: Final = pd.StringDtype("pyarrow")
DATE: Final = pd.ArrowDtype(pa.date32())
TIMESTAMP: Final = pd.ArrowDtype(pa.timestamp("s"))
INT64: Final = pd.ArrowDtype(pa.int64())
FLOAT64: Final = pd.ArrowDtype(pa.float64())
BOOL: Final = pd.ArrowDtype(pa.bool_())

_STR = pa.large_string()  # what pandas string[pyarrow] holds: no casts on the way in or out


@dataclass(frozen=True)
class Normalized:
    """The result of a normaliser: values, reasons and flags, all on the input's index."""

    values: pd.Series
    reasons: pd.Series
    flags: pd.Series = field(default=None)

    def __post_init__(self) -> None:
        if self.flags is None:
            object.__setattr__(self, "flags", pd.Series(pd.NA, index=self.values.index, dtype=TEXT))

    def reason_counts(self) -> dict[str, int]:
        """Count of rows per reason code (no values: safe for logs and reports)."""
        return {str(k): int(v) for k, v in self.reasons.value_counts().items()}


# --- Arrow helpers ------------------------------------------------------------------------------


def _to_series(
    arr: pa.Array | pa.ChunkedArray, index: pd.Index, dtype: pd.api.extensions.ExtensionDtype
) -> pd.Series:
    return pd.Series(dtype.__from_arrow__(arr), index=index, copy=False)


def _combine(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def _scalar_text(value: object) -> str:
    """One distinct non-null value of an ``object`` column as text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates cannot go into Arrow: replace them
            value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        # Latin-1/cp1252 text stored raw (SQLite keeps the bytes as written) arrives as bytes.
        for encoding in ("utf-8", "cp1252"):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError:
                continue
        return raw.decode("latin-1")
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, date):  # datetime and pd.Timestamp too
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()  # type: ignore[call-arg]
    return str(value)


def _as_text(s: pd.Series) -> pa.Array:
    """Any Series as an Arrow string array (nulls where missing)."""
    dtype = s.dtype
    if isinstance(dtype, pd.StringDtype):
        return pc.cast(_combine(s.astype(TEXT).array.__arrow_array__()), _STR)
    if isinstance(dtype, pd.ArrowDtype) or (dtype.kind in "iufbmM" and hasattr(s.array, "__arrow_array__")):
        # Arrow-backed or pandas masked (Int64, Float64, boolean) arrays convert without a copy per value
        arr = _combine(pa.array(s.array))
        return _float_text(arr) if pa.types.is_floating(arr.type) else pc.cast(arr, _STR)
    if dtype.kind in "iub":
        return pc.cast(pa.array(s.to_numpy()), _STR)
    if dtype.kind == "f":
        return _float_text(pa.array(s.to_numpy(), from_pandas=True))
    if dtype.kind in "mM":
        return pc.cast(pa.array(s, from_pandas=True), _STR)
    # object (or categorical): decode each distinct value once
    codes_, uniques = pd.factorize(s, use_na_sentinel=True)
    texts = pa.array([_scalar_text(u) for u in np.asarray(uniques, dtype=object)], type=_STR)
    indices = pa.array(codes_, mask=codes_ < 0, type=pa.int64())
    return texts.take(indices)


def _float_text(arr: pa.Array) -> pa.Array:
    # ZIP codes and ids that went through a float column come back as 2134.0: print integral floats as ints.
    values = arr.to_numpy(zero_copy_only=False)
    integral = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2**53)
    as_int = pc.cast(pa.array(np.where(integral, values, 0).astype(np.int64)), _STR)
    return pc.if_else(pa.array(integral), as_int, pc.cast(arr, _STR))


_CONTROL_RE = r"[\x00-\x08\x0e-\x1f\x7f-\x{9f}]"
_LINE_BREAK_RE = r"\r\n|[\r\x0b\x0c\x{85}\x{2028}\x{2029}]"


_TOKEN_BYTES: Final = max(len(t.encode()) for t in NULL_TOKENS)


def _nullify_tokens(arr: pa.Array) -> pa.Array:
    # Only a value as short as a token can be one (tokens are ASCII, and no non-ASCII character
    # lower-cases into their letters): notes are not lower-cased just to be compared.
    short = pc.less_equal(pc.binary_length(arr), _TOKEN_BYTES)
    candidates = pc.if_else(short, arr, pa.scalar(None, arr.type))
    is_token = pc.is_in(pc.utf8_lower(candidates), value_set=pa.array(NULL_TOKENS, type=arr.type))
    return pc.if_else(pc.fill_null(is_token, False), pa.scalar(None, arr.type), arr)


def _prepare_values(arr: pa.Array) -> pa.Array:
    arr = pc.replace_substring_regex(arr, _LINE_BREAK_RE, " ")
    arr = pc.replace_substring_regex(arr, _CONTROL_RE, "")
    arr = pc.utf8_trim_whitespace(arr)
    return _nullify_tokens(arr)


def _prepare(s: pd.Series) -> pa.Array:
    """Text, control characters removed, trimmed, null tokens as null: the start of every normaliser.

    The regular expressions run over the distinct values (legacy columns repeat a lot).
    """
    uniques, indices = _distinct(_as_text(s))
    return _prepare_values(uniques).take(indices)


def _distinct(arr: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(distinct non-null values, indices into them with nulls kept)."""
    encoded = pc.dictionary_encode(arr)
    return encoded.dictionary, encoded.indices


def _choose(n: int, rules: Sequence[tuple[pa.Array | np.ndarray, str]]) -> pa.Array:
    """A string array of codes: the first rule whose mask is true wins, else null."""
    out = pa.nulls(n, _STR)
    for mask, code in reversed(rules):
        m = pa.array(mask) if isinstance(mask, np.ndarray) else pc.fill_null(mask, False)
        out = pc.if_else(m, pa.scalar(code, _STR), out)
    return out


def _concat(*parts: pa.Array, sep: str = "") -> pa.Array:
    """Element-wise concatenation; null when any part is null."""
    return pc.binary_join_element_wise(*parts, pa.scalar(sep, _STR))


def _null_where(arr: pa.Array, mask: pa.Array | np.ndarray) -> pa.Array:
    m = pa.array(mask) if isinstance(mask, np.ndarray) else pc.fill_null(mask, False)
    return pc.if_else(m, pa.scalar(None, arr.type), arr)


def _ints(arr: pa.Array, missing: int = -1) -> np.ndarray:
    """Digit strings (``""`` or null = missing) as an int64 numpy array."""
    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)
    return pc.fill_null(pc.cast(arr, pa.int64()), missing).to_numpy(zero_copy_only=False)


def _by_distinct(
    s: pd.Series,
    fn: Callable[[pa.Array], tuple[pa.Array, pa.Array, pa.Array | None]],
    dtype: pd.api.extensions.ExtensionDtype,
    *,
    prepared: pa.Array | None = None,
) -> Normalized:
    """Run ``fn`` over the distinct prepared values of ``s`` and spread the results back."""
    if prepared is None:
        # one pass over the rows: the distinct raw values are prepared, then told apart again
        # (" 12" and "12" prepare alike), and the rows index through both
        raw, raw_indices = _distinct(_as_text(s))
        uniques, indices = _distinct(_prepare_values(raw))
        indices = indices.take(raw_indices)
        n = len(raw_indices)
    else:
        uniques, indices = _distinct(prepared)
        n = len(prepared)
    values, reasons, flags = fn(uniques)
    out_flags = flags.take(indices) if flags is not None else pa.nulls(n, _STR)
    return Normalized(
        values=_to_series(values.take(indices), s.index, dtype),
        reasons=_to_series(reasons.take(indices), s.index, TEXT),
        flags=_to_series(out_flags, s.index, TEXT),
    )


# --- null_tokens, clean_text --------------------------------------------------------------------


def null_tokens(s: pd.Series) -> Normalized:
    """Null tokens (``N/A``, ``NULL``, ``none``, ``''``, ``-``, …) to NA; everything else trimmed.

    >>> null_tokens(pd.Series([" x ", "N/A", "none", "", None])).values.tolist()
    ['x', <NA>, <NA>, <NA>, <NA>]
    """
    arr = _nullify_tokens(pc.utf8_trim_whitespace(_as_text(s)))
    return Normalized(_to_series(arr, s.index, TEXT), _to_series(pa.nulls(len(arr), _STR), s.index, TEXT))


# Two characters that a UTF-8 sequence becomes when read as Latin-1/cp1252 ("é" -> "Ã©"). ftfy decides;
# this only keeps ftfy off the values that cannot be mojibake.
_MOJIBAKE_RE = (
    r"[\x{c2}-\x{f4}][\x{80}-\x{bf}\x{152}\x{153}\x{160}\x{161}\x{178}\x{17d}\x{17e}\x{192}"
    r"\x{2c6}\x{2dc}\x{2013}\x{2014}\x{2018}-\x{201e}\x{2020}-\x{2022}\x{2026}\x{2030}\x{2039}"
    r"\x{203a}\x{20ac}\x{2122}]"
)


def _fix_mojibake(uniques: pa.Array) -> pa.Array:
    suspect = pc.fill_null(pc.match_substring_regex(uniques, _MOJIBAKE_RE), False)
    positions = np.flatnonzero(suspect.to_numpy(zero_copy_only=False))
    if positions.size == 0:
        return uniques
    import ftfy

    fixed = [ftfy.fix_encoding(t) for t in uniques.take(pa.array(positions)).to_pylist()]
    return pc.replace_with_mask(uniques, suspect, pa.array(fixed, type=uniques.type))


_C0_RE = r"[\x00-\x08\x0e-\x1f\x7f]"
_C1_RE = r"[\x{80}-\x{9f}]"


def _clean_pass(u: pa.Array) -> pa.Array:
    u = pc.replace_substring_regex(u, _LINE_BREAK_RE, "\n")
    u = pc.replace_substring_regex(u, _C0_RE, "")
    u = _fix_mojibake(u)  # C1 characters can be half of a mojibake pair: remove them after
    u = pc.replace_substring_regex(u, _C1_RE, "")
    u = pc.replace_substring_regex(u, r"[ \t\x{a0}]+\n", "\n")
    u = pc.utf8_trim_whitespace(u)
    return pc.utf8_normalize(u, form="NFC")


def clean_text(s: pd.Series) -> Normalized:
    """Free text (notes, names, addresses) made clean UTF-8.

    Bytes are decoded as UTF-8, else cp1252 (else Latin-1); mojibake is repaired with ``ftfy``
    (``CafÃ©`` -> ``Café``); ``\\r\\n``, ``\\r`` and the legacy line separators VT, FF, NEL, U+2028/9
    become ``\\n`` (FileMaker-style exports use VT for a line break: dropping it would glue words);
    NUL and the other control characters except ``\\n`` and ``\\t`` are removed; trailing whitespace
    on each line and surrounding whitespace are stripped; the result is NFC. Null tokens give NA.

    >>> clean_text(pd.Series([b"caf\\xe9 ", "CafÃ©\\r\\nok\\x00", "N/A"])).values.tolist()
    ['café', 'Café\\nok', <NA>]
    """
    arr = _as_text(s)
    uniques, indices = _distinct(arr)
    u = uniques
    # Each step can expose work for another (a control character inside a mojibake pair): repeat
    # to a fixed point, which is what makes clean_text idempotent. A value a pass left unchanged
    # is at its fixed point, so each further pass (at most four in all) takes only the values
    # the last one changed.
    todo = u
    positions: pa.Array | None = None  # of todo's values in u; None: all of u
    for _ in range(4):
        cleaned = _clean_pass(todo)
        changed = pc.fill_null(pc.not_equal(cleaned, todo), True)
        if not pc.any(changed).as_py():
            break
        if positions is None:
            u = cleaned
            positions = pc.indices_nonzero(changed)
        else:
            positions = positions.filter(changed)
            mask = np.zeros(len(u), dtype=bool)
            mask[positions.to_numpy(zero_copy_only=False)] = True
            u = pc.replace_with_mask(u, pa.array(mask), cleaned.filter(changed))
        todo = u.take(positions)
    u = _nullify_tokens(u)
    values = u.take(indices)
    return Normalized(_to_series(values, s.index, TEXT), _to_series(pa.nulls(len(arr), _STR), s.index, TEXT))


# --- dates --------------------------------------------------------------------------------------

DateRole = Literal["birth", "event", "service"]
"""What a date is: ``birth``; ``event``, a date that may lie ahead (a coverage's termination, an
authorization's end, a recertification); ``service``, a date on which something happened (care
given, a charge posted, a payment received, a score measured), flagged ``date_future`` when it
is after the run's as-of date."""
_MAX_AGE: Final = 115
"""A two-digit birth year is read in a century that gives an age under this on the record's date."""

_TIME = (
    r"(?:(?:[T ]+|\s*,\s*)(?P<H>\d{1,2}):(?P<MI>\d{2})(?::(?P<S>\d{2})(?:[.,]\d{1,9})?)?"
    r"\s*(?P<AP>[AaPp]\.?[Mm]\.?)?)?"
)
_MON = r"(?P<MON>[A-Za-z]{3,9})\.?"
_DATE_FORMATS: Final[tuple[tuple[str, str], ...]] = (
    # (name, RE2 pattern with groups Y, M or MON, D and the optional time)
    ("iso", r"^(?P<Y>\d{4})[-/.](?P<M>\d{1,2})[-/.](?P<D>\d{1,2})" + _TIME + "$"),
    ("us", r"^(?P<M>\d{1,2})[/.-](?P<D>\d{1,2})[/.-](?P<Y>\d{4}|\d{2})" + _TIME + "$"),
    ("day_mon_year", r"^(?P<D>\d{1,2})[- ]?" + _MON + r"[- ,]*(?P<Y>\d{4}|\d{2})" + _TIME + "$"),
    ("mon_day_year", r"^" + _MON + r" +(?P<D>\d{1,2}),? +(?P<Y>\d{4})" + _TIME + "$"),
    ("compact", r"^(?P<Y>\d{4})(?P<M>\d{2})(?P<D>\d{2})(?:[T ]?(?P<H>\d{2})(?P<MI>\d{2})(?P<S>\d{2})?)?$"),
)
"""The date formats read, in order. Slash dates are always US month/day."""

_MONTHS: Final[dict[str, int]] = {
    **{m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun"])},
    **{m: i + 7 for i, m in enumerate(["jul", "aug", "sep", "oct", "nov", "dec"])},
    **{m: i + 1 for i, m in enumerate(["january", "february", "march", "april", "may", "june"])},
    **{m: i + 7 for i, m in enumerate(["july", "august", "september", "october", "november", "december"])},
    "sept": 9,
}
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_MIN_YEAR = 1900


@dataclass(frozen=True)
class _DateParts:
    year: np.ndarray
    month: np.ndarray
    day: np.ndarray
    seconds: np.ndarray  # seconds after midnight
    matched: np.ndarray  # the text has the shape of a known format
    valid: np.ndarray  # ... and names a real calendar date and time
    two_digit: np.ndarray  # ... with a two-digit year


_DATE_FIELDS: Final = ("Y", "M", "MON", "D", "H", "MI", "S", "AP")
_PLAIN_ISO_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?: [0-9]{2}:[0-9]{2}:[0-9]{2})?$"
"""``2019-03-07`` or ``2019-03-07 09:30:00``: what the ``iso`` format reads, at fixed positions."""
_PLAIN_ISO_SLICES: Final = {
    "Y": (0, 4),
    "M": (5, 7),
    "D": (8, 10),
    "H": (11, 13),
    "MI": (14, 16),
    "S": (17, 19),
}


_STRPTIME: Final[dict[str, str]] = {
    "d": r"(?P<D>\d{1,2})",
    "m": r"(?P<M>\d{1,2})",
    "b": _MON,
    "B": _MON,
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<Y>\d{2})",
    "H": r"(?P<H>\d{1,2})",
    "I": r"(?P<H>\d{1,2})",
    "M": r"(?P<MI>\d{1,2})",
    "S": r"(?P<S>\d{1,2})",
    "f": r"\d{1,9}",
    "p": r"(?P<AP>[AaPp]\.?[Mm]\.?)",
    "%": "%",
}
"""The ``strptime`` directives a profile's date format may use, as the groups :func:`_resolve_parts`
reads. Numbers are matched by shape only (``%m`` is one or two digits): a month 13 or a 31 February
is then ``date_impossible``, as in the built-in formats, not ``date_unparseable``."""


@cache
def date_patterns(formats: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``strptime`` formats (``%d.%m.%Y``) as (format, anchored RE2 pattern) pairs for :func:`parse_date`.

    A space in a format matches any run of whitespace; every other character is itself. A format
    needs a day, a month and a year; an unknown or repeated directive is a ``ValueError``.

    >>> print(date_patterns(("%d.%m.%Y",))[0][1])
    ^(?P<D>\\d{1,2})\\.(?P<M>\\d{1,2})\\.(?P<Y>\\d{4})$
    """
    if not formats:
        raise ValueError("formats: give at least one strptime format")
    out = []
    for fmt in formats:
        parts: list[str] = []
        seen: set[str] = set()
        i = 0
        while i < len(fmt):
            char = fmt[i]
            if char == "%":
                directive = fmt[i + 1 : i + 2]
                if directive not in _STRPTIME:
                    raise ValueError(
                        f"format {fmt!r}: unknown directive %{directive} (known: "
                        + " ".join(f"%{d}" for d in _STRPTIME)
                        + ")"
                    )
                group = re.search(r"\(\?P<(\w+)>", _STRPTIME[directive])
                if group is not None:
                    if group.group(1) in seen:
                        raise ValueError(f"format {fmt!r}: %{directive} repeats a part already given")
                    seen.add(group.group(1))
                parts.append(_STRPTIME[directive])
                i += 2
            else:
                parts.append(r"\s+" if char.isspace() else re.escape(char))
                i += 1
        if not ({"D"} <= seen and seen & {"M", "MON"} and "Y" in seen):
            raise ValueError(f"format {fmt!r}: a date format needs a day, a month and a year")
        out.append((fmt, "^" + "".join(parts) + "$"))
    return tuple(out)


def _date_fields(
    u: pa.Array, formats: Sequence[tuple[str, str]] = _DATE_FORMATS
) -> tuple[dict[str, pa.Array], pa.Array]:
    """The groups of the first of ``formats`` (default :data:`_DATE_FORMATS`) each text matches (null
    where none), and whether one did."""
    n = len(u)
    got: dict[str, pa.Array] = {f: pa.nulls(n, _STR) for f in _DATE_FIELDS}
    matched = pa.array(np.zeros(n, dtype=bool))
    for _name, pattern in formats:
        extracted = pc.extract_regex(u, pattern)
        hit = pc.and_(pc.is_valid(extracted), pc.invert(matched))
        names = {extracted.type.field(i).name: i for i in range(extracted.type.num_fields)}
        for f, i in names.items():
            got[f] = pc.if_else(hit, pc.struct_field(extracted, [i]), got[f])
        matched = pc.or_(matched, hit)
    return got, matched


def _date_parts(
    u: pa.Array,
    role: DateRole,
    today: date,
    *,
    century: int | None = None,
    formats: tuple[str, ...] | None = None,
) -> _DateParts:
    """The parts of each date text; a two-digit year read by the role's rule, or in ``century`` (19, 20) when given."""
    return _resolve_parts(*_date_texts(u, formats), role, today, century)


def _date_texts(u: pa.Array, formats: tuple[str, ...] | None = None) -> tuple[dict[str, pa.Array], pa.Array]:
    """The text of each date part (:data:`_DATE_FIELDS`) and whether the text has a known format: one
    of ``formats`` (``strptime``, :func:`date_patterns`) when given, else the built-in ones."""
    if formats is not None:
        return _date_fields(u, date_patterns(formats))
    n = len(u)
    # Most legacy dates and stamps are plain ISO: their fields are cut at fixed positions (as the
    # iso format would read them; "" for a group it would not fill), only the rest go through
    # the formats' regular expressions.
    plain = pc.fill_null(pc.match_substring_regex(u, _PLAIN_ISO_RE), False)
    rest = pc.invert(plain)
    if pc.any(plain).as_py():
        got = {f: pa.nulls(n, _STR) for f in _DATE_FIELDS}
        for f, (start, stop) in _PLAIN_ISO_SLICES.items():
            got[f] = pc.utf8_slice_codeunits(u, start, stop)
        got["AP"] = pa.repeat(pa.scalar("", _STR), n)
        matched = plain
        if pc.any(rest).as_py():
            rest_got, rest_matched = _date_fields(u.filter(rest))
            got = {f: pc.replace_with_mask(got[f], rest, rest_got[f]) for f in _DATE_FIELDS}
            matched = pc.replace_with_mask(matched, rest, rest_matched)
    else:
        got, matched = _date_fields(u)
    return got, matched


def _resolve_parts(
    got: dict[str, pa.Array], matched: pa.Array, role: DateRole, today: date, century: int | None
) -> _DateParts:
    ymatch = matched.to_numpy(zero_copy_only=False)
    y_text = got["Y"]
    two_digit = pc.fill_null(pc.equal(pc.utf8_length(y_text), 2), False).to_numpy(zero_copy_only=False)
    yy = _ints(y_text, 0)
    month = _ints(got["M"], 0)
    mon = pc.utf8_lower(got["MON"])
    month_names = pa.array(list(_MONTHS), type=_STR)
    mon_idx = pc.index_in(mon, value_set=month_names)
    from_name = np.array(list(_MONTHS.values()))[pc.fill_null(mon_idx, 0).to_numpy(zero_copy_only=False)]
    has_name = pc.is_valid(mon).to_numpy(zero_copy_only=False) & pc.fill_null(
        pc.not_equal(mon, ""), False
    ).to_numpy(zero_copy_only=False)
    name_ok = pc.is_valid(mon_idx).to_numpy(zero_copy_only=False)
    month = np.where(has_name, np.where(name_ok, from_name, 0), month)
    day = _ints(got["D"], 0)

    # Two-digit years: births are never in the future; events pivot at 70 unless that is the future.
    today_key = today.year * 10000 + today.month * 100 + today.day
    md = month * 100 + day
    if century is not None:
        year2 = century * 100 + yy
    elif role == "birth":
        year2 = 2000 + yy
        year2 = np.where(year2 * 10000 + md > today_key, year2 - 100, year2)
    else:
        year2 = np.where(yy < 70, 2000 + yy, 1900 + yy)
        year2 = np.where((year2 >= 2000) & (year2 * 10000 + md > today_key), year2 - 100, year2)
    year = np.where(two_digit, year2, yy)

    hour = _ints(got["H"], 0)
    minute = _ints(got["MI"], 0)
    second = _ints(got["S"], 0)
    ap = pc.utf8_lower(pc.fill_null(got["AP"], ""))
    is_pm = pc.starts_with(ap, "p").to_numpy(zero_copy_only=False)
    has_ap = pc.not_equal(ap, "").to_numpy(zero_copy_only=False)
    ap_ok = ~has_ap | ((hour >= 1) & (hour <= 12))
    hour = np.where(has_ap, np.where(is_pm, hour % 12 + 12, hour % 12), hour)

    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    dim = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
    valid = (
        ymatch
        & month_ok
        & (day >= 1)
        & (day <= dim)
        & (year >= 1)
        & (year <= 9999)
        & (hour <= 23)
        & (minute <= 59)
        & (second <= 59)
        & ap_ok
    )
    # an unknown month name is not a calendar error: the text is not a date we read
    matched_np = ymatch & ~(has_name & ~name_ok)
    return _DateParts(
        year=np.where(valid, year, 1970),
        month=np.where(valid, month, 1),
        day=np.where(valid, day, 1),
        seconds=np.where(valid, hour * 3600 + minute * 60 + second, 0),
        matched=matched_np,
        valid=valid & matched_np,
        two_digit=two_digit & matched_np,
    )


def _days(parts: _DateParts) -> np.ndarray:
    months = ((parts.year - 1970) * 12 + (parts.month - 1)).astype("timedelta64[M]")
    first = (np.datetime64("1970-01", "M") + months).astype("datetime64[D]")
    return first + (parts.day - 1).astype("timedelta64[D]")


def _date_reasons(parts: _DateParts, days: np.ndarray, role: DateRole, today: date) -> pa.Array:
    today_d = np.datetime64(today, "D")
    if role == "birth":
        out_of_range = (parts.year < _MIN_YEAR) | (days > today_d)
    else:
        out_of_range = (parts.year < _MIN_YEAR) | (parts.year > today.year + 1)
    return _choose(
        len(days),
        [
            (~parts.matched, "date_unparseable"),
            (~parts.valid, "date_impossible"),
            (out_of_range, "date_out_of_range"),
        ],
    )


def _key(parts: _DateParts) -> np.ndarray:
    """``YYYYMMDD`` as an integer (calendar order, and whole years apart subtract as 10000s); -1 where invalid."""
    return np.where(parts.valid, parts.year * 10000 + parts.month * 100 + parts.day, -1)


def _day_key(days: np.ndarray) -> np.ndarray:
    """``YYYYMMDD`` of ``datetime64[D]`` days."""
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    month = (months - years.astype("datetime64[M]")).astype(np.int64) + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    return (years.astype(np.int64) + 1970) * 10000 + month * 100 + day


def _birth_reference(today: date, created: pd.Series | None, index: pd.Index) -> np.ndarray:
    """Per row, the day a birth date must not follow: the record's ``created`` day when it is earlier than ``today``."""
    ref = np.full(len(index), today.year * 10000 + today.month * 100 + today.day, np.int64)
    if created is None:
        return ref
    stamps = parse_timestamp(created, today=today).values
    known = stamps.notna().to_numpy(dtype=bool)
    if known.any():
        days = stamps[known].to_numpy(dtype="datetime64[s]").astype("datetime64[D]")
        ref[known] = np.minimum(ref[known], _day_key(days))
    return ref


def _parse_birth(
    s: pd.Series, today: date, created: pd.Series | None, formats: tuple[str, ...] | None = None
) -> Normalized:
    """Birth dates; two-digit years resolved per row against ``today`` and the record's ``created``."""
    raw, raw_indices = _distinct(_as_text(s))
    uniques, indices = _distinct(_prepare_values(raw))
    rows = indices.take(raw_indices)
    got, matched = _date_texts(uniques, formats)
    readings = [_resolve_parts(got, matched, "birth", today, c) for c in (20, 19, None)]
    present = pc.is_valid(rows).to_numpy(zero_copy_only=False)
    at = pc.fill_null(rows, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(at)
    ref = _birth_reference(today, created, s.index)
    # 20yy, 19yy, then the rule without a record date (a reading after the record was created is
    # kept only when no century fits: the created stamp may be the wrong one)
    later, earlier = (_key(r)[at] if len(r.year) else np.zeros(n, np.int64) for r in readings[:2])
    two_digit = readings[2].two_digit[at] & present if len(uniques) else np.zeros(n, bool)

    def plausible(key: np.ndarray) -> np.ndarray:
        # not after the reference day, and an age under _MAX_AGE on it
        return two_digit & (key >= 0) & (key <= ref) & (key > ref - _MAX_AGE * 10000)

    late_ok, early_ok = plausible(later), plausible(earlier)
    pick = np.where(late_ok, 0, np.where(early_ok, 1, 2))
    values: list[pa.Array] = []
    reasons: list[pa.Array] = []
    for r in readings:
        days = _days(r)
        why = _date_reasons(r, days, "birth", today)
        values.append(_null_where(pa.array(days, type=pa.date32()), pc.is_valid(why)).take(rows))
        reasons.append(why.take(rows))
    value = pc.if_else(pa.array(pick == 0), values[0], pc.if_else(pa.array(pick == 1), values[1], values[2]))
    reason = pc.if_else(
        pa.array(pick == 0), reasons[0], pc.if_else(pa.array(pick == 1), reasons[1], reasons[2])
    )
    flags = _choose(n, [(late_ok & early_ok, "birth_year_ambiguous")])
    return Normalized(
        values=_to_series(value, s.index, DATE),
        reasons=_to_series(reason, s.index, TEXT),
        flags=_to_series(flags, s.index, TEXT),
    )


def parse_date(
    s: pd.Series,
    *,
    role: DateRole,
    today: date | None = None,
    created: pd.Series | None = None,
    formats: Sequence[str] | None = None,
) -> Normalized:
    """Legacy date text as ``date32[pyarrow]``.

    Reads ISO ``2019-03-07`` (also with a time, ``T`` or ``/``), US ``03/07/2019``, ``3/7/2019``,
    ``03/07/19`` (slash dates are always month/day), ``07-Mar-2019``, ``Mar 7, 2019`` and
    ``20190307``; a time part is validated and dropped.

    Two-digit years:

    - ``role="birth"``: the century in which the birth does not follow the record's own
      ``created`` stamp (same index as ``s``; a stamp after ``today`` counts as ``today``) nor
      ``today``, and gives an age under 115 on that day. When both 19yy and 20yy qualify (``15``
      on a record created in 2020: age 5 or 105) the later is kept and the row flagged
      ``birth_year_ambiguous``; when neither does (a birth after its record was created in
      every reading), 20yy unless that is after ``today``, else 19yy.
    - ``role="event"`` and ``"service"``: 20yy when yy < 70 else 19yy, and 19yy when 20yy would
      be after ``today``.

    Reasons: ``date_unparseable`` (no known format), ``date_impossible`` (Feb 30, ``0000-00-00``,
    month 13, hour 25), ``date_out_of_range`` (before 1900; a birth after ``today``; another date
    after next year). Flags: ``birth_year_ambiguous`` (above); ``date_future``: a ``service`` date
    (care given, a charge posted, a payment received, a score measured) after ``today``, kept
    (next year's at most: later ones are out of range). Pass the run's as-of date as ``today``:
    the default, the machine's clock, makes a re-run on another day read dates differently.

    ``formats``: the ``strptime`` formats the legacy system writes (``["%d.%m.%Y"]``), read instead
    of the built-in ones, the first that fits winning (:func:`date_patterns`); text in no such shape
    is ``date_unparseable``, a shape naming no calendar day (``31.02.2019``) ``date_impossible``, and
    the role's rules above hold as for the built-in formats. The ``created`` stamp is read in the
    built-in formats.

    >>> r = parse_date(pd.Series(["03/07/05", "02/30/2019", "soon"]), role="birth", today=date(2025, 1, 1))
    >>> r.values.tolist(), r.reasons.tolist()
    ([datetime.date(2005, 3, 7), <NA>, <NA>], [<NA>, 'date_impossible', 'date_unparseable'])
    >>> born = parse_date(pd.Series(["03/01/25", "03/01/15"]), role="birth", today=date(2026, 1, 1),
    ...                   created=pd.Series(["1994-05-02", "2020-01-01"]))
    >>> born.values.tolist(), born.flags.tolist()
    ([datetime.date(1925, 3, 1), datetime.date(2015, 3, 1)], [<NA>, 'birth_year_ambiguous'])
    >>> own = parse_date(pd.Series(["07.03.2019", "31.02.2019", "2019-03-07"]), role="service",
    ...                  today=date(2025, 1, 1), formats=["%d.%m.%Y"])
    >>> own.values.tolist(), own.reasons.tolist()
    ([datetime.date(2019, 3, 7), <NA>, <NA>], [<NA>, 'date_impossible', 'date_unparseable'])
    """
    ref = today or date.today()
    own = None if formats is None else tuple(formats)
    if own is not None:
        date_patterns(own)  # a bad format fails here, before any value is read
    if role == "birth":
        return _parse_birth(s, ref, created, own)
    today_d = np.datetime64(ref, "D")

    def run(u: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array | None]:
        parts = _date_parts(u, role, ref, formats=own)
        days = _days(parts)
        reasons = _date_reasons(parts, days, role, ref)
        values = _null_where(pa.array(days, type=pa.date32()), pc.is_valid(reasons))
        if role != "service":
            return values, reasons, None
        future = pc.fill_null(pc.and_(pc.is_null(reasons), pa.array(days > today_d)), False)
        return values, reasons, _choose(len(u), [(future, "date_future")])

    return _by_distinct(s, run, DATE)


def parse_timestamp(
    s: pd.Series, *, today: date | None = None, formats: Sequence[str] | None = None
) -> Normalized:
    """Legacy date-time text (``appt_time``) as naive local ``timestamp[s][pyarrow]``.

    The formats of :func:`parse_date` with a time (``2019-03-07 09:30:00``, ``2019-03-07T09:30``,
    ``03/07/2019 9:30 AM``, ``20190307 093000``); a date alone is midnight. The wall time is kept
    as written: the clinic's time zone is the caller's to attach. Reasons as for event dates.
    ``formats``: the legacy system's own ``strptime`` formats instead, as for :func:`parse_date`.

    >>> parse_timestamp(pd.Series(["03/07/2019 2:05 PM"])).values.astype(str).tolist()
    ['2019-03-07 14:05:00']
    >>> parse_timestamp(pd.Series(["07.03.2019 14:05"]), formats=["%d.%m.%Y %H:%M"]).values.astype(str).tolist()
    ['2019-03-07 14:05:00']
    """
    ref = today or date.today()
    own = None if formats is None else tuple(formats)
    if own is not None:
        date_patterns(own)

    def run(u: pa.Array) -> tuple[pa.Array, pa.Array, None]:
        parts = _date_parts(u, "event", ref, formats=own)
        days = _days(parts)
        reasons = _date_reasons(parts, days, "event", ref)
        stamps = days.astype("datetime64[s]") + parts.seconds.astype("timedelta64[s]")
        values = _null_where(pa.array(stamps, type=pa.timestamp("s")), pc.is_valid(reasons))
        return values, reasons, None

    return _by_distinct(s, run, TIMESTAMP)


# --- person names -------------------------------------------------------------------------------

_PARTICLES = r"(?:de|da|di|del|della|der|den|des|du|la|le|van|von|ter|ten|dos|das|st\.?|bin|ibn)"
_SUFFIX_RE = r"(?i)^(?P<body>.*?)[ ,]+(?P<suffix>jr\.?|sr\.?|ii|iii|iv|2nd|3rd)$"
_TITLE_RE = r"(?i)^(?:mr|mrs|ms|miss|dr|prof)\.? +"
_NAME_BAD_RE = r"[^\pL\pM '\-.,]"
_SUFFIX_CANON: Final[dict[str, str]] = {
    "jr": "Jr",
    "jr.": "Jr",
    "sr": "Sr",
    "sr.": "Sr",
    "ii": "II",
    "2nd": "II",
    "iii": "III",
    "3rd": "III",
    "iv": "IV",
}


_CREDENTIALS: Final[dict[str, str]] = {
    **{k: "MD" for k in ("md", "m.d.")},
    **{k: "DO" for k in ("do", "d.o.")},
    **{k.lower(): k for k in ("NP", "PA", "PA-C", "DPT", "PT", "PTA", "OT", "OTR", "DC", "DPM", "RN", "FNP")},
    **{k.lower(): k for k in ("FNP-C", "APRN", "CRNP", "DDS", "DMD", "MBBS", "PhD", "ATC", "OCS", "MPT")},
}
"""Post-nominal credentials a clinician's name may end with (``PATEL, ANIL, MD``; ``Anil Patel, PA-C``),
lower case → as written in the target."""
_CREDENTIAL_RE = (
    r"(?i)^(?P<body>.*[ ,].*?), (?P<credential>"
    + "|".join(k.replace(".", r"\.") for k in sorted(_CREDENTIALS, key=len, reverse=True))
    + r")\.?$"
)
"""A credential after the name's last comma. Only when what precedes holds two words (a space or a
comma): in ``NGUYEN, DO`` the ``DO`` is a given name."""
BIDI_CONTROLS: Final = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""Unicode's Bidi_Control characters (ALM, LRM, RLM, LRE…RLO, LRI…PDI): invisible, they reorder how a
name is shown (``Trojan Source``, CVE-2021-42574); never part of a name."""
_BIDI_RE = "[" + BIDI_CONTROLS + "]"


def _confusable(u: pa.Array) -> pa.Array:
    """True where a text mixes scripts with letters that look alike (a Cyrillic ``а`` in ``Smith``).

    ``confusable_homoglyphs`` (Unicode's confusables.txt and script data) decides, for the values
    with a non-ASCII character only: an all-ASCII text cannot mix scripts, and a name wholly in one
    script (``Иванов``, ``Παπαδόπουλος``) is not confusable.
    """
    foreign = pc.invert(pc.fill_null(pc.string_is_ascii(u), True))
    positions = np.flatnonzero(foreign.to_numpy(zero_copy_only=False))
    if positions.size == 0:
        return pa.array(np.zeros(len(u), dtype=bool))
    from confusable_homoglyphs import confusables

    found = np.zeros(len(u), dtype=bool)
    texts = u.take(pa.array(positions)).to_pylist()
    found[positions] = [bool(confusables.is_dangerous(t)) for t in texts]
    return pa.array(found)


def _field(struct: pa.Array, name: str) -> pa.Array:
    arr = pc.struct_field(struct, [struct.type.get_field_index(name)])
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, _STR), arr)


def _proper_case(arr: pa.Array) -> pa.Array:
    """Title-case the parts typed in one case (``O'BRIEN``, ``smith-jones``); keep mixed case as typed.

    A vectorised rule rather than ``nameparser``: its capitalisation reads every ``Mac`` as a prefix
    (``MacHado``, ``MacIas``) and lower-cases particles, and it costs ~170 µs a name. Ours: title
    case after a space, hyphen or apostrophe (``O'Brien``, ``Smith-Jones``), ``Mc`` + capital
    (``McDonald``); ``Mac`` is left alone (``Mack``, ``Machado``), particles are capitalised
    (``De La Cruz``, the US convention), and a part typed in mixed case (``MacDonald``,
    ``DeShawn``) is kept as typed.
    """
    one_case = pc.or_(pc.utf8_is_upper(arr), pc.utf8_is_lower(arr))
    titled = pc.utf8_title(arr)
    for _ in range(3):  # a name rarely holds more than one Mc; three passes are plenty
        parts = pc.extract_regex(titled, r"^(?P<a>(?:.*[ \-'])?Mc)(?P<b>\p{Ll})(?P<c>.*)$")
        hit = pc.is_valid(parts)
        if not pc.any(hit).as_py():
            break
        fixed = _concat(
            pc.struct_field(parts, [0]),
            pc.utf8_upper(pc.struct_field(parts, [1])),
            pc.struct_field(parts, [2]),
        )
        titled = pc.if_else(hit, fixed, titled)
    return pc.if_else(pc.fill_null(one_case, False), titled, arr)


def _split_names(u: pa.Array, credentials: bool = False) -> dict[str, pa.Array]:
    n = len(u)
    bidi = pc.fill_null(pc.match_substring_regex(u, _BIDI_RE), False)
    if pc.any(bidi).as_py():
        u = _nullify_tokens(pc.utf8_trim_whitespace(pc.replace_substring_regex(u, _BIDI_RE, "")))
    confusable = _confusable(u)
    x = pc.replace_substring_regex(u, r"[’‘`´]", "'")
    x = pc.replace_substring_regex(x, r"\s+", " ")
    x = pc.replace_substring_regex(x, r" *, *", ", ")
    x = pc.replace_substring_regex(x, r" *- *", "-")
    x = pc.utf8_trim(x, characters=" ")
    credential = pa.nulls(n, _STR)
    if credentials:
        for _ in range(2):  # PATEL, ANIL, PT, DPT: the last one first
            m = pc.extract_regex(x, _CREDENTIAL_RE)
            hit = pc.is_valid(m)
            found = _field(m, "credential")
            credential = pc.if_else(
                hit,
                pc.if_else(pc.is_null(credential), found, _concat(found, credential, sep=", ")),
                credential,
            )
            x = pc.if_else(hit, _field(m, "body"), x)
    bad = pc.fill_null(pc.match_substring_regex(x, _NAME_BAD_RE), True)

    # the suffix may sit at the end (SMITH, JOHN A JR / JOHN SMITH JR / SMITH, JOHN, JR) or after the family
    suffix = pa.nulls(n, _STR)
    for pattern in (
        _SUFFIX_RE,
        r"(?i)^(?P<body>[^,]*?) +(?P<suffix>jr\.?|sr\.?|ii|iii|iv|2nd|3rd)(?P<rest>,.*)$",
    ):
        m = pc.extract_regex(x, pattern)
        hit = pc.is_valid(m)
        body = _field(m, "body")
        if "rest" in [m.type.field(i).name for i in range(m.type.num_fields)]:
            body = _concat(body, pc.fill_null(_field(m, "rest"), ""))
        x = pc.if_else(hit, body, x)
        suffix = pc.if_else(pc.and_(hit, pc.is_null(suffix)), _field(m, "suffix"), suffix)
    x = pc.utf8_trim(x, characters=" ")

    has_comma = pc.fill_null(pc.match_substring(x, ","), False)
    comma = pc.extract_regex(x, r"^(?P<family>[^,]+), ?(?P<rest>[^,]*)$")
    rest = pc.replace_substring_regex(_field(comma, "rest"), _TITLE_RE, "")
    given_middle = pc.extract_regex(rest, r"^(?P<given>[^ ]+)(?: (?P<middle>.+))?$")

    plain = pc.extract_regex(
        pc.replace_substring_regex(x, _TITLE_RE, ""),
        r"(?i)^(?P<given>[^ ,]+)(?: (?P<middle>[^,]+?))?? (?P<family>(?:" + _PARTICLES + r" )*[^ ,]+)$",
    )
    family = pc.if_else(has_comma, _field(comma, "family"), _field(plain, "family"))
    given = pc.if_else(has_comma, _field(given_middle, "given"), _field(plain, "given"))
    middle = pc.if_else(has_comma, _field(given_middle, "middle"), _field(plain, "middle"))
    # "A." as a middle initial is "A"
    middle = pc.replace_substring_regex(middle, r"^(\pL)\.$", r"\1")

    unparseable = pc.and_(pc.is_valid(u), pc.or_(bad, pc.is_null(family)))  # nothing left is missing
    suffix_canon = pc.utf8_lower(suffix)
    keys = pa.array(list(_SUFFIX_CANON), type=_STR)
    suffix = pa.array(list(_SUFFIX_CANON.values()), type=_STR).take(pc.index_in(suffix_canon, value_set=keys))
    if credentials:
        # each credential of a list in its canonical spelling (pa-c → PA-C, phd → PhD)
        listed = pc.split_pattern(pc.utf8_lower(credential), ", ")
        spelled = pa.array(list(_CREDENTIALS.values()), type=_STR).take(
            pc.index_in(pc.list_flatten(listed), value_set=pa.array(list(_CREDENTIALS), type=_STR))
        )
        offsets = listed.offsets
        regrouped = pa.ListArray.from_arrays(offsets, spelled, mask=pc.is_null(listed))
        credential = pc.binary_join(regrouped, pa.scalar(", ", _STR))
    out = {
        "family": _proper_case(family),
        "given": _proper_case(given),
        "middle": _proper_case(middle),
        "suffix": suffix,
        "credential": credential,
    }
    out = {k: _null_where(v, unparseable) for k, v in out.items()}
    out["reason"] = _choose(n, [(unparseable, "name_unparseable")])
    out["flag"] = _choose(
        n,
        [
            (pc.and_(bidi, confusable), "text_bidi_control,name_confusable"),
            (bidi, "text_bidi_control"),
            (confusable, "name_confusable"),
        ],
    )
    return out


def split_person_name(s: pd.Series, *, credentials: bool = False) -> pd.DataFrame:
    """``LAST, FIRST M`` / ``FIRST LAST`` in one column -> ``family``, ``given``, ``middle``, ``suffix``,
    ``credential``, ``reason``, ``flag``.

    Handles ``LAST, FIRST MIDDLE``, ``FIRST M LAST``, all caps or lower case, extra spaces, spaces
    around the comma or hyphen, a generational suffix (``JR``, ``SR``, ``II``, ``III``, ``IV``:
    kept in ``suffix`` as ``Jr``, ``Sr``, ``II``…; a father and son differ by it), a leading title
    (``DR``, dropped), particles in the no-comma form (``JUAN DE LA CRUZ`` -> family
    ``De La Cruz``). With ``credentials`` (clinicians' names), post-nominals after the last comma
    (``Anil Patel, MD``, ``PATEL, ANIL, PT, DPT``) go to ``credential``; without, a patient's
    name is never cut short by a word that happens to be one (``NGUYEN, ANH DO``). Proper case:
    see :func:`_proper_case`. ``SMITH,`` is a family name without a given name (NA ``given``, no
    reason); a name without a family part (``SMITH`` alone, ``, JOHN``) or with digits or symbols
    -> ``name_unparseable`` and NA parts.

    Flags (``flag``, comma-joined when both): ``text_bidi_control``, the name held Unicode bidi
    controls (:data:`BIDI_CONTROLS`), removed before the split; ``name_confusable``, the name
    mixes scripts with look-alike letters (a Cyrillic ``а`` in ``Smith``), kept as written.

    The parser is ours, not ``nameparser`` (2.6.0): it runs vectorised over the distinct names
    (``nameparser`` takes ~160 µs a name in Python and capitalises differently, see
    :func:`_proper_case`), and the suffixes and credentials it knows are listed here.

    >>> split_person_name(pd.Series(["MCDONALD , JOHN  a", "mary o'brien-smith"])).iloc[:, :3].values.tolist()
    [['McDonald', 'John', 'A'], ["O'Brien-Smith", 'Mary', <NA>]]
    """
    arr = _prepare(s)
    uniques, indices = _distinct(arr)
    parts = _split_names(uniques, credentials)
    return pd.DataFrame(
        {name: _to_series(col.take(indices), s.index, TEXT) for name, col in parts.items()}, index=s.index
    )


def name_from_columns(family: pd.Series, given: pd.Series, middle: pd.Series | None = None) -> pd.Series:
    """A name kept in two or three columns (family, given[, middle]) as the one text
    :func:`split_person_name` reads: ``FAMILY, GIVEN MIDDLE``.

    Each part is prepared first (control characters removed, trimmed, null tokens to NA); a missing
    given or middle part is left out (``SMITH,`` is a family name alone), a missing family part
    leaves ``, GIVEN``, which the split rejects ``name_unparseable`` as it does in one column, and
    a row with no part at all is NA. The split then reads it as it reads one column, so its reasons
    and flags are the same.

    >>> name_from_columns(pd.Series(["SMITH JR", "Lee", None, "N/A"]), pd.Series(["JOHN", None, "Ann", None]),
    ...                   pd.Series(["A", None, None, None])).tolist()
    ['SMITH JR, JOHN A', 'Lee,', ', Ann', <NA>]
    """
    index = family.index
    fam = _prepare(family)
    rest = [_prepare(given.reindex(index))]
    if middle is not None:
        rest.append(_prepare(middle.reindex(index)))
    space = pa.scalar(" ", _STR)
    tail = rest[0]
    for part in rest[1:]:
        tail = pc.coalesce(pc.binary_join_element_wise(tail, part, space), tail, part)
    joined = pc.binary_join_element_wise(pc.fill_null(fam, ""), pc.fill_null(tail, ""), pa.scalar(", ", _STR))
    none = pc.and_(pc.is_null(fam), pc.is_null(tail))
    joined = pc.utf8_rtrim(_null_where(joined, none), characters=" ")
    return _to_series(joined, index, TEXT)


def join_person_name(parts: pd.DataFrame) -> pd.Series:
    """The inverse of :func:`split_person_name`: ``Family, Given Middle Suffix`` (NA without a family).

    A family name alone keeps its comma (``Na,``): alone, ``Na`` or ``-`` would read as a null token.

    >>> join_person_name(split_person_name(pd.Series(["SMITH JR, JOHN A", "NA,"]))).tolist()
    ['Smith, John A Jr', 'Na,']
    """
    tail = (
        (parts["given"].fillna("").str.cat([parts["middle"].fillna(""), parts["suffix"].fillna("")], sep=" "))
        .str.replace(r" +", " ", regex=True)
        .str.strip()
    )
    joined = parts["family"].str.cat(tail, sep=", ").str.rstrip(" ")
    return joined.astype(TEXT)


# --- sex, phone, postal code, SSN ---------------------------------------------------------------

Sex = Literal["female", "male", "unknown"]
_SEX_TOKENS: Final[dict[str, tuple[Sex, Flag | None]]] = {
    **dict.fromkeys(("m", "male", "man", "1"), ("male", None)),
    **dict.fromkeys(("f", "female", "woman", "w", "2"), ("female", None)),
    # ISO/IEC 5218: 0 not known, 9 not applicable
    **dict.fromkeys(("u", "unk", "unknown", "0", "9", "not known", "not applicable"), ("unknown", None)),
    # The target allows female/male/unknown only: "other" becomes unknown, flagged so it is not lost silently.
    **dict.fromkeys(("o", "x", "other", "nonbinary", "non-binary"), ("unknown", "sex_other_as_unknown")),
}


def sex_code(s: pd.Series) -> Normalized:
    """M/F/Male/female/1/2/U/0/9 -> ``male``/``female``/``unknown``.

    Blank is missing (NA, no reason), not ``unknown``: "not recorded" and "recorded as unknown" are
    different facts, and the caller may still fill NA with ``unknown``. ``O``/``X``/``other`` map
    to ``unknown`` with flag ``sex_other_as_unknown`` (the target has no ``other``). Anything else
    -> ``sex_unrecognized``.

    >>> sex_code(pd.Series(["M", "female", "2", " ", "Q"])).values.tolist()
    ['male', 'female', 'female', <NA>, <NA>]
    """
    keys = pa.array(list(_SEX_TOKENS), type=_STR)
    vals = pa.array([v for v, _ in _SEX_TOKENS.values()], type=_STR)
    flag_vals = pa.array([f for _, f in _SEX_TOKENS.values()], type=_STR)

    def run(u: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
        idx = pc.index_in(pc.utf8_rtrim(pc.utf8_lower(u), characters="."), value_set=keys)
        return vals.take(idx), _choose(len(u), [(pc.is_null(idx), "sex_unrecognized")]), flag_vals.take(idx)

    return _by_distinct(s, run, TEXT)


_NANP_RE = (
    r"^(?:\+1[ .-]?|1[ .-]?)?(?:\((?P<a>[2-9][0-9]{2})\)|(?P<b>[2-9][0-9]{2}))[ .-]?"
    r"(?P<x>[0-9]{3})[ .-]?(?P<y>[0-9]{4})$"
)
"""A North American number written plainly (``617-234-5678``, ``(617) 234-5678``, ``617.234.5678``,
``6172345678``, ``+1 617 234 5678``): ``phonenumbers`` reads it as country code 1 and these ten
digits, so it is read here without it (extensions and anything else still go through it)."""

_NUMBER_TYPES: Final = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


def _desc_matches(digits: pa.Array, desc: object) -> np.ndarray:
    """``phonenumbers``' ``_is_number_matching_desc`` over an array: a possible length and a full match."""
    n = len(digits)
    pattern = getattr(desc, "national_number_pattern", None) if desc is not None else None
    if not pattern:
        return np.zeros(n, dtype=bool)
    lengths = getattr(desc, "possible_length", ()) or ()
    ok = _np(pc.match_substring_regex(digits, f"^(?:{pattern})$"))
    if lengths:
        ok &= np.isin(pc.utf8_length(digits).to_numpy(zero_copy_only=False), list(lengths))
    return ok


def _known_type(digits: pa.Array, metadata: object) -> np.ndarray:
    """``phonenumbers``' ``_number_type_helper(...) != UNKNOWN``: the general pattern and any type's."""
    known = _desc_matches(digits, getattr(metadata, "general_desc", None))
    if known.any():
        typed = np.zeros(len(digits), dtype=bool)
        for name in _NUMBER_TYPES:
            typed |= _desc_matches(digits, getattr(metadata, name, None))
        known &= typed
    return known


def _nanp_valid(digits: pa.Array) -> np.ndarray:
    """``phonenumbers.is_valid_number`` for country code 1 and these national numbers, over an array.

    As ``phonenumbers`` does: the number's region is the first of the code's regions whose leading
    digits it starts with (or, for a region without leading digits, whose patterns it matches), and
    it is valid when it matches one of that region's number types. Same metadata, RE2 instead of
    ``re`` (the patterns are plain digit classes and alternations, which both read alike).
    """
    from phonenumbers import PhoneMetadata
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    valid = np.zeros(len(digits), dtype=bool)
    open_ = np.ones(len(digits), dtype=bool)  # region not decided yet
    for region in COUNTRY_CODE_TO_REGION_CODE[1]:
        rows = np.flatnonzero(open_)
        if rows.size == 0:
            break
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            continue
        sub = digits.take(pa.array(rows))
        if metadata.leading_digits is not None:
            mine = _np(pc.match_substring_regex(sub, f"^(?:{metadata.leading_digits})"))
            mine_rows = rows[mine]
            valid[mine_rows] = _known_type(sub.filter(pa.array(mine)), metadata)
        else:
            known = _known_type(sub, metadata)
            mine_rows = rows[known]
            valid[mine_rows] = True
        open_[mine_rows] = False
    return valid


def phone_e164(s: pd.Series, region: str = "US") -> Normalized:
    """Any written phone number -> E.164 (``+15551234567``) via ``phonenumbers``, once per distinct value.

    An extension (``x12``) is dropped, flagged ``phone_extension_dropped``. A number
    ``phonenumbers`` cannot parse or does not hold valid for its region -> ``phone_invalid``.
    With ``region="US"``, numbers written plainly (:data:`_NANP_RE`, nearly all of them) are read and
    validated over the whole array with ``phonenumbers``' own metadata (:func:`_nanp_valid`), the
    same answer at a fraction of its cost per number (~40 µs).

    >>> r = phone_e164(pd.Series(["(212) 555-0123", "212-555-0123 x12", "12345"]))
    >>> r.values.tolist(), r.flags.tolist()
    (['+12125550123', '+12125550123', <NA>], [<NA>, 'phone_extension_dropped', <NA>])
    """
    import phonenumbers

    def one_by_one(u: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
        values: list[str | None] = []
        reasons: list[str | None] = []
        flags: list[str | None] = []
        for text in u.to_pylist():
            try:
                number = phonenumbers.parse(text, region)
                ok = phonenumbers.is_valid_number(number)
            except phonenumbers.NumberParseException:
                ok = False
            if not ok:
                values.append(None)
                reasons.append("phone_invalid")
                flags.append(None)
                continue
            values.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
            reasons.append(None)
            flags.append("phone_extension_dropped" if number.extension else None)
        return pa.array(values, _STR), pa.array(reasons, _STR), pa.array(flags, _STR)

    def run(u: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
        if region != "US":
            return one_by_one(u)
        parts = pc.extract_regex(u, _NANP_RE)
        plain = pc.is_valid(parts)
        digits = _concat(
            pc.coalesce(_field(parts, "a"), _field(parts, "b")), _field(parts, "x"), _field(parts, "y")
        )
        valid = _np(plain) & _nanp_valid(pc.fill_null(digits, ""))
        values = _null_where(_concat(pa.scalar("+1", _STR), digits), ~valid)
        reasons = _choose(len(u), [(_np(plain) & ~valid, "phone_invalid")])
        flags = pa.nulls(len(u), _STR)
        rest = pc.invert(plain)
        if pc.any(rest).as_py():
            more = one_by_one(u.filter(rest))
            values, reasons, flags = (
                pc.replace_with_mask(out, rest, add)
                for out, add in zip((values, reasons, flags), more, strict=True)
            )
        return values, reasons, flags

    return _by_distinct(s, run, TEXT)


def postal_code(s: pd.Series, state: pd.Series | None = None) -> Normalized:
    """US ZIP or ZIP+4 (``02134``, ``02134-1234``), restoring lost leading zeros.

    Four digits (``2134``) are zero-padded; when ``state`` is given they are padded only for a
    state whose ZIP codes start with 0 (CT, MA, ME, NH, NJ, RI, VT, PR, VI, AE) and are
    ``postal_invalid`` otherwise; three digits are padded only for PR, VI and NY (``00601``).
    With a state, a ZIP outside the state's USPS area is kept and flagged ``postal_state_mismatch``.
    Anything else, and ``00000``, -> ``postal_invalid``.

    >>> postal_code(pd.Series(["2134", "021341234", "601", "ABCDE"]), pd.Series(["MA", "MA", "PR", "MA"])).values.tolist()
    ['02134', '02134-1234', '00601', <NA>]
    """
    arr = pc.replace_substring_regex(_prepare(s), r"[ ]", "")
    n = len(arr)
    st = pa.nulls(n, _STR) if state is None else pc.utf8_upper(_prepare(state.reindex(s.index)))
    m = pc.extract_regex(arr, r"^(?P<z5>\d{3,5})(?:-?(?P<z4>\d{4}))?$")
    z5 = _field(m, "z5")
    z4 = _field(m, "z4")
    length = pc.fill_null(pc.utf8_length(z5), 0).to_numpy(zero_copy_only=False)
    states = list(codes.ZIP_FIRST_DIGITS)
    known = pc.is_valid(pc.index_in(st, value_set=pa.array(states, _STR))).to_numpy(zero_copy_only=False)
    zero_states = [k for k, v in codes.ZIP_FIRST_DIGITS.items() if "0" in v]
    zero_state = pc.fill_null(pc.is_in(st, value_set=pa.array(zero_states, _STR)), False).to_numpy(
        zero_copy_only=False
    )
    two_zero = pc.fill_null(
        pc.is_in(st, value_set=pa.array(sorted(codes.ZIP_TWO_ZERO_STATES), _STR)), False
    ).to_numpy(zero_copy_only=False)
    pad_ok = (length == 5) | ((length == 4) & (~known | zero_state)) | ((length == 3) & two_zero)
    zip5 = pc.utf8_lpad(z5, 5, "0")
    missing = pc.is_null(arr).to_numpy(zero_copy_only=False)
    invalid = ~missing & (
        ~pad_ok | pc.fill_null(pc.equal(zip5, "00000"), True).to_numpy(zero_copy_only=False)
    )
    value = pc.if_else(pc.is_valid(z4), _concat(zip5, z4, sep="-"), zip5)
    value = _null_where(value, invalid)
    reasons = _choose(n, [(invalid, "postal_invalid")])
    allowed = pa.array([codes.ZIP_FIRST_DIGITS[k] for k in states], _STR).take(
        pc.index_in(st, value_set=pa.array(states, _STR))
    )
    mismatch = _zip_area_mismatch(pc.utf8_slice_codeunits(value, 0, 1), allowed)
    flags = _choose(n, [(mismatch, "postal_state_mismatch")])
    return Normalized(
        values=_to_series(value, s.index, TEXT),
        reasons=_to_series(reasons, s.index, TEXT),
        flags=_to_series(flags, s.index, TEXT),
    )


def _zip_area_mismatch(first: pa.Array, allowed: pa.Array) -> np.ndarray:
    # A ZIP's first digit against the state's allowed first digits (one or two of them).
    a0 = pc.utf8_slice_codeunits(pc.fill_null(allowed, ""), 0, 1)
    a1 = pc.utf8_slice_codeunits(pc.fill_null(allowed, ""), 1, 2)
    ok = pc.or_(pc.equal(first, a0), pc.equal(first, a1))
    return (
        pc.fill_null(pc.is_valid(allowed), False).to_numpy(zero_copy_only=False)
        & pc.fill_null(pc.is_valid(first), False).to_numpy(zero_copy_only=False)
        & ~pc.fill_null(ok, True).to_numpy(zero_copy_only=False)
    )


_SSN_PLACEHOLDERS: Final[tuple[str, ...]] = ("123456789", "078051120", "219099999")
"""Known fake SSNs besides the all-same-digit ones: the counting sequence, the Woolworth wallet card, an SSA ad."""


def ssn(s: pd.Series) -> Normalized:
    """US SSN as 9 digits (dashes, spaces and dots removed).

    Placeholders -> NA with ``ssn_placeholder`` (disposition ``null``: store NULL, migrate the row):
    all the same digit (``999999999``, ``000000000``), ``123456789`` and other known fakes, and the
    numbers SSA never issues (area ``000``, ``666`` or ``9xx``, group ``00``, serial ``0000``).
    Not 9 digits -> ``ssn_invalid``.

    >>> ssn(pd.Series(["123-45-6780", "999-99-9999", "12345"])).reasons.tolist()
    [<NA>, 'ssn_placeholder', 'ssn_invalid']
    """

    def run(u: pa.Array) -> tuple[pa.Array, pa.Array, None]:
        digits = pc.replace_substring_regex(u, r"[-\s.]", "")
        shape_ok = pc.match_substring_regex(digits, r"^\d{9}$")
        same = pc.equal(digits, pc.binary_repeat(pc.utf8_slice_codeunits(digits, 0, 1), 9))
        never_issued = pc.or_(
            pc.match_substring_regex(digits, r"^(?:000|666|9)"),
            pc.or_(
                pc.equal(pc.utf8_slice_codeunits(digits, 3, 5), "00"),
                pc.equal(pc.utf8_slice_codeunits(digits, 5, 9), "0000"),
            ),
        )
        fake = pc.or_(
            pc.or_(same, never_issued), pc.is_in(digits, value_set=pa.array(_SSN_PLACEHOLDERS, _STR))
        )
        reasons = _choose(len(u), [(pc.invert(shape_ok), "ssn_invalid"), (fake, "ssn_placeholder")])
        return _null_where(digits, pc.is_valid(reasons)), reasons, None

    return _by_distinct(s, run, TEXT)


# --- NPI, money, outcome scores -----------------------------------------------------------------


def _digit_matrix(arr: pa.Array, width: int) -> np.ndarray:
    """Non-null strings of exactly ``width`` ASCII digits as an (n, width) uint8 matrix of digit values."""
    arr = _combine(pc.cast(arr, _STR))
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return (data.reshape(-1, width) - ord("0")).astype(np.int64)


def _npi_check(d: np.ndarray) -> np.ndarray:
    """Luhn over ``80840`` + the 10 NPI digits; the prefix contributes the constant 24."""
    doubled = d[:, 0:9:2] * 2
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    total = 24 + doubled.sum(axis=1) + d[:, 1:10:2].sum(axis=1)
    return total % 10 == 0


def npi_valid(s: pd.Series) -> Normalized:
    """A National Provider Identifier: 10 digits whose last is the Luhn check digit over ``80840`` + the first 9.

    Spaces and dashes are removed; anything else -> ``npi_invalid``.

    >>> r = npi_valid(pd.Series(["1234567893", "1234567890", "12345"]))
    >>> r.values.tolist(), r.reasons.tolist()
    (['1234567893', <NA>, <NA>], [<NA>, 'npi_invalid', 'npi_invalid'])
    """

    def run(u: pa.Array) -> tuple[pa.Array, pa.Array, None]:
        digits = pc.replace_substring_regex(u, r"[\s-]", "")
        shape = pc.fill_null(pc.match_substring_regex(digits, r"^[0-9]{10}$"), False).to_numpy(
            zero_copy_only=False
        )
        ok = np.zeros(len(u), dtype=bool)
        rows = np.flatnonzero(shape)
        if rows.size:
            ok[rows] = _npi_check(_digit_matrix(digits.take(pa.array(rows)), 10))
        return _null_where(digits, ~ok), _choose(len(u), [(~ok, "npi_invalid")]), None

    return _by_distinct(s, run, TEXT)


_MONEY_RE = (
    r"^(?P<open>\()?\s*(?P<sign>[-+])?\s*\$?\s*(?P<sign2>[-+])?\s*"
    r"(?P<int>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]*)(?:\.(?P<frac>[0-9]*))?\s*(?P<close>\))?\s*(?P<trail>-)?$"
)
_MAX_DOLLAR_DIGITS = 15  # int64 cents hold 9.2e16 dollars: stay well inside


def money_cents(s: pd.Series) -> Normalized:
    """An amount in dollars as exact ``int64`` cents, by string arithmetic (never through a float).

    ``$1,234.50``, ``125``, ``125.5``, `` 80.00 ``, ``-12``, ``$-12``, ``12.00-`` and the accounting
    negative ``(12.00)``; more decimals are allowed only when they are zeros (``12.500``).
    Anything else (fractions of a cent, two signs, unbalanced parentheses, misplaced thousands
    separators, letters) -> ``money_invalid``. The output is in cents, so running it again on its
    own output is not the identity: :func:`format_cents` turns cents back into text that reads the same.

    >>> money_cents(pd.Series(["$1,234.50", "(12.00)", "125.5", "12.345"])).values.tolist()
    [123450, -1200, 12550, <NA>]
    """

    def run(u: pa.Array) -> tuple[pa.Array, pa.Array, None]:
        m = pc.extract_regex(u, _MONEY_RE)
        matched = pc.is_valid(m).to_numpy(zero_copy_only=False)
        whole = pc.fill_null(_field(m, "int"), "")
        whole = pc.replace_substring(whole, ",", "")
        frac = pc.fill_null(_field(m, "frac"), "")
        opened = pc.is_valid(_field(m, "open")).to_numpy(zero_copy_only=False)
        closed = pc.is_valid(_field(m, "close")).to_numpy(zero_copy_only=False)
        minus = [
            pc.fill_null(pc.equal(_field(m, name), "-"), False).to_numpy(zero_copy_only=False)
            for name in ("sign", "sign2", "trail")
        ]
        signs = sum(
            pc.is_valid(_field(m, name)).to_numpy(zero_copy_only=False).astype(int)
            for name in ("sign", "sign2", "trail")
        )
        has_digits = (pc.utf8_length(whole).to_numpy(zero_copy_only=False) > 0) | (
            pc.utf8_length(frac).to_numpy(zero_copy_only=False) > 0
        )
        extra = pc.utf8_slice_codeunits(frac, 2)
        exact = pc.match_substring_regex(extra, r"^0*$").to_numpy(zero_copy_only=False)
        short = pc.utf8_length(whole).to_numpy(zero_copy_only=False) <= _MAX_DOLLAR_DIGITS
        ok = matched & has_digits & (opened == closed) & (signs + opened <= 1) & exact & short
        dollars = _ints(pc.if_else(pa.array(ok), whole, pa.scalar("0", _STR)), 0)
        cents = _ints(
            pc.if_else(
                pa.array(ok), pc.utf8_slice_codeunits(pc.utf8_rpad(frac, 2, "0"), 0, 2), pa.scalar("0", _STR)
            ),
            0,
        )
        negative = opened | minus[0] | minus[1] | minus[2]
        amount = np.where(negative, -1, 1) * (dollars * 100 + cents)
        values = pa.array(amount, type=pa.int64(), mask=~ok)
        return values, _choose(len(u), [(~ok, "money_invalid")]), None

    return _by_distinct(s, run, INT64)


def format_cents(cents: pd.Series) -> pd.Series:
    """Cents as dollar text (``-1200`` -> ``-12.00``): what :func:`money_cents` reads back to the same cents.

    >>> format_cents(pd.Series([123450, -5, None], dtype="Int64")).tolist()
    ['1234.50', '-0.05', <NA>]
    """
    arr = _combine(pa.array(pd.array(cents, dtype=INT64)))
    magnitude = pc.abs(arr)
    dollars = pc.cast(pc.divide(magnitude, 100), _STR)
    rest = pc.utf8_lpad(
        pc.cast(pc.subtract(magnitude, pc.multiply(pc.divide(magnitude, 100), 100)), _STR), 2, "0"
    )
    sign = pc.if_else(pc.less(arr, 0), pa.scalar("-", _STR), pa.scalar("", _STR))
    return _to_series(_concat(sign, _concat(dollars, rest, sep=".")), cents.index, TEXT)


def outcome_measure(s: pd.Series) -> Normalized:
    """Instrument names (``lefs``, ``Oswestry``, ``Quick DASH``, ``QDASH``) -> ``LEFS``/``ODI``/``NDI``/``QuickDASH``/``PSFS``.

    >>> outcome_measure(pd.Series(["oswestry", "Quick-DASH", "SF-36"])).values.tolist()
    ['ODI', 'QuickDASH', <NA>]
    """
    keys = pa.array(list(codes.OUTCOME_ALIASES), _STR)
    names = pa.array(list(codes.OUTCOME_ALIASES.values()), _STR)

    def run(u: pa.Array) -> tuple[pa.Array, pa.Array, None]:
        key = pc.replace_substring_regex(pc.utf8_lower(u), r"[^a-z]", "")
        idx = pc.index_in(key, value_set=keys)
        return names.take(idx), _choose(len(u), [(pc.is_null(idx), "measure_unknown")]), None

    return _by_distinct(s, run, TEXT)


_SCORE_RE = r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))\s*(?:(?P<pct>%)|/\s*(?P<den>[0-9]+))?$"


def outcome_score(measure: pd.Series, score: pd.Series) -> Normalized:
    """An outcome score as a number in the instrument's native scale, range-checked.

    Ranges (inclusive, :data:`cutover.mapping.codes.OUTCOME_RANGES`): LEFS 0-80, ODI 0-100, NDI 0-50,
    QuickDASH 0-100, PSFS 0-10. A percent (``64%``, or ``/100``) is converted to the native scale
    (NDI ``64%`` -> 32); ``45/80`` is read when the denominator is the instrument's maximum.
    Reasons: ``measure_unknown`` (a score whose instrument we do not know), ``score_invalid``
    (not a number), ``score_out_of_range``. The result is on ``score``'s index.

    >>> r = outcome_score(pd.Series(["LEFS", "NDI", "LEFS"]), pd.Series(["45", "64%", "95"]))
    >>> r.values.tolist(), r.reasons.tolist()
    ([45.0, 32.0, <NA>], [<NA>, <NA>, 'score_out_of_range'])
    """
    measures = outcome_measure(measure.reindex(score.index))
    arr = _prepare(score)
    n = len(arr)
    m = pc.extract_regex(arr, _SCORE_RE)
    number = pc.cast(_field(m, "num"), pa.float64()).to_numpy(zero_copy_only=False)
    is_pct = pc.is_valid(_field(m, "pct")).to_numpy(zero_copy_only=False)
    den = _ints(_field(m, "den"), -1)
    canon = _combine(pa.array(measures.values.array))
    instruments = list(codes.OUTCOME_RANGES)
    idx = pc.index_in(canon, value_set=pa.array(instruments, _STR))
    lows = np.array([lo for lo, _ in codes.OUTCOME_RANGES.values()])[
        pc.fill_null(idx, 0).to_numpy(zero_copy_only=False)
    ]
    highs = np.array([hi for _, hi in codes.OUTCOME_RANGES.values()])[
        pc.fill_null(idx, 0).to_numpy(zero_copy_only=False)
    ]
    known = pc.is_valid(idx).to_numpy(zero_copy_only=False)
    percent = is_pct | (den == 100)
    den_ok = (den < 0) | (den == 100) | (den == highs)
    value = np.where(percent, number / 100.0 * highs, number)
    present = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    parsed = pc.is_valid(m).to_numpy(zero_copy_only=False) & den_ok
    in_range = (value >= lows) & (value <= highs)
    reasons = _choose(
        n,
        [
            (present & ~known, "measure_unknown"),
            (present & ~parsed, "score_invalid"),
            (present & ~in_range, "score_out_of_range"),
        ],
    )
    ok = present & known & parsed & in_range
    values = pa.array(np.where(ok, value, 0.0), type=pa.float64(), mask=~ok)
    return Normalized(
        values=_to_series(values, score.index, FLOAT64), reasons=_to_series(reasons, score.index, TEXT)
    )


# --- ICD-10-CM, with ICD-9-CM mapped through the GEMs -------------------------------------------

ICD10_CUTOVER: Final = date(2015, 10, 1)
"""The US switch from ICD-9-CM to ICD-10-CM (dates of service on or after it use ICD-10-CM)."""

_ICD10_SHAPE = r"^[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}$"
_ICD9_SHAPE = r"^(?:[0-9]{3}[0-9]{0,2}|V[0-9]{2}[0-9]{0,2}|E[0-9]{3}[0-9]?)$"
GEM_SOURCE: Final = codes.GEM_SOURCE
"""Provenance of the ICD-9-CM -> ICD-10-CM crosswalk (source, release, file hashes, choice rule)."""


@dataclass(frozen=True)
class _IcdTables:
    billable10: pa.Array
    headers10: pa.Array
    old10: pa.Array  # GEM targets that were billable when the GEMs were made
    known9: pa.Array
    headers9: pa.Array
    gem_keys: pa.Array
    gem_targets: pa.Array
    gem_approx: pa.Array


@cache
def _icd_tables() -> _IcdTables:
    """The code sets as Arrow arrays, built once a process (about 1.5 s: the files are read and hashed)."""
    choice = codes.gem_choice()
    return _IcdTables(
        billable10=pa.array(sorted(codes.icd10cm_codes()), _STR),
        headers10=pa.array(sorted(codes.icd10cm_headers()), _STR),
        old10=pa.array(sorted(set(codes.icd9_gem()["icd10cm"]) - {"NoDx"}), _STR),
        known9=pa.array(sorted(codes.icd9cm_codes()), _STR),
        headers9=pa.array(sorted(codes.icd9cm_headers()), _STR),
        gem_keys=pa.array(choice.index.tolist(), _STR),
        gem_targets=pa.array(choice["target"].tolist(), _STR),
        gem_approx=pa.array(choice["approximate"].astype(bool).tolist(), pa.bool_()),
    )


def _dotted(bare: pa.Array, at: int | pa.Array) -> pa.Array:
    """Insert the dot after ``at`` characters when there is anything after it."""
    head = pc.utf8_slice_codeunits(bare, 0, at) if isinstance(at, int) else bare
    tail = pc.utf8_slice_codeunits(bare, at) if isinstance(at, int) else bare
    return pc.if_else(pc.greater(pc.utf8_length(tail), 0), _concat(head, tail, sep="."), head)


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False)


def icd10(s: pd.Series, *, service_date: pd.Series | None = None) -> pd.DataFrame:
    """Diagnosis codes as ICD-10-CM, with ICD-9-CM codes mapped through the CMS GEMs.

    Case and whitespace are normalised and the dot goes after the third character
    (``m5450`` -> ``M54.50``). ICD-9-CM codes (numeric ``724.2``/``7242``, ``V57.1``, ``E888.9``) are
    mapped by :data:`GEM_SOURCE`'s rule; a code that could be either (``E8889``: ICD-10-CM E88.89 or
    ICD-9-CM E888.9) is read by its dot if it has one, else as the code set in which it is
    billable, else by ``service_date`` (before 2015-10-01 -> ICD-9-CM), else as ICD-10-CM.

    Returns a DataFrame on ``s``'s index: ``code`` (ICD-10-CM with the dot), ``source_system``
    (``icd10cm``/``icd9cm``), ``source_code`` (the ICD-9-CM code with its dot when mapped, else NA),
    ``gem_approximate`` (bool), ``reason`` (``icd_invalid``, ``icd9_unmapped``) and ``flag``
    (``icd10_not_billable``: a valid category or a code retired since, kept as the clinician coded
    it; ``icd10_unknown``: well-formed but in no code set we hold).

    >>> icd10(pd.Series(["m5450", "724.2", "XYZ"]))[["code", "source_code", "gem_approximate", "reason"]].values.tolist()
    [['M54.50', <NA>, False, <NA>], ['M54.50', '724.2', True, <NA>], [<NA>, <NA>, <NA>, 'icd_invalid']]
    """
    t = _icd_tables()
    arr = pc.utf8_upper(pc.replace_substring_regex(_prepare(s), r"\s+", ""))
    uniques, indices = _distinct(arr)
    bare = pc.replace_substring(uniques, ".", "")
    dot = pc.find_substring(uniques, ".").to_numpy(zero_copy_only=False)
    dots = pc.count_substring(uniques, ".").to_numpy(zero_copy_only=False)
    length = pc.utf8_length(bare).to_numpy(zero_copy_only=False)
    is_e = _np(pc.starts_with(bare, "E"))
    single_dot = dots <= 1

    shape10 = (
        _np(pc.match_substring_regex(bare, _ICD10_SHAPE))
        & single_dot
        & ((dot == -1) | ((dot == 3) & (length > 3)))
    )
    dot9 = np.where(is_e, 4, 3)
    shape9 = (
        _np(pc.match_substring_regex(bare, _ICD9_SHAPE))
        & single_dot
        & ((dot == -1) | ((dot == dot9) & (length > dot9)))
    )

    billable10 = _np(pc.is_in(bare, value_set=t.billable10))
    rank10 = np.where(
        billable10,
        2,
        np.where(_np(pc.is_in(bare, value_set=t.headers10)) | _np(pc.is_in(bare, value_set=t.old10)), 1, 0),
    )
    rank9 = np.where(
        _np(pc.is_in(bare, value_set=t.known9)), 2, np.where(_np(pc.is_in(bare, value_set=t.headers9)), 1, 0)
    )
    both = shape9 & shape10
    # per distinct code: read as ICD-9 by default / when the date of service is before the cutover
    as9_default = (shape9 & ~shape10) | (both & (rank9 > rank10))
    as9_old = as9_default | (both & (rank9 == rank10))
    valid = shape9 | shape10

    code10 = _dotted(bare, 3)
    flag10 = _choose(len(bare), [(rank10 == 0, "icd10_unknown"), (rank10 == 1, "icd10_not_billable")])
    gem_idx = pc.index_in(bare, value_set=t.gem_keys)
    target = t.gem_targets.take(gem_idx)
    mapped9 = _dotted(target, 3)
    approx9 = pc.fill_null(t.gem_approx.take(gem_idx), False)
    source9 = pc.if_else(pa.array(is_e), _dotted(bare, 4), _dotted(bare, 3))

    # spread to rows and pick the reading per row
    row_valid = _np(pa.array(valid).take(indices))
    if service_date is None:
        old = np.zeros(len(arr), dtype=bool)
    else:
        when = service_date.reindex(s.index)
        if not isinstance(when.dtype, pd.ArrowDtype) or not pa.types.is_date32(when.dtype.pyarrow_dtype):
            when = parse_date(when, role="event", today=date.max).values
        old = _np(pc.less(_combine(pa.array(when.array)), pa.scalar(ICD10_CUTOVER, pa.date32())))
    as9 = (
        np.where(old, _np(pa.array(as9_old).take(indices)), _np(pa.array(as9_default).take(indices)))
        & row_valid
    )
    as10 = row_valid & ~as9
    mapped = pc.is_valid(target.take(indices)).to_numpy(zero_copy_only=False) & as9

    code = pc.if_else(pa.array(as9), mapped9.take(indices), code10.take(indices))
    code = _null_where(code, ~(as10 | mapped))
    system = _choose(len(arr), [(as10, "icd10cm"), (as9, "icd9cm")])
    source = _null_where(source9.take(indices), ~as9)
    approx = pa.array(np.where(as9, _np(approx9.take(indices)), False), pa.bool_(), mask=~(as10 | mapped))
    present = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    reason = _choose(len(arr), [(present & ~row_valid, "icd_invalid"), (as9 & ~mapped, "icd9_unmapped")])
    flag = _null_where(flag10.take(indices), ~as10)
    columns = {
        "code": (code, TEXT),
        "source_system": (system, TEXT),
        "source_code": (source, TEXT),
        "gem_approximate": (approx, BOOL),
        "reason": (reason, TEXT),
        "flag": (flag, TEXT),
    }
    return pd.DataFrame({k: _to_series(v, s.index, d) for k, (v, d) in columns.items()}, index=s.index)


# --- CPT lines, the 8-minute rule ---------------------------------------------------------------

_CPT_MOD = r"(?!X[0-9])[0-9A-Z]{2}(?![0-9A-Z])"  # two letters/digits, but not units written X2
_CPT_TOKEN_RE = (
    r"(?P<code>(?<![0-9A-Z])(?:[0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})(?![0-9]))"
    rf"(?:\s*-?\s*(?P<mods1>{_CPT_MOD}(?:\s*[-:]?\s*{_CPT_MOD})*))?"
    r"(?:\s*(?:[X*]\s*(?P<units>[0-9]{1,2})|\(\s*(?P<units_p>[0-9]{1,2})\s*\))(?:\s*(?:UNITS?|U)(?![0-9A-Z]))?)?"
    rf"(?:\s*-\s*(?P<mods2>{_CPT_MOD}(?:\s*[-:]?\s*{_CPT_MOD})*))?"
    r"|(?P<bad>[^\s,;/&+]+)"
)
"""One token of a free-text CPT line: a code with optional modifiers and units (``97110-GP x2``), or garbage."""
_MODIFIER_RE = r"^[0-9A-Z]{2}$"

CPT_COLUMNS: Final[tuple[str, ...]] = (
    "proc_id",
    "seq",
    "cpt_code",
    "units",
    "minutes",
    "modifiers",
    "reason",
    "flag",
)


def cpt_kind(code: str | pd.Series) -> codes.CptKind | pd.Series:
    """``timed``, ``untimed`` or ``unknown`` from :data:`cutover.mapping.codes.CPT_CODES`.

    A Series gives a Series (NA where the code is missing).

    >>> cpt_kind("97110"), cpt_kind("97161"), cpt_kind("99213")
    ('timed', 'untimed', 'unknown')
    """
    if isinstance(code, str):
        entry = codes.CPT_CODES.get(code.strip().upper())
        return entry[0] if entry else "unknown"
    keys = pa.array(list(codes.CPT_CODES), _STR)
    kinds = pa.array([k for k, _ in codes.CPT_CODES.values()], _STR)
    arr = pc.utf8_upper(_prepare(code))
    out = pc.if_else(
        pc.is_valid(arr), pc.fill_null(kinds.take(pc.index_in(arr, value_set=keys)), "unknown"), arr
    )
    return _to_series(out, code.index, TEXT)


def eight_minute_units(total_timed_minutes: pd.Series) -> pd.Series:
    """Units Medicare allows for a total of timed minutes: 0-7 -> 0, 8-22 -> 1, 23-37 -> 2, +1 per 15.

    Negative or non-numeric minutes give NA.

    >>> eight_minute_units(pd.Series([7, 8, 22, 23, 37, 38, 52, 53, 67, 68, None])).tolist()
    [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, <NA>]
    """
    minutes = pd.to_numeric(total_timed_minutes, errors="coerce").astype("Float64")
    whole = np.floor(minutes.to_numpy(dtype="float64", na_value=np.nan))
    ok = np.isfinite(whole) & (whole >= 0)
    units = np.where(ok, (np.where(ok, whole, 0) + 7) // 15, 0).astype(np.int64)
    return _to_series(pa.array(units, pa.int64(), mask=~ok), total_timed_minutes.index, INT64)


def _ints_from(col: pd.Series) -> np.ndarray:
    """Leading digits of a legacy number column (``45``, ``45 min``, ``45.0``) as float (NaN if none)."""
    uniques, indices = _distinct(_as_text(col))  # a handful of distinct values
    m = pc.extract_regex(_prepare_values(uniques), r"^(?P<n>[0-9]{1,6})(?:\.0*)?(?:\s*[A-Za-z]*)?$")
    return pc.cast(_field(m, "n"), pa.float64()).take(indices).to_numpy(zero_copy_only=False)


def _apportion(total: np.ndarray, weight: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Split each line's ``total`` over its rows in proportion to ``weight``, in integers that add up exactly.

    Largest remainders get the leftover minutes; ties go to the earlier code. Rows are grouped by
    ``line`` (contiguous, in text order). NaN totals give NaN.
    """
    frame = pd.DataFrame({"line": line, "w": weight.astype(np.int64)})
    wsum = frame.groupby("line")["w"].transform("sum").to_numpy()
    even = wsum == 0  # no usable units: split evenly
    frame["w"] = np.where(even, 1, frame["w"])
    wsum = frame.groupby("line")["w"].transform("sum").to_numpy()
    tot = np.nan_to_num(total, nan=0).astype(np.int64)
    share = tot * frame["w"].to_numpy()
    base = share // wsum
    frame["rem"] = share % wsum
    left = tot - pd.Series(base).groupby(frame["line"].to_numpy()).transform("sum").to_numpy()
    rank = frame.groupby("line")["rem"].rank(method="first", ascending=False).to_numpy() - 1
    out = (base + (rank < left)).astype(float)
    return np.where(np.isnan(total), np.nan, out)


def parse_cpt_lines(df: pd.DataFrame) -> pd.DataFrame:
    """Free-text legacy procedure lines -> one row per CPT/HCPCS code.

    ``df`` has ``proc_id``, ``cpt_text``, ``minutes``, ``units``, ``modifiers``. The text may hold one
    or several codes: ``97110x2, 97140 x1``, ``97110 X 2;97530x1``, ``97110``, ``97110-GP``,
    ``97110-GP-59 x2``, ``97110 (2)``. Output columns :data:`CPT_COLUMNS`: ``proc_id``, ``seq``
    (1-based, text order), ``cpt_code``, ``units``, ``minutes``, ``modifiers`` (list of str: the
    line's column first, then the code's own, deduplicated), ``reason`` and ``flag``.

    Units: on a multi-code line the text's units win (a code without them counts 1); on a
    single-code line the units column wins, else the text's, flagged ``cpt_units_conflict`` when
    they differ. Minutes: the line's minutes are split across its codes in proportion to units,
    in integers that add up to the legacy total (largest remainder). Reasons: ``cpt_invalid`` for
    a token that is not a code (the row keeps its place, code NA). Flags: ``cpt_unknown`` (well
    formed but not in our PT code table: kept, kind ``unknown``), ``modifier_invalid`` (a modifier
    that is not two letters/digits, dropped). A line without text gives one row with NA code.

    >>> lines = pd.DataFrame({"proc_id": [7], "cpt_text": ["97110x2, 97140 x1"], "minutes": ["40"],
    ...                       "units": ["3"], "modifiers": ["GP"]})
    >>> out = parse_cpt_lines(lines)
    >>> out[["seq", "cpt_code", "units", "minutes"]].values.tolist(), out["modifiers"].tolist()
    ([[1, '97110', 2, 27], [2, '97140', 1, 13]], [['GP'], ['GP']])
    """
    n = len(df)
    text = pc.utf8_upper(_prepare(df["cpt_text"]))
    text = pc.replace_substring_regex(text, r"(^|[^0-9A-Z])AND([^0-9A-Z]|$)", r"\1,\2")
    uniques, indices = _distinct(text)
    # extractall runs Python's re (it needs look-arounds), once per distinct text
    tokens = pd.Series(uniques.to_pylist(), dtype=object).str.extractall(_CPT_TOKEN_RE)
    tokens.index = tokens.index.set_names(["u", "match"])
    tokens = tokens.reset_index()
    tokens["tok"] = np.arange(len(tokens))

    line_of_u = pd.DataFrame(
        {"row": np.arange(n), "u": pc.fill_null(indices, -1).to_numpy(zero_copy_only=False)}
    )
    rows = line_of_u.merge(tokens, on="u", how="left").sort_values(["row", "match"], kind="stable")
    rows = rows.reset_index(drop=True)
    row = rows["row"].to_numpy()
    good = rows["code"].notna().to_numpy()
    bad = rows["bad"].notna().to_numpy()
    codes_per_line = pd.Series(good.astype(int)).groupby(row).transform("sum").to_numpy()
    multi = codes_per_line > 1

    text_units = pd.to_numeric(rows["units"].fillna(rows["units_p"]), errors="coerce").to_numpy(dtype=float)
    col_units = _ints_from(df["units"])[row]
    single_units = np.where(np.isnan(col_units), text_units, col_units)
    units = np.where(multi, np.where(np.isnan(text_units), 1.0, text_units), single_units)
    units = np.where(good, units, np.nan)
    conflict = good & ~multi & ~np.isnan(col_units) & ~np.isnan(text_units) & (col_units != text_units)

    line_minutes = _ints_from(df["minutes"])[row]
    minutes = np.full(len(rows), np.nan)
    if good.any():
        sub = np.flatnonzero(good)
        minutes[sub] = _apportion(line_minutes[sub], np.nan_to_num(units[sub], nan=0), row[sub])

    # Modifiers: the line's column, then the code's own. Split per distinct string (the column holds a
    # handful: GP, "GP,KX"), join to the output rows, validate, dedupe, rebuild the lists.
    rows["out"] = np.arange(len(rows))
    own = (tokens["mods1"].fillna("") + "-" + tokens["mods2"].fillna("")).str.split(r"[\s:-]+", regex=True)
    own = own.explode()
    own_long = pd.DataFrame(
        {"tok": tokens["tok"].to_numpy()[own.index.to_numpy(dtype=np.int64)], "mod": own.to_numpy()}
    )
    col_arr = pc.utf8_upper(_prepare(df["modifiers"]))
    col_uniques, col_idx = _distinct(col_arr)
    col_split = pd.Series(col_uniques.to_pylist(), dtype=object).str.split(r"[\s,;/:-]+", regex=True)
    col_split = col_split.explode()
    col_long = pd.DataFrame({"m": col_split.index.to_numpy(dtype=np.int64), "mod": col_split.to_numpy()})
    rows["m"] = pc.fill_null(col_idx, -1).to_numpy(zero_copy_only=False)[row]
    long = pd.concat(
        [
            rows.loc[good, ["out", "m"]].merge(col_long, on="m").assign(order=0)[["out", "order", "mod"]],
            rows.loc[good, ["out", "tok"]].merge(own_long, on="tok").assign(order=1)[["out", "order", "mod"]],
        ],
        ignore_index=True,
    )
    long = long[long["mod"].notna() & (long["mod"] != "")]
    valid_mod = long["mod"].str.fullmatch(_MODIFIER_RE).to_numpy(dtype=bool)
    mod_invalid = np.zeros(len(rows), dtype=bool)
    mod_invalid[long["out"].to_numpy(dtype=np.int64)[~valid_mod]] = True
    long = long[valid_mod].drop_duplicates(["out", "mod"]).sort_values(["out", "order"], kind="stable")
    counts = np.bincount(long["out"].to_numpy(dtype=np.int64), minlength=len(rows))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    mods = pa.ListArray.from_arrays(pa.array(offsets), pa.array(long["mod"].tolist(), _STR))

    code = pa.array(rows["code"].where(good, None).tolist(), _STR)
    unknown = good & ~_np(pc.is_in(code, value_set=pa.array(list(codes.CPT_CODES), _STR)))
    seq = rows.groupby("row").cumcount().to_numpy() + 1
    has_token = good | bad
    seq_arr = pa.array(np.where(has_token, seq, 1), pa.int64())
    index = pd.RangeIndex(len(rows))
    proc_ids = df["proc_id"].to_numpy()[row]
    return pd.DataFrame(
        {
            "proc_id": proc_ids,
            "seq": _to_series(seq_arr, index, INT64),
            "cpt_code": _to_series(code, index, TEXT),
            "units": _to_series(
                pa.array(np.nan_to_num(units, nan=0).astype(np.int64), pa.int64(), mask=np.isnan(units)),
                index,
                INT64,
            ),
            "minutes": _to_series(
                pa.array(np.nan_to_num(minutes, nan=0).astype(np.int64), pa.int64(), mask=np.isnan(minutes)),
                index,
                INT64,
            ),
            "modifiers": _to_series(mods, index, pd.ArrowDtype(pa.list_(_STR))),
            "reason": _to_series(_choose(len(rows), [(bad, "cpt_invalid")]), index, TEXT),
            "flag": _to_series(
                _choose(
                    len(rows),
                    [
                        (unknown, "cpt_unknown"),
                        (conflict, "cpt_units_conflict"),
                        (mod_invalid, "modifier_invalid"),
                    ],
                ),
                index,
                TEXT,
            ),
        },
        index=index,
    )


UnitsRule = Literal["per_line", "medicare_total"]


def units_check(df: pd.DataFrame, *, rule: UnitsRule = "per_line", group: str = "visit_id") -> pd.Series:
    """Flag procedure lines whose units the minutes do not support (a compliance finding; units are kept).

    ``df`` has ``cpt_code``, ``units``, ``minutes`` (and ``group`` for ``medicare_total``).
    ``per_line`` (the AMA/per-code reading) checks each timed line against
    :func:`eight_minute_units` of its own minutes; ``medicare_total`` (CMS) adds up the timed minutes
    and units of each ``group`` (a visit) and flags every timed line of a group whose units exceed
    what the total allows. Untimed codes billed once a session
    (:data:`cutover.mapping.codes.ONE_UNIT_CODES`) with more than one unit are flagged
    ``untimed_multiple_units``. Lines without minutes or units are not judged.

    >>> lines = pd.DataFrame({"cpt_code": ["97110", "97140", "97161"], "units": [2, 1, 2], "minutes": [20, 8, 45]})
    >>> units_check(lines).tolist()
    ['units_exceed_minutes', <NA>, 'untimed_multiple_units']
    """
    code = pc.utf8_upper(_prepare(df["cpt_code"]))
    timed = _np(pc.is_in(code, value_set=pa.array(sorted(codes.TIMED_CODES), _STR)))
    one_unit = _np(pc.is_in(code, value_set=pa.array(sorted(codes.ONE_UNIT_CODES), _STR)))
    units = pd.to_numeric(df["units"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    minutes = pd.to_numeric(df["minutes"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    judged = timed & ~np.isnan(units) & ~np.isnan(minutes)
    if rule == "per_line":
        allowed = eight_minute_units(pd.Series(minutes)).to_numpy(dtype=float, na_value=np.nan)
        exceed = judged & (units > allowed)
    else:
        keys = df[group].to_numpy()
        frame = pd.DataFrame({"g": keys, "u": np.where(judged, units, 0), "m": np.where(judged, minutes, 0)})
        sums = frame.groupby("g", dropna=False)[["u", "m"]].transform("sum")
        allowed = eight_minute_units(sums["m"]).to_numpy(dtype=float, na_value=np.nan)
        exceed = judged & (sums["u"].to_numpy() > allowed)
    multiple = one_unit & ~np.isnan(units) & (units > 1)
    flags = _choose(len(df), [(exceed, "units_exceed_minutes"), (multiple, "untimed_multiple_units")])
    return _to_series(flags, df.index, TEXT)
