"""Arrow batches in, zstd Parquet parts out, and back, with a manifest per staged table.

A table is staged under a prefix as ``part-00000.parquet``, ``part-00001.parquet``, … plus
``_manifest.json`` listing each part's rows and SHA-256. The manifest is written last, so a
half-written stage is never mistaken for a complete one, and readers verify every part
against it.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections.abc import Iterable, Iterator
from typing import TypedDict

import pyarrow as pa
import pyarrow.parquet as pq

from cutover.errors import IntegrityError
from cutover.staging.store import Store, manifest_key

MANIFEST = "_manifest.json"
MAX_PART_BYTES = 64 * 1024 * 1024
"""A part is also cut at this many bytes of Arrow data, so wide rows (attachments) stay bounded."""
MAX_BATCH_BYTES = 16 * 1024 * 1024
""":func:`iter_batches` yields batches of at most about this many bytes of Arrow data."""


class PartInfo(TypedDict):
    key: str
    rows: int
    bytes: int
    sha256: str


class StageManifest(TypedDict):
    prefix: str
    rows: int
    parts: list[PartInfo]


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", compression_level=3, use_dictionary=True)
    return sink.getvalue()


def write_batches(
    store: Store, prefix: str, batches: Iterable[pa.RecordBatch], *, schema: pa.Schema, rows_per_part: int
) -> StageManifest:
    """Stage batches as Parquet parts of at most ``rows_per_part`` rows (or about MAX_PART_BYTES); return the manifest.

    Memory holds one part at a time. An empty input still stages one empty part, so the
    schema travels with the stage.
    """
    prefix = prefix.rstrip("/")
    parts: list[PartInfo] = []
    pending: list[pa.RecordBatch] = []
    pending_rows = pending_bytes = 0

    def flush() -> None:
        nonlocal pending, pending_rows, pending_bytes
        table = pa.Table.from_batches(pending, schema=schema)
        key = f"{prefix}/part-{len(parts):05d}.parquet"
        info = store.put(key, _parquet_bytes(table))
        parts.append(PartInfo(key=key, rows=table.num_rows, bytes=info.size, sha256=info.sha256))
        pending, pending_rows, pending_bytes = [], 0, 0

    for batch in batches:
        while batch.num_rows:
            row_bytes = max(1, batch.nbytes // batch.num_rows)
            room = max(1, (MAX_PART_BYTES - pending_bytes) // row_bytes)
            take = min(batch.num_rows, rows_per_part - pending_rows, room)
            piece = batch.slice(0, take)
            pending.append(piece)
            pending_rows += take
            pending_bytes += piece.nbytes
            batch = batch.slice(take)
            if pending_rows >= rows_per_part or pending_bytes >= MAX_PART_BYTES:
                flush()
    if pending_rows or not parts:
        flush()
    manifest = StageManifest(prefix=prefix, rows=sum(p["rows"] for p in parts), parts=parts)
    signed = {**manifest, "signature": sign(manifest)}
    store.put(f"{prefix}/{MANIFEST}", json.dumps(signed, indent=1).encode())
    return manifest


def sign(manifest: StageManifest) -> str:
    """HMAC-SHA-256 of the manifest's canonical JSON under :func:`~cutover.staging.store.manifest_key`."""
    body = json.dumps({k: manifest[k] for k in ("prefix", "rows", "parts")}, sort_keys=True).encode()
    return hmac.new(manifest_key(), body, hashlib.sha256).hexdigest()


def read_manifest(store: Store, prefix: str) -> StageManifest:
    """A staged table's manifest, its signature verified: a manifest the pipeline did not write (a part
    replaced and its digest rewritten in the manifest, by anyone who can write to the store but does not
    hold the key) is refused, so neither the load, the gates nor the reconciliation ever read it."""
    key = f"{prefix.rstrip('/')}/{MANIFEST}"
    raw = json.loads(store.get(key))
    given = raw.pop("signature", None) if isinstance(raw, dict) else None
    try:
        manifest = StageManifest(prefix=raw["prefix"], rows=int(raw["rows"]), parts=list(raw["parts"]))
        expected = sign(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"staged manifest {key} is malformed") from exc
    if not isinstance(given, str) or not hmac.compare_digest(given, expected):
        raise IntegrityError(
            f"staged manifest {key} is not signed by this pipeline's key: altered after it was written, or"
            " staged under another key; refusing to read it"
        )
    return manifest


def read_part(store: Store, part: PartInfo) -> pa.Table:
    """One staged part, verified against its manifest checksum and row count."""
    table = pq.read_table(io.BytesIO(store.get(part["key"], sha256=part["sha256"])))
    if table.num_rows != part["rows"]:
        raise IntegrityError(
            f"staged part {part['key']} has {table.num_rows} rows, manifest says {part['rows']}"
        )
    return table


def read_table_objects(store: Store, prefix: str) -> Iterator[tuple[int, pa.Table]]:
    """Every part of a staged table, in order, as (part number, table)."""
    for number, part in enumerate(read_manifest(store, prefix)["parts"]):
        yield number, read_part(store, part)


def iter_batches(
    store: Store, prefix: str, *, max_rows: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Every row of a staged table, in order, in batches of at most ``max_rows`` rows (fewer for wide
    rows); only ``columns`` of it, if given.

    A part is verified against its manifest checksum and row count, then decoded a batch at a
    time: memory holds the part's Parquet bytes and one batch, not the whole part as Arrow.
    """
    for part in read_manifest(store, prefix)["parts"]:
        parquet = pq.ParquetFile(io.BytesIO(store.get(part["key"], sha256=part["sha256"])))
        meta = parquet.metadata
        if meta.num_rows != part["rows"]:
            raise IntegrityError(
                f"staged part {part['key']} has {meta.num_rows} rows, manifest says {part['rows']}"
            )
        if not meta.num_rows:
            continue
        arrow_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        rows = max(1, min(max_rows, MAX_BATCH_BYTES * meta.num_rows // max(1, arrow_bytes)))
        yield from parquet.iter_batches(batch_size=rows, columns=columns)
