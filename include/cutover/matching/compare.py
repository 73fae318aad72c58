"""Comparison levels of candidate pairs, vectorised; conflicts and vetoes.

Every function takes the prepared patients and two arrays of canonical row positions (``left``,
``right``) and returns one ``int8`` level per pair, an index into
:data:`cutover.matching.config.LEVELS`. Exact comparisons are integer comparisons of codes;
Jaro-Winkler and OSA (edit distance with adjacent swaps) run in ``rapidfuzz``'s C++ code once per
*distinct* pair of values, not per pair of records.

Two kinds of disagreement stop an automatic merge whatever the score:

- a **conflict** (different real SSNs, including one digit apart; female vs male; different name
  suffixes such as Jr and Sr): the records are different people, or one of them is wrong enough
  that a human must decide;
- a **veto** (given names that disagree; birth dates that are neither equal, swapped nor a typo):
  the *person* disagrees even if the *household* agrees. Phone, address, e-mail and family name
  are shared by twins and by a father and son, so their evidence, however strong, must not merge
  two people whose given names or birth dates differ.

Family and given name **swapped** between two records (``SMITH, JOHN`` and ``JOHN, SMITH``: a
clerk typed them into each other's fields) are one level of both comparisons, not a disagreement:
the pair is scored on the swap's evidence and on everything else, and is no veto.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import OSA, JaroWinkler

from cutover.matching.config import COMPARISONS, LEVELS, Comparison, MatchConfig
from cutover.matching.prepare import Prepared

_NO_DATE = np.iinfo(np.int64).min

TYPO_JW = 0.92
"""Jaro-Winkler at or above which two different names are a typo of each other."""
SIMILAR_JW = 0.80
"""Jaro-Winkler at or above which two names are similar (nicknames aside, a weak agreement)."""


def _level(comparison: Comparison, name: str) -> int:
    return LEVELS[comparison].index(name)


def _pairwise(
    values: np.ndarray, codes: np.ndarray, left: np.ndarray, right: np.ndarray, scorer: Any
) -> np.ndarray:
    """``scorer`` over the values of each pair, computed once per distinct (code, code) pair."""
    if len(left) == 0:
        return np.zeros(0, np.float64)
    a, b = codes[left], codes[right]
    width = int(codes.max()) + 2
    packed = (a + 1) * width + (b + 1)
    uniq, inverse = np.unique(packed, return_inverse=True)
    # A record position holding each code, to fetch the value text (equal codes, equal text).
    first = np.full(width, -1, np.int64)
    valid = codes >= 0
    first[codes[valid] + 1] = np.flatnonzero(valid)
    qa = values[first[uniq // width]].tolist()
    qb = values[first[uniq % width]].tolist()
    scores = process.cpdist(qa, qb, scorer=scorer, workers=-1, dtype=np.float64)
    return np.asarray(scores, dtype=np.float64)[inverse.reshape(-1)]


def name_levels(
    comparison: Comparison,
    values: np.ndarray,
    codes: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
) -> np.ndarray:
    """Levels of a name comparison: exact, typo, similar, (initial,) disagree, missing."""
    a, b = codes[left], codes[right]
    out = np.full(len(left), _level(comparison, "missing"), np.int8)
    present = (a >= 0) & (b >= 0)
    exact = present & (a == b)
    out[exact] = _level(comparison, "exact")
    todo = np.flatnonzero(present & ~exact)
    if len(todo) == 0:
        return out
    lo, hi = left[todo], right[todo]
    jw = _pairwise(values, codes, lo, hi, JaroWinkler.similarity)
    osa = _pairwise(values, codes, lo, hi, OSA.distance)
    len_a = np.fromiter((len(v) for v in values[lo].tolist()), np.int64, len(lo))
    len_b = np.fromiter((len(v) for v in values[hi].tolist()), np.int64, len(hi))
    # One edit in a name of three letters or more is a typo ('Amy' / 'Aym' scores only 0.56 JW).
    typo = (jw >= TYPO_JW) | ((osa <= 1) & (np.minimum(len_a, len_b) >= 3))
    similar = ~typo & (jw >= SIMILAR_JW)
    level = np.where(typo, _level(comparison, "typo"), np.where(similar, _level(comparison, "similar"), -1))
    if "initial" in LEVELS[comparison]:
        first_a = np.array([v[:1] for v in values[lo].tolist()], dtype=object)
        first_b = np.array([v[:1] for v in values[hi].tolist()], dtype=object)
        initial = ((len_a == 1) | (len_b == 1)) & (first_a == first_b) & (level < 0)
        level = np.where(initial, _level(comparison, "initial"), level)
    level = np.where(level < 0, _level(comparison, "disagree"), level)
    out[todo] = level.astype(np.int8)
    return out


def middle_levels(prep: Prepared, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Middle names: exact, initial (an initial against a full name with that initial), disagree, missing."""
    a, b = prep.middle_code[left], prep.middle_code[right]
    out = np.full(len(left), _level("middle_name", "missing"), np.int8)
    present = (a >= 0) & (b >= 0)
    out[present & (a == b)] = _level("middle_name", "exact")
    todo = np.flatnonzero(present & (a != b))
    if len(todo):
        va = prep.middle[left[todo]].tolist()
        vb = prep.middle[right[todo]].tolist()
        compatible = np.array(
            [(len(x) == 1 or len(y) == 1) and x[0] == y[0] for x, y in zip(va, vb, strict=True)], bool
        )
        out[todo] = np.where(
            compatible, _level("middle_name", "initial"), _level("middle_name", "disagree")
        ).astype(np.int8)
    return out


