"""What a legacy column's name and sampled values say, for :mod:`cutover.legacy.profile_draft`.

Two measurements, what they suggest, and a draft's agreement with a written profile, all pure:

- :func:`value_facts`: the share of a column's sampled values that fit each value pattern
  (:data:`PATTERNS`: dates, phones, NPIs, ICD codes, CPT lines, money, person names…). The
  patterns are the mapping's own normalisers (:mod:`cutover.mapping.normalize`) run on the sample,
  so a draft proposes a rule exactly where that rule would take the values; only the patterns no
  normaliser covers (e-mail, US state, time zone, Y/N) are checked here.
- :func:`similarity`: how close a legacy name is to a target name (``rapidfuzz`` over words, after
  the abbreviations of :data:`SYNONYMS` are spelled out: ``dob`` → ``birth date``).
- :func:`field_score` and :func:`choose_rule`: how well a column fits a target field (name plus
  values), and the rule of the mapping library, with its parameters, that reads it.
- :func:`agreement`: how much of a profile a person wrote a draft proposes (the draft's tests hold
  it to a bar on the simulator's database, other naming styles and a WebPT-style CSV delivery).

Facts are counts and shares, never values: they go into the draft's comments.

>>> round(similarity("dob", "birth_date"), 2), round(similarity("cases", "episode"), 2)
(1.0, 1.0)
>>> f = value_facts(["03/07/2019", "2019-03-08", "n/a", None])
>>> f.present, f.shares["date"]
(2, 1.0)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz

from cutover.mapping import codes
from cutover.mapping import normalize as nz
from cutover.target.columns import TargetColumn, target_columns

Pattern = Literal[
    "whole",
    "number",
    "leading_integer",
    "date",
    "datetime",
    "phone",
    "npi",
    "icd",
    "icd_list",
    "cpt",
    "cpt_lines",
    "money",
    "person",
    "word",
    "credentials",
    "flag_yn",
    "ssn",
    "email",
    "state",
    "zip",
    "timezone",
    "sex",
    "measure",
    "binary",
]

PATTERN_WORDS: Final[dict[Pattern, str]] = {
    "whole": "are whole numbers",
    "number": "are numbers",
    "leading_integer": "begin with a whole number",
    "date": "parse as dates",
    "datetime": "parse as date-times",
    "phone": "are valid phone numbers",
    "npi": "are NPIs (10 digits, valid check digit)",
    "icd": "are ICD-10-CM/ICD-9-CM codes",
    "icd_list": "are lists of ICD codes",
    "cpt": "are single CPT/HCPCS codes",
    "cpt_lines": "are CPT/HCPCS lines",
    "money": "are amounts of money",
    "person": "are person names",
    "word": "are single words",
    "credentials": "end with a clinician's credentials",
    "flag_yn": "are Y/N or 1/0 flags",
    "ssn": "are SSNs",
    "email": "are e-mail addresses",
    "state": "are US state codes",
    "zip": "are ZIP codes",
    "timezone": "are IANA time zones",
    "sex": "are sex codes",
    "measure": "name outcome instruments",
    "binary": "are binary (not text)",
}
"""How a draft's comment says what a share of values is."""

LONG_CHARS: Final = 64
"""Values longer than this are free text: no pattern is looked for in them (notes, goals)."""
STRONG: Final = 0.8
"""Share of values from which a pattern is taken as what a column holds."""
TODO: Final = "TODO"
"""What a draft writes where a person has to decide."""


@dataclass(frozen=True)
class ValueFacts:
    """A column's sampled values as counts and shares: no value."""

    sampled: int
    """Rows sampled."""
    present: int
    """Values that are not null nor a null token (``N/A``, ``''``…)."""
    distinct: int
    shares: dict[Pattern, float] = field(default_factory=dict)
    """Pattern → share of the present values that fit it."""
    integral: bool = False
    """Every present value is a whole number within int64 written without a leading zero: read as
    ``int``, it reads back the same (``00123`` would not)."""
    multi_codes: float = 0.0
    """Share of present values holding several codes (ICD lists, CPT lines with units)."""
    date_formats: tuple[str, ...] = ()
    """The ``strptime`` formats the dates are written in, where the built-in ones (ISO, US month
    first…) read fewer of them (``%d.%m.%Y``): the ``formats`` of the date rules."""
    code_like: bool = False
    """Few short distinct values, each repeated: a code list (a status, a vendor's own sex codes)."""

    @property
    def unique(self) -> bool:
        """Every sampled row has a value and no two are alike."""
        return self.sampled > 0 and self.present == self.sampled and self.distinct == self.present

    def share(self, pattern: Pattern) -> float:
        return self.shares.get(pattern, 0.0)

    def strongest(self) -> tuple[Pattern, float] | None:
        """The pattern most values fit, whole numbers and words aside (ties: the earlier in :data:`PATTERNS`)."""
        ranked = sorted(
            ((p, s) for p, s in self.shares.items() if s > 0 and p not in ("word", "number")),
            key=lambda ps: -ps[1],
        )
        return ranked[0] if ranked else None


