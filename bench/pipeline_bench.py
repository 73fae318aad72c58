r"""The cutover end to end on ≥1M legacy rows, against references measured in the same run, each
checked to have loaded every row it was given.

Run: ``python -m bench pipeline [--size 1m|4m|10m | --patients N] [--dry-run]`` (``make bench``;
never by the tests or CI). ``--size 1m`` (the default; ``BENCH_PATIENTS`` overrides it) is 10,000
simulated patients, about 1.1M legacy rows; ``4m`` (40,000) about 4.4M; ``10m`` (100,000) about
11M. Afterwards ``python -m bench readme`` rewrites the README's Performance section from
``bench/results/latest.json``.

1. The simulator writes a legacy SQLite database.
2. A fresh subprocess runs the pipeline's stages as ``pt_cutover`` does, without Airflow's
   scheduling: **extract** (legacy → zstd Parquet in a local staging folder), **map** (normalise,
   deduplicate, stage the mapped Parquet), **stage** (read back and SHA-256-verify every staged
   part, the check the load makes before it trusts an object), **load** (constraints set aside as
   for a first load, COPY + resolve + upsert + crosswalk one transaction a batch into a fresh target
   database, constraints restored and checked) and **validate** (the extract, mapped and target GX
   gates and the source-to-target reconciliation; the DAG runs the extract gate between extract
   and map, the bench counts it here). Meanwhile this process samples ``/proc``
   (:mod:`bench.measure`): ``peak_rss_mb`` is the largest sum of the resident memory of the child
   and all its workers at one time, ``postgres_backends_peak_rss_mb`` that of the server's backends
   serving the target (apart: their shared buffers are the server's). Every figure carries the
   machine's load average during its measurement.
3. *psql* (:mod:`bench.references`): the rows our load wrote, exported, then ``\copy``-ed by one
   ``psql`` (a) into bare tables, CSV and binary (``load_vs_psql_copy``: CSV; the raw ceiling),
   (b) with the crosswalk rows too into a fresh target schema whose constraints are set aside and
   put back as our load does (``load_vs_psql_same_work``: the work the load must do at least), and
   into the target schema with every constraint live.
4. *pgloader* (Debian package) migrates the same SQLite database into a scratch database; where it
   drops rows (it abandons a table on bad UTF-8 and still exits 0), again from a copy with that
   text repaired. ``end_to_end_vs_pgloader`` compares with the run that loaded every row, although
   we also map, deduplicate, validate and reconcile, and pgloader only copies.

Every ratio is the reference's seconds ÷ ours (``ratios_meaning``; above 1: we are faster); a
reference that loaded fewer or more rows than it was given is in ``failed_references`` and gets no
ratio. Writes ``bench/results/latest.json`` and prints its summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from bench import references
from bench.measure import Measurement, load_average, postmaster_pid

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
    """Our pipeline's stages; per stage rows, bytes, seconds, its window on the wall clock and the
    load averages at its start and end; the largest peak of one process (the parent samples the sum).

    Each stage's mapped tasks (a table to extract or map, a staged batch to load) run on
    ``LOAD_WORKERS`` worker processes, as the DAG's tasks do on an executor with that many slots;
    a table's batches start once its parent tables are loaded, as the DAG's load groups wait
    for their parents' groups (no other barrier).
    """
    os.environ["CUTOVER_HOME"] = evidence
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from bench.measure import load_average
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

    windows: dict[str, dict[str, Any]] = {}

    def opened(stage: str) -> None:
        windows[stage] = {"since": time.time(), "start": load_average()}

    def closed(stage: str) -> None:
        windows[stage] |= {"until": time.time(), "end": load_average()}

    def run(stage: str, jobs: list[tuple[str, ...]]) -> None:
        opened(stage)
        started = time.perf_counter()
        done = list(pool.map(_task, jobs))
        row = stages.setdefault(stage, {"rows": 0, "bytes": 0, "seconds": 0.0})
        row["rows"] += sum(d[0] for d in done)
        row["bytes"] += sum(d[1] for d in done)
        row["seconds"] += time.perf_counter() - started
        peaks.extend(d[2] for d in done)
        closed(stage)

    urls = (legacy_url, store_url, target_url)
    run("extract", [("extract", t, *urls) for t in tables])
    run("map", [("map", t, *urls) for t in tables])
    store = open_store(store_url)
    opened("stage")
    started = time.perf_counter()
    rows = nbytes = 0
    for table in tables:
        for part in read_manifest(store, f"runs/{RUN_ID}/mapped/{table}")["parts"]:
            rows += read_part(store, part).num_rows
            nbytes += part["bytes"]
    stages["stage"] = {"rows": rows, "bytes": nbytes, "seconds": time.perf_counter() - started}
    closed("stage")
    # as pt_cutover does into an empty target: constraints aside, the batches, the constraints back;
    # from a checkpoint, as each psql reference starts (see _psql_seconds)
    with psycopg.connect(target_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    opened("load")
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
    closed("load")
    validated: dict[str, Any] = {}
    validate_seconds: dict[str, float] = {}
    opened("validate")
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
    closed("validate")
    return {
        "stages": stages,
        "windows": windows,
        "workers": WORKERS,
        "restore_constraints_seconds": round(restore_seconds, 2),
        "validate_seconds": validate_seconds,
        "validated": validated,
        "largest_process_peak_mb": round(max([_peak_mb(), *peaks]), 1),
    }


SIZES: dict[str, int] = {"1m": 10_000, "4m": 40_000, "10m": 100_000}
"""``--size``: patients for about 1.1M, 4.4M and 11M legacy rows (about 110 rows per patient)."""

ROWS_PER_PATIENT = 1_096_421 / 10_000
"""Legacy rows per simulated patient at seed 17 (10,000 patients gave 1,096,421 rows; 1,068,261
before the patient-safety tables): ``--dry-run``'s estimate."""

