"""The loader against a real PostgreSQL: parents resolved through the crosswalk, rejects recorded,
one outcome per legacy row, idempotent re-runs and resume from the batch ledger."""

from __future__ import annotations

from datetime import date

import psycopg
import pyarrow as pa
import pytest

from cutover.ids import legacy_uuid
from cutover.loading import load_table
from cutover.loading.bulk import defer_constraints, restore_constraints
from cutover.mapping import rules as r
from cutover.mapping.engine import Field, Ref, TableSpec, map_batch
from cutover.staging.parquet import write_batches
from cutover.staging.store import LocalStore
from cutover.target import upgrade

CLINICS = TableSpec(
    "clinics",
    "clinic",
    "clinic_id",
    fields=(
        Field("name", "text", ("clinic_name",), r.text(), required=True),
        Field("timezone", "text", ("tz",), r.text(), required=True),
    ),
)
PROVIDERS = TableSpec(
    "providers",
    "provider",
    "provider_id",
    fields=(
        Field("family_name", "text", ("prov_name",), r.text()),
        Field("credential", "text", ("credential",), r.text()),
        Field("npi", "text", ("npi",), r.text()),
        Field("active", "boolean", ("active",), r.flag_yn()),
    ),
    refs=(Ref("clinic_id", "clinic_id", "clinics"),),
)


def _stage(store: LocalStore, prefix: str, spec: TableSpec, table: pa.Table, rows_per_part: int = 2) -> None:
    mapped = map_batch(spec, table, as_of=date(2026, 11, 27))
    write_batches(store, prefix, mapped.to_batches(), schema=spec.staged_schema, rows_per_part=rows_per_part)


