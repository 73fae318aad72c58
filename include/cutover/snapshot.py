"""What a wave's rows looked like when its runs extracted them: one 64-bit fingerprint per legacy row.

A delta sync finds changed rows by their ``modified`` timestamp, but a legacy system does not always
stamp an edit (a bulk fix run in SQL, a field its own code forgets). Each run keeps what it
extracted in the staging store, so the sync compares every row of a migrated wave with the latest
copy of it that the wave's runs extracted: a row whose fingerprint differs, or that no run
extracted, has changed, whatever its ``modified`` says.

The fingerprint is pandas' row hash over every column, of the row as Arrow holds it: the legacy
read and the staged Parquet part of the same row give the same Arrow values, so the same hash.
Only keys and fingerprints are held, never the rows' values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cutover.legacy.profile import current, legacy_tables
from cutover.staging.parquet import MANIFEST, iter_batches
from cutover.staging.store import Store

BATCH_ROWS = 100_000


def fingerprints(batch: pa.RecordBatch | pa.Table) -> pa.Array:
    """One uint64 per row, over every column of ``batch`` (the same columns give the same hashes)."""
    if batch.num_rows == 0:
        return pa.array([], pa.uint64())
    frame = batch.to_pandas()
    return pa.array(pd.util.hash_pandas_object(frame, index=False).to_numpy(), pa.uint64())


@dataclass(frozen=True)
class Snapshot:
    """The latest extracted fingerprint of each row of one legacy table, over some runs."""

    keys: pa.Array
    hashes: pa.Array
    ignored: tuple[str, ...] = ()
    """Columns a row's fingerprint leaves out: its export flag, which says how a delivery carries the
    row (new, modified), not what the row holds, so a row delivered again unchanged is not a change."""

    @classmethod
    def of_runs(cls, store: Store, run_keys: tuple[str, ...], table: str) -> Snapshot | None:
        """Over ``run_keys`` (oldest first; a later run's copy of a row wins); ``None`` when none of them
        kept its extract of ``table`` (then only timestamps can tell a change)."""
        spec = legacy_tables()[table]
        key = spec.key
        ignored = (spec.export_flag.column,) if spec.export_flag else ()
        keys: list[pa.Array] = []
        hashes: list[pa.Array] = []
        found = False
        for run in run_keys:
            prefix = f"runs/{run}/extract/{table}"
            if not store.exists(f"{prefix}/{MANIFEST}"):
                continue
            found = True
            for batch in iter_batches(store, prefix, max_rows=BATCH_ROWS):
                keys.append(batch.column(key))
                hashes.append(fingerprints(_without(batch, ignored)))
        if not found:
            return None
        if not keys:
            return cls(pa.array([], current().key_arrow_type(table)), pa.array([], pa.uint64()), ignored)
        frame = pd.DataFrame(
            {"key": pa.chunked_array(keys).to_numpy(), "hash": pa.chunked_array(hashes).to_numpy()}
        ).drop_duplicates("key", keep="last")
        return cls(
            pa.array(frame["key"].to_numpy()),
            pa.array(frame["hash"].to_numpy(np.uint64), pa.uint64()),
            ignored,
        )

    def differs(self, batch: pa.RecordBatch, key: str) -> pa.Array:
        """True for each row of ``batch`` that is not in the snapshot or whose fingerprint changed."""
        at = pc.index_in(batch.column(key), value_set=self.keys)
        before = pc.take(self.hashes, at)
        return pc.fill_null(pc.not_equal(before, fingerprints(_without(batch, self.ignored))), True)


def _without(batch: pa.RecordBatch, columns: tuple[str, ...]) -> pa.RecordBatch:
    return batch.drop_columns([c for c in columns if c in batch.schema.names]) if columns else batch
