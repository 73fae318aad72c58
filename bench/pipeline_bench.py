"""The cutover end to end on ≥1M legacy rows, against two references measured in the same run.

Run: ``python -m bench pipeline`` (``make bench``; never by the tests). ``BENCH_PATIENTS``
(default 10,000 ≈ 1.07M legacy rows) sets the size.

1. The simulator writes a legacy SQLite database.
2. A fresh subprocess runs the pipeline's stages as ``pt_cutover`` does, without Airflow's
   scheduling: **extract** (legacy → zstd Parquet in a local staging folder), **map** (normalise,
   deduplicate, stage the mapped Parquet), **stage** (read back and SHA-256-verify every staged
   part, the check the load makes before it trusts an object), **load** (constraints set aside as
   for a first load, COPY + resolve + upsert + crosswalk one transaction a batch into a fresh target
   database, constraints restored and checked) and **validate** (the extract, mapped and target GX
   gates and the source-to-target reconciliation; the DAG runs the extract gate between extract
   and map, the bench counts it here). It reports rows/s and MB/s (Parquet bytes written or read)
   per stage, and its peak resident memory (VmHWM).
3. *psql \\copy*: the rows our load wrote, exported per table to CSV and to PostgreSQL's binary
   format, then loaded by one ``psql`` process into unconstrained copies of the target tables:
   ``load_vs_psql_copy`` = our load's rows/s ÷ psql's (CSV and binary). A third reference,
   ``csv_into_target_schema``, loads the same CSV files into a fresh database with the real target
   schema: psql then pays for the primary keys, indexes, checks and row-by-row foreign-key checks
   that our load cannot skip, which shows how much of the gap is the schema and how much is ours.
4. *pgloader* (Debian package) migrates the same SQLite database into a scratch database:
   ``end_to_end_vs_pgloader`` = pgloader's wall time ÷ ours (above 1: we are faster), although we also
   map, deduplicate and validate, and pgloader only copies.

Writes ``bench/results/latest.json`` (``rows``, ``stages``, ``load_vs_psql_copy``,
``end_to_end_vs_pgloader``, ``peak_rss_mb`` …) and prints a table.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
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
WORKERS = int(os.environ.get("BENCH_WORKERS", str(os.cpu_count() or 1)))
"""Worker processes for each stage's mapped tasks (the executor's slots); default one per core."""
SEED = 17
AS_OF = date(2026, 11, 27)
RUN_ID = "bench__pipeline"
RESULTS = Path(__file__).parent / "results"
SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _server() -> str:
    if _answers("127.0.0.1", 5432):
        return SYSTEM_PG
    from cutover.embedded import default_url

    return default_url("target_db")


def _with_db(url: str, name: str) -> str:
    return urlsplit(url)._replace(path="/" + name).geturl()


def _fresh_db(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(admin, name)


def _peak_mb(_: Any = None) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _task(job: tuple[str, ...]) -> tuple[int, int, float]:
    """One mapped task of the DAG in a worker process: (rows, bytes, the worker's peak MB)."""
    from cutover import pipeline

    stage, table, legacy_url, store_url, target_url = job[:5]
    if stage == "extract":
        m = pipeline.extract_table(legacy_url, store_url, RUN_ID, table)
        return m["rows"], m["bytes"], _peak_mb()
    if stage == "map":
        m = pipeline.map_table(store_url, RUN_ID, table, as_of=AS_OF)
        return m["rows"], m["bytes"], _peak_mb()
    r = pipeline.load_mapped(target_url, store_url, RUN_ID, table, [int(job[5])])
    return r["rows_in"], 0, _peak_mb()


def _parents(tables: list[str]) -> dict[str, set[str]]:
    """Each table's parent tables among ``tables``: the DAG's load groups wait for exactly these."""
    from cutover.legacy.schema import LEGACY_TABLES

    return {t: {p for _, p in LEGACY_TABLES[t].parents if p != t and p in tables} for t in tables}


def _load_as_the_dag_does(
    pool: Any, tables: list[str], urls: tuple[str, str, str], stages: dict[str, Any], peaks: list[float]
) -> None:
    """Every batch of a table is submitted once all its parent tables are loaded."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from cutover import pipeline

    parents = _parents(tables)
    waiting = {t: pipeline.mapped_batches(urls[1], RUN_ID, t) for t in tables}
    running: dict[Any, str] = {}
    left = {t: len(b) for t, b in waiting.items()}
    done: set[str] = {t for t, n in left.items() if n == 0}
    started = time.perf_counter()
    row = stages["load"]
    while waiting or running:
        for table in [t for t in waiting if parents[t] <= done]:
            for batch in waiting.pop(table):
                running[pool.submit(_task, ("load", table, *urls, str(batch)))] = table
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            table = running.pop(future)
            rows, _, peak = future.result()
            row["rows"] += rows
            peaks.append(peak)
            left[table] -= 1
            if left[table] == 0:
                done.add(table)
    row["seconds"] += time.perf_counter() - started


def child(legacy_url: str, store_url: str, target_url: str, evidence: str) -> dict[str, Any]:
    """Our pipeline's stages; per stage rows, bytes, seconds; peak memory of every process.

    Each stage's mapped tasks (a table to extract or map, a staged batch to load) run on
    ``LOAD_WORKERS`` worker processes, as the DAG's tasks do on an executor with that many slots;
    a table's batches start once its parent tables are loaded, as the DAG's load groups wait
    for their parents' groups (no other barrier).
    """
    os.environ["CUTOVER_HOME"] = evidence
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from cutover import pipeline
    from cutover.loading.bulk import defer_constraints, restore_constraints
    from cutover.staging.parquet import read_manifest, read_part
    from cutover.staging.store import open_store

    tables = pipeline.migrated_tables()
    stages: dict[str, dict[str, float]] = {}
    peaks: list[float] = []
    pipeline.prepare_target(target_url)
    pipeline.begin_run(target_url, RUN_ID, "bench", {"mode": "big_bang"}, "bench")
    pool = ProcessPoolExecutor(WORKERS, mp_context=get_context("spawn"))
    list(
        pool.map(_peak_mb, [None] * WORKERS)
    )  # start the workers before the clock runs, as an executor's are

    def run(stage: str, jobs: list[tuple[str, ...]]) -> None:
        started = time.perf_counter()
        done = list(pool.map(_task, jobs))
        row = stages.setdefault(stage, {"rows": 0, "bytes": 0, "seconds": 0.0})
        row["rows"] += sum(d[0] for d in done)
        row["bytes"] += sum(d[1] for d in done)
        row["seconds"] += time.perf_counter() - started
        peaks.extend(d[2] for d in done)

    urls = (legacy_url, store_url, target_url)
    run("extract", [("extract", t, *urls) for t in tables])
    run("map", [("map", t, *urls) for t in tables])
    store = open_store(store_url)
    started = time.perf_counter()
    rows = nbytes = 0
    for table in tables:
        for part in read_manifest(store, f"runs/{RUN_ID}/mapped/{table}")["parts"]:
            rows += read_part(store, part).num_rows
            nbytes += part["bytes"]
    stages["stage"] = {"rows": rows, "bytes": nbytes, "seconds": time.perf_counter() - started}
    # as pt_cutover does into an empty target: constraints aside, the batches, the constraints back;
    # from a checkpoint, as each psql reference starts (see _psql_seconds)
    with psycopg.connect(target_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    started = time.perf_counter()
    defer_constraints(target_url, RUN_ID)
    stages["load"] = {"rows": 0, "bytes": 0, "seconds": time.perf_counter() - started}
    _load_as_the_dag_does(pool, tables, urls, stages, peaks)
    started = time.perf_counter()
    restore_constraints(target_url, RUN_ID)
    restore_seconds = time.perf_counter() - started
    stages["load"]["seconds"] += restore_seconds
    pool.shutdown()
    stages["load"]["bytes"] = stages["stage"]["bytes"]
    validated: dict[str, Any] = {}
    validate_seconds: dict[str, float] = {}
    started = time.perf_counter()
    try:
        from cutover.validation.runner import GateFailed, run_gate

        for gate in ("extract", "mapped", "target"):
            began = time.perf_counter()
            try:
                report = run_gate(
                    gate,
                    store_url=store_url,
                    run_id=RUN_ID,
                    target_url=target_url,
                    out_dir=Path(evidence) / "gx",
                )
                validated[gate] = "passed" if report.passed else "failed"
            except GateFailed as failed:
                validated[gate] = f"failed: {type(failed).__name__}"
            validate_seconds[f"{gate}_gate"] = round(time.perf_counter() - began, 2)
    except ImportError:
        validated["gates"] = "not available"
    try:
        from cutover.reconcile import reconcile

        began = time.perf_counter()
        recon = reconcile(target_url, store_url, RUN_ID, max_failure_rate=1.0)
        validated["reconciliation"] = "passed" if recon.passed else "failed"
        validate_seconds["reconciliation"] = round(time.perf_counter() - began, 2)
    except ImportError:
        validated["reconciliation"] = "not available"
    stages["validate"] = {
        "rows": stages["load"]["rows"],
        "bytes": 0,
        "seconds": time.perf_counter() - started,
    }
    return {
        "stages": stages,
        "workers": WORKERS,
        "restore_constraints_seconds": round(restore_seconds, 2),
        "validate_seconds": validate_seconds,
        "validated": validated,
        "peak_rss_mb": round(max([_peak_mb(), *peaks]), 1),
    }


def _export(target_url: str, folder: Path, psql: str) -> tuple[Path, Path, int]:
    """The rows our load wrote, per table as CSV and binary COPY files, and a psql script loading them."""
    from cutover.target import TARGET_TABLES

    script_csv, script_bin = folder / "copy_csv.sql", folder / "copy_bin.sql"
    lines_csv, lines_bin, total = [], [], 0
    with psycopg.connect(target_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS copy_ref CASCADE")
        conn.execute("CREATE SCHEMA copy_ref")
        for table in TARGET_TABLES:
            conn.execute(f'CREATE TABLE copy_ref."{table}" (LIKE pt."{table}")')
            (count,) = conn.execute(f'SELECT count(*) FROM pt."{table}"').fetchone() or (0,)
            total += int(count)
            for fmt, ext in (("csv", "csv"), ("binary", "bin")):
                path = folder / f"{table}.{ext}"
                with (
                    path.open("wb") as out,
                    conn.cursor().copy(f'COPY pt."{table}" TO STDOUT (FORMAT {fmt})') as copy,
                ):
                    for chunk in copy:
                        out.write(chunk)
            lines_csv.append(f"\\copy copy_ref.\"{table}\" FROM '{folder / (table + '.csv')}' (FORMAT csv)")
            lines_bin.append(
                f"\\copy copy_ref.\"{table}\" FROM '{folder / (table + '.bin')}' (FORMAT binary)"
            )
    script_csv.write_text("\n".join(lines_csv) + "\n")
    script_bin.write_text("\n".join(lines_bin) + "\n")
    return script_csv, script_bin, total


def _into_target_schema(admin: str, folder: Path) -> tuple[str, Path]:
    """A fresh database with the real target schema (keys, foreign keys, checks, indexes) and a psql
    script loading the exported CSV files into its ``pt`` tables, parents first: raw ``\\copy`` doing
    the constraint work our load cannot skip."""
    from cutover.target import TARGET_TABLES, upgrade

    url = _fresh_db(admin, "bench_copy_target")
    upgrade(url)
    script = folder / "copy_target.sql"
    script.write_text(
        "".join(
            f"\\copy pt.\"{table}\" FROM '{folder / (table + '.csv')}' (FORMAT csv)\n"
            for table in TARGET_TABLES
        )
    )
    return url, script


def _psql_seconds(psql: str, url: str, script: Path, schema: str = "copy_ref") -> float:
    from cutover.target import TARGET_TABLES

    with psycopg.connect(url, autocommit=True) as conn:
        tables = ", ".join(f'{schema}."{table}"' for table in TARGET_TABLES)
        conn.execute(f"TRUNCATE {tables}")
        conn.execute("CHECKPOINT")
    started = time.perf_counter()
    subprocess.run([psql, url, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)], check=True)
    return time.perf_counter() - started


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(*sys.argv[2:6])))
        return
    psql = shutil.which("psql")
    pgloader = shutil.which("pgloader")
    admin = _server()
    with tempfile.TemporaryDirectory(prefix="cutover-bench-") as tmp:
        work = Path(tmp)
        legacy = work / "legacy.db"
        print(f"simulating {PATIENTS} patients …", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cutover.cli",
                "simulate",
                "--patients",
                str(PATIENTS),
                "--seed",
                str(SEED),
                "--out",
                str(legacy),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        legacy_rows = sum(json.loads((work / "legacy.db.manifest.json").read_text())["tables"].values())
        target = _fresh_db(admin, "bench_cutover")
        print(f"our pipeline on {legacy_rows:,} legacy rows …", flush=True)
        started = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.pipeline_bench",
                "--child",
                f"sqlite:///{legacy}",
                f"file://{work / 'staging'}",
                target,
                str(work / "home"),
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[1],
        )
        ours_wall = time.perf_counter() - started
        ours = json.loads(out.stdout.strip().splitlines()[-1])
        result: dict[str, Any] = {
            "rows": legacy_rows,
            "patients": PATIENTS,
            "server": "system" if admin == SYSTEM_PG else "embedded",
            "stages": {
                name: round(s["rows"] / s["seconds"], 1) for name, s in ours["stages"].items() if s["seconds"]
            },
            "stages_mb_per_s": {
                name: round(s["bytes"] / 1e6 / s["seconds"], 2)
                for name, s in ours["stages"].items()
                if s["seconds"] and s["bytes"]
            },
            "stage_seconds": {name: round(s["seconds"], 2) for name, s in ours["stages"].items()},
            "workers": ours["workers"],
            "restore_constraints_seconds": ours["restore_constraints_seconds"],
            "validate_seconds": ours["validate_seconds"],
            "end_to_end_seconds": round(ours_wall, 2),
            "end_to_end_rows_per_s": round(legacy_rows / ours_wall, 1),
            "validated": ours["validated"],
            "peak_rss_mb": ours["peak_rss_mb"],
        }
        load_rate = ours["stages"]["load"]["rows"] / ours["stages"]["load"]["seconds"]
        if psql:
            csv_script, bin_script, copied = _export(target, work, psql)
            seconds = {
                "csv": _psql_seconds(psql, target, csv_script),
                "binary": _psql_seconds(psql, target, bin_script),
            }
            constrained, target_script = _into_target_schema(admin, work)
            seconds["csv_into_target_schema"] = _psql_seconds(psql, constrained, target_script, schema="pt")
            result["psql_copy_rows_per_s"] = {fmt: round(copied / s, 1) for fmt, s in seconds.items()}
            result["load_vs_psql_copy"] = {
                fmt: round(load_rate / (copied / s), 3) for fmt, s in seconds.items()
            }
        else:
            result["load_vs_psql_copy"] = None
            result["psql"] = "psql not found"
        if pgloader:
            scratch = _fresh_db(admin, "bench_pgloader")
            started = time.perf_counter()
            done = subprocess.run(
                [pgloader, f"sqlite:///{legacy}", scratch.replace("postgresql://", "pgsql://")],
                capture_output=True,
                text=True,
            )
            pg_wall = time.perf_counter() - started
            result["pgloader_seconds"] = round(pg_wall, 2)
            result["pgloader_ok"] = done.returncode == 0
            result["end_to_end_vs_pgloader"] = round(pg_wall / ours_wall, 3)
        else:
            result["end_to_end_vs_pgloader"] = None
            result["pgloader"] = "pgloader not found (apt-get install pgloader)"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
