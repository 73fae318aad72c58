"""A local Airflow for tests, started as a user starts it (``cutover airflow --port P``) and stopped with
SIGTERM, which the command turns into an orderly stop of its four components."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover.local_airflow import free_port


@dataclass
class Served:
    url: str
    home: Path
    logins: dict[str, str]
    output: Path

    def token(self, user: str, password: str | None = None) -> str:
        """A JWT for ``user`` from the FAB auth manager's token endpoint (HTTP errors raise)."""
        body = json.dumps({"username": user, "password": password or self.logins[user]}).encode()
        request = urllib.request.Request(
            f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.load(response)["access_token"])

    def api(self, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
        """Call the REST API; (status, parsed JSON or None). Never raises on an HTTP error status."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw)
            except ValueError:
                return error.code, None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
            report = json.load(response)
    except (OSError, ValueError):
        return False
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((report.get(part) or {}).get("status") == "healthy" for part in parts)


TEST_SETTINGS = {
    # only the runs a test triggers: unpausing pt_cutover (the UI's trigger does) would otherwise start
    # the latest run of its Friday timetable first, and max_active_runs=1 queues the test's run behind it
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    # the DAG files do not change during a test: parse them once, not every 30 s beside the tasks
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
}
"""Settings of the served Airflow under test (a test's ``env`` may override them)."""


@contextmanager
def served_airflow(home: Path, env: dict[str, str] | None = None, timeout: float = 300) -> Iterator[Served]:
    """``cutover airflow`` on a free port with ``home`` as its state folder, healthy, until the block ends."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    full_env.update({"CUTOVER_HOME": str(home), **TEST_SETTINGS, **(env or {})})
    output = home / "cutover-airflow.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cutover.cli", "airflow", "--port", str(port)],
            env=full_env,
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise AssertionError(
                    f"cutover airflow exited {proc.returncode}: {output.read_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"Airflow not healthy after {timeout} s: {output.read_text()[-3000:]}")
            time.sleep(2)
        logins = json.loads((home / "airflow-logins.json").read_text())
        yield Served(url=url, home=home, logins=logins, output=output)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_dag(served: Served, token: str, dag_id: str, timeout: float = 180) -> dict[str, Any]:
    """Wait until the DAG processor has stored ``dag_id``; its REST representation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = served.api("GET", f"/api/v2/dags/{dag_id}", token)
        if status == 200:
            return dict(body)
        time.sleep(2)
    raise AssertionError(f"DAG {dag_id} not parsed after {timeout} s")
