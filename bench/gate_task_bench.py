"""One gate task's time, whole and its computation, on a simulated clinic kept between runs.

Run: ``python -m bench gate_task --build DIR`` once (10,000 patients, seed 17, about 1.07M legacy
rows: simulated, extracted, mapped and loaded into the database ``gate_task_bench`` on
127.0.0.1:5432, as ``pt_cutover`` does into an empty target), then
``python -m bench gate_task --run DIR [--gate target] [--repeats 3]`` as often as a change needs.

Each repeat is a fresh process, as an Airflow task is without a preloaded worker. Reported per gate,
as medians: ``import_seconds`` (``cutover.validation.runner`` and GX, what a worker that preloads
them pays once), ``task_seconds`` (:func:`~cutover.validation.runner.run_gate` from its call to its
return: GX's context, suites, computation, results store, data docs; the mapped and target gates
find the other gates' suite pages there, as in a run), ``compute_seconds`` (the sum of
its ``table_seconds``: the rules computed), and the load average (1 minute) before and after each
repeat, since the machine is shared. Not run by the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.gates_bench import RUN_ID

SEED = 17
AS_OF = date(2026, 11, 27)
DATABASE = "gate_task_bench"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _urls(work: Path) -> tuple[str, str, str]:
    return (
        f"sqlite:///{work / 'legacy.db'}",
        f"file://{work / 'staging'}",
        ADMIN.rsplit("/", 1)[0] + "/" + DATABASE,
    )


def build(work: Path, patients: int) -> None:
    import psycopg

    from bench.gates_bench import build as load
    from cutover.simulate import simulate

    work.mkdir(parents=True, exist_ok=True)
    os.environ["CUTOVER_HOME"] = str(work / "home")
    legacy, store, target = _urls(work)
    rows = sum(simulate(legacy, patients=patients, seed=SEED)["tables"].values())
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    load(legacy, store, target)
    (work / "clinic.json").write_text(json.dumps({"patients": patients, "legacy_rows": rows}) + "\n")
    print(json.dumps({"patients": patients, "legacy_rows": rows}))


def step(work: Path, gate: str) -> dict[str, Any]:
    """One gate task in this process (``--step``)."""
    began = os.getloadavg()[0]
    started = time.perf_counter()
    import great_expectations  # noqa: F401

    from cutover.validation.runner import GateFailed, run_gate

    imported = time.perf_counter() - started
    _, store, target = _urls(work)
    out = work / "out" / f"{gate}-{os.getpid()}"
    if gate != "extract":  # as in a run, where the extract gate, first, rendered every suite's page
        from cutover.validation.catalog import GATES, catalog

        for other in GATES:
            for table in catalog().by_gate[other] if other != gate else ():
                page = out / "data_docs" / "expectations" / other / f"{table}.html"
                page.parent.mkdir(parents=True, exist_ok=True)
                page.write_text("<html></html>\n")
    started = time.perf_counter()
    report = None
    # a failed gate is a finding about the simulated clinic's planted defects: it ran to the end
    with contextlib.suppress(GateFailed):
        report = run_gate(gate, store_url=store, run_id=RUN_ID, target_url=target, out_dir=out)  # type: ignore[arg-type]
    task = time.perf_counter() - started
    seconds = (
        report.table_seconds
        if report
        else json.loads((out / f"gate_{gate}.json").read_text())["table_seconds"]
    )
    return {
        "import_seconds": round(imported, 3),
        "task_seconds": round(task, 3),
        "compute_seconds": round(sum(seconds.values()), 3),
        "load_average": [round(began, 2), round(os.getloadavg()[0], 2)],
    }


def forked(work: Path, gate: str) -> dict[str, Any]:
    """``--forked``: as a worker that preloaded :mod:`cutover.validation.preload` runs a task, in a
    process forked from this one after the preload (not timed, as a worker's start is not)."""
    import cutover.validation.preload  # noqa: F401

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the task
        os.close(read)
        os.write(write, json.dumps(step(work, gate)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        found: dict[str, Any] = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return found


def run(
    work: Path, gates: list[str], repeats: int, against: Path | None = None, fork: bool = False
) -> dict[str, Any]:
    """Each gate ``repeats`` times; with ``against`` (another checkout, e.g. a ``git worktree`` of the
    commit before a change), each repeat runs there too, right after, so both see the same machine;
    with ``fork``, this checkout's tasks run forked from a preloaded process (:func:`forked`)."""
    env = {**os.environ, "CUTOVER_HOME": str(work / "home")}
    sides = {"": env}
    if against is not None:
        sides["before:"] = {**env, "PYTHONPATH": str(against.resolve() / "include")}
    runs: dict[str, list[dict[str, Any]]] = {f"{side}{g}": [] for g in gates for side in sides}
    for _ in range(repeats):  # interleaved, so a busy moment of the machine spreads over the gates
        for gate in gates:
            for side, side_env in sides.items():
                how = "--forked" if fork and not side else "--step"
                out = subprocess.run(
                    [sys.executable, "-m", "bench.gate_task_bench", how, str(work), gate],
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=Path(__file__).parents[1],
                    env=side_env,
                )
                runs[side + gate].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"  {side}{gate}: {runs[side + gate][-1]}", flush=True)
    result = {
        gate: {
            **{
                key: statistics.median(r[key] for r in found)
                for key in ("import_seconds", "task_seconds", "compute_seconds")
            },
            "load_average": [
                min(r["load_average"][0] for r in found),
                max(r["load_average"][1] for r in found),
            ],
        }
        for gate, found in runs.items()
    }
    print(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench gate_task")
    parser.add_argument("--build", type=Path)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--gate", action="append", choices=["extract", "mapped", "target"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step", nargs=2)
    parser.add_argument("--forked", nargs=2, help="one step forked from a preloaded process")
    parser.add_argument("--fork", action="store_true", help="run this checkout's steps as --forked")
    parser.add_argument("--against", type=Path, help="another checkout to time in the same run")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.step:
        print(json.dumps(step(Path(args.step[0]), args.step[1])))
    elif args.forked:
        print(json.dumps(forked(Path(args.forked[0]), args.forked[1])))
    elif args.build:
        build(args.build, args.patients)
    elif args.run:
        run(args.run, args.gate or ["extract", "mapped", "target"], args.repeats, args.against, args.fork)
    else:
        parser.error("--build DIR or --run DIR")


if __name__ == "__main__":
    main()
