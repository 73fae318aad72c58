"""Back up and restore a PostgreSQL legacy database with pg_dump/pg_restore, proven by fingerprints.

The client binaries come from the ``pgserver`` wheel (PostgreSQL 16), which dump servers of that
version and older without a system client; ``CUTOVER_PG_BIN`` points elsewhere for newer servers.
The dump is taken in one snapshot (pg_dump's repeatable-read transaction), encrypted, and
staged. Verification restores it into a scratch database on the same server, compares the
fingerprints with the source's, and drops the scratch database.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from cutover.backup.crypto import decrypt_file, encrypt_file
from cutover.backup.fingerprint import fingerprint
from cutover.errors import IntegrityError, TerminalError
from cutover.staging.store import Store


def pg_bin(name: str) -> str:
    """The path of a PostgreSQL client program (``pg_dump``, ``pg_restore``)."""
    folder = os.environ.get("CUTOVER_PG_BIN")
    if not folder:
        import pgserver

        folder = str(Path(pgserver.__file__).parent / "pginstall" / "bin")
    return str(Path(folder) / name)


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        # the client's stderr names objects, never row values; keep its last line only
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise TerminalError(f"{Path(args[0]).name} failed ({done.returncode}): {last}")


def _with_db(url: str, name: str) -> str:
    return urlsplit(url)._replace(path="/" + name).geturl()


def back_up_postgres(
    legacy_url: str, store: Store, run_key: str, key: bytes, *, now: datetime
) -> dict[str, Any]:
    prefix = f"runs/{run_key}/backup"
    with tempfile.TemporaryDirectory() as tmp:
        dump, sealed = Path(tmp) / "legacy.dump", Path(tmp) / "legacy.dump.enc"
        _run(
            [
                pg_bin("pg_dump"),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--file={dump}",
                legacy_url,
            ]
        )
        encrypt_file(dump, sealed, key)
        info = store.put(f"{prefix}/legacy.dump.enc", sealed.read_bytes())
    manifest = {
        "run_key": run_key,
        "dialect": "postgresql",
        "created_at": now.isoformat(),
        "objects": [{"key": info.key, "bytes": info.size, "sha256": info.sha256}],
        "tables": fingerprint(legacy_url),
    }
    store.put(f"{prefix}/manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def verify_postgres_backup(
    store: Store, run_key: str, key: bytes, *, scratch_server_url: str, now: datetime
) -> dict[str, Any]:
    """Restore into a fresh scratch database on ``scratch_server_url``'s server and compare fingerprints."""
    prefix = f"runs/{run_key}/backup"
    manifest = json.loads(store.get(f"{prefix}/manifest.json"))
    obj = manifest["objects"][0]
    scratch = f"cutover_restore_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(scratch_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{scratch}"')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sealed, dump = Path(tmp) / "legacy.dump.enc", Path(tmp) / "legacy.dump"
            sealed.write_bytes(store.get(obj["key"], sha256=obj["sha256"]))
            decrypt_file(sealed, dump, key)
            _run(
                [
                    pg_bin("pg_restore"),
                    "--no-owner",
                    "--exit-on-error",
                    f"--dbname={_with_db(scratch_server_url, scratch)}",
                    str(dump),
                ]
            )
        prints = fingerprint(_with_db(scratch_server_url, scratch))
    finally:
        with psycopg.connect(scratch_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    differ = sorted(t for t in manifest["tables"] if prints.get(t) != manifest["tables"][t])
    if differ:
        raise IntegrityError(f"backup {run_key}: restored tables differ from the source: {differ}")
    verified = {"run_key": run_key, "verified_at": now.isoformat(), "tables": len(prints)}
    store.put(f"{prefix}/verified.json", json.dumps(verified).encode())
    return verified
