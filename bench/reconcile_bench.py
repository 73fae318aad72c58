"""Reconciliation on ≥1M rows against reladiff diffing the same two tables, in the same run.

Run: ``python -m bench reconcile`` (never by the tests). Builds a synthetic run of a visits-heavy
clinic (50,000 patients, 1,000 of them merged duplicates, 1,000,000 visits; ids and dates only,
no patient value): the staged extract and mapped Parquet of ``patients``, ``cases`` and
``visits``, the target loaded from them (``pt.patient``, ``pt.episode``, ``pt.visit`` and the
crosswalk), and the same normalised visits as a source table ``src_visit (id, patient_id,
visit_date)`` in a separate database. Five changes are then planted in ``pt.visit`` (three dates
changed, one visit moved to another patient, one deleted).

Timed, each from a cold start of its own work:

- ``cutover``: :func:`cutover.reconcile.reconcile` on the run: every legacy id through the
  crosswalk, every target row present and accounted for, and per-patient chart checksums from the
  Parquet and from the target, bisected (it checks more than the visits diff does);
- ``reladiff``: ``reladiff.diff_tables`` (hashdiff, key-segmented checksums and bisection, the
  algorithm data-diff made known) of ``src_visit`` against ``pt.visit`` on ``(patient_id,
  visit_date)``, the differing rows fully listed.

Both must find the planted changes. Prints the times and the ratio cutover/reladiff and writes
``bench/results/reconcile.json``. PostgreSQL: the system server on 127.0.0.1:5432 if it answers,
else the embedded one.

``python -m bench reconcile --clinic [--patients 10000] [--repeat 3] [--profile]``: the
reconciliation of a whole simulated clinic instead (every chart table, merged duplicates, rejects,
exploded rows), as ``python -m bench pipeline`` runs it: the clinic is simulated (seed 17, as the
pipeline bench), extracted, mapped and loaded once into the database ``bench_reconcile_clinic``
and the folder ``$TMPDIR/cutover-reconcile-clinic-<patients>`` (kept for the next call; ``--rebuild`` makes
them again), then :func:`cutover.reconcile.reconcile` is timed ``--repeat`` times, each with its
phases and the load average; ``--profile`` adds a cProfile of one more run (the top functions by
cumulative time). Writes ``bench/results/reconcile_clinic.json``.
"""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

PATIENTS = 50_000
DUPLICATES = 1_000
VISITS = 1_000_000
SEED = 5
RUN = "bench-reconcile"
SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).parent / "results"
TARGET_DB, SOURCE_DB = "bench_reconcile_target", "bench_reconcile_source"


def _server_url() -> tuple[str, str]:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return SYSTEM_PG, "system 127.0.0.1:5432"
    except OSError:
        from cutover.embedded import default_url

        return default_url("target_db"), "embedded (pgserver)"


def _with_db(url: str, name: str) -> str:
    return urlsplit(url)._replace(path="/" + name).geturl()


def _copy(conn: psycopg.Connection[Any], table: str, data: pa.Table) -> None:
    sink = io.BytesIO()
    pacsv.write_csv(data, sink, pacsv.WriteOptions(include_header=False))
    with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
        copy.write(sink.getvalue())


def legacy_data() -> dict[str, pa.Table]:
    """Synthetic legacy keys: patients (the last DUPLICATES merged into the first ones), one case each, visits."""
    rng = np.random.default_rng(SEED)
    n = PATIENTS + DUPLICATES
    pat = np.arange(1, n + 1, dtype=np.int64)
    merge_into = np.where(pat > PATIENTS, pat - PATIENTS, 0)
    visit_pat = rng.integers(1, n + 1, size=VISITS, dtype=np.int64)
    days = rng.integers(18_000, 20_500, size=VISITS).astype(np.int32)
    return {
        "patients": pa.table({"pat_id": pat, "merge_into": merge_into}),
        "cases": pa.table({"case_id": pat, "pat_id": pat}),
        "visits": pa.table(
            {
                "visit_id": np.arange(1, VISITS + 1, dtype=np.int64),
                "pat_id": visit_pat,
                "case_id": visit_pat,
                "visit_date": pa.array(days, pa.int32()).cast(pa.date32()),
            }
        ),
    }


