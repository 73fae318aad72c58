"""Least-privilege roles on real servers: the pipeline runs as them, and every forbidden action is refused.

The target's owner migrates (and creates the trial's scratch database), the loader loads, the legacy
reader only reads; superuser is used only to provision the roles and to set the scene (another
schema, another database).
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pymysql
import pytest

from cli_helpers import evidence_of, run_cutover
from cutover import pipeline
from cutover.errors import PolicyError
from cutover.sample import create_scratch, drop_scratch, scratch_name, scratch_url
from cutover.security import (
    grant_loader,
    migrate_and_grant,
    provision_mariadb_reader,
    provision_roles,
    provision_target_roles,
)
from cutover.security.roles import TargetRoles, grant_scratch, with_user
from cutover.simulate import simulate
from cutover.target import upgrade
from cutover.target.checksums import table_checksums
from cutover.target.migrate import load_migrations

AS_OF = date(2026, 11, 27)


def _with_db(url: str, dbname: str) -> str:
    return urlsplit(url)._replace(path="/" + dbname).geturl()


@pytest.fixture
def legacy_pg_url(pg_admin_url: str) -> Iterator[str]:
    """A second fresh database on the same server: the PostgreSQL legacy system."""
    name = f"legacy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_db(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def prefix(pg_url: str, legacy_pg_url: str) -> Iterator[str]:
    """Role names unique to the test (roles are cluster-wide); dropped with everything they hold."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    roles = [f"{name}_owner", f"{name}_loader", f"{name}_reader"]
    for url in (pg_url, legacy_pg_url):
        with psycopg.connect(url, autocommit=True) as conn:
            existing = [
                r for r in roles if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (r,)).fetchone()
            ]
            if existing:
                conn.execute("DROP OWNED BY " + ", ".join(f'"{r}"' for r in existing) + " CASCADE")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for role in roles:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _refused(
    url: str, statement: str, *, sqlstate: str = "42501", autocommit: bool = False, setup: str | None = None
) -> str:
    """Run ``statement`` as the URL's role (after ``setup``); assert the server refuses it; return the message."""
    with psycopg.connect(url, autocommit=autocommit) as conn:
        if setup:
            conn.execute(setup)
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(statement)
    assert caught.value.sqlstate == sqlstate, (statement, caught.value.sqlstate, str(caught.value))
    return str(caught.value)


def _run_pipeline(legacy_url: str, loader_url: str, store: str, run_id: str) -> dict[str, Any]:
    """extract → map → load → summary; returns the summary (a small clinic may break a reject limit)."""
    pipeline.begin_run(loader_url, run_id, "pt_cutover", {}, "tester")
    for table in pipeline.migrated_tables():
        pipeline.extract_table(legacy_url, store, run_id, table)
        pipeline.map_table(store, run_id, table, as_of=AS_OF)
    for table in pipeline.migrated_tables():
        pipeline.load_mapped(loader_url, store, run_id, table)
    with contextlib.suppress(PolicyError):  # the summary is written before the policy is enforced
        pipeline.write_summary(loader_url, store, run_id, "pt_cutover", max_reject_rate=0.5)
    summary: dict[str, Any] = json.loads((pipeline.latest_evidence(run_id) / "summary.json").read_text())
    return summary


def _privileges(url: str, role: str) -> list[tuple[str, str, bool]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.oid::regclass::text, p.priv, has_table_privilege(%s, c.oid, p.priv)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " CROSS JOIN unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE']) AS p(priv)"
            " WHERE n.nspname IN ('pt', 'migration') AND c.relkind IN ('r', 'v') ORDER BY 1, 2",
            (role,),
        ).fetchall()
    return [(str(t), str(p), bool(ok)) for t, p, ok in rows]


