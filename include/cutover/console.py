"""What ``cutover run`` and ``cutover demo`` print: one line per stage, Airflow's task logs in a file.

A run's console says what a person watching it needs: per stage (a task, or a mapped task or task
group taken together) its verdict, elapsed time, rows and rate, a gate's verdict, the trial's
go/no-go; for a failed task the retry policy's decision and the exception's last line
(``module.Name: message``), and where the full log is. Everything Airflow, GX, pg_dump and our own
logging print during the run goes to ``<state>/logs/<dag_id>/<run key>.log`` instead
(:func:`redirect_output`, at the file-descriptor level, so subprocesses are caught too).

Nothing here prints a patient value: from a task's manifest only numbers and a few fixed words
(a gate's verdict, a go/no-go) reach the console, and an exception's line is the one our errors
already keep free of values (ids and counts only).

The lines are plain text, fit for logs and CI; on a terminal a status line (what runs now, rows done
of the rows expected, an ETA) is rewritten in place between them.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

FAILURE_LINE = re.compile(r"^(?:[a-z_]\w*\.)+[A-Z]\w*: |^[A-Z]\w*(?:Error|Exception): ")
"""An exception's last line as a traceback ends, ``module.path.Name: message`` or ``ValueError: …``:
what tests and people grep a run's output for (``tests/cli_helpers.py``)."""

COUNTS: tuple[tuple[str, str, str], ...] = (
    ("migrated", "migrated", "migrated"),
    ("merged", "merged", "merged"),
    ("rejected", "rejected", "rejected"),
    ("expectations", "expectation", "expectations"),
    ("findings", "finding", "findings"),
    ("patients_compared", "patient compared", "patients compared"),
    ("patients_mismatched", "mismatched", "mismatched"),
)
"""Counts of a task's manifest worth a glance (manifest key, words for one, for more), summed over a
stage's tasks; rows (``rows_in`` of a load, else ``rows``) come first and get a rate."""

READS_FROM: dict[str, str] = {"map_table": "extract_table", "load": "map_table"}
"""A stage that works through what an earlier stage of the run wrote: its rows to do are that
stage's rows, which makes an honest ETA (rows done of rows to do). No other stage gets one."""

VERDICTS: dict[str, str] = {
    "success": "ok",
    "failed": "FAILED",
    "up_for_retry": "retry",
    "skipped": "skipped",
    "upstream_failed": "not run",
    "removed": "removed",
}
"""Airflow's task states as the console words them."""

_WORST = ("failed", "up_for_retry", "upstream_failed", "skipped", "success")

DECISION = re.compile(r"Retry policy decision\b(?P<rest>.*)$")
_NOISE = re.compile(r"\s\[[\w.]+\]|\sloc=\S+|\x1b\[[0-9;]*m")


def fmt_seconds(seconds: float) -> str:
    """Elapsed time for people: tenths below 10 s, then whole seconds, minutes, hours.

    >>> [fmt_seconds(s) for s in (0.04, 3.25, 42, 125, 3725)]
    ['0.0 s', '3.2 s', '42 s', '2 min 05 s', '1 h 02 min']
    """
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def rate(rows: int, seconds: float) -> str | None:
    """Rows per second, or None when too little time passed for the figure to mean anything.

    >>> rate(7280, 0.4), rate(120, 0.01)
    ('18,200 rows/s', None)
    """
    if seconds < 0.05 or rows <= 0:
        return None
    return f"{rows / seconds:,.0f} rows/s"


def eta(done: float, total: float, elapsed: float) -> float | None:
    """Seconds left at the pace so far, or None when there is no pace yet or nothing left.

    >>> eta(2500, 10000, 30.0)
    90.0
    >>> eta(0, 10000, 30.0) is None, eta(10000, 10000, 30.0) is None
    (True, True)
    """
    if done <= 0 or total <= done or elapsed <= 0:
        return None
    return elapsed * (total - done) / done