RATIOS_MEANING = (
    "every *_vs_* ratio is the reference's seconds ÷ ours for the same rows (above 1: we are faster);"
    " load_vs_* compare our load stage (constraints set aside, batches, constraints put back) with psql,"
    " end_to_end_vs_pgloader our whole run (extract → reconciliation) with pgloader's; a reference that"
    " did not load every row it was given gets no ratio (null)"
)


TARGETS: dict[str, tuple[str, float]] = {
    "load_vs_psql_same_work": (">=", 1.5),
    "load_vs_psql_copy": (">=", 0.5),
    "gate_share": ("<=", 0.15),
    "end_to_end_vs_pgloader": (">=", 0.5),
    "peak_rss_mb": ("<=", 1536.0),
}
"""Issue 20's targets for one run at 1.07M and 4.29M rows (and, across the two, memory flat within 15%)."""


def judge(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each of :data:`TARGETS` with this run's value and whether it is met (a failed reference's
    missing ratio is not).

    >>> judge({"gate_share": 0.39, "load_vs_psql_copy": None})["gate_share"]
    {'value': 0.39, 'target': '<= 0.15', 'met': False}
    """
    found = {}
    for key, (op, bound) in TARGETS.items():
        value = result.get(key)
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        found[key] = {"value": value, "target": f"{op} {bound:g}", "met": met}
    return found


@dataclass(frozen=True)
class Options:
    patients: int
    size: str
    dry_run: bool = False


def parse_options(argv: list[str]) -> Options:
    """``--size 1m|4m|10m`` or ``--patients N`` (default ``BENCH_PATIENTS``, else 10,000), ``--dry-run``.

    >>> parse_options(["--size", "10m"])
    Options(patients=100000, size='10m', dry_run=False)
    >>> parse_options(["--patients", "2000", "--dry-run"]).size
    '2000 patients'
    """
    parser = argparse.ArgumentParser(prog="python -m bench pipeline", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--size", choices=sorted(SIZES), help="1m ≈ 1.1M legacy rows, 4m ≈ 4.4M, 10m ≈ 11M")
    group.add_argument("--patients", type=int, help="simulated patients (about 110 legacy rows each)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and stop")
    args = parser.parse_args(argv)
    if args.size:
        return Options(SIZES[args.size], args.size, args.dry_run)
    patients = args.patients or int(os.environ.get("BENCH_PATIENTS", str(SIZES["1m"])))
    named = {n: s for s, n in SIZES.items()}
    return Options(patients, named.get(patients, f"{patients} patients"), args.dry_run)


def _simulate(legacy: Path, patients: int) -> int:
    """The legacy clinic (SQLite) of ``patients``; its row count."""
    command = [sys.executable, "-m", "cutover.cli", "simulate", "--patients", str(patients)]
    command += ["--seed", str(SEED), "--out", str(legacy)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    manifest = legacy.with_name(legacy.name + ".manifest.json")
    return sum(json.loads(manifest.read_text())["tables"].values())


def _ours(
    work: Path, legacy: Path, target: str, postmaster: int | None
) -> tuple[dict[str, Any], Measurement]:
    """Our pipeline in a child process, its process tree and the target's backends sampled."""
    command = [sys.executable, "-m", "bench.pipeline_bench", "--child", f"sqlite:///{legacy}"]
    command += [f"file://{work / 'staging'}", target, str(work / "home")]
    log = work / "ours.log"
    m = Measurement(postmaster, (target.rsplit("/", 1)[1],))
    with m, log.open("wb") as err:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, cwd=Path(__file__).parents[1], text=True
        )
        m.watch(proc.pid)
        out, _ = proc.communicate()
    if proc.returncode != 0:
        sys.stderr.write(log.read_text()[-4000:])
        raise SystemExit(f"our pipeline failed (exit {proc.returncode}); its log: {log}")
    return json.loads(out.strip().splitlines()[-1]), m


