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


DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "retry_policy": RETRY_POLICY,
    # a failed task (a failed gate named as such) alerts by webhook and/or mail: ids and counts only
    "on_failure_callback": CutoverNotifier(),
}


DAG_SETTINGS = {
    "start_date": datetime(2026, 1, 1, tzinfo=UTC),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
}
"""What every Cutover DAG shares; each DAG still states its own schedule."""


def conn_url(conn_id: str) -> str:
    """The URL of an Airflow connection (``legacy_db``, ``target_db``, ``staging_store``)."""
    from cutover.config import url_from_connection

    return url_from_connection(BaseHook.get_connection(conn_id))