# --- patterns: one function each, over distinct short values -----------------------------------------
Detector = Callable[[pd.Series], np.ndarray]
_TODAY = date.today


def _bool(s: pd.Series) -> np.ndarray:
    return np.array(s.fillna(False).astype(bool), dtype=bool)


def _whole(u: pd.Series) -> np.ndarray:
    return _bool(u.str.fullmatch(r"[+-]?\d{1,18}"))


def _number(u: pd.Series) -> np.ndarray:
    return pd.to_numeric(u, errors="coerce").notna().to_numpy()


def _date(u: pd.Series) -> np.ndarray:
    # of the numbers, only YYYYMMDD can be a date: ids and amounts are not parsed
    ok = ~_whole(u) | u.str.len().eq(8).to_numpy()
    if ok.any():
        ok[ok] = nz.parse_date(u[ok], role="event", today=_TODAY()).values.notna().to_numpy()
    return ok


DATE_FORMATS: Final = (
    "%d.%m.%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%y", "%d/%m/%Y", "%d/%m/%Y %H:%M",
    "%d-%m-%Y", "%Y.%m.%d", "%Y/%m/%d", "%Y/%m/%d %H:%M",
)  # fmt: skip
"""Formats tried where the built-in ones read few of a column's dates: day first (Europe), year
first with dots or slashes."""


def _written_as(u: pd.Series, read: float) -> tuple[tuple[str, ...], np.ndarray]:
    """The formats of :data:`DATE_FORMATS` that read more of ``u`` than the built-in ones (``read``
    of them), and which values they read; none when they do not."""

    def reads(formats: Sequence[str]) -> np.ndarray:
        return nz.parse_date(u, role="event", today=_TODAY(), formats=formats).values.notna().to_numpy()

    each = {fmt: reads([fmt]).mean() for fmt in DATE_FORMATS}
    chosen = tuple(fmt for fmt in DATE_FORMATS if each[fmt] >= 0.05)
    if not chosen:
        return (), np.zeros(len(u), dtype=bool)
    mask = reads(chosen)
    return (chosen, mask) if mask.mean() > read else ((), np.zeros(len(u), dtype=bool))


def _phone(u: pd.Series) -> np.ndarray:
    digits = u.str.count(r"\d").to_numpy()
    ok = (digits >= 10) & (digits <= 15)
    if ok.any():
        ok[ok] = nz.phone_e164(u[ok]).values.notna().to_numpy()
    return ok


def _npi(u: pd.Series) -> np.ndarray:
    return nz.npi_valid(u).values.notna().to_numpy()


def _icd(u: pd.Series) -> np.ndarray:
    if not u.str.match(r"[A-Za-z]\d").any():
        return np.zeros(len(u), dtype=bool)  # numbers alone (ICD-9-CM's look like any) are not read as codes
    coded = nz.icd10(u)
    return (coded["code"].notna() & coded["reason"].isna()).to_numpy()


def _icd_list(u: pd.Series) -> np.ndarray:
    items = u.str.split(r"\s*[,;]\s*", regex=True).explode()
    items = items[items.fillna("").str.len() > 0]
    if items.empty:
        return np.zeros(len(u), dtype=bool)
    coded = nz.icd10(items.astype(nz.TEXT))
    ok = (coded["code"].notna() & coded["reason"].isna()).groupby(level=0).all()
    return ok.reindex(u.index, fill_value=False).to_numpy(dtype=bool)


@functools.lru_cache(maxsize=2)  # cpt and cpt_lines ask for the same values in turn
def _cpt_rows(values: tuple[str, ...]) -> pd.DataFrame:
    """Per value: whether every code of it is a well-formed PT code, how many codes, the first code."""
    none = pd.Series(pd.NA, index=range(len(values)), dtype=nz.TEXT)
    frame = pd.DataFrame(
        {
            "proc_id": range(len(values)),
            "cpt_text": pd.Series(values, dtype=nz.TEXT),
            "minutes": none,
            "units": none,
            "modifiers": none,
        }
    )
    lines = nz.parse_cpt_lines(frame)
    code = lines["cpt_code"]
    # a code of our PT code table, or one shaped like the range PT bills (9xxxx) or a HCPCS code
    kind = nz.cpt_kind(code)
    assert isinstance(kind, pd.Series)
    known = kind.ne("unknown") | code.str.fullmatch(r"9\d{4}|[A-Z]\d{4}")
    good = code.notna() & lines["reason"].isna() & known.fillna(False).astype(bool)
    per = pd.DataFrame({"proc_id": lines["proc_id"], "good": good, "code": code}).groupby("proc_id")
    rows = per.agg(good=("good", "all"), n=("good", "size"), code=("code", "first"))
    return rows.reindex(range(len(values)))