def plural(n: int, word: str) -> str:
    """``1 table``, ``2 tables``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def stage_of(task_id: str) -> str:
    """The stage a task belongs to: its top-level task group, or the task itself.

    >>> stage_of("load.patients.load_batch"), stage_of("gate_extract")
    ('load', 'gate_extract')
    """
    return task_id.split(".", 1)[0]


def exception_line(exc: BaseException) -> str:
    """The exception as a traceback's last line says it, on one line: ``module.Name: message``.

    Our own errors (:mod:`cutover.errors`) keep the whole message (ids and counts, never values);
    any other exception only its first line: a database's second line (``DETAIL: Key (…)=(…)``) can
    quote a row.

    >>> from cutover.errors import PolicyError
    >>> exception_line(PolicyError("reject gate:\\n  outcomes 15/268"))
    'cutover.errors.PolicyError: reject gate: outcomes 15/268'
    >>> exception_line(ValueError("duplicate key\\nDETAIL: Key (ssn)=(…)"))
    'ValueError: duplicate key'
    """
    from cutover.errors import CutoverError

    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ in ("builtins", "__main__")
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    text = str(exc) if isinstance(exc, CutoverError) else (str(exc).strip().splitlines() or [""])[0]
    message = " ".join(text.split())
    return f"{name}: {message}" if message else name


def decision_lines(log_text: str) -> list[str]:
    """Airflow's retry policy decisions in a task's log, without the log's timestamps and call sites.

    >>> decision_lines("2026-12-06T16:10:32Z [info     ] Retry policy decision          [task] "
    ...                "action=fail loc=task_runner.py:1806 reason='terminal, not retried'")
    ["Retry policy decision: action=fail reason='terminal, not retried'"]
    """
    found = []
    for line in log_text.splitlines():
        match = DECISION.search(line)
        if match:
            rest = " ".join(_NOISE.sub("", match["rest"]).split())
            found.append(f"Retry policy decision: {rest}".rstrip(": "))
    return list(dict.fromkeys(found))


def _ints(result: Any, key: str) -> int | None:
    value = result.get(key) if isinstance(result, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def rows_of(result: Any) -> int | None:
    """The rows a task's manifest says it moved: a load's ``rows_in``, else ``rows``.

    >>> rows_of({"rows_in": 65, "migrated": 63}), rows_of({"rows": 7}), rows_of([0]), rows_of("x")
    (65, 7, None, None)
    """
    found = _ints(result, "rows_in")
    return found if found is not None else _ints(result, "rows")


def estimate_text(estimate: Mapping[str, Any]) -> str | None:
    """The trial's extrapolation of the full run (``sample_estimate.json``), or None without one.

    >>> estimate_text({"estimated_seconds": {"total": 8.0}, "estimated_with_margin_seconds": 12.0,
    ...                "safety_margin": 1.5, "window_hours": 60.0, "decision": "go"})
    'full run ~8.0 s, 12 s with the 1.5× margin, window 60 h: go'
    """
    total = (estimate.get("estimated_seconds") or {}).get("total")
    margin = estimate.get("estimated_with_margin_seconds")
    if not isinstance(total, int | float) or not isinstance(margin, int | float):
        return None
    text = f"full run ~{fmt_seconds(total)}, {fmt_seconds(margin)} with the {estimate.get('safety_margin', '?')}× margin"
    if isinstance(estimate.get("window_hours"), int | float):
        text += f", window {estimate['window_hours']:g} h"
    if estimate.get("decision") in ("go", "no-go"):
        text += f": {estimate['decision']}"
    return text


@dataclass(frozen=True)
class TaskDone:
    """One task instance that ran, as the console needs it (no Airflow types)."""

    task_id: str
    map_index: int
    state: str
    seconds: float
    result: Any = None
    """The task's return value (its XCom): a small manifest of ids and counts."""
    error: str | None = None
    """:func:`exception_line` of what it raised."""
    try_number: int = 1

    @property
    def label(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"


@dataclass
class Stage:
    """A stage's tasks so far: one task, a mapped task's instances or a task group's tasks."""

    name: str
    tasks: list[TaskDone] = field(default_factory=list)
    last_line: float = 0.0

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tasks)

    @property
    def rows(self) -> int | None:
        rows = [r for r in (rows_of(t.result) for t in self.tasks) if r is not None]
        return sum(rows) if rows else None

    @property
    def state(self) -> str:
        states = {t.state for t in self.tasks}
        return next((s for s in _WORST if s in states), self.tasks[-1].state if self.tasks else "success")

    @property
    def many(self) -> bool:
        return len(self.tasks) > 1 or any(t.map_index >= 0 or "." in t.task_id for t in self.tasks)

    def label(self) -> str:
        """``extract_table ×21``, ``load (21 tables, 42 tasks)`` or the task id.

        >>> s = Stage("load", [TaskDone("load.visits.load_batch", 0, "success", 1.0)] * 2)
        >>> s.label()
        'load (1 table, 2 tasks)'
        """
        if not self.many:
            return self.name
        groups = {t.task_id.split(".")[1] for t in self.tasks if t.task_id.count(".") >= 2}
        if groups:
            return f"{self.name} ({plural(len(groups), 'table')}, {plural(len(self.tasks), 'task')})"
        return f"{self.name} ×{len(self.tasks)}"

    def verdict(self) -> str:
        """The state in a word; a gate's or a trial's own verdict when its tasks succeeded."""
        state = self.state
        if state != "success":
            return VERDICTS.get(state, state)
        results = [t.result for t in self.tasks if isinstance(t.result, Mapping)]
        decisions = [r["decision"] for r in results if r.get("decision") in ("go", "no-go")]
        if decisions:
            return str(decisions[-1])
        passed = [r["passed"] for r in results if isinstance(r.get("passed"), bool)]
        if passed:  # a gate that did not pass in a task that did not raise: a finding on record (a trial)
            return "passed" if all(passed) else "failed"
        return "ok"

    def facts(self, expected_rows: int | None = None) -> str:
        """Rows (of those expected), rate, the manifests' counts; a trial's estimate."""
        parts: list[str] = []
        rows = self.rows
        if rows is not None:
            text = f"{rows:,} rows" if expected_rows is None else f"{rows:,} of {expected_rows:,} rows"
            speed = rate(rows, self.seconds) if self.many else None
            parts.append(f"{text}, {speed}" if speed else text)
        counts = []
        for key, one, more in COUNTS:
            values = [v for v in (_ints(t.result, key) for t in self.tasks) if v is not None]
            if values:
                counts.append(f"{sum(values):,} {one if sum(values) == 1 else more}")
        if counts:
            parts.append(", ".join(counts))
        failed = sum(t.state == "failed" for t in self.tasks)
        if failed and self.many:
            parts.append(f"{failed} of {len(self.tasks)} tasks failed")
        for result in (t.result for t in self.tasks):
            if isinstance(result, Mapping) and result.get("decision") in ("go", "no-go"):
                estimated = estimate_text(result)
                if estimated:
                    parts.append(estimated)
        return "; ".join(parts)


