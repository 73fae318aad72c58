"""SQLite legacy databases: snapshot with the online backup API, restore into a scratch file.

The online backup API copies a consistent image of the database while the legacy application
may still be reading it (it restarts the copy if a writer changes a page meanwhile). Attachments
(``documents.content``) are BLOBs inside the file, so they are in the snapshot.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cutover.errors import ConfigError
from cutover.legacy.source import sqlite_path


def snapshot(legacy_url: str, workdir: Path) -> list[Path]:
    """Copy the database into ``workdir/legacy.db``, pages at a time."""
    path = Path(sqlite_path(legacy_url))
    if not path.is_file():
        raise ConfigError(f"legacy_db: no SQLite file at {path.name}")
    copy = workdir / "legacy.db"
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        with target:
            source.backup(target, pages=4096)
    finally:
        source.close()
        target.close()
    return [copy]


def restore(files: list[Path], scratch_url: str) -> None:
    """The snapshot is the database: move it where the scratch URL points."""
    shutil.copyfile(files[0], sqlite_path(scratch_url))


@contextmanager
def scratch() -> Iterator[str]:
    """A scratch SQLite database in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="cutover-restore-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'restored.db'}"
