"""What an operator's call to Airflow's API on a Cutover DAG records in Cutover's audit log: a finished
call (:class:`ApiCall`) in, its entries (:class:`Entry`) out, by the endpoint function that served it
(:data:`RULES`). Pure: :mod:`cutover.operator_audit` takes the calls off Airflow's API server and
writes the entries with the caller's user name as their actor.

Each entry has the run id and a detail of ids, options and counts only: never a note's text, a
conf value, an XCom value or a patient value.

============================== ====================================================================
action                         when
============================== ====================================================================
``clear <dag_id>``             task instances or whole runs cleared (not a dry run): ``task_ids``,
                               ``task_instances`` (count), the options in effect (``only_failed``, …)
``mark <state> <dag_id>``      task instances (one, a task group's, or a bulk selection) set to a state
``mark run <state> <dag_id>``  a run set to a state
``delete <dag_id>``            task instances or a run deleted
``trigger <dag_id>``           a run triggered (``conf_keys``); the run's own ``start`` entry follows
                               when it starts, which a paused DAG's run may never do
``pause``/``unpause <dag_id>`` the DAG's pause toggle
``api <endpoint> <dag_id>``    any other successful write on a Cutover DAG (XCom, task state store,
                               …): the endpoint, the route and the body's field names
============================== ====================================================================

Only a 2xx answer records (Airflow's event log records the attempt, before the endpoint runs); a
dry run or a query sent as POST records nothing (:data:`NOT_RECORDED`).

>>> [(e.action, e.run_id) for e in entries_for(ApiCall("clear_dag_run", "POST",
...     {"dag_id": "pt_cutover", "dag_run_id": "r1"}, body={"dry_run": False}))]
[('clear pt_cutover', 'r1')]
>>> entries_for(ApiCall("clear_dag_run", "POST", {"dag_id": "pt_cutover", "dag_run_id": "r1"}, body={}))
[]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CUTOVER_DAG_PREFIX = "pt_"
"""Cutover's DAGs (``pt_cutover``, ``pt_backup``, …): only their actions are recorded here."""

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass(frozen=True)
class ApiCall:
    """One finished request to Airflow's API, as the middleware saw it: the endpoint function's name,
    the method, the path parameters (ids), the query, and the JSON bodies (None when not JSON)."""

    endpoint: str
    method: str
    path: Mapping[str, Any]
    query: Mapping[str, list[str]] = field(default_factory=dict)
    body: Any = None
    response: Any = None
    status: int = 200
    route: str = ""


@dataclass(frozen=True)
class Entry:
    """An audit entry to write, but for its actor: ``action``, ``run_id`` and a detail of ids only."""

    action: str
    run_id: str | None
    detail: dict[str, Any]


def is_cutover(dag_id: Any) -> bool:
    """Whether ``dag_id`` names one of Cutover's DAGs.

    >>> is_cutover("pt_cutover"), is_cutover("example_bash_operator"), is_cutover(None)
    (True, False, False)
    """
    return isinstance(dag_id, str) and dag_id.startswith(CUTOVER_DAG_PREFIX)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _options(body: Mapping[str, Any], defaults: Mapping[str, bool]) -> dict[str, bool]:
    """The boolean options in effect: the body's, else the endpoint's defaults (as Airflow applies them)."""
    return {name: bool(body.get(name, default)) for name, default in defaults.items()}


def _dry_run(body: Mapping[str, Any]) -> bool:
    """Airflow's clear bodies default to a dry run: only an explicit ``"dry_run": false`` clears."""
    return body.get("dry_run", True) is not False


def _masked_out(call: ApiCall, name: str) -> bool:
    """Whether an ``update_mask`` query leaves field ``name`` unchanged."""
    mask = call.query.get("update_mask")
    return mask is not None and name not in mask


def _with_note(body: Mapping[str, Any]) -> dict[str, bool]:
    """That a note came with the action (its text is the operator's, never copied here)."""
    return {"with_note": True} if body.get("note") else {}


_CLEAR_TI = {
    "only_failed": True,
    "only_running": False,
    "reset_dag_runs": True,
    "include_upstream": False,
    "include_downstream": False,
    "include_past": False,
    "include_future": False,
}
_CLEAR_RUN = {"only_failed": False, "only_new": False}
_MARK_TI = {
    "include_upstream": False,
    "include_downstream": False,
    "include_past": False,
    "include_future": False,
}