def _ratio(reference: dict[str, Any] | None, ours_seconds: float) -> float | None:
    """The reference's seconds ÷ ours; none for a reference that failed or did not run.

    >>> _ratio({"ok": True, "seconds": 5.0}, 10.0), _ratio({"ok": False, "seconds": 5.0}, 10.0)
    (0.5, None)
    """
    if not reference or not reference["ok"] or not ours_seconds:
        return None
    return round(float(reference["seconds"]) / ours_seconds, 3)


def _psql_references(
    psql: str, admin: str, target: str, work: Path, postmaster: int | None
) -> dict[str, dict[str, Any]]:
    from cutover.target import TARGET_SCHEMA, TARGET_TABLES, upgrade

    rows = [f"{TARGET_SCHEMA}.{t}" for t in TARGET_TABLES]
    ledger = ".".join(references.LEDGER)
    exported = references.export(target, work / "export", [*rows, ledger])
    found: dict[str, dict[str, Any]] = {}
    for fmt in ("csv", "binary"):
        print(f"  psql \\copy {fmt} into bare tables …", flush=True)
        found[f"psql_bare_{fmt}"] = references.psql_bare(psql, target, exported, rows, fmt, postmaster)
    for name, tables in (("psql_same_work_target_rows", rows), ("psql_same_work", [*rows, ledger])):
        print(f"  {name} …", flush=True)
        url = _fresh_db(admin, "bench_same_work")
        upgrade(url)
        found[name] = references.psql_same_work(psql, url, exported, tables, postmaster, f"{RUN_ID}_ref")
    print("  psql \\copy csv into the target schema, constraints live …", flush=True)
    url = _fresh_db(admin, "bench_copy_target")
    upgrade(url)
    found["psql_live_schema"] = references.psql_live_schema(psql, url, exported, rows, postmaster)
    found["psql_same_work"]["ledger_rows"] = exported.counts[ledger]
    return found


