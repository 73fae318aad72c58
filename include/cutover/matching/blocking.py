"""Blocking: the candidate pairs, as the union of cheap blocks (never all pairs).

Each rule of :data:`cutover.matching.config.BLOCKING_RULES` gives every record zero or more block
keys; two records sharing a key under any rule are a candidate pair. Pairs are generated per block
with array arithmetic (no Python loop over records or pairs), then deduplicated across rules.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cutover.matching.config import BlockingRule
from cutover.matching.prepare import Prepared, soundex_keys

log = logging.getLogger(__name__)


def pairs_within_blocks(rows: np.ndarray, keys: np.ndarray, max_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of ``rows`` that share a key (negative keys are no key); blocks over ``max_size`` skipped.

    Returns ``(left, right)`` with ``left < right``; a row listed twice under one key pairs with
    itself, which is dropped.

    >>> left, right = pairs_within_blocks(np.array([0, 1, 2, 3]), np.array([5, 5, 5, -1]), 10)
    >>> sorted(zip(left.tolist(), right.tolist()))
    [(0, 1), (0, 2), (1, 2)]
    """
    keep = keys >= 0
    rows, keys = rows[keep], keys[keep]
    if len(rows) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    by_key = np.lexsort((rows, keys))
    rows, keys = rows[by_key], keys[by_key]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    oversized = sizes > max_size
    if oversized.any():
        log.warning(
            "blocking: %d blocks over %d records skipped (%d records in them)",
            int(oversized.sum()),
            max_size,
            int(sizes[oversized].sum()),
        )
    usable = np.repeat((sizes >= 2) & ~oversized, sizes)
    ends = np.repeat(starts + sizes, sizes)
    pos = np.arange(len(keys))
    partners = np.where(usable, ends - pos - 1, 0)
    total = int(partners.sum())
    left_pos = np.repeat(pos, partners)
    first_of_run = np.repeat(np.cumsum(partners) - partners, partners)
    right_pos = left_pos + 1 + (np.arange(total) - first_of_run)
    left, right = rows[left_pos], rows[right_pos]
    distinct = left != right
    left, right = left[distinct], right[distinct]
    return np.minimum(left, right), np.maximum(left, right)


def _codes(*parts: np.ndarray) -> np.ndarray:
    """One integer key per row from several key columns; -1 where any part is missing (-1 or '')."""
    frame = pd.DataFrame({str(i): p for i, p in enumerate(parts)})
    missing = np.zeros(len(frame), bool)
    for p in parts:
        missing |= (p == "") if p.dtype == object else (p < 0)
    codes = (
        frame.groupby(list(frame.columns), sort=False, dropna=False)
        .ngroup()
        .to_numpy(dtype=np.int64, copy=True)
    )
    codes[missing] = -1
    return codes


def block_keys(prep: Prepared, rule: BlockingRule) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, keys)`` of one rule: an integer block key per (row, key) entry; -1 means no key."""
    n = len(prep)
    rows = np.arange(n, dtype=np.int64)
    days = prep.birth_days
    has_birth = days != np.iinfo(np.int64).min
    # days since 1970 are negative before 1970, and a negative key is no key: shift them to 0 and up
    birth = np.where(has_birth, days - (days[has_birth].min() if has_birth.any() else 0), -1)
    year = np.where(has_birth, prep.birth_digits[:, :4].astype(np.int64) @ np.array([1000, 100, 10, 1]), -1)
    if rule == "birth_date":
        return rows, birth
    if rule == "birth_date_swapped":
        month = prep.birth_digits[:, 4:6].astype(np.int64) @ np.array([10, 1])
        day = prep.birth_digits[:, 6:8].astype(np.int64) @ np.array([10, 1])
        low = np.where(has_birth, np.minimum(month, day), -1)
        high = np.where(has_birth, np.maximum(month, day), -1)
        initial = np.array([f[:1] for f in prep.family.tolist()], dtype=object)
        return rows, _codes(year, low, high, initial)
    if rule == "family_sound_birth_year":
        return rows, _codes(soundex_keys(prep.family), year)
    if rule == "names_sound":
        return rows, _codes(soundex_keys(prep.family), soundex_keys(prep.given))
    if rule == "phone":
        return np.concatenate([rows, rows]), np.concatenate([prep.phone_home_code, prep.phone_mobile_code])
    if rule == "ssn":
        return rows, prep.ssn_code
    if rule == "email":
        return rows, prep.email_code
    raise ValueError(f"unknown blocking rule {rule}")


def candidate_pairs(
    prep: Prepared, rules: tuple[BlockingRule, ...], max_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The union of the rules' pairs, deduplicated, sorted, as canonical row positions ``left < right``."""
    n = len(prep)
    found: list[np.ndarray] = []
    for rule in rules:
        rows, keys = block_keys(prep, rule)
        left, right = pairs_within_blocks(rows, keys, max_size)
        log.debug("blocking rule %s: %d pairs", rule, len(left))
        found.append(left * n + right)
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    packed = np.unique(np.concatenate(found))
    return packed // max(n, 1), packed % max(n, 1)
