"""Operators' actions in Cutover's audit log, for real: a served Airflow (``cutover airflow``) whose
``target_db`` is a migrated PostgreSQL database records who cleared and marked a pt_cutover run
(REST API calls with each role's token), a task that runs a second time records its retry (an
in-process ``dag.test``, as ``cutover run`` runs DAGs), and the chain still verifies."""

from __future__ import annotations

import getpass
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from browser.harness import served_airflow, wait_for_dag

from cutover.audit import verify
from cutover.operator_actions import Entry
from cutover.operator_audit import record
from cutover.target import upgrade


@pytest.fixture
def target(pg_url: str) -> str:
    """A migrated, empty target: its audit log is the chain under test."""
    upgrade(pg_url)
    return pg_url


def _entries(url: str, after: int = 0) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    """(actor, action, run_id, detail) of the audit log's entries after id ``after``, in order."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT actor, action, run_id, detail FROM migration.audit_log WHERE id > %s ORDER BY id",
            (after,),
        ).fetchall()
    return [(actor, action, run_id, detail) for actor, action, run_id, detail in rows]


def _last_id(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM migration.audit_log").fetchone()
    return int(row[0]) if row else 0


def test_record_appends_to_the_chain(target: str) -> None:
    before = _last_id(target)
    entry = Entry("clear pt_cutover", "manual__1", {"dag_id": "pt_cutover", "task_ids": ["begin_run"]})
    assert record(lambda: target, "operator", [entry]) is True
    assert _entries(target, before) == [("operator", "clear pt_cutover", "manual__1", entry.detail)]
    assert verify(target).ok


def test_a_target_without_the_log_is_named(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    entry = Entry("clear pt_assess", "manual__1", {"dag_id": "pt_assess"})
    with caplog.at_level(logging.WARNING, logger="cutover.operator_audit"):
        assert record(lambda: pg_url, "operator", [entry]) is False
    assert caplog.records[-1].getMessage() == (
        "NOT in Cutover's audit log: clear pt_assess of run manual__1 by operator"
        " (the target has no audit log yet (not migrated)); Airflow's event log has it"
    )


def _trigger(served: Any, token: str, dag_id: str) -> str:
    status, run = served.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", token, {"logical_date": None})
    assert status == 200, run
    return str(run["dag_run_id"])


def _patch_with_cookie(url: str, token: str, body: dict[str, Any]) -> int:
    """PATCH as the UI does: the JWT in Airflow's ``_token`` session cookie, no Authorization header."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json", "Cookie": f"_token={token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.status)


