"""Duplicate-patient matching against the simulator's ground truth: precision and recall of merges.

A simulated clinic of 2,000 original patients (about 10% duplicates on top: typos, middle names,
another phone format, day/month swapped birth dates), on two seeds no other test uses. A predicted
pair is two legacy ids with the same survivor; a true pair is a manifest ``duplicate_patient``
defect whose two rows both passed the mapping (a row with an impossible birth date is rejected
before matching).
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from cutover.matching import (
    duplicate_pairs,
    match_patients,
    normalised_patients,
    pair_metrics,
    predicted_pairs,
    survive_values,
)
from cutover.simulate import AS_OF, simulate

PATIENTS = 2_000


@pytest.mark.parametrize("seed", [4111, 4112])
def test_precision_and_recall_against_the_manifest(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "legacy.db"
    manifest = simulate(f"sqlite:///{path}", patients=PATIENTS, seed=seed)
    patients = normalised_patients(path, today=date.fromisoformat(AS_OF))
    started = time.perf_counter()
    result = match_patients(patients)
    elapsed = time.perf_counter() - started

    truth = duplicate_pairs(manifest, patients["legacy_id"])
    injected = sum(d["kind"] == "duplicate_patient" for d in manifest["defects"])
    assert len(truth) >= 0.9 * injected  # only rows the mapping rejected drop out of the truth
    metrics = pair_metrics(predicted_pairs(result.survivor), truth)
    print(
        f"\nseed {seed}: {len(patients)} patients, {len(truth)} true pairs, {len(result.pairs)} candidate pairs; "
        f"precision {metrics.precision:.4f}, recall {metrics.recall:.4f} "
        f"(tp {metrics.true_positives}, fp {metrics.false_positives}, fn {metrics.false_negatives}); "
        f"review {len(result.review)}; match {elapsed:.2f}s"
    )
    assert metrics.precision >= 0.99
    assert metrics.recall >= 0.95

    # Every true pair was at least proposed by blocking (a miss there is unrecoverable).
    proposed = set(zip(result.pairs["left_id"], result.pairs["right_id"], strict=True))
    assert len(truth - proposed) <= 0.01 * len(truth)
    # The review queue stays a small share of the patients (a human reads it).
    assert len(result.review) <= 0.02 * len(patients)
    # Each cluster becomes one patient with the winning values.
    values = survive_values(patients, result.survivor)
    assert len(values) == result.survivor.nunique() == len(patients) - result.merged
    assert result.merged >= metrics.true_positives // 2  # a cluster of k records is k - 1 merges


def test_swapped_names_in_a_simulated_clinic_are_found(tmp_path: Path) -> None:
    """Copies of patients with family and given name swapped, otherwise identical, added to a clinic:
    each is merged with its original or reviewed against it, and no other merge changes."""
    import pandas as pd

    path = tmp_path / "legacy.db"
    simulate(f"sqlite:///{path}", patients=400, seed=4113)
    patients = normalised_patients(path, today=date.fromisoformat(AS_OF))
    before = predicted_pairs(match_patients(patients).survivor)
    originals = patients[patients["family_name"] != patients["given_name"]].iloc[[5, 50, 150]]
    copies = originals.assign(
        legacy_id=[f"swap{i}" for i in range(len(originals))],
        family_name=originals["given_name"].to_numpy(),
        given_name=originals["family_name"].to_numpy(),
    )
    result = match_patients(pd.concat([patients, copies], ignore_index=True))
    reviewed = {frozenset(p) for p in zip(result.review["left_id"], result.review["right_id"], strict=True)}
    for original, copy in zip(originals["legacy_id"], copies["legacy_id"], strict=True):
        assert result.survivor[original] == result.survivor[copy] or frozenset((original, copy)) in reviewed
    after = {p for p in predicted_pairs(result.survivor) if not any(i.startswith("swap") for i in p)}
    assert after == before
