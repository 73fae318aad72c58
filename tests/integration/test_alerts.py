"""Alerts end to end: a real failing ``dag.test()`` run (through ``cutover run``) calls the notifier,
which posts to a webhook receiver and mails an SMTP server, both on loopback; and the deadline
path, awaited the way the triggerer awaits it. Nothing sent may carry an exception message."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import run_cutover

DAGS = Path(__file__).resolve().parents[2] / "dags"
UNUSED_TARGET = "postgresql://unused@127.0.0.1:9/unused"
CANARY = "Zebulon Quagmire 1947-03-02"
"""Stands for a patient value inside an exception message: it must reach no alert."""

PROBE_DAG = f'''
from __future__ import annotations

from airflow.sdk import dag, task

from cutover.validation.runner import GateFailed
from pt_common.alerts import CutoverNotifier


class ProbeGateFailed(GateFailed):
    counts = {{"unexpected": 3, "checked": 200, "Bad Key": 1, "name": "{CANARY}"}}


@dag(
    dag_id="alert_probe",
    schedule=None,
    default_args={{"retries": 0, "on_failure_callback": CutoverNotifier()}},
)
def alert_probe():
    @task
    def validate_patients():
        raise ProbeGateFailed("patients: 3 of 200 rows failed; first ids 17 ({CANARY})")

    @task
    def load_visits():
        raise ValueError("cannot parse {CANARY}")

    @task
    def write_summary():
        return 1

    validate_patients()
    load_visits()
    write_summary()


alert_probe()
'''


class Receiver:
    """A webhook receiver on loopback that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


class Mailbox:
    """aiosmtpd handler that keeps every message's raw bytes."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[str, Mailbox]]:
    from aiosmtpd.controller import Controller

    from cutover.local_airflow import free_port

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield f"smtp://127.0.0.1:{controller.port}", box
    controller.stop()


@pytest.mark.slow
def test_failing_run_alerts_by_webhook_and_mail(
    home: Path, tmp_path: Path, webhook: Receiver, smtp: tuple[str, Mailbox]
) -> None:
    smtp_url, box = smtp
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "alert_probe.py").write_text(PROBE_DAG)
    result = run_cutover(
        ["run", "alert_probe"],
        home,
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "PYTHONPATH": str(DAGS),
            "AIRFLOW_CONN_TARGET_DB": UNUSED_TARGET,
            "CUTOVER_ALERT_WEBHOOK": webhook.url,
            "CUTOVER_ALERT_SMTP": smtp_url,
            "CUTOVER_ALERT_EMAIL_TO": "oncall@clinic.invalid,lead@clinic.invalid",
        },
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]

    alerts = {body["alert"]["task_id"]: body["alert"] for body in webhook.bodies}
    assert set(alerts) == {"validate_patients", "load_visits"}  # write_summary succeeded: no alert
    gate, load = alerts["validate_patients"], alerts["load_visits"]
    assert gate["kind"] == "gate_failure"
    assert gate["error_class"].endswith(".ProbeGateFailed")
    assert gate["counts"] == {"unexpected": 3, "checked": 200}  # the odd key and the text value dropped
    assert load["kind"] == "task_failure"
    assert load["error_class"] == "builtins.ValueError"
    for alert in (gate, load):
        assert alert["dag_id"] == "alert_probe"
        assert alert["run_id"].startswith("manual__")
        assert alert["try_number"] == 1
        assert "/dags/alert_probe/runs/" in alert["log_url"]
        assert alert["log_url"].split("/tasks/")[1].startswith(alert["task_id"])
    texts = {body["text"] for body in webhook.bodies}
    assert any("gate failed: validate_patients (ProbeGateFailed, try 1)" in t for t in texts)

    assert len(box.messages) == 2
    mails = [message_from_bytes(raw) for raw in box.messages]
    assert {m["Subject"].split(": ", 2)[-1] for m in mails} == {
        "validate_patients (ProbeGateFailed, try 1)",
        "load_visits (ValueError, try 1)",
    }
    assert all(m["To"] == "oncall@clinic.invalid, lead@clinic.invalid" for m in mails)

    sent = json.dumps(webhook.bodies) + b"".join(box.messages).decode(errors="replace")
    for fragment in ("Zebulon", "Quagmire", "1947-03-02", "cannot parse", "first ids"):
        assert fragment not in sent


def test_deadline_alert_as_the_triggerer_awaits_it(
    webhook: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("CUTOVER_ALERT_WEBHOOK", webhook.url)
    monkeypatch.syspath_prepend(str(DAGS))
    from airflow.sdk import AsyncCallback

    from pt_common.alerts import CutoverNotifier, cutover_deadline

    alert = cutover_deadline(window=timedelta(hours=10), margin=timedelta(hours=2))
    assert alert.interval == timedelta(hours=8)
    assert isinstance(alert.callback, AsyncCallback)
    assert alert.callback.path == "pt_common.alerts.CutoverNotifier"

    # what the scheduler hands the triggerer on a miss: the run (as the REST API shows it) and the deadline
    context = {
        "dag_run": {"dag_id": "pt_cutover", "dag_run_id": "manual__2026-05-01", "conf": {"note": CANARY}},
        "deadline": {"id": "d1", "deadline_time": "2026-05-04T03:00:00+00:00"},
    }

    async def triggerer() -> None:  # CallbackTrigger.run: await callback(**kwargs, context=context)
        await CutoverNotifier(**alert.callback.kwargs, context=context)

    asyncio.run(triggerer())
    assert len(webhook.bodies) == 1
    sent = webhook.bodies[0]["alert"]
    assert sent["kind"] == "deadline_missed"
    assert (sent["dag_id"], sent["run_id"]) == ("pt_cutover", "manual__2026-05-01")
    assert sent["deadline"] == "2026-05-04T03:00:00+00:00"
    assert "will be overrun" in webhook.bodies[0]["text"]
    assert "Zebulon" not in json.dumps(webhook.bodies)


def test_deadline_serializes_on_a_dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper is accepted by a DAG and survives serialization (what the scheduler stores)."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.syspath_prepend(str(DAGS))
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from cutover.plan import load_plan
    from pt_common.alerts import cutover_deadline

    default = cutover_deadline()
    assert default.interval == timedelta(hours=load_plan().window_hours - 4)
    with DAG("deadline_probe", schedule=None, deadline=default) as dag:
        pass
    data = json.dumps(DagSerialization.to_dict(dag))
    assert "pt_common.alerts.CutoverNotifier" in data
    assert "DagRunQueuedAtDeadline" in data
