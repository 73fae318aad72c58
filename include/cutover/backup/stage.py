"""The backup stages: snapshot, encrypt and store, restore test, mark verified; and the cutover's gate.

A backup lives in the staging store under ``runs/<run key>/backup/``: the encrypted snapshot
(``legacy.db.enc``, ``legacy.dump.enc`` or ``legacy.sql.enc``), ``manifest.json`` and, once a
restore test has passed, ``verified.json``. The manifest lists every object (key, bytes,
SHA-256 of the encrypted and of the plain bytes), the source's fingerprint (``source``: the
fingerprint's version, the dialect and the database's identity; ``tables``: per-table row counts
and content checksums, :mod:`cutover.backup.fingerprint`), the key's id (never the key) and
when it was taken.

A backup belongs to one source: the cutover's gate (:func:`require_verified_backup`) accepts only
a verified, recent backup whose fingerprint matches the legacy database the run reads, now
(:class:`LiveSource`), and otherwise names every backup it saw and why it refused each. Attachments (``documents.content``) live inside the legacy database, so the
snapshot holds them and the ``documents`` checksum covers their bytes.

The restore test decrypts into a scratch database of the same engine, recomputes the
fingerprints there with the same code and compares them with the manifest; only a full match
writes ``verified.json``, which records the SHA-256 of the manifest it verified.

Consistency: the snapshot is consistent by itself (online backup API, pg_dump's snapshot,
``--single-transaction``). The source fingerprints of a server database are read right after
the dump, outside its snapshot: if the legacy application writes in between, the restore test
fails (a false alarm, never a false pass). Take the backup once the practice has stopped
entering data, as the cutover runbook says anyway.

Plaintext on disk: the snapshot waits in ``<state folder>/backup-work/<run key>/`` (0700) only
between ``snapshot_legacy`` and ``encrypt_and_store``. A snapshot or fingerprint that fails
removes its folder before the error propagates, ``encrypt_and_store`` and the restore test remove
theirs on every exit, and each new snapshot first removes whatever a killed process left in
``backup-work/`` (``pt_backup`` runs one at a time: ``max_active_runs`` is 1), logging paths only.
An unexpected error while snapshotting or fingerprinting is re-raised as a Cutover error naming the
table (ids and counts, never a value).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from cutover.backup import delivered, mariadb, postgres, sqlite
from cutover.backup import fingerprint as fp
from cutover.backup.crypto import CHUNK, backup_key, decrypt_file, encrypt_file, key_id
from cutover.backup.fingerprint import TableFingerprint, fingerprint, is_transient
from cutover.config import state_dir
from cutover.errors import ConfigError, CutoverError, IntegrityError, TerminalError, TransientError
from cutover.legacy.profile import legacy_tables
from cutover.legacy.schema import Dialect
from cutover.legacy.source import dialect_of
from cutover.pipeline import run_key
from cutover.staging.store import LocalStore, S3Store, Store, open_store, private_dirs

log = logging.getLogger(__name__)

ScratchFactory = Callable[[Dialect], AbstractContextManager[str]]
"""Given the backup's dialect, a context manager yielding the URL of an empty scratch database
of that engine, which it drops on exit."""

_ENGINES = {"sqlite": sqlite, "postgresql": postgres, "mysql": mariadb, "csv": delivered}


class BackupGateError(TerminalError):
    """No verified backup recent enough: the cutover must not start."""


class ObjectEntry(TypedDict):
    key: str
    bytes: int
    sha256: str
    plain_bytes: int
    plain_sha256: str
    chunks: int


class SnapshotInfo(TypedDict):
    """What ``snapshot_legacy`` hands on through XCom: names, sizes and counts."""

    run_key: str
    dialect: str
    files: dict[str, int]
    tables: dict[str, int]


class SourceFingerprint(TypedDict):
    """Which database a backup is of: the fingerprint's version, the dialect and the database's
    identity (:func:`cutover.backup.fingerprint.identity`); its per-table counts and checksums are
    the manifest's ``tables``."""

    version: int
    dialect: str
    identity: dict[str, str]


class BackupManifest(TypedDict):
    run_key: str
    dialect: str
    created_at: str
    contents: str
    encryption: dict[str, Any]
    objects: list[ObjectEntry]
    source: SourceFingerprint
    tables: dict[str, TableFingerprint]
    delivered: NotRequired[dict[str, dict[str, Any]]]
    """A CSV delivery's backup: per snapshot file, its delivery, SHA-256 and records as taken."""


