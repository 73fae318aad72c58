"""The operator's view, in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright
against ``cutover airflow`` on a small simulated clinic.

The data engineer logs in, opens pt_cutover, triggers it through the Params form, watches the run reach
success in the grid and opens a gate task's log; the auditor then tries the same trigger and is refused.
Screenshots go to ``$CUTOVER_ARTIFACTS`` (default ``tests/browser/artifacts/``, not committed):
``01-dag-page.png``, ``02-trigger-form.png``, ``03-run-grid.png``, ``04-task-log.png``,
``05-auditor-refused.png``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from browser.harness import Served, served_airflow, wait_for_dag
from conftest import require

from cli_helpers import run_cutover
from cutover.plan import load_plan

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("CUTOVER_ARTIFACTS") or Path(__file__).parent / "artifacts")
RUN_TIMEOUT_S = 10 * 60
"""A generous bound for pt_cutover on 200 patients on a busy 2-core CI machine (typically two minutes);
below the suite's per-test timeout, so that a run that never ends fails with its diagnosis."""


@pytest.fixture
def browser() -> Iterator[Any]:
    # CI (.ci/run) installs it: there a missing browser fails the test instead of skipping it
    require(
        CHROMIUM.exists(), f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Debian's Chromium, never Playwright's downloaded browsers; --no-sandbox: CI runs as root
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def shots() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("0*.png"):
        old.unlink()
    return ARTIFACTS


def _login(browser: Any, served: Served, user: str, path: str) -> Any:
    """A fresh browser context, logged in as ``user`` through FAB's form, showing ``path``."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(90_000)
    page.goto(served.url + path)
    page.fill("#username", user)
    page.fill("#password", served.logins[user])
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"**{path}")
    page.wait_for_load_state("networkidle")
    return page


def _open_trigger_form(page: Any) -> Any:
    """Open pt_cutover's trigger dialog with its Cutover section unfolded; the dialog."""
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Cutover").click()
    trigger = dialog.get_by_role("button", name="Trigger", exact=True)
    if not trigger.is_enabled():
        # an empty string Param is "required" in Airflow's form: name the plan's first wave (ignored in
        # big_bang mode) until the DAG declares `wave` as nullable
        from cutover.plan import load_plan

        dialog.locator("#element_wave").fill(load_plan().waves[0].name)
    return dialog


def _manual_runs(served: Served, token: str) -> list[dict[str, Any]]:
    status, body = served.api("GET", "/api/v2/dags/pt_cutover/dagRuns?run_type=manual&limit=50", token)
    assert status == 200, body
    return [run for run in body["dag_runs"] if run["run_type"] == "manual"]


def _wait_for_run(
    served: Served, token: str, run_id: str, dag_id: str = "pt_cutover", target_url: str | None = None
) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
    while time.monotonic() < deadline:
        status, body = served.api("GET", path, token)
        assert status == 200, body
        if body["state"] in ("success", "failed"):
            return str(body["state"])
        time.sleep(2)
    diagnosis = served.diagnose(token, dag_id, run_id, target_url)
    raise AssertionError(f"{dag_id} run {run_id} not finished after {RUN_TIMEOUT_S} s\n{diagnosis}")


def _back_up(served: Served, token: str) -> None:
    """pt_backup through the REST API, as the engineer: pt_cutover refuses to start without a verified
    backup (run by the served Airflow itself, no second Airflow process to start)."""
    wait_for_dag(served, token, "pt_backup")
    status, body = served.api("PATCH", "/api/v2/dags/pt_backup", token, {"is_paused": False})
    assert status == 200, body
    status, run = served.api("POST", "/api/v2/dags/pt_backup/dagRuns", token, {"logical_date": None})
    assert status == 200, run
    assert _wait_for_run(served, token, run["dag_run_id"], "pt_backup") == "success"


@pytest.mark.slow
def test_engineer_triggers_and_watches_auditor_is_refused(
    home: Path, pg_url: str, browser: Any, shots: Path
) -> None:
    started = time.monotonic()
    # the target is a fresh database of the test PostgreSQL server: an embedded one under pytest's
    # temporary folder stops answering when another pytest session on the machine resets that folder
    target = {"AIRFLOW_CONN_TARGET_DB": pg_url}
    simulated = run_cutover(["simulate", "--patients", "200", "--out", str(home / "legacy.db")], home)
    assert simulated.returncode == 0, simulated.stderr[-2000:]

    with served_airflow(home, target) as served:
        engineer = served.token("engineer")
        _back_up(served, engineer)
        before = {run["dag_run_id"] for run in _manual_runs(served, engineer)}

        # the data engineer: the DAG page, the trigger form, a run that succeeds, a gate's log
        page = _login(browser, served, "engineer", "/dags/pt_cutover")
        page.get_by_text("gate_mapped").first.wait_for()
        page.screenshot(path=str(shots / "01-dag-page.png"))

        dialog = _open_trigger_form(page)
        dialog.get_by_text("Cutover mode").wait_for()
        page.screenshot(path=str(shots / "02-trigger-form.png"))
        dialog.get_by_role("button", name="Trigger", exact=True).click()
        # Chakra may render the toast twice for a moment (one id): wait for it, not for it to be unique
        page.get_by_text("Dag run has been successfully triggered").first.wait_for()

        new = [run for run in _manual_runs(served, engineer) if run["dag_run_id"] not in before]
        assert len(new) == 1, new
        run_id = new[0]["dag_run_id"]
        assert new[0]["triggering_user_name"] == "engineer"
        assert new[0]["conf"]["mode"] == "big_bang"

        # the grid polls the API every few seconds: open it once the run is over, not for all of it
        page.goto("about:blank")
        assert _wait_for_run(served, engineer, run_id, target_url=pg_url) == "success"
        # Cutover's own audit log and run row name the person who triggered it, in every entry
        with psycopg.connect(pg_url) as conn:
            actors = {
                a
                for (a,) in conn.execute(
                    "SELECT DISTINCT actor FROM migration.audit_log WHERE run_id = %s", (run_id,)
                )
            }
            (triggered_by,) = conn.execute(
                "SELECT triggered_by FROM migration.run WHERE run_id = %s", (run_id,)
            ).fetchone()
        assert actors == {"engineer"}
        assert triggered_by == "engineer"
        # the trigger form unpaused pt_cutover days after its last window: nothing was scheduled for it
        plan, now = load_plan(), datetime.now(UTC)
        today = now.astimezone(plan.tz).date()
        opened, _ = plan.window_from(today - timedelta(days=(today.weekday() - plan.start_weekday) % 7))
        if opened > now:
            opened, _ = plan.window_from(opened.date() - timedelta(days=7))
        if now - opened > timedelta(minutes=plan.late_start_minutes):  # (not just after a window opened)
            status, body = served.api("GET", "/api/v2/dags/pt_cutover/dagRuns?run_type=scheduled", engineer)
            assert status == 200, body
            assert body["total_entries"] == 0, body
        # the scheduler ran it with the plan's window as its deadline (cutover run's dag.test cannot)
        status, alerts = served.api("GET", "/ui/dags/pt_cutover/deadlineAlerts", engineer)
        assert status == 200, alerts
        (alert,) = alerts["deadline_alerts"]
        assert (alert["name"], alert["reference_type"]) == ("cutover_window", "DagRunQueuedAtDeadline")
        assert alert["interval"] == (load_plan().window_hours - 4) * 3600
        page.goto(f"{served.url}/dags/pt_cutover/runs/{run_id}")
        header = page.get_by_text(run_id, exact=True).last.locator("xpath=..")
        header.get_by_text("Success").wait_for()
        page.get_by_text("write_evidence").first.wait_for()
        page.screenshot(path=str(shots / "03-run-grid.png"))

        page.goto(f"{served.url}/dags/pt_cutover/runs/{run_id}/tasks/gate_mapped")
        gate_line = page.get_by_text("mapped gate:").first
        for _ in range(60):  # the log view renders lazily: scroll until the gate's summary line shows
            if gate_line.count() and gate_line.is_visible():
                break
            page.mouse.move(900, 700)
            page.mouse.wheel(0, 3000)
            time.sleep(0.5)
        gate_line.scroll_into_view_if_needed()
        assert "0 failed" in gate_line.inner_text()
        page.screenshot(path=str(shots / "04-task-log.png"))
        page.context.close()

        # the auditor: may read, may not trigger
        page = _login(browser, served, "auditor", "/dags/pt_cutover")
        dialog = _open_trigger_form(page)
        dialog.get_by_role("button", name="Trigger", exact=True).click()
        page.get_by_text("403 Forbidden").first.wait_for()
        # refused twice: the trigger, and the form's unpause (the trigger right is needed for both)
        page.get_by_text("You do not have permission to perform this action").first.wait_for()
        page.screenshot(path=str(shots / "05-auditor-refused.png"))
        page.goto(f"{served.url}/dags/pt_cutover/runs/{run_id}/tasks/gate_mapped")
        page.get_by_text("Logs", exact=True).first.wait_for()  # reading the log is allowed
        page.context.close()

        after = {run["dag_run_id"] for run in _manual_runs(served, engineer)}
        assert after == before | {run_id}  # the auditor's attempt created nothing

    for name in ("01-dag-page", "02-trigger-form", "03-run-grid", "04-task-log", "05-auditor-refused"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
    print(f"browser test: {time.monotonic() - started:.0f} s; screenshots in {shots}")
