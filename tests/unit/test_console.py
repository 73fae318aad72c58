"""The run console (:mod:`cutover.console`): its lines, its arithmetic and the redirection of a
run's own output into its log file; no Airflow (dag.test's hook is exercised on a stand-in)."""

from __future__ import annotations

import doctest
import io
import logging
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from cutover import console
from cutover.console import FAILURE_LINE, Progress, TaskDone
from cutover.errors import PolicyError


def test_doctests() -> None:
    failures, tried = doctest.testmod(console)
    assert tried
    assert not failures


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _run(progress: Progress, clock: Clock, *tasks: TaskDone) -> None:
    for task in tasks:
        progress.task_started(task.task_id, task.map_index)
        clock.now += task.seconds
        progress.task_done(task)


def _extract(i: int, rows: int, seconds: float = 0.5) -> TaskDone:
    return TaskDone("extract_table", i, "success", seconds, {"table": f"t{i}", "rows": rows, "seconds": 0.1})


def _load(table: str, rows: int, rejected: int, seconds: float = 1.0) -> list[TaskDone]:
    manifest = {
        "table": table,
        "rows_in": rows,
        "migrated": rows - rejected,
        "merged": 0,
        "rejected": rejected,
    }
    return [
        TaskDone(f"load.{table}.list_batches", -1, "success", 0.1, [0]),
        TaskDone(f"load.{table}.load_batch", 0, "success", seconds, manifest),
    ]


def test_one_line_per_stage_with_rows_rate_and_verdicts() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, clock=clock)
    _run(
        progress,
        clock,
        TaskDone("check_configuration", -1, "success", 0.3, {"legacy_db": "ok"}),
        *(_extract(i, 1000) for i in range(4)),
        TaskDone(
            "gate_extract", -1, "success", 1.5, {"gate": "extract", "passed": True, "expectations": 198}
        ),
        *_load("patients", 600, 10),
        *_load("visits", 2400, 0, seconds=3.0),
        TaskDone("undo_rejected_load", -1, "skipped", 0.1),
        TaskDone(
            "estimate_downtime", -1, "success", 0.5, {"decision": "go", "estimated_seconds": {"total": 8.0}}
        ),
    )
    progress.finish()
    assert out.getvalue().splitlines() == [
        "  ok      check_configuration                0.3 s",
        "  ok      extract_table ×4                   2.0 s  4,000 rows, 2,000 rows/s",
        "  passed  gate_extract                       1.5 s  198 expectations",
        "  ok      load (2 tables, 4 tasks)           4.2 s  3,000 rows, 714 rows/s; 2,990 migrated, 0 merged, 10 rejected",
        "  skipped undo_rejected_load                 0.1 s",
        "  go      estimate_downtime                  0.5 s",
    ]


def test_a_gate_that_did_not_pass_says_so() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, clock=clock)
    _run(progress, clock, TaskDone("gate_target", -1, "success", 1.0, {"gate": "target", "passed": False}))
    progress.finish()
    # lower case: a finding on record (a trial's gate), not a task that failed the run
    assert out.getvalue().split()[:2] == ["failed", "gate_target"]


def test_a_failed_task_shows_the_retry_decision_the_exception_line_and_the_log(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("earlier task's log: Retry policy decision action=retry (not this task's)\n")
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, log=log, clock=clock)
    error = console.exception_line(PolicyError("reject gate: outcomes 15/268 (limit 5.0%)"))
    progress.task_started("gate_rejects")
    with log.open("a") as task_log:  # what Airflow writes meanwhile
        task_log.write(
            "2026-12-06T16:10:32.969401Z [info     ] Retry policy decision          [task] action=fail "
            "loc=task_runner.py:1806 reason='terminal, not retried: PolicyError: reject gate: outcomes "
            "15/268 (limit 5.0%)'\n"
        )
    progress.task_done(TaskDone("gate_rejects", -1, "failed", 0.5, error=error))
    progress.finish(console.not_run({"upstream_failed": 40, "success": 12, "skipped": 1}))
    lines = out.getvalue().splitlines()
    assert lines == [
        "  FAILED  gate_rejects                       0.5 s",
        "          Retry policy decision: action=fail reason='terminal, not retried: PolicyError: …'",
        "cutover.errors.PolicyError: reject gate: outcomes 15/268 (limit 5.0%)",
        f"logs: {log}",
        "  not run 41 tasks                                  1 skipped, 40 upstream failed",
    ]
    # the form tests/cli_helpers.py's failure_of (and a person's grep) finds
    assert [line for line in lines if FAILURE_LINE.match(line)] == [lines[2]]


