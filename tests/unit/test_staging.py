"""Staging: Parquet parts with a manifest, checksums verified on read, on a folder and on S3."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cutover.errors import IntegrityError
from cutover.staging.parquet import iter_batches, read_manifest, read_part, read_table_objects, write_batches
from cutover.staging.store import LocalStore, open_store

SCHEMA = pa.schema([("id", pa.int64()), ("note", pa.string())])


def _batches(n: int, size: int):
    for start in range(0, n, size):
        ids = list(range(start, min(n, start + size)))
        yield pa.record_batch([pa.array(ids), pa.array([f"n{i}" for i in ids])], schema=SCHEMA)


def test_parts_are_bounded_and_complete(tmp_path) -> None:
    store = LocalStore(tmp_path)
    manifest = write_batches(
        store, "runs/r1/extract/t", _batches(2_500, 700), schema=SCHEMA, rows_per_part=1_000
    )
    assert [p["rows"] for p in manifest["parts"]] == [1_000, 1_000, 500]
    assert manifest["rows"] == 2_500
    ids = [i for _, t in read_table_objects(store, "runs/r1/extract/t") for i in t.column("id").to_pylist()]
    assert ids == list(range(2_500))


def test_iter_batches_streams_every_row_in_bounded_batches(tmp_path, monkeypatch) -> None:
    import cutover.staging.parquet as parquet

    store = LocalStore(tmp_path)
    write_batches(store, "t", _batches(2_500, 700), schema=SCHEMA, rows_per_part=1_000)
    batches = list(iter_batches(store, "t", max_rows=300))
    assert max(b.num_rows for b in batches) == 300
    assert [i for b in batches for i in b.column("id").to_pylist()] == list(range(2_500))
    # wide rows: the byte bound cuts batches below max_rows
    monkeypatch.setattr(parquet, "MAX_BATCH_BYTES", 1_000)
    assert max(b.num_rows for b in iter_batches(store, "t", max_rows=300)) < 300
    assert sum(b.num_rows for b in iter_batches(store, "t", max_rows=300)) == 2_500


def test_iter_batches_refuses_a_tampered_part(tmp_path) -> None:
    store = LocalStore(tmp_path)
    manifest = write_batches(store, "t", _batches(10, 10), schema=SCHEMA, rows_per_part=10)
    path = tmp_path / manifest["parts"][0]["key"]
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="checksum"):
        list(iter_batches(store, "t", max_rows=5))


def test_empty_table_stages_its_schema(tmp_path) -> None:
    store = LocalStore(tmp_path)
    manifest = write_batches(store, "t", iter(()), schema=SCHEMA, rows_per_part=10)
    assert manifest["rows"] == 0
    assert read_part(store, manifest["parts"][0]).schema == SCHEMA


def test_tampered_part_is_refused(tmp_path) -> None:
    store = LocalStore(tmp_path)
    manifest = write_batches(store, "t", _batches(10, 10), schema=SCHEMA, rows_per_part=10)
    path = tmp_path / manifest["parts"][0]["key"]
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="checksum"):
        read_part(store, read_manifest(store, "t")["parts"][0])


def test_keys_cannot_escape_the_store(tmp_path) -> None:
    from cutover.errors import ConfigError

    with pytest.raises(ConfigError):
        LocalStore(tmp_path / "s").put("../outside", b"x")


def test_open_store_local_url(tmp_path) -> None:
    store = open_store(f"file://{tmp_path}")
    store.put("a/b.txt", b"hello")
    assert store.list("a") == ["a/b.txt"]
    assert store.delete_prefix("a") == 1


def test_wide_rows_cut_parts_by_bytes(tmp_path, monkeypatch) -> None:
    import cutover.staging.parquet as parquet

    monkeypatch.setattr(parquet, "MAX_PART_BYTES", 10_000)
    schema = pa.schema([("id", pa.int64()), ("content", pa.binary())])
    batch = pa.record_batch([pa.array(range(20)), pa.array([b"x" * 1_000] * 20)], schema=schema)
    manifest = write_batches(LocalStore(tmp_path), "docs", [batch], schema=schema, rows_per_part=1_000)
    assert len(manifest["parts"]) >= 2
    assert sum(p["rows"] for p in manifest["parts"]) == 20


def test_attachment_tables_are_read_in_small_batches(tmp_path) -> None:
    import sqlite3

    from cutover.legacy.source import BLOB_BATCH_ROWS, read_batches

    db = tmp_path / "l.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE documents (doc_id INTEGER PRIMARY KEY, content BLOB)")
        conn.executemany("INSERT INTO documents VALUES (?, ?)", [(i, b"%d" % i) for i in range(2_500)])
    sizes = [
        b.num_rows
        for b in read_batches(
            f"sqlite:///{db}", "documents", [("doc_id", "int"), ("content", "blob")], "doc_id"
        )
    ]
    assert max(sizes) == BLOB_BATCH_ROWS
    assert sum(sizes) == 2_500


def _decoded_one_by_one(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def test_sqlite_text_is_decoded_column_wise_as_value_by_value(tmp_path) -> None:
    """SQLite keeps the bytes a legacy system wrote: UTF-8, raw Latin-1/cp1252, NUL, a multi-byte
    character cut in two across neighbouring rows, an integer column holding text. Read column-wise,
    every value is what decoding it alone gives (UTF-8, else cp1252)."""
    import sqlite3

    from cutover.legacy.source import read_batches

    notes = [
        b"plain ascii",
        "café, naïve".encode(),
        b"caf\xe9 au lait",  # Latin-1
        b"ends with a lead byte \xc3",
        b"\xa9 starts with a continuation byte",  # with the row before, a valid "é" if glued
        b"nul\x00inside",
        b"\x81\x8d undefined in cp1252",
        None,
        b"",
    ]
    db = tmp_path / "l.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (note_id INTEGER PRIMARY KEY, ref_id INTEGER, body TEXT)")
        conn.executemany(
            "INSERT INTO notes VALUES (?, ?, CAST(? AS TEXT))",
            [(i, i if i % 3 else "not a number", n) for i, n in enumerate(notes, start=1)],
        )
    columns = [("note_id", "int"), ("ref_id", "int"), ("body", "text")]
    for batch_rows in (2, 100):
        table = pa.Table.from_batches(
            list(read_batches(f"sqlite:///{db}", "notes", columns, "note_id", batch_rows=batch_rows))
        )
        assert table.column("body").to_pylist() == [
            None if n is None else _decoded_one_by_one(n) for n in notes
        ]
        assert table.column("ref_id").to_pylist() == [
            None if i % 3 == 0 else i for i in range(1, len(notes) + 1)
        ]
        assert table.schema.field("body").type == pa.string()
