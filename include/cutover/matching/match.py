"""``match_patients``: candidate pairs, levels, scores, decisions, guarded clusters, survivors."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
import pandas as pd

from cutover.matching.blocking import candidate_pairs
from cutover.matching.cluster import choose_survivors, guarded_clusters
from cutover.matching.compare import compare, conflicts, score, vetoes
from cutover.matching.config import COMPARISONS, LEVELS, Comparison, MatchConfig
from cutover.matching.prepare import prepare

log = logging.getLogger(__name__)

Decision = Literal["merge", "review", "distinct"]
DECISIONS: Final[tuple[Decision, ...]] = get_args(Decision)

ReviewReason = Literal["ambiguous_score", "conflict_same_ssn", "cluster_guard", "uncorroborated"]
"""Why a pair is for a human: a score in the ambiguous band; a high score with the same (or one
digit off) SSN but a conflict or veto; a merge pair the cluster guard refused; a merge score
with no SSN, phone, e-mail, address or ZIP in common (:attr:`MatchConfig.require_corroboration`)."""
REVIEW_REASONS: Final[tuple[ReviewReason, ...]] = get_args(ReviewReason)

LEVEL_COLUMNS: Final[tuple[str, ...]] = tuple(f"{c}_level" for c in COMPARISONS)
"""The per-comparison level columns of :attr:`MatchResult.pairs`: level names, never values."""

PAIR_COLUMNS: Final[tuple[str, ...]] = (
    "left_id",
    "right_id",
    "score",
    "decision",
    "reason",
    "conflict",
    "veto",
    *LEVEL_COLUMNS,
)


@dataclass(frozen=True)
class MatchResult:
    """What :func:`match_patients` found. Ids, scores and level names only: safe for logs and evidence."""

    survivor: pd.Series
    """Indexed by ``legacy_id`` (every input id once, in natural id order): the surviving legacy id,
    the id itself for survivors and singletons."""
    pairs: pd.DataFrame
    """Every candidate pair, ``left_id`` < ``right_id`` in natural order: ``score`` (bits), ``decision``
    (merge/review/distinct), ``reason`` (review pairs only), ``conflict``, ``veto`` and one
    ``<comparison>_level`` column per comparison."""
    review: pd.DataFrame
    """The pairs whose decision is ``review``, highest score first, for a human."""
    clusters: int
    """Clusters of two or more legacy patients (each becomes one patient)."""
    config: MatchConfig

    @property
    def merged(self) -> int:
        """Legacy patients merged into another (input rows minus surviving patients)."""
        return int((self.survivor.index != self.survivor.to_numpy()).sum())


def _corroborated(levels: dict[Comparison, np.ndarray]) -> np.ndarray:
    """An agreement outside name, birth date and sex: SSN, a phone, e-mail, address or ZIP."""
    agree = np.zeros(len(levels["ssn"]), bool)
    for comparison, good in (
        ("ssn", ("agree",)),
        ("phone", ("agree",)),
        ("email", ("agree",)),
        ("address", ("same", "postal")),
    ):
        for level in good:
            agree |= levels[comparison] == LEVELS[comparison].index(level)  # type: ignore[index]
    return agree


def _decide(
    total: np.ndarray, stop: np.ndarray, ssn_same: np.ndarray, corroborated: np.ndarray, config: MatchConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Decision codes (0 merge, 1 review, 2 distinct) and review reason codes (-1 none)."""
    base = np.where(total >= config.merge_threshold, 0, np.where(total >= config.review_threshold, 1, 2))
    alone = (base == 0) & ~corroborated if config.require_corroboration else np.zeros(len(base), bool)
    base = np.where(alone, 1, base)
    # Blocked pairs never merge; one that scores into the band and has the same SSN is a human's call
    # (a mistyped birth date or a married name), any other is two people.
    flagged = stop & (base < 2) & ssn_same
    decision = np.where(stop, np.where(flagged, 1, 2), base)
    reason = np.where(flagged, 1, np.where(~stop & alone, 3, np.where(~stop & (base == 1), 0, -1)))
    return decision, reason


Pair = tuple[str, str]
"""Two legacy ids, in :func:`pair_key` order."""


def pair_key(a: str, b: str) -> Pair:
    """One order for a pair of legacy ids, whichever way round it is named: shorter first, then by text
    (so ``9`` comes before ``10``).

    >>> pair_key("10", "9"), pair_key("9", "10")
    (('9', '10'), ('9', '10'))
    """
    return (a, b) if (len(a), a) <= (len(b), b) else (b, a)


