"""The ``cutover`` command: simulate a legacy clinic, run a DAG in-process, start a local Airflow.

Every command works on the embedded defaults when nothing is configured: a SQLite legacy
database, an embedded PostgreSQL target, a local staging folder and SQLite for Airflow's
metadata, all under the state folder (``CUTOVER_HOME``, default ``./.state``).

``cutover run`` and ``cutover demo`` print a line per stage (:mod:`cutover.console`); Airflow's
task logs go to the run's log file under ``<state>/logs/`` (``--debug``: to the console).

A user's mistake is one line: a Cutover error (:mod:`cutover.errors`), a missing file, an unknown
DAG or legacy table prints ``error: …`` on stderr and exits with 2; ``cutover --debug …`` shows
the traceback instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from cutover.config import configured_url, redact, state_dir
from cutover.errors import ConfigError, CutoverError, UnknownNameError


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


def run_dag(dag_id: str, conf: dict[str, Any], resume: str | None = None, *, verbose: bool = False) -> int:
    """Run one DAG in-process with ``dag.test``; 0 when the run succeeded. Ends with the evidence line.

    ``resume``: the id of an earlier run (of this state folder) to run again under the same id, so
    its batch ledger skips every batch that run finished (after a crash or a kill). ``verbose``:
    Airflow's task logs on the console rather than in the run's log file.
    """
    code, folder = _run_dag(dag_id, conf, resume, verbose=verbose)
    if folder is not None:
        _evidence_line(folder)
    return code


def _logical_date(run_id: str) -> Any:
    """The logical date a manual run's id was made from (``manual__<ISO date>``)."""
    from datetime import datetime

    kind, _, stamp = run_id.partition("__")
    try:
        if kind != "manual":
            raise ValueError(kind)
        return datetime.fromisoformat(stamp)
    except ValueError:
        raise ConfigError(
            f"--resume takes a manual run id such as manual__2026-11-27T18:00:00+00:00, not {run_id!r}"
        ) from None


def _last_line(traceback_text: str) -> str:
    """The exception line of an import error's traceback (what was wrong), without the frames."""
    lines = [line.strip() for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def _paused(dag_id: str) -> bool:
    """Whether the metadata database knows ``dag_id`` and holds it paused (a DAG never run is not known)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        paused = session.execute(select(DagModel.is_paused).where(DagModel.dag_id == dag_id)).scalar()
    return bool(paused)


def _load_dag(dag_id: str, out: TextIO) -> Any:
    """Airflow prepared, the DAG parsed: only the DAG asked for must import."""
    from cutover.local_airflow import prepare_airflow

    prepare_airflow()
    from airflow.dag_processing.dagbag import BundleDagBag

    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    bag = BundleDagBag(dag_folder=folder, bundle_path=folder)
    # only the DAG asked for must import: a broken cutover plan stops pt_cutover, not pt_backup
    broken = {Path(p).stem: text for p, text in bag.import_errors.items()}
    for name in sorted(set(broken) - {dag_id}):
        print(f"warning: DAG {name} does not import ({_last_line(broken[name])}); running {dag_id}", file=out)
    if dag_id not in bag.dag_ids and dag_id in broken:
        error = ConfigError(f"DAG {dag_id} does not import: {_last_line(broken[dag_id])}")
        error.add_note(broken[dag_id])  # printed with the traceback under --debug
        raise error
    if dag_id not in bag.dag_ids:
        raise UnknownNameError("DAG", dag_id, sorted(bag.dag_ids))
    dag = bag.get_dag(dag_id)
    if _paused(dag_id):
        print(
            f"note: {dag_id} is paused in this Airflow: this command runs it directly, but a run triggered "
            "from the UI or the REST API stays queued until a data engineer unpauses it",
            file=out,
        )
    # Airflow 3.3.2's dag.test cannot run a DAG with a DeadlineAlert (it fails as the run ends,
    # pruning the deadlines). Nothing would watch it in-process anyway: deadlines are the
    # scheduler's and the triggerer's, so a scheduled deployment keeps pt_cutover's.
    dag.deadline = None
    return dag


def _resumed(dag_id: str, resume: str, conf: dict[str, Any], when: Any) -> dict[str, Any]:
    """``dag.test``'s arguments to run a killed run again under its id (and so its batch ledger)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.execute(
            select(DagRun.logical_date, DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == resume)
        ).first()
    if found is None:
        # a well-formed id of no run would silently start a new run under that id
        raise ConfigError(f"--resume: {dag_id} has no run {resume} in this state folder to resume")
    logical, earlier_conf = found
    # dag.test names a run after its run_after and replaces the run of the same logical date: give
    # it both of the killed run's; the run as it was asked for: its own parameters, then any given now
    return {"run_conf": {**(earlier_conf or {}), **conf}, "logical_date": logical or when, "run_after": when}


