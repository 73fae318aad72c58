"""The matcher's view of the patients: canonical row order, comparison keys as integer codes.

Rows are put in *canonical order* (legacy ids in natural order: numeric ids by value, then the
others as text) before anything else, so that every later step, and so the result, is the same
whatever order the rows came in. Text fields become comparison keys (case-folded, accents and
punctuation removed) and then integer codes over the distinct keys (``-1`` for missing), so that
exact comparisons of a million pairs are integer comparisons and string metrics run once per
distinct pair of values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cutover.errors import TerminalError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: Final[tuple[str, ...]] = (
    "legacy_id",
    "family_name",
    "given_name",
    "middle_name",
    "birth_date",
    "sex",
    "ssn",
    "phone_home",
    "phone_mobile",
    "postal_code",
    "address_line1",
    "email",
    "created_at",
)
"""Columns :func:`cutover.matching.match_patients` needs (``home_clinic_legacy_id`` and any other
column is carried, not compared; ``name_suffix`` (Jr, Sr, III) is compared when present)."""

COMPLETENESS_FIELDS: Final[tuple[str, ...]] = (
    "family_name",
    "given_name",
    "middle_name",
    "birth_date",
    "sex",
    "ssn",
    "phone_home",
    "phone_mobile",
    "postal_code",
    "address_line1",
    "email",
)
"""Demographic fields counted by :func:`completeness` (``sex`` counts when not ``unknown``)."""

_NO_DATE: Final = np.iinfo(np.int64).min
_NO_TIME: Final = np.iinfo(np.int64).max

_STREET_WORDS: Final[dict[str, str]] = {
    "street": "st",
    "avenue": "ave",
    "av": "ave",
    "road": "rd",
    "drive": "dr",
    "lane": "ln",
    "court": "ct",
    "place": "pl",
    "boulevard": "blvd",
    "circle": "cir",
    "terrace": "ter",
    "parkway": "pkwy",
    "highway": "hwy",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "apartment": "apt",
    "suite": "ste",
}


class MatchInputError(TerminalError):
    """The patients frame breaks the matching contract (missing columns, repeated legacy ids)."""


def natural_order(ids: pd.Series) -> np.ndarray:
    """Positions that sort legacy ids naturally: numeric ids by value first, then the rest as text.

    >>> natural_order(pd.Series(["10", "9", "A2", "100", "09"])).tolist()
    [4, 1, 0, 3, 2]
    """
    text = ids.astype(str).to_numpy(dtype=object)
    numeric = pd.to_numeric(pd.Series(text), errors="coerce").to_numpy(dtype=float)
    is_num = np.array([t.isdigit() for t in text.tolist()], bool) & ~np.isnan(numeric)
    num_key = np.where(is_num, numeric, np.inf)
    # The text breaks ties ("7" and "007"), so the order never depends on the rows' order.
    return np.lexsort((text.astype(str), num_key, ~is_num))


def _text_arrow(s: pd.Series) -> pa.Array:
    arr = pa.array(s.astype(object).where(s.notna(), None).to_numpy(dtype=object), type=pa.large_string())
    return arr


def name_key(s: pd.Series) -> np.ndarray:
    """Comparison key of a name: NFKD, accents dropped, case-folded, letters only ('' when missing).

    >>> name_key(pd.Series(["O'Brien-Smith", "José", None])).tolist()
    ['obriensmith', 'jose', '']
    """
    arr = pc.utf8_normalize(_text_arrow(s), form="NFKD")
    arr = pc.replace_substring_regex(arr, r"\p{M}+", "")
    arr = pc.utf8_lower(arr)
    arr = pc.replace_substring_regex(arr, r"[^\p{L}]+", "")
    return np.asarray(pc.fill_null(arr, "").to_numpy(zero_copy_only=False), dtype=object)


def address_key(s: pd.Series) -> np.ndarray:
    """Comparison key of an address line: lower case, words only, common street words abbreviated.

    >>> address_key(pd.Series(["12  Main Street, Apt. 4", "12 main st apt 4"])).tolist()
    ['12 main st apt 4', '12 main st apt 4']
    """
    arr = pc.utf8_lower(pc.utf8_normalize(_text_arrow(s), form="NFKD"))
    arr = pc.replace_substring_regex(arr, r"\p{M}+", "")
    arr = pc.replace_substring_regex(arr, r"[^\p{L}\p{N}]+", " ")
    arr = pc.utf8_trim_whitespace(arr)
    values = pc.fill_null(arr, "").to_numpy(zero_copy_only=False)
    uniques, inverse = np.unique(values.astype(object), return_inverse=True)
    mapped = np.array(
        [" ".join(_STREET_WORDS.get(w, w) for w in u.split()) for u in uniques.tolist()], dtype=object
    )
    return mapped[inverse.reshape(-1)] if len(values) else np.array([], dtype=object)


def plain_key(s: pd.Series) -> np.ndarray:
    """Trimmed, lower-case text ('' when missing): phones, emails, ZIP codes, SSNs."""
    arr = pc.utf8_lower(pc.utf8_trim_whitespace(_text_arrow(s)))
    return np.asarray(pc.fill_null(arr, "").to_numpy(zero_copy_only=False), dtype=object)


_SOUNDEX_CODES: Final[dict[str, str]] = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}


def soundex(name: str) -> str:
    """American Soundex of a name key ('' for an empty one).

    >>> soundex("robert"), soundex("rupert"), soundex("ashcraft"), soundex("tymczak"), soundex("")
    ('R163', 'R163', 'A261', 'T522', '')
    """
    letters = [c for c in name.lower() if "a" <= c <= "z"]
    if not letters:
        return ""
    first = letters[0]
    out = [first.upper()]
    last = _SOUNDEX_CODES.get(first, "")
    for c in letters[1:]:
        code = _SOUNDEX_CODES.get(c, "")
        if code and code != last:
            out.append(code)
            if len(out) == 4:
                break
        if c not in "hw":  # h and w do not separate two letters of the same code; vowels do
            last = code
    return "".join(out).ljust(4, "0")


def soundex_keys(keys: np.ndarray) -> np.ndarray:
    """:func:`soundex` of each name key, computed once per distinct key."""
    if len(keys) == 0:
        return np.array([], dtype=object)
    uniques, inverse = np.unique(keys, return_inverse=True)
    codes = np.array([soundex(u) for u in uniques.tolist()], dtype=object)
    return codes[inverse.reshape(-1)]


def codes_of(*columns: np.ndarray) -> list[np.ndarray]:
    """Integer codes over the distinct values of several key columns together ('' -> -1).

    One codebook for all the columns, so that codes compare across them (home vs mobile phone).
    """
    if not columns or len(columns[0]) == 0:
        return [np.zeros(0, np.int64) for _ in columns]
    stacked = np.concatenate(columns)
    codes, uniques = pd.factorize(stacked, sort=True)
    codes = codes.astype(np.int64)
    empty = np.flatnonzero(uniques == "")
    if len(empty):
        codes[codes == empty[0]] = -1
    return np.split(codes, len(columns))


def _days(s: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(s, errors="coerce")
    days = stamps.to_numpy(dtype="datetime64[D]", na_value=np.datetime64("NaT"))
    out = days.astype(np.int64)
    out[np.isnat(days)] = _NO_DATE
    return out


def _seconds(s: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(s, errors="coerce")
    secs = stamps.to_numpy(dtype="datetime64[s]", na_value=np.datetime64("NaT"))
    out = secs.astype(np.int64)
    out[np.isnat(secs)] = _NO_TIME
    return out


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) digit matrix of strings of ``width`` digits; other rows are all -1."""
    out = np.full((len(values), width), -1, np.int8)
    ok = np.array([len(v) == width and v.isascii() and v.isdigit() for v in values.tolist()], bool)
    if ok.any():
        joined = "".join(values[ok].tolist()).encode("ascii")
        out[ok] = (np.frombuffer(joined, np.uint8) - ord("0")).reshape(-1, width).astype(np.int8)
    return out


