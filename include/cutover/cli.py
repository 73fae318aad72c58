"""The ``cutover`` command: simulate a legacy clinic, run a DAG in-process, start a local Airflow.

Every command works on the embedded defaults when nothing is configured: a SQLite legacy
database, an embedded PostgreSQL target, a local staging folder and SQLite for Airflow's
metadata, all under the state folder (``CUTOVER_HOME``, default ``./.state``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cutover.config import CONN_IDS, configured_url, env_var, fields_from_env, redact, state_dir

log = logging.getLogger("cutover")

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


def _conn_json(url: str) -> str:
    fields = fields_from_env(url)
    data: dict[str, Any] = {"conn_type": fields.conn_type}
    for key in ("host", "schema", "login", "password", "port"):
        value = getattr(fields, key)
        if value not in (None, ""):
            data[key] = value
    if fields.extra:
        data["extra"] = fields.extra
    return json.dumps(data)


def airflow_env() -> dict[str, str]:
    """Environment for Airflow on the embedded defaults; configured values are kept."""
    from cutover.embedded import default_url

    home = state_dir()
    env = {
        "CUTOVER_HOME": str(home),
        "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", str(home / "airflow")),
        "AIRFLOW__CORE__DAGS_FOLDER": os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_FOLDER)),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": os.environ.get("AIRFLOW__CORE__UNIT_TEST_MODE", "False"),
    }
    for conn_id in CONN_IDS:
        name = env_var(conn_id)
        env[name] = os.environ.get(name) or _conn_json(default_url(conn_id))
    return env


def _prepare_airflow() -> dict[str, str]:
    env = airflow_env()
    os.environ.update(env)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    marker = Path(env["AIRFLOW_HOME"]) / ".db-migrated"
    from importlib.metadata import version

    stamp = version("apache-airflow")
    if not marker.exists() or marker.read_text() != stamp:
        log.info("preparing Airflow's metadata database (SQLite) under %s", env["AIRFLOW_HOME"])
        with open(Path(env["AIRFLOW_HOME"]) / "db-migrate.log", "wb") as out:
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=os.environ,
                stdout=out,
                stderr=out,
                check=True,
            )
        marker.write_text(stamp)
    return env


def _evidence_line(folder: Path) -> None:
    print(f"evidence: {folder}")


def _print_summary(folder: Path) -> None:
    path = folder / "summary.json"
    if not path.exists():
        return
    summary = json.loads(path.read_text())
    print(f"\n{'legacy table':<16}{'legacy rows':>12}{'migrated':>10}{'merged':>8}{'rejected':>10}")
    for table, row in summary["tables"].items():
        print(
            f"{table:<16}{row['legacy_rows']:>12}{row['migrated']:>10}{row['merged']:>8}{row['rejected']:>10}"
        )


def run_dag(dag_id: str, conf: dict[str, Any]) -> int:
    """Run one DAG in-process with ``dag.test``; 0 when the run succeeded. Ends with the evidence line."""
    code, folder = _run_dag(dag_id, conf)
    if folder is not None:
        _evidence_line(folder)
    return code


def _run_dag(dag_id: str, conf: dict[str, Any]) -> tuple[int, Path | None]:
    _prepare_airflow()
    from airflow.dag_processing.dagbag import BundleDagBag

    from cutover.pipeline import evidence_dir

    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    bag = BundleDagBag(dag_folder=folder, bundle_path=folder)
    if bag.import_errors:
        for path in bag.import_errors:
            print(f"DAG import error in {path}", file=sys.stderr)
        return 2, None
    dag = bag.get_dag(dag_id)
    if dag is None:
        print(f"no DAG {dag_id!r}; known: {', '.join(sorted(bag.dag_ids))}", file=sys.stderr)
        return 2, None
    run = dag.test(run_conf=conf)
    folder = evidence_dir(run.run_id)
    _print_summary(folder)
    print(f"\nrun {run.run_id}: {run.state}")
    return (0 if str(run.state) == "success" else 1), folder


def cmd_simulate(args: argparse.Namespace) -> int:
    from cutover.simulate import simulate

    if args.url:
        url, manifest = args.url, args.manifest
        if manifest is None:
            print("--manifest PATH is required with --url", file=sys.stderr)
            return 2
    else:
        out = Path(args.out).resolve()
        url, manifest = f"sqlite:///{out}", args.manifest
    result = simulate(url, patients=args.patients, seed=args.seed, manifest_path=manifest)
    total = sum(result["tables"].values())
    print(
        f"simulated {args.patients} patients, {total} legacy rows, {len(result['defects'])} planted defects"
    )
    print(f"legacy: {redact(url)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    conf = json.loads(args.conf) if args.conf else {}
    return run_dag(args.dag_id, conf)


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate a legacy clinic under the state folder, then run the cutover on the embedded defaults."""
    from cutover.simulate import simulate

    home = state_dir()
    manifest = None
    if not configured_url("legacy_db"):
        legacy = home / "legacy.db"
        for stale in (legacy, legacy.with_name(legacy.name + ".manifest.json")):
            stale.unlink(missing_ok=True)
        manifest = simulate(f"sqlite:///{legacy}", patients=args.patients, seed=args.seed)
        print(f"simulated legacy clinic: {args.patients} patients (seed {args.seed}) in {legacy}")
    code, folder = _run_dag("pt_cutover", {"mode": "big_bang"})
    if code == 0 and manifest is not None and folder is not None:
        from cutover.embedded import default_url
        from cutover.simulate.verify import format_report, verify_run

        report = verify_run(configured_url("target_db") or default_url("target_db"), manifest)
        (folder / "defect_verification.json").write_text(json.dumps(report, indent=2))
        print("\nplanted defects against the simulator's ground truth:")
        print(format_report(report))
        code = 0 if all(r["ok"] for r in report.values()) else 1
    if folder is not None:
        _evidence_line(folder)
    return code


