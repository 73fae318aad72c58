"""cutover.alerts: what an alert says (ids, counts, class names), which failures are gates, where it goes."""

from __future__ import annotations

import json

import pytest

from cutover.alerts import (
    AlertTargets,
    deadline_alert,
    failure_alert,
    is_gate_failure,
    payload,
    safe_counts,
    send_alert,
    summary,
    targets_from_env,
)
from cutover.backup.stage import BackupGateError
from cutover.errors import PolicyError, TerminalError, TransientError
from cutover.reconcile.run import ReconcileFailed
from cutover.validation.runner import GateFailed

SECRET = "MARGARET O'BRIEN 555-0142"


@pytest.mark.parametrize(
    ("error", "gate"),
    [
        pytest.param(GateFailed(SECRET), True, id="validation gate"),
        pytest.param(ReconcileFailed(SECRET), True, id="reconciliation"),
        pytest.param(BackupGateError(SECRET), True, id="backup gate"),
        pytest.param(type("SubOfGate", (GateFailed,), {})(SECRET), True, id="subclass keeps the base's name"),
        pytest.param(PolicyError(SECRET), False, id="policy is not a gate"),
        pytest.param(TransientError("GateTimeout"), False, id="transient errors never are"),
        pytest.param(type("GateLike", (ValueError,), {})(), False, id="not ours"),
        pytest.param(None, False, id="no error"),
    ],
)
def test_is_gate_failure(error: BaseException | None, gate: bool) -> None:
    assert is_gate_failure(error) is gate


def test_failure_alert_carries_class_not_message() -> None:
    error = GateFailed(f"patients: 3 of 200 failed ({SECRET})")
    alert = failure_alert(
        dag_id="pt_cutover",
        run_id="manual__1",
        task_id="validate_mapped",
        error=error,
        map_index=4,
        try_number=2,
        log_url="http://127.0.0.1:8080/dags/pt_cutover/runs/manual__1/tasks/validate_mapped/mapped/4",
    )
    assert alert["kind"] == "gate_failure"
    assert alert["error_class"] == "cutover.validation.runner.GateFailed"
    assert alert["map_index"] == 4
    assert summary(alert) == (
        "[cutover] pt_cutover run manual__1: gate failed: validate_mapped[4] (GateFailed, try 2)"
    )
    body = json.loads(payload(alert))
    assert body["alert"] == alert
    assert body["text"].endswith("/mapped/4")
    assert "MARGARET" not in payload(alert).decode()


def test_unmapped_task_has_no_map_index() -> None:
    alert = failure_alert(dag_id="d", run_id="r", task_id="t", error=TerminalError(), map_index=-1)
    assert alert["map_index"] is None
    assert alert["kind"] == "task_failure"


@pytest.mark.parametrize(
    ("counts", "kept"),
    [
        pytest.param({"rejected": 4, "rows": 100}, {"rejected": 4, "rows": 100}, id="names and ints"),
        pytest.param({"rejected": "4"}, {}, id="a string value could be anything"),
        pytest.param({"O'Brien": 1}, {}, id="a key that is not snake_case"),
        pytest.param({"passed": True}, {}, id="booleans are not counts"),
        pytest.param({1: 2}, {}, id="non-string key"),
        pytest.param(["rows", 3], {}, id="not a mapping"),
        pytest.param(None, {}, id="absent"),
    ],
)
def test_safe_counts(counts: object, kept: dict[str, int]) -> None:
    assert safe_counts(counts) == kept


def test_error_counts_attribute_is_filtered() -> None:
    error = ReconcileFailed("x")
    error.counts = {"patients_mismatched": 2, "first_name": SECRET}  # type: ignore[attr-defined]
    alert = failure_alert(dag_id="d", run_id="r", task_id="reconcile", error=error)
    assert alert["counts"] == {"patients_mismatched": 2}


def test_deadline_alert_summary() -> None:
    alert = deadline_alert(dag_id="pt_cutover", run_id="r9", deadline="2026-05-04T03:00:00+00:00")
    assert alert["kind"] == "deadline_missed"
    assert summary(alert) == (
        "[cutover] pt_cutover run r9 still running at its deadline 2026-05-04T03:00:00+00:00: "
        "the window will be overrun"
    )


def test_targets_from_env() -> None:
    targets = targets_from_env(
        {
            "CUTOVER_ALERT_WEBHOOK": "https://hooks.example/x",
            "CUTOVER_ALERT_SMTP": "smtp://127.0.0.1:2525",
            "CUTOVER_ALERT_EMAIL_TO": " a@x.invalid, ,b@x.invalid ",
        }
    )
    assert targets == AlertTargets(
        webhook_url="https://hooks.example/x",
        smtp_url="smtp://127.0.0.1:2525",
        email_to=("a@x.invalid", "b@x.invalid"),
    )
    assert not targets_from_env({})
    assert not AlertTargets(smtp_url="smtp://h")  # mail without a recipient goes nowhere


def test_unreachable_webhook_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    from cutover.local_airflow import free_port

    alert = failure_alert(dag_id="d", run_id="r", task_id="t", error=GateFailed(SECRET))
    sent = send_alert(alert, AlertTargets(webhook_url=f"http://127.0.0.1:{free_port()}/nobody"))
    assert sent == []
    assert "alert webhook failed" in caplog.text
    assert SECRET not in caplog.text


def test_a_late_start_alert_says_the_run_refused_and_nothing_was_touched() -> None:
    from cutover.alerts import late_start_alert, summary

    alert = late_start_alert(
        dag_id="pt_cutover",
        run_id="scheduled__2026-12-04T23:00:00+00:00",
        window_start="2026-12-04 23:00:00+00:00",
    )
    line = summary(alert)
    assert alert["kind"] == "late_start"
    assert line.startswith("[cutover] pt_cutover run scheduled__2026-12-04T23:00:00+00:00 refused:")
    assert "nothing was touched" in line
