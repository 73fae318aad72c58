"""Load throughput of :func:`cutover.loading.copy.copy_arrow` against psql's ``\\copy`` of the same rows.

Run: ``python -m bench copy`` (never by the tests; 2,000,000 rows, or ``COPY_BENCH_ROWS``). Builds a
visits-shaped Arrow table in memory (bigint and integer ids, two dates, a timestamp, a smallint, a
boolean, a short code and three free-text columns of note-like length, some NULLs; synthetic
values only), writes the same rows as a CSV file and as a binary COPY file, then loads each into
a fresh plain (logged) table, committed, timing the load only:

- ``copy_arrow``: from the Arrow table in this process (encoding included in the time);
- ``psql_csv``: ``psql -c "\\copy ... (FORMAT csv)"`` from the CSV file;
- ``psql_binary``: ``psql -c "\\copy ... (FORMAT binary)"`` from the binary file;
- ``per_row``: the former path (psycopg ``write_row`` per tuple), on a tenth of the rows.

Each is run ``REPEAT`` times and the best is kept (the machine is shared). Prints rows/s and the
ratios copy_arrow/psql_csv and copy_arrow/psql_binary (target ≥ 0.9 against binary), and the
client memory the COPY added; writes ``bench/results/copy.json``. PostgreSQL: the system server
at 127.0.0.1:5432 when it answers, else the embedded one; a scratch database, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from cutover.loading import copy as copy_mod
from cutover.loading.copy import copy_arrow, encode_copy

ROWS = 2_000_000
REPEAT = 3
TARGET_RATIO = 0.9
SCRATCH_DB = "cutover_copy_bench"
SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).parent / "results"

COLUMNS: list[tuple[str, str]] = [
    ("visit_id", "bigint"),
    ("patient_id", "bigint"),
    ("provider_id", "integer"),
    ("visit_date", "date"),
    ("signed_on", "date"),
    ("signed_at", "timestamp"),
    ("units", "smallint"),
    ("billable", "boolean"),
    ("note_type", "text"),
    ("subjective", "text"),
    ("assessment", "text"),
    ("plan", "text"),
]

_NOTE_TEXT = (
    "patient reports decreased pain in lower back after exercise program walking tolerance improved "
    "stairs remain difficult knee flexion extension range of motion strength 4/5 gait training "
    "manual therapy soft tissue mobilization home exercise program reviewed progress toward goals "
    "continue plan of care frequency twice weekly for four weeks tolerated treatment well"
)


def _phrases(rng: np.random.Generator, count: int, mean_words: int) -> pa.Array:
    """A pool of note-like phrases of about ``mean_words`` words (drawn once, reused by many rows)."""
    lengths = rng.integers(mean_words // 2, mean_words * 3 // 2 + 1, count)
    words = np.asarray(_NOTE_TEXT.split(), dtype=object)
    return pa.array([" ".join(words[rng.integers(0, len(words), n)]) for n in lengths])


def _with_nulls(rng: np.random.Generator, values: pa.Array, share: float) -> pa.Array:
    mask = pa.array(rng.random(len(values)) < share)
    return pa.compute.if_else(mask, pa.scalar(None, values.type), values)


def visits_table(rows: int, seed: int = 7) -> pa.Table:
    """A visits-shaped table: realistic widths, some NULLs, vectorised (phrases come from a pool)."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 365 * 30, rows).astype(np.int32) + 7_305  # 1990 … 2019
    pool = {name: _phrases(rng, 5_000, words) for name, words in (("s", 14), ("a", 9), ("p", 7))}
    note_types = pa.array(
        ["daily_note", "initial_evaluation", "progress_report", "re_evaluation", "discharge"]
    )
    pick = lambda n: pa.array(rng.integers(0, n, rows))  # noqa: E731
    arrays = [
        pa.array(np.arange(1, rows + 1, dtype=np.int64)),
        pa.array(rng.integers(1, rows // 20 + 2, rows, dtype=np.int64)),
        pa.array(rng.integers(1, 500, rows, dtype=np.int32)),
        pa.array(days, pa.date32()),
        _with_nulls(rng, pa.array(days + rng.integers(0, 10, rows).astype(np.int32), pa.date32()), 0.05),
        _with_nulls(
            rng, pa.array(days.astype(np.int64) * 86_400_000_000 + 61_200_000_000, pa.timestamp("us")), 0.05
        ),
        pa.array(rng.integers(1, 6, rows, dtype=np.int16)),
        _with_nulls(rng, pa.array(rng.random(rows) < 0.9), 0.02),
        note_types.take(pick(len(note_types))),
        _with_nulls(rng, pool["s"].take(pick(5_000)), 0.03),
        _with_nulls(rng, pool["a"].take(pick(5_000)), 0.03),
        _with_nulls(rng, pool["p"].take(pick(5_000)), 0.1),
    ]
    return pa.table(arrays, names=[name for name, _ in COLUMNS])


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _server_url() -> tuple[str, str]:
    """An admin URL and which server it is: the system PostgreSQL if it answers, else the embedded one."""
    if _answers("127.0.0.1", 5432):
        return SYSTEM_PG, "system 127.0.0.1:5432"
    from cutover.embedded import default_url

    return default_url("target_db"), "embedded (pgserver)"


def _with_db(url: str, name: str) -> str:
    return urlsplit(url)._replace(path="/" + name).geturl()


def _psql() -> str:
    found = shutil.which("psql")
    if found:
        return found
    import pgserver  # the embedded server's wheel carries its client

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql")


def _fresh_table(url: str) -> None:
    cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS visits_copy")
        conn.execute(f"CREATE TABLE visits_copy ({cols})")
        conn.execute("CHECKPOINT")  # each run starts from the same WAL/buffer state


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM visits_copy").fetchone()
    return int(row[0]) if row else 0


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _load_arrow(url: str, table: pa.Table) -> dict[str, float]:
    """copy_arrow, committed; also how far the client's resident memory rose above where it stood
    (the table, and memory the allocators kept from building it) during the load: peak − before."""
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        copy_arrow(cur, "visits_copy", table, [kind for _, kind in COLUMNS])
        conn.commit()
    return {"rss_rise_mb": round((_status_kb("VmHWM") - before) / 1024, 1)}


def _load_per_row(url: str, table: pa.Table) -> dict[str, float]:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        copy_mod._copy_rows(cur, "visits_copy", table, [kind for _, kind in COLUMNS])
        conn.commit()
    return {}


def _load_psql(url: str, path: Path, fmt: str) -> dict[str, float]:
    command = f"\\copy visits_copy FROM '{path}' WITH (FORMAT {fmt})"
    subprocess.run([_psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", command], check=True)
    return {}


def _timed(url: str, rows: int, load: Callable[[], dict[str, float]]) -> tuple[float, dict[str, float]]:
    """One load into a fresh table, timed; checks every row arrived."""
    _fresh_table(url)
    start = time.perf_counter()
    extra = load()
    seconds = time.perf_counter() - start
    loaded = _count(url)
    if loaded != rows:
        raise RuntimeError(f"loaded {loaded} rows, expected {rows}")
    return seconds, extra


def measure(url: str, rows: int, tmp: Path) -> dict[str, dict[str, Any]]:
    """Best of REPEAT rounds per method; the methods take turns within a round, so load spikes
    from other processes on the machine fall on all of them alike."""
    table = visits_table(rows)
    csv_path, bin_path = tmp / "visits.csv", tmp / "visits.bin"
    pacsv.write_csv(table, csv_path, pacsv.WriteOptions(include_header=False))
    bin_path.write_bytes(encode_copy(table, [kind for _, kind in COLUMNS]))
    sample = table.slice(0, max(1, rows // 10))
    methods: dict[str, tuple[int, Callable[[], dict[str, float]]]] = {
        "copy_arrow": (rows, lambda: _load_arrow(url, table)),
        "psql_csv": (rows, lambda: _load_psql(url, csv_path, "csv")),
        "psql_binary": (rows, lambda: _load_psql(url, bin_path, "binary")),
        "per_row": (sample.num_rows, lambda: _load_per_row(url, sample)),
    }
    runs: dict[str, list[tuple[float, dict[str, float]]]] = {name: [] for name in methods}
    for _ in range(REPEAT):
        for name, (count, load) in methods.items():
            runs[name].append(_timed(url, count, load))
    results: dict[str, dict[str, Any]] = {}
    for name, (count, _) in methods.items():
        seconds, extra = min(runs[name], key=lambda run: run[0])
        results[name] = {
            "rows": count,
            "seconds": round(seconds, 3),
            "rows_per_s": round(count / seconds),
            "all_seconds": [round(t, 3) for t, _ in runs[name]],
            **extra,
        }
    results["input"] = {
        "arrow_mb": round(table.nbytes / 2**20, 1),
        "csv_mb": round(csv_path.stat().st_size / 2**20, 1),
        "binary_mb": round(bin_path.stat().st_size / 2**20, 1),
    }
    return results


def main() -> None:
    rows = int(os.environ.get("COPY_BENCH_ROWS", ROWS))
    admin, server = _server_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
        conn.execute(f"CREATE DATABASE {SCRATCH_DB}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = measure(_with_db(admin, SCRATCH_DB), rows, Path(tmp))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
    arrow = results["copy_arrow"]["rows_per_s"]
    ratios = {
        "copy_arrow/psql_csv": round(arrow / results["psql_csv"]["rows_per_s"], 3),
        "copy_arrow/psql_binary": round(arrow / results["psql_binary"]["rows_per_s"], 3),
        "copy_arrow/per_row": round(arrow / results["per_row"]["rows_per_s"], 3),
    }
    for name in ("copy_arrow", "psql_csv", "psql_binary", "per_row"):
        r = results[name]
        print(f"{name:12} {r['rows']:>10,} rows {r['seconds']:>8.2f} s {r['rows_per_s']:>10,} rows/s")
    for name, value in ratios.items():
        print(f"{name:24} {value:.3f}")
    print(f"copy_arrow: client RSS rose by {results['copy_arrow']['rss_rise_mb']} MB")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "copy.json").write_text(
        json.dumps(
            {
                "server": server,
                "cpus": os.cpu_count(),
                "repeat": REPEAT,
                "results": results,
                "ratios": ratios,
                "target_ratio_vs_psql_binary": TARGET_RATIO,
                "meets_target": ratios["copy_arrow/psql_binary"] >= TARGET_RATIO,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
