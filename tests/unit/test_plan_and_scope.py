"""The cutover plan (waves, window, timetable), the scopes built from it, and the trial's extrapolation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from cutover.errors import ConfigError
from cutover.pipeline import LateStart, NoWaveToday, choose_scope
from cutover.plan import load_plan, parse_plan
from cutover.sample import estimate
from cutover.scope import Scope

WAVES = [
    {"name": "w1", "go_live": "2026-12-04", "clinics": [1]},
    {"name": "w2", "go_live": "2026-12-11", "clinics": [2, 3]},
    {"name": "w3", "go_live": "2026-12-18", "clinics": "remaining"},
]


def test_the_repository_plan_is_valid() -> None:
    plan = load_plan()
    assert plan.cron == "0 18 * * 5"
    assert plan.window_hours == 60.0
    assert plan.waves[-1].clinics == "remaining"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"window": {"start": {"weekday": "fryday"}}}, "weekday name"),
        ({"window": {"end": {"time": "25:00"}}}, "HH:MM"),
        ({"waves": [{"name": "a", "go_live": "2026-12-05", "clinics": [1]}]}, "goes live on Saturday"),
        ({"waves": [{"name": "a", "clinics": [1]}]}, "needs go_live"),
        (
            {"waves": [{"name": "a", "go_live": "2026-12-04", "clinics": "remaining"}, WAVES[1]]},
            "only the last",
        ),
        ({"waves": [WAVES[0], {**WAVES[1], "clinics": [1]}]}, "no earlier wave names"),
        ({"waves": [WAVES[1], WAVES[0]]}, "in order"),
    ],
)
def test_plan_mistakes_name_the_field(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_plan(raw)


def test_window_and_waves_in_the_plans_timezone() -> None:
    plan = parse_plan({"timezone": "America/New_York", "waves": WAVES})
    # 2026-12-04 23:30 UTC is Friday 18:30 in New York: inside the window that opened at 18:00
    start, end = plan.next_window(datetime(2026, 12, 4, 23, 30, tzinfo=UTC))
    assert (start.isoformat(), end.isoformat()) == ("2026-12-04T18:00:00-05:00", "2026-12-07T06:00:00-05:00")
    # after Monday 06:00 the next window is the next Friday's
    start, _ = plan.next_window(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
    assert start.date() == date(2026, 12, 11)
    assert plan.wave_on(date(2026, 12, 11)).name == "w2"
    assert plan.earlier(plan.wave("w3")) == plan.waves[:2]
    with pytest.raises(ConfigError, match="no wave 'w9'"):
        plan.wave("w9")


def test_choose_scope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "timezone: America/New_York\nwaves:\n"
        "  - {name: w1, go_live: 2026-12-04, clinics: [1]}\n"
        "  - {name: w2, go_live: 2026-12-11, clinics: remaining}\n"
    )
    monkeypatch.setenv("CUTOVER_PLAN", str(path))
    friday = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)  # 18:00 in New York, the timetable's tick
    assert choose_scope(mode="big_bang", wave="", scheduled=False, run_date=friday)["mode"] == "big_bang"
    assert choose_scope(mode="big_bang", wave="", scheduled=True, run_date=friday)["wave"] == "w1"
    assert choose_scope(mode="phased", wave="w2", scheduled=False, run_date=friday)["wave"] == "w2"
    with pytest.raises(NoWaveToday, match=r"no wave goes live on 2026-11-27; next: w1 on 2026-12-04"):
        choose_scope(mode="phased", wave="", scheduled=True, run_date=datetime(2026, 11, 27, 23, tzinfo=UTC))
    # on time (within the plan's 30 minutes), or triggered by hand however late: it runs
    on_time = friday + timedelta(minutes=30)
    assert choose_scope(mode="", wave="", scheduled=True, run_date=friday, started=on_time)["wave"] == "w1"
    sunday = friday + timedelta(days=2)
    assert (
        choose_scope(mode="phased", wave="w1", scheduled=False, run_date=friday, started=sunday)["wave"]
        == "w1"
    )
    # scheduled and started long after its window opened (unpaused on Sunday): refused, before any wave is read
    with pytest.raises(
        LateStart, match=r"window opening Fri 2026-12-04 18:00 America/New_York started 2 days"
    ):
        choose_scope(mode="", wave="", scheduled=True, run_date=friday, started=sunday)
    path.write_text(path.read_text() + "window: {late_start_minutes: 31}\n")
    with pytest.raises(LateStart, match="31 min"):
        choose_scope(
            mode="", wave="", scheduled=True, run_date=friday, started=friday + timedelta(minutes=32)
        )


def test_the_late_start_tolerance_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"window\.late_start_minutes must be minutes"):
        parse_plan({"window": {"late_start_minutes": "soon"}})
    with pytest.raises(ConfigError, match=r"window\.late_start_minutes"):
        parse_plan({"window": {"late_start_minutes": -5}})
    assert parse_plan({}).late_start_minutes == 30


def _batch(**cols: list) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(cols)


def test_scope_keeps_rows_by_their_patient_key_and_high_water() -> None:
    ids = {"patients": pa.array([1, 2]), "cases": pa.array([10]), "visits": pa.array([100])}
    wave = Scope("wave", ids, label="w1")
    rest = Scope("wave", ids, complement=True, label="w2")
    visits = _batch(
        visit_id=[100, 101, 102], pat_id=[1, 3, None], modified=["2026-01-01", "2026-02-01", None]
    )
    assert wave.keep("visits", visits).column("visit_id").to_pylist() == [100]
    assert rest.keep("visits", visits).column("visit_id").to_pylist() == [
        101,
        102,
    ]  # orphans go with the rest
    procedures = _batch(proc_id=[1, 2], visit_id=[100, 200])
    assert wave.keep("procedures", procedures).column("proc_id").to_pylist() == [1]
    clinics = _batch(clinic_id=[1, 2, 3])
    assert wave.keep("clinics", clinics).num_rows == 3  # reference data moves whole
    late = Scope("wave", ids, label="w1", since={"visits": "2026-01-15"})
    delta = Scope("delta", label="delta", members=(late, Scope("wave", {**ids, "patients": pa.array([3])})))
    assert late.keep("visits", visits).num_rows == 0
    assert delta.keep("visits", visits).column("visit_id").to_pylist() == [101]


def test_scope_round_trips_through_the_store(tmp_path: Path) -> None:
    from cutover.staging.store import open_store

    store = open_store(f"file://{tmp_path}")
    ids = {"patients": pa.array([1, 2]), "cases": pa.array([10]), "visits": pa.array([], pa.int64())}
    scope = Scope(
        "delta", label="delta w1", members=(Scope("wave", ids, label="w1", since={"visits": "2026-01-15"}),)
    )
    scope.save(store, "runs/x")
    back = Scope.load(store, "runs/x")
    assert back.label == "delta w1"
    assert back.members[0].since == {"visits": "2026-01-15"}
    assert back.members[0].counts() == {"patients": 2, "cases": 1, "visits": 0}


def test_estimate_fits_a_fixed_cost_per_table_and_a_cost_per_row() -> None:
    # each stage: 0.5 s per table plus 1 ms per row, measured exactly on the sample
    sample = {
        stage: {
            "clinics": {"rows": 3, "seconds": 0.503},
            "visits": {"rows": 100, "seconds": 0.6},
            "notes": {"rows": 500, "seconds": 1.0},
        }
        for stage in ("extract", "map", "load")
    }
    full = {"clinics": 3, "visits": 1000, "notes": 5000}
    result = estimate(sample, full, window_hours=60, safety_margin=1.5, gates_passed=True)
    assert result["estimated_seconds"]["map"] == pytest.approx(3 * 0.5 + 0.001 * 6003)
    assert result["estimated_seconds"]["extract"] == pytest.approx(0.503 + 0.6 + 1.0)  # a full scan already
    assert result["estimated_seconds"]["total"] == pytest.approx(2.103 + 2 * (1.5 + 6.003))
    margin = 1.5 * result["estimated_seconds"]["total"]
    assert result["estimated_with_margin_seconds"] == pytest.approx(margin, abs=1e-3)
    assert result["decision"] == "go"
    tight = estimate(sample, full, window_hours=0.001, safety_margin=1.5, gates_passed=False)
    assert tight["decision"] == "no-go"
    assert len(tight["reasons"]) == 2
    # a table over its reject limit for certain on the sample: the trial says no-go, and why
    from cutover.policy import RejectPolicy, sample_breaches

    noisy = RejectPolicy("patients", 3, 1, 0.05).as_dict()  # 1 of 3: 33%, but only 1.8% for certain
    certain = RejectPolicy("visits", 1000, 300, 0.05).as_dict()  # 30%, at least 27%
    breaches = sample_breaches({"patients": noisy, "visits": certain})
    assert [b.split(":")[0] for b in breaches] == ["visits"]
    over = estimate(
        sample, full, window_hours=60, safety_margin=1.5, gates_passed=True, reject_breaches=breaches
    )
    assert over["decision"] == "no-go"
    assert over["reasons"] == [f"reject policy: {breaches[0]}"]


def test_one_table_slowed_by_a_busy_moment_does_not_tilt_the_estimate() -> None:
    # 0.5 s per table plus 1 ms per row; the largest table of the sample took 3 s longer (a checkpoint)
    rows = {"clinics": 3, "payers": 8, "cases": 40, "visits": 100, "charges": 200, "notes": 500}
    sample = {
        stage: {
            t: {"rows": n, "seconds": 0.5 + 0.001 * n + (3.0 if t == "notes" else 0.0)}
            for t, n in rows.items()
        }
        for stage in ("extract", "map")
    }
    full = {t: 10 * n for t, n in rows.items()}
    result = estimate(sample, full, window_hours=60, safety_margin=1.5, gates_passed=True)
    # the true cost: 6 tables x 0.5 s + 1 ms x 8,510 rows, plus the one-off 3 s the sample really spent
    # (carried once, not multiplied); a least-squares line, tilted by the slow table, said 60.0 s
    assert result["estimated_seconds"]["map"] == pytest.approx(6 * 0.5 + 0.001 * 8510 + 3.0, rel=0.01)
    # and the full run is never estimated below what its sample took
    assert result["estimated_seconds"]["map"] >= sum(t["seconds"] for t in sample["map"].values())


def test_the_estimate_scales_each_gates_tables_and_the_reconciliation_but_not_a_gates_set_up(
    tmp_path: Path,
) -> None:
    import json

    from cutover.sample import validation_rows, validation_timings

    def gate(name: str, tables: dict[str, tuple[int, float]], own: float) -> None:
        results = [{"table": t, "element_count": n, "expectation": "e"} for t, (n, _) in tables.items()]
        spent = {t: s for t, (_, s) in tables.items()}
        report = {
            "gate": name,
            "results": results,
            "table_seconds": spent,
            "seconds": own + sum(spent.values()),
        }
        (tmp_path / "gates").mkdir(exist_ok=True)
        (tmp_path / "gates" / f"{name}.json").write_text(json.dumps(report))

    # 0.5 s per table and 1 ms per row, as the other stages; each gate 3 s of its own
    gate("extract", {"visits": (100, 0.6), "documents": (500, 1.0)}, own=3.0)
    gate("mapped", {"visits": (100, 0.6), "documents": (500, 1.0)}, own=3.0)
    gate("target", {"visit": (100, 0.6)}, own=3.0)
    legacy_rows = {"visits": {"legacy_rows": 100}, "documents": {"legacy_rows": 500}}
    (tmp_path / "reconciliation.json").write_text(
        json.dumps({"tables": legacy_rows, "seconds": 1.6, "phases": {"legacy_recheck": 0.5}})
    )

    validate = validation_timings(tmp_path)
    assert validate["target:visit"] == {"rows": 100, "seconds": 0.6}
    assert validate["mapped:"] == {"rows": 0, "seconds": 3.0}
    assert validate["reconciliation"] == {"rows": 600, "seconds": 1.1}
    assert validate["reconciliation:legacy_recheck"] == {"rows": 0, "seconds": 0.5}  # a fixed sample
    legacy = {"visits": 1000, "documents": 5000}
    full = validation_rows(validate, legacy)
    assert full["target:visit"] == 1000  # the legacy tables loaded into pt.visit
    assert full["reconciliation"] == 6000
    assert full["extract:"] == 0
    assert full["reconciliation:legacy_recheck"] == 0  # not scaled with the tables

    stage = {"visits": {"rows": 100, "seconds": 0.6}, "documents": {"rows": 500, "seconds": 1.0}}
    sample = {"extract": stage, "map": stage, "load": stage, "validate": validate}
    result = estimate(sample, legacy | full, window_hours=60, safety_margin=1.5, gates_passed=True)
    # 3 gates' own 9 s and the recheck's 0.5 s as they were; 6 entries at 0.5 s + 1 ms × (1000 + 5000 +
    # 1000 + 5000 + 1000 + 6000)
    assert result["estimated_seconds"]["validate"] == pytest.approx(9 + 0.5 + 6 * 0.5 + 0.001 * 19000)
    assert result["full_rows"] == 6000


def _visits(rows: list[dict]) -> pa.RecordBatch:
    from cutover.legacy.schema import LEGACY_TABLES
    from cutover.legacy.source import arrow_schema

    schema = arrow_schema(LEGACY_TABLES["visits"].columns)
    return pa.RecordBatch.from_pylist(rows, schema=schema)


def test_a_delta_takes_rows_that_differ_from_their_snapshot_even_without_a_newer_modified(
    tmp_path: Path,
) -> None:
    """What the wave's runs extracted is the snapshot: an edit the legacy system did not stamp is caught."""
    from cutover.snapshot import Snapshot
    from cutover.staging.parquet import write_batches
    from cutover.staging.store import open_store

    store = open_store(f"file://{tmp_path}")
    base = {"case_id": 10, "pat_id": 1, "visit_date": "2026-01-05", "modified": "2026-01-05 10:00:00"}
    cutover = [{**base, "visit_id": v, "subjective": f"note {v}"} for v in (100, 101, 102)]
    synced = [{**cutover[1], "subjective": "amended", "modified": "2026-01-20 09:00:00"}]
    schema = _visits(cutover).schema
    write_batches(store, "runs/r1/extract/visits", [_visits(cutover)], schema=schema, rows_per_part=2)
    write_batches(store, "runs/r2/extract/visits", [_visits(synced)], schema=schema, rows_per_part=2)

    now = _visits(
        [
            {**cutover[0], "modified": "2026-01-25 08:00:00"},  # stamped: modified after the mark
            synced[0],  # as the last sync left it
            {**cutover[2], "subjective": "fixed by a script"},  # edited, modified untouched
            {**base, "visit_id": 103, "modified": "2026-01-02 00:00:00"},  # new, back-dated
            {**base, "visit_id": 104, "pat_id": 3},  # another wave's patient
        ]
    )
    ids = {"patients": pa.array([1, 2]), "cases": pa.array([10]), "visits": pa.array([100])}
    wave = Scope("wave", ids, label="w1", since={"visits": "2026-01-20 09:00:00"}, runs=("r1", "r2", "gone"))
    delta = Scope("delta", label="delta w1", members=(wave,))

    snapshots = delta.snapshots(store, "visits")
    assert len(snapshots["w1"].keys) == 3
    kept, unstamped = delta.select("visits", now, snapshots)
    assert kept.column("visit_id").to_pylist() == [100, 102, 103]
    assert unstamped == 2
    # without a snapshot only the timestamp tells, as before
    assert delta.keep("visits", now).column("visit_id").to_pylist() == [100]
    assert Snapshot.of_runs(store, ("gone",), "visits") is None
    # patients are taken whole (the matcher must see the wave's people), so they have no snapshot
    assert delta.snapshots(store, "patients") == {}

    delta.save(store, "runs/r3")
    assert Scope.load(store, "runs/r3").members[0].runs == ("r1", "r2", "gone")


def test_a_row_read_back_from_its_staged_part_has_the_same_fingerprint(tmp_path: Path) -> None:
    from cutover.snapshot import fingerprints
    from cutover.staging.parquet import iter_batches, write_batches
    from cutover.staging.store import open_store

    store = open_store(f"file://{tmp_path}")
    rows = [{"visit_id": v, "pat_id": v % 3 or None, "subjective": None if v % 2 else "x"} for v in range(50)]
    batch = _visits(rows)
    write_batches(store, "runs/r/extract/visits", [batch], schema=batch.schema, rows_per_part=20)
    back = pa.Table.from_batches(list(iter_batches(store, "runs/r/extract/visits", max_rows=7)))
    assert fingerprints(back).equals(fingerprints(batch))
    assert len(set(fingerprints(batch).to_pylist())) == 50
    edited = _visits([{**rows[0], "subjective": "y"}, *rows[1:]])
    assert fingerprints(edited).to_pylist()[1:] == fingerprints(batch).to_pylist()[1:]
    assert fingerprints(edited)[0] != fingerprints(batch)[0]