@dataclass(frozen=True)
class VerifyResult:
    """The restore test's comparison, table by table (counts and checksums only)."""

    run_key: str
    dialect: str
    manifest_sha256: str
    tables: dict[str, dict[str, Any]]
    seconds: float
    mismatched: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.mismatched

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_key": self.run_key,
            "dialect": self.dialect,
            "manifest_sha256": self.manifest_sha256,
            "tables": self.tables,
            "seconds": self.seconds,
            "mismatched": list(self.mismatched),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifyResult:
        return cls(
            run_key=data["run_key"],
            dialect=data["dialect"],
            manifest_sha256=data["manifest_sha256"],
            tables=data["tables"],
            seconds=data["seconds"],
            mismatched=tuple(data["mismatched"]),
        )


@dataclass(frozen=True)
class BackupInfo:
    """The backup that lets a cutover start: verified, young enough, and of the legacy database the
    run reads (its identity, and every table's count and checksum as they are now)."""

    run_key: str
    dialect: str
    created_at: datetime
    verified_at: datetime
    age: timedelta
    objects: int
    rows: int
    refused: tuple[str, ...] = ()
    """Newer backups passed over, each with why (ids and counts only)."""
    check_seconds: float = 0.0
    """What comparing the legacy database with the backups' fingerprints took."""


def prefix(run_id: str) -> str:
    return f"runs/{run_key(run_id)}/backup"


def work_root() -> Path:
    """``<state folder>/backup-work``: the only place a backup writes plaintext."""
    return state_dir() / "backup-work"


def work_dir(run_id: str) -> Path:
    """Where the plaintext snapshot waits to be encrypted: under the state folder, mode 0700 (and
    ``backup-work/`` itself), whatever the umask."""
    folder = work_root() / run_key(run_id)
    private_dirs(folder)
    os.chmod(work_root(), 0o700)
    os.chmod(folder, 0o700)
    return folder


