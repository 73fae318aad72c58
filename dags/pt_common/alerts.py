"""Alerts from Airflow: a notifier for task failures, gate failures and a cutover overrunning its window.

Wiring only; what an alert says is ``cutover.alerts`` (ids, counts, the error's class, a log link).
Targets, first found wins per channel:

* webhook: ``CUTOVER_ALERT_WEBHOOK``, else the ``alert_webhook`` connection (``extra.url``, or
  ``schema://host:port`` + ``extra.endpoint``);
* SMTP: ``CUTOVER_ALERT_SMTP`` + ``CUTOVER_ALERT_EMAIL_TO``, else the ``alert_smtp`` connection (host,
  port, login, password; ``extra.to``, ``extra.from``, ``extra.ssl``).

Task failures run the notifier in the task's own process (Airflow 3); a missed deadline runs it in
the triggerer (``async_notify``). Nothing here is imported at parse time beyond the SDK.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from airflow.sdk import AsyncCallback, BaseHook, BaseNotifier, DeadlineAlert, DeadlineReference

log = logging.getLogger(__name__)

ROLLBACK_MARGIN = timedelta(hours=4)
"""How long before the window closes the alert goes out: time left to decide, and to roll back."""


def _connection(conn_id: str) -> Any | None:
    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # not found (the SDK's error type varies by where the notifier runs)
        return None


def alert_targets() -> Any:
    """The configured :class:`cutover.alerts.AlertTargets`: environment first, then connections."""
    from dataclasses import replace

    from cutover.alerts import targets_from_env

    targets = targets_from_env()
    if not targets.webhook_url and (conn := _connection("alert_webhook")) is not None:
        extra = conn.extra_dejson or {}
        url = extra.get("url")
        if not url and conn.host:
            host = conn.host if "://" in conn.host else f"{conn.schema or 'https'}://{conn.host}"
            url = f"{host}{f':{conn.port}' if conn.port else ''}{extra.get('endpoint', '')}"
        targets = replace(targets, webhook_url=url or None)
    if not (targets.smtp_url and targets.email_to) and (conn := _connection("alert_smtp")) is not None:
        extra = conn.extra_dejson or {}
        to = extra.get("to") or []
        auth = f"{quote(conn.login, safe='')}:{quote(conn.password or '', safe='')}@" if conn.login else ""
        scheme = "smtps" if extra.get("ssl") else "smtp"
        targets = replace(
            targets,
            smtp_url=f"{scheme}://{auth}{conn.host}{f':{conn.port}' if conn.port else ''}",
            email_to=tuple([to] if isinstance(to, str) else to),
            email_from=extra.get("from") or targets.email_from,
        )
    return targets


class CutoverNotifier(BaseNotifier):
    """Sends a :mod:`cutover.alerts` alert: ``on_failure_callback`` for tasks, ``AsyncCallback`` for deadlines."""

    def __init__(self, kind: str = "failure", context: dict[str, Any] | None = None, **_: Any) -> None:
        super().__init__(context=context)  # type: ignore[arg-type]
        self.kind = kind

    def notify(self, context: Any) -> None:
        from cutover.alerts import failure_alert, send_alert

        ti = context["ti"]
        alert = failure_alert(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            error=context.get("exception"),
            map_index=getattr(ti, "map_index", None),
            try_number=getattr(ti, "try_number", None),
            log_url=getattr(ti, "log_url", None),
        )
        send_alert(alert, alert_targets())

    async def async_notify(self, context: Any) -> None:
        """A missed deadline: the triggerer passes a small context (the run, the deadline)."""
        from cutover.alerts import deadline_alert, send_alert

        run = dict(context.get("dag_run") or {})
        deadline = dict(context.get("deadline") or {})
        alert = deadline_alert(
            dag_id=str(run.get("dag_id")),
            run_id=str(run.get("dag_run_id") or run.get("run_id")),
            deadline=str(deadline.get("deadline_time")),
        )
        await asyncio.to_thread(lambda: send_alert(alert, alert_targets()))


def alert_late_start(dag_id: str, run_id: str, window_start: Any) -> None:
    """Alert that a scheduled cutover refused to start long after its window opened."""
    from cutover.alerts import late_start_alert, send_alert

    send_alert(
        late_start_alert(dag_id=dag_id, run_id=run_id, window_start=str(window_start)), alert_targets()
    )


def cutover_deadline(window: timedelta | None = None, margin: timedelta = ROLLBACK_MARGIN) -> DeadlineAlert:
    """Alert when a run is still going ``margin`` before its window (counted from when it was queued) closes.

    ``window`` defaults to the downtime window of the cutover plan (``cutover_plan.yaml``, a local file).
    """
    if window is None:
        from cutover.plan import load_plan

        window = timedelta(hours=load_plan().window_hours)
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=window - margin,
        callback=AsyncCallback(CutoverNotifier, kwargs={"kind": "deadline"}),
        name="cutover_window",
    )
