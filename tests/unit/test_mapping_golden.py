"""Golden cases of the mapping specs (tests/fixtures/mapping/cases.yaml): legacy row in, target row out.

Each case names the target fields it checks, the reject reason (or none) and the flags it expects.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from cutover.legacy.schema import LEGACY_TABLES
from cutover.legacy.source import arrow_schema
from cutover.mapping.engine import map_batch
from cutover.mapping.specs import SPECS

CASES = yaml.safe_load((Path(__file__).parents[1] / "fixtures" / "mapping" / "cases.yaml").read_text())
AS_OF = date(2026, 11, 27)
PARAMS = [
    pytest.param(table, case, id=f"{table}: {case['title']}")
    for table, cases in CASES.items()
    for case in cases
]


def _legacy_row(table: str, values: dict[str, Any]) -> pa.Table:
    legacy = LEGACY_TABLES[table]
    unknown = set(values) - set(legacy.column_names)
    assert not unknown, f"case names columns {table} does not have: {unknown}"
    row = {name: [values.get(name)] for name in legacy.column_names}
    return pa.table(row, schema=arrow_schema(legacy.columns))


@pytest.mark.parametrize(("table", "case"), PARAMS)
def test_golden_case(table: str, case: dict[str, Any]) -> None:
    mapped = map_batch(SPECS[table], _legacy_row(table, case["legacy"]), as_of=AS_OF).to_pylist()
    assert {row["reason"] for row in mapped} == {case.get("reason")}
    expected_rows = case.get("rows") or [case.get("expect", {})]
    if case.get("reason") is None:
        assert len(mapped) == len(expected_rows)
        for got, want in zip(mapped, expected_rows, strict=True):
            for field, value in want.items():
                assert got[field] == value, field
    flags = set().union(*({*(row["flags"] or "").split(",")} - {""} for row in mapped))
    assert set(case.get("flags", [])) <= flags


def test_every_table_has_golden_cases() -> None:
    assert set(CASES) <= set(SPECS)
    missing = set(SPECS) - set(CASES)
    # reference and link tables without mess of their own are covered end to end (tests/integration)
    assert missing <= {"ref_physicians", "referrals", "authorizations", "appointments"}, missing
