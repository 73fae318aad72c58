"""PostgreSQL legacy databases: ``pg_dump -Fc`` in one snapshot, ``pg_restore`` into a scratch database.

pg_dump reads every table in one repeatable-read transaction, so the dump is consistent while
the legacy application runs; attachments (``bytea``) are in it. pg_dump refuses a server newer
than itself, so the client is chosen by the server's major version (:func:`pg_bin`): the
``CUTOVER_PG_BIN`` folder, Debian's ``/usr/lib/postgresql/<major>/bin``, the clients of the
``pgserver`` wheel, then ``PATH``; the same major version is preferred, else the oldest newer
one; none fits → a ConfigError that says which version to install.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

from cutover.errors import ConfigError, TerminalError, TransientError

log = logging.getLogger(__name__)


def _url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def server_major(url: str) -> int:
    try:
        with psycopg.connect(_url(url)) as conn:
            return int(conn.info.server_version) // 10000
    except psycopg.OperationalError as exc:
        raise TransientError(f"legacy PostgreSQL: cannot connect ({type(exc).__name__})") from exc


def _client_major(program: str) -> int | None:
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    found = re.search(r"\) (\d+)", out)
    return int(found.group(1)) if found else None


def _candidates(name: str) -> list[str]:
    folders = [os.environ.get("CUTOVER_PG_BIN", "")]
    folders += sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    try:
        import pgserver

        folders.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin"))
    except ImportError:
        pass
    found = [str(Path(f) / name) for f in folders if f and (Path(f) / name).is_file()]
    on_path = shutil.which(name)
    return found + ([on_path] if on_path else [])


def pg_bin(name: str, major: int) -> str:
    """The path of ``pg_dump``/``pg_restore`` fit for a server of version ``major``."""
    versions = {path: _client_major(path) for path in _candidates(name)}
    usable = sorted((v, path) for path, v in versions.items() if v is not None and v >= major)
    if not usable:
        seen = sorted({v for v in versions.values() if v is not None})
        raise ConfigError(
            f"no {name} for a PostgreSQL {major} server (found versions {seen or 'none'}); install "
            f"postgresql-client-{major} or set CUTOVER_PG_BIN to its bin folder"
        )
    return usable[0][1]


def _conninfo(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and an environment carrying it (a command line shows in ``ps``)."""
    parts = urlsplit(_url(url))
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
        netloc = parts.netloc.replace(":" + parts.password + "@", "@", 1)
        parts = parts._replace(netloc=netloc)
    return parts.geturl(), env


def run_client(args: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        # the client's stderr names objects, never row values; keep its last line only
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise TerminalError(f"{Path(args[0]).name} failed ({done.returncode}): {last}")


def snapshot(legacy_url: str, workdir: Path) -> list[Path]:
    """``pg_dump --format=custom`` of the whole legacy database into ``workdir/legacy.dump``."""
    dump = workdir / "legacy.dump"
    program = pg_bin("pg_dump", server_major(legacy_url))
    # created 0600 before pg_dump writes PHI into it (pg_dump truncates it and keeps its mode)
    dump.unlink(missing_ok=True)
    os.close(os.open(dump, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.chmod(dump, 0o600)
    log.info("pg_dump: %s", program)
    url, env = _conninfo(legacy_url)
    run_client([program, "--format=custom", "--no-owner", "--no-privileges", f"--file={dump}", url], env)
    return [dump]


def restore(files: list[Path], scratch_url: str) -> None:
    program = pg_bin("pg_restore", server_major(scratch_url))
    url, env = _conninfo(scratch_url)
    run_client(
        [program, "--no-owner", "--no-privileges", "--exit-on-error", f"--dbname={url}", str(files[0])], env
    )


@contextmanager
def scratch(server_url: str) -> Iterator[str]:
    """A fresh database on ``server_url``'s server (needs CREATEDB), dropped afterwards.

    It holds a restored copy of the legacy data, so it is dropped on every exit; when the drop
    fails while another error propagates, that error wins and the leftover is logged by name.
    """
    name = f"cutover_restore_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(_url(server_url), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ConfigError(
            "restore test: the scratch server's user (target_owner_db, else target_db) may not create a "
            "database; grant it CREATEDB or set backup_scratch_url in the staging_store connection's extra"
        ) from exc
    except psycopg.OperationalError as exc:
        raise TransientError(
            f"restore test: cannot connect to the scratch server ({type(exc).__name__})"
        ) from exc
    finished = False
    try:
        yield urlsplit(_url(server_url))._replace(path="/" + name).geturl()
        finished = True
    finally:
        try:
            with psycopg.connect(_url(server_url), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:
            if finished:
                raise TransientError(
                    f"restore test: could not drop the scratch database {name} ({type(exc).__name__}); "
                    "drop it by hand (it holds legacy data)"
                ) from exc
            log.warning(
                "could not drop the scratch database %s (%s): drop it by hand", name, type(exc).__name__
            )
