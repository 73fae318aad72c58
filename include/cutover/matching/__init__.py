"""Duplicate-patient matching: find the legacy patients that are one person, and who survives.

Legacy PT systems hold about 10% duplicate patients (misspelled names, middle names written or
not, other phone formats, day and month swapped in the birth date). Before load, every legacy
patient must resolve to exactly one surviving patient; the merges go to the crosswalk.

How pairs are found and decided (:func:`match_patients`):

1. **Blocking** (:mod:`~cutover.matching.blocking`): candidate pairs are the union of blocks:
   same birth date; same birth year with day/month either way round and family initial; Soundex of
   the family name and birth year; Soundex of family and given names; a shared phone; the same SSN;
   the same e-mail. Never all pairs; a block over ``max_block_size`` records is skipped and logged.
2. **Comparison** (:mod:`~cutover.matching.compare`): each pair gets a level per field (names:
   exact/typo/similar/disagree with Jaro-Winkler and OSA from ``rapidfuzz``, or swapped when family
   and given name are each other's, a clerk's slip that is neither a disagreement nor a veto; birth date:
   exact/swapped/typo/disagree; middle name: exact/initial/disagree/missing; sex, SSN, phones,
   address, e-mail), and a score: the sum of fixed Fellegi-Sunter weights log2(m/u)
   (:mod:`~cutover.matching.config`). Deterministic: no training.
3. **Decision**: ``merge`` at or above ``merge_threshold`` when the pair also shares a contact or
   identifier (SSN, a phone, e-mail, address or ZIP: strangers with a common name and the same
   birth date score as high as a duplicate), ``review`` in the band down to ``review_threshold``
   or when uncorroborated, else ``distinct``. A **conflict** (different real SSNs, female vs male,
   different name suffixes such as Jr vs Sr: a father and son share name, address and phone) or a **veto** (given names or birth dates that disagree: the household agrees, the
   person does not, as for twins or a father and son) never merges; such a pair goes to review
   only when its SSNs agree (or are one digit apart) and its score is in the band or above.
4. **Clusters** (:mod:`~cutover.matching.cluster`): merge pairs join transitively, strongest
   first, but never across a conflict or veto between *any* two members (A~B~C is refused if A
   and C conflict, even if blocking never compared them); a refused merge pair goes to review.

Survivorship (which record survives a cluster; :func:`survive_values` for its values):

- the survivor is the record with the **most complete demographics** (:func:`completeness`:
  non-missing names, birth date, known sex, SSN, phones, ZIP, address line, e-mail), then the
  **earliest created** (a missing ``created_at`` last), then the **lowest legacy id** in natural
  order (numeric ids by value): deterministic, and independent of the rows' order;
- each field takes the survivor's value when it has one, else the most recently created member's
  non-null value; the SSN only when all non-null SSNs of the cluster agree; ``created_at`` is the
  cluster's earliest.

Results carry legacy ids, scores and level names, never patient values.

>>> import pandas as pd
>>> match_patients(pd.DataFrame(columns=list(REQUIRED_COLUMNS))).clusters
0
"""

from __future__ import annotations

from cutover.matching.config import (
    BLOCKING_RULES,
    COMPARISONS,
    DEFAULT_M_U,
    LEVELS,
    BlockingRule,
    Comparison,
    MatchConfig,
)
from cutover.matching.match import (
    DECISIONS,
    LEVEL_COLUMNS,
    PAIR_COLUMNS,
    REVIEW_REASONS,
    Decision,
    MatchResult,
    ReviewReason,
    match_patients,
)
from cutover.matching.prepare import COMPLETENESS_FIELDS, REQUIRED_COLUMNS, MatchInputError, completeness
from cutover.matching.survive import survive_values
from cutover.matching.truth import (
    MatchMetrics,
    duplicate_pairs,
    normalised_patients,
    pair_metrics,
    predicted_pairs,
)

__all__ = [
    "BLOCKING_RULES",
    "COMPARISONS",
    "COMPLETENESS_FIELDS",
    "DECISIONS",
    "DEFAULT_M_U",
    "LEVELS",
    "LEVEL_COLUMNS",
    "PAIR_COLUMNS",
    "REQUIRED_COLUMNS",
    "REVIEW_REASONS",
    "BlockingRule",
    "Comparison",
    "Decision",
    "MatchConfig",
    "MatchInputError",
    "MatchMetrics",
    "MatchResult",
    "ReviewReason",
    "completeness",
    "duplicate_pairs",
    "match_patients",
    "normalised_patients",
    "pair_metrics",
    "predicted_pairs",
    "survive_values",
]
