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
    with pytest.raises(IntegrityError, match="fails authentication"):  # sealed: the GCM tag refuses it
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
    with pytest.raises(IntegrityError, match="fails authentication"):
        read_part(store, read_manifest(store, "t")["parts"][0])
    # the store's plaintext checksum still guards what the key opens: a part staged again under the
    # same key (a valid seal) but not the one the manifest recorded is refused
    store.put(manifest["parts"][0]["key"], b"PAR1 another part")
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


# --- the local store at rest: sealed objects, private modes, leftovers removed ------------------


def test_a_staged_part_on_disk_is_not_parquet_without_the_key(tmp_path) -> None:
    from cutover.staging.store import SEAL_OVERHEAD, staging_key

    store = LocalStore(tmp_path, key=staging_key())
    manifest = write_batches(store, "runs/r1/extract/t", _batches(50, 50), schema=SCHEMA, rows_per_part=50)
    part = manifest["parts"][0]
    on_disk = (tmp_path / part["key"]).read_bytes()
    assert not on_disk.startswith(b"PAR1")
    assert b"n49" not in on_disk
    assert len(on_disk) == part["bytes"] + SEAL_OVERHEAD  # the manifest keeps the plaintext's size
    other = LocalStore(tmp_path, key=bytes(32))  # another key opens nothing
    with pytest.raises(IntegrityError, match="sealed under another key"):
        other.get(part["key"])
    # the stages read it through the store as before
    assert read_part(store, part).column("id").to_pylist() == list(range(50))
    assert store.get(part["key"], sha256=part["sha256"]).startswith(b"PAR1")


def test_a_sealed_part_moved_to_another_key_is_refused(tmp_path) -> None:
    store = LocalStore(tmp_path, key=bytes(range(32)))
    manifest = write_batches(store, "t", _batches(20, 10), schema=SCHEMA, rows_per_part=10)
    first, second = (tmp_path / p["key"] for p in manifest["parts"])
    second.write_bytes(first.read_bytes())
    with pytest.raises(IntegrityError, match="moved"):
        read_part(store, manifest["parts"][1])


def test_plaintext_where_a_sealed_object_belongs_is_refused(tmp_path) -> None:
    store = LocalStore(tmp_path, key=bytes(32))
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "part-00000.parquet").write_bytes(b"PAR1 written around the store")
    with pytest.raises(IntegrityError, match="not sealed"):
        store.get("t/part-00000.parquet")


def test_manifests_evidence_and_backup_objects_are_kept_as_they_are(tmp_path) -> None:
    store = LocalStore(tmp_path, key=bytes(32))
    for key in ("t/_manifest.json", "runs/r1/evidence/report.html", "runs/r1/backup/legacy.db.enc"):
        store.put(key, b"as is")
        assert (tmp_path / key).read_bytes() == b"as is"
        assert store.get(key) == b"as is"


def test_files_0600_and_folders_0700_whatever_the_umask(tmp_path) -> None:
    import os
    import stat

    old = os.umask(0)
    try:
        store = LocalStore(tmp_path / "stage", key=bytes(32))
        store.put("runs/r1/mapped/visits/part-00000.parquet", b"x")
        store.put("runs/r1/mapped/visits/_manifest.json", b"{}")
        source = tmp_path / "big.enc"
        source.write_bytes(b"y" * 3_000_000)
        store.put_file("runs/r1/backup/legacy.db.enc", source)
    finally:
        os.umask(old)
    root = tmp_path / "stage"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for path in root.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    assert (root / "runs/r1/backup/legacy.db.enc").read_bytes() == b"y" * 3_000_000


def test_cleanup_removes_leftover_dot_and_tmp_files(tmp_path, caplog, monkeypatch) -> None:
    import os

    store = LocalStore(tmp_path, key=bytes(32))
    write_batches(store, "runs/r1/extract/t", _batches(20, 10), schema=SCHEMA, rows_per_part=10)
    folder = tmp_path / "runs/r1/extract/t"
    # what a full disk or a kill -9 leaves: a hidden temporary part, a stray tmp file
    (folder / ".part-00002.parquet.4242.tmp").write_bytes(b"half a part")
    (folder / "part-00003.parquet.tmp").write_bytes(b"stray")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x").write_bytes(b"x")
    assert store.list("runs/r1/extract/t") == sorted(
        f"runs/r1/extract/t/{n}" for n in ("_manifest.json", "part-00000.parquet", "part-00001.parquet")
    )
    with caplog.at_level("WARNING", logger="cutover.staging.store"):
        assert store.delete_prefix("runs/r1/extract/t") == 3
    assert not folder.exists()
    assert not (tmp_path / "runs").exists()  # emptied folders go too
    logged = caplog.text
    assert ".part-00002.parquet.4242.tmp" in logged
    assert "half a part" not in logged

    # a write that fails (a full disk) leaves no temporary file behind
    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space left"):
        store.put("runs/r2/extract/t/part-00000.parquet", b"x" * 100)
    monkeypatch.undo()
    assert not list((tmp_path / "runs/r2/extract/t").iterdir())
