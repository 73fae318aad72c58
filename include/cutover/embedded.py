"""Embedded defaults: a real PostgreSQL from the ``pgserver`` wheel, started under the state folder.

Used whenever ``target_db`` is not configured, so ``make demo`` needs no database server.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cutover.config import state_dir

log = logging.getLogger(__name__)
# pgserver logs every handle it opens and closes at INFO, the last one at interpreter exit:
# after the CLI's closing `evidence:` line. Its warnings and errors still show.
logging.getLogger("pgserver").setLevel(logging.WARNING)

TARGET_DB = "cutover"


@cache
def _server(pgdata: Path) -> Any:
    import pgserver

    # cleanup_mode=None: the server outlives this process, so Airflow tasks in other processes share it.
    return pgserver.get_server(pgdata, cleanup_mode=None)


def embedded_postgres_url(database: str = TARGET_DB) -> str:
    """Start (or reuse) the embedded PostgreSQL and return a URL to ``database``, created if missing."""
    import psycopg

    server = _server(state_dir() / "pg")
    base = server.get_uri()
    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    url = urlsplit(base)._replace(path="/" + database).geturl()
    log.info("embedded PostgreSQL ready under %s", state_dir() / "pg")
    return url


def default_url(conn_id: str) -> str:
    """The embedded default for a connection id."""
    home = state_dir()
    if conn_id == "legacy_db":
        return f"sqlite:///{home / 'legacy.db'}"
    if conn_id == "target_db":
        return embedded_postgres_url()
    if conn_id == "staging_store":
        (home / "staging").mkdir(exist_ok=True)
        return f"file://{home / 'staging'}"
    raise ValueError(f"unknown connection id {conn_id!r}")


def stop_embedded_postgres() -> bool:
    """Stop the embedded PostgreSQL of the state folder, if one runs there; True when one was stopped."""
    import subprocess

    pgdata = state_dir() / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return False
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made at import by pgserver

    server = _server(pgdata)
    try:
        pg_ctl(["-w", "stop"], pgdata=pgdata, user=server.system_user)
    except subprocess.CalledProcessError:
        return False
    _server.cache_clear()
    return True
