"""Measuring the matcher: normalised patients from a legacy SQLite file, ground-truth pairs, precision and recall.

For tests and ``bench/matching_bench.py`` against the simulator (:func:`cutover.simulate.simulate`),
whose manifest records each injected duplicate as ``{"kind": "duplicate_patient", "legacy_id":
dup, "of": original}``. A *pair* is two legacy ids of one person; predicted pairs are all pairs of
ids with the same survivor.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from cutover.mapping import normalize as nz

Pair = tuple[str, str]


def _ordered(a: str, b: str) -> Pair:
    key_a = (0, int(a), "") if a.isdigit() else (1, 0, a)
    key_b = (0, int(b), "") if b.isdigit() else (1, 0, b)
    return (a, b) if key_a <= key_b else (b, a)


def normalised_patients(legacy_sqlite_path: str | Path, *, today: date | None = None) -> pd.DataFrame:
    """The legacy ``patients`` table normalised as the mapping stage does, in :func:`match_patients` form.

    Rows the mapping would reject (a name without a family or given part, a birth date missing,
    impossible or unparseable) are left out, as the contract says. ``today`` reads two-digit
    birth years (pass the run's logical date; the simulator's is ``cutover.simulate.AS_OF``).
    Invalid optional values (phone, ZIP, SSN, sex) become NA, as the mapping's flags do.
    """
    with sqlite3.connect(f"file:{Path(legacy_sqlite_path)}?mode=ro", uri=True) as conn:
        raw = pd.read_sql_query("SELECT * FROM patients ORDER BY pat_id", conn, dtype=object)
    names = nz.split_person_name(raw["pat_name"])
    birth = nz.parse_date(raw["dob"], role="birth", today=today, created=raw["created"])
    sex = nz.sex_code(raw["sex"]).values.fillna("unknown")
    out = pd.DataFrame(
        {
            "legacy_id": raw["pat_id"].astype(str).astype("string"),
            "family_name": names["family"],
            "given_name": names["given"],
            "middle_name": names["middle"],
            "name_suffix": names["suffix"],
            "birth_date": birth.values,
            "sex": sex,
            "ssn": nz.ssn(raw["ssn"]).values,
            "phone_home": nz.phone_e164(raw["home_phone"]).values,
            "phone_mobile": nz.phone_e164(raw["cell_phone"]).values,
            "postal_code": nz.postal_code(raw["zip"], raw["state"]).values,
            "address_line1": nz.clean_text(raw["addr1"]).values,
            "email": nz.clean_text(raw["email"]).values.str.lower(),
            "home_clinic_legacy_id": nz.null_tokens(raw["clinic_id"].astype("string")).values,
            "created_at": nz.parse_timestamp(raw["created"], today=today).values,
        }
    )
    keep = out["family_name"].notna() & out["given_name"].notna() & out["birth_date"].notna()
    return out[keep].reset_index(drop=True)


def duplicate_pairs(manifest: Mapping[str, Any], ids: Iterable[str] | None = None) -> set[Pair]:
    """The simulator's duplicate pairs (ordered ids), all pairs within each true cluster.

    ``ids``: keep only pairs whose two ids were passed to the matcher (rejected rows were not).

    >>> m = {"defects": [{"kind": "duplicate_patient", "legacy_id": 12, "of": 3}, {"kind": "orphan", "legacy_id": 1}]}
    >>> sorted(duplicate_pairs(m))
    [('3', '12')]
    """
    keep = None if ids is None else {str(i) for i in ids}
    groups: dict[str, set[str]] = {}
    for defect in manifest.get("defects", []):
        if defect.get("kind") != "duplicate_patient":
            continue
        dup, orig = str(defect["legacy_id"]), str(defect["of"])
        if keep is not None and (dup not in keep or orig not in keep):
            continue
        groups.setdefault(orig, {orig}).add(dup)
    pairs: set[Pair] = set()
    for members in groups.values():
        pairs.update(_ordered(a, b) for a, b in combinations(sorted(members), 2))
    return pairs


def predicted_pairs(survivor: pd.Series) -> set[Pair]:
    """All pairs of legacy ids that share a survivor.

    >>> sorted(predicted_pairs(pd.Series({"1": "1", "2": "1", "3": "3"})))
    [('1', '2')]
    """
    frame = pd.DataFrame({"id": survivor.index.astype(str), "survivor": survivor.astype(str).to_numpy()})
    shared = frame[frame["survivor"].duplicated(keep=False)]  # singletons make no pair
    pairs: set[Pair] = set()
    for members in shared.groupby("survivor", sort=False)["id"]:
        pairs.update(_ordered(a, b) for a, b in combinations(members[1].tolist(), 2))
    return pairs


@dataclass(frozen=True)
class MatchMetrics:
    """Pairwise precision and recall of predicted duplicate pairs against the truth."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        truth = self.true_positives + self.false_negatives
        return self.true_positives / truth if truth else 1.0


def pair_metrics(predicted: set[Pair], truth: set[Pair]) -> MatchMetrics:
    """Precision and recall of ``predicted`` pairs against ``truth``.

    >>> m = pair_metrics({("1", "2"), ("3", "4")}, {("1", "2"), ("5", "6")})
    >>> m.precision, m.recall
    (0.5, 0.5)
    """
    return MatchMetrics(
        true_positives=len(predicted & truth),
        false_positives=len(predicted - truth),
        false_negatives=len(truth - predicted),
    )