def _cpt_lines(u: pd.Series) -> np.ndarray:
    return _bool(_cpt_rows(tuple(u))["good"])


def _cpt(u: pd.Series) -> np.ndarray:
    """A single code and nothing else (a charge's code, not a line with units)."""
    rows = _cpt_rows(tuple(u))
    alone = u.str.upper().reset_index(drop=True).eq(rows["code"].astype(nz.TEXT))
    return _bool(rows["good"]) & rows["n"].eq(1).to_numpy() & _bool(alone)


def _money(u: pd.Series) -> np.ndarray:
    return nz.money_cents(u).values.notna().to_numpy()


def _person(u: pd.Series) -> np.ndarray:
    parts = nz.split_person_name(u)
    return (parts["family"].notna() & parts["given"].notna() & parts["reason"].isna()).to_numpy()


def _credentials(u: pd.Series) -> np.ndarray:
    return nz.split_person_name(u, credentials=True)["credential"].notna().to_numpy()


def _ssn(u: pd.Series) -> np.ndarray:
    return (nz.ssn(u).reasons.fillna("") != "ssn_invalid").to_numpy()


def _zip(u: pd.Series) -> np.ndarray:
    return nz.postal_code(u).values.notna().to_numpy()


@functools.cache
def _zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def _timezone(u: pd.Series) -> np.ndarray:
    zones = _zones()
    return np.fromiter((v in zones for v in u), dtype=bool, count=len(u))


def _sex(u: pd.Series) -> np.ndarray:
    return nz.sex_code(u).values.notna().to_numpy()


def _measure(u: pd.Series) -> np.ndarray:
    return nz.outcome_measure(u).values.notna().to_numpy()


def _shape_only(u: pd.Series) -> np.ndarray:
    return np.ones(len(u), dtype=bool)


_LETTER = r"A-Za-z\x{00C0}-\x{024F}"  # Latin letters, accented ones too (RE2 compiles \pL slowly)
_STATES: Final = "|".join(codes.ZIP_FIRST_DIGITS)
_ITEM = r"[A-Za-z]?\d[0-9A-Za-z.]{1,7}"
_CODE = r"(?:.*[^0-9A-Z])?(?:\d{4}[0-9A-Z]|[A-Z]\d{4})(?:\D.*)?"