def _pgloader_references(
    pgloader: str, admin: str, legacy: Path, work: Path, postmaster: int | None
) -> dict[str, dict[str, Any]]:
    """pgloader on the legacy database; where it dropped rows, again on a repaired copy."""
    print("  pgloader on the legacy database …", flush=True)
    found = {
        "pgloader": references.pgloader_run(
            pgloader,
            legacy,
            _fresh_db(admin, "bench_pgloader"),
            postmaster,
            work / "pgloader.log",
            "pgloader, default settings, the legacy SQLite database",
        )
    }
    short = [t.split(".", 1)[1] for t in found["pgloader"]["short_tables"]]
    if short:
        print(f"  pgloader dropped rows of {', '.join(short)}: again on a repaired copy …", flush=True)
        repaired = work / "repaired.db"
        started = time.perf_counter()
        cells = references.repair_copy(legacy, repaired, short)
        repair_seconds = round(time.perf_counter() - started, 2)
        found["pgloader_repaired"] = {
            **references.pgloader_run(
                pgloader,
                repaired,
                _fresh_db(admin, "bench_pgloader"),
                postmaster,
                work / "pgloader_repaired.log",
                f"pgloader, default settings, a copy with the undecodable text of {', '.join(short)} repaired",
            ),
            "repaired_tables": short,
            "repaired_cells": cells,
            "repair_seconds_not_timed": repair_seconds,
        }
    return found


def _stage_figures(ours: dict[str, Any], m: Measurement) -> dict[str, dict[str, Any]]:
    """Per stage: seconds, rows, the peaks of the sampled sums within its window, its load average."""
    figures = {}
    for name, s in ours["stages"].items():
        w = ours["windows"][name]
        figures[name] = {
            "seconds": round(s["seconds"], 2),
            "rows": s["rows"],
            **m.window(w["since"], w["until"], w["start"], w["end"]),
        }
    return figures


def _machine(admin: str) -> dict[str, Any]:
    with psycopg.connect(admin, autocommit=True) as conn:
        (version,) = conn.execute("SHOW server_version").fetchone() or ("?",)
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"cpus": os.cpu_count(), "memory_mb": round(pages / 2**20), "postgresql": str(version).split()[0]}


