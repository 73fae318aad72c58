"""Operators' actions on Cutover's DAGs, in Cutover's audit log: who cleared, marked, deleted or
triggered what through Airflow (UI or REST API), and which tasks ran again.

A run already records its actor (``start pt_cutover``, :func:`run_actor_name`). This module adds
what people do to runs afterwards, each an entry of ``migration.audit_log`` (hash-chained,
:mod:`cutover.audit`) with the person's Airflow user name as its actor: which calls make which
entries is :mod:`cutover.operator_actions`; a task that runs again adds ``retry <task_id>`` (its
``try_number`` and ``max_tries``).

**Where the API side is recorded, and why there.** :class:`OperatorAuditMiddleware` is a pure ASGI
middleware that Cutover's plugin registers with Airflow's API server
(``AirflowPlugin.fastapi_root_middlewares``). In Airflow 3 every change a person makes to a run goes
through that server's REST API (the UI calls the same ``/api/v2`` endpoints), so the middleware
sees each one with its authenticated user and its outcome. It keys on Airflow's endpoint function
(``scope["endpoint"]``, the name Airflow's own event log records as ``event``), not on URL
patterns. The user is resolved with Airflow's own
:func:`airflow.api_fastapi.core_api.security.get_user` (bearer token first, else the UI's cookie
session): the same name the event log stores as ``owner``. Rejected alternatives: Airflow's event
log itself is unchained, lives in the metadata database and records attempts, not outcomes (it
stays the second record); a task-instance listener in the API server fires for marked states but
not for clears, and never knows the user; wrapping Airflow's route functions would patch its
internals.

**Ordering and failure.** The entry is written before the response's last bytes are released, so
once the operator sees the clear succeed it is in the chain. Writing it can fail (the target is
down, or not migrated yet: ``pt_assess`` before any target exists): the action has already been
committed in Airflow, so turning the answer into an error would misreport it, and refusing clears
while the target is down would block the very recovery they are for. It therefore fails open but
never silently: one WARNING line in the API server's log names the action, run and user (no URL,
no secret), Airflow's event log still holds the action with its owner, and the re-run of a cleared
task writes its own ``retry`` entry when it starts. The write is bounded (:data:`CONNECT_TIMEOUT_S`,
:data:`STATEMENT_TIMEOUT`).

**Retries.** :data:`RETRY_LISTENER` is a task-instance listener (``on_task_instance_running``,
which Airflow 3 calls in the task's own process, also under ``cutover run``'s ``dag.test``): one
place for every task, no task edited. A task process has no metadata database and does not know who
cleared it, so its actor is the run's (:func:`run_actor_name`); the clear entry names the person.
What bypasses the API server (``airflow tasks clear`` on the metadata database) still shows there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pluggy

from cutover.operator_actions import WRITE_METHODS, ApiCall, Entry, entries_for, is_cutover

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
"""How long the API server waits for the target database before giving up on an entry."""

STATEMENT_TIMEOUT = "10s"
"""How long an entry's INSERT may wait (the chain's advisory lock) before giving up."""

MAX_BODY_BYTES = 1 << 20
"""A request body read for its ids (clear and mark bodies are a few hundred bytes)."""

MAX_RESPONSE_BYTES = 16 << 20
"""A response read for the task instances it names (a whole pt_cutover run is well below)."""

_INSERT = "INSERT INTO migration.audit_log (actor, action, run_id, detail) VALUES (%s, %s, %s, %s)"


def run_actor_name(triggering_user: str | None) -> str:
    """Who a DAG run acts for: the Airflow user who triggered it (the UI, the REST API), the OS user of
    a ``cutover run`` (Airflow's ``dag.test`` names every run's user ``dag_test``; its tasks run in
    that person's process), or ``scheduler`` for a run the timetable started.

    >>> run_actor_name("engineer"), run_actor_name(None)
    ('engineer', 'scheduler')
    """
    if triggering_user == "dag_test":
        from cutover.audit import os_user

        return os_user()
    return triggering_user or "scheduler"


# --- writing -----------------------------------------------------------------------------------


def write_entries(target_url: str, actor: str, entries: Iterable[Entry]) -> None:
    """Append ``entries`` to the target's audit log as ``actor``, in one transaction (bounded waits)."""
    import psycopg

    with psycopg.connect(
        target_url, connect_timeout=CONNECT_TIMEOUT_S, application_name="cutover-operator-audit"
    ) as conn:
        conn.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
        for entry in entries:
            conn.execute(
                _INSERT, (actor, entry.action, entry.run_id, json.dumps(entry.detail, sort_keys=True))
            )


def _why(exc: BaseException) -> str:
    """What went wrong, without a URL or a message that might carry one."""
    import psycopg

    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
        return "the target has no audit log yet (not migrated)"
    return type(exc).__name__


def record(target_url: Callable[[], str], actor: str, entries: list[Entry]) -> bool:
    """Write ``entries``; on failure one WARNING line (ids only) and False, never an exception."""
    try:
        write_entries(target_url(), actor, entries)
        return True
    except Exception as exc:
        for entry in entries:
            log.warning(
                "NOT in Cutover's audit log: %s%s by %s (%s); Airflow's event log has it",
                entry.action,
                f" of run {entry.run_id}" if entry.run_id else "",
                actor,
                _why(exc),
            )
        return False


# --- the API server side -----------------------------------------------------------------------


def _target_url_in_api_server() -> str:
    """``target_db``'s URL where the API server looks connections up (its environment, secrets
    backend or metadata database); the task SDK's lookup is for task processes only."""
    from airflow.models.connection import Connection

    from cutover.config import url_from_connection

    return url_from_connection(Connection.get_connection_from_secrets("target_db"))


async def request_user(scope: Scope) -> str:
    """The authenticated user of a request, as Airflow's API resolved it for the endpoint: its own
    :func:`~airflow.api_fastapi.core_api.security.get_user` (a bearer token, else the UI's session
    cookie as the JWT refresh middleware vouched for it), by ``get_name()`` (FAB: the login name)."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user
    from starlette.requests import Request

    request = Request(scope)
    user = await get_user(request, _oauth_token=None, bearer_credentials=await bearer_scheme(request))
    return str(user.get_name())


class _Capture:
    """A body's bytes as they pass, up to a limit (beyond it: unread, None)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.parts, self.size = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size <= self.limit:
            self.parts += chunk

    def json(self) -> Any:
        if not self.parts or self.size > self.limit:
            return None
        try:
            return json.loads(self.parts)
        except ValueError:
            return None


def _call(scope: Scope, status: int, request: _Capture, response: _Capture) -> ApiCall:
    endpoint = scope.get("endpoint")
    route = scope.get("route")
    return ApiCall(
        endpoint=getattr(endpoint, "__name__", ""),
        method=scope["method"],
        path=dict(scope.get("path_params") or {}),
        query=parse_qs(scope.get("query_string", b"").decode("latin-1")),
        body=request.json(),
        response=response.json(),
        status=status,
        route=str(getattr(route, "path", "")),
    )


class OperatorAuditMiddleware:
    """Records in Cutover's audit log what a person changes on a Cutover DAG through Airflow's API
    (see the module's docstring): a pure ASGI middleware, so streaming, background tasks and the
    other middlewares are untouched; only writes under ``/api/v2/dags`` are looked at."""

    def __init__(self, app: ASGIApp, target_url: Callable[[], str] = _target_url_in_api_server) -> None:
        self.app = app
        self.target_url = target_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or "/api/v2/dags" not in scope["path"]
        ):
            await self.app(scope, receive, send)
            return
        request, response = _Capture(MAX_BODY_BYTES), _Capture(MAX_RESPONSE_BYTES)
        status = 0

        async def tee_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request.add(message.get("body", b""))
            return message

        async def send_after_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and 200 <= status < 300:
                response.add(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._record(scope, status, request, response)
            await send(message)

        await self.app(scope, tee_receive, send_after_recording)

    async def _record(self, scope: Scope, status: int, request: _Capture, response: _Capture) -> None:
        """Write the call's entries before its answer completes; never raises."""
        import anyio

        try:
            call = _call(scope, status, request, response)
            entries = entries_for(call)
        except Exception as exc:  # a body shape no rule expected: say so, do not fail the answer
            log.warning(
                "NOT in Cutover's audit log: %s %s (%s); Airflow's event log has it",
                scope.get("method"),
                scope.get("path"),
                type(exc).__name__,
            )
            return
        if not entries:
            return
        try:
            actor = await request_user(scope)
        except Exception as exc:  # the endpoint accepted the user: this is not expected
            actor = "unresolved user"
            log.warning(
                "Cutover's audit log: the user of %s is unresolved (%s)", call.endpoint, type(exc).__name__
            )
        await anyio.to_thread.run_sync(record, self.target_url, actor, entries)


# --- the task side: retries --------------------------------------------------------------------

hookimpl = pluggy.HookimplMarker("airflow")
"""Airflow's listener marker (``airflow.listeners.hookimpl`` is this very marker: pluggy keys it on the
project name), without importing the core package or the SDK's private copy into a task."""


def retry_entry(ti: Any) -> tuple[str, Entry] | None:
    """(actor, entry) for a Cutover task instance starting with ``try_number`` > 1, else None."""
    if not is_cutover(ti.dag_id) or (ti.try_number or 0) <= 1:
        return None
    dag_run = ti.get_template_context()["dag_run"]
    detail: dict[str, Any] = {"dag_id": ti.dag_id, "try_number": ti.try_number, "max_tries": ti.max_tries}
    if (ti.map_index if ti.map_index is not None else -1) >= 0:
        detail["map_index"] = ti.map_index
    return run_actor_name(dag_run.triggering_user_name), Entry(f"retry {ti.task_id}", ti.run_id, detail)


def _target_url_in_task() -> str:
    from airflow.sdk import BaseHook

    from cutover.config import url_from_connection

    return url_from_connection(BaseHook.get_connection("target_db"))


class RetryListener:
    """Airflow task-instance listener: a Cutover task that starts again (an automatic retry, or a re-run
    after a clear) writes ``retry <task_id>`` with its try number, before the task's work begins."""

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        try:
            found = retry_entry(task_instance)
        except Exception as exc:  # a listener must never fail the task
            log.warning(
                "NOT in Cutover's audit log: a retry of %s of run %s (%s)",
                getattr(task_instance, "task_id", "?"),
                getattr(task_instance, "run_id", "?"),
                type(exc).__name__,
            )
            return
        if found is not None:
            actor, entry = found
            record(_target_url_in_task, actor, [entry])


RETRY_LISTENER = RetryListener()
"""Registered by :class:`cutover.airflow_plugin.CutoverPlugin` (``listeners``)."""
