"""Helpers for tests that run the ``cutover`` command as a user would (importable: pytest's pythonpath has tests/)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def run_cutover(
    args: list[str], home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``cutover`` command as a user would, with its own state folder and only ``env``'s connections.

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
    )


def failure_of(result: subprocess.CompletedProcess[str]) -> str:
    """What a failed run's output says went wrong: the exceptions its tasks raised (each once, in
    order) and the output's last lines; a task's own error is often far from the end."""
    output = result.stdout + result.stderr
    raised = [
        line.strip()
        for line in output.splitlines()
        # a traceback's last line: module.path.ExceptionName: message, or a builtin's ValueError: …
        if re.match(r"^(?:[a-z_]\w*\.)+[A-Z]\w*: |^[A-Z]\w*(?:Error|Exception): ", line)
    ]
    first = "\n".join(dict.fromkeys(raised))
    return f"exit {result.returncode}; raised:\n{first[-3000:]}\n--- last output:\n{output[-3000:]}"


def evidence_of(result: subprocess.CompletedProcess[str]) -> Path:
    """The folder named by a successful run's closing ``evidence:`` line."""
    assert result.returncode == 0, failure_of(result)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("evidence: "), last
    folder = Path(last.removeprefix("evidence: "))
    assert folder.is_absolute()
    return folder
