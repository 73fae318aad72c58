"""Helpers for tests that run the ``cutover`` command as a user would (importable: pytest's pythonpath has tests/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cutover(
    args: list[str], home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``cutover`` command as a user would, with its own state folder and only ``env``'s connections."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    full_env.update({"CUTOVER_HOME": str(home), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "cutover.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=home,
    )


def evidence_of(result: subprocess.CompletedProcess[str]) -> Path:
    """The folder named by a successful run's closing ``evidence:`` line."""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("evidence: "), last
    folder = Path(last.removeprefix("evidence: "))
    assert folder.is_absolute()
    return folder
