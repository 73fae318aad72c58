"""The backup of a CSV delivery: the delivered files themselves, as the run took them.

A delivery has no database to dump: what the legacy system gave is the files. The snapshot is
every file of every delivery the run reads (:mod:`cutover.legacy.delivery`: the earlier
deliveries of its chain and its own), copied out of the staging store part by part, each part
checked against its SHA-256 and each file against the SHA-256 recorded when it was taken. They
are encrypted and stored like any snapshot; the restore test decrypts them (the plaintext's
SHA-256 is compared with the file's), reads them again in order into a scratch SQLite database,
and compares every table's row count and checksum with the backup's fingerprint, which is that of
the delivery as the pipeline reads it.

A snapshot file is named ``<n>-<delivery>-<file>``: ``n`` its delivery's place in the chain, so
the restore applies the deliveries in the order they were taken.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

from cutover.errors import IntegrityError
from cutover.legacy import delivery as dl
from cutover.legacy.profile import current
from cutover.legacy.source import sqlite_path

_NAME = re.compile(r"^(\d{3})-([0-9a-f]{16})-(.+)$")


def snapshot(store_url: str, run_id: str, workdir: Path) -> tuple[list[Path], dict[str, dict[str, object]]]:
    """The run's delivered files in ``workdir`` (plaintext: PHI), in chain order, and per snapshot
    file its delivery, SHA-256 and records (ids and counts only)."""
    from cutover.staging.store import open_store

    store = open_store(store_url)
    files: list[Path] = []
    facts: dict[str, dict[str, object]] = {}
    for n, ident in enumerate(dl.run_delivery(store_url, run_id)["chain"]):
        for name, delivered in dl.delivery(store_url, ident)["files"].items():
            path = workdir / f"{n:03d}-{ident}-{name}"
            digest = hashlib.sha256()
            with dl.stored_file(store, delivered["parts"]) as stream, path.open("wb") as out:
                while block := stream.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != delivered["sha256"]:
                raise IntegrityError(f"delivery {ident}: stored file {name} differs from the file taken")
            files.append(path)
            facts[path.name] = {
                "delivery": ident,
                "file": name,
                "sha256": delivered["sha256"],
                "records": delivered["records"],
                "malformed": delivered["malformed"],
            }
    return files, facts


def restore(files: list[Path], scratch_url: str) -> None:
    """Read the snapshot's files again, in chain order, into the scratch SQLite database."""
    profile = current()
    tables = dl.csv_tables(profile)
    conn = sqlite3.connect(sqlite_path(scratch_url))
    try:
        for path in sorted(files, key=lambda p: p.name):
            match = _NAME.match(path.name)
            if match is None or match[3] not in tables:
                raise IntegrityError(f"backup file {path.name} is not a file of the profile's delivery")
            n, ident, name = int(match[1]), match[2], match[3]
            with path.open("rb") as stream:
                dl.apply_file(conn, profile, tables[name].name, stream, name=name, later=ident if n else None)
        conn.commit()
    finally:
        conn.close()
