"""pt_rollback against a real PostgreSQL: a snapshot before each load, an exact restore, the refusals,
and `cutover run pt_rollback` end to end after `cutover run pt_backup` and `pt_cutover`."""

from __future__ import annotations

import getpass
import json
import re
from datetime import date
from pathlib import Path

import psycopg
import pytest

from cli_helpers import everything_of, evidence_of, run_cutover
from cutover import pipeline
from cutover.errors import IntegrityError, TerminalError
from cutover.rollback import (
    check_rollback,
    drop_snapshot,
    rollback_run,
    snapshot_schema,
    snapshot_tables,
    snapshot_target,
    verify_restored,
)
from cutover.runs import end_run
from cutover.simulate import simulate
from cutover.target.checksums import table_checksum

AS_OF = date(2026, 11, 27)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, list[str]]]:
    """Two simulated clinics extracted and mapped once (runs ``run-a`` and ``run-b``), loaded by each test.

    Both number their legacy rows from 1, so ``run-b`` loading on top of ``run-a`` updates rows that
    ``run-a`` inserted and adds new ones: the case a ledger-based undo cannot restore.
    """
    folder = tmp_path_factory.mktemp("rollback")
    store = f"file://{folder / 'stage'}"
    canaries: dict[str, list[str]] = {}
    for run_id, patients, seed in (("run-a", 120, 61), ("run-b", 150, 62)):
        legacy = f"sqlite:///{folder / f'{run_id}.db'}"
        canaries[run_id] = simulate(legacy, patients=patients, seed=seed)["canaries"]
        for table in pipeline.migrated_tables():
            pipeline.extract_table(legacy, store, run_id, table)
            pipeline.map_table(store, run_id, table, as_of=AS_OF)
    return store, canaries


def _load(target: str, store: str, run_id: str, *, snapshot: bool = True) -> None:
    pipeline.prepare_target(target)
    pipeline.begin_run(target, run_id, "pt_cutover", {"mode": "big_bang"}, "tester")
    if snapshot:
        snapshot_target(target, run_id)
    for table in pipeline.migrated_tables():
        pipeline.load_mapped(target, store, run_id, table)
    # the target is free for the next run, as pt_cutover's teardown leaves it
    end_run(target, run_id, failed=False)


def _state(url: str) -> dict[str, tuple[int, str]]:
    """Rows and checksum of every table a load writes (pt and the ledger)."""
    with psycopg.connect(url) as conn:
        sums = {f"{s}.{t}": table_checksum(conn, t, s) for s, t in snapshot_tables()}
    return {t: (c["rows"], c["checksum"]) for t, c in sums.items()}


def _run_row(url: str, run_id: str) -> tuple[str, list[tuple[str, str, dict]]]:
    with psycopg.connect(url) as conn:
        (state,) = conn.execute("SELECT state FROM migration.run WHERE run_id = %s", (run_id,)).fetchone()
        audit = conn.execute(
            "SELECT actor, action, detail FROM migration.audit_log WHERE run_id = %s ORDER BY id", (run_id,)
        ).fetchall()
    return state, audit


