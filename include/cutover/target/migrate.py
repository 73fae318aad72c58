"""Create and upgrade the target database with versioned SQL migrations.

The migrations are the plain SQL files ``migrations/V<NNN>__<name>.sql`` next to this module, applied
in version order. Each runs in its own transaction, under a transaction-scoped advisory lock
(``pg_advisory_xact_lock``), so two runners started at once (two Airflow tasks, a task and an
operator) serialise: the second waits, then finds the version applied and moves on. Every applied
version is recorded in ``migration.schema_version`` with its name and the sha256 of its text; a file
that changed after it was applied is refused, as is a database that is ahead of (or out of step with)
the files this code ships.

A migration file must not contain ``BEGIN``/``COMMIT`` nor statements that cannot run in a
transaction (``CREATE INDEX CONCURRENTLY``): the runner owns the transaction.

Typical use (a task body)::

    from cutover.target import upgrade

    applied = upgrade(target_url)  # [] when the schema is current
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

from cutover.errors import IntegrityError, TerminalError, TransientError

log = logging.getLogger(__name__)

MIGRATION_FILE = re.compile(r"^V(?P<version>[0-9]{3,})__(?P<name>[a-z0-9_]+)\.sql$")
"""A migration file name: ``V001__pt_schema.sql`` (version 1, name ``pt_schema``)."""

BOOTSTRAP_FILE = "bootstrap.sql"
"""The runner's history table, created (if missing) before each migration; not a versioned migration."""

LOCK_KEY = int.from_bytes(hashlib.sha256(b"cutover.target.migrate").digest()[:8], "big", signed=True)
"""The advisory-lock key all runners share (a fixed 64-bit number derived from this module's name)."""

APPLICATION_NAME = "cutover-migrate"


@dataclass(frozen=True)
class Migration:
    """One versioned migration file."""

    version: int
    name: str
    sql: str
    checksum: str
    """sha256 (hex) of the UTF-8 text with line endings normalised to LF."""


def checksum(text: str) -> str:
    """sha256 of a migration's text, independent of the checkout's line endings.

    >>> checksum("SELECT 1;\\r\\n") == checksum("SELECT 1;\\n")
    True
    >>> len(checksum(""))
    64
    """
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def _directory(directory: Path | Traversable | None) -> Traversable:
    if directory is None:
        return resources.files("cutover.target").joinpath("migrations")
    return directory


def load_migrations(directory: Path | Traversable | None = None) -> tuple[Migration, ...]:
    """The migrations in ``directory`` (the package's own by default), in version order.

    Files that do not match :data:`MIGRATION_FILE` (the bootstrap, notes) are ignored; two files
    with the same version are a broken contract.

    >>> [(m.version, m.name) for m in load_migrations()][:2]
    [(1, 'pt_schema'), (2, 'migration_schema')]
    """
    found: dict[int, Migration] = {}
    for entry in _directory(directory).iterdir():
        match = MIGRATION_FILE.match(entry.name)
        if not match or not entry.is_file():
            continue
        version = int(match["version"])
        if version == 0:
            raise TerminalError(f"migration file {entry.name}: version 0 is reserved for an empty database")
        if version in found:
            raise TerminalError(f"two migration files share version {version}")
        text = entry.read_text(encoding="utf-8")
        found[version] = Migration(version, match["name"], text, checksum(text))
    return tuple(found[v] for v in sorted(found))


def _bootstrap_sql() -> str:
    # Always the package's own, also when a test passes another directory of migrations.
    return (
        resources.files("cutover.target").joinpath("migrations", BOOTSTRAP_FILE).read_text(encoding="utf-8")
    )


def _connect(url: str) -> psycopg.Connection[TupleRow]:
    try:
        return psycopg.connect(url, autocommit=True, application_name=APPLICATION_NAME)
    except psycopg.OperationalError as exc:
        # The URL may carry a password: name the failure, not the URL.
        raise TransientError(f"cannot connect to the target database ({type(exc).__name__})") from exc


