"""Binary COPY of an Arrow table into PostgreSQL with psycopg 3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from psycopg import sql

STAGE_TYPES: dict[str, str] = {"numeric": "float8"}
"""Staging column types where the Arrow value does not dump to the target type in binary."""

CHUNK_ROWS = 20_000


def stage_type(pg_type: str) -> str:
    return STAGE_TYPES.get(pg_type, pg_type)


def copy_arrow(cur: Any, table: str, data: pa.Table, pg_types: Sequence[str]) -> int:
    """COPY ``data`` into ``table`` (columns named as the Arrow fields) in binary format.

    Python objects exist for one chunk at a time, so memory stays bounded by the chunk size.
    """
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in data.column_names)
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), columns)
    with cur.copy(stmt) as copy:
        copy.set_types([stage_type(t) for t in pg_types])
        for batch in data.to_batches(max_chunksize=CHUNK_ROWS):
            for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                copy.write_row(row)
    return data.num_rows
