"""What an operator's API call writes into Cutover's audit log (:mod:`cutover.operator_actions`,
:mod:`cutover.operator_audit`), without a server: titled cases of a finished call → its entries; the middleware around a stand-in endpoint (the
body replayed, the entry written before the answer completes, a failed write only logged); the retry
listener's entry; and Airflow's own list of write endpoints against the rules, so an endpoint a new
Airflow adds is decided on, not silently recorded as a bare ``api`` call."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cutover import operator_audit
from cutover.operator_actions import NOT_RECORDED, RULES, ApiCall, Entry, entries_for
from cutover.operator_audit import OperatorAuditMiddleware

SECRET = "PATIENT Jane Doe 1970-01-01"
"""Free text an operator (or a conf) may carry: never copied into an entry."""

RUN = "manual__2026-11-27T18:00:00.123456+00:00"
"""A run id with dots, colons and a plus, as Airflow makes them."""


def _ti(task_id: str, run_id: str = RUN, dag_id: str = "pt_cutover", map_index: int = -1) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "dag_id": dag_id,
        "dag_run_id": run_id,
        "map_index": map_index,
        "note": SECRET,
        "rendered_fields": {"op_kwargs": SECRET},
    }


def _path(**ids: Any) -> dict[str, Any]:
    return {"dag_id": "pt_cutover", "dag_run_id": RUN, **ids}


CASES: list[tuple[str, ApiCall, list[tuple[str, str | None, dict[str, Any]]]]] = [
    (
        "clear of two tasks of one run, with a note: the cleared ids and the options in effect",
        ApiCall(
            "post_clear_task_instances",
            "POST",
            {"dag_id": "pt_cutover"},
            body={"dry_run": False, "dag_run_id": RUN, "task_ids": ["load.visits"], "note": SECRET},
            response={"task_instances": [_ti("load.visits"), _ti("gate_target")], "total_entries": 2},
        ),
        [
            (
                "clear pt_cutover",
                RUN,
                {
                    "dag_id": "pt_cutover",
                    "requested_task_ids": ["load.visits"],
                    "task_ids": ["gate_target", "load.visits"],
                    "task_instances": 2,
                    "only_failed": True,
                    "only_running": False,
                    "reset_dag_runs": True,
                    "include_upstream": False,
                    "include_downstream": False,
                    "include_past": False,
                    "include_future": False,
                    "with_note": True,
                },
            )
        ],
    ),
    (
        "clear without dry_run: Airflow's default is a dry run, which changes nothing",
        ApiCall(
            "post_clear_task_instances",
            "POST",
            {"dag_id": "pt_cutover"},
            body={"dag_run_id": RUN},
            response={"task_instances": [_ti("extract_table")]},
        ),
        [],
    ),
    (
        "clear over a date range: one entry per run it cleared",
        ApiCall(
            "post_clear_task_instances",
            "POST",
            {"dag_id": "pt_backup"},
            body={"dry_run": False, "only_failed": False, "include_past": True},
            response={
                "task_instances": [
                    _ti("dump", "r2", "pt_backup"),
                    _ti("dump", "r1", "pt_backup"),
                    _ti("verify", "r1", "pt_backup"),
                ]
            },
        ),
        [
            ("clear pt_backup", "r1", {"task_ids": ["dump", "verify"], "task_instances": 2}),
            ("clear pt_backup", "r2", {"task_ids": ["dump"], "only_failed": False, "include_past": True}),
        ],
    ),
    (
        "clear that matched nothing: still recorded, on the run asked for",
        ApiCall(
            "post_clear_task_instances",
            "POST",
            {"dag_id": "pt_cutover"},
            body={"dry_run": False, "dag_run_id": RUN},
            response={"task_instances": [], "total_entries": 0},
        ),
        [("clear pt_cutover", RUN, {"task_ids": [], "task_instances": 0, "requested_task_ids": None})],
    ),
    (
        "clear of another team's DAG: not Cutover's",
        ApiCall(
            "post_clear_task_instances",
            "POST",
            {"dag_id": "finance_daily"},
            body={"dry_run": False},
            response={"task_instances": [_ti("t", dag_id="finance_daily")]},
        ),
        [],
    ),
    (
        "clear refused (409, a task still running): nothing happened",
        ApiCall(
            "post_clear_task_instances",
            "POST",
            {"dag_id": "pt_cutover"},
            body={"dry_run": False, "dag_run_id": RUN},
            response={"detail": "running"},
            status=409,
        ),
        [],
    ),
    (
        "clear of a whole run",
        ApiCall("clear_dag_run", "POST", _path(), body={"dry_run": False, "only_failed": True}),
        [("clear pt_cutover", RUN, {"whole_run": True, "only_failed": True, "only_new": False})],
    ),
    (
        "bulk clear of runs of any DAG (~): Cutover's runs only, one entry each",
        ApiCall(
            "clear_dag_runs",
            "POST",
            {"dag_id": "~"},
            body={"dry_run": False, "dag_runs": [{"dag_id": "pt_cutover", "dag_run_id": RUN}]},
            response={
                "dag_runs": [
                    {"dag_id": "pt_cutover", "dag_run_id": RUN, "note": SECRET},
                    {"dag_id": "finance_daily", "dag_run_id": "x"},
                ]
            },
        ),
        [("clear pt_cutover", RUN, {"whole_run": True, "bulk": True})],
    ),
    (
        "a task instance marked failed, with upstream",
        ApiCall(
            "patch_task_instance",
            "PATCH",
            _path(task_id="load.visits"),
            body={"new_state": "FAILED", "include_upstream": True, "note": SECRET},
            response={"task_instances": [_ti("load.visits")]},
        ),
        [("mark failed pt_cutover", RUN, {"task_ids": ["load.visits"], "include_upstream": True})],
    ),
    (
        "one mapped instance marked success",
        ApiCall(
            "patch_task_instance",
            "PATCH",
            _path(task_id="extract_table", map_index="3"),
            body={"new_state": "success"},
        ),
        [("mark success pt_cutover", RUN, {"task_ids": ["extract_table"], "map_index": 3})],
    ),
    (
        "a note only (update_mask=note): the state did not change, nothing recorded",
        ApiCall(
            "patch_task_instance",
            "PATCH",
            _path(task_id="gate_target"),
            query={"update_mask": ["note"]},
            body={"new_state": "success", "note": SECRET},
        ),
        [],
    ),
    (
        "a task group marked success: the instances the answer lists",
        ApiCall(
            "patch_task_group_instances",
            "PATCH",
            _path(group_id="load"),
            body={"new_state": "success"},
            response={"task_instances": [_ti("load.visits"), _ti("load.patients")]},
        ),
        [
            (
                "mark success pt_cutover",
                RUN,
                {"group_id": "load", "task_ids": ["load.patients", "load.visits"], "task_instances": 2},
            )
        ],
    ),
    (
        "a run marked failed",
        ApiCall("patch_dag_run", "PATCH", _path(), body={"state": "failed", "note": SECRET}),
        [("mark run failed pt_cutover", RUN, {"dag_id": "pt_cutover"})],
    ),
    (
        "a run's note only",
        ApiCall("patch_dag_run", "PATCH", _path(), body={"note": SECRET}),
        [],
    ),
    (
        "the UI's multi-select: what succeeded, per state; a failed entity left out",
        ApiCall(
            "bulk_task_instances",
            "PATCH",
            _path(),
            body={
                "actions": [
                    {
                        "action": "update",
                        "entities": [
                            {"task_id": "load.visits", "new_state": "success", "note": SECRET},
                            {"task_id": "load.notes", "new_state": "failed"},
                            {"task_id": "missing", "new_state": "failed"},
                        ],
                    },
                    {"action": "delete", "entities": ["gate_target"]},
                ]
            },
            response={
                "update": {
                    "success": [f"pt_cutover.{RUN}.load.visits[-1]", f"pt_cutover.{RUN}.load.notes[-1]"],
                    "errors": [{"error": "not found", "status_code": 404}],
                },
                "delete": {"success": [f"pt_cutover.{RUN}.gate_target[None]"], "errors": []},
            },
        ),
        [
            ("delete pt_cutover", RUN, {"task_ids": ["gate_target"], "bulk": True, "errors_in_request": 0}),
            ("mark failed pt_cutover", RUN, {"task_ids": ["load.notes"], "errors_in_request": 1}),
            ("mark success pt_cutover", RUN, {"task_ids": ["load.visits"]}),
        ],
    ),
    (
        "bulk runs: a state change and a deletion that succeeded",
        ApiCall(
            "bulk_dag_runs",
            "PATCH",
            {"dag_id": "pt_cutover"},
            body={
                "actions": [
                    {"action": "update", "entities": [{"dag_run_id": RUN, "state": "failed"}]},
                    {"action": "delete", "entities": ["r0", "r-missing"]},
                ]
            },
            response={
                "update": {"success": [f"pt_cutover.{RUN}"], "errors": []},
                "delete": {"success": ["pt_cutover.r0"], "errors": [{"error": "not found"}]},
            },
        ),
        [
            ("mark run failed pt_cutover", RUN, {"whole_run": True, "bulk": True}),
            ("delete pt_cutover", "r0", {"whole_run": True, "errors_in_request": 1}),
        ],
    ),
    (
        "a run deleted",
        ApiCall("delete_dag_run", "DELETE", _path(), status=204),
        [("delete pt_cutover", RUN, {"whole_run": True})],
    ),
    (
        "a task instance deleted",
        ApiCall("delete_task_instance", "DELETE", _path(task_id="extract_table"), query={"map_index": ["2"]}),
        [("delete pt_cutover", RUN, {"task_ids": ["extract_table"], "map_index": 2})],
    ),
    (
        "a trigger: the new run's id, the conf's keys and never its values",
        ApiCall(
            "trigger_dag_run",
            "POST",
            {"dag_id": "pt_cutover"},
            body={"logical_date": None, "conf": {"wave": SECRET, "mode": "big_bang"}},
            response={"dag_run_id": RUN, "conf": {"wave": SECRET}},
        ),
        [("trigger pt_cutover", RUN, {"conf_keys": ["mode", "wave"]})],
    ),
    (
        "unpaused",
        ApiCall("patch_dag", "PATCH", {"dag_id": "pt_cutover"}, body={"is_paused": False}),
        [("unpause pt_cutover", None, {"dag_id": "pt_cutover"})],
    ),
    (
        "every DAG a pattern matches paused: Cutover's only",
        ApiCall(
            "patch_dags",
            "PATCH",
            {},
            query={"dag_id_pattern": ["%"]},
            body={"is_paused": True},
            response={"dags": [{"dag_id": "pt_backup"}, {"dag_id": "finance_daily"}]},
        ),
        [("pause pt_backup", None, {"dag_id": "pt_backup"})],
    ),
    (
        "an XCom edited (no rule): the endpoint, route and field names, no value",
        ApiCall(
            "update_xcom_entry",
            "PATCH",
            _path(task_id="plan_scope", xcom_key="return_value"),
            body={"value": SECRET, "map_index": -1},
            route="/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key:path}",
        ),
        [
            (
                "api update_xcom_entry pt_cutover",
                RUN,
                {
                    "method": "PATCH",
                    "path": {"task_id": "plan_scope", "xcom_key": "return_value"},
                    "body_fields": ["map_index", "value"],
                },
            )
        ],
    ),
    (
        "a query sent as POST",
        ApiCall("get_task_instances_batch", "POST", {"dag_id": "pt_cutover", "dag_run_id": "~"}, body={}),
        [],
    ),
    (
        "a dry-run mark",
        ApiCall("patch_task_instance_dry_run", "PATCH", _path(task_id="t"), body={"new_state": "failed"}),
        [],
    ),
]


@pytest.mark.parametrize(("call", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_call_to_entries(call: ApiCall, expected: list[tuple[str, str | None, dict[str, Any]]]) -> None:
    got = entries_for(call)
    assert [(e.action, e.run_id) for e in got] == [(a, r) for a, r, _ in expected]
    for entry, (_, _, detail) in zip(got, expected, strict=True):
        assert entry.detail.items() >= detail.items(), entry.detail
        text = json.dumps(entry.detail)
        assert SECRET not in text  # notes, conf values, XCom values, rendered fields: never copied


# --- the middleware, around a stand-in for Airflow's router ----------------------------------------


def _run_middleware(
    target_url: str = "postgresql://unused",
    *,
    method: str = "POST",
    path: str = "/api/v2/dags/pt_cutover/clearTaskInstances",
    body: dict[str, Any],
    status: int = 200,
    answer: dict[str, Any],
    events: list[str] | None = None,
) -> tuple[bytes, list[dict[str, Any]]]:
    """Send one request through the middleware to a stand-in of Airflow's clear endpoint, the body in
    two chunks and the answer in two; (what the endpoint read, the messages the client got). The
    client's receipt of the answer's last bytes is appended to ``events``."""
    raw = json.dumps(body).encode()
    received = bytearray()

    async def endpoint_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        # what Starlette's router leaves on the scope for the middleware to read
        scope.update(
            endpoint=SimpleNamespace(__name__="post_clear_task_instances"),
            path_params={"dag_id": "pt_cutover"},
            route=SimpleNamespace(path="/api/v2/dags/{dag_id}/clearTaskInstances"),
        )
        payload = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": payload[:7], "more_body": True})
        await send({"type": "http.response.body", "body": payload[7:]})

    chunks = [raw[:5], raw[5:]]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body") and events is not None:
            events.append("answer complete")
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": []}
    asyncio.run(OperatorAuditMiddleware(endpoint_app, target_url=lambda: target_url)(scope, receive, send))
    return bytes(received), sent


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The request's user, as Airflow's API resolves it (tested against a real server in
    tests/integration/test_operator_audit.py): here ``operator``."""

    async def user(scope: Any) -> str:
        return "operator"

    monkeypatch.setattr(operator_audit, "request_user", user)