PATTERNS: Final[tuple[tuple[Pattern, str, Detector], ...]] = (
    ("whole", r"[+-]?\d{1,18}", _shape_only),
    ("number", r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", _number),
    ("leading_integer", r"\d+\s*[^\d\s.,][^\d]*", _shape_only),
    ("date", r".*\d.*", _date),
    ("datetime", r".*\d:\d\d.*", _date),
    ("phone", r"(?i)\+?[\d\s().\-/]+(?:\s*(?:x|ext\.?)\s*\d{1,6})?", _phone),
    ("npi", r"[\d\s\-]{10,14}", _npi),
    ("icd", r"(?:[A-Za-z]\d[0-9A-Za-z]|\d{3}|[VvEe]\d\d)[0-9A-Za-z.]{0,6}", _icd),
    ("icd_list", rf"{_ITEM}(?:\s*[,;]\s*{_ITEM})+", _icd_list),
    ("cpt", rf"(?i){_CODE}", _cpt),
    ("cpt_lines", rf"(?i){_CODE}", _cpt_lines),
    ("money", r".*(?:[$()]|\.\d\d\)?-?$).*", _money),
    ("person", rf"[^\d]*[{_LETTER}.'][ ,]+[{_LETTER}.'][^\d]*", _person),
    ("word", rf"[{_LETTER}][{_LETTER}'.\-]*", _shape_only),
    ("credentials", r"[^\d]*,[^\d]*", _credentials),
    ("flag_yn", r"(?i)y|n|yes|no|t|f|true|false|1|0", _shape_only),  # the flag_yn rule reads 1 as true
    ("ssn", r"\d{3}[- .]?\d{2}[- .]?\d{4}", _ssn),
    ("email", r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}", _shape_only),
    ("state", rf"(?i){_STATES}", _shape_only),
    ("zip", r"\d{3,5}(?:-?\d{4})?", _zip),
    ("timezone", r"[A-Za-z_]+(?:/[A-Za-z_\-+0-9]+)*", _timezone),
    ("sex", r"(?i)[a-z][a-z\- ]{0,13}\.?", _sex),
    ("measure", r"(?i)[a-z][a-z\- ]{1,20}", _measure),
)
"""The value patterns looked for: (pattern, the shape a value must have — a full match of an RE2
expression, checked over the Arrow array first —, the check of the values of that shape: a
normaliser of the mapping)."""
_LETTERED: Final = frozenset(
    {"person", "word", "credentials", "email", "state", "timezone", "sex", "measure"}
)
"""Patterns only text with letters fits (the others need digits, but flags: Y/N and 1/0): a column
without is not looked at."""


def _detect(u: pa.Array, shape: str, check: Detector) -> np.ndarray:
    hit = pc.match_substring_regex(u, f"^(?:{shape})$").to_numpy(zero_copy_only=False).copy()
    if hit.any() and check is not _shape_only:
        hit[hit] = check(pd.Series(u.filter(pa.array(hit)), dtype=nz.TEXT))
    return hit


_MAGIC: Final = (
    b"%PDF",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"PK\x03\x04",
    b"II*\x00",
    b"MM\x00*",
    b"\xd0\xcf\x11\xe0",
)
"""How the files a clinic scans or attaches begin (PDF, PNG, JPEG, GIF, ZIP/Office, TIFF, OLE2/.doc)."""


def _is_binary(value: bytes, declared_binary: bool) -> bool:
    """Bytes that are a file, not text: a file signature, a NUL or control byte; in a column declared
    binary also anything that is not UTF-8 (legacy text stored raw is UTF-8 or cp1252)."""
    if value.startswith(_MAGIC) or re.search(rb"[\x00-\x08\x0e-\x1f]", value):
        return True
    try:
        value.decode("utf-8")
        return False
    except UnicodeDecodeError:
        pass
    if declared_binary:
        return True
    try:
        value.decode("cp1252")
    except UnicodeDecodeError:
        return True
    return False


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("cp1252", errors="replace")
    return str(value)


def value_facts(values: Sequence[object], *, binary_column: bool = False) -> ValueFacts:
    """Counts and pattern shares of one column's sampled values (``None`` for SQL NULL).

    ``binary_column``: the catalog declares a binary type. Most values being files (not text) make
    the column ``binary`` (and nothing else). Patterns are looked for once per distinct value, in
    values up to :data:`LONG_CHARS` characters.

    >>> f = value_facts(["GONZALEZ, JOSEPH K", "Davis, Joan", "617-202-0116"])
    >>> round(f.share("person"), 2), round(f.share("phone"), 2)
    (0.67, 0.33)
    """
    sampled = len(values)
    raw = [v for v in values if v is not None]
    binary = sum(
        1
        for v in raw
        if isinstance(v, bytes | bytearray | memoryview) and _is_binary(bytes(v), binary_column)
    )
    if raw and binary * 2 > len(raw):
        distinct = len({v if isinstance(v, bytes) else _text(v).encode() for v in raw})
        return ValueFacts(sampled, len(raw), distinct, {"binary": binary / len(raw)})
    series = nz.null_tokens(pd.Series([_text(v) for v in raw], dtype=object)).values.dropna()
    present = len(series)
    if not present:
        return ValueFacts(sampled, 0, 0)
    counts = series.value_counts(sort=False)
    distinct = pa.array(counts.index.astype(str), pa.large_string())
    weights = counts.to_numpy(dtype=np.int64)
    lengths = pc.utf8_length(distinct).to_numpy(zero_copy_only=False)
    short = lengths <= LONG_CHARS
    u = distinct.filter(pa.array(short))
    w = weights[short]
    shares: dict[Pattern, float] = {}
    masks: dict[Pattern, np.ndarray] = {}
    if len(u):
        has = {
            "digit": pc.any(pc.match_substring_regex(u, r"\d")).as_py(),
            "letter": pc.any(pc.match_substring_regex(u, "[A-Za-z]")).as_py(),
        }
        for pattern, shape, check in PATTERNS:
            needs = "letter" if pattern in _LETTERED else "digit"
            looked = has[needs] or pattern == "flag_yn"
            masks[pattern] = _detect(u, shape, check) if looked else np.zeros(len(u), dtype=bool)
            share = float(w[masks[pattern]].sum()) / present
            if share:
                shares[pattern] = share
    lettered = pc.match_substring_regex(u, "^[A-Za-z]").to_numpy(zero_copy_only=False)
    # numeric ICD-9-CM codes look like any number: a column of codes has letters (ICD-10-CM) too
    if shares.get("icd") and float(w[masks["icd"] & lettered].sum()) / present < 0.5 * shares["icd"]:
        shares.pop("icd")
    date_formats: tuple[str, ...] = ()
    dated = pc.match_substring_regex(u, r"^\d{1,4}[./-]\d{1,2}[./-]\d{2,4}").to_numpy(zero_copy_only=False)
    if dated.any() and shares.get("date", 0.0) < STRONG:
        values = pd.Series(u.filter(pa.array(dated)), dtype=nz.TEXT)
        read = float(w[dated & masks["date"]].sum()) / float(w[dated].sum())
        date_formats, parsed = _written_as(values, read)
        if date_formats:
            hit = np.zeros(len(u), dtype=bool)
            hit[np.flatnonzero(dated)[parsed]] = True
            timed = pc.match_substring_regex(u, r"\d:\d\d").to_numpy(zero_copy_only=False)
            masks["date"], masks["datetime"] = hit, hit & timed
            for pattern in ("date", "datetime"):
                shares[pattern] = float(w[masks[pattern]].sum()) / present
    multi = 0.0
    if len(u):
        several = pc.match_substring_regex(u, r"[,;]|\d\s*[xX*]\s*\d|\(\s*\d+\s*\)").to_numpy(
            zero_copy_only=False
        )
        multi = float(w[several & (masks["icd_list"] | masks["cpt_lines"])].sum()) / present
    if multi and "icd_list" in masks:
        shares["icd_list"] = float(w[masks["icd_list"] | masks["icd"]].sum()) / present
    else:
        shares.pop("icd_list", None)  # a single code is not a list
    integral = (
        shares.get("whole", 0.0) == 1.0
        and len(u) == len(distinct)
        and not pc.any(pc.match_substring_regex(u, r"^[+-]?0\d")).as_py()
    )
    code_like = 0 < len(distinct) <= 30 and present >= 2 * len(distinct) and int(lengths.max()) <= 40
    return ValueFacts(sampled, present, len(distinct), shares, integral, multi, date_formats, code_like)


# --- names -------------------------------------------------------------------------------------------
SYNONYMS: Final[dict[str, str]] = {
    "pat": "patient",
    "pt": "patient",
    "prov": "provider",
    "therapist": "provider",
    "clinician": "provider",
    "phys": "physician",
    "doctor": "physician",
    "ref": "referring",
    "dx": "diagnosis",
    "diag": "diagnosis",
    "dob": "birth date",
    "birthdate": "birth date",
    "zip": "postal code",
    "zipcode": "postal code",
    "cell": "mobile",
    "tz": "timezone",
    "case": "episode",
    "addr": "address line",
    "emerg": "emergency",
    "appt": "appointment",
    "auth": "authorization",
    "cov": "coverage",
    "ins": "coverage",
    "insurance": "coverage",
    "insurer": "payer",
    "carrier": "payer",
    "poc": "plan of care",
    "proc": "procedure",
    "doc": "document",
    "no": "number",
    "num": "number",
    "nbr": "number",
    "eff": "effective",
    "term": "termination",
    "cert": "certified",
    "recert": "recertified",
    "mime": "mime type",
    "amt": "amount",
    "dt": "date",
    "fname": "given name",
    "first": "given",
    "lname": "family name",
    "last": "family",
    "surname": "family name",
    "mname": "middle name",
    "gender": "sex",
    "modified": "updated",
    "freq": "frequency",
    "seq": "sequence",
    "wk": "week",
    "location": "clinic",
    "site": "clinic",
    "encounter": "visit",
    "pmt": "payment",
    "tel": "phone",
    "desc": "description",
    "staff": "provider",
    "fee": "charge",
    "nm": "name",
    "town": "city",
    "st": "state",
    "cd": "code",
    "cred": "credential",
    "min": "minute",
    "mod": "modifier",
    "changed": "updated",
    "opened": "start",
    "closed": "end",
    "chart": "mrn",
    "subscriber": "member",
    "policy": "coverage",
    "street": "address line",
    "from": "start",
    "begin": "start",
    "to": "end",
    "thru": "end",
    "through": "end",
    "med": "medication",
    "prec": "precaution",
    "noted": "recorded",
}
"""Abbreviations and other names legacy systems use → the target's words (one word, singular)."""

_IRREGULAR: Final[dict[str, str]] = {"diagnoses": "diagnosis", "analyses": "analysis", "people": "person"}


def _singular(word: str) -> str:
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "uses")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


