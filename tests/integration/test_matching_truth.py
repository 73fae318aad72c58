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
