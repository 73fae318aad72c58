"""Matching configuration: blocking rules, comparison levels with fixed m/u probabilities, thresholds.

Every comparison of two patient records falls into one *level* per field (``exact``, ``typo``,
``disagree``, ``missing``…). Each level carries two fixed probabilities, Fellegi-Sunter style:
``m``, how often two records of the **same** person fall into that level, and ``u``, how often two
records of **different** people do. A level's weight is ``log2(m / u)``; a pair's score is the sum
of its levels' weights (``missing`` weighs 0: no evidence either way). The thresholds are in the
same unit, bits of evidence; the prior odds of a match are folded into them.

The m/u values are fixed and documented, not trained: the same input always gives the same
output, and an auditor can recompute any score by hand. ``u`` values are the chance of an
accidental agreement between two random US patients (about 1 in 250 share a family name, 1 in 120
a given name of the same sex, 1 in 25,000 a birth date); ``m`` values describe how registration
clerks make duplicates (one-letter typos, a middle name written or not, another phone format, day
and month swapped). They were checked, not fitted, against the simulator's duplicates (see
``tests/integration/test_matching_truth.py`` and ``bench/matching_bench.py``); revisit them on the
real practice's review sample, in the one config file the thresholds come from.

>>> cfg = MatchConfig()
>>> round(cfg.weight("birth_date", "exact"), 1), cfg.weight("ssn", "missing")
(12.1, 0.0)
>>> cfg.merge_threshold > cfg.review_threshold
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, get_args

Comparison = Literal[
    "family_name",
    "given_name",
    "middle_name",
    "birth_date",
    "sex",
    "ssn",
    "phone",
    "address",
    "email",
]
"""The fields compared for every candidate pair (phone: home and mobile, either way round)."""
COMPARISONS: Final[tuple[Comparison, ...]] = get_args(Comparison)

LEVELS: Final[Mapping[Comparison, tuple[str, ...]]] = MappingProxyType(
    {
        # typo: one edit or one swap of adjacent letters (OSA distance 1), or Jaro-Winkler >= 0.92;
        # similar: Jaro-Winkler >= 0.80; initial: one side is the other's initial only;
        # swapped: family and given name swapped between the records (a clerk typed them into the
        # wrong fields), each equal to the other record's after normalisation.
        "family_name": ("exact", "typo", "similar", "swapped", "disagree", "missing"),
        "given_name": ("exact", "typo", "similar", "initial", "swapped", "disagree", "missing"),
        # initial: an initial on one side, a full name with that initial on the other;
        # missing: either side has none (written or not is the clerk's habit, not evidence).
        "middle_name": ("exact", "initial", "disagree", "missing"),
        # swapped: day and month swapped; typo: one digit of YYYYMMDD wrong or two adjacent digits
        # swapped, and less than ``birth_typo_max_days`` apart (1955 vs 1985 is a father and son).
        "birth_date": ("exact", "swapped", "typo", "disagree", "missing"),
        # missing: either side NA or 'unknown'.
        "sex": ("agree", "disagree", "missing"),
        # typo: one digit wrong or two adjacent digits swapped (still a conflict: never merged).
        "ssn": ("agree", "typo", "disagree", "missing"),
        # agree: any of home/mobile equals any of the other's; disagree: both have one, none shared.
        "phone": ("agree", "disagree", "missing"),
        # same: first address line equal (after normalisation) and same ZIP (or one ZIP missing);
        # postal: same 5-digit ZIP only.
        "address": ("same", "postal", "disagree", "missing"),
        "email": ("agree", "disagree", "missing"),
    }
)
"""The levels of each comparison, from the strongest agreement down; ``missing`` is always last."""

MU = tuple[float, float]

DEFAULT_M_U: Final[Mapping[Comparison, Mapping[str, MU]]] = MappingProxyType(
    {
        "family_name": MappingProxyType(
            {
                "exact": (0.86, 0.004),
                "typo": (0.10, 0.002),
                "similar": (0.02, 0.02),
                # a swap is both names agreeing crosswise: its evidence is counted here, once (the given
                # name's swapped level weighs 0); about 1 in 200 duplicates, and for two different people
                # rarer than sharing both names (it needs a name that is a given and a family name, twice)
                "swapped": (0.005, 0.000001),
                "disagree": (0.015, 0.973999),
            }
        ),
        "given_name": MappingProxyType(
            {
                "exact": (0.86, 0.008),
                "typo": (0.10, 0.002),
                "similar": (0.02, 0.02),
                "initial": (0.01, 0.005),
                "disagree": (0.01, 0.965),
            }
        ),
        "middle_name": MappingProxyType(
            {"exact": (0.45, 0.05), "initial": (0.30, 0.08), "disagree": (0.25, 0.87)}
        ),
        "birth_date": MappingProxyType(
            {
                "exact": (0.88, 0.0002),
                "swapped": (0.05, 0.00003),
                "typo": (0.05, 0.0005),
                "disagree": (0.02, 0.99927),
            }
        ),
        "sex": MappingProxyType({"agree": (0.98, 0.5), "disagree": (0.02, 0.5)}),
        "ssn": MappingProxyType(
            {"agree": (0.98, 0.00001), "typo": (0.01, 0.0001), "disagree": (0.01, 0.99989)}
        ),
        "phone": MappingProxyType({"agree": (0.80, 0.003), "disagree": (0.20, 0.997)}),
        "address": MappingProxyType(
            {"same": (0.70, 0.004), "postal": (0.20, 0.05), "disagree": (0.10, 0.946)}
        ),
        "email": MappingProxyType({"agree": (0.90, 0.002), "disagree": (0.10, 0.998)}),
    }
)
"""Fixed (m, u) per comparison and level; ``missing`` and the given name's ``swapped`` are not listed
(weight 0: a swap's evidence is the family name's)."""

BlockingRule = Literal[
    "birth_date",
    "birth_date_swapped",
    "family_sound_birth_year",
    "names_sound",
    "phone",
    "ssn",
    "email",
]
"""Ways to find candidate pairs; a pair is compared when any rule puts both records in one block.