@functools.lru_cache(maxsize=65536)
def words(name: str) -> tuple[str, ...]:
    """A name's words, lower case and singular: ``ref_physicians`` → ``('ref', 'physician')``.

    >>> words("PatientDOB"), words("addr1"), words("POCID")
    (('patient', 'dob'), ('addr', '1'), ('poc', 'id'))
    """
    found = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)
    # an acronym run into its id (POCID, NPIID): the id apart
    split = [
        p
        for w in found
        for p in ((w[:-2], w[-2:]) if len(w) >= 4 and w.isupper() and w.endswith("ID") else (w,))
    ]
    return tuple(_singular(w.lower()) for w in split)


def spelled_out(parts: Sequence[str]) -> tuple[str, ...]:
    """Words with the abbreviations of :data:`SYNONYMS` spelled out."""
    return tuple(x for w in parts for x in SYNONYMS.get(w, w).split())


def _close(a: str, b: str) -> float:
    # word order is free (home_phone ~ phone_home); a name that is a part of the other is close, not equal
    return max(fuzz.token_sort_ratio(a, b), 0.85 * fuzz.token_set_ratio(a, b)) / 100


@functools.lru_cache(maxsize=65536)
def similarity(legacy: str, target: str, context: str = "") -> float:
    """0..1: how close a legacy name is to a target name, as written and spelled out.

    ``context`` is the legacy table: a column that repeats it (``clinic_name`` in ``clinics``) is
    compared without it too (``name``).

    >>> round(similarity("clinic_name", "name", "clinics"), 2), round(similarity("cell_phone", "phone_mobile"), 2)
    (1.0, 1.0)
    """
    plain = words(legacy)
    variants = {plain, spelled_out(plain)}
    if context:
        table = set(words(context)) | set(spelled_out(words(context)))
        for v in list(variants):
            rest = v
            while len(rest) > 1 and rest[0] in table:
                rest = rest[1:]
            variants.add(rest)
    goal = " ".join(words(target))
    return max(_close(" ".join(v), goal) for v in variants if v)


