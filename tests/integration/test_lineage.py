"""The loader records every reject's lineage where it decides the cascade, against a real PostgreSQL:
the general merge (SQL) and the first load's COPY (Arrow) write the same parent and root for every
kind of reject, a parent an earlier wave rejected included, and a batch merged again (a resumed or
re-run load) leaves the same lineage.

Batches are built by hand in the staged schema (:attr:`cutover.mapping.engine.TableSpec.staged_schema`)
and merged with :func:`cutover.loading.load.merge_part`, as the load does one staged part: no
simulated clinic, no run (``tests/integration/test_trace.py`` checks a real run's lineage).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pyarrow as pa
import pytest

from cutover import pipeline
from cutover.legacy.profile import mapping_specs
from cutover.loading.load import BatchCounts, merge_part

pytestmark = [pytest.mark.services]

RUN, WAVE_1 = "lineage__2", "lineage__1"

Lineage = tuple[str, str, str | None, str | None, str | None, str | None, str | None]
"""(reason, stage, parent table, parent legacy id, root table, root legacy id, root reason)."""


def _batch(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Staged rows of ``table``: a legacy id, parents by reference column, the mapping's reason and detail;
    every target column NULL (a rejected row is never written to the target)."""
    spec = mapping_specs()[table]
    columns = {name: [row.get(name) for row in rows] for name in spec.staged_schema.names}
    columns["legacy_id"] = columns["row_key"] = [row["legacy_id"] for row in rows]
    for ref in spec.refs:
        columns[f"ref_{ref.column}"] = [row.get(ref.column) for row in rows]
    return pa.table(columns, schema=spec.staged_schema)


def _merge(
    conn: psycopg.Connection[Any], table: str, rows: list[dict[str, Any]], run: str, direct: bool
) -> BatchCounts:
    spec = mapping_specs()[table]
    params = {"sys": "legacy", "table": table, "target": spec.target, "run_id": run}
    with conn.transaction():
        counts = merge_part(conn, spec, _batch(table, rows), params, direct)
    assert counts.direct == direct, f"{table}: the first load's COPY refused the batch"
    return counts


def _lineage(conn: psycopg.Connection[Any], table: str) -> dict[str, Lineage]:
    return {
        legacy_id: tuple(rest)  # type: ignore[misc]
        for legacy_id, *rest in conn.execute(
            "SELECT legacy_id, reason_code, stage, parent_table, parent_legacy_id, root_table, root_legacy_id,"
            " root_reason FROM migration.reject WHERE legacy_table = %s",
            (table,),
        ).fetchall()
    }


def _source(table: str, column: str) -> str:
    """The legacy column of ``table``'s reference ``column``: a reject about that reference names it."""
    return next(ref.source for ref in mapping_specs()[table].refs if ref.column == column)


@pytest.fixture
def wave_1(pg_url: str) -> str:
    """A target an earlier wave left: patient 5 rejected, its case 60 rejected with it; case 61 rejected
    before the ledger kept lineage; case 200 migrated (its crosswalk row)."""
    pipeline.prepare_target(pg_url)
    with psycopg.connect(pg_url) as conn:
        _merge(
            conn,
            "patients",
            [{"legacy_id": "5", "reason": "name_unparseable", "detail": "name"}],
            WAVE_1,
            False,
        )
        _merge(conn, "cases", [{"legacy_id": "60", "patient_id": "5"}], WAVE_1, False)
        conn.execute(
            "INSERT INTO migration.reject (legacy_system, legacy_table, legacy_id, reason_code, stage, run_id)"
            " VALUES ('legacy', 'cases', '61', 'parent_rejected', 'load', 'before-v011')"
        )
        conn.execute(
            "INSERT INTO migration.crosswalk (legacy_system, legacy_table, legacy_id, new_table, new_id, outcome, run_id)"
            " VALUES ('legacy', 'cases', '200', 'episode', migration.legacy_uuid('legacy', 'cases', '200'), 'migrated', %s)",
            (WAVE_1,),
        )
    return pg_url


