"""Reconciliation's segment checksums and bisection, on synthetic Arrow charts (no database)."""

from __future__ import annotations

import hashlib
import itertools
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from cutover.reconcile.chart import COMPONENTS, KINDS, LegacyCharts, finish, h32, hash_values
from cutover.reconcile.segments import KEY_MAX, KEY_MIN, ROOT, ArrowCharts, Segment, bisect, differing, edges
from cutover.staging.parquet import write_batches
from cutover.staging.store import LocalStore


def _charts(n: int, seed: int = 7) -> pa.Table:
    """n patients with random keys spread over the whole signed 64-bit space, random chart integers."""
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(KEY_MIN, KEY_MAX, size=n, dtype=np.int64))
    columns = {c: rng.integers(0, 10_000, size=len(keys), dtype=np.int64) for c in COMPONENTS}
    return finish(pa.table({"key": keys, **columns}))


def _with(table: pa.Table, row: int, **changes: int) -> pa.Table:
    """A copy of the charts with some components of one row changed, digest recomputed."""
    data = {c: table.column(c).to_numpy().copy() for c in ("key", *COMPONENTS)}
    for column, value in changes.items():
        data[column][row] = value
    return finish(pa.table(data))


class Counting(ArrowCharts):
    """ArrowCharts that counts what a side is asked for, to show bisection stays away from equal data."""

    def __init__(self, table: pa.Table) -> None:
        super().__init__(table)
        self.rows_handed_over = 0

    def charts(self, parts):  # type: ignore[no-untyped-def]
        rows = super().charts(parts)
        self.rows_handed_over += rows.num_rows
        return rows


def test_split_covers_the_segment_exactly_without_overlap() -> None:
    for segment, fanout in ((ROOT, 32), (Segment(-5, 1_000_003), 7), (Segment(10, 12), 32)):
        parts = segment.split(fanout)
        assert parts[0].lo == segment.lo
        assert parts[-1].hi == segment.hi
        assert all(a.hi + 1 == b.lo for a, b in itertools.pairwise(parts))
        assert len(parts) == min(fanout, segment.hi - segment.lo + 1)


def test_edges_give_each_segment_the_bucket_numpy_and_postgres_compute() -> None:
    parts = [Segment(-100, -1), Segment(0, 99), Segment(500, KEY_MAX)]
    bounds, buckets = edges(parts)
    keys = np.array([-100, -1, 0, 99, 500, KEY_MAX], dtype=np.int64)
    found = np.searchsorted(np.array(bounds, dtype=np.int64), keys, side="right")
    assert found.tolist() == [buckets[0], buckets[0], buckets[1], buckets[1], buckets[2], buckets[2]]


def test_arrow_checksums_equal_a_plain_sum_per_segment() -> None:
    table = _charts(5_000)
    side = ArrowCharts(table)
    parts = ROOT.split(16)
    keys = table.column("key").to_numpy()
    d1, d2 = table.column("d1").to_numpy(), table.column("d2").to_numpy()
    expected = []
    for p in parts:
        inside = (keys >= p.lo) & (keys <= p.hi)
        expected.append((int(inside.sum()), int(d1[inside].sum()), int(d2[inside].sum())))
    assert side.checksums(parts) == expected
    assert sum(n for n, _, _ in expected) == table.num_rows


def test_identical_sides_need_one_level_and_hand_over_no_chart() -> None:
    table = _charts(20_000)
    ours, theirs = Counting(table), Counting(table)
    a, b, stats = bisect(ours, theirs)
    assert (a.num_rows, b.num_rows, stats.levels, stats.leaves) == (0, 0, 1, 0)
    assert ours.rows_handed_over == theirs.rows_handed_over == 0


def test_bisection_finds_the_changed_patients_and_fetches_only_their_leaves() -> None:
    table = _charts(100_000)
    changed = table
    rows = [17, 50_000, 99_000]
    changed = _with(changed, rows[0], units_h=-1)
    changed = _with(changed, rows[1], charges=0)
    changed = _with(changed, rows[2], visits_n=999_999)
    ours, theirs = Counting(table), Counting(changed)
    a, b, stats = bisect(ours, theirs, fanout=32, leaf_rows=64)
    assert stats.levels >= 2
    assert theirs.rows_handed_over <= 3 * 64  # three leaves at most, not 100,000 charts
    found = differing(a, b, KINDS)
    keys = table.column("key").to_pylist()
    assert found == {
        "chart_visits": [keys[rows[2]]],
        "chart_units": [keys[rows[0]]],
        "chart_charges": [keys[rows[1]]],
        "chart_balance": [keys[rows[1]]],
    }


def test_a_visit_moved_between_two_patients_of_one_segment_does_not_cancel_out() -> None:
    keys = np.array([1, 2], dtype=np.int64)
    zero = {c: np.zeros(2, dtype=np.int64) for c in COMPONENTS}
    ours = finish(
        pa.table({"key": keys, **zero, "visits_n": np.array([3, 5]), "visits_h": np.array([30, 50])})
    )
    theirs = finish(
        pa.table({"key": keys, **zero, "visits_n": np.array([4, 4]), "visits_h": np.array([40, 40])})
    )
    a, b, _ = bisect(ArrowCharts(ours), ArrowCharts(theirs), root=Segment(0, 15), fanout=2)
    assert differing(a, b, KINDS) == {"chart_visits": [1, 2]}


def test_a_patient_on_one_side_only_is_found_under_every_kind() -> None:
    table = _charts(1_000)
    a, b, _ = bisect(ArrowCharts(table), ArrowCharts(table.slice(1)))
    missing = table.column("key")[0].as_py()
    assert all(keys == [missing] for keys in differing(a, b, KINDS).values())
    assert set(differing(a, b, KINDS)) == set(KINDS)


