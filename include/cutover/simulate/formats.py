"""Spellings: how a clean value is written, and the messy ways a legacy system wrote it.

The names of the variants (``PHONE_FORMATS``, ``DATE_FORMATS``…) are the manifest's ``format`` detail.

>>> DATE_FORMATS["dd_mon_yyyy"]("2019-03-07"), phone_text(617, 234, 5678, 1, 0)
('07-Mar-2019', '(617) 234-5678')
>>> money_messy(123450, 0), cpt_free_text([("97110", 2), ("97140", 1)], 0)
(('$1,234.50', 'dollar_sign'), '97110x2, 97140 x1')
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np


# Date spellings. The key is the manifest's 'format' detail.
def _us_padded(iso: str) -> str:
    return f"{iso[5:7]}/{iso[8:10]}/{iso[:4]}"


def _us_unpadded(iso: str) -> str:
    return f"{int(iso[5:7])}/{int(iso[8:10])}/{iso[:4]}"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _dd_mon_yyyy(iso: str) -> str:
    return f"{iso[8:10]}-{_MONTHS[int(iso[5:7]) - 1]}-{iso[:4]}"


def _compact(iso: str) -> str:
    return iso[:4] + iso[5:7] + iso[8:10]


def _iso_midnight(iso: str) -> str:
    return iso + " 00:00:00"


DATE_FORMATS = {
    "us_padded": _us_padded,
    "us_unpadded": _us_unpadded,
    "dd_mon_yyyy": _dd_mon_yyyy,
    "compact": _compact,
    "iso_midnight": _iso_midnight,
}
IMPOSSIBLE_DATES = {
    "feb30": lambda iso: f"02/30/{iso[:4]}",
    "zero": lambda iso: "0000-00-00",
    "month13": lambda iso: f"{iso[:4]}-13-45",
}


def phone_text(area: int, exchange: int, line: int, style: int, ext: int) -> str:
    if style == 1:
        return f"({area}) {exchange}-{line:04d}"
    if style == 2:
        return f"{area}.{exchange}.{line:04d}"
    if style == 3:
        return f"{area}{exchange}{line:04d}"
    if style == 4:
        return f"+1 {area} {exchange} {line:04d}"
    if style == 5:
        return f"{area}-{exchange}-{line:04d} x{ext}"
    return f"{area}-{exchange}-{line:04d}"


PHONE_FORMATS = ("clean", "parens", "dots", "digits", "plus_one", "extension")
NAME_FORMATS = ("trailing_spaces", "upper", "lower", "inner_spaces")
MONEY_FORMATS = ("dollar_sign", "whole", "one_decimal", "padded")
NULL_TOKENS = ("N/A", "NULL", "none", "", " ")
SSN_PLACEHOLDERS = ("999999999", "000000000", "123456789", "")


def money_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def money_messy(cents: int, style: int) -> tuple[str, str]:
    """A legacy spelling of an amount; returns (text, format name)."""
    dollars, rest = divmod(cents, 100)
    if style == 1 and rest == 0:
        return str(dollars), "whole"
    if style == 2 and rest % 10 == 0 and rest != 0:
        return f"{dollars}.{rest // 10}", "one_decimal"
    if style in (0, 1, 2):
        return f"${dollars:,}.{rest:02d}", "dollar_sign"
    return f" {dollars}.{rest:02d} ", "padded"


def ascii_letters(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalnum())


def typo(name: str, op: int, position: float, letter: int) -> str:
    """One-letter typo: substitute, delete or transpose a letter after the first."""
    spots = [i for i, c in enumerate(name) if c.isalpha() and i > 0]
    if not spots:
        return name + "e"
    i = spots[int(position * len(spots))]
    if op == 1 and len(name) > 3:
        return name[:i] + name[i + 1 :]
    if op == 2 and i + 1 < len(name) and name[i + 1].isalpha() and name[i + 1] != name[i]:
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    new = "abcdefghijklmnopqrstuvwxyz"[letter]
    if new == name[i].lower():
        new = "abcdefghijklmnopqrstuvwxyz"[(letter + 1) % 26]
    return name[:i] + new + name[i + 1 :]


def name_messy(name: str, style: int) -> str:
    if style == 0:
        return name + "   "
    if style == 1:
        return name.upper()
    if style == 2:
        return name.lower()
    return name.replace(", ", ",  ").replace(" ", "  ", 2)


def cpt_free_text(parts: Sequence[tuple[str, int]], style: int) -> str:
    """``97110x2, 97140 x1`` (style 0) or ``97110 X 2;97530x1`` (style 1)."""
    if style == 0:
        return ", ".join(f"{c}x{u}" if i % 2 == 0 else f"{c} x{u}" for i, (c, u) in enumerate(parts))
    return ";".join(f"{c} X {u}" if i % 2 == 0 else f"{c}x{u}" for i, (c, u) in enumerate(parts))


_MBI_LETTERS = "ACDEFGHJKMNPQRTUVWXY"
_MEMBER_PATTERNS = {
    "Medicare": "NAXNAXNAANN",
    "Medicaid": "LLDDDDDDDDD",
    "Commercial": "LLLDDDDDDDDD",
    "Workers Comp": "WCDDDDDDDD",
    "Auto/PIP": "PIPDDDDDDDD",
    "Tricare": "DDDDDDDDDDD",
    "VA": "DDDDDDDDDD",
    "Self Pay": "DDDDDD",
}


def member_ids(rng: np.random.Generator, payer_types: np.ndarray) -> np.ndarray:
    """Member ids shaped per payer type (Medicare's MBI: 1EG4TE5MK73-like)."""
    out = np.empty(len(payer_types), dtype=object)
    for payer_type, pattern in _MEMBER_PATTERNS.items():
        rows = np.flatnonzero(payer_types == payer_type)
        if not len(rows):
            continue
        chars = np.empty((len(rows), len(pattern)), dtype="<U1")
        for j, p in enumerate(pattern):
            if p == "N":
                chars[:, j] = np.array(list("123456789"))[rng.integers(0, 9, len(rows))]
            elif p == "D":
                chars[:, j] = np.array(list("0123456789"))[rng.integers(0, 10, len(rows))]
            elif p == "A":
                chars[:, j] = np.array(list(_MBI_LETTERS))[rng.integers(0, len(_MBI_LETTERS), len(rows))]
            elif p == "X":
                alnum = _MBI_LETTERS + "0123456789"
                chars[:, j] = np.array(list(alnum))[rng.integers(0, len(alnum), len(rows))]
            elif p == "L":
                chars[:, j] = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ"))[rng.integers(0, 23, len(rows))]
            else:
                chars[:, j] = p
        out[rows] = ["".join(r) for r in chars.tolist()]
    return out
