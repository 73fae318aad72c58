"""Wiring shared by the Cutover DAGs: default arguments, retry policy, connections.

Importing this module touches no database and no network: connections are looked up inside
tasks only.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy

from pt_common.alerts import CutoverNotifier

os.umask(0o077)  # what a task creates (staged data, dumps, evidence) is its owner's only


class CutoverRetryPolicy(RetryPolicy):
    """Terminal errors fail at once, with their one line as the reason; outages are retried.

    Decided by :func:`cutover.errors.retry_can_help` over the exception and its causes, so a wrong
    password or a corrupt SQLite file fails on its first try even where a driver's connection error
    was wrapped as transient, while a refused connection or a restarting server is retried with
    the task's backoff.
    """

    def evaluate(
        self, exception: BaseException, try_number: int, max_tries: int, context: Any = None
    ) -> RetryDecision:
        from cutover.errors import one_line, retry_can_help

        if retry_can_help(exception):
            return RetryDecision.default()
        return RetryDecision.fail(reason=f"terminal, not retried: {one_line(exception)}")


RETRY_POLICY = CutoverRetryPolicy()


def legacy_extra() -> dict[str, Any]:
    """The ``legacy_db`` connection's extra (``{"profile": ...}`` names its legacy profile); {} without one."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return dict(BaseHook.get_connection("legacy_db").extra_dejson or {})
    except AirflowNotFoundException:
        return {}


def select_profile(context: Any) -> None:
    """Every task's ``on_execute_callback``: the task works under its run's legacy profile — the run's
    ``profile`` parameter, else ``CUTOVER_PROFILE``, else the ``legacy_db`` extra, else ``simulator``.
    Choosing reads no profile: the first task (``check_configuration``) checks it."""
    from cutover.legacy.profile import choose, select

    params = (context or {}).get("params") or {}
    select(choose(params.get("profile"), legacy_extra()))


def parsed_tables() -> dict[str, list[str]]:
    """The legacy tables a DAG's task groups are built over, when Airflow parses it, each with its parent
    tables (parents first): the mapped tables (a table the profile does not map is not migrated) of the
    profile
    ``CUTOVER_PROFILE`` or the ``legacy_db`` connection's extra (from the environment only: parsing
    touches no database) name, else ``simulator``'s. A profile that cannot be read gives none: the
    run's first task then says why."""
    from cutover.config import env_var, fields_from_env
    from cutover.legacy.profile import ProfileError, choose, from_document, load_document

    given = os.environ.get(env_var("legacy_db"))
    try:
        extra = fields_from_env(given).extra if given else {}
        profile = from_document(load_document(choose(None, extra)))
        tables = {name: profile.tables[name] for name in profile.mapped_tables}
    except (ProfileError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    return {name: [p for _, p in t.parents if p in tables and p != name] for name, t in tables.items()}


DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "retry_policy": RETRY_POLICY,
    # a failed task (a failed gate named as such) alerts by webhook and/or mail: ids and counts only
    "on_failure_callback": CutoverNotifier(),
    "on_execute_callback": select_profile,
}


def profile_param() -> Any:
    """The ``profile`` parameter of every DAG that reads the legacy system."""
    from airflow.sdk import Param

    return Param(
        None,
        type=["null", "string"],
        title="Legacy profile",
        description="The legacy system's profile: a built-in name (simulator) or a path to a profile YAML "
        "file or folder. Empty: CUTOVER_PROFILE, else the legacy_db connection's extra "
        '{"profile": ...}, else simulator. Its tables must be those the DAG was parsed with.',
        section="Source",
    )


DAG_SETTINGS = {
    "start_date": datetime(2026, 1, 1, tzinfo=UTC),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    # whatever Airflow's configuration says: a DAG that moves or touches patient data starts paused,
    # and only a data engineer (the trigger right) may unpause it (cutover.security.auth_manager)
    "is_paused_upon_creation": True,
}
"""What every Cutover DAG shares; each DAG still states its own schedule."""


def run_actor() -> str:
    """Who the running DAG run acts for, for Cutover's audit log and ``migration.run``: the Airflow user
    who triggered it (the UI, the REST API), the OS user of a ``cutover run`` (Airflow's ``dag.test``
    names every run's user ``dag_test``; its tasks run in that person's process), or ``scheduler`` for
    a run the timetable started (:func:`cutover.operator_audit.run_actor_name`, which a retried task's
    audit entry names too)."""
    from airflow.sdk import get_current_context

    from cutover.operator_audit import run_actor_name

    return run_actor_name(get_current_context()["dag_run"].triggering_user_name)


def conn_url(conn_id: str) -> str:
    """The URL of an Airflow connection (``legacy_db``, ``target_db``, ``staging_store``)."""
    from cutover.config import url_from_connection

    return url_from_connection(BaseHook.get_connection(conn_id))


def legacy_url(run_id: str) -> str:
    """What a run reads of ``legacy_db``: the legacy database, or the CSV delivery the run took
    (``take_delivery``), read as one (:mod:`cutover.legacy.delivery`)."""
    from cutover.legacy.delivery import readable

    return readable(conn_url("legacy_db"), conn_url("staging_store"), run_id)