def _log_path(dag_id: str, run_id: str) -> Path:
    """Where a run's own output (Airflow's task logs, pg_dump's…) goes: ``<state>/logs/<dag>/<run key>.log``."""
    from cutover.pipeline import run_key

    return state_dir() / "logs" / (run_key(dag_id).lstrip(".") or "dag") / f"{run_key(run_id)}.log"


def _discard(path: Path) -> None:
    """Remove a run's log that the run never got to (an unknown DAG, a bad --resume)."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only when empty


def _trial_estimate() -> str | None:
    """The newest trial's extrapolation of the full run in this state folder (``sample_estimate.json``)."""
    from cutover.console import estimate_text

    found = sorted((state_dir() / "evidence").rglob("sample_estimate.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    estimate = json.loads(found[-1].read_text())
    text = estimate_text(estimate) if isinstance(estimate, dict) else None
    return f"trial {estimate.get('run_id') or found[-1].parent.name}: {text}" if text else None


def _run_dag(
    dag_id: str,
    conf: dict[str, Any],
    resume: str | None = None,
    *,
    verbose: bool = False,
    summary: bool = True,
) -> tuple[int, Path | None]:
    """Run a DAG with ``dag.test``: a line per stage on the console, everything else in the run's log
    (on the console too with ``verbose``); then the per-table summary (unless ``summary`` is off)
    and ``run <run id>: <state>``."""
    from datetime import UTC, datetime

    from cutover import console

    when = _logical_date(resume) if resume else datetime.now(UTC)
    run_id = resume or f"manual__{when.isoformat()}"  # dag.test's id for a manual run after `when`
    log_file = None if verbose else _log_path(dag_id, run_id)
    fresh = log_file is not None and not log_file.exists()
    with console.redirect_output(log_file) as out:
        try:
            dag = _load_dag(dag_id, out)
            if resume:
                kwargs = _resumed(dag_id, resume, conf, when)
            else:  # both dates given, as dag.test would take them, so the run's id (and log) is known now
                kwargs = {"run_conf": conf, "logical_date": when, "run_after": when}
        except BaseException:
            if log_file is not None and fresh:
                _discard(log_file)
            raise
        progress = console.Progress(out, log=log_file, live=console.is_terminal(out) and not verbose)
        if log_file is not None:
            progress.line(f"logs: {log_file}")
        if dag_id == "pt_cutover" and (estimate := _trial_estimate()):
            progress.line(estimate)
        with console.reporting_tasks(progress) as seen:
            run = dag.test(**kwargs)
        failed = str(run.state) != "success"
        progress.finish(
            console.not_run(console.task_states(dag_id, run.run_id)) if failed else None,
            errors_from_log=failed and not seen,
        )
    if log_file is not None and run.run_id != run_id:  # a later Airflow naming its runs otherwise
        named = _log_path(dag_id, run.run_id)
        log_file.replace(named)
        print(f"logs: {named}")
    from cutover.pipeline import latest_evidence

    folder = latest_evidence(run.run_id)
    if summary:
        _print_summary(folder)
    print(f"\nrun {run.run_id}: {run.state}")
    return (0 if not failed else 1), folder


def cmd_simulate(args: argparse.Namespace) -> int:
    from cutover.simulate import simulate
    from cutover.simulate.practice import MIN_PATIENTS

    if args.format == "webpt-extract":
        from cutover.simulate.__main__ import write_delivery
        from cutover.simulate.webpt import manifest_path

        if args.url or not args.out:
            raise ConfigError("--format webpt-extract writes a folder: give --out DIR, not --url")
        tables = write_delivery(
            args.out,
            patients=args.patients,
            seed=args.seed,
            manifest=args.manifest,
            previous=args.next_delivery,
        )
        folder = Path(args.out).resolve()
        what = (
            f"the delivery after {args.next_delivery}" if args.next_delivery else f"{args.patients} patients"
        )
        print(f"wrote a WebPT extract of {what}: {len(tables)} files, {sum(tables.values())} rows")
        print(f"delivery: {folder}")
        print(f"manifest: {Path(args.manifest).resolve() if args.manifest else manifest_path(folder)}")
        return 0
    if args.next_delivery:
        raise ConfigError("--next-delivery writes a WebPT extract: give --format webpt-extract")
    if args.patients < MIN_PATIENTS:
        raise ConfigError(f"--patients must be at least {MIN_PATIENTS} (a clinic of every record kind)")

    if args.url:
        from cutover.simulate.writers import require_sqlite_folder

        url, manifest = args.url, args.manifest
        if manifest is None:
            raise ConfigError("--manifest PATH is required with --url")
        require_sqlite_folder(url)
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
    try:
        conf = json.loads(args.conf) if args.conf else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--conf is not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(conf, dict):
        raise ConfigError('--conf must be a JSON object, such as \'{"mode": "big_bang"}\'')
    return run_dag(args.dag_id, conf, args.resume, verbose=args.debug)


def _check_planted_defects(folder: Path, manifest: dict[str, Any]) -> tuple[int, Path]:
    """The demo's last step: what the cutover did with every defect the simulator planted, recorded
    in the run's evidence and printed; 1 when any kind disagrees. Returns the evidence folder."""
    from cutover.embedded import default_url
    from cutover.simulate.verify import format_report, verify_run

    report = verify_run(configured_url("target_db") or default_url("target_db"), manifest)
    from cutover.audit import os_user
    from cutover.evidence import bundle_run_id, writable
    from cutover.pipeline import seal_evidence

    # the run is sealed: the check goes to a new version of its evidence, sealed in turn
    run_id = bundle_run_id(folder)
    (writable(run_id, "pt_cutover") / "defect_verification.json").write_text(json.dumps(report, indent=2))
    sealed = seal_evidence(
        configured_url("staging_store") or default_url("staging_store"),
        run_id,
        target_url=configured_url("target_db") or default_url("target_db"),
        actor=os_user(),
        dag_id="pt_cutover",
    )
    folder = Path(sealed["evidence"])
    print("\nplanted defects against the simulator's ground truth:")
    print(format_report(report))
    code = 0 if all(r["ok"] for r in report.values()) else 1
    return code, folder


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate a legacy clinic, then back it up, run the trial and the big-bang cutover on the embedded defaults."""
    from cutover.simulate import simulate

    home = state_dir()
    manifest = None
    if not configured_url("legacy_db"):
        legacy = home / "legacy.db"
        for stale in (legacy, legacy.with_name(legacy.name + ".manifest.json")):
            stale.unlink(missing_ok=True)
        manifest = simulate(f"sqlite:///{legacy}", patients=args.patients, seed=args.seed)
        print(f"simulated legacy clinic: {args.patients} patients (seed {args.seed}) in {legacy}")
    for dag_id, conf in (("pt_backup", {}), ("pt_sample_transfer", {}), ("pt_cutover", {"mode": "big_bang"})):
        print(f"\n== {dag_id}")
        # the summary of the run the demo ends with: the trial's (of a sample) is in its evidence
        code, folder = _run_dag(dag_id, conf, verbose=args.debug, summary=dag_id == "pt_cutover")
        if code != 0:
            break
    if code == 0 and manifest is not None and folder is not None:
        from cutover.console import logging_to
        from cutover.evidence import bundle_run_id

        # what the check logs (a new version of the evidence, sealed) goes to the cutover run's log
        with logging_to(None if args.debug else _log_path("pt_cutover", bundle_run_id(folder))):
            code, folder = _check_planted_defects(folder, manifest)
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


def cmd_trace(args: argparse.Namespace) -> int:
    """Where one legacy record went; the lookup is recorded in the audit log."""
    from cutover.trace import cmd_trace as trace

    return trace(args)


def _target_url() -> str:
    from cutover.embedded import default_url

    return configured_url("target_db") or default_url("target_db")


def cmd_runs(args: argparse.Namespace) -> int:
    """The target's runs, newest first; a run that was killed is marked failed first."""
    from cutover.runs import list_runs

    rows = list_runs(_target_url())
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'run id':<40} {'dag':<20} {'mode/wave':<18} {'state':<12} {'started':<20} {'finished':<20} by")
    for r in rows:
        scope = "/".join(str(v) for v in (r["mode"], r["wave"]) if v) or "-"
        times = [f"{t:%Y-%m-%d %H:%M:%S}" if t else "-" for t in (r["started"], r["finished"])]
        state = r["state"] + ("*" if r["holds_target"] else "")
        print(
            f"{r['run_id']:<40} {r['dag_id']:<20} {scope:<18} {state:<12} {times[0]:<20} {times[1]:<20} "
            f"{r['triggered_by'] or '-'}"
        )
    if any(r["holds_target"] for r in rows):
        print("* holds the target")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Recompute the audit log's hash chain: one line, OK with the head or the first broken entry."""
    from cutover.audit import parse_anchor, verify

    report = verify(_target_url(), anchor=parse_anchor(args.anchor) if args.anchor else None)
    print(json.dumps(report.as_dict()) if args.json else report.line())
    return 0 if report.ok else 1


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    """Check a run's evidence chain: every version's seal, the bundles it links, the store's copies
    and the target's record; a line per version and problem, non-zero exit when anything differs."""
    from cutover.embedded import default_url
    from cutover.evidence import format_checks, verify_chain

    store = configured_url("staging_store") or default_url("staging_store")
    target = None if args.no_target else _target_url()
    checks = verify_chain(args.run, store_url=store, target_url=target)
    for line in format_checks(checks):
        print(line)
    return 0 if all(c.ok for c in checks) else 1


def cmd_stop(args: argparse.Namespace) -> int:
    from cutover.embedded import stop_embedded_postgres

    stopped = stop_embedded_postgres()
    print(f"embedded PostgreSQL under {state_dir() / 'pg'}: {'stopped' if stopped else 'not running'}")
    return 0


def cmd_airflow(args: argparse.Namespace) -> int:
    """Start a local Airflow (API server, scheduler, DAG processor, triggerer) for the UI."""
    from cutover.local_airflow import start_airflow

    return start_airflow(args.port)


def cmd_profile_check(args: argparse.Namespace) -> int:
    """Check a legacy profile: each problem one line (file:line: field: what is wrong); 1 when any."""
    from cutover.legacy.profile_check import check_ref

    problems, summary = check_ref(args.profile)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) in {args.profile}", file=sys.stderr)
        return 1
    print(summary)
    return 0