def test_a_failed_mapped_task_is_named() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, clock=clock)
    _run(
        progress,
        clock,
        _extract(0, 10),
        TaskDone(
            "extract_table",
            1,
            "failed",
            0.2,
            error="cutover.errors.TransientError: legacy_db: timeout",
            try_number=2,
        ),
    )
    assert out.getvalue().splitlines() == [
        "  FAILED  extract_table ×2                   0.7 s  10 rows, 14 rows/s; 1 of 2 tasks failed",
        "  FAILED  extract_table[1]                   0.2 s  try 2",
        "cutover.errors.TransientError: legacy_db: timeout",
    ]


def test_a_long_stage_says_how_far_it_got_with_an_eta_from_the_rows_to_do() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, clock=clock, interval=60)
    # map reads what extract wrote: 4,000 rows to do, so its pace gives an honest ETA
    _run(progress, clock, *(_extract(i, 1000) for i in range(4)))
    _run(progress, clock, *(TaskDone("map_table", i, "success", 25.0, {"rows": 1000}) for i in range(4)))
    progress.finish()
    lines = out.getvalue().splitlines()
    assert lines[1:] == [
        "  …       map_table ×3                  1 min 15 s  3,000 of 4,000 rows, 40 rows/s; ETA ~25 s",
        "  ok      map_table ×4                  1 min 40 s  4,000 rows, 40 rows/s",
    ]
    assert "ETA" not in lines[0]  # extract's rows to do are not known beforehand: no ETA invented
    # a task on its own cannot say how far it got: one line when it ends, however long it took
    out.truncate(0), out.seek(0)
    _run(progress, clock, TaskDone("gate_mapped", -1, "success", 95.0, {"gate": "mapped", "passed": True}))
    progress.finish()
    assert out.getvalue() == "  passed  gate_mapped                   1 min 35 s\n"


def test_a_terminal_gets_a_status_line_and_a_pipe_never_gets_control_codes() -> None:
    for live in (True, False):
        out, clock = io.StringIO(), Clock()
        progress = Progress(out, clock=clock, live=live, interval=0)
        _run(progress, clock, *(_extract(i, 1000) for i in range(3)))
        progress.finish()
        assert ("\x1b[K" in out.getvalue()) is live
        assert out.getvalue().endswith("2,000 rows/s\n")


def test_only_numbers_and_fixed_words_of_a_manifest_reach_the_console() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, clock=clock)
    canary = "Zyxwvut-PHI-canary"
    manifest: dict[str, Any] = {"table": canary, "rows": 3, "first_ids": [canary], "decision": canary}
    _run(
        progress,
        clock,
        TaskDone("plan_scope", -1, "success", 0.1, manifest),
        TaskDone("end_run", -1, "success", 0.1, canary),
    )
    progress.finish()
    assert canary not in out.getvalue()
    assert "3 rows" in out.getvalue()


def test_the_exception_line_is_the_form_the_tests_look_for() -> None:
    from cli_helpers import RAISED

    assert FAILURE_LINE.pattern == RAISED.pattern


class Boom(Exception):
    pass


def test_exception_line() -> None:
    assert console.exception_line(KeyError("x")) == "KeyError: 'x'"
    assert FAILURE_LINE.match(console.exception_line(Boom("a\nb")))
    assert console.exception_line(Boom("a\nDETAIL: Key (ssn)=(123)")) == f"{__name__}.Boom: a"
    assert console.exception_line(PolicyError("")) == "cutover.errors.PolicyError"


REDIRECTED = """
import logging, os, subprocess, sys
from pathlib import Path
from cutover import console

logger = logging.getLogger("bound_early")
logger.addHandler(logging.StreamHandler(sys.stderr))  # bound before the redirection, as Airflow's are
print("before", flush=True)
with console.redirect_output(Path(sys.argv[1])) as out:
    print("python print")
    sys.stdout.write("buffered, never flushed by hand\\n")
    os.write(1, b"fd 1\\n")
    os.write(2, b"fd 2\\n")
    logger.warning("a log record")
    subprocess.run(["sh", "-c", "echo child stdout; echo child stderr >&2"], check=True)
    out.write("stage line\\n")
print("after")
"""


