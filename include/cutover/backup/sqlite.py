"""SQLite legacy databases: snapshot with the online backup API, restore into a scratch file.

The online backup API copies a consistent image of the database while the legacy application
may still be reading it (it restarts the copy if a writer changes a page meanwhile). Attachments
(``documents.content``) are BLOBs inside the file, so they are in the snapshot.

Python's ``Connection.backup`` retries a step that finds either database locked for as long as
the lock lasts, in C, without running Python signal handlers: a copy held open by a reader that a
failed try left behind made a retry wait forever, deaf to SIGTERM and SIGINT. So the snapshot is
always written to a new file (a leftover copy is removed first, never reused), and a progress
callback runs after every step, which lets signals through and gives up with a TransientError
once a lock has lasted :data:`LOCKED_SECONDS`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from cutover.errors import ConfigError, TerminalError, TransientError
from cutover.legacy.source import sqlite_path

PAGES_PER_STEP = 4096
LOCKED_SECONDS = 300.0
"""How long a snapshot waits for a locked database before it fails (a retry may then succeed)."""
BUSY_STEP_SECONDS = 1.0
"""SQLite's own busy wait inside one backup step: short, so the progress callback (signals, the
deadline) runs at least this often while a lock lasts."""


def _lock_deadline(name: str, seconds: float) -> Callable[[int, int, int], None]:
    """The backup's progress callback: raises once either side has been locked for ``seconds``."""
    locked_since: float | None = None

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal locked_since
        if status not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            locked_since = None
            return
        now = time.monotonic()
        if locked_since is None:
            locked_since = now
        elif now - locked_since >= seconds:
            raise TransientError(
                f"snapshot of the SQLite legacy database {name}: locked for {seconds:.0f}s "
                f"({remaining} of {total} pages left); retry once the lock is released"
            )

    return progress


def _new_private_file(path: Path) -> None:
    """An empty file at ``path``, mode 0600 (it will hold PHI), replacing whatever was there."""
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def snapshot(legacy_url: str, workdir: Path, *, locked_seconds: float = LOCKED_SECONDS) -> list[Path]:
    """Copy the database into ``workdir/legacy.db``, pages at a time; both handles closed on every path."""
    path = Path(sqlite_path(legacy_url))
    if not path.is_file():
        raise ConfigError(f"legacy_db: no SQLite file at {path.name}")
    copy = workdir / "legacy.db"
    _new_private_file(copy)
    try:
        with (
            closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_STEP_SECONDS)) as source,
            closing(sqlite3.connect(copy, timeout=BUSY_STEP_SECONDS)) as target,
        ):
            source.backup(target, pages=PAGES_PER_STEP, progress=_lock_deadline(path.name, locked_seconds))
    except sqlite3.OperationalError as exc:  # locked, busy, I/O: another try may succeed
        raise TransientError(
            f"snapshot of the SQLite legacy database {path.name} failed ({type(exc).__name__})"
        ) from exc
    except sqlite3.Error as exc:  # not a database, corrupt: retrying cannot help
        raise TerminalError(
            f"snapshot of the SQLite legacy database {path.name} failed ({type(exc).__name__})"
        ) from exc
    return [copy]


def restore(files: list[Path], scratch_url: str) -> None:
    """The snapshot is the database: move it where the scratch URL points."""
    shutil.copyfile(files[0], sqlite_path(scratch_url))


@contextmanager
def scratch() -> Iterator[str]:
    """A scratch SQLite database in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="cutover-restore-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'restored.db'}"