def test_pipeline_runs_as_least_privilege_roles_and_forbidden_actions_are_refused(
    pg_url: str, legacy_pg_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    manifest = simulate(legacy_pg_url, patients=60, seed=61, manifest_path=tmp_path / "m.json")
    with psycopg.connect(pg_url, autocommit=True) as admin:  # another schema in the target: not the loader's
        admin.execute(
            "CREATE SCHEMA billing; CREATE TABLE billing.invoice (id int); INSERT INTO billing.invoice VALUES (1)"
        )

    roles = provision_roles(
        pg_url, legacy_admin_url=legacy_pg_url, prefix=prefix, passwords={"loader": "l0ader-pw"}
    )
    target = roles.target
    reader_url = roles.legacy_reader_url
    assert reader_url is not None
    assert urlsplit(reader_url).username == f"{prefix}_reader"
    # the owner migrates an empty database, then grants the loader
    assert migrate_and_grant(target.owner_url, target.loader_url) == [m.version for m in load_migrations()]

    # extract (reader) → map → load (loader): every legacy row accounted for
    summary = _run_pipeline(reader_url, target.loader_url, f"file://{tmp_path / 'stage'}", "lp-1")
    assert summary["accounted"] is True
    for table, count in manifest["tables"].items():
        row = summary["tables"][table]
        assert row["migrated"] + row["merged"] + row["rejected"] == count, table
    assert sum(t["rows"] for t in table_checksums(target.loader_url).values()) > 0

    with psycopg.connect(pg_url) as admin:
        owners = admin.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('pt', 'migration')"
        ).fetchall()
        attrs = admin.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolreplication FROM pg_roles"
            " WHERE rolname LIKE %s ORDER BY 1",
            (prefix + "%",),
        ).fetchall()
    assert owners == [(target.owner,)]
    # loader, owner, reader: no superuser, no CREATEROLE, …; the owner alone may create databases
    # (the trial's scratch: test_the_owner_creates_the_trial_scratch_database_and_the_loader_cannot)
    assert [a[1:] for a in attrs] == [(False,) * 5, (False, True, False, False, False), (False,) * 5]

    # the loader: rows in pt and migration, and nothing else
    loader = target.loader_url
    message = _refused(loader, "DELETE FROM migration.audit_log")
    assert "permission denied for table audit_log" in message  # the grant refuses, before the trigger
    _refused(loader, "UPDATE migration.audit_log SET actor = 'x'")
    _refused(loader, "TRUNCATE migration.audit_log")
    _refused(
        loader,
        "INSERT INTO migration.schema_version (version, name, checksum) VALUES (99, 'x', repeat('0', 64))",
    )
    _refused(loader, "CREATE TABLE public.smuggled (id int)")
    _refused(loader, "CREATE SCHEMA smuggled")
    _refused(loader, "CREATE TABLE pt.smuggled (id int)")
    _refused(loader, "ALTER TABLE pt.patient ADD COLUMN note text")
    _refused(loader, "DROP TABLE pt.visit")
    _refused(loader, "TRUNCATE pt.patient")
    _refused(loader, "SELECT * FROM billing.invoice")
    _refused(loader, "CREATE ROLE smuggler")
    _refused(loader, "CREATE DATABASE smuggled", autocommit=True)
    # …but it may append to the audit log and use a temporary table (the loader stages batches in one)
    with psycopg.connect(loader) as conn:
        conn.execute("INSERT INTO migration.audit_log (actor, action) VALUES ('tester', 'probe')")
        conn.execute("CREATE TEMP TABLE probe (id int) ON COMMIT DROP")
    # another database's objects: the legacy tables are not the loader's to read
    _refused(_with_db(loader, urlsplit(legacy_pg_url).path.lstrip("/")), "SELECT count(*) FROM patients")

    # the owner migrates but cannot read the legacy system either
    _refused(
        _with_db(target.owner_url, urlsplit(legacy_pg_url).path.lstrip("/")), "SELECT count(*) FROM patients"
    )

    # the legacy reader: read-only by default, and by grant when it turns read-only off
    assert _refused(reader_url, "DELETE FROM patients", sqlstate="25006")  # read_only_sql_transaction
    writable = "SET default_transaction_read_only = off"
    assert _refused(reader_url, "DELETE FROM patients", autocommit=True, setup=writable)
    _refused(reader_url, "UPDATE patients SET mrn = NULL", autocommit=True, setup=writable)
    _refused(reader_url, "CREATE TABLE smuggled (id int)", autocommit=True, setup=writable)
    # the target database is closed to roles other than its own (CONNECT revoked from PUBLIC)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(_with_db(reader_url, urlsplit(pg_url).path.lstrip("/"))).close()

    # idempotent: provisioning and granting again change nothing
    before = _privileges(pg_url, target.loader)
    provision_roles(pg_url, legacy_admin_url=legacy_pg_url, prefix=prefix)
    grant_loader(target.owner_url, target.loader)
    assert _privileges(pg_url, target.loader) == before
    granted = {(t, p) for t, p, ok in before if ok}
    assert ("migration.audit_log", "INSERT") in granted
    assert ("migration.audit_log", "DELETE") not in granted
    assert ("pt.patient", "UPDATE") in granted
    assert ("pt.patient", "TRUNCATE") not in granted


