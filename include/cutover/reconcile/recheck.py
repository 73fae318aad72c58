"""Reconciliation's second witness: a sample of patients read again from the legacy source and mapped
again now, against what the run staged and loaded.

The chart reconciliation compares the target with the run's staged Parquet; both sides come from
the pipeline itself, so a change between the legacy database and the staging store (a part replaced
by someone holding the key, a legacy row edited after the extract, a mapping that is not
deterministic) would pass it. This check reads a sample of patients' whole charts straight from the
legacy database (every table that leads to the patient, through the same reader), maps them with
the same specs and the run's as-of date, and compares every mapped row with the staged one, column
for column: a legacy row missing on either side, or any value that differs, is a mismatch of its
patient (``legacy_recheck`` in ``migration.validation_failure``).

Patients in a duplicate cluster (merged, or a survivor that took its duplicates' values) are left
out of the sample: their staged rows are not a function of their own legacy row. The sample is
deterministic for a run (a hash of run id and legacy id), so a rerun checks the same patients.
Values are compared in memory and never logged; only legacy ids leave this module.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cutover.legacy.profile import current, legacy_tables, mapping_specs
from cutover.legacy.source import read_where
from cutover.mapping.dedupe import SOURCES
from cutover.mapping.engine import MAP_BATCH_ROWS, map_batch
from cutover.staging.parquet import iter_batches
from cutover.staging.store import Store

log = logging.getLogger(__name__)

SAMPLE_PATIENTS = 25
"""Patients re-read per run: a few queries per table, seconds at any size."""


def _staged(store: Store, prefix: str, table: str, ids: pa.Array) -> pa.Table:
    """The staged mapped rows of ``table`` whose legacy id is one of ``ids``."""
    kept = [
        batch.filter(pc.is_in(batch.column("legacy_id"), value_set=ids))
        for batch in iter_batches(store, f"{prefix}/mapped/{table}", max_rows=MAP_BATCH_ROWS)
    ]
    kept = [b for b in kept if b.num_rows]
    schema = mapping_specs()[table].staged_schema
    return pa.Table.from_batches(kept, schema=schema) if kept else schema.empty_table()


def sample_patients(store: Store, prefix: str, run_id: str, size: int = SAMPLE_PATIENTS) -> list[int]:
    """Up to ``size`` staged patients outside every duplicate cluster, chosen by a hash of the run."""
    singles: set[str] = set()
    survivors: set[str] = set()
    for batch in iter_batches(store, f"{prefix}/mapped/{current().patient_table}", max_rows=MAP_BATCH_ROWS):
        data = pa.Table.from_batches([batch]).select(["legacy_id", "merge_into"])
        survivors.update(v for v in data["merge_into"].to_pylist() if v is not None)
        singles.update(data.filter(pc.is_null(data["merge_into"]))["legacy_id"].to_pylist())
    eligible = [i for i in singles - survivors if i.lstrip("-").isdigit()]
    eligible.sort(key=lambda i: hashlib.sha256(f"{run_id}\0{i}".encode()).digest())
    return sorted(int(i) for i in eligible[:size])


def _differing(fresh: pa.Table, staged: pa.Table) -> set[str]:
    """Legacy ids whose mapped rows differ between the two sides (a row on one side only included); a
    merge's marks (``merge_into``, the duplicates' ids in ``source_records``) are the staging's own."""
    skip = {"merge_into"}
    columns = [c for c in staged.column_names if c not in skip]

    def rows(table: pa.Table) -> dict[str, tuple[Any, ...]]:
        picked = table.select(columns)
        if SOURCES in columns:  # a merge adds its duplicates' ids; the record's own comes first
            at = columns.index(SOURCES)
            picked = picked.set_column(at, SOURCES, pc.list_slice(picked[SOURCES], 0, 1))
        keys = picked["row_key"].to_pylist()
        values = zip(*(picked[c].to_pylist() for c in columns), strict=True)
        return dict(zip(keys, values, strict=True))

    ours, theirs = rows(fresh.cast(staged.schema)), rows(staged)
    ids = dict(zip(fresh["row_key"].to_pylist(), fresh["legacy_id"].to_pylist(), strict=True))
    ids |= dict(zip(staged["row_key"].to_pylist(), staged["legacy_id"].to_pylist(), strict=True))
    return {str(ids[k]) for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)}


def recheck(
    legacy_url: str,
    store: Store,
    prefix: str,
    run_id: str,
    *,
    as_of: date,
    tables: Sequence[str],
    size: int = SAMPLE_PATIENTS,
) -> tuple[list[int], dict[str, list[str]]]:
    """The sampled patients, and per legacy table the legacy ids whose rows differ from the staged ones."""
    patients = sample_patients(store, prefix, run_id, size)
    profile = current()
    keys: dict[str, list[int]] = {profile.patient_table: patients}
    mismatched: dict[str, list[str]] = {}
    for table in tables:
        legacy = legacy_tables()[table]
        owner = profile.owner(table)
        if not patients or owner is None:
            continue
        column, owner_table = owner  # the rows of the sampled patients, through the table's owner
        wanted = keys.get(owner_table, [])
        read = list(read_where(legacy_url, legacy.source_name, legacy.columns, legacy.key, column, wanted))
        fresh_parts = [map_batch(mapping_specs()[table], batch, as_of=as_of) for batch in read]
        fresh = (
            pa.concat_tables(fresh_parts)
            if fresh_parts
            else mapping_specs()[table].staged_schema.empty_table()
        )
        keys[table] = [k for b in read for k in b.column(legacy.key).to_pylist() if k is not None]
        # the staged rows under the ids the mapping gave: a row read without a key (blank) is staged
        # under its surrogate id (invalid-key-…), which its legacy key cannot name
        staged = _staged(store, prefix, table, pc.unique(fresh["legacy_id"]))
        differing = _differing(fresh, staged)
        if differing:
            mismatched[table] = sorted(differing)
    log.info(
        "legacy recheck of %s: %d patients, %d tables, mismatched %s",
        run_id,
        len(patients),
        len(keys),
        {t: len(ids) for t, ids in mismatched.items()},
    )
    return patients, mismatched