@pytest.fixture
def target(pg_url: str) -> str:
    upgrade(pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO migration.run (run_id, dag_id, state) VALUES ('r1', 'test', 'running')")
    return pg_url


@pytest.fixture
def staged(tmp_path) -> LocalStore:
    store = LocalStore(tmp_path / "stage")
    clinics = pa.table(
        {
            "clinic_id": pa.array([1, 2, 3], pa.int64()),
            "clinic_name": ["North", None, "South"],
            "tz": ["America/New_York"] * 3,
        }
    )
    providers = pa.table(
        {
            "provider_id": pa.array([10, 11, 12, 13, 14], pa.int64()),
            "clinic_id": pa.array([1, 2, 99, None, 3], pa.int64()),
            "prov_name": ["Ames", "Bell", "Cole", "Dunn", "Eady"],
            "credential": ["PT", "PTA", "DPT", "PT", "PT"],
            "npi": ["1234567893"] * 5,
            "active": ["Y", "N", "Y", "Y", "Y"],
        }
    )
    _stage(store, "m/clinics", CLINICS, clinics)
    _stage(store, "m/providers", PROVIDERS, providers)
    return store


def _outcomes(url: str) -> dict[tuple[str, str], str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT legacy_table, legacy_id, coalesce(reason_code, outcome) FROM migration.outcome"
        ).fetchall()
    return {(t, i): o for t, i, o in rows}


def _snapshot(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT 'clinic', id::text, name FROM pt.clinic UNION ALL"
            " SELECT 'provider', id::text, clinic_id::text FROM pt.provider ORDER BY 1, 2"
        ).fetchall()


def test_parents_resolve_and_every_row_has_one_outcome(target: str, staged: LocalStore) -> None:
    clinics = load_table(target, staged, CLINICS, "m/clinics", run_id="r1")
    providers = load_table(target, staged, PROVIDERS, "m/providers", run_id="r1")
    assert (clinics.rows_in, clinics.migrated, clinics.rejected) == (3, 2, 1)
    assert (providers.rows_in, providers.migrated, providers.rejected) == (5, 2, 3)
    assert _outcomes(target) == {
        ("clinics", "1"): "migrated",
        ("clinics", "2"): "name_missing",
        ("clinics", "3"): "migrated",
        ("providers", "10"): "migrated",
        ("providers", "11"): "parent_rejected",
        ("providers", "12"): "orphan",
        ("providers", "13"): "ref_missing",
        ("providers", "14"): "migrated",
    }
    with psycopg.connect(target) as conn:
        (clinic_of_10,) = conn.execute(
            "SELECT clinic_id FROM pt.provider WHERE id = %s", (legacy_uuid("legacy", "providers", 10),)
        ).fetchone()
    assert clinic_of_10 == legacy_uuid("legacy", "clinics", 1)


def test_rerun_is_idempotent_and_resumes_from_the_ledger(target: str, staged: LocalStore) -> None:
    load_table(target, staged, CLINICS, "m/clinics", run_id="r1")
    first = load_table(target, staged, PROVIDERS, "m/providers", run_id="r1")
    before = _snapshot(target)
    again = load_table(target, staged, PROVIDERS, "m/providers", run_id="r1")
    assert again.resumed_batches == again.batches == first.batches == 3
    assert (again.migrated, again.rejected) == (first.migrated, first.rejected)
    # A second clean run (a new run id) redoes every batch and writes the same target.
    with psycopg.connect(target) as conn:
        conn.execute("INSERT INTO migration.run (run_id, dag_id, state) VALUES ('r2', 'test', 'running')")
    load_table(target, staged, CLINICS, "m/clinics", run_id="r2")
    second = load_table(target, staged, PROVIDERS, "m/providers", run_id="r2")
    assert second.resumed_batches == 0
    assert _snapshot(target) == before


def test_a_killed_batch_leaves_no_trace_and_resumes(target: str, staged: LocalStore, monkeypatch) -> None:
    import cutover.loading.load as load_module

    load_table(target, staged, CLINICS, "m/clinics", run_id="r1")
    real = load_module.merge_part
    calls = {"n": 0}

    def dies_on_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(load_module, "merge_part", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        load_table(target, staged, PROVIDERS, "m/providers", run_id="r1")
    monkeypatch.setattr(load_module, "merge_part", real)
    with psycopg.connect(target) as conn:
        (loaded,) = conn.execute(
            "SELECT count(*) FROM migration.batch WHERE legacy_table = 'providers' AND state = 'loaded'"
        ).fetchone()
    assert loaded == 1
    resumed = load_table(target, staged, PROVIDERS, "m/providers", run_id="r1")
    assert resumed.resumed_batches == 1
    assert (resumed.migrated, resumed.rejected) == (2, 3)


@pytest.mark.parametrize("first_load", [False, True], ids=["merge", "first_load"])
def test_a_row_the_target_refuses_is_rejected_alone(target: str, tmp_path, first_load: bool) -> None:
    """Also on a first load, whose COPY-only write the refused rows send back to the general merge."""
    spec = TableSpec(
        "clinics",
        "clinic",
        "clinic_id",
        fields=(
            Field("name", "text", ("clinic_name",), r.text(), required=True),
            Field("state", "text", ("state",), r.upper()),
            Field("timezone", "text", ("tz",), r.text(), required=True),
        ),
    )
    store = LocalStore(tmp_path / "stage")
    rows = pa.table(
        {
            "clinic_id": pa.array(range(1, 8), pa.int64()),
            "clinic_name": [f"C{i}" for i in range(1, 8)],
            "state": ["MA", "NY", "CT", "MASS", "NJ", "RI", "VT"],
            "tz": ["America/New_York", "America/New_York", "Mars/Olympus", *["America/New_York"] * 4],
        }
    )
    _stage(store, "m/clinics", spec, rows, rows_per_part=10)
    if first_load:
        assert defer_constraints(target, "r1")["deferred"]
    result = load_table(target, store, spec, "m/clinics", run_id="r1")
    if first_load:
        restore_constraints(target, "r1")
    assert (result.rows_in, result.migrated, result.rejected) == (7, 5, 2)
    assert result.direct_batches == (1 if first_load else 0)  # the good rows' halves went by COPY alone
    with psycopg.connect(target) as conn:
        refused = conn.execute(
            "SELECT legacy_id, reason_code, detail FROM migration.reject ORDER BY legacy_id::int"
        ).fetchall()
    assert refused == [
        ("3", "target_constraint", "clinic_timezone_iana"),  # a rule only the database knows: refused there
        # a value breaking the column's CHECK (state ~ '^[A-Z]{2}$') never reaches the load: the mapping
        # holds every value to its target column and rejects it, naming the column
        ("4", "state_invalid", "state"),
    ]


def _clinics(ids: list[int], names: dict[int, str] | None = None) -> pa.Table:
    names = names or {}
    return pa.table(
        {
            "clinic_id": pa.array(ids, pa.int64()),
            "clinic_name": [names.get(i, f"C{i}") for i in ids],
            "tz": ["America/New_York"] * len(ids),
        }
    )


def _versions(url: str) -> dict[str, tuple[str, str]]:
    """Per clinic id: (row version, name); an upsert that changes nothing keeps the version."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id::text, xmin::text, name FROM pt.clinic").fetchall()
    return {i: (x, n) for i, x, n in rows}


def _new_run(url: str, run_id: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO migration.run (run_id, dag_id, state) VALUES (%s, 'test', 'running')", (run_id,)
        )


def test_row_ids_are_the_sql_functions_ids(target: str) -> None:
    """Ids hashed in the client for the COPY equal migration.legacy_uuid and cutover.ids."""
    import uuid

    from cutover.loading.load import row_ids

    keys = ["1", "42", "42#2", "ÄÖ-é", "x" * 300, None]
    ids = row_ids("legacy", "procedures", pa.chunked_array([keys[:3], keys[3:]]))
    with psycopg.connect(target) as conn:
        in_sql = [
            conn.execute("SELECT migration.legacy_uuid('legacy', 'procedures', %s::text)", (k,)).fetchone()[0]
            for k in keys
        ]
    ours = [None if v is None else uuid.UUID(bytes=v) for v in ids.to_pylist()]
    assert ours == in_sql
    assert ours[:5] == [legacy_uuid("legacy", "procedures", k) for k in keys[:5]]


def test_a_batch_half_new_half_existing_updates_only_what_changed(target: str, tmp_path) -> None:
    store = LocalStore(tmp_path / "stage")
    _stage(store, "m/a", CLINICS, _clinics([1, 2]), rows_per_part=10)
    load_table(target, store, CLINICS, "m/a", run_id="r1")
    before = _versions(target)
    # one batch: clinic 1 renamed, clinic 2 unchanged, clinics 3 and 4 new
    _stage(store, "m/b", CLINICS, _clinics([1, 2, 3, 4], {1: "Renamed"}), rows_per_part=10)
    _new_run(target, "r2")
    result = load_table(target, store, CLINICS, "m/b", run_id="r2")
    after = _versions(target)
    assert (result.batches, result.rows_in, result.migrated, result.rejected) == (1, 4, 4, 0)
    one, two = (str(legacy_uuid("legacy", "clinics", i)) for i in (1, 2))
    assert after[two] == before[two]  # not rewritten
    assert after[one][1] == "Renamed"
    assert after[one][0] != before[one][0]
    assert len(after) == 4
    with psycopg.connect(target) as conn:
        crosswalk = conn.execute(
            "SELECT legacy_id, new_id, run_id FROM migration.crosswalk ORDER BY legacy_id"
        ).fetchall()
    assert crosswalk == [(str(i), legacy_uuid("legacy", "clinics", i), "r2") for i in (1, 2, 3, 4)]


def test_a_second_clean_run_rewrites_no_target_row(target: str, staged: LocalStore) -> None:
    load_table(target, staged, CLINICS, "m/clinics", run_id="r1")
    first = _versions(target)
    outcomes = _outcomes(target)
    _new_run(target, "r2")
    again = load_table(target, staged, CLINICS, "m/clinics", run_id="r2")
    assert again.resumed_batches == 0
    assert (again.migrated, again.rejected) == (2, 1)
    assert _versions(target) == first
    assert _outcomes(target) == outcomes


def test_a_refused_row_in_a_batch_of_new_and_existing_rows_is_rejected_alone(target: str, tmp_path) -> None:
    spec = TableSpec(
        "clinics",
        "clinic",
        "clinic_id",
        fields=(
            Field("name", "text", ("clinic_name",), r.text(), required=True),
            Field("timezone", "text", ("tz",), r.text(), required=True),
        ),
    )
    store = LocalStore(tmp_path / "stage")
    _stage(store, "m/a", spec, _clinics([1, 2]), rows_per_part=10)
    load_table(target, store, spec, "m/a", run_id="r1")
    before = _versions(target)
    rows = _clinics(list(range(1, 7)))
    rows = rows.set_column(2, "tz", pa.array(["America/New_York"] * 4 + ["Mars/Olympus", "America/New_York"]))
    _stage(store, "m/b", spec, rows, rows_per_part=10)
    _new_run(target, "r2")
    result = load_table(target, store, spec, "m/b", run_id="r2")
    assert (result.rows_in, result.migrated, result.rejected) == (6, 5, 1)
    outcomes = _outcomes(target)
    assert outcomes.pop(("clinics", "5")) == "target_constraint"  # the refused row alone
    assert set(outcomes.values()) == {"migrated"}
    assert len(outcomes) == 5
    after = _versions(target)
    assert {k: after[k] for k in before} == before
    assert str(legacy_uuid("legacy", "clinics", 5)) not in after
