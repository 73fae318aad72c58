"""Access control of the local Airflow: who may trigger, clear or only read, enforced by the FAB auth
manager behind ``cutover airflow`` (REST API calls with each role's token), and the role table itself."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from browser.harness import served_airflow, wait_for_dag

from cutover.local_airflow import CUTOVER_DAGS, ROLES, USERS, logins_file, ui_logins

UNUSED_TARGET = "postgresql://unused@127.0.0.1:9/unused"
"""Nothing runs here (the DAGs stay paused): an address where nothing listens proves it."""


def _perms(role: str) -> set[tuple[str, str]]:
    return set(ROLES[role])


SELF_SERVICE = {("can_edit", "My Profile"), ("can_edit", "My Password")}


def test_auditor_only_reads() -> None:
    writes = {p for p in _perms("Auditor") if p[0] not in ("can_read", "menu_access")}
    assert writes == SELF_SERVICE
    assert ("can_read", "Audit Logs") in _perms("Auditor")
    assert ("can_read", "Task Logs") in _perms("Auditor")


def test_operator_clears_but_never_triggers() -> None:
    perms = _perms("Operator")
    assert not [p for p in perms if p[0] in ("can_create", "can_delete")]
    edits = {resource for action, resource in perms if action == "can_edit"} - {"My Profile", "My Password"}
    assert edits == {"Task Instances", "DAG Runs", *(f"DAG:{d}" for d in CUTOVER_DAGS)}


def test_engineer_triggers_only_the_cutover_dags() -> None:
    extra = _perms("DataEngineer") - _perms("Operator")
    assert extra == {
        ("can_create", f"DAG Run:{d}") for d in ("pt_assess", "pt_backup", "pt_cutover", "pt_rollback")
    }
    for role in ROLES:
        touched = {resource for _, resource in ROLES[role]}
        assert not touched & {"Connections", "Variables", "Configurations", "Users", "Roles"}, role
        assert ("can_edit", "DAGs") not in ROLES[role]  # never every DAG at once


def test_logins_generated_once_owner_only(cutover_home: Path) -> None:
    first = ui_logins()
    assert set(first) == set(USERS)
    assert len(set(first.values())) == len(USERS)
    assert all(len(password) >= 20 for password in first.values())
    assert stat.S_IMODE(logins_file().stat().st_mode) == 0o600
    assert ui_logins() == first  # generated once, then reused


@pytest.mark.slow
def test_roles_enforced_by_the_api(home: Path) -> None:
    with served_airflow(home, {"AIRFLOW_CONN_TARGET_DB": UNUSED_TARGET}) as served:
        tokens = {user: served.token(user) for user in USERS}
        wait_for_dag(served, tokens["engineer"], "pt_cutover")

        # authentication is on: no anonymous access, no token for a wrong password
        assert served.api("GET", "/api/v2/dags", None)[0] in (401, 403)
        status, _ = served.api("POST", "/auth/token", None, {"username": "engineer", "password": "wrong"})
        assert status in (401, 403)
        for user in USERS:
            assert served.api("GET", "/api/v2/dags/pt_cutover", tokens[user])[0] == 200, user

        trigger = "/api/v2/dags/pt_cutover/dagRuns"
        assert served.api("POST", trigger, tokens["operator"], {"logical_date": None})[0] == 403
        assert served.api("POST", trigger, tokens["auditor"], {"logical_date": None})[0] == 403
        status, run = served.api("POST", trigger, tokens["engineer"], {"logical_date": None})
        assert status == 200, run
        assert run["triggering_user_name"] == "engineer"
        # per DAG: the engineer's trigger right covers the cutover DAGs only
        assert served.api("POST", "/api/v2/dags/pt_other/dagRuns", tokens["engineer"], {})[0] == 403

        clear = "/api/v2/dags/pt_cutover/clearTaskInstances"
        body = {"dry_run": True, "only_failed": False, "dag_run_id": run["dag_run_id"]}
        assert served.api("POST", clear, tokens["operator"], body)[0] == 200
        assert served.api("POST", clear, tokens["auditor"], body)[0] == 403
        # pausing or unpausing needs the trigger right: the operator, who clears, may not unpause
        # pt_cutover (its scheduler would start a run the operator may not trigger)
        dag = "/api/v2/dags/pt_cutover"
        assert served.api("PATCH", dag, tokens["operator"], {"is_paused": False})[0] == 403
        assert served.api("PATCH", dag, tokens["auditor"], {"is_paused": False})[0] == 403
        status, paused = served.api("PATCH", dag, tokens["engineer"], {"is_paused": True})
        assert status == 200, paused
        assert paused["is_paused"] is True

        # connections hold credentials: the admin only
        for user in ("engineer", "operator", "auditor"):
            assert served.api("GET", "/api/v2/connections", tokens[user])[0] == 403, user
        assert served.api("GET", "/api/v2/connections", tokens["admin"])[0] == 200

        # the auditor reads who did what
        status, events = served.api("GET", "/api/v2/eventLogs?dag_id=pt_cutover&limit=100", tokens["auditor"])
        assert status == 200, events
        assert any(e["owner"] == "engineer" and "trigger" in e["event"] for e in events["event_logs"]), events