# --- a column as the source of a target field ---------------------------------------------------------

_SPECIFIC: tuple[Pattern, ...] = (
    "date", "datetime", "phone", "npi", "icd", "icd_list", "cpt", "cpt_lines", "money", "person",
    "ssn", "email", "state", "zip", "timezone", "sex", "measure", "binary", "flag_yn", "credentials",
)  # fmt: skip
"""Patterns that say what a column is (whole numbers and single words say little)."""
_TELLING: tuple[Pattern, ...] = (
    "date", "phone", "npi", "icd", "icd_list", "cpt_lines", "money", "ssn", "email", "timezone", "binary",
)  # fmt: skip
"""Patterns a field of another kind should not receive."""

_FIELD_PATTERNS: tuple[tuple[str, Pattern], ...] = (
    (r"phone|fax", "phone"),
    (r"npi", "npi"),
    (r"postal|zip", "zip"),
    (r"^state$", "state"),
    (r"email", "email"),
    (r"ssn", "ssn"),
    (r"timezone", "timezone"),
    (r"^sex$|gender", "sex"),
    (r"^(?:family|given|middle)_name$|^name_suffix$", "person"),
    (r"diagnosis_codes$", "icd_list"),
    (r"icd|diagnosis_code$", "icd"),
    (r"cpt", "cpt"),
    (r"instrument", "measure"),
    (r"_cents$", "money"),
)
"""A target field's name → the values it expects (checked before its type)."""
_TYPE_PATTERNS: dict[str, Pattern] = {
    "date": "date",
    "timestamp": "datetime",
    "boolean": "flag_yn",
    "smallint": "whole",
    "integer": "whole",
    "bigint": "whole",
    "numeric": "number",
    "bytea": "binary",
}
NAME_PARTS = {
    "family_name": "family",
    "given_name": "given",
    "middle_name": "middle",
    "name_suffix": "suffix",
}
"""Target fields a whole person name gives: field → ``name_part``'s ``part``."""
ICD_PARTS = {
    "source_code": "source_code",
    "source_system": "source_system",
    "gem_approximate": "gem_approximate",
}
"""Target fields a diagnosis code gives beside the code: field → ``icd``'s ``part``."""
SERVICE_TABLES = frozenset({"visit", "charge", "payment", "outcome_measure", "procedure_line"})
"""Targets whose dates are of care given, charged, paid or measured: ``date`` role ``service``."""
_CODE_FIELD = re.compile(r"(?:status|type|kind|credential|category|class|severity|^sex)$")
"""Fields whose few distinct legacy values are a code table (the ``code`` rule, where no rule of
their own reads them: ``sex`` reads M/F/1/2, not a vendor's 1 female 2 male)."""


def expects(name: str, column: TargetColumn) -> Pattern | None:
    """The values a target field takes: by its name (``phone_home``: phones), else by its type."""
    for pattern, expected in _FIELD_PATTERNS:
        if re.search(pattern, name):
            return expected
    return _TYPE_PATTERNS.get(column.type)


def _share(facts: ValueFacts, expected: Pattern, name: float) -> tuple[float, Pattern]:
    """The share of values that fit what a field expects, and the pattern they fit."""
    alternatives: dict[Pattern, tuple[Pattern, ...]] = {
        "whole": ("whole", "leading_integer"),
        "cpt": ("cpt", "cpt_lines"),
        "icd_list": ("icd_list", "icd"),
        "datetime": ("datetime", "date"),
        "person": ("person", "word") if name >= 0.6 else ("person",),  # a first or last name alone
    }
    return max((facts.share(p), p) for p in alternatives.get(expected, (expected,)))