def _decided(
    ids: np.ndarray, left: np.ndarray, right: np.ndarray, decision: np.ndarray, decisions: Mapping[Pair, str]
) -> np.ndarray:
    """``decision`` with a person's decisions on pairs put in place of the scores' (``same``: merge,
    ``different``: never). A decision on a pair the matcher did not compare changes nothing."""
    named = {i for pair in decisions for i in pair}
    decided = decision.copy()
    lefts, rights = ids[left], ids[right]
    touched = np.flatnonzero(np.isin(lefts, list(named)) & np.isin(rights, list(named)))
    for e in touched.tolist():
        verdict = decisions.get(pair_key(str(lefts[e]), str(rights[e])))
        if verdict is not None:
            decided[e] = 0 if verdict == "same" else 2
    return decided


def _categorical(codes: np.ndarray, categories: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=list(categories))


def match_patients(
    patients: pd.DataFrame, *, config: MatchConfig | None = None, decisions: Mapping[Pair, str] | None = None
) -> MatchResult:
    """Find duplicate patients and the survivor of each; see :mod:`cutover.matching` for the rules.
    ``decisions``: a person's verdicts on review pairs (:func:`pair_key` → ``same`` or ``different``),
    which replace the scores' (the cluster guard still refuses a merge that would join conflicting
    records).

    >>> import datetime as dt
    >>> row = dict(family_name="Ng", given_name="Anna", middle_name=None, birth_date=dt.date(1980, 5, 1),
    ...            sex="female", ssn=None, phone_home="+16175550134", phone_mobile=None,
    ...            postal_code="02134", address_line1="1 Main St", email=None, created_at=None)
    >>> df = pd.DataFrame([dict(row, legacy_id="1"), dict(row, legacy_id="2", given_name="Ana")])
    >>> result = match_patients(df)
    >>> result.survivor.to_dict(), result.pairs["decision"].tolist(), result.clusters
    ({'1': '1', '2': '1'}, ['merge'], 1)
    """
    config = config or MatchConfig()
    started = time.perf_counter()
    prep = prepare(patients)
    prepared_at = time.perf_counter()
    left, right = candidate_pairs(prep, config.blocking, config.max_block_size)
    blocked_at = time.perf_counter()
    levels = compare(prep, left, right, config)
    total = score(levels, config)
    conflict = conflicts(prep, levels, left, right)
    veto = vetoes(levels)
    ssn_levels = LEVELS["ssn"]
    ssn_same = (levels["ssn"] == ssn_levels.index("agree")) | (levels["ssn"] == ssn_levels.index("typo"))
    decision, reason = _decide(total, conflict | veto, ssn_same, _corroborated(levels), config)
    if decisions:
        decided = _decided(prep.ids, left, right, decision, decisions)
        reason = np.where(decided != decision, -1, reason)
        decision = decided
    scored_at = time.perf_counter()
    labels, refused = guarded_clusters(prep, left, right, total, decision == 0, config)
    decision = np.where(refused, 1, decision)
    reason = np.where(refused, 2, reason)
    survivor_pos = choose_survivors(prep, labels)

    ids = prep.ids
    survivor = pd.Series(
        ids[survivor_pos],
        index=pd.Index(ids, name="legacy_id", dtype="string"),
        name="survivor",
        dtype="string",
    )
    pairs = pd.DataFrame(
        {
            "left_id": pd.array(ids[left], dtype="string"),
            "right_id": pd.array(ids[right], dtype="string"),
            "score": np.round(total, 4),
            "decision": _categorical(decision, DECISIONS),
            "reason": pd.Categorical.from_codes(reason.astype(np.int64), categories=list(REVIEW_REASONS)),
            "conflict": conflict,
            "veto": veto,
            **{f"{c}_level": _categorical(levels[c], LEVELS[c]) for c in COMPARISONS},
        },
        columns=list(PAIR_COLUMNS),
    )
    review = (
        pairs[pairs["decision"] == "review"]
        .sort_values(["score", "left_id", "right_id"], ascending=[False, True, True], kind="stable")
        .reset_index(drop=True)
    )
    sizes = np.bincount(labels, minlength=len(prep))
    clusters = int((sizes >= 2).sum())
    log.info(
        "matched %d patients: %d candidate pairs, %d merge, %d review, %d clusters, %d merged; "
        "prepare %.2fs, blocking %.2fs, scoring %.2fs, clustering %.2fs",
        len(prep),
        len(pairs),
        int((decision == 0).sum()),
        int((decision == 1).sum()),
        clusters,
        len(prep) - int((sizes > 0).sum()),
        prepared_at - started,
        blocked_at - prepared_at,
        scored_at - blocked_at,
        time.perf_counter() - scored_at,
    )
    return MatchResult(survivor=survivor, pairs=pairs, review=review, clusters=clusters, config=config)