def test_redirect_output_catches_everything_the_process_and_its_children_write(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "pt_backup" / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", REDIRECTED, str(log)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["before", "stage line", "after"]
    assert done.stderr == ""
    text = log.read_text()
    for caught in (
        "python print",
        "buffered",
        "fd 1",
        "fd 2",
        "a log record",
        "child stdout",
        "child stderr",
    ):
        assert caught in text, caught
    assert "stage line" not in text
    assert log.stat().st_mode & 0o777 == 0o600
    with console.redirect_output(log):  # a resumed run appends to its log
        os.write(1, b"resumed\\n")
    assert log.read_text() == text + "resumed\\n"


def test_redirect_output_restores_the_console_when_the_run_raises(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RuntimeError), console.redirect_output(tmp_path / "run.log"):
        raise RuntimeError("dag.test broke")
    os.write(1, b"back on the console\n")
    assert capfd.readouterr().out == "back on the console\n"


def test_logging_to_moves_log_records_not_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "logs" / "pt_cutover" / "run.log"
    logger = logging.getLogger("test_console.after_the_run")
    handler = logging.StreamHandler(sys.stdout)  # as Airflow's root handler: the console
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with console.logging_to(log):
            logger.info("evidence sealed")
            print("planted defects against the simulator's ground truth:")
        logger.info("after")
    finally:
        logger.removeHandler(handler)
    assert log.read_text() == "evidence sealed\n"
    assert capsys.readouterr().out == "planted defects against the simulator's ground truth:\nafter\n"
    with console.logging_to(None):  # --debug: nothing moves
        pass


def test_without_a_log_nothing_is_redirected(capfd: pytest.CaptureFixture[str]) -> None:
    with console.redirect_output(None) as out:
        assert out is sys.stdout
        os.write(1, b"airflow's log line\n")
    assert capfd.readouterr().out == "airflow's log line\n"


def _stand_in_airflow(monkeypatch: pytest.MonkeyPatch, run_task: Any) -> types.ModuleType:
    """``airflow.sdk.definitions.dag`` with its ``_run_task``, and nothing else of Airflow."""
    dag_module = types.ModuleType("airflow.sdk.definitions.dag")
    if run_task is not None:
        dag_module._run_task = run_task  # type: ignore[attr-defined]
    definitions = types.ModuleType("airflow.sdk.definitions")
    definitions.dag = dag_module  # type: ignore[attr-defined]
    for name, module in (
        ("airflow", types.ModuleType("airflow")),
        ("airflow.sdk", types.ModuleType("airflow.sdk")),
        ("airflow.sdk.definitions", definitions),
        ("airflow.sdk.definitions.dag", dag_module),
        ("airflow.models", None),  # what it returned: no metadata database here
    ):
        monkeypatch.setitem(sys.modules, name, module)  # type: ignore[arg-type]
    return dag_module


def test_reporting_tasks_wraps_dag_tests_run_task(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_task(*, ti: Any, task: Any, run_triggerer: bool = False) -> Any:
        ti.state = "failed"
        return types.SimpleNamespace(error=PolicyError("no verified backup"))

    dag_module = _stand_in_airflow(monkeypatch, run_task)
    out = io.StringIO()
    progress = Progress(out)
    ti = types.SimpleNamespace(task_id="require_verified_backup", map_index=-1, state=None, try_number=1)
    with console.reporting_tasks(progress) as hooked:
        assert hooked
        dag_module._run_task(ti=ti, task=None, run_triggerer=True)
    assert dag_module._run_task is run_task  # put back
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["FAILED", "require_verified_backup"]
    assert lines[1] == "cutover.errors.PolicyError: no verified backup"


def test_reporting_tasks_without_the_hook_lets_the_run_go_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _stand_in_airflow(monkeypatch, None)
    log = tmp_path / "run.log"
    log.write_text("Traceback (most recent call last):\ncutover.errors.PolicyError: reject gate: 15/268\n")
    out = io.StringIO()
    progress = Progress(out, log=log)
    with console.reporting_tasks(progress) as hooked:
        assert not hooked
    # a failed run whose tasks went unseen still says what was raised, and where to read more
    progress.finish({"upstream_failed": 3}, errors_from_log=True)
    assert out.getvalue().splitlines()[1:] == [
        "cutover.errors.PolicyError: reject gate: 15/268",
        f"logs: {log}",
    ]
