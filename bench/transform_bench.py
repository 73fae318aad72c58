"""Extract + map throughput over every legacy table, and peak memory at two data sizes.

Each size runs in its own process (peak RSS is per process). Memory must not grow with the
number of rows: both stages stream bounded batches, so the ratio of the peaks should stay near 1.
Writes bench/results/transform.json.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

SIZES = {"1M": 10_000, "4M": 40_000}
RESULTS = Path(__file__).parent / "results"


def peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (VmHWM).

    Not ``getrusage``'s ``ru_maxrss``: Linux carries it across fork and exec, so a child started
    by a parent that just simulated gigabytes would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_one(legacy: str) -> dict[str, object]:
    """Extract and map every table of one legacy database (in this process)."""
    from cutover.legacy.schema import LEGACY_TABLES
    from cutover.legacy.source import read_batches
    from cutover.mapping.engine import map_batch
    from cutover.mapping.specs import SPECS

    per_table: dict[str, float] = {}
    rows = 0
    started = time.perf_counter()
    for name, table in LEGACY_TABLES.items():
        t0, n = time.perf_counter(), 0
        for batch in read_batches(legacy, name, table.columns, table.key, batch_rows=50_000):
            map_batch(SPECS[name], batch, as_of=date(2026, 11, 27))
            n += batch.num_rows
        per_table[name] = round(n / max(time.perf_counter() - t0, 1e-9))
        rows += n
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "per_table_rows_per_s": per_table,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    from cutover.simulate import simulate

    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, patients in SIZES.items():
            path = Path(tmp) / f"legacy-{label}.db"
            simulate(f"sqlite:///{path}", patients=patients, seed=31)
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import json, bench.transform_bench as b; print(json.dumps(b.run_one('sqlite:///{path}')))",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[label] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[label]
            print(
                f"{label}: {r['rows']:,} rows in {r['seconds']} s = {r['rows_per_s']:,} rows/s, peak RSS {r['peak_rss_mb']} MB"
            )
    ratio = float(results["4M"]["peak_rss_mb"]) / float(results["1M"]["peak_rss_mb"])  # type: ignore[arg-type]
    print(f"peak RSS 4M / 1M = {ratio:.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transform.json").write_text(
        json.dumps({"sizes": results, "peak_rss_ratio_4m_1m": round(ratio, 3)}, indent=2)
    )


if __name__ == "__main__":
    main()
