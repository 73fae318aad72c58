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

    def diagnose(self, token: str, dag_id: str, run_id: str, target_url: str | None = None) -> str:
        """Why a run has not finished, for a failed test's message: its task instances' states (ids
        only), the components' health, the target's sessions that wait or hold a transaction open,
        and the warnings and errors each component logged last."""
        lines = [f"health: {_health(self.url)}"]
        if target_url:
            lines += _sessions(target_url)
        status, body = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=500", token
        )
        if status == 200:
            states: dict[str, list[str]] = {}
            for ti in body["task_instances"]:
                label = ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else "")
                states.setdefault(str(ti["state"]), []).append(label)
            for state, tasks in sorted(states.items()):
                more = f" and {len(tasks) - 20} more" if len(tasks) > 20 else ""
                lines.append(f"{state}: {', '.join(sorted(tasks)[:20])}{more}")
        for log in sorted((self.home / "airflow" / "components").glob("*.log")):
            noted = [
                line
                for line in log.read_text(errors="replace").splitlines()
                if any(level in line for level in ("[warning", "[error", "[critical", "Traceback", "Killed"))
                and not any(noise in line for noise in ("[py.warnings]", "[uvicorn.error]"))
            ]
            lines += [f"--- {log.name} ({log.stat().st_size} bytes), its last warnings and errors:"]
            lines += [line[:300] for line in noted[-15:]]
        return "\n".join(lines)


def _sessions(target_url: str) -> list[str]:
    """The target server's client sessions that wait on something or sit in an open transaction: who,
    in what state, waiting on what, for how long, and the first words of their statement."""
    import psycopg

    query = """
        SELECT application_name, state, wait_event_type, wait_event,
               round(extract(epoch FROM now() - xact_start)), left(regexp_replace(query, '\\s+', ' ', 'g'), 60)
          FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND (wait_event_type = 'Lock' OR state LIKE 'idle in transaction%' OR xact_start < now() - interval '60 s')
    """
    try:
        with psycopg.connect(target_url, connect_timeout=10) as conn:
            rows = conn.execute(query).fetchall()
    except psycopg.Error as exc:
        return [f"target sessions: not read ({type(exc).__name__})"]
    return [f"target session: {row}" for row in rows] or [
        "target sessions: none waiting or idle in a transaction"
    ]


_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def _health(url: str) -> dict[str, str]:
    """Each component's status as Airflow's health endpoint reports it (``unreachable``: no answer)."""
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
            report = json.load(response)
    except (OSError, ValueError):
        return dict.fromkeys(_PARTS, "unreachable")
    return {part: str((report.get(part) or {}).get("status")) for part in _PARTS}


def _healthy(url: str) -> bool:
    return all(status == "healthy" for status in _health(url).values())


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
