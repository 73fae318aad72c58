"""Alerts for the people watching a cutover: what failed where, as ids and counts, never a value.

An alert names the DAG, run, task, try, the error's *class* and a link to the log; it never
carries an exception message, even though ours hold ids and counts only: a message is free
text, and one careless f-string would put a patient's name into a chat channel. Whoever is
alerted reads the message in the task log, behind the Airflow login.

Channels: a webhook (JSON POST; ``text`` makes it readable in Slack, Mattermost or Teams
incoming webhooks, ``alert`` is the structured form) and SMTP. :func:`targets_from_env` reads
them from the environment; the Airflow notifier (``dags/pt_common/alerts.py``) also reads
Airflow connections.

>>> a = failure_alert(dag_id="pt_cutover", run_id="r1", task_id="load.patients", error=KeyError("x"))
>>> a["kind"], a["error_class"]
('task_failure', 'builtins.KeyError')
"""

from __future__ import annotations

import json
import logging
import os
import re
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal, TypedDict
from urllib.parse import unquote, urlsplit

from cutover.errors import TerminalError

log = logging.getLogger(__name__)

AlertKind = Literal["task_failure", "gate_failure", "deadline_missed", "late_start"]

GATE_MARKERS = ("Gate", "Reconcile")
"""A terminal error whose class name holds one of these is a failed gate (validation, backup, reconciliation)."""

_COUNT_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class Alert(TypedDict):
    """What an alert says: ids, counts, a class name and a link; nothing typed by a patient or clinician."""

    kind: AlertKind
    dag_id: str
    run_id: str
    task_id: str | None
    map_index: int | None
    try_number: int | None
    error_class: str | None
    log_url: str | None
    counts: dict[str, int]
    deadline: str | None


@dataclass(frozen=True)
class AlertTargets:
    """Where alerts go; empty means nowhere (logged once, not an error)."""

    webhook_url: str | None = None
    smtp_url: str | None = None
    """``smtp://[user:password@]host[:port]`` (STARTTLS when offered) or ``smtps://…`` (TLS)."""
    email_from: str = "cutover@localhost"
    email_to: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.webhook_url or (self.smtp_url and self.email_to))


def is_gate_failure(error: BaseException | None) -> bool:
    """A terminal error raised by a gate: its class (or a base class of ours) names a gate or reconciliation."""
    if not isinstance(error, TerminalError):
        return False
    return any(marker in cls.__name__ for cls in type(error).__mro__ for marker in GATE_MARKERS)


def error_class(error: BaseException | None) -> str | None:
    """``module.Class`` of an error: safe to send, unlike its message."""
    if error is None:
        return None
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def safe_counts(counts: object) -> dict[str, int]:
    """Only ``snake_case name → int`` pairs survive: a key or value of any other shape could be a value."""
    if not isinstance(counts, Mapping):
        return {}
    return {
        key: int(value)
        for key, value in counts.items()
        if isinstance(key, str)
        and _COUNT_KEY.match(key)
        and isinstance(value, int)
        and not isinstance(value, bool)
    }


def failure_alert(
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    error: BaseException | None,
    map_index: int | None = None,
    try_number: int | None = None,
    log_url: str | None = None,
) -> Alert:
    """The alert for a failed task; a gate's terminal error makes it a ``gate_failure``.

    Counts come from an optional ``counts`` attribute of the error (``name → int`` only).
    """
    return Alert(
        kind="gate_failure" if is_gate_failure(error) else "task_failure",
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=map_index if map_index is not None and map_index >= 0 else None,
        try_number=try_number,
        error_class=error_class(error),
        log_url=log_url,
        counts=safe_counts(getattr(error, "counts", None)),
        deadline=None,
    )


def deadline_alert(*, dag_id: str, run_id: str, deadline: str, log_url: str | None = None) -> Alert:
    """The alert for a run still going at its deadline: the cutover will overrun its window."""
    return Alert(
        kind="deadline_missed",
        dag_id=dag_id,
        run_id=run_id,
        task_id=None,
        map_index=None,
        try_number=None,
        error_class=None,
        log_url=log_url,
        counts={},
        deadline=deadline,
    )


def late_start_alert(*, dag_id: str, run_id: str, window_start: str, log_url: str | None = None) -> Alert:
    """The alert for a scheduled cutover that refused to start long after its window opened."""
    return Alert(
        kind="late_start",
        dag_id=dag_id,
        run_id=run_id,
        task_id="choose_scope",
        map_index=None,
        try_number=None,
        error_class=None,
        log_url=log_url,
        counts={},
        deadline=window_start,
    )