PATIENTS = [{"legacy_id": "11", "reason": "date_impossible", "detail": "dob"}]
CASES = [
    {"legacy_id": "100", "patient_id": "11"},  # its patient rejected: a cascade
    {"legacy_id": "101", "patient_id": "99"},  # its patient in no legacy table: an orphan
]
VISITS = [
    {"legacy_id": "1000", "episode_id": "100", "patient_id": "11"},  # a cascade of a cascade
    {
        "legacy_id": "1001",
        "episode_id": "101",
        "patient_id": "11",
    },  # a cascade of an orphan: the first reference decides
    {"legacy_id": "1002", "episode_id": "555", "patient_id": "11"},  # an orphan
    {
        "legacy_id": "1003",
        "episode_id": "200",
        "patient_id": "11",
    },  # its episode migrated, its patient rejected
    {"legacy_id": "1006", "episode_id": "60", "patient_id": "5"},  # the earlier wave's cascade
    {"legacy_id": "1007", "episode_id": "61", "patient_id": "5"},  # a parent without recorded lineage
]
MAPPED_AWAY = [  # the mapping's own rejects
    {
        "legacy_id": "1004",
        "patient_id": "11",
        "reason": "ref_missing",
        "detail": _source("visits", "episode_id"),
    },
    {
        "legacy_id": "1005",
        "episode_id": "555",
        "patient_id": "11",
        "reason": "date_impossible",
        "detail": "visit_date",
    },
]
ROOT = ("patients", "11", "date_impossible")
EXPECTED_CASES: dict[str, Lineage] = {
    "100": ("parent_rejected", "load", "patients", "11", *ROOT),
    "101": ("orphan", "load", "patients", "99", "cases", "101", "orphan"),
}
EXPECTED_VISITS: dict[str, Lineage] = {
    "1000": ("parent_rejected", "load", "cases", "100", *ROOT),
    "1001": ("parent_rejected", "load", "cases", "101", "cases", "101", "orphan"),
    "1002": ("orphan", "load", "cases", "555", "visits", "1002", "orphan"),
    "1003": ("parent_rejected", "load", "patients", "11", *ROOT),
    "1004": ("ref_missing", "map", "cases", None, "visits", "1004", "ref_missing"),
    "1005": ("date_impossible", "map", None, None, "visits", "1005", "date_impossible"),
    "1006": ("parent_rejected", "load", "cases", "60", "patients", "5", "name_unparseable"),
    "1007": ("parent_rejected", "load", "cases", "61", None, None, None),
}


@pytest.mark.parametrize("direct", [False, True], ids=["general_merge", "first_load_copy"])
def test_the_loader_records_each_rejects_parent_and_root(wave_1: str, direct: bool) -> None:
    with psycopg.connect(wave_1) as conn:
        assert _lineage(conn, "cases")["60"] == (
            "parent_rejected",
            "load",
            "patients",
            "5",
            "patients",
            "5",
            "name_unparseable",
        )
        _merge(conn, "patients", PATIENTS, RUN, direct)
        _merge(conn, "cases", CASES, RUN, direct)
        counts = _merge(conn, "visits", VISITS + MAPPED_AWAY, RUN, direct)
        assert counts.rejected == len(EXPECTED_VISITS)
        cases = _lineage(conn, "cases")
        assert {k: cases[k] for k in EXPECTED_CASES} == EXPECTED_CASES
        assert _lineage(conn, "visits") == EXPECTED_VISITS
        assert _lineage(conn, "patients")["11"] == ("date_impossible", "map", None, None, *ROOT)


def test_a_batch_merged_again_keeps_its_lineage(wave_1: str) -> None:
    """A resumed or re-run load merges a part again: its rejects are upserted with the same lineage, and
    the first load's COPY, refused by the rows already there, gives way to the general merge."""
    with psycopg.connect(wave_1) as conn:
        _merge(conn, "patients", PATIENTS, RUN, False)
        _merge(conn, "cases", CASES, RUN, False)
        _merge(conn, "visits", VISITS + MAPPED_AWAY, RUN, False)
        spec = mapping_specs()["visits"]
        params = {"sys": "legacy", "table": "visits", "target": spec.target, "run_id": RUN}
        with conn.transaction():
            again = merge_part(conn, spec, _batch("visits", VISITS + MAPPED_AWAY), params, direct=True)
        assert again.direct == 0
        assert _lineage(conn, "visits") == EXPECTED_VISITS


def test_a_reject_that_changes_reason_takes_its_new_lineage(wave_1: str) -> None:
    """A row rejected as a cascade, then by the mapping on a later run: its parent and root are the new
    reason's, never the old one's."""
    with psycopg.connect(wave_1) as conn:
        _merge(conn, "patients", PATIENTS, RUN, False)
        _merge(conn, "cases", CASES[:1], RUN, False)
        _merge(
            conn,
            "cases",
            [{"legacy_id": "100", "patient_id": "11", "reason": "discharge_before_start"}],
            "later",
            False,
        )
        assert _lineage(conn, "cases")["100"] == (
            "discharge_before_start", "map", None, None, "cases", "100", "discharge_before_start",
        )  # fmt: skip