def _check_history(applied: dict[int, tuple[str, str]], files: dict[int, Migration]) -> None:
    """Refuse a database whose history does not match the files this code ships."""
    for version in sorted(applied):
        name, recorded = applied[version]
        migration = files.get(version)
        if migration is None:
            raise IntegrityError(
                f"migration V{version:03d} ({name}) is applied but has no file here: "
                "the database is newer than this code"
            )
        if recorded.strip() != migration.checksum:
            raise IntegrityError(
                f"migration V{version:03d} ({migration.name}) changed after it was applied: "
                "checksum differs from migration.schema_version; write a new migration instead"
            )
    if applied:
        latest = max(applied)
        late = [v for v in files if v < latest and v not in applied]
        if late:
            raise IntegrityError(
                f"migration(s) {', '.join(f'V{v:03d}' for v in late)} are older than the applied "
                f"V{latest:03d} but were never applied: renumber them after V{latest:03d}"
            )


def upgrade(
    url: str, *, to_version: int | None = None, directory: Path | Traversable | None = None
) -> list[int]:
    """Apply the pending migrations to the database at ``url``; return the versions this call applied.

    ``url`` is a libpq URL (``postgresql://user@host:5432/db``, may carry ``?host=/socket/dir``).
    Re-running on a current database applies nothing and returns ``[]``. ``to_version`` stops after
    that version (tests of data migrations); ``directory`` replaces the package's migrations (tests).

    Raises :class:`~cutover.errors.IntegrityError` when an applied file changed (naming the version),
    when the database holds a version this code does not ship, or when a pending version is older
    than the latest applied one; :class:`~cutover.errors.TerminalError` when a migration's SQL fails;
    :class:`~cutover.errors.TransientError` when the database cannot be reached or the connection drops.
    """
    migrations = load_migrations(directory)
    files = {m.version: m for m in migrations}
    bootstrap = _bootstrap_sql()
    done: list[int] = []
    with _connect(url) as conn:
        while True:
            # One migration per transaction; the lock is released at each commit, so a concurrent
            # runner interleaves safely and re-reads the history before doing anything.
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                    conn.execute(bootstrap.encode("utf-8"))
                    rows = conn.execute(
                        "SELECT version, name, checksum FROM migration.schema_version"
                    ).fetchall()
                    applied = {int(v): (str(n), str(c)) for v, n, c in rows}
                    _check_history(applied, files)
                    pending = [
                        m
                        for m in migrations
                        if m.version not in applied and (to_version is None or m.version <= to_version)
                    ]
                    if not pending:
                        break
                    _apply(conn, pending[0])
            except psycopg.OperationalError as exc:
                raise TransientError(f"target database failed during upgrade ({type(exc).__name__})") from exc
            done.append(pending[0].version)
    if done:
        log.info("target schema upgraded: applied %s", ", ".join(f"V{v:03d}" for v in done))
    else:
        log.info("target schema is current")
    return done


def _apply(conn: psycopg.Connection[TupleRow], migration: Migration) -> None:
    started = time.perf_counter()
    try:
        # No parameters: psycopg sends the file as one simple query, several statements allowed.
        conn.execute(migration.sql.encode("utf-8"))
    except psycopg.OperationalError:
        raise
    except psycopg.Error as exc:
        primary = exc.diag.message_primary or type(exc).__name__
        raise TerminalError(
            f"migration V{migration.version:03d} ({migration.name}) failed: {exc.sqlstate} {primary}"
        ) from exc
    conn.execute(
        "INSERT INTO migration.schema_version (version, name, checksum) VALUES (%s, %s, %s)",
        (migration.version, migration.name, migration.checksum),
    )
    log.info(
        "applied migration V%03d (%s) in %.2f s",
        migration.version,
        migration.name,
        time.perf_counter() - started,
    )


def current_version(url: str) -> int:
    """The highest applied migration version, 0 on an empty database (nothing is created)."""
    with _connect(url) as conn:
        try:
            exists = conn.execute("SELECT to_regclass('migration.schema_version') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return 0
            row = conn.execute("SELECT coalesce(max(version), 0) FROM migration.schema_version").fetchone()
        except psycopg.OperationalError as exc:
            raise TransientError(
                f"target database failed reading the schema version ({type(exc).__name__})"
            ) from exc
    return int(row[0]) if row else 0
