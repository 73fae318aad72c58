"""Assessment throughput on a ≈1M-row simulated legacy database (run by hand or `make bench`, never by the tests).

Prints legacy rows/s and checks that the assessment's counts still match the simulator's ground
truth at that size.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path


def main() -> None:
    from cutover.assess import run_assessment, write_report
    from cutover.simulate import simulate

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'legacy.db'}"
        manifest = simulate(url, patients=10_000, seed=7)
        started = time.perf_counter()
        assessment = run_assessment(url)
        write_report(assessment, Path(tmp) / "report")
        seconds = time.perf_counter() - started
    rows = sum(manifest["tables"].values())
    counts = Counter(d["kind"] for d in manifest["defects"])
    found = {s.name: s.count for s in assessment.summaries()}
    print(f"assessed {rows:,} legacy rows in {seconds:.1f} s: {rows / seconds:,.0f} rows/s")
    print(
        "impossible dates found/planted:",
        found["impossible_dates"],
        counts["date_impossible"],
        "; discharge before start:",
        found["discharge_before_start"],
        counts["discharge_before_start"],
    )


if __name__ == "__main__":
    main()