def stage(store_url: str, data: dict[str, pa.Table]) -> None:
    """The run's extract and mapped Parquet, as the pipeline stages them (other tables empty)."""
    from cutover.legacy.schema import LEGACY_TABLES
    from cutover.legacy.source import arrow_schema
    from cutover.mapping.specs import SPECS
    from cutover.pipeline import migrated_tables, run_key
    from cutover.staging.parquet import write_batches
    from cutover.staging.store import open_store

    store = open_store(store_url)
    prefix = f"runs/{run_key(RUN)}"
    for table in migrated_tables():
        given = data.get(table)
        rows = given.num_rows if given is not None else 0
        schema = arrow_schema(LEGACY_TABLES[table].columns)
        key = LEGACY_TABLES[table].key
        extract = pa.table(
            {
                f.name: (given[key] if given is not None and f.name == key else pa.nulls(rows, f.type))
                for f in schema
            },
            schema=schema,
        )
        write_batches(
            store, f"{prefix}/extract/{table}", extract.to_batches(), schema=schema, rows_per_part=100_000
        )
        spec = SPECS[table]
        mapped_cols: dict[str, Any] = {}
        if given is not None:
            ids = given[key].cast(pa.string())
            mapped_cols = {"legacy_id": ids, "row_key": ids}
            if "pat_id" in given.column_names and table != "patients":
                mapped_cols["ref_patient_id"] = given["pat_id"].cast(pa.string())
            if table == "visits":
                mapped_cols["ref_episode_id"] = given["case_id"].cast(pa.string())
                mapped_cols["visit_date"] = given["visit_date"]
            if table == "patients":
                merge = given["merge_into"].to_numpy()
                mapped_cols["merge_into"] = pa.array(
                    [str(m) if m else None for m in merge.tolist()], pa.string()
                )
        mapped = pa.table(
            {
                f.name: mapped_cols.get(f.name, pa.nulls(rows, f.type)).cast(f.type)
                for f in spec.staged_schema
            },
            schema=spec.staged_schema,
        )
        write_batches(
            store,
            f"{prefix}/mapped/{table}",
            mapped.to_batches(),
            schema=spec.staged_schema,
            rows_per_part=100_000,
        )


_LOAD = """
INSERT INTO migration.run (run_id, dag_id, state) VALUES (%(run)s, 'bench', 'running');
INSERT INTO pt.patient (id, family_name, given_name, birth_date)
    SELECT migration.legacy_uuid('legacy', 'patients', pat_id), 'Bench', 'Synthetic', DATE '1970-01-01'
      FROM l_patients WHERE merge_into = 0;
INSERT INTO migration.crosswalk (legacy_system, legacy_table, legacy_id, new_table, new_id, outcome, merged_into, run_id)
    SELECT 'legacy', 'patients', pat_id::text, 'patient', migration.legacy_uuid('legacy', 'patients', pat_id),
           CASE WHEN merge_into = 0 THEN 'migrated' ELSE 'merged' END,
           CASE WHEN merge_into = 0 THEN NULL ELSE migration.legacy_uuid('legacy', 'patients', merge_into) END,
           %(run)s
      FROM l_patients;
CREATE TABLE survivor AS SELECT legacy_id::bigint AS pat_id, coalesce(merged_into, new_id) AS patient_id
    FROM migration.crosswalk WHERE legacy_table = 'patients';
INSERT INTO pt.episode (id, patient_id, start_date)
    SELECT migration.legacy_uuid('legacy', 'cases', c.case_id), s.patient_id, DATE '2019-01-01'
      FROM l_cases c JOIN survivor s USING (pat_id);
INSERT INTO migration.crosswalk (legacy_system, legacy_table, legacy_id, new_table, new_id, outcome, run_id)
    SELECT 'legacy', 'cases', case_id::text, 'episode', migration.legacy_uuid('legacy', 'cases', case_id), 'migrated', %(run)s
      FROM l_cases;
INSERT INTO pt.visit (id, episode_id, patient_id, visit_date, note_type)
    SELECT migration.legacy_uuid('legacy', 'visits', v.visit_id), migration.legacy_uuid('legacy', 'cases', v.case_id),
           s.patient_id, v.visit_date, 'daily_note'
      FROM l_visits v JOIN survivor s USING (pat_id);
INSERT INTO migration.crosswalk (legacy_system, legacy_table, legacy_id, new_table, new_id, outcome, run_id)
    SELECT 'legacy', 'visits', visit_id::text, 'visit', migration.legacy_uuid('legacy', 'visits', visit_id), 'migrated', %(run)s
      FROM l_visits;
"""

