"""Back up and restore a MariaDB/MySQL legacy database with mariadb-dump, proven by fingerprints.

``mariadb-dump --single-transaction`` takes a consistent snapshot of InnoDB tables without
locking the legacy application out; ``--hex-blob`` keeps attachments byte-exact. The dump is
encrypted and staged; verification loads it into a scratch database on the same server with
the ``mariadb`` client, compares fingerprints and drops the scratch database. The client
programs come from the server's own packages (``mariadb-client``); ``mysqldump``/``mysql`` are
used where the MariaDB names are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cutover.backup.crypto import decrypt_file, encrypt_file
from cutover.backup.fingerprint import fingerprint
from cutover.errors import ConfigError, IntegrityError, TerminalError
from cutover.staging.store import Store


def _client(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(f"none of {', '.join(names)} is installed (Debian: mariadb-client)")


def _args(url: str) -> tuple[list[str], str]:
    parts = urlsplit(url)
    args = [f"--host={parts.hostname or '127.0.0.1'}", f"--port={parts.port or 3306}"]
    args.append(f"--user={unquote(parts.username or 'root')}")
    if parts.password:
        args.append(f"--password={unquote(parts.password)}")
    return args, unquote(parts.path.lstrip("/"))


def _run(args: list[str], **kw: Any) -> None:
    kw.setdefault("stdout", subprocess.PIPE)
    done = subprocess.run(args, stderr=subprocess.PIPE, **kw)
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise TerminalError(f"{Path(args[0]).name} failed ({done.returncode}): {last}")


def back_up_mariadb(
    legacy_url: str, store: Store, run_key: str, key: bytes, *, now: datetime
) -> dict[str, Any]:
    prefix = f"runs/{run_key}/backup"
    conn, database = _args(legacy_url)
    with tempfile.TemporaryDirectory() as tmp:
        dump, sealed = Path(tmp) / "legacy.sql", Path(tmp) / "legacy.sql.enc"
        with dump.open("wb") as out:
            _run(
                [
                    _client("mariadb-dump", "mysqldump"),
                    *conn,
                    "--single-transaction",
                    "--hex-blob",
                    "--routines",
                    database,
                ],
                stdout=out,
            )
        encrypt_file(dump, sealed, key)
        info = store.put(f"{prefix}/legacy.sql.enc", sealed.read_bytes())
    manifest = {
        "run_key": run_key,
        "dialect": "mysql",
        "created_at": now.isoformat(),
        "objects": [{"key": info.key, "bytes": info.size, "sha256": info.sha256}],
        "tables": fingerprint(legacy_url),
    }
    store.put(f"{prefix}/manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def verify_mariadb_backup(
    store: Store, run_key: str, key: bytes, *, server_url: str, now: datetime
) -> dict[str, Any]:
    """Load the dump into a fresh scratch database on ``server_url``'s server and compare fingerprints."""
    prefix = f"runs/{run_key}/backup"
    manifest = json.loads(store.get(f"{prefix}/manifest.json"))
    obj = manifest["objects"][0]
    conn, _ = _args(server_url)
    client = _client("mariadb", "mysql")
    scratch = f"cutover_restore_{uuid.uuid4().hex[:10]}"
    _run([client, *conn, "-e", f"CREATE DATABASE `{scratch}` CHARACTER SET utf8mb4"])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sealed, dump = Path(tmp) / "legacy.sql.enc", Path(tmp) / "legacy.sql"
            sealed.write_bytes(store.get(obj["key"], sha256=obj["sha256"]))
            decrypt_file(sealed, dump, key)
            with dump.open("rb") as source:
                _run([client, *conn, scratch], stdin=source)
        base = urlsplit(server_url)
        prints = fingerprint(base._replace(path="/" + scratch).geturl())
    finally:
        _run([client, *conn, "-e", f"DROP DATABASE IF EXISTS `{scratch}`"])
    differ = sorted(t for t in manifest["tables"] if prints.get(t) != manifest["tables"][t])
    if differ:
        raise IntegrityError(f"backup {run_key}: restored tables differ from the source: {differ}")
    verified = {"run_key": run_key, "verified_at": now.isoformat(), "tables": len(prints)}
    store.put(f"{prefix}/verified.json", json.dumps(verified).encode())
    return verified
