"""A user's mistake fails a DAG in its first task, in one line, not retried (issue 14, item 5)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import SYSTEM_MARIADB, require_service

from cli_helpers import run_cutover
from cutover.errors import ConfigError, TransientError
from cutover.preflight import check_configuration

pytestmark = pytest.mark.slow


def _ran(task: str, output: str) -> bool:
    """Whether ``output`` shows ``task`` doing anything (Airflow's closing list of the tasks left
    unrunnable, after a failure upstream, names them without running them)."""
    return any(task in line for line in output.splitlines() if "unrunnable tasks" not in line)


def test_a_refused_password_fails_pt_backup_at_once_in_one_line(home: Path) -> None:
    require_service("MariaDB", "127.0.0.1", 3306)
    url = SYSTEM_MARIADB.replace("root@", "root:not-the-password@").rstrip("/") + "/test"
    started = time.perf_counter()
    result = run_cutover(["run", "pt_backup"], home, {"AIRFLOW_CONN_LEGACY_DB": url})
    seconds = time.perf_counter() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0
    lines = [line for line in output.splitlines() if line.startswith("cutover.errors.ConfigError: ")]
    assert lines, output[-3000:]
    assert lines[0].startswith("cutover.errors.ConfigError: configuration check failed: legacy_db")
    assert "the credentials were refused" in lines[0]
    assert "not-the-password" not in output
    # terminal: the retry policy fails the task on its first try, and nothing after it runs
    assert "action=fail" in output
    assert "UP_FOR_RETRY" not in output.upper().replace(" ", "_")
    assert not _ran("snapshot_legacy", output.split("Retry policy decision", 1)[1])
    assert seconds < 60, seconds  # Airflow's start included; the check itself is below a second (next test)


def test_the_check_names_each_mistake_and_takes_seconds(tmp_path: Path, pg_url: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as refused:
        check_configuration(
            legacy_url=f"sqlite:///{tmp_path / 'missing.db'}",
            target_url=pg_url.replace("postgres@", "nosuchrole@"),
            store_url=f"file://{tmp_path / 'stage'}",
        )
    assert time.perf_counter() - started < 10
    message = str(refused.value)
    assert message.count("\n") == 0
    assert "legacy_db" in message
    assert "target_db" in message
    assert "staging_store" not in message
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="legacy_db"):
        check_configuration(legacy_url=f"sqlite:///{corrupt}")
    # a server that is not there (yet) is an outage: transient, retried
    with pytest.raises(TransientError, match="target_db"):
        check_configuration(target_url="postgresql://postgres@127.0.0.1:1/postgres")
    bad_plan = tmp_path / "plan.yaml"
    bad_plan.write_text("timezone: [not, a, zone\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUTOVER_PLAN", str(bad_plan))
        with pytest.raises(ConfigError, match="cutover plan"):
            check_configuration(plan=True)
    assert check_configuration(target_url=pg_url, store_url=f"file://{tmp_path / 'stage'}") == {
        "target_db": "ok",
        "staging_store": "ok",
    }


BROKEN_PROFILES = {
    # what is changed in the simulator profile → the start of the field path the one line names
    "unknown rule": ("rule: text, required: true}", "rule: txt, required: true}", ".rule: unknown rule"),
    "unknown column": ("name: {from: clinic_name,", "name: {from: clinic_nme,", ".from:"),
    "still a TODO": ("doc: An insurer or other payer.", "doc: TODO describe the payer", "TODO"),
    "parent cycle": (
        "  clinics:\n    key: clinic_id\n",
        "  clinics:\n    key: clinic_id\n    parents: {clinic_id: providers}\n",
        "cycle",
    ),
    "missing key": ("    key: payer_id\n", "", "key"),
    "required field unmapped": (
        "        timezone: {from: tz, rule: timezone, required: true}\n",
        "",
        "timezone",
    ),
}


@pytest.mark.parametrize("kind", list(BROKEN_PROFILES))
def test_the_first_task_refuses_a_broken_profile_in_one_line(kind: str, tmp_path: Path) -> None:
    """check_configuration (every DAG's first task) runs the profile check before any connection."""
    from cutover.legacy.profile import simulator

    old, new, said = BROKEN_PROFILES[kind]
    text = Path(simulator().origin).read_text()
    assert old in text, kind
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as refused:
        # the legacy URL is never reached: the profile is refused first
        check_configuration(legacy_url="sqlite:///nowhere/legacy.db", profile_ref=str(broken))
    line = str(refused.value)
    assert "\n" not in line, line
    assert line.startswith(f"{broken}:"), line
    assert said in line, line


def test_pt_backup_refuses_a_broken_profile_in_its_first_task(home: Path, tmp_path: Path) -> None:
    from cutover.legacy.profile import simulator

    broken = tmp_path / "broken.yaml"
    broken.write_text(Path(simulator().origin).read_text().replace("rule: flag_yn}", "rule: flag_y}", 1))
    # the run's profile parameter (chosen by every task's on_execute_callback); CUTOVER_PROFILE is the
    # ClinicNote end-to-end test's way
    conf = json.dumps({"profile": str(broken)})
    result = run_cutover(["run", "pt_backup", "--conf", conf], home)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    lines = [line for line in output.splitlines() if line.startswith("cutover.legacy.profile.ProfileError: ")]
    assert lines, output[-3000:]
    assert f"{broken}:" in lines[0]
    assert "unknown rule 'flag_y'" in lines[0]
    assert "flag_yn" in lines[0]
    assert not _ran("snapshot_legacy", output.split("Retry policy decision", 1)[-1])
