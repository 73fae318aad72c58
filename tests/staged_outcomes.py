"""Mapped outcome rows staged as Parquet parts: the small table the Parquet gates' unit tests read."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa

from cutover.mapping.specs import SPECS
from cutover.pipeline import run_key
from cutover.staging.parquet import write_batches
from cutover.staging.store import open_store


def outcome(legacy_id: str, **extra: Any) -> dict[str, Any]:
    """One mapped outcome row that loads (its own row key, no reason, no merge), ``extra`` overriding."""
    row = {
        "legacy_id": legacy_id,
        "row_key": legacy_id,
        "instrument": "ODI",
        "score": 30.0,
        "measured_on": date(2025, 3, 1),
        "ref_episode_id": "1",
        "ref_visit_id": None,
        "merge_into": None,
        "reason": None,
        "flags": None,
    }
    return row | extra


def stage_outcomes(tmp_path: Path, rows: list[dict[str, Any]], *, run_id: str, rows_per_part: int) -> str:
    """Stage ``rows`` as the run's mapped outcomes in parts of ``rows_per_part``; the store's url."""
    url = f"file://{tmp_path / 'stage'}"
    schema = SPECS["outcomes"].staged_schema
    write_batches(
        open_store(url),
        f"runs/{run_key(run_id)}/mapped/outcomes",
        pa.Table.from_pylist(rows, schema=schema).to_batches(),
        schema=schema,
        rows_per_part=rows_per_part,
    )
    return url