LEGACY_URLS = "sqlite:///abs/legacy.db, postgresql://…, mysql://… (MariaDB), csv:///abs/folder or sftp://user@host/folder"
"""The forms ``--legacy`` takes, as a user's mistake names them."""


def _legacy_arg(value: str) -> str:
    """``--legacy`` as given, or one line saying what was wrong and what it takes.

    >>> _legacy_arg("sqlite:////nowhere/legacy.db")
    Traceback (most recent call last):
    FileNotFoundError: [Errno 2] No such file or directory: '/nowhere/legacy.db'
    >>> _legacy_arg("legacy.db")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cutover.errors.ConfigError: --legacy takes a URL (sqlite:///abs/legacy.db, ...), not 'legacy.db'
    """
    from urllib.parse import urlsplit

    if "://" not in value:
        raise ConfigError(f"--legacy takes a URL ({LEGACY_URLS}), not {value!r}")
    if urlsplit(value).scheme.split("+")[0].lower() == "sqlite":
        from cutover.legacy.source import sqlite_path

        path = sqlite_path(value)
        if not Path(path).is_file():  # SQLite would say only "unable to open database file"
            raise FileNotFoundError(2, "No such file or directory", path)
    return value


def cmd_profile_draft(args: argparse.Namespace) -> int:
    """Draft a profile for a legacy system nobody has profiled yet, from its database or a delivery of
    CSV files (a person finishes its TODOs)."""
    from cutover.legacy.profile_draft import write_draft

    url = _legacy_arg(args.legacy) if args.legacy else configured_url("legacy_db")
    if not url:
        raise ConfigError("profile draft: give --legacy URL (or configure the legacy_db connection)")
    summary = write_draft(url, Path(args.out))
    print(summary)
    return 0


