"""Back up and restore a SQLite legacy database, and prove the copy by fingerprints.

Snapshot: SQLite's online backup API (a consistent copy while the legacy application may still
be reading). The copy is encrypted (:mod:`cutover.backup.crypto`) and staged with a manifest of
SHA-256 checksums and the source's table fingerprints. Verification decrypts into a scratch file
and compares fingerprints; only then is the backup marked verified.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cutover.backup.crypto import decrypt_file, encrypt_file
from cutover.backup.fingerprint import fingerprint
from cutover.errors import IntegrityError, TerminalError
from cutover.legacy.source import sqlite_path
from cutover.staging.store import Store, sha256_hex


class BackupGateError(TerminalError):
    """No verified backup recent enough: the cutover must not start."""


def _prefix(run_key: str) -> str:
    return f"runs/{run_key}/backup"


def back_up_sqlite(
    legacy_url: str, store: Store, run_key: str, key: bytes, *, now: datetime
) -> dict[str, Any]:
    """Snapshot, encrypt and stage the legacy SQLite database; returns the manifest (ids, sizes, checksums)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy, sealed = Path(tmp) / "legacy.db", Path(tmp) / "legacy.db.enc"
        source = sqlite3.connect(f"file:{sqlite_path(legacy_url)}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        with target:
            source.backup(target)
        source.close()
        target.close()
        prints = fingerprint(f"sqlite:///{copy}")
        plain_sha = sha256_hex(copy.read_bytes())
        encrypt_file(copy, sealed, key)
        info = store.put(f"{_prefix(run_key)}/legacy.db.enc", sealed.read_bytes())
    manifest = {
        "run_key": run_key,
        "dialect": "sqlite",
        "created_at": now.isoformat(),
        "objects": [{"key": info.key, "bytes": info.size, "sha256": info.sha256, "plain_sha256": plain_sha}],
        "tables": prints,
    }
    store.put(f"{_prefix(run_key)}/manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def verify_sqlite_backup(store: Store, run_key: str, key: bytes, *, now: datetime) -> dict[str, Any]:
    """Restore into a scratch file, compare fingerprints with the manifest, then mark the backup verified."""
    manifest = json.loads(store.get(f"{_prefix(run_key)}/manifest.json"))
    obj = manifest["objects"][0]
    with tempfile.TemporaryDirectory() as tmp:
        sealed, restored = Path(tmp) / "legacy.db.enc", Path(tmp) / "restored.db"
        sealed.write_bytes(store.get(obj["key"], sha256=obj["sha256"]))
        decrypt_file(sealed, restored, key)
        if sha256_hex(restored.read_bytes()) != obj["plain_sha256"]:
            raise IntegrityError(f"backup {run_key}: restored bytes differ from the snapshot")
        prints = fingerprint(f"sqlite:///{restored}")
    differ = sorted(t for t in manifest["tables"] if prints.get(t) != manifest["tables"][t])
    if differ:
        raise IntegrityError(f"backup {run_key}: restored tables differ from the source: {differ}")
    verified = {"run_key": run_key, "verified_at": now.isoformat(), "tables": len(prints)}
    store.put(f"{_prefix(run_key)}/verified.json", json.dumps(verified).encode())
    return verified


def require_verified_backup(store: Store, *, max_age: timedelta, now: datetime) -> dict[str, Any]:
    """The newest verified backup younger than ``max_age``, or BackupGateError saying why not."""
    verified = [k for k in store.list("runs") if k.endswith("/backup/verified.json")]
    made = [k for k in store.list("runs") if k.endswith("/backup/manifest.json")]
    if not verified:
        detail = f"{len(made)} backup(s), none verified" if made else "no backup at all"
        raise BackupGateError(f"refusing to start the cutover: {detail}; run pt_backup first")
    newest = max((json.loads(store.get(k)) for k in verified), key=lambda v: v["verified_at"])
    age = now - datetime.fromisoformat(newest["verified_at"])
    if age > max_age:
        raise BackupGateError(
            f"refusing to start the cutover: the newest verified backup ({newest['run_key']}) is "
            f"{age.total_seconds() / 3600:.1f} h old, more than {max_age.total_seconds() / 3600:.1f} h"
        )
    return dict(newest)


def utcnow() -> datetime:
    return datetime.now(UTC)
