"""Per-table fingerprints of a legacy database: row count and a SHA-256 over the rows in key order.

The same function runs on the source and on a restored copy; equal fingerprints prove that the
copy holds the same rows, cell for cell. Each row is hashed through a canonical encoding of its
typed values (ids as integers, text, bytes), so the digest depends neither on batch sizes nor
on how an engine formats a row.
"""

from __future__ import annotations

import hashlib
from typing import TypedDict

from cutover.legacy.schema import LEGACY_TABLES
from cutover.legacy.source import read_batches


class TableFingerprint(TypedDict):
    rows: int
    sha256: str


def table_fingerprint(url: str, table: str) -> TableFingerprint:
    spec = LEGACY_TABLES[table]
    digest, rows = hashlib.sha256(), 0
    for batch in read_batches(url, table, spec.columns, spec.key):
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            digest.update(repr(row).encode())
        rows += batch.num_rows
    return TableFingerprint(rows=rows, sha256=digest.hexdigest())


def fingerprint(url: str) -> dict[str, TableFingerprint]:
    """Fingerprints of every legacy table."""
    return {table: table_fingerprint(url, table) for table in LEGACY_TABLES}
