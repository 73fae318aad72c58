"""MariaDB/MySQL legacy databases: ``mariadb-dump`` in one transaction, loaded into a scratch database.

``--single-transaction`` takes a consistent snapshot of InnoDB tables without locking the legacy
application out; ``--hex-blob`` keeps attachments (``documents.content``) byte-exact in the SQL
text; ``--routines`` keeps stored procedures. The client programs come from the server's own
packages (``mariadb-client``); ``mysqldump``/``mysql`` are used where the MariaDB names are missing.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cutover.errors import ConfigError, TerminalError

log = logging.getLogger(__name__)


def _client(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(f"none of {', '.join(names)} is installed (Debian: mariadb-client)")


@contextmanager
def _options(url: str) -> Iterator[tuple[list[str], str]]:
    """Client options for ``url`` and its database name; the password goes through a 0600 option
    file that lives as long as the call (a command line shows in ``ps``)."""
    parts = urlsplit(url)
    with tempfile.TemporaryDirectory(prefix="cutover-my-") as tmp:
        lines = [
            "[client]",
            f"host={parts.hostname or '127.0.0.1'}",
            f"port={parts.port or 3306}",
            f"user={unquote(parts.username or 'root')}",
        ]
        if parts.password:
            lines.append(f"password={unquote(parts.password)}")
        path = Path(tmp) / "client.cnf"
        path.touch(mode=0o600)
        path.write_text("\n".join(lines) + "\n")
        # --defaults-extra-file must come first on the command line
        yield [f"--defaults-extra-file={path}"], unquote(parts.path.lstrip("/"))


def _run(program: str, args: list[str], **kw: Any) -> None:
    kw.setdefault("stdout", subprocess.PIPE)
    done = subprocess.run([program, *args], stderr=subprocess.PIPE, **kw)
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise TerminalError(f"{Path(program).name} failed ({done.returncode}): {last}")


def snapshot(legacy_url: str, workdir: Path) -> list[Path]:
    """A consistent SQL dump of the legacy database into ``workdir/legacy.sql``."""
    dump = workdir / "legacy.sql"
    dumper = _client("mariadb-dump", "mysqldump")
    dump.unlink(missing_ok=True)
    fd = os.open(dump, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # PHI: private whatever the umask
    os.fchmod(fd, 0o600)
    with _options(legacy_url) as (conn, database), os.fdopen(fd, "wb") as out:
        _run(dumper, [*conn, "--single-transaction", "--hex-blob", "--routines", database], stdout=out)
    return [dump]


def restore(files: list[Path], scratch_url: str) -> None:
    with _options(scratch_url) as (conn, database), files[0].open("rb") as source:
        _run(_client("mariadb", "mysql"), [*conn, database], stdin=source)


@contextmanager
def scratch(server_url: str) -> Iterator[str]:
    """A fresh database on ``server_url``'s server, dropped afterwards.

    It holds a restored copy of the legacy data, so it is dropped on every exit; when the drop
    fails while another error propagates, that error wins and the leftover is logged by name.
    """
    client = _client("mariadb", "mysql")
    name = f"cutover_restore_{uuid.uuid4().hex[:10]}"
    with _options(server_url) as (conn, _):
        _run(client, [*conn, "-e", f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"])
    finished = False
    try:
        yield urlsplit(server_url)._replace(path="/" + name).geturl()
        finished = True
    finally:
        try:
            with _options(server_url) as (conn, _):
                _run(client, [*conn, "-e", f"DROP DATABASE IF EXISTS `{name}`"])
        except (TerminalError, OSError) as exc:
            if finished:
                raise
            log.warning(
                "could not drop the scratch database %s (%s): drop it by hand", name, type(exc).__name__
            )
