"""Extract + map throughput over every legacy table, and peak memory at two data sizes (≈1M and ≈4M rows).

Run: ``python -m bench transform`` (never by the tests). For each size the simulator writes a
legacy SQLite database (10k and 40k patients); a fresh subprocess then streams every table with
:func:`cutover.legacy.source.read_batches` (50,000 rows a batch, fewer for attachment tables) and
maps each batch with :func:`cutover.mapping.engine.map_batch`, keeping nothing. The subprocess
reports rows, seconds (extract and map apart), rows/s overall and per table, and its peak
resident memory. Memory must not grow with the number of rows: both stages stream bounded
batches, so the ratio peak(4M) / peak(1M) should stay near 1 — that ratio, measured in the same
run, is the figure to watch, not the absolute numbers of one machine.

Prints a table and writes ``bench/results/transform.json``.
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
from typing import Any

SIZES = {"1M": 10_000, "4M": 40_000}
"""Label → simulated patients (≈107 legacy rows a patient)."""
SEED = 31
BATCH_ROWS = 50_000
AS_OF = date(2026, 11, 27)
RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).parents[1]
BOUNDED_RATIO = 1.25
"""A peak-memory ratio above this between the 4M and 1M runs means memory grows with rows."""


def _status_mb(field: str) -> float:
    """A memory field of this process from /proc (``VmHWM`` peak, ``VmRSS`` now), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (VmHWM).

    Not ``getrusage``'s ``ru_maxrss``: Linux carries it across fork and exec, so a child started
    by a parent that just simulated gigabytes would report the parent's peak.
    """
    return _status_mb("VmHWM")


def run_one(legacy: str) -> dict[str, Any]:
    """Extract and map every table of one legacy database, in this process; return the figures."""
    from cutover.legacy.schema import LEGACY_TABLES
    from cutover.legacy.source import read_batches
    from cutover.mapping.engine import map_batch
    from cutover.mapping.specs import SPECS

    # One-off costs (imports, the ICD code sets, libphonenumber's metadata) are paid on a few rows
    # of each table first, so that per-table rates measure rows, not start-up.
    t0 = time.perf_counter()
    for name, table in LEGACY_TABLES.items():
        first = next(read_batches(legacy, name, table.columns, table.key, batch_rows=100), None)
        if first is not None:
            map_batch(SPECS[name], first, as_of=AS_OF)
    warmup = time.perf_counter() - t0
    rss_after_warmup = _status_mb("VmRSS")

    per_table: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for name, table in LEGACY_TABLES.items():
        rows = out_rows = batches = largest = 0
        extract = transform = 0.0
        batches_of = read_batches(legacy, name, table.columns, table.key, batch_rows=BATCH_ROWS)
        while True:
            t = time.perf_counter()
            batch = next(batches_of, None)
            extract += time.perf_counter() - t
            if batch is None:
                break
            t = time.perf_counter()
            mapped = map_batch(SPECS[name], batch, as_of=AS_OF)
            transform += time.perf_counter() - t
            rows += batch.num_rows
            out_rows += mapped.num_rows
            batches += 1
            largest = max(largest, batch.num_rows)
            del batch, mapped  # nothing is kept: memory is one batch and its mapping
        seconds = extract + transform
        per_table[name] = {
            "rows": rows,
            "target_rows": out_rows,
            "batches": batches,
            "largest_batch": largest,
            "extract_s": round(extract, 3),
            "map_s": round(transform, 3),
            "rows_per_s": round(rows / seconds) if seconds else 0,
        }
    seconds = time.perf_counter() - started
    rows = sum(t["rows"] for t in per_table.values())
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "extract_s": round(sum(t["extract_s"] for t in per_table.values()), 2),
        "map_s": round(sum(t["map_s"] for t in per_table.values()), 2),
        "rows_per_s": round(rows / seconds),
        "warmup_s": round(warmup, 2),
        "rss_after_warmup_mb": rss_after_warmup,
        "peak_rss_mb": peak_rss_mb(),
        "tables": per_table,
    }


def _measure(label: str, patients: int, tmp: Path) -> dict[str, Any]:
    from cutover.simulate import simulate

    path = tmp / f"legacy-{label}.db"
    t0 = time.perf_counter()
    manifest = simulate(f"sqlite:///{path}", patients=patients, seed=SEED)
    simulated = time.perf_counter() - t0
    out = subprocess.run(
        [sys.executable, "-m", "bench.transform_bench", "--run", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == sum(manifest["tables"].values()), "every legacy row was read"
    result |= {
        "patients": patients,
        "simulate_s": round(simulated, 1),
        "legacy_db_mb": round(path.stat().st_size / 2**20, 1),
    }
    path.unlink()
    Path(f"{path}.manifest.json").unlink(missing_ok=True)
    return result


def format_results(results: dict[str, dict[str, Any]], ratio: float) -> str:
    labels = list(results)
    head = f"{'table':<16}" + "".join(f"{'rows ' + lb:>12}{'rows/s ' + lb:>13}" for lb in labels)
    lines = [head, "-" * len(head)]
    for name in results[labels[0]]["tables"]:
        lines.append(
            f"{name:<16}"
            + "".join(
                f"{results[lb]['tables'][name]['rows']:>12,}{results[lb]['tables'][name]['rows_per_s']:>13,}"
                for lb in labels
            )
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'all tables':<16}" + "".join(f"{r['rows']:>12,}{r['rows_per_s']:>13,}" for r in results.values())
    )
    for lb, r in results.items():
        lines.append(
            f"{lb}: {r['rows']:,} legacy rows ({r['patients']:,} patients, {r['legacy_db_mb']} MB SQLite) in "
            f"{r['seconds']} s (extract {r['extract_s']} s, map {r['map_s']} s, warm-up {r['warmup_s']} s apart) "
            f"= {r['rows_per_s']:,} rows/s; RSS after warm-up {r['rss_after_warmup_mb']} MB, "
            f"peak {r['peak_rss_mb']} MB"
        )
    verdict = "bounded" if ratio <= BOUNDED_RATIO else "GROWS WITH ROWS"
    lines.append(
        f"peak RSS {labels[-1]} / {labels[0]} = {ratio:.2f} (memory {verdict}; bound {BOUNDED_RATIO})"
    )
    return "\n".join(lines)


def main() -> None:
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, patients in SIZES.items():
            results[label] = _measure(label, patients, Path(tmp))
    first, *_, last = results.values()
    ratio = last["peak_rss_mb"] / first["peak_rss_mb"]
    print(format_results(results, ratio))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transform.json").write_text(
        json.dumps(
            {
                "seed": SEED,
                "batch_rows": BATCH_ROWS,
                "sizes": results,
                "peak_rss_ratio_4m_1m": round(ratio, 3),
                "memory_bounded": ratio <= BOUNDED_RATIO,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"]:
        print(json.dumps(run_one(sys.argv[2])))
    else:
        main()
