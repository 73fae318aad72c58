"""Wiring shared by the Cutover DAGs: default arguments, retry policy, connections.

Importing this module touches no database and no network: connections are looked up inside
tasks only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import BaseHook, ExceptionRetryPolicy, RetryAction, RetryRule

from pt_common.alerts import CutoverNotifier

RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception="cutover.errors.TerminalError",
            action=RetryAction.FAIL,
            match_subclasses=True,
            reason="bad data or a broken contract: a retry cannot help",
        ),
    ],
)

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