def test_a_target_migrated_before_the_roles_existed_is_handed_to_the_owner(pg_url: str, prefix: str) -> None:
    applied = upgrade(pg_url)  # as the superuser, the way an older install did it
    assert applied
    roles = provision_target_roles(pg_url, owner=f"{prefix}_owner", loader=f"{prefix}_loader")
    with psycopg.connect(pg_url) as admin:
        owners = admin.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('pt', 'migration')"
            " UNION SELECT DISTINCT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname IN ('pt', 'migration')"
            " UNION SELECT DISTINCT pg_get_userbyid(p.proowner) FROM pg_proc p JOIN pg_namespace n"
            " ON n.oid = p.pronamespace WHERE n.nspname IN ('pt', 'migration')"
        ).fetchall()
    assert owners == [(roles.owner,)]
    # the owner can run the (already current) upgrade; the loader can load at once
    assert migrate_and_grant(roles.owner_url, roles.loader_url) == []
    with psycopg.connect(roles.loader_url) as conn:
        conn.execute(
            "INSERT INTO migration.run (run_id, dag_id, state) VALUES ('r', 'pt_cutover', 'running')"
        )
    _refused(roles.loader_url, "DELETE FROM migration.audit_log")


@pytest.fixture
def trial_run(pg_admin_url: str) -> Iterator[str]:
    """A trial run's id unique to the test; its scratch database dropped afterwards, whoever made it
    (a role that owns a database cannot be dropped, and DROP OWNED leaves databases alone)."""
    run_id = f"manual__{uuid.uuid4().hex}"
    yield run_id
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{scratch_name(run_id)}" WITH (FORCE)')


def _database_owner(url: str, name: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    return None if row is None else str(row[0])


def test_the_owner_creates_the_trial_scratch_database_and_the_loader_cannot(
    pg_url: str, legacy_pg_url: str, prefix: str, trial_run: str
) -> None:
    """pt_sample_transfer's scratch database under the least-privilege roles: the owner creates,
    upgrades and drops it with sample.py's own functions (CREATEDB, its one extra right) and grants
    the loader on it as on the target; the loader can neither create nor drop one."""
    target = provision_target_roles(pg_url, owner=f"{prefix}_owner", loader=f"{prefix}_loader")
    name = scratch_name(trial_run)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{prefix}_reader" LOGIN')  # any other role on the server

    # the loader: no scratch database, neither made nor removed
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied to create database"):
        create_scratch(target.loader_url, trial_run)
    assert _database_owner(pg_url, name) is None

    # the owner: created (owning it), upgraded to the target's schemas, a retry starting clean
    assert create_scratch(target.owner_url, trial_run) == name
    assert _database_owner(pg_url, name) == target.owner
    assert create_scratch(target.owner_url, trial_run) == name
    with psycopg.connect(scratch_url(target.owner_url, trial_run)) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM migration.schema_version ORDER BY 1")]
    assert versions == [m.version for m in load_migrations()]

    # …then grants the loader on it as on the target: rows yes, DDL and audit changes no
    assert grant_scratch(scratch_url(target.owner_url, trial_run), target.loader) == ["migration", "pt"]
    loader_scratch = scratch_url(target.loader_url, trial_run)
    with psycopg.connect(loader_scratch) as conn:
        conn.execute(
            "INSERT INTO migration.run (run_id, dag_id, state) VALUES (%s, 'pt_sample_transfer', 'running')",
            (trial_run,),
        )
        conn.execute("INSERT INTO migration.audit_log (actor, action) VALUES ('tester', 'probe')")
        conn.execute("CREATE TEMP TABLE probe (id int) ON COMMIT DROP")
    _refused(loader_scratch, "DELETE FROM migration.audit_log")
    _refused(loader_scratch, "CREATE TABLE pt.smuggled (id int)")
    _refused(loader_scratch, "CREATE TABLE public.smuggled (id int)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner of database"):
        drop_scratch(target.loader_url, trial_run)
    # the sample's charts are closed to the server's other roles, as the target is
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(with_user(scratch_url(pg_url, trial_run), f"{prefix}_reader")).close()

    # CREATEDB reaches no other database: cloning one the owner does not own is refused
    legacy = urlsplit(legacy_pg_url).path.lstrip("/")
    _refused(target.owner_url, f'CREATE DATABASE "{name}_copy" TEMPLATE "{legacy}"', autocommit=True)

    drop_scratch(target.owner_url, trial_run)
    assert _database_owner(pg_url, name) is None
    # and still no superuser; provisioning again keeps it so
    provision_target_roles(pg_url, owner=target.owner, loader=target.loader)
    with psycopg.connect(pg_url) as admin:
        attrs = admin.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = ANY(%s)"
            " ORDER BY 1",
            ([target.owner, target.loader],),
        ).fetchall()
    assert attrs == [(target.loader, False, False, False), (target.owner, False, True, False)]