def _tamper(url: str, run_id: str, statement: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(statement.format(schema=f'"{snapshot_schema(run_id)}"'))


def test_rollback_restores_the_target_exactly_before_each_run(
    staged: tuple[str, dict[str, list[str]]], pg_url: str
) -> None:
    store, canaries = staged
    _load(pg_url, store, "run-a")
    after_a = _state(pg_url)
    assert after_a["pt.patient"][0] > 50
    assert after_a["migration.crosswalk"][0] > 500
    kept = snapshot_target(pg_url, "run-a")  # a retried task after the load began keeps the snapshot
    assert kept["kept"] is True
    assert kept["rows"] == 0  # still the empty target the run found

    pipeline.begin_run(pg_url, "run-b", "pt_cutover", {"mode": "big_bang"}, "tester")
    taken = snapshot_target(pg_url, "run-b")
    again = snapshot_target(pg_url, "run-b")  # nothing loaded yet: taken again, same content
    assert (taken["kept"], again["kept"]) == (False, False)
    assert again["rows"] == taken["rows"] == sum(n for n, _ in after_a.values())
    assert taken["bytes"] > 0
    for table in pipeline.migrated_tables():
        pipeline.load_mapped(pg_url, store, "run-b", table)
    after_b = _state(pg_url)
    changed = {t for t in after_a if after_a[t] != after_b[t]}
    assert {"pt.patient", "pt.visit", "migration.crosswalk", "migration.batch"} <= changed

    # the older run cannot go first: it would undo run-b too
    with pytest.raises(TerminalError, match=r"run\(s\) run-b \(\d+ batches\) loaded on top of 'run-a'"):
        rollback_run(pg_url, "run-a", actor="ops@clinic")
    assert _state(pg_url) == after_b

    # a snapshot altered after it was taken is refused, nothing committed
    _tamper(pg_url, "run-b", "CREATE TABLE {schema}.keep AS TABLE {schema}.pt__payer")
    _tamper(
        pg_url,
        "run-b",
        "UPDATE {schema}.pt__payer SET name = 'altered' WHERE id = (SELECT id FROM {schema}.pt__payer ORDER BY id LIMIT 1)",
    )
    payers = after_a["pt.payer"][0]
    with pytest.raises(
        IntegrityError, match=rf"pt\.payer {payers} rows \(snapshot {payers}\), checksum differs"
    ):
        rollback_run(pg_url, "run-b", actor="ops@clinic")
    _tamper(
        pg_url,
        "run-b",
        "DELETE FROM {schema}.pt__payer WHERE id = (SELECT id FROM {schema}.pt__payer ORDER BY id LIMIT 1)",
    )
    with pytest.raises(IntegrityError, match=r"would break foreign key coverage_payer_id_fkey"):
        rollback_run(pg_url, "run-b", actor="ops@clinic")
    assert _state(pg_url) == after_b
    assert _run_row(pg_url, "run-b")[0] == "running"
    _tamper(
        pg_url, "run-b", "TRUNCATE {schema}.pt__payer; INSERT INTO {schema}.pt__payer TABLE {schema}.keep"
    )

    result = rollback_run(pg_url, "run-b", actor="ops@clinic")
    assert _state(pg_url) == after_a
    assert result["deleted"]["pt.patient"] > 0  # updated and added rows went back
    assert result["inserted"]["pt.patient"] > 0  # the before-images of the rows run-b updated
    assert not result["truncated"]
    assert verify_restored(pg_url, "run-b")["matched"]
    state, audit = _run_row(pg_url, "run-b")
    assert state == "rolled_back"
    actor, action, detail = audit[-1]
    assert (actor, action) == ("ops@clinic", "rollback pt_cutover")
    assert detail["rows_after"]["pt.patient"] == after_a["pt.patient"][0]
    assert not any(c in json.dumps(detail) for c in canaries["run-a"] + canaries["run-b"])

    # now the first run, onto the empty target it found: every table empties with one TRUNCATE
    result = rollback_run(pg_url, "run-a", actor="ops@clinic")
    assert all(rows == 0 for rows, _ in _state(pg_url).values())
    assert "pt.patient" in result["truncated"]
    assert "migration.batch" in result["truncated"]
    with psycopg.connect(pg_url) as conn:
        runs = dict(conn.execute("SELECT run_id, state FROM migration.run").fetchall())
        actions = [a for (a,) in conn.execute("SELECT action FROM migration.audit_log ORDER BY id")]
    assert runs == {"run-a": "rolled_back", "run-b": "rolled_back"}  # history stays
    assert actions.count("rollback pt_cutover") == 2

    # a repeated rollback (a retried task) changes nothing and is logged again
    again_a = rollback_run(pg_url, "run-a", actor="ops@clinic")
    assert (again_a["deleted"], again_a["inserted"], again_a["truncated"]) == ({}, {}, [])
    assert actions.count("snapshot target") == 3
    assert drop_snapshot(pg_url, "run-a") is True
    assert drop_snapshot(pg_url, "run-a") is False
    with pytest.raises(TerminalError, match="has no rollback snapshot"):
        check_rollback(pg_url, "run-a")


def test_rollback_refuses_to_undo_what_others_entered_since_its_snapshot(
    staged: tuple[str, dict[str, list[str]]], pg_url: str
) -> None:
    """A later wave's rollback must not silently undo what an earlier wave's clinic charted since."""
    store, canaries = staged
    _load(pg_url, store, "run-a")
    after_a = _state(pg_url)
    _load(pg_url, store, "run-b")  # a later wave, loaded over the first
    with psycopg.connect(pg_url) as conn:
        # the new system at work: a patient registered there, with an appointment, and an edit to a
        # visit of a patient run-b loaded (that one is the run's to undo, so not counted)
        conn.execute(
            "INSERT INTO pt.patient SELECT (json_populate_record(p, json_build_object("
            "'id', '00000000-0000-4000-8000-000000000001', 'mrn', 'NEW-1'))).* FROM pt.patient p LIMIT 1"
        )
        conn.execute(
            "INSERT INTO pt.appointment SELECT (json_populate_record(a, json_build_object("
            "'id', gen_random_uuid(), 'patient_id', '00000000-0000-4000-8000-000000000001', 'episode_id', NULL"
            "))).* FROM pt.appointment a LIMIT 1"
        )
        conn.execute(
            "UPDATE pt.visit SET plan = 'amended' WHERE id = (SELECT min(id::text)::uuid FROM pt.visit)"
        )
    edited = _state(pg_url)

    refusal = r"refused: 2 rows of patients that 'run-b' did not load changed since its snapshot \(pt\.patient 1, pt\.appointment 1\)"
    with pytest.raises(TerminalError, match=refusal):
        check_rollback(pg_url, "run-b", confirm="run-b")
    with pytest.raises(TerminalError, match=refusal):
        rollback_run(pg_url, "run-b", actor="ops@clinic")
    assert _state(pg_url) == edited
    assert _run_row(pg_url, "run-b")[0] == "success"  # a refused rollback changes nothing

    check_rollback(pg_url, "run-b", undo_outside_changes=True)
    rollback_run(pg_url, "run-b", actor="ops@clinic", undo_outside_changes=True)
    assert _state(pg_url) == after_a
    actor, action, detail = _run_row(pg_url, "run-b")[1][-1]
    assert (actor, action) == ("ops@clinic", "rollback pt_cutover")
    assert detail["outside_changes_undone"] == {"pt.patient": 1, "pt.appointment": 1}
    assert not any(c in json.dumps(detail) for c in canaries["run-a"] + canaries["run-b"])

    # a first load's snapshot is empty: every row is new, and only the run's own patients' rows are its
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO pt.patient SELECT (json_populate_record(p, json_build_object("
            "'id', '00000000-0000-4000-8000-000000000002', 'mrn', 'NEW-2'))).* FROM pt.patient p LIMIT 1"
        )
    with pytest.raises(TerminalError, match=r"refused: 1 rows .* \(pt\.patient 1\)"):
        rollback_run(pg_url, "run-a", actor="ops@clinic")


def test_refusals(pg_url: str) -> None:
    with pytest.raises(TerminalError, match="unknown run 'run-x'"):
        check_rollback(pg_url, "run-x")  # not even a cutover schema yet
    with pytest.raises(TerminalError, match="unknown run 'run-x'"):
        rollback_run(pg_url, "run-x", actor="ops")
    pipeline.prepare_target(pg_url)
    pipeline.begin_run(pg_url, "run-a", "pt_cutover", {}, "tester")
    with pytest.raises(TerminalError, match="unknown run 'run-x'"):
        rollback_run(pg_url, "run-x", actor="ops")
    schema = snapshot_schema("run-a")
    with pytest.raises(TerminalError, match=f"run 'run-a' has no rollback snapshot \\(schema {schema}\\)"):
        rollback_run(pg_url, "run-a", actor="ops")
    with pytest.raises(TerminalError, match="confirmation does not match"):
        check_rollback(pg_url, "run-a", confirm="run-b")
    snapshot_target(pg_url, "run-a")
    assert check_rollback(pg_url, "run-a", confirm="run-a")["loaded_batches"] == 0
    state, audit = _run_row(pg_url, "run-a")
    assert state == "running"
    assert [a for _, a, _ in audit] == ["start pt_cutover", "snapshot target"]


@pytest.mark.slow
def test_cutover_run_pt_rollback_after_pt_cutover(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = simulate(f"sqlite:///{home / 'legacy.db'}", patients=200, seed=63)
    evidence_of(run_cutover(["run", "pt_backup"], home))
    cutover = run_cutover(["run", "pt_cutover"], home)
    evidence_of(cutover)
    run_id = re.findall(r"^run (\S+): success$", cutover.stdout, re.M)[-1]

    from cutover.embedded import embedded_postgres_url

    monkeypatch.setenv("CUTOVER_HOME", str(home))
    target = embedded_postgres_url()
    assert _state(target)["pt.patient"][0] > 100
    if snapshot_target(target, run_id)["kept"] is False:
        # pt_cutover does not take the snapshot before loading yet: stand in for the one it would
        # have taken of the empty target it found
        schema = snapshot_schema(run_id)
        with psycopg.connect(target) as conn:
            for s, t in snapshot_tables():
                conn.execute(f'DELETE FROM "{schema}".{s}__{t}')
            conn.execute(
                f'UPDATE "{schema}".snapshot SET tables = (SELECT jsonb_object_agg(k,'
                " jsonb_build_object('rows', 0, 'checksum', '0:0')) FROM jsonb_object_keys(tables) k)"
            )

    conf = json.dumps({"run_id": run_id, "confirm": run_id})
    result = run_cutover(["run", "pt_rollback", "--conf", conf], home)
    folder = evidence_of(result)
    assert all(rows == 0 for rows, _ in _state(target).values())
    state, audit = _run_row(target, run_id)
    assert state == "rolled_back"
    actor, action, detail = audit[-1]
    # the person at the terminal (cutover run: the OS user), not the "dag_test" Airflow names every test run's user
    assert (actor, action) == (getpass.getuser(), "rollback pt_cutover")
    assert detail["rows_before"]["pt.patient"] > 100
    evidence = json.loads((folder / "rollback.json").read_text())
    assert evidence["verified"]["matched"] is True
    assert evidence["restored"]["run_id"] == run_id
    output = everything_of(result) + json.dumps(evidence) + json.dumps(detail)
    assert not any(c in output for c in manifest["canaries"] if len(c) >= 6)