def _one_slip(da: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Digit rows that differ in exactly one digit, or by one swap of two adjacent digits."""
    diff = da != db
    count = diff.sum(axis=1)
    one = count == 1
    adjacent = diff[:, :-1] & diff[:, 1:]
    swapped = adjacent & (da[:, :-1] == db[:, 1:]) & (da[:, 1:] == db[:, :-1])
    return one | ((count == 2) & swapped.any(axis=1))


def birth_levels(prep: Prepared, left: np.ndarray, right: np.ndarray, config: MatchConfig) -> np.ndarray:
    """Birth dates: exact, swapped (day and month), typo (one digit, close in time), disagree, missing."""
    da, db = prep.birth_days[left], prep.birth_days[right]
    out = np.full(len(left), _level("birth_date", "missing"), np.int8)
    present = (da != _NO_DATE) & (db != _NO_DATE)
    ga, gb = prep.birth_digits[left], prep.birth_digits[right]
    same_year = (ga[:, :4] == gb[:, :4]).all(axis=1)
    swapped = same_year & (ga[:, 4:6] == gb[:, 6:8]).all(axis=1) & (ga[:, 6:8] == gb[:, 4:6]).all(axis=1)
    typo = _one_slip(ga, gb) & (np.abs(da - db) < config.birth_typo_max_days)
    level = np.select(
        [da == db, swapped, typo],
        [_level("birth_date", "exact"), _level("birth_date", "swapped"), _level("birth_date", "typo")],
        _level("birth_date", "disagree"),
    )
    out[present] = level[present].astype(np.int8)
    return out


def _agree_levels(comparison: Comparison, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    present = (a >= 0) & (b >= 0)
    return np.select(
        [~present, a == b],
        [_level(comparison, "missing"), _level(comparison, "agree")],
        _level(comparison, "disagree"),
    ).astype(np.int8)


def sex_levels(prep: Prepared, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    a = prep.sex_code[left].astype(np.int64)
    b = prep.sex_code[right].astype(np.int64)
    return _agree_levels("sex", np.where(a > 0, a, -1), np.where(b > 0, b, -1))


def ssn_levels(prep: Prepared, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    out = _agree_levels("ssn", prep.ssn_code[left], prep.ssn_code[right])
    disagree = out == _level("ssn", "disagree")
    slip = _one_slip(prep.ssn_digits[left], prep.ssn_digits[right])
    out[disagree & slip] = _level("ssn", "typo")
    return out


def phone_levels(prep: Prepared, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    ha, ma = prep.phone_home_code[left], prep.phone_mobile_code[left]
    hb, mb = prep.phone_home_code[right], prep.phone_mobile_code[right]
    agree = ((ha >= 0) & ((ha == hb) | (ha == mb))) | ((ma >= 0) & ((ma == hb) | (ma == mb)))
    present = ((ha >= 0) | (ma >= 0)) & ((hb >= 0) | (mb >= 0))
    return np.select(
        [agree, present], [_level("phone", "agree"), _level("phone", "disagree")], _level("phone", "missing")
    ).astype(np.int8)


def address_levels(prep: Prepared, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    pa_, pb = prep.postal_code[left], prep.postal_code[right]
    aa, ab = prep.address_code[left], prep.address_code[right]
    postal_ok = (pa_ < 0) | (pb < 0) | (pa_ == pb)
    same = (aa >= 0) & (aa == ab) & postal_ok
    postal = (pa_ >= 0) & (pa_ == pb)
    present = ((aa >= 0) | (pa_ >= 0)) & ((ab >= 0) | (pb >= 0))
    return np.select(
        [same, postal, present],
        [_level("address", "same"), _level("address", "postal"), _level("address", "disagree")],
        _level("address", "missing"),
    ).astype(np.int8)


def _close(texts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Codes (one codebook, ``texts[code]`` its key) that are equal or a typo of each other (the name
    levels' rule), computed once per distinct pair."""
    out = (a >= 0) & (a == b)
    todo = np.flatnonzero((a >= 0) & (b >= 0) & (a != b))
    if len(todo) == 0:
        return out
    pairs = np.unique(np.stack([a[todo], b[todo]], axis=1), axis=0)
    qa, qb = texts[pairs[:, 0]].tolist(), texts[pairs[:, 1]].tolist()
    jw = np.asarray(process.cpdist(qa, qb, scorer=JaroWinkler.similarity, workers=-1, dtype=np.float64))
    osa = np.asarray(process.cpdist(qa, qb, scorer=OSA.distance, workers=-1, dtype=np.float64))
    shortest = np.minimum([len(t) for t in qa], [len(t) for t in qb])
    typo = (jw >= TYPO_JW) | ((osa <= 1) & (shortest >= 3))
    width = int(max(a.max(), b.max())) + 1
    found = np.zeros(width * width, bool)
    found[pairs[typo, 0] * width + pairs[typo, 1]] = True
    out[todo] = found[a[todo] * width + b[todo]]
    return out


def swapped_names(
    prep: Prepared, left: np.ndarray, right: np.ndarray, family: np.ndarray, given: np.ndarray
) -> np.ndarray:
    """Pairs whose family and given names are each other's: crosswise equal or a typo (``SMITH, JOHN``
    against ``JON, SMITH``), where the names compared straight do not agree.

    ``family`` and ``given`` are the straight levels. Family and given keys share one codebook, so
    the crosswise comparison is of codes, with the string metrics once per distinct pair.
    """
    agree = (_level("family_name", "exact"), _level("family_name", "typo"))
    todo = np.flatnonzero(
        ~np.isin(family, agree)
        & (family != _level("family_name", "missing"))
        & (given != _level("given_name", "missing"))
        & (given != _level("given_name", "exact"))
    )
    out = np.zeros(len(left), bool)
    if len(todo) == 0:
        return out
    size = int(max(prep.family_code.max(), prep.given_code.max())) + 1
    texts = np.empty(size, dtype=object)
    for keys, codes in ((prep.family, prep.family_code), (prep.given, prep.given_code)):
        known = codes >= 0
        texts[codes[known]] = keys[known]
    lo, hi = left[todo], right[todo]
    fa, ga, fb, gb = prep.family_code[lo], prep.given_code[lo], prep.family_code[hi], prep.given_code[hi]
    out[todo] = (fa != ga) & _close(texts, fa, gb) & _close(texts, ga, fb)
    return out


def compare(
    prep: Prepared, left: np.ndarray, right: np.ndarray, config: MatchConfig
) -> dict[Comparison, np.ndarray]:
    """The level of every comparison for every pair."""
    family = name_levels("family_name", prep.family, prep.family_code, left, right)
    given = name_levels("given_name", prep.given, prep.given_code, left, right)
    swapped = swapped_names(prep, left, right, family, given)
    family[swapped] = _level("family_name", "swapped")
    given[swapped] = _level("given_name", "swapped")
    return {
        "family_name": family,
        "given_name": given,
        "middle_name": middle_levels(prep, left, right),
        "birth_date": birth_levels(prep, left, right, config),
        "sex": sex_levels(prep, left, right),
        "ssn": ssn_levels(prep, left, right),
        "phone": phone_levels(prep, left, right),
        "address": address_levels(prep, left, right),
        "email": _agree_levels("email", prep.email_code[left], prep.email_code[right]),
    }


def score(levels: dict[Comparison, np.ndarray], config: MatchConfig) -> np.ndarray:
    """Sum of the level weights of each pair (bits of evidence), in a fixed order of comparisons."""
    n = len(next(iter(levels.values()))) if levels else 0
    total = np.zeros(n, np.float64)
    for comparison in COMPARISONS:
        weights = np.asarray(config.weights(comparison), np.float64)
        total += weights[levels[comparison]]
    return total


def conflicts(
    prep: Prepared, levels: dict[Comparison, np.ndarray], left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """Pairs that are clearly two people: different real SSNs, female vs male, different suffixes.

    Suffixes: a father and son (Robert Smith Sr and Robert Smith Jr, or II and III) share the name,
    the address, the phone and often the e-mail, and a clerk who mistypes a birth date can make
    their records score like one person's. The suffix is the one recorded fact that tells them
    apart, so two *different* suffixes are never merged (at most reviewed, when the SSNs agree).
    One side without a suffix is no conflict: clerks leave it out.
    """
    ssn = levels["ssn"]
    sa, sb = prep.suffix_code[left], prep.suffix_code[right]
    return (
        (ssn == _level("ssn", "disagree"))
        | (ssn == _level("ssn", "typo"))
        | (levels["sex"] == _level("sex", "disagree"))
        | ((sa >= 0) & (sb >= 0) & (sa != sb))
    )


def vetoes(levels: dict[Comparison, np.ndarray]) -> np.ndarray:
    """Pairs whose person disagrees (given name or birth date) whatever the household evidence."""
    return (levels["given_name"] == _level("given_name", "disagree")) | (
        levels["birth_date"] == _level("birth_date", "disagree")
    )


def blocked(prep: Prepared, left: np.ndarray, right: np.ndarray, config: MatchConfig) -> np.ndarray:
    """Conflict or veto for arbitrary pairs (the cluster guard checks pairs blocking never proposed)."""
    levels = compare(prep, left, right, config)
    return conflicts(prep, levels, left, right) | vetoes(levels)
