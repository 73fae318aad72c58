"""Clinical rows entered twice: the later legacy row migrates flagged ``duplicate_entry``, the first clean.

The golden files map one legacy row at a time; a repeat needs two, so these cases map small batches.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from cutover.legacy.schema import LEGACY_TABLES
from cutover.legacy.source import arrow_schema
from cutover.mapping.engine import map_batch
from cutover.mapping.specs import SPECS

AS_OF = dt.date(2026, 11, 27)


def _map(table: str, rows: list[dict[str, Any]]) -> dict[str, tuple[str | None, set[str]]]:
    """legacy id → (reason, flags over its target rows)."""
    legacy = LEGACY_TABLES[table]
    batch = pa.table(
        {name: [row.get(name) for row in rows] for name in legacy.column_names},
        schema=arrow_schema(legacy.columns),
    )
    out: dict[str, tuple[str | None, set[str]]] = {}
    for row in map_batch(SPECS[table], batch, as_of=AS_OF).to_pylist():
        flags = {f for f in (row["flags"] or "").split(",") if f}
        reason, seen = out.get(row["legacy_id"], (row["reason"], set()))
        out[row["legacy_id"]] = (reason, seen | flags)
    return out


def _procedure(proc_id: int, **values: Any) -> dict[str, Any]:
    row = {"proc_id": proc_id, "visit_id": 3, "cpt_text": "97110x2, 97140", "minutes": "38", "units": "3"}
    return {**row, "modifiers": "GP", **values}


def _flagged(out: dict[str, tuple[str | None, set[str]]]) -> set[str]:
    return {legacy_id for legacy_id, (_, flags) in out.items() if "duplicate_entry" in flags}


@pytest.mark.parametrize("reverse", [False, True], ids=["in id order", "later row first in the batch"])
def test_procedure_row_entered_twice_flags_the_later_legacy_id(reverse: bool) -> None:
    rows = [
        _procedure(1),
        _procedure(2, visit_id=4),  # same lines, another visit: not a repeat
        _procedure(7, cpt_text="97110 X 2 ; 97140"),  # the same lines written otherwise: a repeat of 1
        _procedure(8, minutes="45"),  # other minutes: not a repeat
        _procedure(9, modifiers="GP,59"),  # other modifiers: not a repeat
        _procedure(10, cpt_text="97140, 97110x2"),  # other order of codes: other lines, not a repeat
        _procedure(12),  # a third entry: a repeat as well
    ]
    out = _map("procedures", rows[::-1] if reverse else rows)
    assert _flagged(out) == {"7", "12"}
    assert all(reason is None for reason, _ in out.values())


def test_procedure_repeat_needs_every_line_equal() -> None:
    out = _map("procedures", [_procedure(1), _procedure(2, cpt_text="97110x2")])
    assert _flagged(out) == set()


def test_procedure_rows_without_a_visit_are_not_repeats() -> None:
    out = _map("procedures", [_procedure(1, visit_id=None), _procedure(2, visit_id=None)])
    assert _flagged(out) == set()  # orphans the loader rejects, not entries of one visit


def _charge(charge_id: int, **values: Any) -> dict[str, Any]:
    row = {"charge_id": charge_id, "visit_id": 3, "pat_id": 4, "cpt_code": "97110", "amount": "125.00"}
    return {**row, "posted": "2024-01-10", **values}


def test_charge_entered_twice_flags_the_later_legacy_id() -> None:
    out = _map(
        "charges",
        [
            _charge(5, amount="$125"),  # the same amount written otherwise: a repeat of 2
            _charge(2),
            _charge(3, posted="2024-01-11"),  # posted another day: not a repeat
            _charge(4, cpt_code="97140"),  # another code: not a repeat
            _charge(6, visit_id=9),  # another visit: not a repeat
            _charge(7, amount="125.01"),  # another amount: not a repeat
        ],
    )
    assert _flagged(out) == {"5"}
    assert all(reason is None for reason, _ in out.values())


def test_checks_say_they_see_one_mapping_batch() -> None:
    for table in ("procedures", "charges"):
        (check,) = [c for c in SPECS[table].checks if c.code == "duplicate_entry"]
        assert check.action == "flag"
        assert "one mapping batch" in check.title