def run(options: Options) -> dict[str, Any]:
    psql, pgloader = shutil.which("psql"), shutil.which("pgloader")
    admin = _server()
    postmaster = postmaster_pid(admin)
    began = load_average()
    with tempfile.TemporaryDirectory(prefix="cutover-bench-") as tmp:
        work = Path(tmp)
        legacy = work / "legacy.db"
        print(f"simulating {options.patients:,} patients …", flush=True)
        legacy_rows = _simulate(legacy, options.patients)
        target = _fresh_db(admin, "bench_cutover")
        print(f"our pipeline on {legacy_rows:,} legacy rows …", flush=True)
        ours, m = _ours(work, legacy, target, postmaster)
        whole = m.figures()
        stages = ours["stages"]
        load_seconds = stages["load"]["seconds"]
        result: dict[str, Any] = {
            "rows": legacy_rows,
            "patients": options.patients,
            "size": options.size,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "server": "system" if admin == SYSTEM_PG else "embedded",
            "machine": _machine(admin),
            "ratios_meaning": RATIOS_MEANING,
            "stages": {n: round(s["rows"] / s["seconds"], 1) for n, s in stages.items() if s["seconds"]},
            "stages_mb_per_s": {
                n: round(s["bytes"] / 1e6 / s["seconds"], 2)
                for n, s in stages.items()
                if s["seconds"] and s["bytes"]
            },
            "stage_seconds": {n: round(s["seconds"], 2) for n, s in stages.items()},
            "stage_figures": _stage_figures(ours, m),
            "workers": ours["workers"],
            "restore_constraints_seconds": ours["restore_constraints_seconds"],
            "validate_seconds": ours["validate_seconds"],
            "end_to_end_seconds": whole["seconds"],
            "end_to_end_rows_per_s": round(legacy_rows / whole["seconds"], 1),
            "end_to_end": whole,
            "gate_share": round(stages["validate"]["seconds"] / whole["seconds"], 3),
            "validated": ours["validated"],
            "peak_rss_mb": whole["peak_rss_mb"],
            "peak_rss_mb_largest_process": ours["largest_process_peak_mb"],
            "postgres_backends_peak_rss_mb": whole["backends_peak_rss_mb"],
            "postgres_backends_peak_private_mb": whole["backends_peak_private_mb"],
        }
        refs: dict[str, dict[str, Any]] = {}
        if psql:
            print("references:", flush=True)
            refs |= _psql_references(psql, admin, target, work, postmaster)
        else:
            result["psql"] = "psql not found"
        if pgloader:
            refs |= _pgloader_references(pgloader, admin, legacy, work, postmaster)
        else:
            result["pgloader"] = "pgloader not found (apt-get install pgloader)"
    psql_names = (
        "psql_bare_csv",
        "psql_bare_binary",
        "psql_live_schema",
        "psql_same_work_target_rows",
        "psql_same_work",
    )
    result["load_vs_psql_copy"] = _ratio(refs.get("psql_bare_csv"), load_seconds)
    result["load_vs_psql_same_work"] = _ratio(refs.get("psql_same_work"), load_seconds)
    result["load_vs_psql"] = {n.removeprefix("psql_"): _ratio(refs.get(n), load_seconds) for n in psql_names}
    result["psql_copy_rows_per_s"] = {
        n.removeprefix("psql_"): round(r["rows_loaded"] / r["seconds"], 1)
        for n, r in refs.items()
        if n in psql_names and r["seconds"]
    }
    given, repaired = refs.get("pgloader"), refs.get("pgloader_repaired")
    if given:
        against = "legacy" if given["ok"] else "repaired" if repaired and repaired["ok"] else None
        result["pgloader_seconds"] = given["seconds"]
        result["pgloader_ok"] = given["ok"]
        result["pgloader_rows_loaded"] = {
            "given": given["rows_given"],
            "legacy": given["rows_loaded"],
            **({"repaired": repaired["rows_loaded"]} if repaired else {}),
        }
        result["end_to_end_vs_pgloader_against"] = against
        chosen = given if against == "legacy" else repaired if against == "repaired" else None
        result["end_to_end_vs_pgloader"] = _ratio(chosen, whole["seconds"])
    else:
        result["end_to_end_vs_pgloader"] = None
    result["references"] = refs
    result["failed_references"] = sorted(n for n, r in refs.items() if not r["ok"])
    result["load_average"] = {"start": began, "end": load_average()}
    result["targets"] = judge(result)
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m bench pipeline [--size 1m|4m|10m | --patients N] [--dry-run]``."""
    argv = argv or []
    if argv[:1] == ["--child"]:
        print(json.dumps(child(*argv[1:5])))
        return
    options = parse_options(argv)
    if options.dry_run:
        rows = round(options.patients * ROWS_PER_PATIENT)
        print(f"would simulate {options.patients:,} patients (seed {SEED}, about {rows:,} legacy rows), run")
        print(
            f"our pipeline on {WORKERS} workers, then psql and pgloader, and write {RESULTS / 'latest.json'}"
        )
        return
    result = run(options)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    if options.size in SIZES:  # kept per size too: the README's block has a column for each
        (RESULTS / f"latest-{options.size}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("references", "stage_figures", "end_to_end")},
            indent=2,
        )
    )
    for name in result["failed_references"]:
        ref = result["references"][name]
        print(
            f"FAILED reference {name}: {ref['rows_loaded']:,} of {ref['rows_given']:,} rows, exit {ref['exit_code']}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
