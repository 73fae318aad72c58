"""The compose deployment's init creates the cutover roles exactly as the local stack has them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.local_airflow import ROLES, airflow_env, prepare_airflow

INIT = Path(__file__).parents[2] / "docker" / "airflow-init.sh"

_READ_ROLES = """
import json
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
with get_application_builder() as appbuilder:
    print(json.dumps({r.name: sorted([p.action.name, p.resource.name] for p in r.permissions)
                      for r in appbuilder.sm.get_all_roles()}))
"""


@pytest.mark.slow
def test_airflow_init_syncs_the_cutover_roles(cutover_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    call = next(line for line in INIT.read_text().splitlines() if "sync_roles" in line)
    assert call.startswith("python -c "), call
    for name in list(
        os.environ
    ):  # prepare_airflow sets Airflow's settings in this process: undone after the test
        if name.startswith("AIRFLOW"):
            monkeypatch.setenv(name, os.environ[name])
    for name in airflow_env():
        monkeypatch.delenv(name, raising=False)
    env = {**os.environ, **prepare_airflow()}  # a fresh metadata database, migrated, no user synced yet
    code = call.split("python -c ", 1)[1].strip().strip('"')
    for _ in range(2):  # idempotent: a second init changes nothing
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    out = subprocess.run(
        [sys.executable, "-c", _READ_ROLES], env=env, check=True, capture_output=True, text=True
    )
    roles = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"Admin", "Viewer", "Op"} <= set(roles)
    for name, wanted in ROLES.items():
        assert {tuple(p) for p in roles[name]} == set(wanted), name