class Progress:
    """Prints a run's stages to ``out`` as their tasks finish (see the module's docstring).

    ``log``: the file the run's own output goes to, read back for a failed task's retry decision.
    ``live``: rewrite a status line in place between the lines (a terminal, never a pipe or a file).
    ``interval``: seconds after which a long stage prints how far it got (when not ``live``).
    """

    def __init__(
        self,
        out: TextIO,
        *,
        log: Path | None = None,
        live: bool = False,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out, self.log, self.live, self.interval, self.clock = out, log, live, interval, clock
        self.stage: Stage | None = None
        self.done: dict[str, int] = {}
        """Rows per finished stage: what a stage reading from it has to do (:data:`READS_FROM`)."""
        self._started: tuple[str, int] | None = None
        """The task running now and where its output begins in the log."""
        self._status = False

    # --- lines --------------------------------------------------------------------------------

    def line(self, text: str = "") -> None:
        """One line of the console, after clearing the status line."""
        self._clear_status()
        self.out.write(text + "\n")
        self.out.flush()

    def _row(self, verdict: str, label: str, seconds: float | None, facts: str) -> str:
        elapsed = fmt_seconds(seconds) if seconds is not None else ""
        return f"  {verdict:<8}{label:<30}{elapsed:>10}  {facts}".rstrip()

    def _status_line(self, text: str) -> None:
        if not self.live:
            return
        width = shutil.get_terminal_size((100, 20)).columns
        self.out.write("\r\x1b[K" + text[: max(10, width - 1)])
        self.out.flush()
        self._status = True

    def _clear_status(self) -> None:
        if self._status:
            self.out.write("\r\x1b[K")
            self._status = False

    # --- tasks --------------------------------------------------------------------------------

    def task_started(self, task_id: str, map_index: int = -1) -> None:
        self._started = (task_id, self._log_size())
        stage = stage_of(task_id)
        if self.stage is not None and self.stage.name != stage:
            self._end_stage()
        where = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        self._status_line(f"  …       {where}" + (f"  ({self._progress()})" if self.stage else ""))

    def task_done(self, task: TaskDone) -> None:
        name = stage_of(task.task_id)
        if self.stage is not None and self.stage.name != name:
            self._end_stage()
        if self.stage is None:
            self.stage = Stage(name, last_line=self.clock() - task.seconds)
        self.stage.tasks.append(task)
        if task.state in ("failed", "up_for_retry"):
            many = self.stage.many
            self._end_stage()
            if many:  # which of the stage's tasks
                self.line(self._row(VERDICTS[task.state], task.label, task.seconds, f"try {task.try_number}"))
            self._failure(task)
        elif self.stage.many and self.clock() - self.stage.last_line >= self.interval and not self.live:
            self.stage.last_line = self.clock()
            self.line(self._row("…", self.stage.label(), self.stage.seconds, self._progress()))
        elif self.stage.many:
            self._status_line(f"  …       {self.stage.label()}  {self._progress()}")

    def _expected(self, stage: Stage) -> int | None:
        source = READS_FROM.get(stage.name)
        return self.done.get(source) if source else None

    def _progress(self) -> str:
        """How far the current stage got: rows of rows expected, and the ETA when there is one."""
        stage = self.stage
        if stage is None:
            return ""
        expected, rows = self._expected(stage), stage.rows
        text = stage.facts(expected) or f"{plural(len(stage.tasks), 'task')} done"
        left = eta(rows or 0, expected or 0, stage.seconds)
        return f"{text}; ETA ~{fmt_seconds(left)}" if left is not None else text

    def _end_stage(self) -> None:
        stage, self.stage = self.stage, None
        if stage is None or not stage.tasks:
            return
        if stage.rows is not None and stage.state == "success":
            self.done[stage.name] = stage.rows
        self.line(self._row(stage.verdict(), stage.label(), stage.seconds, stage.facts()))

    def _failure(self, task: TaskDone) -> None:
        """Whether it will be retried, the exception's line and where the full log is."""
        message = task.error.split(": ", 1)[-1] if task.error and ": " in task.error else None
        for decision in self._decisions(task):
            # the policy's reason quotes the exception, which has its own line just below
            self.line(f"{'':<10}{decision.replace(message, '…') if message else decision}")
        if task.error:
            self.line(task.error)  # at the start of the line: the form tools look for (FAILURE_LINE)
        if self.log is not None:
            self.line(f"logs: {self.log}")

    def _decisions(self, task: TaskDone) -> list[str]:
        if self.log is None or self._started is None or self._started[0] != task.task_id:
            return []
        _flush_std()
        with suppress(OSError), open(self.log, "rb") as log:
            log.seek(self._started[1])
            return decision_lines(log.read().decode("utf-8", "replace"))
        return []

    def _log_size(self) -> int:
        if self.log is None:
            return 0
        _flush_std()
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def finish(self, not_run: Mapping[str, int] | None = None, *, errors_from_log: bool = False) -> None:
        """The last stage's line; how many tasks never ran (after a failure, or skipped).

        ``errors_from_log``: the run failed and no task told what it raised (the tasks went unseen,
        :func:`reporting_tasks`): the exception lines of the log, each once, and the log's path.
        """
        self._end_stage()
        self._clear_status()
        left = {state: n for state, n in (not_run or {}).items() if n}
        if left:
            what = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(left.items()))
            self.line(self._row("not run", plural(sum(left.values()), "task"), None, what))
        if errors_from_log and self.log is not None:
            _flush_std()
            with suppress(OSError):
                for error in failure_lines(self.log.read_text(encoding="utf-8", errors="replace")):
                    self.line(error)
            self.line(f"logs: {self.log}")


