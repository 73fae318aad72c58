"""The local scheduler's entry point: Airflow's own command, run after the tasks' modules are loaded."""

from __future__ import annotations

import subprocess
import sys


def test_airflows_command_runs_with_the_tasks_modules_already_loaded() -> None:
    # Airflow's command is replaced by a probe that reports what was loaded when it was called
    probe = (
        "import sys, runpy, airflow.__main__ as m;"
        "m.main = lambda: print('loaded:', 'great_expectations' in sys.modules,"
        " 'cutover.validation.runner' in sys.modules, sys.argv);"
        "sys.argv = ['cutover.preloaded_airflow', 'scheduler'];"
        "runpy.run_module('cutover.preloaded_airflow', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded: True True ['airflow', 'scheduler']" in result.stdout
