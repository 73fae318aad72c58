"""Run a table's mapping spec over one Arrow batch of legacy rows.

A spec turns legacy columns into target columns, vectorised over the batch, and says for each
row whether it maps or is rejected (a reason code, never a value). References to parent rows
stay legacy ids here: the loader resolves them through the crosswalk when it merges, so a row
whose parent was rejected or never existed is rejected there, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

PG_TO_ARROW: dict[str, pa.DataType] = {
    "text": pa.string(),
    "text[]": pa.list_(pa.string()),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "boolean": pa.bool_(),
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "numeric": pa.float64(),
    "bytea": pa.binary(),
}


@dataclass(frozen=True)
class Ref:
    """A foreign key of the target row, given in the legacy row as the parent's legacy id."""

    column: str
    """Target foreign-key column, e.g. ``episode_id``."""
    source: str
    """Legacy column holding the parent's legacy id, e.g. ``case_id``."""
    parent: str
    """Legacy table of the parent, e.g. ``cases``."""
    required: bool = True
    """A required reference that does not resolve rejects the row; an optional one becomes NULL."""


Transform = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class TableSpec:
    """How one legacy table becomes one target table."""

    legacy: str
    target: str
    key: str
    columns: tuple[tuple[str, str], ...]
    """Target columns (name, PostgreSQL type) the transform produces, without ``id`` and refs."""
    transform: Transform
    """Legacy frame → frame of the target columns plus ``reason`` (NA when the row maps)."""
    refs: tuple[Ref, ...] = ()
    doc: str = ""

    @property
    def staged_schema(self) -> pa.Schema:
        """The mapped Parquet's schema: legacy id, target columns, parent legacy ids, reason."""
        fields = [pa.field("legacy_id", pa.string(), nullable=False)]
        fields += [pa.field(name, PG_TO_ARROW[kind]) for name, kind in self.columns]
        fields += [pa.field(f"ref_{ref.column}", pa.string()) for ref in self.refs]
        fields.append(pa.field("reason", pa.string()))
        return pa.schema(fields)


def _legacy_ids(values: pd.Series) -> pd.Series:
    """Legacy ids as text, the crosswalk's key type (integers without a trailing .0)."""
    return values.astype("Int64").astype("string")


def map_batch(spec: TableSpec, batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """Map one batch of legacy rows; every input row yields exactly one output row."""
    frame = batch.to_pandas(types_mapper=pd.ArrowDtype)
    mapped = spec.transform(frame)
    if len(mapped) != len(frame):
        raise AssertionError(f"{spec.legacy}: transform changed the row count ({len(frame)} → {len(mapped)})")
    out: dict[str, object] = {"legacy_id": _legacy_ids(frame[spec.key])}
    for name, _ in spec.columns:
        out[name] = mapped[name]
    for ref in spec.refs:
        out[f"ref_{ref.column}"] = _legacy_ids(frame[ref.source])
    out["reason"] = mapped["reason"].astype("string")
    result = pd.DataFrame(out)
    return pa.Table.from_pandas(result, schema=spec.staged_schema, preserve_index=False)