def remove_work(path: Path) -> bool:
    """Remove a work folder or file (it may hold plaintext); True when it is gone. Logs the path only."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    if path.exists() or path.is_symlink():
        log.warning("could not remove the backup work path %s: remove it by hand (it may hold PHI)", path)
        return False
    return True


def sweep_work() -> list[str]:
    """Remove everything under ``backup-work/`` (dot-files included): what failed or killed backups
    left there. Returns the names removed; logs each path, never a content."""
    root = work_root()
    if not root.is_dir():
        return []
    removed = []
    for leftover in sorted(root.iterdir()):
        if remove_work(leftover):
            log.warning("removed a leftover of an earlier backup: %s", leftover)
            removed.append(leftover.name)
    return removed


def snapshot(legacy_url: str, workdir: Path) -> list[Path]:
    """A consistent snapshot of the whole legacy database as files in ``workdir`` (plaintext: PHI).

    An error that is not a Cutover error is re-raised as one (transient for a lost connection or
    a lock, else terminal), naming the engine and the error's type, never its message.
    """
    dialect = dialect_of(legacy_url)
    try:
        return list(_ENGINES[dialect].snapshot(legacy_url, workdir))
    except CutoverError:
        raise
    except Exception as exc:
        kind = TransientError if is_transient(exc) else TerminalError
        raise kind(f"snapshot of the {dialect} legacy database failed ({type(exc).__name__})") from exc


def snapshot_legacy(legacy_url: str, run_id: str, *, store_url: str | None = None) -> SnapshotInfo:
    """Snapshot into the run's work folder and fingerprint the source (stage 1 of pt_backup).

    A CSV delivery (``legacy_url`` names one; ``store_url`` holds what the run took) is backed up as
    its files (:mod:`cutover.backup.delivered`), fingerprinted as the pipeline reads them.

    Starts from an empty ``backup-work/`` (:func:`sweep_work`); on any failure the run's folder is
    removed before the error propagates, so no plaintext is left and nothing blocks a retry.
    """
    from cutover.legacy.transport import is_delivery

    started = time.perf_counter()
    csv = is_delivery(legacy_url)
    dialect = "csv" if csv else dialect_of(legacy_url)
    sweep_work()
    folder = work_dir(run_id)
    try:
        facts: dict[str, Any] = {}
        if csv:
            from cutover.legacy.delivery import database, run_delivery

            if store_url is None:
                raise ConfigError("a backup of a CSV delivery needs the staging store the run took it into")
            chain = run_delivery(store_url, run_id)["chain"]
            source = SourceFingerprint(
                version=fp.VERSION, dialect=dialect, identity={"deliveries": ",".join(chain)}
            )
            files, facts = delivered.snapshot(store_url, run_id, folder)
            tables = fingerprint(database(store_url, run_id))
        else:
            source = SourceFingerprint(version=fp.VERSION, dialect=dialect, identity=fp.identity(legacy_url))
            files = snapshot(legacy_url, folder)
            # SQLite: the snapshot file is the source at one instant, so fingerprint it, not the live file
            tables = fingerprint(f"sqlite:///{files[0]}" if dialect == "sqlite" else legacy_url)
        (folder / "snapshot.json").write_text(
            json.dumps(
                {"files": [f.name for f in files], "source": source, "tables": tables, "delivered": facts}
            )
        )
    except BaseException:
        if remove_work(folder):  # no plaintext left behind
            log.info("snapshot %s failed: removed its work folder %s", run_key(run_id), folder)
        raise
    log.info(
        "snapshot %s of the %s legacy database: %d files, %d bytes, %d tables, %.1fs",
        run_key(run_id),
        dialect,
        len(files),
        sum(f.stat().st_size for f in files),
        len(tables),
        time.perf_counter() - started,
    )
    return SnapshotInfo(
        run_key=run_key(run_id),
        dialect=dialect,
        files={f.name: f.stat().st_size for f in files},
        tables={t: fp["rows"] for t, fp in tables.items()},
    )


def _s3_key(store: S3Store, key: str) -> str:
    return f"{store.prefix}/{key}" if store.prefix else key


def _put_file(store: Store, key: str, path: Path, sha256: str) -> None:
    """Store a file streamed from disk: a multi-GB backup never sits in memory.

    ``Store.put`` takes bytes, so the two stores are written here directly, with the same
    guarantees: atomic rename and mode 0600 on a folder; on S3 the store's SSE, Object Lock retention and a
    SHA-256 checksum that S3 verifies (a single PUT: up to 5 GB an object).
    """
    if isinstance(store, LocalStore):
        store.put_file(key, path)  # an .enc object: kept as it is (0600, atomic), streamed
        return
    if isinstance(store, S3Store):
        from botocore.exceptions import BotoCoreError, ClientError

        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        args: dict[str, Any] = {
            "Bucket": store.bucket,
            "Key": _s3_key(store, key),
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": checksum,
            "ServerSideEncryption": store.sse,
            "Metadata": {"sha256": sha256},
        }
        if store.sse == "aws:kms" and store.kms_key_id:
            args["SSEKMSKeyId"] = store.kms_key_id
        if store.object_lock_days:
            args["ObjectLockMode"] = "COMPLIANCE"
            args["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=store.object_lock_days)
        try:
            with path.open("rb") as body:
                response = store.client.put_object(Body=body, **args)
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"S3 put failed for {key}: {type(exc).__name__}") from exc
        if response.get("ChecksumSHA256") != checksum:
            raise IntegrityError(f"S3 did not confirm the SHA-256 of {key}")
        return
    info = store.put(key, path.read_bytes())
    if info.sha256 != sha256:
        raise IntegrityError(f"{key}: the stored object's SHA-256 differs from the encrypted file's")


def _get_file(store: Store, key: str, sha256: str, path: Path) -> None:
    """Fetch an object to a file, streamed and checked against the manifest's SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as fout:
        if isinstance(store, LocalStore):
            with (store.root / key).open("rb") as fin:
                while block := fin.read(1 << 20):
                    digest.update(block)
                    fout.write(block)
        elif isinstance(store, S3Store):
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                body = store.client.get_object(Bucket=store.bucket, Key=_s3_key(store, key))["Body"]
                for block in body.iter_chunks(1 << 20):
                    digest.update(block)
                    fout.write(block)
            except (BotoCoreError, ClientError) as exc:
                raise TransientError(f"S3 get failed for {key}: {type(exc).__name__}") from exc
        else:
            data = store.get(key)
            digest.update(data)
            fout.write(data)
    if digest.hexdigest() != sha256:
        raise IntegrityError(f"backup object {key} does not match its manifest checksum")


