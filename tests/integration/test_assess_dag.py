"""The pt_assess DAG: its shape, and `cutover run pt_assess` end to end on a simulated legacy clinic
(Airflow's dag.test in a subprocess), with the report checked against the simulator's ground truth."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import seed_airflow_home

from cli_helpers import everything_of
from cutover.legacy.schema import LEGACY_TABLES
from cutover.simulate import simulate

DAGS = Path(__file__).resolve().parents[2] / "dags"
# pt_assess never touches the target: an address where nothing listens proves it (and starts no
# embedded PostgreSQL for the run).
UNUSED_TARGET = "postgresql://unused@127.0.0.1:9/unused"


def _cutover(args: list[str], home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    full_env.update({"CUTOVER_HOME": str(home), "AIRFLOW_CONN_TARGET_DB": UNUSED_TARGET, **env})
    return subprocess.run(
        [sys.executable, "-m", "cutover.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=home,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, airflow_template: Path) -> Path:
    """One state folder for the module's runs, Airflow's metadata database already migrated."""
    folder = tmp_path_factory.mktemp("state")
    seed_airflow_home(folder, airflow_template)
    return folder


def test_dag_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=DAGS, bundle_path=DAGS)
    assert not bag.import_errors
    dag = bag.dags["pt_assess"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: run on demand only
    assert dag.catchup is False
    assert "## Runbook" in (dag.doc_md or "")
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {
        "check_configuration",
        "take_delivery",
        "profile_table",
        "run_checks",
        "write_report",
    }
    assert tasks["take_delivery"].upstream_task_ids == {"check_configuration"}
    assert (
        tasks["profile_table"].upstream_task_ids == tasks["run_checks"].upstream_task_ids == {"take_delivery"}
    )
    profile = tasks["profile_table"]
    assert profile.map_index_template == "{{ table }}"
    assert profile.op_kwargs_expand_input.value["table"] == list(LEGACY_TABLES)
    assert tasks["write_report"].upstream_task_ids == {"profile_table", "run_checks"}
    assert dag.params["reference_date"] is None


@pytest.mark.slow
def test_cutover_run_pt_assess(home: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.db"
    manifest: dict[str, Any] = simulate(f"sqlite:///{legacy}", patients=300, seed=19)
    result = _cutover(["run", "pt_assess"], home, {"AIRFLOW_CONN_LEGACY_DB": f"sqlite:///{legacy}"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("evidence: "), last
    folder = Path(last.removeprefix("evidence: "))
    assert folder.is_relative_to(home)
    html_text = (folder / "assessment.html").read_text(encoding="utf-8")
    report = json.loads((folder / "assessment.json").read_text(encoding="utf-8"))

    # the same files are in the staging store, under the run's partition
    staged = home / "staging" / "runs" / folder.name / "evidence"
    for name in ("assessment.html", "assessment.json"):
        assert (staged / name).read_bytes() == (folder / name).read_bytes()

    assert report["row_counts"] == manifest["tables"]
    assert [p["table"] for p in report["profiles"]] == list(LEGACY_TABLES)
    truth = Counter(d["kind"] for d in manifest["defects"] if d.get("field"))
    found = {s["name"]: s["count"] for s in report["summary"]}
    assert found["impossible_dates"] == truth["date_impossible"]
    assert found["orphans"] == truth["orphan"]
    assert found["placeholder_ssns"] == truth["placeholder_ssn"]
    for name, count in found.items():
        assert f"{count:,}" in html_text, name

    # no canary anywhere: report, staged intermediate files, the run's output
    staged_run = home / "staging" / "runs" / folder.name
    texts = [p.read_text(encoding="utf-8") for p in staged_run.rglob("*.json")]
    texts += [html_text, everything_of(result)]  # the console and the task logs
    for canary in manifest["canaries"]:
        pattern = re.compile(re.escape(canary), re.IGNORECASE)
        assert not any(pattern.search(t) for t in texts), "a canary reached the output"


@pytest.mark.slow
def test_missing_legacy_database_fails(home: Path, tmp_path: Path) -> None:
    result = _cutover(
        ["run", "pt_assess"], home, {"AIRFLOW_CONN_LEGACY_DB": f"sqlite:///{tmp_path / 'missing.db'}"}
    )
    assert result.returncode != 0
    assert result.stdout.strip().splitlines()[-1].startswith("evidence: ")
    folder = Path(result.stdout.strip().splitlines()[-1].removeprefix("evidence: "))
    assert not (folder / "assessment.html").exists()


@pytest.mark.services
@pytest.mark.parametrize("server", ["pg_url", "mariadb_url"])
def test_assessment_on_database_servers(server: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The same checks and profiles on PostgreSQL and MariaDB legacy databases, against the ground truth."""
    from cutover.assess import run_assessment, write_report

    url = request.getfixturevalue(server)
    manifest = simulate(url, patients=150, seed=29, manifest_path=tmp_path / "manifest.json")
    assessment = run_assessment(url)
    assert assessment.row_counts == manifest["tables"]
    truth = Counter(d["kind"] for d in manifest["defects"] if d.get("field"))
    found = {s.name: s.count for s in assessment.summaries()}
    for name, kind in (
        ("impossible_dates", "date_impossible"),
        ("orphans", "orphan"),
        ("placeholder_ssns", "placeholder_ssn"),
        ("invalid_npis", "invalid_npi"),
        ("scores_out_of_range", "score_out_of_range"),
        ("notes_without_appointment", "note_without_appointment"),
    ):
        assert truth[kind] > 0, kind
        if name == "invalid_npis":  # plans of care repeat the invalid NPI of their certifying physician
            assert (
                sum(r.count for r in assessment.checks if r.name == name and r.table != "plans_of_care")
                == truth[kind]
            )
        else:
            assert found[name] == truth[kind], name
    texts = [p.read_text(encoding="utf-8").lower() for p in write_report(assessment, tmp_path / "report")]
    for canary in manifest["canaries"]:
        assert not any(canary.lower() in t for t in texts), "a canary reached the report"