FIELD_ALIASES: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("allergy", "substance"): ("allergen", "allergy"),
    ("medication", "name"): ("drug", "drug name", "medication"),
    ("medication", "dose_text"): ("dose", "dosage"),
    ("precaution", "kind"): ("code", "type", "kind", "category"),
    ("precaution", "description"): ("text", "description", "note", "comment"),
}
"""(target table, field) → other names legacy systems give its column, where the field's own name
says little of them (a medication's ``name`` is its ``drug``; a precaution's ``kind`` its code, its
``description`` its text): compared as the field's name is."""


def _name_similarity(
    column: str, field_name: str, table: str, aliases: Sequence[str] = ()
) -> tuple[float, str]:
    """The similarity of a column's name to a field's, and the field's name it is closest to when that
    is one of its aliases."""
    name = similarity(column, field_name, table)
    if field_name in NAME_PARTS:
        name = max(name, similarity(column, "name", table))
    said = ""
    for alias in aliases:
        if (close := similarity(column, alias, table)) > name:
            name, said = close, alias
    return name, said


def field_score(
    column: str,
    facts: ValueFacts,
    field_name: str,
    target: TargetColumn,
    table: str,
    aliases: Sequence[str] = (),
) -> tuple[float, str]:
    """(score, why) of a legacy column of ``table`` as the source of a target field (which also goes
    by ``aliases``: :data:`FIELD_ALIASES`): its name's similarity, plus up to 0.6 where its values fit
    what the field expects (less where they fit something else).

    >>> drug = target_columns()["medication"]["name"]
    >>> field_score("drug", value_facts(["Warfarin 5mg"]), "name", drug, "meds", FIELD_ALIASES["medication", "name"])
    (1.0, 'name similarity 1.00 to name (as drug)')
    """
    name, alias = _name_similarity(column, field_name, table, aliases)
    why = [f"name similarity {name:.2f} to {field_name}" + (f" (as {alias})" if alias else "")]
    expected = expects(field_name, target)
    bonus = 0.0
    coded = bool(_CODE_FIELD.search(field_name))
    if facts.present and expected is not None:
        share, fits = _share(facts, expected, name)
        if share >= 0.5:
            bonus = (0.6 if expected in _SPECIFIC else 0.3) * share
            why.append(f"{share:.0%} of {facts.present:,} sampled values {PATTERN_WORDS[fits]}")
        elif share < 0.2 and not (coded and facts.code_like):  # a vendor's own codes (1/2/9 for sex)
            bonus = -0.4
    elif facts.present:
        strong = facts.strongest()
        if strong and strong[0] in _TELLING and strong[1] >= STRONG:
            bonus = -0.3
    if facts.present and coded and bonus <= 0:
        # a status, a type: few values, each repeated
        bonus = 0.2 if facts.code_like else -0.2
        if facts.code_like:
            why.append(f"{facts.distinct} distinct values in {facts.present:,} sampled, a code list")
    if not facts.present:
        why.append(f"no value in {facts.sampled:,} sampled rows")
    return name + bonus, "; ".join(why)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _date_role(field_name: str, target: str) -> str:
    if "birth" in field_name:
        return "birth"
    return "service" if target in SERVICE_TABLES else "event"