- ``birth_date``: same birth date.
- ``birth_date_swapped``: same birth year, the same {day, month} either way round, same first
  letter of the family name (finds day/month swaps even when a typo moved the family name's sound).
- ``family_sound_birth_year``: same Soundex code of the family name and same birth year.
- ``names_sound``: same Soundex codes of family and given name (finds birth-date typos).
- ``phone``: a home or mobile number in common (either way round).
- ``ssn``, ``email``: the same value.
"""
BLOCKING_RULES: Final[tuple[BlockingRule, ...]] = get_args(BlockingRule)


@dataclass(frozen=True)
class MatchConfig:
    """How duplicate patients are found, scored and decided. Defaults suit a US outpatient practice."""

    merge_threshold: float = 24.0
    """Score (bits of evidence, sum of level weights) at or above which a pair merges automatically,
    unless a conflict or a veto forbids it."""

    review_threshold: float = 12.0
    """Lower bound of the ambiguous band: pairs scoring in [review_threshold, merge_threshold) go to a
    human for review; below it they are distinct."""

    require_corroboration: bool = True
    """An automatic merge needs, besides a high score, one agreement outside name, birth date and
    sex: the same SSN, a shared phone, the same e-mail, or the same address or ZIP. Two strangers
    with a common name and the same birth date score as high as a duplicate with a typo; what tells
    them apart is a contact in common, so without one the pair goes to review, never to merge."""

    blocking: tuple[BlockingRule, ...] = BLOCKING_RULES
    """The blocking rules whose union gives the candidate pairs; never all pairs."""

    max_block_size: int = 500
    """A block (one key value) with more records than this is skipped and logged: such a key is a
    shared value (a clinic's phone number typed for every walk-in), not evidence, and its pairs
    would grow quadratically. The other rules still find the real duplicates in it."""

    m_u: Mapping[Comparison, Mapping[str, MU]] = field(default_factory=lambda: DEFAULT_M_U)
    """Fixed (m, u) per comparison and level; weight = log2(m / u). ``missing`` weighs 0."""

    birth_typo_max_days: int = 3653
    """Two birth dates one digit apart are a typo only when less than this many days apart (10
    years): beyond that, as for a father (1955) and son (1985), they are different dates."""

    def __post_init__(self) -> None:
        if self.review_threshold > self.merge_threshold:
            raise ValueError("review_threshold must not exceed merge_threshold")
        unknown = set(self.blocking) - set(BLOCKING_RULES)
        if unknown or not self.blocking:
            raise ValueError(f"blocking rules must be a non-empty subset of {BLOCKING_RULES}")
        for comparison in COMPARISONS:
            levels = self.m_u.get(comparison)
            if levels is None:
                raise ValueError(f"m_u has no entry for {comparison}")
            for level, (m, u) in levels.items():
                if level not in LEVELS[comparison] or level == "missing":
                    raise ValueError(f"m_u[{comparison}] has an unknown level {level}")
                if not (0 < m <= 1 and 0 < u <= 1):
                    raise ValueError(f"m_u[{comparison}][{level}] must be probabilities in (0, 1]")

    def weight(self, comparison: Comparison, level: str) -> float:
        """log2(m / u) of one level; 0 for ``missing`` or a level without m/u."""
        mu = self.m_u[comparison].get(level)
        return 0.0 if mu is None else math.log2(mu[0] / mu[1])

    def weights(self, comparison: Comparison) -> tuple[float, ...]:
        """The weights of a comparison's levels, in the order of :data:`LEVELS`."""
        return tuple(self.weight(comparison, level) for level in LEVELS[comparison])