def cmd_migrate(args: argparse.Namespace) -> int:
    from cutover.embedded import default_url
    from cutover.target import upgrade

    url = configured_url("target_db") or default_url("target_db")
    applied = upgrade(url)
    print(f"target {redact(url)}: applied {applied or 'nothing (up to date)'}")
    return 0


def cmd_mapping_spec(args: argparse.Namespace) -> int:
    from cutover.report.mapping_spec import write_mapping_spec

    for path in write_mapping_spec(Path(args.out).resolve()):
        print(path)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Compare the target's ledger with a simulator manifest's planted defects (ids and codes only)."""
    from cutover.embedded import default_url
    from cutover.simulate.verify import format_report, verify_run

    manifest = json.loads(Path(args.manifest).read_text())
    report = verify_run(configured_url("target_db") or default_url("target_db"), manifest)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if all(r["ok"] for r in report.values()) else 1


def cmd_stop(args: argparse.Namespace) -> int:
    from cutover.embedded import stop_embedded_postgres

    stopped = stop_embedded_postgres()
    print(f"embedded PostgreSQL under {state_dir() / 'pg'}: {'stopped' if stopped else 'not running'}")
    return 0


def cmd_airflow(args: argparse.Namespace) -> int:
    """Start a local Airflow (API server, scheduler, DAG processor, triggerer) for the UI."""
    env = _prepare_airflow()
    print(f"Airflow home: {env['AIRFLOW_HOME']}; UI on http://localhost:{args.port}")
    os.environ["AIRFLOW__API__PORT"] = str(args.port)
    # `airflow standalone` starts its components as `airflow …` subprocesses found on PATH
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # exec: Ctrl-C and SIGTERM reach `airflow standalone` itself, which stops its components
    os.execv(sys.executable, [sys.executable, "-m", "airflow", "standalone"])
    return 0  # not reached


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cutover", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write a simulated legacy PT practice database and its manifest")
    s.add_argument("--patients", type=int, default=2000)
    s.add_argument("--seed", type=int, default=7)
    target = s.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", help="SQLite file to write (manifest: <out>.manifest.json)")
    target.add_argument("--url", help="PostgreSQL or MariaDB/MySQL URL of the legacy database to write")
    s.add_argument("--manifest", help="where to write the manifest (required with --url)")
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser(
        "run", help="run a DAG in-process (dag.test) on the configured or embedded connections"
    )
    r.add_argument("dag_id")
    r.add_argument("--conf", help="JSON run configuration (the DAG's params)")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="simulate a clinic and run the cutover on the embedded defaults")
    d.add_argument("--patients", type=int, default=2000)
    d.add_argument("--seed", type=int, default=7)
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("migrate", help="create or upgrade the target schemas")
    m.set_defaults(func=cmd_migrate)

    ms = sub.add_parser(
        "mapping-spec", help="write the mapping specification (Markdown and HTML) for auditors"
    )
    ms.add_argument("--out", default=".", help="folder to write mapping_spec.md and mapping_spec.html into")
    ms.set_defaults(func=cmd_mapping_spec)

    v = sub.add_parser("verify", help="check the target against a simulator manifest's planted defects")
    v.add_argument("manifest", help="the simulator's <legacy>.manifest.json")
    v.add_argument("--json", help="also write the report as JSON to this file")
    v.set_defaults(func=cmd_verify)

    st = sub.add_parser("stop", help="stop the embedded PostgreSQL of the state folder")
    st.set_defaults(func=cmd_stop)

    a = sub.add_parser("airflow", help="start a local Airflow with the UI on the embedded defaults")
    a.add_argument("--port", type=int, default=8080)
    a.set_defaults(func=cmd_airflow)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
