"""Helpers for tests that run the ``cutover`` command as a user would (importable: pytest's pythonpath has tests/)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def run_cutover(
    args: list[str], home: Path, env: dict[str, str] | None = None, *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``cutover`` command as a user would, with its own state folder and only ``env``'s connections
    (``stdin``: what the user types or pipes in).

    No Airflow setting of the test process reaches the command (a test that prepared Airflow in-process
    leaves ``AIRFLOW_HOME`` and others behind): its Airflow is the state folder's, configured by ``env``.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    full_env.update({"CUTOVER_HOME": str(home), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "cutover.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=home,
        input=stdin,
    )


RAISED = re.compile(r"^(?:[a-z_]\w*\.)+[A-Z]\w*: |^[A-Z]\w*(?:Error|Exception): ")
"""A traceback's last line: module.path.ExceptionName: message, or a builtin's ValueError: …"""


def logs_of(result: subprocess.CompletedProcess[str]) -> list[Path]:
    """The log files a run's output names (``logs: <file>``, once per DAG run; again after a failed
    task): where Airflow's task logs went, in order, each once."""
    named = [line.removeprefix("logs: ") for line in result.stdout.splitlines() if line.startswith("logs: ")]
    return [Path(name) for name in dict.fromkeys(named)]


def everything_of(result: subprocess.CompletedProcess[str]) -> str:
    """All a run printed: its console (stdout, stderr) and its task logs (the files it names), for the
    scans that no patient value reached any of it."""
    logs = [path.read_text(errors="replace") for path in logs_of(result) if path.is_file()]
    assert len(logs) == len(logs_of(result)), "a log file the run named is missing"
    return "\n".join([result.stdout, result.stderr, *logs])


def failure_of(result: subprocess.CompletedProcess[str]) -> str:
    """What a failed run's output says went wrong: the exceptions its tasks raised (each once, in
    order: the console's lines, then those of the run's task logs, causes included) and the output's
    last lines, then the last log's; a task's own error is often far from the end."""
    output = result.stdout + result.stderr
    logs = {path: path.read_text(errors="replace") for path in logs_of(result) if path.is_file()}
    raised = [
        line.strip() for text in (output, *logs.values()) for line in text.splitlines() if RAISED.match(line)
    ]
    first = "\n".join(dict.fromkeys(raised))
    last_log = "".join(f"\n--- end of {path}:\n{text[-3000:]}" for path, text in list(logs.items())[-1:])
    return f"exit {result.returncode}; raised:\n{first[-3000:]}\n--- last output:\n{output[-3000:]}{last_log}"


def evidence_of(result: subprocess.CompletedProcess[str]) -> Path:
    """The folder named by a successful run's closing ``evidence:`` line."""
    assert result.returncode == 0, failure_of(result)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("evidence: "), last
    folder = Path(last.removeprefix("evidence: "))
    assert folder.is_absolute()
    return folder