def failure_lines(log_text: str) -> list[str]:
    """The exception lines of a log (:data:`FAILURE_LINE`), each once, in order.

    >>> failure_lines("Traceback …\\ncutover.errors.ConfigError: legacy_db: refused\\n  retried\\n"
    ...               "cutover.errors.ConfigError: legacy_db: refused\\n")
    ['cutover.errors.ConfigError: legacy_db: refused']
    """
    return list(dict.fromkeys(line.strip() for line in log_text.splitlines() if FAILURE_LINE.match(line)))


def not_run(states: Mapping[str, int] | Counter[str]) -> dict[str, int]:
    """Of a run's task states, those of tasks that never ran (upstream failed, skipped, no state).

    >>> not_run({"success": 30, "upstream_failed": 12, "skipped": 1, "failed": 1})
    {'upstream_failed': 12, 'skipped': 1}
    """
    return {s: n for s, n in states.items() if s in ("upstream_failed", "skipped", "none", "removed") and n}


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()


@contextmanager
def redirect_output(log: Path | None) -> Iterator[TextIO]:
    """Send this process's stdout and stderr, and its children's, to the end of ``log``; yield a
    stream to the console (the stdout that was).

    At the file-descriptor level (``dup2`` of 1 and 2), so whatever writes there is caught: Python's
    ``print``, logging and structlog handlers bound to ``sys.stdout`` earlier, warnings, and
    subprocesses (pg_dump, mariadb-dump). The log is created private (0600). With ``log`` None
    nothing is redirected and the stream is ``sys.stdout`` (``--debug``).
    """
    if log is None:
        yield sys.stdout
        return
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _flush_std()
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    saved = (os.dup(1), os.dup(2))
    console = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield console
    finally:
        _flush_std()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log_fd):
            os.close(fd)
        console.close()


