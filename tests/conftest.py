"""Shared fixtures: real databases, never mocks.

PostgreSQL: the system server at 127.0.0.1:5432 when it answers (CI has one), else an embedded
``pgserver`` under the test's temporary folder. MariaDB: the system server at 127.0.0.1:3306;
without one the MariaDB tests skip on a laptop and fail in CI (``CI=true``), where it must run.
``CUTOVER_TEST_EMBEDDED_ONLY=1`` ignores the system servers, as on a fresh machine.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_helpers import run_cutover

IN_CI = os.environ.get("CI", "").lower() == "true"
SYSTEM_PG = os.environ.get("CUTOVER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SYSTEM_MARIADB = os.environ.get("CUTOVER_TEST_MARIADB", "mysql://root@127.0.0.1:3306/")


def _answers(host: str, port: int) -> bool:
    if os.environ.get("CUTOVER_TEST_EMBEDDED_ONLY") == "1":
        return False  # behave as on a fresh machine: embedded PostgreSQL, no MariaDB
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip on a developer's machine without the service; fail in CI, where it must run."""
    if _answers(host, port):
        return
    if IN_CI:
        pytest.fail(f"{name} is not running on {host}:{port}, and CI=true requires it")
    pytest.skip(f"{name} is not running on {host}:{port}")


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser URL to a PostgreSQL server: the system one, or an embedded one."""
    if _answers("127.0.0.1", 5432):
        yield SYSTEM_PG
        return
    if IN_CI:
        pytest.fail("PostgreSQL is not running on 127.0.0.1:5432, and CI=true requires it")
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


def _with_db(url: str, dbname: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url)._replace(path="/" + dbname).geturl()


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_db(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB database for one test, dropped afterwards."""
    require_service("MariaDB", "127.0.0.1", 3306)
    import pymysql

    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield f"{SYSTEM_MARIADB.rstrip('/')}/{name}"
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture
def cutover_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated state folder (embedded services, staging, evidence) for one test."""
    home = tmp_path / "state"
    home.mkdir()
    monkeypatch.setenv("CUTOVER_HOME", str(home))
    return home


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A state folder for ``cutover`` runs; its embedded PostgreSQL, if a run started one, is stopped afterwards."""
    folder = tmp_path / "state"
    folder.mkdir()
    yield folder
    run_cutover(["stop"], folder)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API server on loopback (moto's server mode); boto3 talks to it over HTTP."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