@pytest.mark.slow
def test_the_api_records_who_cleared_and_marked(home: Path, target: str) -> None:
    started = time.monotonic()
    with served_airflow(home, {"AIRFLOW_CONN_TARGET_DB": target}) as served:
        tokens = {user: served.token(user) for user in ("engineer", "operator", "auditor")}
        wait_for_dag(served, tokens["engineer"], "pt_cutover")
        wait_for_dag(served, tokens["engineer"], "pt_backup")
        before = _last_id(target)

        # the DAGs stay paused: their runs stay queued and nothing but the API touches the target
        cutover_run = _trigger(served, tokens["engineer"], "pt_cutover")
        backup_run = _trigger(served, tokens["engineer"], "pt_backup")

        clear = "/api/v2/dags/pt_cutover/clearTaskInstances"
        body = {"dry_run": True, "only_failed": False, "dag_run_id": cutover_run}
        assert served.api("POST", clear, tokens["operator"], body)[0] == 200  # a dry run: not recorded
        assert served.api("POST", clear, tokens["auditor"], {**body, "dry_run": False})[0] == 403
        # a run with a queued-at deadline (pt_cutover's window): Airflow 3.3.2 alone answers 500
        # (apache/airflow#70368), cutover.airflow_compat's fix in the API server makes it clear
        status, cleared_cutover = served.api("POST", clear, tokens["operator"], {**body, "dry_run": False})
        assert status == 200, cleared_cutover

        clear = "/api/v2/dags/pt_backup/clearTaskInstances"
        body = {"dry_run": False, "only_failed": False, "dag_run_id": backup_run}
        status, cleared = served.api("POST", clear, tokens["operator"], body)
        assert status == 200, cleared
        cleared_ids = sorted({ti["task_id"] for ti in cleared["task_instances"]})
        assert cleared_ids

        mark = f"/api/v2/dags/pt_backup/dagRuns/{backup_run}/taskInstances/{cleared_ids[0]}"
        note = "restarted by hand"
        status, marked = served.api("PATCH", mark, tokens["operator"], {"new_state": "success", "note": note})
        assert status == 200, marked
        # the UI's way: the session cookie, no bearer token
        cookie_status = _patch_with_cookie(
            served.url + f"/api/v2/dags/pt_backup/dagRuns/{backup_run}",
            served.token("engineer"),
            {"state": "failed"},
        )
        assert cookie_status == 200

        # each entry was written before its answer completed: no waiting here
        entries = _entries(target, before)
    expected = [
        ("engineer", "trigger pt_cutover", cutover_run),
        ("engineer", "trigger pt_backup", backup_run),
        ("operator", "clear pt_cutover", cutover_run),
        ("operator", "clear pt_backup", backup_run),
        ("operator", "mark success pt_backup", backup_run),
        ("engineer", "mark run failed pt_backup", backup_run),
    ]
    assert [(actor, action, run_id) for actor, action, run_id, _ in entries] == expected
    clear_detail, mark_detail = entries[-3][3], entries[-2][3]
    assert clear_detail["task_ids"] == cleared_ids
    assert clear_detail["task_instances"] == len(cleared["task_instances"])
    assert clear_detail["only_failed"] is False
    assert mark_detail["task_ids"] == [cleared_ids[0]]
    assert note not in json.dumps(mark_detail)
    assert verify(target).ok
    print(f"served, cleared and marked in {time.monotonic() - started:.0f} s")


RETRIED_DAG = """
import os
from datetime import timedelta

from airflow.sdk import DAG, task

with DAG("pt_retry_probe", schedule=None, default_args={"retries": 1, "retry_delay": timedelta(0)}) as dag:

    @task
    def flaky() -> None:
        flag = os.environ["RETRY_PROBE_FLAG"]
        if not os.path.exists(flag):
            open(flag, "w").close()
            raise RuntimeError("the first try fails")

    flaky()
"""

RUN_IT = """
import sys

from cutover.local_airflow import prepare_airflow

prepare_airflow()
sys.path.insert(0, sys.argv[1])
from pt_retry_probe import dag

print("run state:", dag.test().state)
"""
"""What ``cutover run`` does, on a DAG of its own (dag.test serializes the DAGs folder's DAGs first)."""


@pytest.mark.slow
def test_a_retried_task_records_its_try(home: Path, target: str, tmp_path: Path) -> None:
    """The plugin's listener runs in the task's process: ``cutover run``'s dag.test here, a task
    process of the scheduler's executor in a deployment."""
    before = _last_id(target)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "pt_retry_probe.py").write_text(RETRIED_DAG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        {
            "CUTOVER_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW_CONN_TARGET_DB": target,
            "AIRFLOW_CONN_LEGACY_DB": f"sqlite:///{tmp_path / 'unused.db'}",
            "AIRFLOW_CONN_STAGING_STORE": f"file://{tmp_path / 'staging'}",
            "RETRY_PROBE_FLAG": str(tmp_path / "tried-once"),
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", RUN_IT, str(dags)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "run state: success" in done.stdout, (done.stdout + done.stderr)[-3000:]
    [(actor, action, run_id, detail)] = _entries(target, before)
    assert (actor, action) == (getpass.getuser(), "retry flaky")
    assert str(run_id).startswith("manual__")
    assert detail == {"dag_id": "pt_retry_probe", "try_number": 2, "max_tries": 1}
    assert verify(target).ok
