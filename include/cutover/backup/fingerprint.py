"""Per-table fingerprints of a legacy database: row count and a SHA-256 over the rows in key order.

The same function runs on the source and on a restored copy; equal fingerprints prove that the
copy holds the same rows, cell for cell. Rows are read through the legacy reader
(:func:`cutover.legacy.source.read_batches`, ordered by the table's key) and each row is hashed
through a canonical, type-tagged and length-prefixed encoding (:func:`canonical_row`), so the
digest depends neither on batch sizes nor on how an engine formats a row, and ``NULL`` differs
from an empty string. One caveat: the reader decodes text that is not UTF-8 as cp1252, so two
invalid byte sequences that decode alike are not told apart; for SQLite the restore test also
compares the SHA-256 of the whole database file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, TypedDict

from cutover.legacy.schema import LEGACY_TABLES
from cutover.legacy.source import read_batches


class TableFingerprint(TypedDict):
    rows: int
    sha256: str


def _cell(value: Any) -> bytes:
    if value is None:
        return b"N"
    if isinstance(value, int):
        return b"I%d;" % value
    raw = value.encode() if isinstance(value, str) else bytes(value)
    return (b"S" if isinstance(value, str) else b"B") + b"%d:" % len(raw) + raw


def canonical_row(row: Sequence[Any]) -> bytes:
    """The bytes a row contributes to its table's digest.

    >>> canonical_row([7, "ab", None, b"\\x00"])
    b'R4|I7;S2:abNB1:\\x00'
    >>> canonical_row(["", None]) != canonical_row([None, ""])
    True
    """
    return b"R%d|" % len(row) + b"".join(_cell(v) for v in row)


def table_fingerprint(url: str, table: str) -> TableFingerprint:
    spec = LEGACY_TABLES[table]
    digest, rows = hashlib.sha256(), 0
    for batch in read_batches(url, table, spec.columns, spec.key):
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            digest.update(canonical_row(row))
        rows += batch.num_rows
    return TableFingerprint(rows=rows, sha256=digest.hexdigest())


def fingerprint(url: str) -> dict[str, TableFingerprint]:
    """Fingerprints of every legacy table."""
    return {table: table_fingerprint(url, table) for table in LEGACY_TABLES}
