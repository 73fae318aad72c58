"""Duplicate-patient matching on simulated clinics: patients/s, precision and recall, blocking's saving.

For each size (default 10,000 and 50,000 original patients, about 10% duplicates on top) the
simulator writes a legacy SQLite clinic to a temporary folder; the bench normalises its patients,
runs :func:`cutover.matching.match_patients` and prints patients/s, candidate pairs, precision and
recall of the merges against the manifest, and blocking recall (true pairs proposed at all).

The reference, measured in the same run: the cost of scoring *all* pairs with the same comparison
code, timed on a random sample of pairs and scaled to n(n-1)/2; the ratio is what blocking saves.
Run manually: ``.venv/bin/python bench/matching_bench.py [sizes…] [--seed N]``. Synthetic data only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from cutover.matching import (
    MatchConfig,
    duplicate_pairs,
    match_patients,
    normalised_patients,
    pair_metrics,
    predicted_pairs,
)
from cutover.matching.compare import compare, score
from cutover.matching.prepare import prepare
from cutover.simulate import AS_OF, simulate

SAMPLE_PAIRS = 500_000


def all_pairs_seconds(patients_frame: pd.DataFrame, n: int, rng: np.random.Generator) -> float:
    """Seconds to score all n(n-1)/2 pairs, extrapolated from a random sample of pairs."""
    prep = prepare(patients_frame)
    left = rng.integers(0, n, SAMPLE_PAIRS)
    right = rng.integers(0, n, SAMPLE_PAIRS)
    keep = left != right
    left, right = np.minimum(left[keep], right[keep]), np.maximum(left[keep], right[keep])
    config = MatchConfig()
    start = time.perf_counter()
    score(compare(prep, left, right, config), config)
    per_pair = (time.perf_counter() - start) / len(left)
    return per_pair * n * (n - 1) / 2


def run(size: int, seed: int, folder: Path) -> None:
    path = folder / f"legacy_{size}.db"
    start = time.perf_counter()
    manifest = simulate(f"sqlite:///{path}", patients=size, seed=seed)
    simulated = time.perf_counter() - start
    start = time.perf_counter()
    patients = normalised_patients(path, today=date.fromisoformat(AS_OF))
    normalised = time.perf_counter() - start
    start = time.perf_counter()
    result = match_patients(patients)
    matched = time.perf_counter() - start
    n = len(patients)
    truth = duplicate_pairs(manifest, patients["legacy_id"])
    metrics = pair_metrics(predicted_pairs(result.survivor), truth)
    proposed = set(zip(result.pairs["left_id"], result.pairs["right_id"], strict=True))
    blocking_recall = len(truth & proposed) / len(truth) if truth else 1.0
    reference = all_pairs_seconds(patients, n, np.random.default_rng(seed))
    print(
        f"{size:>7,} originals, {n:,} rows: match {matched:.2f}s = {n / matched:,.0f} patients/s "
        f"(simulate {simulated:.1f}s, normalise {normalised:.1f}s)\n"
        f"          candidate pairs {len(result.pairs):,} of {n * (n - 1) // 2:,}; blocking recall "
        f"{blocking_recall:.4f}\n"
        f"          precision {metrics.precision:.4f}, recall {metrics.recall:.4f} "
        f"(tp {metrics.true_positives}, fp {metrics.false_positives}, fn {metrics.false_negatives}); "
        f"review {len(result.review)}, clusters {result.clusters}\n"
        f"          reference, scoring all pairs: {reference:,.0f}s estimated; blocked matching is "
        f"{reference / matched:,.0f}x faster"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 50_000])
    parser.add_argument("--seed", type=int, default=4120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="matching_bench_") as folder:
        for size in args.sizes:
            run(size, args.seed, Path(folder))


if __name__ == "__main__":
    main()