def encrypt_and_store(
    store_url: str, run_id: str, key: bytes, *, now: datetime, chunk: int = CHUNK
) -> BackupManifest:
    """Encrypt the run's snapshot, store it with ``manifest.json``; the plaintext is removed."""
    folder = state_dir() / "backup-work" / run_key(run_id)
    if not (folder / "snapshot.json").exists():
        raise ConfigError(
            f"no snapshot of run {run_key(run_id)} on this machine: run snapshot_legacy here first "
            "(the plaintext snapshot never leaves the worker that took it)"
        )
    objects: list[ObjectEntry] = []
    try:
        store = open_store(store_url)
        taken = json.loads((folder / "snapshot.json").read_text())
        for name in taken["files"]:
            plain, sealed_path = folder / name, folder / f"{name}.enc"
            sealed = encrypt_file(plain, sealed_path, key, chunk=chunk)
            plain.unlink()
            object_key = f"{prefix(run_id)}/{sealed_path.name}"
            _put_file(store, object_key, sealed_path, sealed.sealed_sha256)
            objects.append(
                ObjectEntry(
                    key=object_key,
                    bytes=sealed.sealed_bytes,
                    sha256=sealed.sealed_sha256,
                    plain_bytes=sealed.plain_bytes,
                    plain_sha256=sealed.plain_sha256,
                    chunks=sealed.chunks,
                )
            )
        manifest = BackupManifest(
            run_key=run_key(run_id),
            dialect=taken["source"]["dialect"],
            created_at=now.isoformat(),
            contents="the delivered CSV files, as taken (SHA-256 of each in delivered)"
            if taken["source"]["dialect"] == "csv"
            else "the whole legacy database, attachments (documents.content) included",
            encryption={"algorithm": "AES-256-GCM", "chunk_bytes": chunk, "key_id": key_id(key)},
            objects=objects,
            source=taken["source"],
            tables=taken["tables"],
        )
        if taken.get("delivered"):
            manifest["delivered"] = taken["delivered"]
        store.put(f"{prefix(run_id)}/manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    finally:
        remove_work(folder)
    log.info(
        "stored backup %s: %d objects, %d bytes",
        run_key(run_id),
        len(objects),
        sum(o["bytes"] for o in objects),
    )
    return manifest


def back_up(legacy_url: str, store_url: str, run_id: str, key: bytes, *, now: datetime) -> BackupManifest:
    """Snapshot, encrypt and store in one call."""
    snapshot_legacy(legacy_url, run_id)
    return encrypt_and_store(store_url, run_id, key, now=now)


def scratch_on(server_url: str | None) -> ScratchFactory:
    """Scratch databases: SQLite in a temporary folder; PostgreSQL or MariaDB on ``server_url``'s server."""

    @contextmanager
    def factory(dialect: Dialect) -> Iterator[str]:
        if dialect in {"sqlite", "csv"}:  # a delivery is restored by reading its files into SQLite
            with sqlite.scratch() as url:
                yield url
            return
        if not server_url or dialect_of(server_url) != dialect:
            raise ConfigError(
                f"restore test: a {dialect} backup needs a {dialect} server for its scratch database"
            )
        engine = postgres if dialect == "postgresql" else mariadb
        with engine.scratch(server_url) as url:
            yield url

    return factory


def restore_test(
    store_url: str, run_id: str, scratch_url_factory: ScratchFactory, key: bytes
) -> VerifyResult:
    """Decrypt the backup, restore it into a scratch database and compare its fingerprints."""
    started = time.perf_counter()
    store = open_store(store_url)
    raw = store.get(f"{prefix(run_id)}/manifest.json")
    manifest: BackupManifest = json.loads(raw)
    expected_key = manifest["encryption"]["key_id"]
    if key_id(key) != expected_key:
        raise ConfigError(
            f"backup {manifest['run_key']} was encrypted with key id {expected_key}, "
            f"the configured key has id {key_id(key)}"
        )
    dialect: Dialect = manifest["dialect"]  # type: ignore[assignment]
    folder = work_dir(f"{run_id}-restore")
    try:
        files = []
        for obj in manifest["objects"]:
            sealed = folder / Path(obj["key"]).name
            _get_file(store, obj["key"], obj["sha256"], sealed)
            plain = folder / sealed.name.removesuffix(".enc")
            if decrypt_file(sealed, plain, key) != obj["plain_sha256"]:
                raise IntegrityError(f"backup object {obj['key']}: decrypted bytes differ from the snapshot")
            taken = manifest.get("delivered", {}).get(plain.name)
            if taken is not None and taken["sha256"] != obj["plain_sha256"]:
                raise IntegrityError(f"backup object {obj['key']}: not the delivered file {taken['file']}")
            sealed.unlink()
            files.append(plain)
        with scratch_url_factory(dialect) as scratch_url:
            try:
                _ENGINES[dialect].restore(files, scratch_url)
            except CutoverError:
                raise
            except Exception as exc:
                kind = TransientError if is_transient(exc) else TerminalError
                raise kind(
                    f"restore test of backup {manifest['run_key']}: restoring into the scratch "
                    f"{dialect} database failed ({type(exc).__name__})"
                ) from exc
            restored = fingerprint(scratch_url)
    finally:
        remove_work(folder)
    tables = {
        t: {"rows": fp["rows"], "sha256": fp["sha256"], "match": restored.get(t) == fp}
        for t, fp in manifest["tables"].items()
    }
    mismatched = tuple(t for t, row in tables.items() if not row["match"])
    result = VerifyResult(
        run_key=manifest["run_key"],
        dialect=dialect,
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        tables=tables,
        seconds=round(time.perf_counter() - started, 3),
        mismatched=mismatched,
    )
    if mismatched:
        counts = {t: (tables[t]["rows"], restored[t]["rows"] if t in restored else None) for t in mismatched}
        raise IntegrityError(
            f"backup {result.run_key}: restored tables differ from the source (rows source, restored): {counts}"
        )
    log.info("restore test of %s passed: %d tables, %.1fs", result.run_key, len(tables), result.seconds)
    return result


def mark_verified(store_url: str, result: VerifyResult, *, now: datetime) -> dict[str, Any]:
    """Write ``verified.json`` beside the manifest; refuses a failed comparison or a changed manifest."""
    if not result.ok:
        raise IntegrityError(
            f"backup {result.run_key}: not verified, tables differ: {list(result.mismatched)}"
        )
    store = open_store(store_url)
    raw = store.get(f"runs/{result.run_key}/backup/manifest.json")
    if hashlib.sha256(raw).hexdigest() != result.manifest_sha256:
        raise IntegrityError(f"backup {result.run_key}: the manifest changed after the restore test")
    verified = {"verified_at": now.isoformat(), **result.as_dict()}
    store.put(f"runs/{result.run_key}/backup/verified.json", json.dumps(verified, indent=1).encode())
    return verified


def verify_backup(
    store_url: str,
    run_id: str,
    scratch_url_factory: ScratchFactory,
    *,
    key: bytes | None = None,
    now: datetime | None = None,
) -> VerifyResult:
    """Restore test, then ``verified.json`` only if every table matches (IntegrityError otherwise)."""
    result = restore_test(store_url, run_id, scratch_url_factory, key if key is not None else backup_key())
    mark_verified(store_url, result, now=now or datetime.now(UTC))
    return result


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


class LiveSource:
    """The legacy database a cutover is about to read, compared with backups' fingerprints.

    Every reading is cached, so several backups cost one comparison: the identity (one query),
    then per table the row count (``COUNT(*)``) and, only for a backup whose identity and counts
    all match, the full checksum (:func:`cutover.backup.fingerprint.table_fingerprint`, the
    restore test's own). The full read is the strong check, chosen because it is cheap against the
    cutover it guards: on a 2,000-patient simulated clinic (212,575 rows, SQLite) it took 1.6–1.9 s,
    against 24 s for extract → map → load → gates → reconciliation alone (``bench.pipeline_bench``'s
    child, 2 workers), before Airflow's own time; identity, counts and ``max(modified)`` would take
    0.03 s but miss an edit that keeps a table's count and its ``modified`` (a corrected id, a
    changed attachment, a bulk fix by the vendor). It reads the legacy database once more at
    about the speed of one extract worker.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = dialect_of(url)
        self._identity: dict[str, str] | None = None
        self._counts: dict[str, int] = {}
        self._tables: dict[str, TableFingerprint] = {}

    def identity(self) -> dict[str, str]:
        if self._identity is None:
            self._identity = fp.identity(self.url)
        return self._identity

    def count(self, table: str) -> int:
        if table not in self._counts:
            self._counts[table] = fp.count(self.url, table)
        return self._counts[table]

    def table(self, table: str) -> TableFingerprint:
        if table not in self._tables:
            self._tables[table] = fp.table_fingerprint(self.url, table)
        return self._tables[table]

    def refusal(self, manifest: dict[str, Any]) -> str | None:
        """Why ``manifest``'s backup is not of this database as it is now (None: it is)."""
        source = manifest.get("source")
        if not source or source.get("version") != fp.VERSION:
            return "made before backups recorded their source's fingerprint (or by another version)"
        # a delivery is read as SQLite: its backup is compared by contents, as a SQLite file's is
        live = "csv" if source["dialect"] == "csv" and self.dialect == "sqlite" else self.dialect
        if source["dialect"] != live:
            return f"another database (a {source['dialect']} backup; the legacy database is {self.dialect})"
        if self.dialect != "sqlite" and source["identity"] != self.identity():
            return "another database (identity differs)"
        recorded: dict[str, TableFingerprint] = manifest["tables"]
        missing = sorted(set(recorded) ^ set(legacy_tables()))
        if missing:
            return f"another database (tables {', '.join(missing[:5])} differ between it and the legacy database)"
        changed = {t: (f["rows"], self.count(t)) for t, f in recorded.items() if f["rows"] != self.count(t)}
        if not changed:  # counts alike: the full checksums decide
            changed = {t: (f["rows"], f["rows"]) for t, f in recorded.items() if self.table(t) != f}
        if not changed:
            return None
        if self.dialect == "sqlite" and source["identity"] != self.identity():
            # a file's contents are its identity (a copy is accepted above); its path only tells
            # a run pointed at another file from a file edited since the snapshot
            return "another database (another file, contents differ)"
        listed = ", ".join(
            f"{t} (rows {old} → {now})" if old != now else f"{t} (rows {old}, contents differ)"
            for t, (old, now) in list(changed.items())[:4]
        )
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        noun = "table" if len(changed) == 1 else "tables"
        return f"legacy {noun} {listed}{more} changed since the snapshot"


def _candidates(store: Store) -> list[tuple[datetime, str, dict[str, Any], str | None]]:
    """Every backup in the store, newest first: (taken at, run key, manifest, verified at or None).

    A backup counts as verified when its ``verified.json`` names the SHA-256 of its manifest as
    it is now."""
    keys = set(store.list("runs"))
    found = []
    for name in sorted(k for k in keys if k.endswith("/backup/manifest.json")):
        raw = store.get(name)
        manifest = json.loads(raw)
        verified_name = name.removesuffix("manifest.json") + "verified.json"
        verified_at = None
        if verified_name in keys:
            verified = json.loads(store.get(verified_name))
            if verified.get("manifest_sha256") == hashlib.sha256(raw).hexdigest():
                verified_at = verified["verified_at"]
        found.append(
            (datetime.fromisoformat(manifest["created_at"]), manifest["run_key"], manifest, verified_at)
        )
    return sorted(found, key=lambda f: f[0], reverse=True)


def require_verified_backup(
    store_url: str, legacy_url: str, *, max_age: timedelta, now: datetime
) -> BackupInfo:
    """The newest backup that is verified, taken less than ``max_age`` before ``now``, and of the
    legacy database at ``legacy_url`` as it is now (:class:`LiveSource`); else BackupGateError,
    one line naming every backup seen and why each was refused (ids and counts only).

    Age runs from when the snapshot was taken: that is what a restore would bring back.
    """
    store = open_store(store_url)
    found = _candidates(store)
    if not found:
        raise BackupGateError("refusing to start the cutover: no backup in the staging store; run pt_backup")
    live = LiveSource(legacy_url)
    started = time.perf_counter()
    refused: list[str] = []
    for created, rk, manifest, verified_at in found:
        age = now - created
        if verified_at is None:
            reason: str | None = "not verified (its restore test has not passed)"
        elif age > max_age:
            reason = f"taken {_hours(age)} ago, more than the {_hours(max_age)} allowed"
        else:
            reason = live.refusal(manifest)
        if reason is not None:
            refused.append(f"backup {rk}: {reason}")
            continue
        assert verified_at is not None
        info = BackupInfo(
            run_key=rk,
            dialect=manifest["dialect"],
            created_at=created,
            verified_at=datetime.fromisoformat(verified_at),
            age=age,
            objects=len(manifest["objects"]),
            rows=sum(f["rows"] for f in manifest["tables"].values()),
            refused=tuple(refused),
            check_seconds=round(time.perf_counter() - started, 3),
        )
        log.info(
            "backup %s matches the %s legacy database (identity, %d tables' counts and checksums; %.1fs)",
            rk,
            live.dialect,
            len(manifest["tables"]),
            info.check_seconds,
        )
        return info
    shown = "; ".join(refused[:5]) + (f"; and {len(refused) - 5} more" if len(refused) > 5 else "")
    raise BackupGateError(
        f"refusing to start the cutover: no verified backup of this {live.dialect} legacy database among "
        f"{len(found)} in the staging store: {shown}; run pt_backup"
    )
