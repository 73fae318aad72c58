"""The validation steps of a cutover (extract, mapped and target gates, reconciliation) on a simulated clinic.

Run: ``python -m bench gates`` (never by the tests). ``BENCH_PATIENTS`` (default 10,000 ≈ 1.07M
legacy rows) sets the size, ``BENCH_REPEATS`` (default 3) how often each step is timed,
``BENCH_GATES_STEPS`` (default every step) which steps run, ``BENCH_GATES_DB`` (default
``gates_bench``) the name of the database it creates.

1. The simulator writes a legacy SQLite database; the pipeline extracts, maps and loads it into a
   fresh database ``gates_bench`` on the PostgreSQL server (127.0.0.1:5432 when it answers, else
   the embedded one), constraints set aside and restored as ``pt_cutover`` does into an empty target.
2. Each step runs ``BENCH_REPEATS`` times, each time in a fresh process (as an Airflow task does),
   after its imports: ``extract_gate``, ``mapped_gate`` and ``target_gate`` (:func:`cutover.validation.runner.run_gate`,
   results and data docs written) and ``reconciliation`` (:func:`cutover.reconcile.reconcile`).
   Reported per step: the median wall seconds, the CPU seconds of the process, and its peak
   resident memory (VmHWM), which must not grow with the data.
3. The reference, measured in the same run: ``read_data``, the seconds to read once what the steps
   read, every mapped Parquet part (checksum-verified and decoded) and every loaded target row
   (``COPY … TO STDOUT``). ``vs_read_data`` is a step's median ÷ that: how many bare reads of the
   data a step costs.

Writes ``bench/results/gates.json`` and prints it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

PATIENTS = int(os.environ.get("BENCH_PATIENTS", "10000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
SEED = 17
AS_OF = date(2026, 11, 27)
RUN_ID = "bench__gates"
DATABASE = os.environ.get("BENCH_GATES_DB", "gates_bench")
RESULTS = Path(__file__).parent / "results"
ALL_STEPS = ("extract_gate", "mapped_gate", "target_gate", "reconciliation")
STEPS = tuple(s for s in os.environ.get("BENCH_GATES_STEPS", ",".join(ALL_STEPS)).split(",") if s)


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _server() -> str:
    from bench.pipeline_bench import _server as server

    return server()


def _fresh_db(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlsplit(admin)._replace(path="/" + name).geturl()


def build(legacy_url: str, store_url: str, target_url: str) -> None:
    """Extract, map and load the whole clinic, as ``pt_cutover`` does into an empty target."""
    from cutover import pipeline
    from cutover.loading.bulk import defer_constraints, restore_constraints

    tables = pipeline.migrated_tables()
    pipeline.prepare_target(target_url)
    pipeline.begin_run(target_url, RUN_ID, "bench", {"mode": "big_bang"}, "bench")
    for table in tables:
        pipeline.extract_table(legacy_url, store_url, RUN_ID, table)
        pipeline.map_table(store_url, RUN_ID, table, as_of=AS_OF)
    defer_constraints(target_url, RUN_ID)
    for table in tables:  # parents first
        for batch in pipeline.mapped_batches(store_url, RUN_ID, table):
            pipeline.load_mapped(target_url, store_url, RUN_ID, table, [int(batch)])
    restore_constraints(target_url, RUN_ID)


def read_data(store_url: str, target_url: str) -> float:
    """Seconds to read every mapped part and every target row once: the reference."""
    from cutover import pipeline
    from cutover.staging.parquet import read_manifest, read_part
    from cutover.staging.store import open_store
    from cutover.target import TARGET_TABLES

    started = time.perf_counter()
    store = open_store(store_url)
    for table in pipeline.migrated_tables():
        for part in read_manifest(store, f"runs/{RUN_ID}/mapped/{table}")["parts"]:
            read_part(store, part)
    with psycopg.connect(target_url) as conn:
        for table in TARGET_TABLES:
            with conn.cursor().copy(f'COPY pt."{table}" TO STDOUT') as copy:
                for _ in copy:
                    pass
    return time.perf_counter() - started


def step(name: str, store_url: str, target_url: str, out_dir: str) -> dict[str, float]:
    """One step in this process: its wall and CPU seconds after the imports, and the peak memory."""
    from cutover.reconcile import reconcile
    from cutover.validation.runner import GateFailed, run_gate

    if name != "reconciliation":  # imported before the clock, as a worker has it loaded
        import great_expectations  # noqa: F401

    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    if name == "reconciliation":
        reconcile(target_url, store_url, RUN_ID, max_failure_rate=1.0)
    else:
        # a failed gate is a finding about the simulated clinic's defects: it ran to the end all the same
        with contextlib.suppress(GateFailed):
            run_gate(
                name.removesuffix("_gate"),  # type: ignore[arg-type]
                store_url=store_url,
                run_id=RUN_ID,
                target_url=target_url,
                out_dir=Path(out_dir),
            )
    wall = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": round(wall, 2),
        "cpu_seconds": round(used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime, 2),
        "peak_rss_mb": round(_peak_mb(), 1),
    }


def _child(name: str, store_url: str, target_url: str, work: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.gates_bench", "--step", name, store_url, target_url, str(work / "gx")],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        env={**os.environ, "CUTOVER_HOME": str(work / "home")},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--step":
        print(json.dumps(step(*sys.argv[2:6])))
        return
    from cutover.simulate import simulate

    admin = _server()
    with tempfile.TemporaryDirectory(prefix="cutover-gates-bench-") as tmp:
        work = Path(tmp)
        os.environ["CUTOVER_HOME"] = str(work / "home")
        legacy, store = f"sqlite:///{work / 'legacy.db'}", f"file://{work / 'staging'}"
        print(f"simulating {PATIENTS} patients, extract, map, load …", flush=True)
        rows = sum(simulate(legacy, patients=PATIENTS, seed=SEED)["tables"].values())
        target = _fresh_db(admin, DATABASE)
        build(legacy, store, target)
        reference = statistics.median(read_data(store, target) for _ in range(REPEATS))
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in STEPS}
        for _ in range(REPEATS):  # interleaved, so a busy moment of the machine spreads over the steps
            for name in STEPS:
                runs[name].append(_child(name, store, target, work))
                print(f"  {name}: {runs[name][-1]}", flush=True)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    steps = {
        name: {
            "seconds": statistics.median(r["seconds"] for r in found),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in found),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in found),
            "vs_read_data": round(statistics.median(r["seconds"] for r in found) / reference, 2),
        }
        for name, found in runs.items()
    }
    result: dict[str, Any] = {
        "patients": PATIENTS,
        "legacy_rows": rows,
        "repeats": REPEATS,
        "read_data_seconds": round(reference, 2),
        "steps": steps,
        "validate_seconds": round(sum(s["seconds"] for s in steps.values()), 2),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gates.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