@pytest.fixture
def mariadb_reader(mariadb_url: str) -> Iterator[str]:
    user = f"r{uuid.uuid4().hex[:10]}"
    yield user
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))
    conn.close()


def _my_refused(url: str, statement: str) -> int:
    parts = urlsplit(url)
    conn = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username,
        password=parts.password or "",
        database=parts.path.lstrip("/"),
    )
    try:
        with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError) as caught:
            cur.execute(statement)
    finally:
        conn.close()
    code = int(caught.value.args[0])
    assert code in {1044, 1045, 1142, 1143, 1227}, (statement, caught.value.args)  # access denied codes
    return code


def test_mariadb_legacy_reader_extracts_and_dumps_but_cannot_write(
    mariadb_url: str, mariadb_reader: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cutover.backup import mariadb as my_backup

    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    manifest = simulate(mariadb_url, patients=40, seed=62, manifest_path=tmp_path / "m.json")
    reader_url = provision_mariadb_reader(mariadb_url, reader=mariadb_reader, password="r3ader-pw")
    assert urlsplit(reader_url).username == mariadb_reader
    assert provision_mariadb_reader(mariadb_url, reader=mariadb_reader, password="r3ader-pw") == reader_url

    store = f"file://{tmp_path / 'stage'}"
    upgrade(pg_url)
    summary = _run_pipeline(reader_url, pg_url, store, "lp-my")
    assert summary["accounted"] is True
    assert {t: summary["tables"][t]["legacy_rows"] for t in manifest["tables"]} == manifest["tables"]

    # what the backup stage runs: mariadb-dump --single-transaction --hex-blob --routines, as the reader
    (dump,) = my_backup.snapshot(reader_url, tmp_path)
    text = dump.read_text(errors="replace")
    assert text.count("CREATE TABLE") == len(manifest["tables"])

    _my_refused(reader_url, "INSERT INTO clinics (clinic_id) VALUES (999999)")
    _my_refused(reader_url, "DELETE FROM patients")
    _my_refused(reader_url, "CREATE TABLE smuggled (id int)")
    _my_refused(reader_url, "DROP TABLE patients")
    _my_refused(reader_url, "SELECT user FROM mysql.user")
    _my_refused(reader_url, "CREATE DATABASE smuggled")
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    with conn.cursor() as cur:
        cur.execute("SHOW GRANTS FOR %s@'%%'", (mariadb_reader,))
        grants = " ".join(r[0] for r in cur.fetchall())
    conn.close()
    assert "SELECT, SHOW VIEW ON" in grants
    assert "INSERT" not in grants
    assert "ALL PRIVILEGES" not in grants


@pytest.fixture
def split_roles(pg_url: str, pg_admin_url: str) -> Iterator[TargetRoles]:
    """The docker-compose target's two roles on ``pg_url``, as ``airflow-init`` provisions them (on an
    empty target), with names unique to the test; dropped afterwards with what they own, a scratch
    database a failed trial left behind included (DROP OWNED leaves databases alone)."""
    name = f"t{uuid.uuid4().hex[:8]}"
    roles = provision_target_roles(
        pg_url,
        owner=f"{name}_owner",
        loader=f"{name}_loader",
        owner_password="0wner-pw",
        loader_password="l0ader-pw",
    )
    yield roles
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE pg_get_userbyid(datdba) = ANY(%s)",
            ([roles.owner, roles.loader],),
        ).fetchall()
        for (database,) in left:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{roles.owner}", "{roles.loader}" CASCADE')
        conn.execute(f'DROP ROLE IF EXISTS "{roles.owner}"')
        conn.execute(f'DROP ROLE IF EXISTS "{roles.loader}"')