# Five planted changes: three visit dates, one visit moved to another patient, one visit deleted.
_PLANT = """
WITH picked AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM pt.visit ORDER BY id LIMIT 5)
UPDATE pt.visit v SET visit_date = v.visit_date + 1 FROM picked p WHERE v.id = p.id AND p.n <= 3;
UPDATE pt.visit SET patient_id = (SELECT id FROM pt.patient ORDER BY id LIMIT 1)
 WHERE id = (SELECT id FROM pt.visit ORDER BY id OFFSET 3 LIMIT 1);
DELETE FROM pt.visit WHERE id = (SELECT id FROM pt.visit ORDER BY id OFFSET 4 LIMIT 1);
"""


def build(admin: str, folder: Path, data: dict[str, pa.Table]) -> tuple[str, str, str]:
    from cutover.pipeline import prepare_target

    for name in (TARGET_DB, SOURCE_DB):
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
    target, source = _with_db(admin, TARGET_DB), _with_db(admin, SOURCE_DB)
    store = f"file://{folder / 'stage'}"
    stage(store, data)
    prepare_target(target)
    with psycopg.connect(target) as conn:
        conn.execute("CREATE TABLE l_patients (pat_id bigint, merge_into bigint)")
        conn.execute("CREATE TABLE l_cases (case_id bigint, pat_id bigint)")
        conn.execute(
            "CREATE TABLE l_visits (visit_id bigint, pat_id bigint, case_id bigint, visit_date date)"
        )
        for table in ("patients", "cases", "visits"):
            _copy(conn, f"l_{table}", data[table])
        for statement in filter(str.strip, _LOAD.split(";")):
            conn.execute(statement, {"run": RUN})  # type: ignore[arg-type]
        conn.execute("DROP TABLE l_patients, l_cases, l_visits, survivor")
        conn.execute("ANALYZE")
    # the source side for reladiff: the same normalised visits, copied before anything is planted
    with psycopg.connect(source) as src, psycopg.connect(target) as tgt:
        src.execute(
            "CREATE TABLE src_visit (id uuid PRIMARY KEY, patient_id uuid NOT NULL, visit_date date NOT NULL)"
        )
        read = "COPY (SELECT id, patient_id, visit_date FROM pt.visit) TO STDOUT (FORMAT binary)"
        with (
            tgt.cursor().copy(read) as out,
            src.cursor().copy("COPY src_visit FROM STDIN (FORMAT binary)") as into,
        ):
            for block in out:
                into.write(block)
        src.execute("ANALYZE src_visit")
    with psycopg.connect(target) as conn:
        for statement in filter(str.strip, _PLANT.split(";")):
            conn.execute(statement)  # type: ignore[arg-type]
    return target, source, store


def time_cutover(target: str, store: str) -> dict[str, Any]:
    from cutover.reconcile import reconcile

    started = time.perf_counter()
    report = reconcile(target, store, RUN, max_failure_rate=1.0)
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "failures_by_kind": report.failures_by_kind,
        "patients_compared": report.patients_compared,
        "patients_mismatched": report.patients_mismatched,
        "bisection": report.bisection,
        "phases": report.phases,
        "legacy_rows": sum(t["legacy_rows"] for t in report.tables.values()),
    }


def time_reladiff(source: str, target: str) -> dict[str, Any]:
    import reladiff

    started = time.perf_counter()
    ours = reladiff.connect_to_table(source, "src_visit", "id")
    theirs = reladiff.connect_to_table(target, ("pt", "visit"), "id")
    diff = list(
        reladiff.diff_tables(
            ours, theirs, extra_columns=("patient_id", "visit_date"), algorithm=reladiff.Algorithm.HASHDIFF
        )
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "rows_differing": len({key for _, (key, *_rest) in diff}),
        "diff_lines": len(diff),
    }


