"""The rules a mapping spec may use: each wraps a normaliser and says, in words, what it does.

The words are what the auditor's mapping specification shows; the function is what runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cutover.mapping import normalize as nz
from cutover.mapping.engine import Batch, Rule
from cutover.mapping.normalize import Normalized


def _ok(values: pd.Series) -> Normalized:
    return Normalized(values=values, reasons=pd.Series(pd.NA, index=values.index, dtype="string"))


def cell_text(b: Batch, column: str) -> pd.Series:
    """A legacy column as text rules read it: null tokens to NULL, clean UTF-8 (once per batch and
    column, shared by every rule that reads the column)."""
    return b.once(("text", column), lambda: nz.clean_text(nz.null_tokens(b[column]).values).values)


def text() -> Rule:
    return Rule(
        "text: decoded to UTF-8 (Latin-1 and mojibake repaired), control characters and NUL removed, "
        "null tokens (N/A, NULL, none, '') to NULL, trimmed",
        lambda b, src: _ok(cell_text(b, src[0])),
    )


@functools.cache
def _zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def timezone() -> Rule:
    """An IANA time zone name; anything else is ``timezone_unknown`` (the target's CHECK, known here)."""

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        values = cell_text(b, src[0])
        unknown = values.notna() & ~values.isin(_zones()).fillna(False)
        return Normalized(
            values=values.mask(unknown),
            reasons=pd.Series(pd.NA, index=values.index, dtype="string").mask(unknown, "timezone_unknown"),
        )

    return Rule("IANA time zone name (America/New_York); anything else is timezone_unknown", run)


def upper() -> Rule:
    return Rule(
        "code text: trimmed, upper case, null tokens to NULL",
        lambda b, src: _ok(cell_text(b, src[0]).str.upper()),
    )


def lower() -> Rule:
    return Rule(
        "text: trimmed, lower case, null tokens to NULL", lambda b, src: _ok(cell_text(b, src[0]).str.lower())
    )


def code(mapping: Mapping[str, str], reason: str) -> Rule:
    """A legacy code looked up in a code table (case-insensitive); an unknown code is ``reason``."""
    table = {k.upper(): v for k, v in mapping.items()}

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        raw = cell_text(b, src[0]).str.upper()
        values = raw.map(table).astype("string")
        return Normalized(
            values=values,
            reasons=pd.Series(pd.NA, index=raw.index, dtype="string").mask(
                raw.notna() & values.isna(), reason
            ),
        )

    shown = ", ".join(f"{k} → {v}" for k, v in sorted(table.items()))
    return Rule(f"code lookup: {shown}; anything else is {reason}", run)


def flag_yn() -> Rule:
    return Rule(
        "flag: Y/YES/T/TRUE/1 → true, anything else → false",
        lambda b, src: _ok(
            cell_text(b, src[0]).str.upper().isin(["Y", "YES", "T", "TRUE", "1"]).fillna(False).astype(bool)
        ),
    )


def _formats_shown(formats: Sequence[str]) -> str:
    return " or ".join(formats)


def date(role: nz.DateRole, formats: Sequence[str] | None = None) -> Rule:
    """A date; for ``role="birth"`` a second source, the record's created stamp, places two-digit years.

    ``formats``: the legacy system's own ``strptime`` formats (``["%d.%m.%Y"]``), read instead of the
    built-in mixed formats (:func:`cutover.mapping.normalize.date_patterns`).
    """
    own = None if formats is None else tuple(str(f) for f in formats)
    if own is not None:
        nz.date_patterns(own)  # an unknown directive fails when the spec is built
    parts = []
    if own is None or any("%y" in f for f in own):
        parts.append(
            "two-digit years: the century in which the birth follows neither the record's created date "
            "nor the as-of date and gives an age under 115; when both centuries fit, the later, flagged "
            "birth_year_ambiguous"
            if role == "birth"
            else "two-digit years: pivot year 70, never after the as-of date"
        )
    if role == "birth" and own is not None:
        parts.append("a birth after the as-of date is date_out_of_range")
    if role == "service":
        parts.append("a date after the run's as-of date is flagged date_future (kept)")
    what = "; ".join(parts)

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        created = b[src[1]] if role == "birth" and len(src) > 1 else None
        return nz.parse_date(b[src[0]], role=role, today=b.as_of, created=created, formats=own)

    if own is None:
        return Rule(
            f"date in mixed formats (ISO, MM/DD/YYYY, DD-Mon-YYYY, YYYYMMDD; {what}); "
            "impossible dates (Feb 30, 0000-00-00) are date_impossible, never guessed",
            run,
        )
    return Rule(
        f"date written {_formats_shown(own)} (strptime{'; ' + what if what else ''}); any other text is "
        "date_unparseable, an impossible date (31 February, month 13) date_impossible, never guessed",
        run,
    )


def timestamp(formats: Sequence[str] | None = None) -> Rule:
    """A timestamp (local wall time); ``formats`` the legacy system's own ``strptime`` formats."""
    own = None if formats is None else tuple(str(f) for f in formats)
    if own is not None:
        nz.date_patterns(own)

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        return nz.parse_timestamp(b[src[0]], today=b.as_of, formats=own)

    if own is None:
        return Rule("timestamp (local wall time) in mixed formats", run)
    return Rule(
        f"timestamp (local wall time) written {_formats_shown(own)} (strptime); any other text is "
        "date_unparseable, an impossible date or time date_impossible",
        run,
    )


NameForm = Literal["one_column", "family_given", "family_given_middle"]
NAME_FORMS: tuple[NameForm, ...] = get_args(NameForm)
FORM_COLUMNS: dict[NameForm, int] = {"one_column": 1, "family_given": 2, "family_given_middle": 3}


def _name(b: Batch, src: tuple[str, ...], credentials: bool) -> pd.DataFrame:
    def split() -> pd.DataFrame:
        # family, given[, middle] in columns of their own: joined as one column writes them, split alike
        whole = b[src[0]] if len(src) == 1 else nz.name_from_columns(*(b[c] for c in src))
        return nz.split_person_name(whole, credentials=credentials)

    return b.once(("name", src, credentials), split)


NAME_PARTS = ("family", "given", "middle", "suffix", "credential")


def name_part(part: str, *, credentials: bool = False, form: NameForm = "one_column") -> Rule:
    """One part of a person name; the family part carries the name's reason and flags (once per row).

    ``form``: the name in one column (``one_column``), or in two or three, family and given
    (``family_given``) and middle (``family_given_middle``), joined ``FAMILY, GIVEN MIDDLE`` and
    split by the same normaliser, so the reasons and flags are those of one column.
    """
    if part not in NAME_PARTS:
        raise ValueError(f"unknown name part {part}")
    if form not in NAME_FORMS:
        raise ValueError(f"unknown form {form} (expected: {', '.join(NAME_FORMS)})")
    wanted = FORM_COLUMNS[form]

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        if len(src) != wanted:
            raise ValueError(f"name_part with form {form} reads {wanted} source column(s), {len(src)} given")
        parts = _name(b, src, credentials)
        none = pd.Series(pd.NA, index=parts.index, dtype="string")
        family = part == "family"
        return Normalized(
            values=parts[part],
            reasons=parts["reason"] if family else none,
            flags=parts["flag"] if family else None,
        )

    shown = {
        "suffix": "the generational suffix (Jr, Sr, II, III, IV)",
        "credential": "the post-nominal credentials after the last comma (MD, DO, PA-C, DPT…)",
    }.get(part, f"the {part} part, proper-cased")
    if form == "one_column":
        written = (
            "person name 'LAST, FIRST MIDDLE' or 'FIRST LAST'"
            + (", 'CREDENTIAL'" if credentials else "")
            + " split"
        )
    else:
        written = (
            "person name in three columns (family, given, middle) joined 'FAMILY, GIVEN MIDDLE'"
            if form == "family_given_middle"
            else "person name in two columns (family, given) joined 'FAMILY, GIVEN'"
        ) + " and split as one column is"
    return Rule(
        f"{written}; {shown}; bidi control characters removed (text_bidi_control), "
        "look-alike letters of mixed scripts flagged (name_confusable)",
        run,
    )


def phone() -> Rule:
    return Rule(
        "phone number to E.164 (+1XXXXXXXXXX) with libphonenumber; extensions dropped (flagged)",
        lambda b, src: nz.phone_e164(b[src[0]]),
    )


def postal() -> Rule:
    return Rule(
        "US ZIP or ZIP+4; a leading zero lost by a spreadsheet is restored (checked against the state)",
        lambda b, src: nz.postal_code(b[src[0]], cell_text(b, src[1]).str.upper() if len(src) > 1 else None),
    )


def sex() -> Rule:
    return Rule(
        "sex: M/Male/1 → male, F/Female/2 → female, U → unknown", lambda b, src: nz.sex_code(b[src[0]])
    )


def ssn() -> Rule:
    return Rule(
        "SSN: 9 digits; placeholders (999999999, 000000000, 123456789, invalid areas) become NULL",
        lambda b, src: nz.ssn(b[src[0]]),
    )


def npi() -> Rule:
    return Rule(
        "NPI: 10 digits with a valid Luhn check digit (prefix 80840)", lambda b, src: nz.npi_valid(b[src[0]])
    )


def npi_digits() -> Rule:
    """The NPI as 10 digits; a failing check digit is a flag (the record migrates), not a reject."""

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        checked = nz.npi_valid(b[src[0]])
        digits = cell_text(b, src[0]).str.replace(r"\D", "", regex=True)
        ten = digits.where(digits.str.len() == 10)
        invalid = checked.reasons.notna() & ten.notna()
        flags = pd.Series(pd.NA, index=ten.index, dtype="string").mask(invalid, "npi_invalid")
        reasons = checked.reasons.astype("string").mask(invalid)
        return Normalized(values=ten.astype("string"), reasons=reasons, flags=flags)

    return Rule("NPI: 10 digits kept; a failing Luhn check digit is flagged npi_invalid, not rejected", run)


def money() -> Rule:
    return Rule(
        "money to integer cents, exactly ($1,234.50, 125, 125.5, (12.00) negative); never through floats",
        lambda b, src: nz.money_cents(b[src[0]]),
    )


_INT_BITS = {"smallint": 16, "integer": 32, "bigint": 64}
"""Width of each PostgreSQL integer type: a legacy number that does not fit is a reason, never an overflow."""


def _whole_numbers(digits: pd.Series, kind: str) -> Normalized:
    """Digit strings (``-``, leading zeros allowed) as integers of ``kind``; too long or outside its range
    → NA, ``integer_out_of_range``."""
    bits = _INT_BITS[kind]
    # 19 digits may pass int64: only those up to 18 are parsed, longer ones are out of any range here
    short = digits.str.lstrip("-").str.lstrip("0").str.len().le(18).fillna(False).astype(bool)
    numbers = pd.to_numeric(digits.where(short), errors="coerce").astype("Int64")
    fits = numbers.between(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1).fillna(False).astype(bool)
    out = (digits.notna() & ~(short & fits)).to_numpy(dtype=bool)
    return Normalized(
        values=numbers.mask(out),
        reasons=pd.Series(pd.NA, index=digits.index, dtype="string").mask(out, "integer_out_of_range"),
    )


def integer(kind: str = "bigint") -> Rule:
    """A whole number that fits the target's ``kind`` (``smallint``, ``integer``, ``bigint``)."""
    if kind not in _INT_BITS:
        raise ValueError(f"unknown integer type {kind}")

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        raw = cell_text(b, src[0])
        digits = raw.str.extract(r"^\s*(-?\d+)\s*$", expand=False).astype("string")
        parsed = _whole_numbers(digits, kind)
        reasons = parsed.reasons.mask((raw.notna() & digits.isna()).to_numpy(dtype=bool), "integer_invalid")
        return Normalized(values=parsed.values, reasons=reasons)

    return Rule(
        f"whole number ({kind}); anything else is integer_invalid, one too large integer_out_of_range", run
    )


def leading_integer(kind: str = "bigint") -> Rule:
    """The leading whole number of a text; one too large for ``kind`` is ``integer_out_of_range``."""
    if kind not in _INT_BITS:
        raise ValueError(f"unknown integer type {kind}")

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        return _whole_numbers(cell_text(b, src[0]).str.extract(r"(\d+)", expand=False).astype("string"), kind)

    return Rule(
        f"the leading whole number of a text such as '2x/wk' ({kind}; one too large is integer_out_of_range)",
        run,
    )


def _icd(b: Batch, column: str, date_column: str | None) -> pd.DataFrame:
    return b.once(
        ("icd", column),
        lambda: nz.icd10(b[column], service_date=None if date_column is None else b[date_column]),
    )


ICD_PARTS = ("code", "source_code", "source_system", "gem_approximate")


def icd(part: str = "code") -> Rule:
    """One part of a diagnosis code read as ICD-10-CM (ICD-9-CM mapped through the GEMs)."""
    if part not in ICD_PARTS:
        raise ValueError(f"unknown ICD part {part} (expected: {', '.join(ICD_PARTS)})")

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        d = _icd(b, src[0], None)
        reasons = d["reason"] if part == "code" else pd.Series(pd.NA, index=d.index, dtype="string")
        flags = d["flag"] if part == "code" else None
        return Normalized(values=d[part], reasons=reasons, flags=flags)

    what = {
        "code": "ICD-10-CM with the dot; ICD-9-CM codes mapped through the CMS GEMs",
        "source_code": "the legacy ICD-9-CM code when the diagnosis was mapped from ICD-9-CM",
        "source_system": "icd10cm, or icd9cm when mapped through the GEMs",
        "gem_approximate": "true where the GEM marks the map approximate or offers several targets",
    }[part]
    return Rule(what, run)


def icd_list() -> Rule:
    """A comma list of diagnosis codes → a text[] of ICD-10-CM codes (ICD-9 mapped)."""

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        raw = cell_text(b, src[0])
        n = len(raw)
        # one row per listed code (Arrow's split and flatten), coded at once, then regrouped by offsets
        listed = pc.split_pattern_regex(pa.array(raw.array, type=pa.large_string()), r"\s*[,;]\s*")
        codes, rows = pc.list_flatten(listed), pc.list_parent_indices(listed)
        present = pc.and_(pc.is_valid(codes), pc.not_equal(codes, ""))
        codes, rows = codes.filter(present), rows.filter(present).to_numpy(zero_copy_only=False)
        coded = nz.icd10(pd.Series(codes, dtype=nz.TEXT))
        bad = np.zeros(n, dtype=bool)
        bad[rows[coded["reason"].notna().to_numpy()]] = True
        mapped = coded["code"].notna().to_numpy()
        offsets = np.concatenate([[0], np.cumsum(np.bincount(rows[mapped], minlength=n))]).astype(np.int32)
        kept = pa.array(coded["code"].array, type=pa.large_string()).filter(pa.array(mapped))
        values = pd.Series(
            pd.arrays.ArrowExtensionArray(pa.ListArray.from_arrays(pa.array(offsets), kept)), index=raw.index
        )
        reasons = pd.Series(pd.NA, index=raw.index, dtype="string").mask(bad, "icd_invalid")
        return Normalized(values=values, reasons=reasons)

    return Rule("comma list of diagnosis codes → ICD-10-CM codes (ICD-9-CM mapped through the GEMs)", run)


def measure() -> Rule:
    return Rule(
        "outcome instrument: LEFS, ODI, NDI, QuickDASH, PSFS", lambda b, src: nz.outcome_measure(b[src[0]])
    )


def score() -> Rule:
    return Rule(
        "outcome score in the instrument's scale, range-checked (LEFS 0-80, ODI 0-100, NDI 0-50, QuickDASH 0-100, PSFS 0-10)",
        lambda b, src: nz.outcome_score(b[src[0]], b[src[1]]),
    )


def same() -> Rule:
    """A column the explode step already produced, typed."""
    return Rule("as produced by the explode step", lambda b, src: _ok(b[src[0]]))


def binary() -> Rule:
    return Rule("bytes carried unchanged", lambda b, src: _ok(b[src[0]]))


def sha256() -> Rule:
    import hashlib

    def run(b: Batch, src: tuple[str, ...]) -> Normalized:
        content = b[src[0]]
        arr = (
            pa.array(content, type=pa.binary())
            if not isinstance(content.dtype, pd.ArrowDtype)
            else content.array._pa_array
        )
        digests: list[str | None] = []
        for chunk in arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]:
            # hashed in place in Arrow's buffer: no Python copy of every document's bytes
            width = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
            offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[
                chunk.offset : chunk.offset + len(chunk) + 1
            ]
            data = memoryview(chunk.buffers()[2] or b"")
            valid = chunk.is_valid().to_numpy(zero_copy_only=False)
            digests += [
                hashlib.sha256(data[start:end]).hexdigest() if ok else None
                for start, end, ok in zip(
                    offsets[:-1].tolist(), offsets[1:].tolist(), valid.tolist(), strict=True
                )
            ]
        return _ok(pd.Series(digests, index=content.index, dtype="string"))

    return Rule("SHA-256 of the document's bytes (verified again by the target's CHECK)", run)


def derived(title: str, fn: Callable[[Batch], pd.Series]) -> Rule:
    return Rule(title, lambda b, src: _ok(fn(b)))
