"""Shared fixtures: real databases, never mocks.

PostgreSQL: the system server at 127.0.0.1:5432 when it answers (CI has one), else an embedded
``pgserver`` under the test's temporary folder. MariaDB: the system server at 127.0.0.1:3306;
without one the MariaDB tests skip on a laptop and fail in CI (``CI=true``), where it must run.
``CUTOVER_TEST_EMBEDDED_ONLY=1`` ignores the system servers, as on a fresh machine.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_helpers import run_cutover

IN_CI = os.environ.get("CI", "").lower() == "true"

# One staging/backup key for the whole session (the tests' own, never a real one): the local store
# encrypts what it stages and every manifest is signed under a key derived from it, so what a module's
# fixture staged under its CUTOVER_HOME must be readable by its tests under theirs. Tests of the
# embedded default key file clear it (monkeypatch.delenv, or "CUTOVER_BACKUP_KEY": "" for a command).
os.environ.setdefault("CUTOVER_BACKUP_KEY", base64.b64encode(b"cutover-test-key-not-for-data-!!").decode())
SYSTEM_PG = os.environ.get("CUTOVER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SYSTEM_MARIADB = os.environ.get("CUTOVER_TEST_MARIADB", "mysql://root@127.0.0.1:3306/")


HEAVIEST = (
    "tests/integration/test_cutover_dags.py::test_trial_then_big_bang",
    "tests/integration/test_webpt_e2e.py::",
    "tests/browser/test_airflow_ui.py::",
    "tests/integration/test_celery.py::test_assess_backup_and_cutover",
    "tests/integration/test_hostile_data.py::",
    "tests/integration/test_cutover_dags.py::test_phased_waves",
    "tests/integration/test_least_privilege.py::test_backup_trial_and_cutover_dags_run_as_the_compose_roles",
    "tests/integration/test_demo.py::test_demo_on_embedded_defaults",
    "tests/integration/test_rollback.py::test_cutover_run_pt_rollback_after_pt_cutover",
    "tests/integration/test_delivery_e2e.py::",
    "tests/integration/test_demo.py::test_mariadb_legacy_into_system_postgres",
    "tests/integration/test_profile_layout_e2e.py::",
    "tests/integration/test_airflow_access.py::test_roles_enforced_by_the_api",
    "tests/integration/test_operator_audit.py::test_the_api_records_who_cleared_and_marked",
    "tests/integration/test_compose_roles.py::test_airflow_init_syncs_the_cutover_roles",
    "tests/integration/test_assess_dag.py::test_cutover_run_pt_assess",
    "tests/integration/test_cutover_dags.py::test_cutover_refuses_to_start",
    "tests/integration/test_backup_dag.py::test_cutover_run_pt_backup",
)
"""Tests that take minutes (longest first: ``--durations`` of a full run on the 2-core machine, setup
included, 2026-12-06); see
:func:`pytest_collection_modifyitems`."""


def _heaviness(item: pytest.Item) -> int:
    return next(
        (rank for rank, prefix in enumerate(HEAVIEST) if item.nodeid.startswith(prefix)), len(HEAVIEST)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, start the heaviest tests first on every worker, so that none of them is left for the end.

    ``--dist worksteal`` (pyproject's addopts) hands worker *i* of *n* the *i*-th contiguous share of
    this order and lets a worker that runs dry take tests from the back of another's share. Each
    share therefore begins with its turn of :data:`HEAVIEST` (dealt round-robin, longest first) and is
    filled up with the other tests in their collected order: a worker ends on short tests, which
    balance to within seconds. Without xdist the collected order stays.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    heavy = sorted((i for i in items if _heaviness(i) < len(HEAVIEST)), key=_heaviness)
    light = [i for i in items if _heaviness(i) == len(HEAVIEST)]
    shares: list[list[pytest.Item]] = [heavy[w::workers] for w in range(workers)]
    left = len(items)
    for w, share in enumerate(shares):  # worksteal's first split: len(pending) // workers remaining
        size = left // (workers - w)
        left -= size
        take = max(0, size - len(share))
        share.extend(light[:take])
        del light[:take]
    shares[-1].extend(light)
    items[:] = [item for share in shares for item in share]


def _answers(host: str, port: int) -> bool:
    if os.environ.get("CUTOVER_TEST_EMBEDDED_ONLY") == "1":
        return False  # behave as on a fresh machine: embedded PostgreSQL, no MariaDB
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(present: bool, missing: str) -> None:
    """Skip on a developer's machine that lacks what a test needs; fail in CI (``CI=true``), where every
    test must run. ``missing`` says what is missing."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"{missing}, and CI=true requires it")
    pytest.skip(missing)