CLINIC_DB = "bench_reconcile_clinic"
CLINIC_RUN = "bench__reconcile_clinic"
CLINIC_SEED = 17
CLINIC_AS_OF = "2026-11-27"


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def build_clinic(admin: str, folder: Path, patients: int) -> tuple[str, str]:
    """A simulated clinic staged and loaded as the pipeline bench does it (serially); (target, store)."""
    import subprocess
    import sys
    from datetime import date

    from cutover import pipeline
    from cutover.loading.bulk import defer_constraints, restore_constraints

    folder.mkdir(parents=True, exist_ok=True)
    legacy = folder / "legacy.db"
    if not legacy.exists():
        command = [sys.executable, "-m", "cutover.cli", "simulate", "--patients", str(patients)]
        command += ["--seed", str(CLINIC_SEED), "--out", str(legacy)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {CLINIC_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {CLINIC_DB}")
    target, store = _with_db(admin, CLINIC_DB), f"file://{folder / 'stage'}"
    legacy_url = f"sqlite:///{legacy}"
    pipeline.prepare_target(target)
    pipeline.begin_run(target, CLINIC_RUN, "bench", {"mode": "big_bang"}, "bench")
    tables = pipeline.migrated_tables()
    for table in tables:
        pipeline.extract_table(legacy_url, store, CLINIC_RUN, table)
        pipeline.map_table(store, CLINIC_RUN, table, as_of=date.fromisoformat(CLINIC_AS_OF))
    defer_constraints(target, CLINIC_RUN)
    for table in tables:
        pipeline.load_mapped(target, store, CLINIC_RUN, table)
    restore_constraints(target, CLINIC_RUN)
    (folder / "built.json").write_text(json.dumps({"patients": patients, "target": target, "store": store}))
    return target, store


def _fresh_copy(admin: str) -> str:
    """A copy of the loaded clinic's target (``CREATE DATABASE … TEMPLATE``), replacing the last one."""
    name = f"{CLINIC_DB}_copy"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {CLINIC_DB}")
    return _with_db(admin, name)


def clinic(argv: list[str]) -> None:
    """``--clinic``: time the reconciliation of a simulated clinic (see the module's docstring)."""
    import argparse
    import cProfile
    import pstats

    parser = argparse.ArgumentParser(prog="python -m bench reconcile --clinic")
    parser.add_argument("--clinic", action="store_true")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    admin, server = _server_url()
    folder = Path(tempfile.gettempdir()) / f"cutover-reconcile-clinic-{args.patients}"
    os.environ.setdefault("CUTOVER_HOME", str(folder / "home"))
    built = folder / "built.json"
    if args.rebuild or not built.exists():
        t0 = time.perf_counter()
        _, store = build_clinic(admin, folder, args.patients)
        print(f"built the clinic of {args.patients:,} patients in {time.perf_counter() - t0:.0f}s")
    else:
        known = json.loads(built.read_text())
        store = known["store"]
    from cutover.reconcile import reconcile

    runs = []
    for _ in range(args.repeat):
        # a fresh copy of the loaded target each time: as right after the load (no statistics yet)
        copy = _fresh_copy(admin)
        before = _load_average()
        started = time.perf_counter()
        report = reconcile(copy, store, CLINIC_RUN, max_failure_rate=1.0)
        seconds = round(time.perf_counter() - started, 2)
        runs.append(
            {
                "seconds": seconds,
                "load_average": {"start": before, "end": _load_average()},
                "phases": report.phases,
                "failures_by_kind": report.failures_by_kind,
                "patients_compared": report.patients_compared,
                "passed": report.passed,
            }
        )
        print(
            f"reconcile: {seconds}s (load {before[0]}), phases {report.phases}, failures {report.failures_by_kind}"
        )
    if args.profile:
        copy = _fresh_copy(admin)
        profiler = cProfile.Profile()
        profiler.runcall(reconcile, copy, store, CLINIC_RUN, max_failure_rate=1.0)
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
    result = {"server": server, "patients": args.patients, "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reconcile_clinic.json").write_text(json.dumps(result, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    if argv and "--clinic" in argv:
        clinic(argv)
        return
    import reladiff  # noqa: F401 - fail before building anything if it is not installed

    admin, server = _server_url()
    data = legacy_data()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("CUTOVER_HOME", str(Path(tmp) / "home"))
        t0 = time.perf_counter()
        target, source, store = build(admin, Path(tmp), data)
        print(
            f"built {VISITS:,} visits of {PATIENTS + DUPLICATES:,} legacy patients in {time.perf_counter() - t0:.0f}s"
        )
        cutover = time_cutover(target, store)
        reladiff_result = time_reladiff(source, target)
        for name in (TARGET_DB, SOURCE_DB):
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    ratio = round(cutover["seconds"] / reladiff_result["seconds"], 3)
    import importlib.metadata as md

    result = {
        "server": server,
        "rows": {"patients": PATIENTS + DUPLICATES, "visits": VISITS, "planted_changes": 5},
        "cutover": cutover,
        "reladiff": {**reladiff_result, "version": md.version("reladiff"), "algorithm": "hashdiff"},
        "ratio_cutover_over_reladiff": ratio,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reconcile.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"cutover.reconcile: {cutover['seconds']}s, failures {cutover['failures_by_kind']}")
    print(
        f"reladiff {result['reladiff']['version']} hashdiff: {reladiff_result['seconds']}s, {reladiff_result['rows_differing']} rows differ"
    )
    print(f"ratio cutover/reladiff: {ratio}")


if __name__ == "__main__":
    main()
