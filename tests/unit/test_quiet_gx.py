"""A gate task's log holds the gate's lines, not GX registering its functions as it is imported."""

from __future__ import annotations

import subprocess
import sys


def test_importing_gx_after_the_runner_logs_no_registration_noise() -> None:
    code = (
        "import logging; logging.basicConfig(level=logging.INFO);"
        "import cutover.validation.runner; import great_expectations, great_expectations.expectations"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert "Skipping registering" not in done.stderr
    loud = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging; logging.basicConfig(level=logging.INFO); import great_expectations",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "Skipping registering" in loud.stderr  # what the runner keeps out (the check could fail)
