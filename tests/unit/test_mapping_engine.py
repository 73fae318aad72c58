"""The mapping engine's row-wise combinators, vectorised: the same results as reading each row in Python."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from cutover.mapping.engine import first_of, join_flags

CODES = [None, None, None, "", "npi_invalid", "phone_extension_dropped", "a,b"]


def _columns(seed: int, rows: int = 500, width: int = 6) -> list[pd.Series]:
    rng = random.Random(seed)
    columns = [pd.Series([rng.choice(CODES) for _ in range(rows)], dtype="string") for _ in range(width)]
    columns.append(pd.Series([None] * rows, dtype="string"))  # a rule that flagged nothing
    return columns


def _joined_by_row(columns: list[pd.Series]) -> list[object]:
    out: list[object] = []
    for row in zip(*(c.tolist() for c in columns), strict=True):
        present = [v for v in row if isinstance(v, str)]
        out.append(",".join(dict.fromkeys(present)) if present else pd.NA)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_join_flags_joins_each_rows_flags_once_in_order(seed: int) -> None:
    columns = _columns(seed)
    assert join_flags(*columns).tolist() == _joined_by_row(columns)


@pytest.mark.parametrize("seed", [1, 2])
def test_first_of_takes_each_rows_first_code(seed: int) -> None:
    columns = _columns(seed)
    expected = [
        next((v for v in row if isinstance(v, str)), pd.NA)
        for row in zip(*(c.tolist() for c in columns), strict=True)
    ]
    assert first_of(*columns).tolist() == expected


def test_rows_without_any_flag_stay_missing() -> None:
    empty = pd.Series([None, None, None], dtype="string")
    assert join_flags(empty, empty).isna().all()
    assert join_flags(empty, pd.Series([None, "x", None])).tolist() == [pd.NA, "x", pd.NA]