def summary(alert: Alert) -> str:
    """One line for a chat message or a mail subject."""
    where = f"{alert['dag_id']} run {alert['run_id']}"
    if alert["kind"] == "deadline_missed":
        return (
            f"[cutover] {where} still running at its deadline {alert['deadline']}: the window will be overrun"
        )
    if alert["kind"] == "late_start":
        return (
            f"[cutover] {where} refused: scheduled for the window opening {alert['deadline']}, it started "
            "beyond the plan's tolerance; nothing was touched"
        )
    task = alert["task_id"] or "?"
    if alert["map_index"] is not None:
        task += f"[{alert['map_index']}]"
    what = "gate failed" if alert["kind"] == "gate_failure" else "task failed"
    cls = (alert["error_class"] or "unknown error").rsplit(".", 1)[-1]
    tries = f", try {alert['try_number']}" if alert["try_number"] else ""
    return f"[cutover] {where}: {what}: {task} ({cls}{tries})"


def payload(alert: Alert) -> bytes:
    """The webhook body: ``text`` (summary and log link) and the structured ``alert``."""
    text = summary(alert) + (f" {alert['log_url']}" if alert["log_url"] else "")
    return json.dumps({"text": text, "alert": alert}, sort_keys=True).encode()


def post_webhook(url: str, alert: Alert, timeout: float = 10.0) -> int:
    """POST the alert as JSON; the HTTP status. Raises ``OSError`` when the receiver is unreachable."""
    request = urllib.request.Request(
        url, data=payload(alert), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


def send_email(targets: AlertTargets, alert: Alert, timeout: float = 10.0) -> None:
    """Mail the alert (subject: the summary; body: summary, log link and the JSON alert)."""
    if not targets.smtp_url or not targets.email_to:
        raise ValueError("SMTP alerts need an smtp URL and at least one recipient")
    parts = urlsplit(targets.smtp_url)
    message = EmailMessage()
    message["Subject"] = summary(alert)
    message["From"] = targets.email_from
    message["To"] = ", ".join(targets.email_to)
    message.set_content(
        f"{summary(alert)}\n\nlog: {alert['log_url'] or '-'}\n\n{json.dumps(alert, indent=1, sort_keys=True)}\n"
    )
    host = parts.hostname or "localhost"
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host, parts.port or 465, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(host, parts.port or 25, timeout=timeout)
    with client:
        if parts.scheme == "smtp" and client.has_extn("starttls"):
            client.starttls(context=ssl.create_default_context())
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message)


def targets_from_env(environ: Mapping[str, str] | None = None) -> AlertTargets:
    """``CUTOVER_ALERT_WEBHOOK``, ``CUTOVER_ALERT_SMTP``, ``CUTOVER_ALERT_EMAIL_TO`` (comma-separated), ``CUTOVER_ALERT_EMAIL_FROM``."""
    env = os.environ if environ is None else environ
    to = tuple(a.strip() for a in env.get("CUTOVER_ALERT_EMAIL_TO", "").split(",") if a.strip())
    return AlertTargets(
        webhook_url=env.get("CUTOVER_ALERT_WEBHOOK") or None,
        smtp_url=env.get("CUTOVER_ALERT_SMTP") or None,
        email_from=env.get("CUTOVER_ALERT_EMAIL_FROM") or "cutover@localhost",
        email_to=to,
    )


def send_alert(alert: Alert, targets: AlertTargets) -> list[str]:
    """Send to every configured channel; the channels that took it. A failing channel is logged, not raised:
    an alert must never turn a task's failure into a different one."""
    sent: list[str] = []
    if not targets:
        log.info("no alert target configured; %s", summary(alert))
        return sent
    if targets.webhook_url:
        try:
            status = post_webhook(targets.webhook_url, alert)
            sent.append("webhook")
            log.info("alert posted to the webhook (HTTP %s): %s", status, summary(alert))
        except (OSError, urllib.error.HTTPError) as exc:
            log.warning("alert webhook failed (%s): %s", type(exc).__name__, summary(alert))
    if targets.smtp_url and targets.email_to:
        try:
            send_email(targets, alert)
            sent.append("email")
            log.info("alert mailed to %d recipient(s): %s", len(targets.email_to), summary(alert))
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("alert mail failed (%s): %s", type(exc).__name__, summary(alert))
    return sent