def _task_instances(response: Any) -> list[dict[str, Any]]:
    """The task instances a response lists (``task_instances``), as dicts."""
    return [ti for ti in _list(_dict(response).get("task_instances")) if isinstance(ti, dict)]


def _by_run(tis: Iterable[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    runs: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for ti in tis:
        runs[ti.get("dag_run_id")].append(ti)
    return dict(runs)


def _task_ids(tis: Iterable[dict[str, Any]]) -> list[str]:
    return sorted({str(ti.get("task_id")) for ti in tis})


def _clear_task_instances(call: ApiCall) -> list[Entry]:
    """``POST /dags/{dag_id}/clearTaskInstances``: one entry per run whose task instances were cleared."""
    body, dag_id = _dict(call.body), call.path.get("dag_id")
    if _dry_run(body) or not is_cutover(dag_id):
        return []
    common = {
        "dag_id": dag_id,
        "requested_task_ids": body.get("task_ids"),  # None: every task
        **_options(body, _CLEAR_TI),
        **_with_note(body),
    }
    tis = [ti for ti in _task_instances(call.response) if ti.get("dag_id", dag_id) == dag_id]
    runs = _by_run(tis) or {body.get("dag_run_id"): []}
    return [
        Entry(
            f"clear {dag_id}",
            run_id,
            {**common, "task_ids": _task_ids(group), "task_instances": len(group)},
        )
        for run_id, group in sorted(runs.items(), key=lambda kv: str(kv[0]))
    ]


def _clear_run(call: ApiCall) -> list[Entry]:
    """``POST /dags/{dag_id}/dagRuns/{dag_run_id}/clear``: the whole run."""
    body, dag_id = _dict(call.body), call.path.get("dag_id")
    if _dry_run(body) or not is_cutover(dag_id):
        return []
    detail = {"dag_id": dag_id, "whole_run": True, **_options(body, _CLEAR_RUN), **_with_note(body)}
    return [Entry(f"clear {dag_id}", call.path.get("dag_run_id"), detail)]


def _clear_runs(call: ApiCall) -> list[Entry]:
    """``POST /dags/{dag_id}/clearDagRuns`` (``~``: any DAG): one entry per cleared Cutover run."""
    body = _dict(call.body)
    if _dry_run(body):
        return []
    options = {"whole_run": True, **_options(body, _CLEAR_RUN), **_with_note(body), "bulk": True}
    runs = [r for r in _list(_dict(call.response).get("dag_runs")) if isinstance(r, dict)]
    return [
        Entry(f"clear {r['dag_id']}", r.get("dag_run_id"), {"dag_id": r["dag_id"], **options})
        for r in runs
        if is_cutover(r.get("dag_id"))
    ]


def _new_state(call: ApiCall, body: Mapping[str, Any], name: str = "new_state") -> str | None:
    """The state a PATCH sets, unless it sets none (a note only, or masked out)."""
    state = body.get(name)
    if not isinstance(state, str) or not state or _masked_out(call, name):
        return None
    return state.lower()


def _mark_task_instance(call: ApiCall) -> list[Entry]:
    """``PATCH …/taskInstances/{task_id}[/{map_index}]`` with a ``new_state`` (a note alone: nothing)."""
    body, dag_id = _dict(call.body), call.path.get("dag_id")
    state = _new_state(call, body)
    if state is None or not is_cutover(dag_id):
        return []
    detail: dict[str, Any] = {"dag_id": dag_id, "task_ids": [call.path.get("task_id")]}
    if call.path.get("map_index") is not None:
        detail["map_index"] = int(call.path["map_index"])
    detail.update(_options(body, _MARK_TI))
    return [Entry(f"mark {state} {dag_id}", call.path.get("dag_run_id"), detail)]


def _mark_task_group(call: ApiCall) -> list[Entry]:
    """``PATCH …/taskGroupInstances/{group_id}``: the group's task instances the answer lists."""
    body, dag_id = _dict(call.body), call.path.get("dag_id")
    state = _new_state(call, body)
    if state is None or not is_cutover(dag_id):
        return []
    tis = _task_instances(call.response)
    detail = {
        "dag_id": dag_id,
        "group_id": call.path.get("group_id"),
        "task_ids": _task_ids(tis),
        "task_instances": len(tis),
        **_options(body, _MARK_TI),
    }
    return [Entry(f"mark {state} {dag_id}", call.path.get("dag_run_id"), detail)]


def _mark_run(call: ApiCall) -> list[Entry]:
    """``PATCH /dags/{dag_id}/dagRuns/{dag_run_id}`` with a ``state``."""
    body, dag_id = _dict(call.body), call.path.get("dag_id")
    state = _new_state(call, body, "state")
    if state is None or not is_cutover(dag_id):
        return []
    return [Entry(f"mark run {state} {dag_id}", call.path.get("dag_run_id"), {"dag_id": dag_id})]


def _bulk_outcome(call: ApiCall, kind: str) -> tuple[list[str], int]:
    """A bulk answer's successful keys and its error count for one action kind (update, delete)."""
    outcome = _dict(_dict(call.response).get(kind))
    return [str(k) for k in _list(outcome.get("success"))], len(_list(outcome.get("errors")))


def _bulk_task_instances(call: ApiCall) -> list[Entry]:
    """``PATCH /dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances`` (the UI's multi-select): per run
    and state, the task instances whose update or deletion succeeded (``dag.run.task[map]`` keys)."""
    groups: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)  # (action, kind, dag, run)
    errors: dict[str, int] = {}
    for action in map(_dict, _list(_dict(call.body).get("actions"))):
        kind, mask = action.get("action"), action.get("update_mask")
        if kind not in ("update", "delete"):
            continue
        succeeded, errors[kind] = _bulk_outcome(call, kind)
        for entity in _list(action.get("entities")):
            item = {"task_id": entity} if isinstance(entity, str) else _dict(entity)
            dag = item.get("dag_id") or call.path.get("dag_id")
            run = item.get("dag_run_id") or call.path.get("dag_run_id")
            if kind == "delete":
                verb = f"delete {dag}"
            elif isinstance(item.get("new_state"), str) and not (mask and "new_state" not in mask):
                verb = f"mark {item['new_state'].lower()} {dag}"
            else:
                continue
            prefix = f"{dag}.{run}.{item.get('task_id')}["
            if is_cutover(dag) and any(key.startswith(prefix) for key in succeeded):
                groups[(verb, kind, str(dag), str(run))].add(str(item.get("task_id")))
    return [
        Entry(
            verb,
            run,
            {"dag_id": dag, "task_ids": sorted(ids), "bulk": True, "errors_in_request": errors[kind]},
        )
        for (verb, kind, dag, run), ids in sorted(groups.items())
    ]


def _bulk_runs(call: ApiCall) -> list[Entry]:
    """``PATCH /dags/{dag_id}/dagRuns`` (bulk): runs whose state change or deletion succeeded
    (``dag.run`` keys)."""
    entries = []
    for action in map(_dict, _list(_dict(call.body).get("actions"))):
        kind, mask = action.get("action"), action.get("update_mask")
        if kind not in ("update", "delete"):
            continue
        succeeded, errors = _bulk_outcome(call, kind)
        for entity in _list(action.get("entities")):
            item = {"dag_run_id": entity} if isinstance(entity, str) else _dict(entity)
            dag, run = item.get("dag_id") or call.path.get("dag_id"), item.get("dag_run_id")
            if kind == "delete":
                verb = f"delete {dag}"
            elif isinstance(item.get("state"), str) and not (mask and "state" not in mask):
                verb = f"mark run {item['state'].lower()} {dag}"
            else:
                continue
            if is_cutover(dag) and f"{dag}.{run}" in succeeded:
                detail = {"dag_id": dag, "whole_run": True, "bulk": True, "errors_in_request": errors}
                entries.append(Entry(verb, str(run), detail))
    return entries


def _delete_run(call: ApiCall) -> list[Entry]:
    """``DELETE /dags/{dag_id}/dagRuns/{dag_run_id}``: the run and its Airflow history."""
    dag_id = call.path.get("dag_id")
    if not is_cutover(dag_id):
        return []
    return [Entry(f"delete {dag_id}", call.path.get("dag_run_id"), {"dag_id": dag_id, "whole_run": True})]


def _delete_task_instance(call: ApiCall) -> list[Entry]:
    """``DELETE …/taskInstances/{task_id}`` (``map_index`` in the query, -1 unmapped)."""
    dag_id = call.path.get("dag_id")
    if not is_cutover(dag_id):
        return []
    map_index = int((call.query.get("map_index") or ["-1"])[0])
    detail = {"dag_id": dag_id, "task_ids": [call.path.get("task_id")], "map_index": map_index}
    return [Entry(f"delete {dag_id}", call.path.get("dag_run_id"), detail)]


def _trigger(call: ApiCall) -> list[Entry]:
    """``POST /dags/{dag_id}/dagRuns``: the new run's id from the answer; its conf's keys only."""
    dag_id = call.path.get("dag_id")
    if not is_cutover(dag_id):
        return []
    conf = _dict(_dict(call.body).get("conf"))
    run_id = _dict(call.response).get("dag_run_id")
    return [Entry(f"trigger {dag_id}", run_id, {"dag_id": dag_id, "conf_keys": sorted(conf)})]


def _pause(call: ApiCall) -> list[Entry]:
    """``PATCH /dags/{dag_id}`` (one DAG) or ``PATCH /dags`` (every DAG a pattern matches)."""
    paused = _dict(call.body).get("is_paused")
    if not isinstance(paused, bool) or _masked_out(call, "is_paused"):
        return []
    if "dag_id" in call.path:
        dag_ids = [call.path["dag_id"]]
    else:
        dags = _list(_dict(call.response).get("dags"))
        dag_ids = [d.get("dag_id") for d in dags if isinstance(d, dict)]
    verb = "pause" if paused else "unpause"
    return [Entry(f"{verb} {d}", None, {"dag_id": d}) for d in dag_ids if is_cutover(d)]


def _api_call(call: ApiCall) -> list[Entry]:
    """Any other successful write on a Cutover DAG: the endpoint, its route and path ids, and the
    names (never the values) of the body's fields."""
    dag_id = call.path.get("dag_id")
    if not is_cutover(dag_id):
        return []
    body = call.body
    detail = {
        "dag_id": dag_id,
        "method": call.method,
        "route": call.route,
        "path": {k: v for k, v in call.path.items() if k not in ("dag_id", "dag_run_id")},
        "body_fields": sorted(body) if isinstance(body, dict) else None,
    }
    return [Entry(f"api {call.endpoint} {dag_id}", call.path.get("dag_run_id"), detail)]


Rule = Callable[[ApiCall], list[Entry]]

RULES: dict[str, Rule] = {
    "post_clear_task_instances": _clear_task_instances,
    "clear_dag_run": _clear_run,
    "clear_dag_runs": _clear_runs,
    "patch_task_instance": _mark_task_instance,
    "patch_task_group_instances": _mark_task_group,
    "patch_dag_run": _mark_run,
    "bulk_task_instances": _bulk_task_instances,
    "bulk_dag_runs": _bulk_runs,
    "delete_dag_run": _delete_run,
    "delete_task_instance": _delete_task_instance,
    "trigger_dag_run": _trigger,
    "patch_dag": _pause,
    "patch_dags": _pause,
}
"""Airflow's endpoint functions (its event log's ``event`` names) → the entries a success makes."""

NOT_RECORDED: dict[str, str] = {
    "get_task_instances_batch": "a query sent as POST: changes nothing",
    "get_list_dag_runs_batch": "a query sent as POST: changes nothing",
    "patch_task_instance_dry_run": "a dry run: changes nothing",
    "patch_task_group_instances_dry_run": "a dry run: changes nothing",
    "favorite_dag": "the user's own bookmark, not the DAG's state",
    "unfavorite_dag": "the user's own bookmark, not the DAG's state",
}
"""Writes under ``/api/v2/dags`` that change no run (every other is recorded, as ``api <endpoint>``
when :data:`RULES` has no rule for it)."""


def entries_for(call: ApiCall) -> list[Entry]:
    """The audit entries one finished API call makes: none unless it succeeded (2xx), changed
    something (no dry run, no query) and concerned a Cutover DAG."""
    if not 200 <= call.status < 300 or call.method not in WRITE_METHODS or call.endpoint in NOT_RECORDED:
        return []
    return RULES.get(call.endpoint, _api_call)(call)