@pytest.fixture
def recorded(operator: None, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Entry]]]:
    """What the middleware writes: "written", then (actor, entries), in the order of events."""
    written: list[Any] = []

    def write(url: str, actor: str, entries: list[Entry]) -> None:
        written.append("written")
        written.append((actor, entries))

    monkeypatch.setattr(operator_audit, "write_entries", write)
    return written


CLEAR = {"dry_run": False, "dag_run_id": RUN, "only_failed": False}
CLEARED = {"task_instances": [_ti("begin_run")], "total_entries": 1}


def test_the_entry_is_written_before_the_answer_completes(recorded: list[Any]) -> None:
    received, sent = _run_middleware(body=CLEAR, answer=CLEARED, events=recorded)
    assert json.loads(received) == CLEAR  # the endpoint read the whole body, as sent
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert answer == json.dumps(CLEARED).encode()
    assert recorded[0] == "written"
    assert recorded[2] == "answer complete"
    actor, [entry] = recorded[1]
    assert actor == "operator"
    assert (entry.action, entry.run_id, entry.detail["task_ids"]) == ("clear pt_cutover", RUN, ["begin_run"])


def test_refused_dry_run_and_read_calls_write_nothing(recorded: list[Any]) -> None:
    _run_middleware(body=CLEAR, answer={"detail": "Forbidden"}, status=403)
    _run_middleware(body={**CLEAR, "dry_run": True}, answer=CLEARED)
    _run_middleware(method="GET", body={}, answer=CLEARED)
    _run_middleware(path="/execution/task-instances/x/state", body=CLEAR, answer=CLEARED)
    assert recorded == []