def choose_rule(
    facts: ValueFacts, field_name: str, target: TargetColumn, target_table: str
) -> tuple[str, dict[str, Any], str]:
    """The library rule (:data:`cutover.mapping.library.RULES`) and parameters that read a column
    with these values into the field, and why.

    >>> birth = target_columns()["patient"]["birth_date"]
    >>> facts = value_facts(["03/07/1950", "1961-02-01", "07-Mar-1972"])
    >>> field_score("dob", facts, "birth_date", birth, "patients")
    (1.6, 'name similarity 1.00 to birth_date; 100% of 3 sampled values parse as dates')
    >>> choose_rule(facts, "birth_date", birth, "patient")
    ('date', {'role': 'birth'}, 'role birth')
    """
    expected = expects(field_name, target)
    kind = target.type
    if field_name in NAME_PARTS or (field_name == "credential" and facts.share("credentials") >= 0.5):
        part = NAME_PARTS.get(field_name, "credential")
        creds = "credential" in target_columns()[target_table]
        params: dict[str, Any] = {"part": part, "credentials": True} if creds else {"part": part}
        whole = facts.share("person") >= 0.5 or field_name == "credential"
        note = "a whole name split into its parts" if whole else ""
        return (
            "name_part",
            params,
            note + (" (a clinician's: credentials after it)" if whole and creds else ""),
        )
    if field_name in ICD_PARTS:
        return "icd", {"part": ICD_PARTS[field_name]}, "from the diagnosis code"
    written = {"formats": list(facts.date_formats)} if facts.date_formats else {}
    as_written = f"written {' or '.join(facts.date_formats)}" if facts.date_formats else ""
    if kind == "date":
        role = _date_role(field_name, target_table)
        return "date", {"role": role, **written}, _join(f"role {role}", as_written)
    if kind == "timestamp":
        return "timestamp", written, as_written
    if kind == "boolean":
        return (
            ("flag_yn", {}, "")
            if facts.share("flag_yn") >= 0.5
            else (TODO, {}, "no Y/N or 1/0 flag: choose a rule")
        )
    if kind == "bytea":
        return "binary", {}, ""
    if field_name == "sha256":
        return "sha256", {}, "the digest of the document's bytes"
    if kind in ("smallint", "integer", "bigint"):
        if expected == "money" or facts.share("money") >= 0.5:
            return "money", {}, ""
        if facts.share("leading_integer") > facts.share("whole"):
            return "leading_integer", {"kind": kind}, "a number followed by text"
        return "integer", {"kind": kind}, ""
    if kind == "numeric":
        return "score", {}, "scored in its instrument's scale"
    if kind == "text[]":
        return ("icd_list", {}, "") if expected == "icd_list" else (TODO, {}, "a list: choose a rule")
    simple: dict[Pattern, str] = {
        "phone": "phone", "zip": "postal", "state": "upper", "email": "lower", "ssn": "ssn",
        "timezone": "timezone", "sex": "sex", "npi": "npi_digits", "icd": "icd", "cpt": "upper",
        "measure": "measure",
    }  # fmt: skip
    if expected in simple and _share(facts, expected, 1.0)[0] >= 0.5:
        return simple[expected], {}, ""
    if "mime" in field_name:
        return "lower", {}, ""
    if _CODE_FIELD.search(field_name) and facts.code_like:
        reason = "sex_unrecognized" if field_name == "sex" else f"{field_name}_unknown"
        return "code", {"table": TODO, "reason": reason}, "write the code table"
    return "text", {}, ""


# --- a draft against the profile a person wrote ---------------------------------------------------------
def agreement(
    draft: dict[str, Any],
    written: dict[str, Any],
    naming: dict[str, tuple[str, dict[str, str]]] | None = None,
) -> dict[str, Any]:
    """How much of a profile a person wrote (its ``tables``: ``written``) a draft (its YAML) proposes.

    ``naming``: written table → (the draft's name of it, {written column: the draft's name}), where
    the draft reads the data under other names (default: the written table's ``source``, the same
    columns). A field agrees when the draft maps its table to the same target and the field from
    the same first column; keys when equal; parents when the draft holds the relation.

    >>> written = {"sites": {"key": "id", "map": {"to": "clinic", "fields": {"name": {"from": "nm"}}}}}
    >>> drafted = {"sites": {"key": "id", "map": {"to": "clinic", "fields": {"name": {"from": ["nm"]}}}}}
    >>> found = agreement({"tables": drafted}, written)
    >>> found["share"], found["fields"], found["missed"], found["wrong_keys"]
    (1.0, 1, [], {})
    """
    names = naming or {}

    def table(name: str) -> str:
        return names.get(name, (written[name].get("source", name), {}))[0]

    def column(name: str, col: str) -> str:
        return names.get(name, (name, {}))[1].get(col, col)

    tables = draft["tables"]
    expected, matched = [], []
    for name, spec in written.items():
        mapping = spec.get("map") or {}
        for field_name, given in (mapping.get("fields") or {}).items():
            first = given["from"] if isinstance(given["from"], str) else given["from"][0]
            # an explode step's output keeps its name (cpt_code, units…); a legacy column is renamed
            source = first if mapping.get("explode") else column(name, first)
            expected.append((name, field_name))
            proposed = tables.get(table(name), {}).get("map") or {}
            got = ((proposed.get("fields") or {}).get(field_name) or {}).get("from")
            got = got if isinstance(got, str) or got is None else got[0]
            if proposed.get("to") == mapping["to"] and got == source:
                matched.append((name, field_name))
    relations = {
        (table(n), column(n, c), table(p))
        for n, t in written.items()
        for c, p in (t.get("parents") or {}).items()
    }
    proposed_relations = {(n, c, p) for n, t in tables.items() for c, p in (t.get("parents") or {}).items()}
    return {
        "share": len(matched) / len(expected) if expected else 1.0,
        "fields": len(expected),
        "agreed": len(matched),
        "missed": sorted(set(expected) - set(matched)),
        "wrong_keys": {
            n: tables.get(table(n), {}).get("key")
            for n, t in written.items()
            if tables.get(table(n), {}).get("key") != column(n, t["key"])
        },
        "parents": len(relations & proposed_relations) / len(relations) if relations else 1.0,
        "relations": len(relations),
        "extra_parents": sorted(proposed_relations - relations),
    }