@contextmanager
def logging_to(log: Path | None) -> Iterator[None]:
    """Log records (not prints) to the end of ``log`` for a while: the logging handlers that write to
    the console (stdout, stderr) write there instead. With ``log`` None nothing changes (``--debug``).

    For what runs after a run, in the same process (the demo's check of the planted defects): its
    prints are the console's, its logging belongs with the run's.
    """
    if log is None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    consoles = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}
    loggers = [
        logging.getLogger(),
        *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    handlers = {
        id(h): h
        for logger in loggers
        for h in logger.handlers
        if type(h) is logging.StreamHandler and id(h.stream) in consoles
    }
    with os.fdopen(
        os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a", encoding="utf-8"
    ) as stream:
        swapped = [(h, h.setStream(stream)) for h in handlers.values()]
        try:
            yield
        finally:
            for handler, before in swapped:
                handler.setStream(before)


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (a status line may be rewritten there; never in a file or pipe)."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


# --- Airflow's dag.test ----------------------------------------------------------------------


@contextmanager
def reporting_tasks(progress: Progress) -> Iterator[bool]:
    """Report every task ``dag.test`` runs to ``progress``; yields whether it could.

    ``dag.test`` runs each task in this process through ``airflow.sdk.definitions.dag._run_task``
    (Airflow 3.x), sequentially: wrapped, it tells when a task starts and ends, its state, what it
    raised and (from the metadata database) what it returned. Should a later Airflow rename it, the
    run goes on without the per-stage lines.
    """
    try:
        from airflow.sdk.definitions import dag as sdk_dag

        original = sdk_dag._run_task
    except (ImportError, AttributeError):
        yield False
        return

    def run_task(*, ti: Any, task: Any, run_triggerer: bool = False) -> Any:
        progress.task_started(ti.task_id, ti.map_index)
        started = time.monotonic()
        result = original(ti=ti, task=task, run_triggerer=run_triggerer)
        state = str(getattr(ti.state, "value", ti.state) or "none")
        error = getattr(result, "error", None)
        progress.task_done(
            TaskDone(
                task_id=ti.task_id,
                map_index=ti.map_index,
                state=state,
                seconds=time.monotonic() - started,
                result=_return_value(ti) if state == "success" else None,
                error=exception_line(error) if isinstance(error, BaseException) else None,
                try_number=int(ti.try_number or 1),
            )
        )
        return result

    sdk_dag._run_task = run_task
    try:
        yield True
    finally:
        sdk_dag._run_task = original


def _return_value(ti: Any) -> Any:
    """What a finished task returned (its ``return_value`` XCom), or None."""
    try:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = (
                session.execute(
                    XComModel.get_many(
                        run_id=ti.run_id,
                        key="return_value",
                        dag_ids=ti.dag_id,
                        task_ids=ti.task_id,
                        map_indexes=ti.map_index,
                        limit=1,
                    )
                )
                .scalars()
                .first()
            )
            return XComModel.deserialize_value(row) if row is not None else None
    except Exception:  # the console never fails a run: a stage line without its counts
        return None


def task_states(dag_id: str, run_id: str) -> Counter[str]:
    """How many of a run's task instances ended in each state (``none``: never scheduled)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.state, func.count())
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            .group_by(TaskInstance.state)
        ).all()
    return Counter({str(getattr(state, "value", state) or "none"): int(n) for state, n in rows})
