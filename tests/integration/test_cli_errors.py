"""A user's mistake is one line: `cutover` prints `error: …` on stderr, no traceback, and exits 2;
`--debug` shows the traceback instead. Run as a user would (tests/cli_helpers.run_cutover)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import SYSTEM_MARIADB, require_service

from cli_helpers import run_cutover
from cutover.mapping.specs import SPECS

# nothing listens here: a command that reached the target would fail differently (and slowly)
UNUSED_TARGET = {"AIRFLOW_CONN_TARGET_DB": "postgresql://unused@127.0.0.1:9/unused"}


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line of a refused command, checked to be the whole story: exit 2, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]  # the last thing the user reads
    return errors[0]


def test_trace_unknown_table_names_the_known_ones_closest_first(tmp_path: Path) -> None:
    line = one_error_line(run_cutover(["trace", "visit", "1"], tmp_path, UNUSED_TARGET))
    assert line.startswith("error: unknown legacy table 'visit'; known (closest first): visits, ")
    named = line.split(": ")[-1].split(", ")
    assert sorted(named) == sorted(SPECS)


def test_trace_nosuchtable_is_one_line(tmp_path: Path) -> None:
    result = run_cutover(["trace", "nosuchtable", "1"], tmp_path, UNUSED_TARGET)
    assert one_error_line(result).startswith(
        "error: unknown legacy table 'nosuchtable'; known (closest first): "
    )
    assert result.stdout == ""


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    for args in (["--debug", "trace", "nosuchtable", "1"], ["trace", "nosuchtable", "1", "--debug"]):
        result = run_cutover(args, tmp_path, UNUSED_TARGET)
        assert result.returncode != 0
        assert "Traceback" in result.stderr
        assert "cutover.errors.UnknownNameError: unknown legacy table 'nosuchtable'" in result.stderr


def test_simulate_into_a_missing_postgres_database(tmp_path: Path, pg_admin_url: str) -> None:
    missing = f"nosuchdb_{uuid.uuid4().hex[:8]}"
    url = urlsplit(pg_admin_url)._replace(path=f"/{missing}").geturl()
    parts = urlsplit(url)
    result = run_cutover(["simulate", "--patients", "20", "--url", url, "--manifest", "m.json"], tmp_path)
    assert one_error_line(result) == (
        f"error: legacy database: the PostgreSQL server at {parts.hostname}:{parts.port or 5432} has no "
        f"database '{missing}'; create it first (createdb {missing})"
    )
    assert not (tmp_path / "m.json").exists()


def test_simulate_into_a_missing_mariadb_database(tmp_path: Path) -> None:
    require_service("MariaDB", "127.0.0.1", 3306)
    missing = f"nosuchdb_{uuid.uuid4().hex[:8]}"
    url = f"{SYSTEM_MARIADB.rstrip('/')}/{missing}"
    result = run_cutover(["simulate", "--patients", "20", "--url", url, "--manifest", "m.json"], tmp_path)
    assert one_error_line(result) == (
        f"error: legacy database: the MariaDB server at 127.0.0.1:3306 has no database '{missing}'; "
        f"create it first (CREATE DATABASE `{missing}`)"
    )
    # the module's own entry point says the same in the same way
    module = subprocess.run(
        [sys.executable, "-m", "cutover.simulate", url, "--patients", "20", "--manifest", "m.json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert one_error_line(module) == one_error_line(result)


def test_simulate_into_a_sqlite_file_in_a_missing_folder(tmp_path: Path) -> None:
    where = tmp_path / "no" / "such" / "folder" / "legacy.db"
    result = run_cutover(
        ["simulate", "--patients", "20", "--url", f"sqlite:///{where}", "--manifest", "m.json"], tmp_path
    )
    assert one_error_line(result) == (
        f"error: legacy database: no folder {where.parent} for the SQLite file legacy.db; create the folder first"
    )
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["verify", "nosuch.manifest.json"], "error: no such file: nosuch.manifest.json"),
        (["simulate", "--patients", "5", "--out", "x.db"], "error: --patients must be at least 20"),
        (["simulate", "--url", "sqlite:///x.db"], "error: --manifest PATH is required with --url"),
        (["run", "pt_backup", "--conf", "{bad"], "error: --conf is not valid JSON"),
        (["run", "pt_backup", "--conf", "[1]"], "error: --conf must be a JSON object"),
    ],
    ids=["missing-file", "too-few-patients", "url-without-manifest", "conf-not-json", "conf-not-object"],
)
def test_user_mistakes_are_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    assert one_error_line(run_cutover(args, tmp_path, UNUSED_TARGET)).startswith(expected)


@pytest.mark.slow
def test_unknown_dag_and_bad_resume_id(home: Path) -> None:
    line = one_error_line(run_cutover(["run", "pt_bakup"], home, UNUSED_TARGET))
    assert line.startswith("error: unknown DAG 'pt_bakup'; known (closest first): pt_backup, ")
    assert "pt_cutover" in line
    line = one_error_line(run_cutover(["run", "pt_backup", "--resume", "yesterday"], home, UNUSED_TARGET))
    assert line == (
        "error: --resume takes a manual run id such as manual__2026-11-27T18:00:00+00:00, not 'yesterday'"
    )
