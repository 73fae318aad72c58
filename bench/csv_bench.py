"""Streaming a legacy CSV extract: is the peak memory bounded, and how fast against Python's ``csv``?

Run: ``python -m bench csv`` (never by the tests). ``BENCH_CSV_SIZES_MB`` (default ``100,1000``)
names the file sizes in MB. For each size a synthetic visits extract is written to a temporary
folder (deleted afterwards, one file at a time): ids, a date, a CPT code, units, two amounts, a
status and a quoted clinical note that often spans lines and holds doubled quotes, commas, ``é``
and U+2028 (about a third of the rows span two or three lines; synthetic values only).

Each file is then read twice, each time by a fresh child process (so that a peak is the read's
own, not the writer's or another read's):

- ``reference``: Python's plain ``csv.reader`` over ``open(path, newline="")``, counting rows and
  holding none: the fastest a streaming Python reader of this file can be;
- ``ours``: :func:`cutover.legacy.csvfile.read_records` (default batches of 10,000 rows: tuples,
  ``None`` for empty fields, line numbers, malformed records), counting rows.

Both must count the same rows (and ours no malformed record): the bench fails loudly otherwise.
Each child reports its peak resident memory (``VmHWM`` in ``/proc/self/status``), its resident
memory after the imports (``base_mb``) and its rows per second. Printed and written to
``bench/results/csv.json``: the peaks per size, the ratio of ours' peak at the largest size to
its peak at the smallest (PASS when at most :data:`PEAK_RATIO_MAX`: memory does not grow with the
file), ours' rows/s against the reference's, and the 1-minute load average before and after each
read (the machine is shared: rows/s are noisy when it is busy, peaks are not).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES_MB = [int(n) for n in os.environ.get("BENCH_CSV_SIZES_MB", "100,1000").split(",") if n]
PEAK_RATIO_MAX = 1.15
RESULTS = Path(__file__).parent / "results"
HEADER = [
    "visit_id",
    "patient_id",
    "clinic_id",
    "provider_id",
    "visit_date",
    "cpt_code",
    "units",
    "charge_amount",
    "paid_amount",
    "status",
    "note",
]
NOTES = [
    "",
    "Pt tolerated tx well.",
    'Pt reports "sharp" pain, 6/10 at rest.\nHEP reviewed and updated.',
    "Knee flexion 95°, ext -5°.\nPlan: progress to step-ups,\nreassess in 2 wks.",
    'Said "I can\'t climb the stairs yet"; gait training, 15 min.',
    "Café-au-lait macule noted.\u2028Referred back to PCP.",
    "",
    "Manual therapy, lumbar; ther-ex 3x10.",
    'Goals: 1) "walk 1 mile" 2) return to work,\r\nfull duty by week 8.',
]
CPT = ["97110", "97140", "97112", "97530", "97161", "97162", "97116"]
STATUS = ["billed", "paid", "denied", "pending"]


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_extract(path: Path, size_mb: int) -> int:
    """A synthetic visits extract of about ``size_mb`` MB; its number of rows."""
    target = size_mb * 1_000_000
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        while out.tell() < target:
            block = []
            for i in range(rows, rows + 10_000):
                charge = 75 + (i * 37) % 400
                block.append(
                    (
                        i + 1,
                        1 + (i * 7919) % 250_000,
                        1 + i % 3,
                        1 + i % 41,
                        f"20{19 + i % 6}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                        CPT[i % len(CPT)],
                        1 + i % 4,
                        f"{charge}.{i % 100:02d}",
                        "" if i % 5 == 0 else f"{charge * 0.8:.2f}",
                        STATUS[i % len(STATUS)],
                        NOTES[i % len(NOTES)],
                    )
                )
            writer.writerows(block)
            rows += len(block)
    return rows


def child(kind: str, path: str) -> dict[str, Any]:
    """Read ``path`` once in this process: rows, malformed records, seconds, peak and base memory."""
    from cutover.legacy.csvfile import CsvFormat, read_records

    base = _status_mb("VmRSS")
    started = time.perf_counter()
    rows = bad = 0
    if kind == "ours":
        with open(path, "rb") as stream:
            for batch in read_records(stream, CsvFormat(), name=Path(path).name):
                rows += len(batch.rows)
                bad += len(batch.malformed)
    else:
        with open(path, newline="", encoding="utf-8") as text:
            reader = csv.reader(text)
            next(reader)
            rows = sum(1 for _ in reader)
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "malformed": bad,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "peak_mb": round(_status_mb("VmHWM"), 1),
        "base_mb": round(base, 1),
    }


def _run(kind: str, path: Path) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-m", "bench.csv_bench", "--child", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def measure(size_mb: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="csv-bench-") as tmp:
        path = Path(tmp) / f"visits_{size_mb}mb.csv"
        started = time.perf_counter()
        written = write_extract(path, size_mb)
        out: dict[str, Any] = {
            "bytes": path.stat().st_size,
            "rows_written": written,
            "write_seconds": round(time.perf_counter() - started, 1),
        }
        print(f"  {size_mb} MB: {written:,} rows written in {out['write_seconds']} s", flush=True)
        for kind in ("reference", "ours"):
            out[kind] = _run(kind, path)
            print(f"  {size_mb} MB {kind}: {out[kind]}", flush=True)
    ours, reference = out["ours"], out["reference"]
    if not ours["rows"] == reference["rows"] == written or ours["malformed"]:
        raise RuntimeError(
            f"{size_mb} MB: rows differ: written {written}, reference {reference['rows']}, "
            f"ours {ours['rows']} (+{ours['malformed']} malformed)"
        )
    out["speed_ratio"] = round(ours["rows_per_s"] / reference["rows_per_s"], 2)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(child(argv[1], argv[2])))
        return {}
    runs = {}
    for size in SIZES_MB:
        print(f"{size} MB …", flush=True)
        runs[size] = measure(size)
    small, large = min(SIZES_MB), max(SIZES_MB)
    ratio = round(runs[large]["ours"]["peak_mb"] / runs[small]["ours"]["peak_mb"], 3)
    verdict = "PASS" if ratio <= PEAK_RATIO_MAX else "FAIL"
    result: dict[str, Any] = {
        "sizes_mb": SIZES_MB,
        "runs": {str(size): run for size, run in runs.items()},
        "peak_ratio": {"large_mb": large, "small_mb": small, "ours": ratio, "max": PEAK_RATIO_MAX},
        "peak_ratio_reference": round(
            runs[large]["reference"]["peak_mb"] / runs[small]["reference"]["peak_mb"], 3
        ),
        "verdict": verdict,
    }
    print(
        f"{'size':>8}{'rows':>12}{'ours MB':>9}{'ref MB':>8}{'ours r/s':>11}{'ref r/s':>11}{'ratio':>7}  load"
    )
    for size, run in runs.items():
        ours, ref = run["ours"], run["reference"]
        loads = f"{ours['load_1min']} / {ref['load_1min']}"
        print(
            f"{size:>6}MB{ours['rows']:>12,}{ours['peak_mb']:>9.0f}{ref['peak_mb']:>8.0f}"
            f"{ours['rows_per_s']:>11,}{ref['rows_per_s']:>11,}{run['speed_ratio']:>7.2f}  {loads}"
        )
    print(f"peak {large} MB / {small} MB (ours): {ratio} (max {PEAK_RATIO_MAX}): {verdict}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "csv.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
