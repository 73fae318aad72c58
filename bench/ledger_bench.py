"""A first load of a simulated clinic, the crosswalk's share of it apart.

Run: ``python -m bench ledger [--patients 10000] [--repeat 3] [--rebuild] [--label NAME]`` (never by
the tests). The clinic (seed 17, as ``python -m bench pipeline``: 10,000 patients are about 1.07M
legacy rows) is simulated, extracted and mapped once into ``$TMPDIR/cutover-ledger-clinic-<patients>``
(kept for the next call; ``--rebuild`` stages it again). Each repeat then loads it into a fresh
database ``bench_ledger`` as a first load does, one table after the other (the DAG's parent order):
constraints set aside, every batch, constraints put back and the ledger checked.

Per repeat: the whole load (``load_seconds``: set aside, batches, restore), the crosswalk's share
(``crosswalk_seconds``: the client's time in its COPYs, which return when the server has written and
indexed the rows, plus the restore's seconds on ``migration.crosswalk``), the load average before
and after, and the row counts of every ``pt`` table and of the ledger, which must be the same in
every repeat (and, run before and after a change of the load, the same for both). Prints the
medians and writes ``bench/results/ledger[-<label>].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from bench.measure import load_average

SEED = 17
AS_OF = "2026-11-27"
RUN = "bench__ledger"
DB = "bench_ledger"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).parent / "results"


def _with_db(url: str, name: str) -> str:
    return urlsplit(url)._replace(path="/" + name).geturl()


def _fresh_target() -> str:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    return _with_db(ADMIN, DB)


def stage(folder: Path, patients: int) -> str:
    """Simulate, extract and map the clinic once; the store's URL."""
    from cutover import pipeline

    store = f"file://{folder / 'stage'}"
    if (folder / "staged.json").exists():
        return store
    folder.mkdir(parents=True, exist_ok=True)
    legacy = folder / "legacy.db"
    if not legacy.exists():
        command = [sys.executable, "-m", "cutover.cli", "simulate", "--patients", str(patients)]
        subprocess.run(
            [*command, "--seed", str(SEED), "--out", str(legacy)], check=True, stdout=subprocess.DEVNULL
        )
    target = _fresh_target()
    pipeline.prepare_target(target)
    pipeline.begin_run(target, RUN, "bench", {"mode": "big_bang"}, "bench")
    for table in pipeline.migrated_tables():
        pipeline.extract_table(f"sqlite:///{legacy}", store, RUN, table)
        pipeline.map_table(store, RUN, table, as_of=date.fromisoformat(AS_OF))
    (folder / "staged.json").write_text(json.dumps({"patients": patients, "store": store}))
    return store


@contextmanager
def _crosswalk_clock(spent: list[float]) -> Iterator[None]:
    """Add the seconds of every COPY into ``migration.crosswalk`` to ``spent`` (the direct path's)."""
    from cutover.loading import direct

    original = direct.copy_arrow

    def timed(cur: Any, table: Any, *args: Any, **kwargs: Any) -> int:
        started = time.perf_counter()
        try:
            return original(cur, table, *args, **kwargs)
        finally:
            if table == ("migration", "crosswalk"):
                spent.append(time.perf_counter() - started)

    direct.copy_arrow = timed
    try:
        yield
    finally:
        direct.copy_arrow = original


def _counts(target: str) -> dict[str, int]:
    from cutover.target import TARGET_SCHEMA, TARGET_TABLES

    tables = [f"{TARGET_SCHEMA}.{t}" for t in TARGET_TABLES]
    tables += ["migration.crosswalk", "migration.reject", "migration.flag", "migration.batch"]
    with psycopg.connect(target) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # type: ignore[index]


def load_once(store: str) -> dict[str, Any]:
    """One first load of the staged clinic into a fresh database, timed."""
    from cutover import pipeline
    from cutover.loading.bulk import defer_constraints, restore_constraints, restore_seconds

    target = _fresh_target()
    pipeline.prepare_target(target)
    pipeline.begin_run(target, RUN, "bench", {"mode": "big_bang"}, "bench")
    spent: list[float] = []
    results = []
    before = load_average()
    started = time.perf_counter()
    with _crosswalk_clock(spent):
        deferral = defer_constraints(target, RUN)
        for table in pipeline.migrated_tables():
            results.append(pipeline.load_mapped(target, store, RUN, table))
        restore_started = time.perf_counter()
        restore_constraints(target, RUN)
    ended = time.perf_counter()
    restored = restore_seconds(target, RUN)
    counts = _counts(target)
    loaded = {
        k: sum(int(r.get(k, 0)) for r in results)
        for k in ("migrated", "merged", "rejected", "batches", "direct_batches")
    }
    if counts["migration.crosswalk"] != loaded["migrated"] + loaded["merged"]:
        raise SystemExit(f"crosswalk rows {counts['migration.crosswalk']} != migrated + merged {loaded}")
    return {
        "load_seconds": round(ended - started, 3),
        "restore_seconds": round(ended - restore_started, 3),
        "crosswalk_copy_seconds": round(sum(spent), 3),
        "crosswalk_restore_seconds": round(restored.get("migration.crosswalk", 0.0), 3),
        "crosswalk_seconds": round(sum(spent) + restored.get("migration.crosswalk", 0.0), 3),
        "deferred": deferral["deferred"],
        "load_average": {"start": before, "end": load_average()},
        "counts": counts,
        "loaded": loaded,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench ledger")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv or [])
    folder = Path(tempfile.gettempdir()) / f"cutover-ledger-clinic-{args.patients}"
    os.environ.setdefault("CUTOVER_HOME", str(folder / "home"))
    if args.rebuild:
        (folder / "staged.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    store = stage(folder, args.patients)
    print(f"clinic of {args.patients:,} patients staged ({time.perf_counter() - t0:.0f} s)", flush=True)
    runs = []
    for n in range(args.repeat):
        run = load_once(store)
        runs.append(run)
        print(
            f"#{n + 1}: load {run['load_seconds']} s, crosswalk {run['crosswalk_seconds']} s"
            f" (COPY {run['crosswalk_copy_seconds']}, restore {run['crosswalk_restore_seconds']}),"
            f" restore {run['restore_seconds']} s, load average {run['load_average']}",
            flush=True,
        )
    counts = {json.dumps(r["counts"], sort_keys=True) for r in runs}
    if len(counts) != 1:
        raise SystemExit("row counts differ between repeats")
    result = {
        "label": args.label,
        "patients": args.patients,
        "legacy_rows_loaded": sum(runs[0]["loaded"][k] for k in ("migrated", "merged", "rejected")),
        "median": {
            key: statistics.median(r[key] for r in runs)
            for key in ("load_seconds", "crosswalk_seconds", "crosswalk_copy_seconds", "restore_seconds")
        },
        "counts": runs[0]["counts"],
        "runs": runs,
    }
    print(json.dumps({k: result[k] for k in ("label", "legacy_rows_loaded", "median")}))
    RESULTS.mkdir(exist_ok=True)
    name = f"ledger-{args.label}.json" if args.label else "ledger.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
