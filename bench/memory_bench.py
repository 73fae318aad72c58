"""Peak memory per (stage, table) at two data sizes: is it bounded, or does it grow with the data?

Run: ``python -m bench memory`` (never by the tests). ``BENCH_MEMORY_PATIENTS`` (default
``5000,20000``) names the sizes; ``BENCH_MEMORY_STAGES`` (default ``extract,map,load,gates``)
the stages measured; ``BENCH_MEMORY_CACHE`` a folder keeping the simulated legacy databases between
runs; ``BENCH_MEMORY_DB`` (default ``mapper_memory``) the prefix of the target databases it creates.

For each size the simulator writes a legacy SQLite database; then, as the ``pt_cutover`` DAG runs
them, every stage of every table runs in a fresh process of its own: ``extract_table`` and
``map_table`` one process per table, ``load_mapped`` one process per staged batch (the DAG maps
the load over batches), each gate (``extract``, ``mapped``, ``target``) one process. Each child
reports its peak resident memory (VmHWM in ``/proc/self/status``) and, for reference, its
resident memory after the imports and before the work (``base_mb``): the difference is what the
stage itself holds.

Prints, per (stage, table), the peak at each size and the ratio largest/smallest (about 1 when
the peak does not depend on the data size), and writes ``bench/results/memory.json``. The
machine's other work makes seconds noisy; peaks are not affected by it.
"""

from __future__ import annotations

import contextlib
import json
import os
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

SIZES = [int(n) for n in os.environ.get("BENCH_MEMORY_PATIENTS", "5000,20000").split(",") if n]
STAGES = [s for s in os.environ.get("BENCH_MEMORY_STAGES", "extract,map,load,gates").split(",") if s]
SEED = 17
AS_OF = date(2026, 11, 27)
RUN_ID = "bench__memory"
RESULTS = Path(__file__).parent / "results"
SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
GATES = ("extract", "mapped", "target")
DB_PREFIX = os.environ.get("BENCH_MEMORY_DB", "mapper_memory")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _admin() -> str:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return SYSTEM_PG
    except OSError:
        from cutover.embedded import default_url

        return default_url("target_db")


