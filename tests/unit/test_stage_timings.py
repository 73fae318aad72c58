"""A first load's constraint restore counts in the load stage the sample estimate extrapolates."""

from __future__ import annotations

import pytest

from cutover.sample import StageTiming, _add_restore


def test_a_tables_restore_goes_to_its_legacy_table_and_the_ledgers_by_share_of_rows() -> None:
    load = {
        "visits": StageTiming(rows=300, seconds=3.0),
        "charges": StageTiming(rows=100, seconds=1.0),
    }
    _add_restore(load, {"pt.visit": 0.5, "migration.crosswalk": 0.4, "pt.payment": 9.0})
    assert load["visits"]["seconds"] == pytest.approx(3.0 + 0.5 + 0.3)
    assert load["charges"]["seconds"] == pytest.approx(1.0 + 0.1)
    assert [t["rows"] for t in load.values()] == [300, 100]  # a table not in this load gets nothing


def test_no_restore_changes_nothing() -> None:
    load = {"visits": StageTiming(rows=300, seconds=3.0)}
    _add_restore(load, {})
    assert load == {"visits": StageTiming(rows=300, seconds=3.0)}
