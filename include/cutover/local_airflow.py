"""Airflow on this machine: the environment for in-process runs (``cutover run``) and the local UI.

Everything defaults to the embedded setup under the state folder: SQLite metadata in
``<state>/airflow``, the repository's ``dags/`` folder, and the three connections as
``AIRFLOW_CONN_*`` variables (configured values are kept).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cutover.config import CONN_IDS, env_var, fields_from_env, state_dir

log = logging.getLogger(__name__)

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


def prepare_airflow() -> dict[str, str]:
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


def start_airflow(port: int) -> int:
    """Exec ``airflow standalone`` (API server, scheduler, DAG processor, triggerer) on ``port``."""
    env = prepare_airflow()
    print(f"Airflow home: {env['AIRFLOW_HOME']}; UI on http://localhost:{port}")
    os.environ["AIRFLOW__API__PORT"] = str(port)
    # `airflow standalone` starts its components as `airflow …` subprocesses found on PATH
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # exec: Ctrl-C and SIGTERM reach `airflow standalone` itself, which stops its components
    os.execv(sys.executable, [sys.executable, "-m", "airflow", "standalone"])
    return 0  # not reached