@dataclass(frozen=True)
class Prepared:
    """Comparison keys of the patients, in canonical order (row ``k`` is ``ids[k]``)."""

    ids: np.ndarray
    """Legacy ids (str), in canonical order."""
    order: np.ndarray
    """Positions of the input rows in canonical order (``input.iloc[order]``)."""
    family: np.ndarray
    given: np.ndarray
    middle: np.ndarray
    family_code: np.ndarray
    given_code: np.ndarray
    middle_code: np.ndarray
    suffix_code: np.ndarray
    birth_days: np.ndarray
    """Days since 1970-01-01; ``int64`` minimum when missing."""
    birth_digits: np.ndarray
    """(n, 8) digits of YYYYMMDD; -1 when missing."""
    sex_code: np.ndarray
    """1 female, 2 male, 0 unknown or missing."""
    ssn_code: np.ndarray
    ssn_digits: np.ndarray
    phone_home_code: np.ndarray
    phone_mobile_code: np.ndarray
    postal_code: np.ndarray
    address: np.ndarray
    address_code: np.ndarray
    email_code: np.ndarray
    created: np.ndarray
    """Seconds since the epoch; ``int64`` maximum when missing (sorts last)."""
    completeness: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def completeness(patients: pd.DataFrame) -> pd.Series:
    """How many of :data:`COMPLETENESS_FIELDS` a row holds (``sex`` counts unless ``unknown``).

    >>> df = pd.DataFrame({c: [None, None] for c in COMPLETENESS_FIELDS})
    >>> df.loc[0, ["family_name", "sex"]] = ["Ng", "unknown"]
    >>> completeness(df).tolist()
    [1, 0]
    """
    present = pd.DataFrame(
        {c: patients[c].notna() for c in COMPLETENESS_FIELDS if c in patients.columns}, index=patients.index
    )
    if "sex" in present.columns:
        present["sex"] &= patients["sex"].astype(object).ne("unknown").fillna(False).astype(bool)
    for c in ("family_name", "given_name", "middle_name", "ssn", "email", "address_line1"):
        if c in present.columns:
            present[c] &= patients[c].astype(object).fillna("").astype(str).str.strip().ne("")
    return present.sum(axis=1).astype(np.int64).rename("completeness")


