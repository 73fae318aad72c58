"""One run per target at a time: the target's lease, who holds it, and which runs were killed.

Two runs writing one target at once take over each other's rows in the ledger and both fail, so a
run holds the target from ``begin_run`` to its end, and a second run refuses at once with a
:class:`RunLocked` naming the holder.

**Why a lease, and not one advisory lock.** A PostgreSQL session advisory lock lives as long as its
connection, but an Airflow run is many task processes, each with its own connections, and between
two tasks no process of the run exists at all. No single connection can hold a lock for the run's
lifetime. So the holder is recorded, and its liveness has two witnesses:

* the **lease** — ``migration.run_lock`` (one row: the run that holds the target), taken in
  :func:`claim_target` inside ``begin_run``'s transaction under a transaction advisory lock, so two
  runs that begin at the same moment serialise and the second sees the first;
* **held locks** — every task of the run that works for it runs inside :func:`hold_lock`, whose
  connection holds a *shared* session advisory lock keyed by the run for the task's duration and
  refreshes the run's heartbeat (``migration.run.heartbeat_at``, with the task's host, pid and
  backend) when it starts and ends. That lock goes with the connection: a task killed with
  ``kill -9``, or a server that drops it, releases it at once.

A run holds the target while its state is ``running`` and either one of its tasks holds the
run's advisory lock or its heartbeat is younger than :func:`lease_seconds` (the gap Airflow may leave
between two tasks: scheduling, a retry's backoff). A run that is ``running`` with neither is dead —
killed, or ended without reaching its last task — and the next run to claim the target, a task's
:func:`hold_lock`, or ``cutover runs`` marks it ``failed`` and writes that to the audit log. The
lease is released when the run's state leaves ``running`` (``write_summary``, ``gate_rejects``,
a rollback) or by :func:`end_run` (the DAG's last task, also after a failure).

What this does not do: a task checks the lease when it starts; a task whose holding connection
is cut while it works (and whose run's heartbeat then lapses) is not stopped, it is only refused
its next task. The pid is recorded to name the holder, not to judge it: under Airflow the process
of a run's last task has ended between tasks, though the run lives on.

>>> RunLocked("manual__2026-11-27T18:00:00+00:00", "pt_cutover").holder
'manual__2026-11-27T18:00:00+00:00'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args

import psycopg

from cutover.audit import os_user
from cutover.errors import TerminalError, TransientError

log = logging.getLogger(__name__)

RunState = Literal["running", "success", "failed", "rolled_back"]
"""The states of ``migration.run`` (checked by the table since V007)."""

RUN_STATES: tuple[str, ...] = get_args(RunState)

LEASE_SECONDS = 600
"""How long a run's heartbeat keeps the target while none of its tasks holds the run's lock: longer
than Airflow leaves between two tasks of a run (a retry's backoff included). ``CUTOVER_RUN_LEASE_SECONDS``
overrides it."""

LOCK_NAMESPACE = int.from_bytes(hashlib.sha256(b"cutover.runs").digest()[:4], "big") & 0x7FFFFFFF
"""The first key of every run's advisory lock (two int4 keys: this, and the run id's ``hashtext``)."""

_CLAIM = "SELECT pg_advisory_xact_lock(hashtextextended('cutover.runs.claim', 0))"

_HELD = (
    "EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND l.classid::bigint = %(ns)s AND l.objid::bigint = (hashtext(r.run_id) & 2147483647))"
)
_ALIVE = f"(r.state = 'running' AND (r.heartbeat_at > now() - make_interval(secs => %(lease)s) OR {_HELD}))"


class RunLocked(TerminalError):
    """Another run holds the target: one run per target at a time."""

    def __init__(self, holder: str, dag_id: str, detail: str = "") -> None:
        self.holder = holder
        super().__init__(
            f"the target is held by run {holder} ({dag_id}){detail}: one run per target at a time; "
            "wait for it to end (cutover runs shows it)"
        )


def lease_seconds() -> int:
    """:data:`LEASE_SECONDS`, or ``CUTOVER_RUN_LEASE_SECONDS`` when set."""
    value = os.environ.get("CUTOVER_RUN_LEASE_SECONDS")
    if not value:
        return LEASE_SECONDS
    if not value.isdigit() or int(value) <= 0:
        raise TerminalError("CUTOVER_RUN_LEASE_SECONDS must be a whole number of seconds above 0")
    return int(value)


def _params() -> dict[str, Any]:
    return {"ns": LOCK_NAMESPACE, "lease": lease_seconds()}


def _reap(conn: psycopg.Connection[Any], *, keep: str | None = None) -> list[str]:
    """Mark every run that is ``running`` but dead ``failed`` (audited) and free a dead lease; their ids."""
    dead = [
        str(r[0])
        for r in conn.execute(
            f"SELECT r.run_id FROM migration.run AS r WHERE r.state = 'running' AND NOT {_ALIVE}"
            " AND r.run_id IS DISTINCT FROM %(keep)s ORDER BY r.started_at FOR UPDATE OF r",
            {**_params(), "keep": keep},
        ).fetchall()
    ]
    for run_id in dead:
        conn.execute(
            "UPDATE migration.run SET state = 'failed', finished_at = greatest(now(), started_at)"
            " WHERE run_id = %s",
            (run_id,),
        )
        conn.execute(
            "INSERT INTO migration.audit_log (actor, action, run_id, detail) VALUES (%s, %s, %s, %s)",
            (
                os_user(),  # the process that found the run dead (its next run's)
                "run marked failed",
                run_id,
                json.dumps({"reason": "lease lapsed", "lease_seconds": lease_seconds()}),
            ),
        )
        log.warning("run %s held no lock and no fresh heartbeat: marked failed (killed)", run_id)
    conn.execute(
        f"DELETE FROM migration.run_lock AS l USING migration.run AS r"
        f" WHERE r.run_id = l.run_id AND NOT {_ALIVE} AND r.run_id IS DISTINCT FROM %(keep)s",
        {**_params(), "keep": keep},
    )
    return dead


def _beat(conn: psycopg.Connection[Any], run_id: str) -> None:
    conn.execute(
        "UPDATE migration.run SET heartbeat_at = now(), holder_host = %s, holder_pid = %s,"
        " holder_backend = pg_backend_pid() WHERE run_id = %s",
        (socket.gethostname(), os.getpid(), run_id),
    )


def _holder(conn: psycopg.Connection[Any]) -> tuple[str, str, Any] | None:
    row = conn.execute(
        "SELECT l.run_id, r.dag_id, r.heartbeat_at FROM migration.run_lock AS l"
        " JOIN migration.run AS r USING (run_id)"
    ).fetchone()
    return (str(row[0]), str(row[1]), row[2]) if row else None


def claim_target(conn: psycopg.Connection[Any], run_id: str) -> list[str]:
    """Take the target's lease for ``run_id``, in the caller's transaction (``begin_run``'s, after it
    recorded the run); returns the dead runs it marked failed.

    Raises :class:`RunLocked` naming the holder when another live run holds the target; the caller's
    transaction (the run's row included) then rolls back. Claiming again for the same run (a retried
    task, ``--resume``) renews the lease.
    """
    conn.execute(_CLAIM)
    dead = _reap(conn, keep=run_id)
    holder = _holder(conn)
    if holder is not None and holder[0] != run_id:
        beat = "" if holder[2] is None else f", last heartbeat {holder[2]:%Y-%m-%d %H:%M:%S%z}"
        raise RunLocked(holder[0], holder[1], beat)
    conn.execute(
        "INSERT INTO migration.run_lock (run_id) VALUES (%s)"
        " ON CONFLICT (target) DO UPDATE SET run_id = EXCLUDED.run_id, taken_at = now()",
        (run_id,),
    )
    _beat(conn, run_id)
    log.info("run %s holds the target", run_id)
    return dead


def _connect(target_url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(target_url, autocommit=True, application_name="cutover-run-lock")
    except psycopg.OperationalError as exc:
        raise TransientError(f"cannot connect to the target database ({type(exc).__name__})") from exc


@contextmanager
def hold_lock(target_url: str, run_id: str) -> Iterator[None]:
    """Hold the target for ``run_id`` while the ``with`` block runs (a task's work).

    Refuses (:class:`RunLocked`) when another live run holds the target, and
    (:class:`~cutover.errors.TerminalError`) when ``run_id`` has ended or was never begun on it; else
    holds the run's shared advisory lock on its own connection until the block ends and refreshes the
    run's heartbeat at both ends. Several tasks of one run hold it at once.
    """
    conn = _connect(target_url)
    try:
        conn.execute(
            "SELECT pg_advisory_lock_shared(%s, hashtext(%s) & 2147483647)", (LOCK_NAMESPACE, run_id)
        )
        with conn.transaction():
            conn.execute(_CLAIM)
            _reap(conn, keep=run_id)
            holder = _holder(conn)
            if holder is not None and holder[0] != run_id:
                raise RunLocked(holder[0], holder[1])
            row = conn.execute("SELECT state FROM migration.run WHERE run_id = %s", (run_id,)).fetchone()
            if row is None:
                raise TerminalError(f"run {run_id} was never begun on this target (begin_run first)")
            if row[0] != "running":
                raise TerminalError(
                    f"run {run_id} is {row[0]}: it no longer holds the target (resume it to claim it again)"
                )
            if holder is None:  # released while the run still ran (a lease from before V007): take it again
                conn.execute("INSERT INTO migration.run_lock (run_id) VALUES (%s)", (run_id,))
            _beat(conn, run_id)
        yield
        _beat(conn, run_id)
    finally:
        conn.close()


def end_run(target_url: str, run_id: str, *, failed: bool) -> str:
    """The run's last word (its DAG's final task, whatever happened before): release the target and,
    when the run is still ``running``, set it ``failed`` or ``success``. Returns the run's state."""
    with _connect(target_url) as conn, conn.transaction():
        present = conn.execute("SELECT to_regclass('migration.run_lock') IS NOT NULL").fetchone()
        if not present or not present[0]:
            return "unknown"  # a target the run never reached
        conn.execute(_CLAIM)
        row = conn.execute(
            "UPDATE migration.run SET state = CASE WHEN state = 'running' THEN %s ELSE state END,"
            " finished_at = CASE WHEN state = 'running' THEN greatest(now(), started_at) ELSE finished_at END"
            " WHERE run_id = %s RETURNING state",
            ("failed" if failed else "success", run_id),
        ).fetchone()
        conn.execute("DELETE FROM migration.run_lock WHERE run_id = %s", (run_id,))
    state = str(row[0]) if row else "unknown"
    log.info("run %s ended %s; the target is free", run_id, state)
    return state


def list_runs(target_url: str) -> list[dict[str, Any]]:
    """Every run on the target, newest first, after marking the dead ones ``failed`` (:func:`_reap`).

    Ids, modes, states, times and who triggered it: never a patient value.
    """
    with _connect(target_url) as conn:
        with conn.transaction():
            conn.execute(_CLAIM)
            _reap(conn)
        rows = conn.execute(
            "SELECT r.run_id, r.dag_id, r.mode, r.conf ->> 'wave', r.state, r.started_at, r.finished_at,"
            " r.triggered_by, r.heartbeat_at, r.holder_host, r.holder_pid,"
            " EXISTS (SELECT 1 FROM migration.run_lock AS l WHERE l.run_id = r.run_id)"
            " FROM migration.run AS r ORDER BY r.started_at DESC, r.run_id"
        ).fetchall()
    keys = (
        "run_id",
        "dag_id",
        "mode",
        "wave",
        "state",
        "started",
        "finished",
        "triggered_by",
        "heartbeat",
        "holder_host",
        "holder_pid",
        "holds_target",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]
