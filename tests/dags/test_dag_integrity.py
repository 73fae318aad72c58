"""DAG policy: every DAG imports cleanly, touches no connection or database at parse time,
has an explicit schedule, retries, a runbook in doc_md, and tasks free of heavy top-level work."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("airflow")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    for name in ("AIRFLOW_CONN_LEGACY_DB", "AIRFLOW_CONN_TARGET_DB", "AIRFLOW_CONN_STAGING_STORE"):
        os.environ.pop(name, None)

    touched: list[str] = []
    real_connect, real_sqlite = socket.socket.connect, sqlite3.connect

    def no_socket(self, address):  # type: ignore[no-untyped-def]
        touched.append(f"socket {address}")
        raise OSError("network access at DAG parse time")

    def no_sqlite(*args, **kwargs):  # type: ignore[no-untyped-def]
        touched.append(f"sqlite {args[:1]}")
        return real_sqlite(*args, **kwargs)

    from airflow.dag_processing.dagbag import BundleDagBag

    socket.socket.connect = no_socket  # type: ignore[method-assign]
    sqlite3.connect = no_sqlite
    try:
        bag = BundleDagBag(dag_folder=DAGS, bundle_path=DAGS)
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        sqlite3.connect = real_sqlite
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    bag.touched = touched  # type: ignore[attr-defined]
    return bag


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert "pt_cutover" in dagbag.dag_ids


def test_parsing_touches_no_connection_or_database(dagbag) -> None:
    assert dagbag.touched == []


def test_every_dag_states_its_schedule() -> None:
    import ast

    for path in DAGS.glob("*.py"):
        calls = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dag"
        ]
        assert calls, f"{path.name} defines no @dag"
        for call in calls:
            assert "schedule" in {k.arg for k in call.keywords}, f"{path.name}: schedule is not explicit"


def test_every_dag_has_retries_and_runbook(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert "Runbook" in dag.doc_md, f"{dag_id} has no runbook in doc_md"
        assert dag.catchup is False, dag_id
        for t in dag.tasks:
            assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"


@pytest.mark.parametrize("dag_id", ["pt_cutover", "pt_sample_transfer"])
def test_loads_parents_before_children(dagbag, dag_id: str) -> None:
    """A table's first load task waits for every parent table's last load task."""
    from cutover.legacy.schema import LEGACY_TABLES

    dag = dagbag.dags[dag_id]
    tasks = {t.task_id: t for t in dag.tasks}
    for table, spec in LEGACY_TABLES.items():
        first = tasks[f"load.{table}.list_batches"]
        for parent in {p for _, p in spec.parents if p != table}:
            assert f"load.{parent}.load_batch" in first.upstream_task_ids, (table, parent)


def test_cutover_loads_only_after_mapping_and_the_dry_run_check(dagbag) -> None:
    dag = dagbag.dags["pt_cutover"]
    first = dag.get_task("load.clinics.list_batches")
    assert first.upstream_task_ids == {"defer_constraints"}
    assert dag.get_task("defer_constraints").upstream_task_ids == {"snapshot_target"}
    assert dag.get_task("snapshot_target").upstream_task_ids == {"load_unless_dry_run"}
    assert dag.get_task("load_unless_dry_run").upstream_task_ids == {"gate_rejects"}
    assert dag.get_task("gate_rejects").upstream_task_ids == {"gate_mapped"}
    assert dag.get_task("undo_rejected_load").upstream_task_ids == {"gate_target", "reconcile"}
    assert "map_table" in dag.get_task("gate_mapped").upstream_task_ids
    assert dag.get_task("gate_extract").upstream_task_ids == {"extract_table"}
    assert "gate_extract" in dag.get_task("map_table").upstream_task_ids
    assert "load.documents.load_batch" in dag.get_task("gate_target").upstream_task_ids
    assert "restore_constraints" in dag.get_task("gate_target").upstream_task_ids
    assert dag.get_task("write_evidence").upstream_task_ids == {"reconcile"}


@pytest.mark.parametrize("dag_id", ["pt_cutover", "pt_sample_transfer", "pt_delta_sync", "pt_remediate"])
def test_constraints_set_aside_for_a_load_come_back_even_after_a_failed_batch(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    restore = dag.get_task("restore_constraints")
    assert restore.trigger_rule == "all_done"
    batches = {t.task_id for t in dag.tasks if t.task_id.endswith(".load_batch")}
    assert batches <= restore.get_flat_relative_ids(upstream=True)
    assert dag.get_task("defer_constraints").get_flat_relative_ids(upstream=False) >= batches
    # whatever reads the loaded target waits for the batches themselves too, not only for the restore
    gate = dag.get_task("gate_target")
    assert gate.trigger_rule == "all_success"
    assert {"restore_constraints"} < gate.upstream_task_ids


def test_cutover_checks_the_backup_before_touching_the_target(dagbag) -> None:
    dag = dagbag.dags["pt_cutover"]
    assert "require_verified_backup" in dag.get_task("migrate_target_schema").upstream_task_ids
    assert dag.get_task("choose_scope").upstream_task_ids == {"check_configuration"}


@pytest.mark.parametrize(
    "dag_id", ["pt_assess", "pt_backup", "pt_sample_transfer", "pt_cutover", "pt_delta_sync", "pt_remediate"]
)
def test_every_dag_checks_its_configuration_in_its_first_task(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    roots = [t.task_id for t in dag.tasks if not t.upstream_task_ids]
    assert roots == ["check_configuration"], roots


def test_cutover_runs_on_the_plans_friday_timetable(dagbag) -> None:
    from cutover.plan import load_plan

    plan = load_plan()
    timetable = dagbag.dags["pt_cutover"].timetable
    assert plan.cron in timetable.summary
    assert str(timetable._timezone) in (plan.timezone, f"Timezone('{plan.timezone}')")


def test_parsing_imports_no_heavy_library() -> None:
    """DAG files parse without pandas, pyarrow or psycopg: those load inside tasks."""
    import subprocess
    import sys

    code = (
        "import sys, runpy; sys.path.insert(0, sys.argv[1]); "
        "[runpy.run_path(p) for p in sys.argv[2:]]; "
        "heavy = sorted(m for m in ('pandas', 'pyarrow', 'psycopg', 'great_expectations') if m in sys.modules); "
        "print('HEAVY', heavy)"
    )
    files = [str(p) for p in sorted(DAGS.glob("*.py"))]
    out = subprocess.run(
        [sys.executable, "-c", code, str(DAGS), *files], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout, out.stdout[-500:]


def test_cutover_alerts_before_its_window_closes(dagbag) -> None:
    """pt_cutover carries the plan's window as a deadline: the scheduler's triggerer alerts while a
    rollback still fits (``cutover run``'s in-process ``dag.test`` leaves it out)."""
    from datetime import timedelta

    from cutover.plan import load_plan

    (alert,) = dagbag.dags["pt_cutover"].deadline
    assert alert.interval == timedelta(hours=load_plan().window_hours - 4)
    assert alert.callback.path == "pt_common.alerts.CutoverNotifier"
    assert alert.callback.kwargs == {"kind": "deadline"}


def test_every_dag_is_created_paused_and_says_so(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.is_paused_upon_creation is True, dag_id
    # the one with a timetable says what unpausing does, and what a late scheduled run does
    doc = dagbag.dags["pt_cutover"].doc_md
    assert "created paused" in doc
    assert "late_start_minutes" in doc


def test_every_dag_has_a_description_and_the_cutover_shows_its_window_with_the_timezone(dagbag) -> None:
    from cutover.plan import load_plan

    for dag_id, dag in dagbag.dags.items():
        assert dag.description, dag_id
        assert len(dag.description) <= 120, dag_id
    plan = load_plan()
    assert f"Fri 18:00 → Mon 06:00 {plan.timezone}" in dagbag.dags["pt_cutover"].description


def test_the_assets_show_the_chain_backup_and_trial_before_the_cutover_then_sync_and_monitor(dagbag) -> None:
    def uris(dag_id: str, side: str) -> set[str]:
        return {a.uri for task in dagbag.dags[dag_id].tasks for a in getattr(task, side)}

    backup, trial, migrated = (
        "cutover://backup/verified",
        "cutover://trial/verdict",
        "cutover://target/migrated",
    )
    assert uris("pt_backup", "outlets") == {backup}
    assert uris("pt_sample_transfer", "outlets") == {trial}
    assert uris("pt_cutover", "inlets") == {backup, trial}
    assert uris("pt_cutover", "outlets") == {migrated}
    assert uris("pt_delta_sync", "inlets") == uris("pt_delta_sync", "outlets") == {migrated}
    assert uris("pt_monitor", "inlets") == {migrated}