def _clean_ssn(s: pd.Series) -> pd.Series:
    # The contract says placeholders arrive as NA; re-checking costs one pass over the distinct
    # values and keeps a 999999999 that slipped through from becoming "strong evidence".
    from cutover.mapping.normalize import ssn

    return ssn(s.astype(object).where(s.notna(), None)).values


def prepare(patients: pd.DataFrame) -> Prepared:
    """Check the contract and build the comparison keys, in canonical order."""
    missing = [c for c in REQUIRED_COLUMNS if c not in patients.columns]
    if missing:
        raise MatchInputError(f"patients: missing columns {missing}")
    ids = patients["legacy_id"]
    if ids.isna().any():
        raise MatchInputError(f"patients: {int(ids.isna().sum())} rows without a legacy_id")
    ids_text = ids.astype(str)
    repeated = ids_text[ids_text.duplicated(keep=False)]
    if len(repeated):
        first = sorted(set(repeated.tolist()))[:5]
        raise MatchInputError(f"patients: {repeated.nunique()} repeated legacy ids, first {first}")
    order = natural_order(ids_text)
    df = patients.iloc[order].reset_index(drop=True)
    family = name_key(df["family_name"])
    given = name_key(df["given_name"])
    middle = name_key(df["middle_name"])
    suffix = (
        name_key(df["name_suffix"]) if "name_suffix" in df.columns else np.full(len(df), "", dtype=object)
    )
    family_code, given_code, middle_code = codes_of(family, given, middle)
    (suffix_code,) = codes_of(suffix)
    birth_days = _days(df["birth_date"])
    birth_text = np.where(
        birth_days == _NO_DATE,
        "",
        np.datetime_as_string(np.where(birth_days == _NO_DATE, 0, birth_days).astype("datetime64[D]")),
    ).astype(object)
    birth_digits = _digits(np.array([t.replace("-", "") for t in birth_text.tolist()], dtype=object), 8)
    sex = plain_key(df["sex"])
    sex_code = np.select([sex == "female", sex == "male"], [1, 2], 0).astype(np.int8)
    ssn = plain_key(_clean_ssn(df["ssn"]))
    (ssn_code,) = codes_of(ssn)
    ssn_digits = _digits(ssn, 9)
    home_code, mobile_code = codes_of(plain_key(df["phone_home"]), plain_key(df["phone_mobile"]))
    postal = np.array([p[:5] for p in plain_key(df["postal_code"]).tolist()], dtype=object)
    (postal_code,) = codes_of(postal)
    address = address_key(df["address_line1"])
    (address_code,) = codes_of(address)
    (email_code,) = codes_of(plain_key(df["email"]))
    return Prepared(
        ids=ids_text.iloc[order].to_numpy(dtype=object),
        order=order,
        family=family,
        given=given,
        middle=middle,
        family_code=family_code,
        given_code=given_code,
        middle_code=middle_code,
        suffix_code=suffix_code,
        birth_days=birth_days,
        birth_digits=birth_digits,
        sex_code=sex_code,
        ssn_code=ssn_code,
        ssn_digits=ssn_digits,
        phone_home_code=home_code,
        phone_mobile_code=mobile_code,
        postal_code=postal_code,
        address=address,
        address_code=address_code,
        email_code=email_code,
        created=_seconds(df["created_at"]),
        completeness=completeness(df).to_numpy(dtype=np.int64),
    )