def _fresh_db(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlsplit(admin)._replace(path="/" + name).geturl()


def _drop_db(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child(stage: str, args: list[str]) -> dict[str, Any]:
    """One stage of one table (or one batch, or one gate) in this process; its peak memory."""
    from cutover import pipeline

    base = _status_mb("VmRSS")
    started = time.perf_counter()
    rows: int = 0
    if stage == "extract":
        legacy_url, store_url, table = args
        rows = pipeline.extract_table(legacy_url, store_url, RUN_ID, table)["rows"]
    elif stage == "map":
        store_url, table = args
        rows = pipeline.map_table(store_url, RUN_ID, table, as_of=AS_OF)["rows"]
    elif stage == "load":
        target_url, store_url, table, batch_no = args
        rows = pipeline.load_mapped(target_url, store_url, RUN_ID, table, [int(batch_no)])["rows_in"]
    elif stage == "gate":
        from cutover.validation.runner import GateFailed, run_gate

        gate, store_url, target_url, out_dir = args
        with contextlib.suppress(GateFailed):  # a verdict on the data, not what this bench measures
            run_gate(gate, store_url=store_url, run_id=RUN_ID, target_url=target_url, out_dir=Path(out_dir))
    return {
        "peak_mb": round(_status_mb("VmHWM"), 1),
        "base_mb": round(base, 1),
        "seconds": round(time.perf_counter() - started, 2),
        "rows": rows,
    }


def _run(stage: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory_bench", "--child", stage, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        env=env,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(patients: int, admin: str) -> dict[str, Any]:
    """Every (stage, table) of one data size, each in its own process."""
    from cutover.pipeline import mapped_batches, migrated_tables

    tables = migrated_tables()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mapper-memory-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "CUTOVER_HOME": str(work / "home")}
        cache = os.environ.get("BENCH_MEMORY_CACHE")
        legacy = Path(cache) / f"legacy_{patients}.db" if cache else work / "legacy.db"
        if not legacy.exists():
            legacy.parent.mkdir(parents=True, exist_ok=True)
            simulate = ["simulate", "--patients", str(patients), "--seed", str(SEED), "--out", str(legacy)]
            subprocess.run(
                [sys.executable, "-m", "cutover.cli", *simulate],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        manifest = legacy.with_name(legacy.name + ".manifest.json")
        out["legacy_rows"] = sum(json.loads(manifest.read_text())["tables"].values())
        legacy_url, store_url = f"sqlite:///{legacy}", f"file://{work / 'staging'}"
        for table in tables:
            out[f"extract/{table}"] = _run("extract", legacy_url, store_url, table, env=env)
            print(f"  {patients} extract/{table}: {out[f'extract/{table}']}", flush=True)
        if "map" in STAGES or "load" in STAGES or "gates" in STAGES:
            for table in tables:
                out[f"map/{table}"] = _run("map", store_url, table, env=env)
                print(f"  {patients} map/{table}: {out[f'map/{table}']}", flush=True)
        if "load" in STAGES or "gates" in STAGES:
            name = f"{DB_PREFIX}_{patients}"
            target = _fresh_db(admin, name)
            try:
                from cutover import pipeline
                from cutover.loading.bulk import defer_constraints, restore_constraints

                pipeline.prepare_target(target)
                pipeline.begin_run(target, RUN_ID, "bench", {"mode": "big_bang"}, "bench")
                defer_constraints(target, RUN_ID)
                for table in tables:
                    batches = [
                        _run("load", target, store_url, table, str(n), env=env)
                        for n in mapped_batches(store_url, RUN_ID, table)
                    ]
                    out[f"load/{table}"] = {
                        "peak_mb": max(b["peak_mb"] for b in batches),
                        "base_mb": max(b["base_mb"] for b in batches),
                        "seconds": round(sum(b["seconds"] for b in batches), 2),
                        "rows": sum(b["rows"] for b in batches),
                        "batches": len(batches),
                    }
                    print(f"  {patients} load/{table}: {out[f'load/{table}']}", flush=True)
                restore_constraints(target, RUN_ID)
                if "gates" in STAGES:
                    for gate in GATES:
                        out[f"gate/{gate}"] = _run("gate", gate, store_url, target, str(work / "gx"), env=env)
                        print(f"  {patients} gate/{gate}: {out[f'gate/{gate}']}", flush=True)
            finally:
                _drop_db(admin, name)
    return out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3:])))
        return
    admin = _admin()
    runs: dict[int, dict[str, Any]] = {}
    for patients in SIZES:
        print(f"{patients} patients …", flush=True)
        runs[patients] = measure(patients, admin)
    small, large = min(SIZES), max(SIZES)
    keys = [k for k in runs[small] if k != "legacy_rows"]
    result: dict[str, Any] = {
        "sizes": {str(n): runs[n]["legacy_rows"] for n in SIZES},
        "peak_mb": {k: {str(n): runs[n][k]["peak_mb"] for n in SIZES} for k in keys},
        "work_mb": {
            k: {str(n): round(runs[n][k]["peak_mb"] - runs[n][k]["base_mb"], 1) for n in SIZES} for k in keys
        },
        "seconds": {k: {str(n): runs[n][k]["seconds"] for n in SIZES} for k in keys},
        "growth": {k: round(runs[large][k]["peak_mb"] / runs[small][k]["peak_mb"], 2) for k in keys},
    }
    for stage in ("extract", "map", "load", "gate"):
        mine = [k for k in keys if k.startswith(f"{stage}/")]
        if mine:
            result[f"{stage}_max_peak_mb"] = {str(n): max(runs[n][k]["peak_mb"] for k in mine) for n in SIZES}
    print(f"{'stage/table':28}" + "".join(f"{n:>10}" for n in SIZES) + f"{'growth':>9}")
    for k in keys:
        peaks = "".join(f"{runs[n][k]['peak_mb']:>10.0f}" for n in SIZES)
        print(f"{k:28}{peaks}{result['growth'][k]:>9.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