def test_a_failed_write_is_logged_and_the_answer_still_goes_out(
    operator: None, caplog: pytest.LogCaptureFixture
) -> None:
    secret_url = "postgresql://loader:hunter2@127.0.0.1:1/target"  # nothing listens on port 1
    events: list[str] = []
    with caplog.at_level(logging.WARNING, logger="cutover.operator_audit"):
        _, sent = _run_middleware(secret_url, body=CLEAR, answer=CLEARED, events=events)
    assert sent[0]["status"] == 200
    assert events == ["answer complete"]
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"NOT in Cutover's audit log: clear pt_cutover of run {RUN} by operator (")
    assert line.endswith("; Airflow's event log has it")
    assert "hunter2" not in caplog.text
    assert "loader" not in caplog.text


def test_an_unexpected_body_is_logged_not_raised(
    recorded: list[Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(call: ApiCall) -> list[Entry]:
        raise KeyError("dag_id")

    monkeypatch.setitem(RULES, "post_clear_task_instances", broken)
    with caplog.at_level(logging.WARNING, logger="cutover.operator_audit"):
        _, sent = _run_middleware(body=CLEAR, answer=CLEARED)
    assert sent[0]["status"] == 200
    assert recorded == []
    assert (
        "NOT in Cutover's audit log: POST /api/v2/dags/pt_cutover/clearTaskInstances (KeyError)"
        in caplog.text
    )


# --- retries ------------------------------------------------------------------------------------


def _task_instance(try_number: int, dag_id: str = "pt_cutover", user: str | None = "engineer") -> Any:
    dag_run = SimpleNamespace(triggering_user_name=user)
    return SimpleNamespace(
        dag_id=dag_id,
        task_id="load.visits",
        run_id=RUN,
        map_index=-1,
        try_number=try_number,
        max_tries=2,
        get_template_context=lambda: {"dag_run": dag_run},
    )


def test_a_retry_is_recorded_with_the_runs_actor() -> None:
    assert operator_audit.retry_entry(_task_instance(1)) is None
    assert operator_audit.retry_entry(_task_instance(3, dag_id="finance_daily")) is None
    actor, entry = operator_audit.retry_entry(_task_instance(2)) or ("", None)
    assert actor == "engineer"
    assert entry == Entry("retry load.visits", RUN, {"dag_id": "pt_cutover", "try_number": 2, "max_tries": 2})
    scheduled = operator_audit.retry_entry(_task_instance(2, user=None))
    assert scheduled is not None
    assert scheduled[0] == "scheduler"


def test_the_listener_never_fails_the_task(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_connection() -> str:
        raise RuntimeError("no target_db connection")

    monkeypatch.setattr(operator_audit, "_target_url_in_task", no_connection)
    no_context = _task_instance(2)
    no_context.get_template_context = dict  # no dag_run in it
    with caplog.at_level(logging.WARNING, logger="cutover.operator_audit"):
        operator_audit.RETRY_LISTENER.on_task_instance_running(None, _task_instance(2))
        operator_audit.RETRY_LISTENER.on_task_instance_running(None, no_context)
    assert f"NOT in Cutover's audit log: a retry of load.visits of run {RUN} (KeyError)" in caplog.text
    assert (
        f"NOT in Cutover's audit log: retry load.visits of run {RUN} by engineer (RuntimeError)"
        in caplog.text
    )


# --- Airflow's write endpoints against the rules ------------------------------------------------

RECORDED_AS_API_CALL = {
    "delete_dag",
    "delete_dag_asset_queued_events",
    "delete_dag_asset_queued_event",
    "clear_dag_run_partitions",
    "set_task_state_store",
    "patch_task_state_store",
    "delete_task_state_store",
    "clear_task_state_store",
    "create_xcom_entry",
    "update_xcom_entry",
    "delete_xcom_entry",
    "update_hitl_detail",
}
"""Airflow 3.3's other writes on a DAG, which no rule names: recorded as ``api <endpoint>``."""

_ROUTES = """
import json
from fastapi.routing import APIRoute
from airflow.api_fastapi.core_api.routes.public import public_router
writes = {"POST", "PATCH", "PUT", "DELETE"}
print(json.dumps(sorted({
    r.endpoint.__name__ for r in public_router.routes
    if isinstance(r, APIRoute) and r.methods & writes and r.path.startswith("/api/v2/dags")
})))
"""


def test_every_write_endpoint_of_airflow_is_decided(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    done = subprocess.run(
        [sys.executable, "-c", _ROUTES], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    endpoints = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "post_clear_task_instances" in endpoints
    decided = set(RULES) | set(NOT_RECORDED) | RECORDED_AS_API_CALL
    assert not endpoints - decided, "new Airflow write endpoints: give each a rule or a reason"
    assert not decided - endpoints, "rules for endpoints this Airflow no longer has"