OUTPUT = """\
output of `run` and `demo`:
  one line per stage (verdict, elapsed time, rows and rate, a gate's verdict), the summary, then
  `run <run id>: <state>` and, last, `evidence: <folder>`; a failed task adds the retry decision and
  its exception's last line. Airflow's task logs (and pg_dump's, GX's...) go to
  <state>/logs/<dag id>/<run key>.log, printed as `logs: <file>`; --debug shows them instead.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cutover",
        description=__doc__.splitlines()[0],
        epilog=OUTPUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="show an error's traceback instead of one line, and Airflow's task logs on the console "
        "instead of in the run's log file",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write a simulated legacy PT practice database and its manifest")
    s.add_argument("--patients", type=int, default=2000)
    s.add_argument("--seed", type=int, default=7)
    target = s.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--out",
        help="SQLite file to write, or with --format webpt-extract a folder (manifest: <out>.manifest.json)",
    )
    target.add_argument(
        "--url", help="URL of an existing legacy database to (re)write: PostgreSQL, MariaDB/MySQL or SQLite"
    )
    s.add_argument("--manifest", help="where to write the manifest (required with --url)")
    s.add_argument(
        "--format",
        choices=("database", "webpt-extract"),
        default="database",
        help="a legacy database, or a WebPT Standard Extract: a folder of CSV files (--out DIR)",
    )
    s.add_argument(
        "--next-delivery",
        metavar="PREV_DIR",
        help="with --format webpt-extract: write the nightly delivery after the one in PREV_DIR into --out",
    )
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser(
        "run", help="run a DAG in-process (dag.test) on the configured or embedded connections"
    )
    r.add_argument("dag_id")
    r.add_argument("--conf", help="JSON run configuration (the DAG's params)")
    r.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="run an earlier run again under its id: its batch ledger skips the batches it finished",
    )
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

    t = sub.add_parser("trace", help="where one legacy record went (new id, merge or reject reason); audited")
    t.add_argument("legacy_table")
    t.add_argument("legacy_id")
    t.add_argument("--actor", help="who looks it up, for the audit log (default: the login name)")
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.set_defaults(func=cmd_trace)

    rs = sub.add_parser("runs", help="the target's runs and their states (a killed run is marked failed)")
    rs.add_argument("--json", action="store_true", help="print the runs as JSON")
    rs.set_defaults(func=cmd_runs)

    au = sub.add_parser("audit", help="the target's audit log")
    audit_sub = au.add_subparsers(dest="audit_command", required=True)
    av = audit_sub.add_parser(
        "verify", help="recompute the audit log's hash chain; non-zero exit when broken"
    )
    av.add_argument(
        "--anchor", metavar="ID:HASH", help="a head printed earlier: that entry must be unchanged"
    )
    av.add_argument("--json", action="store_true", help="print the result as JSON")
    av.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    av.set_defaults(func=cmd_audit_verify)

    ev = sub.add_parser("evidence", help="the runs' sealed evidence")
    evidence_sub = ev.add_subparsers(dest="evidence_command", required=True)
    evv = evidence_sub.add_parser(
        "verify",
        help="check a run's evidence chain (seals, versions, linked backup/trial/assessment, store copies, "
        "the target's record); non-zero exit when anything differs",
    )
    evv.add_argument("run", metavar="RUN_ID", help="a run id, a run folder's name or an evidence folder")
    evv.add_argument(
        "--no-target", action="store_true", help="skip the target database's record (migration.run)"
    )
    evv.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    evv.set_defaults(func=cmd_evidence_verify)

    pr = sub.add_parser("profile", help="legacy profiles: check one, or draft one from a legacy system")
    profile_sub = pr.add_subparsers(dest="profile_command", required=True)
    pc = profile_sub.add_parser("check", help="check a profile (a built-in name, a YAML file or a folder)")
    pc.add_argument("profile")
    pc.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    pc.set_defaults(func=cmd_profile_check)
    pd_ = profile_sub.add_parser(
        "draft", help="draft a profile from a legacy database or a CSV delivery, with TODOs to finish"
    )
    pd_.add_argument(
        "--legacy",
        help="the legacy database URL, or a folder of CSV files: csv:///abs/folder or sftp://user@host/folder?"
        "key_file=…&host_key=… (default: the legacy_db connection)",
    )
    pd_.add_argument("--out", required=True, help="the draft profile (YAML) to write")
    pd_.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    pd_.set_defaults(func=cmd_profile_draft)

    from cutover.remediation_cli import add_parser as add_remediation

    add_remediation(sub)

    st = sub.add_parser("stop", help="stop the embedded PostgreSQL of the state folder")
    st.set_defaults(func=cmd_stop)

    a = sub.add_parser("airflow", help="start a local Airflow with the UI on the embedded defaults")
    a.add_argument("--port", type=int, default=8080)
    a.set_defaults(func=cmd_airflow)
    for command in sub.choices.values():  # --debug after the command too; SUPPRESS keeps the global one
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return p


def user_error(exc: BaseException) -> str | None:
    """The one line that tells a user what went wrong, or None for an error that is a bug.

    >>> user_error(FileNotFoundError(2, "No such file or directory", "m.json"))
    'no such file: m.json'
    >>> user_error(ConfigError("legacy_db: unsupported scheme 'ftp'"))
    "legacy_db: unsupported scheme 'ftp'"
    >>> user_error(KeyError("x")) is None
    True
    """
    if isinstance(exc, CutoverError):
        return " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return f"no such file: {exc.filename}" if exc.filename else "no such file"
    if isinstance(exc, IsADirectoryError):
        return f"a folder, not a file: {exc.filename}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}" if exc.filename else "permission denied"
    return None


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # everything created under the state folder (and by Airflow, SQLite, pg_dump) is private
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except Exception as exc:
        line = user_error(exc)
        if line is None or args.debug:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
