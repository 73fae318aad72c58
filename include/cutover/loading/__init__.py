"""Load mapped Parquet into the target: binary COPY into a staging table, then one atomic merge per batch."""

from __future__ import annotations

from cutover.loading.load import LoadResult, load_table

__all__ = ["LoadResult", "load_table"]