@contextlib.contextmanager
def _databases_owned_by(admin_url: str, role: str) -> Iterator[dict[str, str]]:
    """Watch the server's databases while the block runs: the ones ``role`` owned at some moment,
    each with its owner as seen (a trial's scratch lives for the trial's tens of seconds)."""
    seen: dict[str, str] = {}
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            while not stop.wait(0.2):
                rows = conn.execute(
                    "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE pg_get_userbyid(datdba) = %s",
                    (role,),
                ).fetchall()
                seen.update((str(d), str(o)) for d, o in rows)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.join(timeout=10)


@pytest.mark.slow
def test_backup_trial_and_cutover_dags_run_as_the_compose_roles(
    home: Path, tmp_path: Path, pg_url: str, pg_admin_url: str, split_roles: TargetRoles
) -> None:
    """The docker-compose wiring end to end: ``target_owner_db`` is the owner, ``target_db`` the loader
    (neither a superuser), and pt_backup → pt_sample_transfer → pt_cutover each succeed with no more:
    the trial's scratch database is created by the owner and dropped, the target's tables are the
    owner's, the loader still cannot create a database, and the audit log names the person."""
    from cutover.audit import os_user

    legacy = tmp_path / "legacy.db"
    truth = simulate(f"sqlite:///{legacy}", patients=60, seed=63)
    env = {
        "AIRFLOW_CONN_LEGACY_DB": f"sqlite:///{legacy}",
        "AIRFLOW_CONN_TARGET_DB": split_roles.loader_url,
        "AIRFLOW_CONN_TARGET_OWNER_DB": split_roles.owner_url,
    }

    backup = evidence_of(run_cutover(["run", "pt_backup"], home, env))
    with _databases_owned_by(pg_admin_url, split_roles.owner) as scratches:
        trial = evidence_of(
            run_cutover(["run", "pt_sample_transfer", "--conf", '{"sample_share": 0.2}'], home, env)
        )
    trial_run = json.loads((trial / "summary.json").read_text())["run_id"]
    assert scratches == {scratch_name(trial_run): split_roles.owner}  # the owner made it …
    assert _database_owner(pg_admin_url, scratch_name(trial_run)) is None  # … and dropped it
    # a small clinic's injected defects are more than the 5% reject policy: not what this test is about
    cutover = evidence_of(run_cutover(["run", "pt_cutover", "--conf", '{"max_reject_rate": 0.5}'], home, env))
    run_id = json.loads((cutover / "summary.json").read_text())["run_id"]

    with psycopg.connect(pg_url) as admin:
        owners = admin.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('pt', 'migration')"
            " UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname IN ('pt', 'migration')"
        ).fetchall()
        (patients,) = admin.execute("SELECT count(*) FROM pt.patient").fetchone() or (0,)
        runs = admin.execute("SELECT run_id, state, triggered_by FROM migration.run").fetchall()
        actions = admin.execute(
            "SELECT actor, action FROM migration.audit_log WHERE run_id = %s", (run_id,)
        ).fetchall()
        attrs = admin.execute(
            "SELECT rolname, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
            ([split_roles.owner, split_roles.loader],),
        ).fetchall()
    assert owners == [(split_roles.owner,)]  # the schemas and every table, sequence, view in them
    assert 0 < patients <= truth["tables"]["patients"]
    assert runs == [(run_id, "success", os_user())]
    # the rollback snapshot (as the owner), the reconciliation and the seal (as the loader): each by the
    # person who ran the DAGs, never "system" or a module; so are the backup's and the trial's seals
    assert {"snapshot target", "reconcile", "seal evidence"} <= {a for _, a in actions}
    assert {actor for actor, _ in actions} == {os_user()}
    for bundle in (backup, trial, cutover):
        assert json.loads((bundle / "bundle.json").read_text())["sealed_by"] == os_user(), bundle
    assert attrs == [(split_roles.loader, False, False), (split_roles.owner, False, True)]
    _refused(split_roles.loader_url, "CREATE DATABASE smuggled", autocommit=True)