def require_service(name: str, host: str, port: int) -> None:
    """Skip on a developer's machine without the service; fail in CI, where it must run."""
    require(_answers(host, port), f"{name} is not running on {host}:{port}")


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


@pytest.fixture(scope="session")
def airflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder whose Airflow metadata database ``cutover`` has migrated, once per test process.

    ``airflow db migrate`` on a fresh SQLite file costs 10–15 s on a busy 2-core machine; every test
    that runs DAGs in a state folder of its own starts from a copy of this one instead
    (:func:`seed_airflow_home`). The migration itself is ``prepare_airflow``'s, as on a user's first
    run, and so is the ``airflow.cfg`` it leaves (written by the ``airflow`` command it runs).
    """
    folder = tmp_path_factory.mktemp("airflow-template")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        {
            "CUTOVER_HOME": str(folder),
            # the embedded defaults would start a PostgreSQL for the target: nothing connects here
            "AIRFLOW_CONN_LEGACY_DB": f"sqlite:///{folder / 'unused.db'}",
            "AIRFLOW_CONN_TARGET_DB": "postgresql://unused@127.0.0.1:9/unused",
            "AIRFLOW_CONN_STAGING_STORE": f"file://{folder / 'staging'}",
        }
    )
    code = "from cutover.local_airflow import prepare_airflow; prepare_airflow()"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=folder, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in (".db-migrated", "airflow.db", "airflow.cfg"):
        assert (folder / "airflow" / name).is_file(), name
    return folder / "airflow"


def seed_airflow_home(state: Path, template: Path) -> None:
    """Give the state folder ``state`` a copy of the migrated metadata database, its version stamp and
    the ``airflow.cfg`` that ``airflow db migrate`` wrote beside it.

    The configuration is the one a fresh folder gets: its paths name ``state``, and its secrets are
    new (Airflow's own forms: a Fernet key, 16 random bytes in base64). Without the file, the local
    UI's components would start at once and each generate a JWT secret of its own, and the scheduler's
    task tokens would not pass the API server. ``prepare_airflow`` still migrates again if the stamp
    names another Airflow version or auth manager.
    """
    target = state / "airflow"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("airflow.db", ".db-migrated"):
        shutil.copy2(template / name, target / name)
    secrets = {
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "secret_key": base64.b64encode(os.urandom(16)).decode(),
        "jwt_secret": base64.b64encode(os.urandom(16)).decode(),
    }
    cfg = (template / "airflow.cfg").read_text().replace(str(template), str(target))
    for key, value in secrets.items():
        cfg, found = re.subn(rf"^{key} = .*$", f"{key} = {value}", cfg, count=1, flags=re.M)
        assert found == 1, f"no {key} in the template's airflow.cfg"
    fd = os.open(target / "airflow.cfg", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(cfg)


@pytest.fixture
def home(tmp_path: Path, airflow_template: Path) -> Iterator[Path]:
    """A state folder for ``cutover`` runs, its Airflow metadata database already migrated; its embedded
    PostgreSQL, if a run started one, is stopped afterwards."""
    folder = tmp_path / "state"
    folder.mkdir()
    seed_airflow_home(folder, airflow_template)
    yield folder
    run_cutover(["stop"], folder)


@pytest.fixture
def fresh_home(tmp_path: Path) -> Iterator[Path]:
    """An empty state folder, as on a user's first run (Airflow's metadata database not yet made)."""
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
