"""One run per target: a second run refuses at once naming the holder; a killed run is marked failed.

In-process with the pipeline's own functions (a `cutover run` pair would cost minutes); the kill is
a real ``kill -9`` of a process holding the run's lock.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

from cutover import pipeline
from cutover.cli import main
from cutover.errors import TerminalError
from cutover.runs import RunLocked, end_run, hold_lock, list_runs


def _run(url: str, run_id: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT state, holder_pid, (SELECT run_id FROM migration.run_lock) FROM migration.run WHERE run_id = %s",
            (run_id,),
        ).fetchone()
    assert row is not None, run_id
    return {"state": row[0], "pid": row[1], "lease": row[2]}


def _stale(url: str, run_id: str, pid: int) -> None:
    """What a killed run leaves: a heartbeat older than the lease, a process that is gone."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE migration.run SET heartbeat_at = now() - interval '2 hours', holder_pid = %s WHERE run_id = %s",
            (pid, run_id),
        )


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_a_second_run_refuses_at_once_naming_the_holder(pg_url: str) -> None:
    pipeline.prepare_target(pg_url)
    pipeline.begin_run(pg_url, "run-a", "pt_cutover", {"mode": "big_bang"}, "tester")
    pipeline.begin_run(pg_url, "run-a", "pt_cutover", {"mode": "big_bang"}, "tester")  # a retried task
    started = time.monotonic()
    with pytest.raises(RunLocked, match=r"^the target is held by run run-a \(pt_cutover\)") as refused:
        pipeline.begin_run(pg_url, "run-b", "pt_delta_sync", {}, "tester")
    assert time.monotonic() - started < 5
    assert refused.value.holder == "run-a"
    assert "\n" not in str(refused.value)
    with psycopg.connect(pg_url) as conn:  # the refused run left nothing: no row, no audit entry
        assert conn.execute("SELECT count(*) FROM migration.run WHERE run_id = 'run-b'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM migration.audit_log WHERE run_id = 'run-b'").fetchone() == (
            0,
        )
    # a task of the second run refuses too; the holder's own tasks go on, several at once
    with pytest.raises(RunLocked, match="held by run run-a"), hold_lock(pg_url, "run-b"):
        pass
    with hold_lock(pg_url, "run-a"), hold_lock(pg_url, "run-a"):
        assert _run(pg_url, "run-a")["lease"] == "run-a"

    # the run ends (its teardown): the target is free at once, and the next run takes it
    assert end_run(pg_url, "run-a", failed=False) == "success"
    no_longer = "run run-a is success: it no longer holds the target"
    with pytest.raises(TerminalError, match=no_longer), hold_lock(pg_url, "run-a"):
        pass
    pipeline.begin_run(pg_url, "run-b", "pt_delta_sync", {}, "tester")
    assert _run(pg_url, "run-b")["lease"] == "run-b"


def test_two_runs_beginning_at_the_same_moment_one_wins(pg_url: str) -> None:
    pipeline.prepare_target(pg_url)
    barrier = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def begin(run_id: str) -> None:
        barrier.wait()
        try:
            pipeline.begin_run(pg_url, run_id, "pt_cutover", {}, "tester")
            outcome[run_id] = "began"
        except RunLocked as refused:
            outcome[run_id] = f"refused by {refused.holder}"

    threads = [threading.Thread(target=begin, args=(r,)) for r in ("run-x", "run-y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcome.values())[0] == "began"
    winner = next(r for r, o in outcome.items() if o == "began")
    assert sorted(outcome.values()) == ["began", f"refused by {winner}"]


HOLDER = """
import sys, time
from cutover import pipeline
from cutover.runs import hold_lock
url, run_id = sys.argv[1:]
pipeline.begin_run(url, run_id, "pt_cutover", {}, "tester")
with hold_lock(url, run_id):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_killed_run_is_refused_while_its_task_lives_and_marked_failed_after_kill_9(pg_url: str) -> None:
    pipeline.prepare_target(pg_url)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_url, "run-k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        # a stale heartbeat alone does not make a run dead while one of its tasks holds its lock
        _stale(pg_url, "run-k", holder.pid)
        with pytest.raises(RunLocked, match="held by run run-k"):
            pipeline.begin_run(pg_url, "run-n", "pt_cutover", {}, "tester")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    # its connection is gone with it (the server notices within moments), and the lock with it
    deadline = time.monotonic() + 20
    while True:
        try:
            pipeline.begin_run(pg_url, "run-n", "pt_cutover", {}, "tester")
            break
        except RunLocked:
            assert time.monotonic() < deadline, "the killed task's lock outlived its connection"
            time.sleep(0.2)
    assert _run(pg_url, "run-k")["state"] == "failed"
    assert _run(pg_url, "run-n") == {"state": "running", "pid": os.getpid(), "lease": "run-n"}
    with psycopg.connect(pg_url) as conn:
        audited = conn.execute(
            "SELECT actor, detail FROM migration.audit_log WHERE run_id = 'run-k' AND action = 'run marked failed'"
        ).fetchall()
    assert [a for a, _ in audited] == [getpass.getuser()]  # the person whose process found it dead
    assert audited[0][1]["reason"] == "lease lapsed"
    # its resumed tasks are refused: the target is another run's now
    with pytest.raises(RunLocked, match="held by run run-n"), hold_lock(pg_url, "run-k"):
        pass


def test_cutover_runs_marks_a_killed_run_failed_and_lists_every_run(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.prepare_target(pg_url)
    pipeline.begin_run(pg_url, "run-1", "pt_cutover", {"mode": "phased", "wave": "wave-1"}, "ops@clinic")
    end_run(pg_url, "run-1", failed=False)
    pipeline.begin_run(pg_url, "run-2", "pt_cutover", {"mode": "big_bang"}, "ops@clinic")
    _stale(pg_url, "run-2", _dead_pid())
    monkeypatch.setenv("AIRFLOW_CONN_TARGET_DB", pg_url)

    assert main(["runs", "--json"]) == 0
    listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert {r: (v["state"], v["holds_target"]) for r, v in listed.items()} == {
        "run-1": ("success", False),
        "run-2": ("failed", False),
    }
    assert (listed["run-1"]["dag_id"], listed["run-1"]["mode"], listed["run-1"]["wave"]) == (
        "pt_cutover",
        "phased",
        "wave-1",
    )
    assert listed["run-1"]["triggered_by"] == "ops@clinic"
    assert None not in (listed["run-1"]["finished"], listed["run-2"]["finished"])

    pipeline.begin_run(pg_url, "run-3", "pt_delta_sync", {}, "system")  # the target was free
    assert main(["runs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["run", "id", "dag", "mode/wave"]
    assert table[1].split()[:4] == ["run-3", "pt_delta_sync", "-", "running*"]
    assert table[-1] == "* holds the target"
    assert [r["run_id"] for r in list_runs(pg_url)] == ["run-3", "run-2", "run-1"]