def test_hashes_match_their_sql_definition() -> None:
    # ('x' || left(md5(text), 8))::bit(32)::int is the first 4 bytes of MD5, signed
    assert h32("M54.50") == int.from_bytes(hashlib.md5(b"M54.50").digest()[:4], "big", signed=True)
    days = (date(2026, 11, 27) - date(1970, 1, 1)).days
    dates = pa.array([date(2026, 11, 27), date(2026, 11, 27)], pa.date32())
    assert hash_values(dates).to_pylist() == [h32(str(days))] * 2
    assert hash_values(pa.array(["97110", None])).to_pylist() == [h32("97110"), 0]  # sum() skips NULL
    assert hash_values(pa.array(["97110", "97140", "97110"])).to_pylist() == [
        h32("97110"),
        h32("97140"),
        h32("97110"),
    ]


def _stage(store: LocalStore, prefix: str, table: pa.Table) -> None:
    write_batches(store, prefix, table.to_batches(max_chunksize=2), schema=table.schema, rows_per_part=2)


@pytest.fixture
def mapped(tmp_path) -> LocalStore:  # type: ignore[no-untyped-def]
    """A tiny mapped run: patient 2 merged into 1; visit 12 rejected by the load, 13 by the mapping."""
    store = LocalStore(tmp_path)
    s = pa.string()

    def frame(**cols):  # type: ignore[no-untyped-def]
        n = len(next(iter(cols.values())))
        base = {"reason": pa.array([None] * n, s)}
        return pa.table(
            {**{k: (v if isinstance(v, pa.Array) else pa.array(v)) for k, v in cols.items()}, **base}
        )

    _stage(store, "m/cases", frame(legacy_id=["1", "2"], ref_patient_id=["1", "2"]))
    visits = frame(
        legacy_id=["10", "11", "12", "13"],
        visit_date=pa.array([date(2026, 1, d) for d in (5, 6, 7, 8)], pa.date32()),
        ref_patient_id=["1", "2", "2", "1"],
    )
    visits = visits.set_column(
        visits.schema.get_field_index("reason"), "reason", pa.array([None] * 3 + ["x"], s)
    )
    _stage(store, "m/visits", visits)
    _stage(
        store,
        "m/procedures",
        frame(
            legacy_id=["20", "20", "21"],
            cpt_code=["97110", "97140", "97110"],
            units=[2, 1, 3],
            ref_visit_id=["10", "10", "11"],
        ),
    )
    _stage(
        store,
        "m/diagnoses",
        frame(
            legacy_id=["30", "31", "32"],
            icd10_code=["M54.50", "M54.50", "S83.2"],
            ref_episode_id=["1", "2", "2"],
        ),
    )
    _stage(
        store,
        "m/charges",
        frame(
            legacy_id=["40", "41"], amount_cents=pa.array([1000, 2500], pa.int64()), ref_patient_id=["1", "2"]
        ),
    )
    _stage(
        store,
        "m/payments",
        frame(legacy_id=["50"], amount_cents=pa.array([700], pa.int64()), ref_patient_id=["2"]),
    )
    allergies = frame(
        legacy_id=["60", "61", "62", "63"],
        no_known_allergies=[False, True, False, False],
        substance=["latex", None, "Kiwi fruit", "codeine"],
        ref_patient_id=["1", "2", "1", "1"],
    )
    # 62 was rejected (a malformed line, say): still its patient's safety record, so still counted;
    # 63 the legacy system flagged removed: set aside, no longer the chart's
    allergies = allergies.set_column(
        allergies.schema.get_field_index("reason"),
        "reason",
        pa.array([None, None, "x", "removed_in_source"], s),
    )
    _stage(store, "m/allergies", allergies)
    _stage(store, "m/medications", frame(legacy_id=["70"], name=["Warfarin"], ref_patient_id=["2"]))
    _stage(store, "m/precautions", frame(legacy_id=["80"], kind=["fall_risk"], ref_patient_id=["1"]))
    return store


def test_legacy_charts_count_a_merged_duplicate_under_its_survivor(mapped: LocalStore) -> None:
    ids, keys = pa.array(["1", "2"]), pa.array([42, 42], pa.int64())  # both resolve to survivor key 42
    rejected = {"visits": pa.array(["12"])}
    chart = LegacyCharts(mapped, "m", ids, keys, rejected).build().to_pylist()
    assert len(chart) == 1
    row = chart[0]
    visit_days = [(date(2026, 1, d) - date(1970, 1, 1)).days for d in (5, 6)]
    assert row["key"] == 42
    assert (row["visits_n"], row["visits_h"]) == (2, sum(h32(str(d)) for d in visit_days))
    assert (row["units_n"], row["units_h"]) == (6, 2 * h32("97110") + h32("97140") + 3 * h32("97110"))
    assert (row["dx_n"], row["dx_h"]) == (2, h32("M54.50") + h32("S83.2"))  # a set: M54.50 once
    assert (row["charges"], row["payments"], row["balance"]) == (3500, 700, 2800)
    # every legacy safety record of the patient, rejected or not, by table, id and (ASCII upper) content
    said = ["allergy|60|LATEX", "allergy|61|NKA", "allergy|62|KIWI FRUIT", "medication|70|WARFARIN"]
    assert (row["safety_n"], row["safety_h"]) == (5, sum(h32(t) for t in [*said, "precaution|80|FALL_RISK"]))
