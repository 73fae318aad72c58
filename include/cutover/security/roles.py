"""Least-privilege database roles for the pipeline (45 CFR 164.312(a): access control).

Three roles, each able to do its own step and nothing else:

* **owner** (``cutover_owner``) owns the target's ``pt`` and ``migration`` schemas and runs the
  versioned migrations (``migrate_target_schema`` only). It may create schemas in the target
  database and create databases (CREATEDB, for the trial's scratch database, see below), nothing
  else: no superuser, no CREATEROLE.
* **loader** (``cutover_loader``) is what every other task connects as: read and write rows in ``pt``
  and ``migration``; INSERT and SELECT only on ``migration.audit_log`` (append-only by grant and by
  trigger, and, not being the table's owner, the loader cannot disable the trigger); SELECT only on
  ``migration.schema_version``; temporary tables (the loader stages each batch in one) but no DDL
  anywhere else: no CREATE on the database or on ``public``, no USAGE on any other schema.
* **reader** (``cutover_reader``) reads the legacy database: SELECT only, on PostgreSQL with
  ``default_transaction_read_only`` on; on MariaDB SELECT and SHOW VIEW, which is all
  ``mariadb-dump --single-transaction`` needs for tables and views.

The owner is the one role the audit log's grants and trigger do not bind (it owns the table: it may
disable the trigger and change rows), and it writes audit entries of its own (snapshots, rollbacks). That it cannot do so without a trace is the hash chain's part
(V007, :mod:`cutover.audit`): ``cutover audit verify`` names the first deleted or altered entry, and a
chain rewritten as a whole no longer matches the head recorded in each run's evidence.

Everything here is idempotent: re-running converges the roles to these privileges (extra grants
found on the roles' objects are revoked first). Passwords are sent as verifiers hashed on the
client (:mod:`cutover.security.passwords`); a role provisioned without a password keeps the one it
has (or none: certificate or peer authentication).

Object privileges on the target's tables are granted by the owner, after each schema upgrade
(:func:`grant_loader`, or :func:`migrate_and_grant` for both), since the owner creates the tables:
a table a later migration adds is not writable by the loader until then, which fails closed.

The trial run (``pt_sample_transfer``, :mod:`cutover.sample`) loads its sample into a scratch
database it creates on the target server and drops afterwards. The owner creates it
(:data:`OWNER_ATTRIBUTES`: CREATEDB), since the owner already runs every DDL of the target; the
loader, which every other task connects as, stays without it. CREATEDB adds no reach into another
database: a database a role creates is empty (copied from ``template1``; a non-superuser may copy
only a template or a database it owns) and owned by that role, and CREATEDB grants no role
membership. A dedicated scratch role would be a third target secret and connection for the same
right. The owner then grants the loader on the scratch as on the target (:func:`grant_scratch`),
so the trial loads with the cutover's own privileges.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql

from cutover.errors import ConfigError
from cutover.security.passwords import mysql_native_hash, scram_sha256_verifier

log = logging.getLogger(__name__)

TARGET_SCHEMAS: tuple[str, ...] = ("pt", "migration")
"""The schemas the owner owns and the loader may use."""

APPEND_ONLY_TABLES: tuple[str, ...] = ("migration.audit_log",)
"""Tables the loader may only INSERT into and read."""

READ_ONLY_TABLES: tuple[str, ...] = ("migration.schema_version",)
"""Tables the loader may only read (the owner records schema versions)."""

ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
"""The loader's and the legacy reader's role attributes: log in, nothing more."""

OWNER_ATTRIBUTES = ROLE_ATTRIBUTES.replace("NOCREATEDB", "CREATEDB")
"""The owner's: CREATEDB besides, for the trial run's scratch database (see the module's docstring)."""


@dataclass(frozen=True)
class TargetRoles:
    """The target's two roles and the URLs to connect as them (passwords included when given)."""

    owner: str
    loader: str
    owner_url: str
    loader_url: str


@dataclass(frozen=True)
class ProvisionedRoles:
    """What :func:`provision_roles` made: the target's roles and, when asked, the legacy reader's URL."""

    target: TargetRoles
    legacy_reader_url: str | None = None


def with_user(url: str, user: str, password: str | None = None) -> str:
    """``url`` with another user (and password, if given); host, port, database and query kept.

    >>> with_user("postgresql://postgres@127.0.0.1:5432/pt?sslmode=require", "cutover_loader", "s3:cr/t")
    'postgresql://cutover_loader:s3%3Acr%2Ft@127.0.0.1:5432/pt?sslmode=require'
    >>> with_user("postgresql://postgres:@/pt?host=/tmp/sock", "cutover_owner")
    'postgresql://cutover_owner@/pt?host=/tmp/sock'
    """
    parts = urlsplit(url)
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=auth + host).geturl()


def _database(url: str) -> str:
    name = unquote(urlsplit(url).path.lstrip("/"))
    if not name:
        raise ConfigError("the admin URL must name the database to provision (…/<database>)")
    return name


def _role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def _ensure_role(
    conn: psycopg.Connection[Any], role: str, password: str | None, attributes: str = ROLE_ATTRIBUTES
) -> None:
    """CREATE the role if missing; reset its attributes (and password, if given) either way."""
    name = sql.Identifier(role)
    if not _role_exists(conn, role):
        conn.execute(sql.SQL("CREATE ROLE {} " + attributes).format(name))
        log.info("created role %s", role)
    conn.execute(sql.SQL("ALTER ROLE {} " + attributes).format(name))
    if password is not None:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(name, sql.Literal(scram_sha256_verifier(password)))
        )


# Run by a superuser (or the database owner) in the target database.
_TARGET_DATABASE_GRANTS = """
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {db} TO {owner};
REVOKE CREATE ON DATABASE {db} FROM {loader};
GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {loader};
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM {loader};
"""

_RESTRICT_CONNECT = "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;"

# Objects of the target schemas, to hand to the owner when another role (a superuser, before these
# roles existed) created them. Identity and serial sequences follow their table. relname is cast to
# text: a UNION of it would type the column `name` and cut a routine's signature at 63 bytes.
_FOREIGN_OBJECTS = """
SELECT 'SCHEMA', n.nspname, NULL FROM pg_namespace n
 WHERE n.nspname = ANY(%(schemas)s) AND n.nspowner <> (SELECT oid FROM pg_roles WHERE rolname = %(owner)s)
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                      ELSE 'TABLE' END, n.nspname, c.relname::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = %(owner)s)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype IN ('a', 'i'))
UNION ALL
SELECT 'ROUTINE', n.nspname, p.oid::regprocedure::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = ANY(%(schemas)s) AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = %(owner)s)
"""


def _take_over(conn: psycopg.Connection[Any], owner: str) -> int:
    """Make ``owner`` the owner of whatever already exists in the target schemas; returns how many objects."""
    found = conn.execute(_FOREIGN_OBJECTS, {"schemas": list(TARGET_SCHEMAS), "owner": owner}).fetchall()
    for kind, schema, name in found:
        if kind == "SCHEMA":
            target: sql.Composable = sql.Identifier(schema)
        elif kind == "ROUTINE":
            target = sql.SQL(name)  # regprocedure text: already qualified and quoted by PostgreSQL
        else:
            target = sql.Identifier(schema, name)
        conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(kind), target, sql.Identifier(owner)))
    return len(found)


def _present_schemas(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY nspname", (list(TARGET_SCHEMAS),)
    ).fetchall()
    return [str(r[0]) for r in rows]


def _loader_grants(schemas: Sequence[str], loader: str, present_tables: set[str]) -> list[sql.Composed]:
    """The statements that converge the loader's object privileges in ``schemas``."""
    role = sql.Identifier(loader)
    names = sql.SQL(", ").join(sql.Identifier(s) for s in schemas)
    statements = [
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(names, role),
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(names, role),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(names, role),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(names, role),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(names, role),
    ]
    for qualified in APPEND_ONLY_TABLES:
        if qualified in present_tables:
            statements.append(
                sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(
                    sql.Identifier(*qualified.split(".")), role
                )
            )
    for qualified in READ_ONLY_TABLES:
        if qualified in present_tables:
            statements.append(
                sql.SQL("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(
                    sql.Identifier(*qualified.split(".")), role
                )
            )
    return statements


def _grant_loader(conn: psycopg.Connection[Any], loader: str) -> list[str]:
    schemas = _present_schemas(conn)
    if not schemas:
        return []
    tables = {
        f"{s}.{t}"
        for s, t in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ANY(%s)",
            (schemas,),
        ).fetchall()
    }
    for statement in _loader_grants(schemas, loader, tables):
        conn.execute(statement)
    return schemas


def grant_loader(owner_url: str, loader: str) -> list[str]:
    """Converge ``loader``'s privileges on the target schemas; run as the owner after every upgrade.

    Returns the schemas granted on (none before the first migration). One transaction: the loader
    never sees a half-granted state.
    """
    with psycopg.connect(owner_url) as conn, conn.transaction():
        schemas = _grant_loader(conn, loader)
    log.info("loader role %s granted on schemas %s", loader, ", ".join(schemas) or "(none yet)")
    return schemas


# Run by the owner in a scratch database it created: closed to PUBLIC, open to the loader, as the target.
_SCRATCH_DATABASE_GRANTS = """
REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {loader};
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
"""


def grant_scratch(scratch_url: str, loader: str) -> list[str]:
    """Grant ``loader`` on a trial's scratch database as on the target; run as the owner that created it.

    The scratch holds a sample of real charts: CONNECT and TEMPORARY are revoked from PUBLIC (a new
    database has them) and granted to the loader, then the loader's grants on the scratch's
    schemas (:func:`grant_loader`'s). Run after the scratch's upgrade; returns the schemas granted on.
    One transaction.
    """
    db = _database(scratch_url)
    names = {"db": sql.Identifier(db), "loader": sql.Identifier(loader)}
    with psycopg.connect(scratch_url) as conn, conn.transaction():
        for statement in filter(None, (s.strip() for s in _SCRATCH_DATABASE_GRANTS.split(";"))):
            conn.execute(sql.SQL(statement).format(**names))
        schemas = _grant_loader(conn, loader)
    log.info("loader role %s granted on scratch database %s, schemas %s", loader, db, ", ".join(schemas))
    return schemas


def grant_scratch_apart(owner_scratch_url: str, loader_url: str) -> list[str]:
    """:func:`grant_scratch` for the loader of ``loader_url`` when it is not the scratch's owner (the
    embedded default's one superuser needs no grant); the schemas granted on."""
    owner, loader = (unquote(urlsplit(u).username or "") for u in (owner_scratch_url, loader_url))
    return grant_scratch(owner_scratch_url, loader) if loader and loader != owner else []


def migrate_and_grant(owner_url: str, loader_url: str) -> list[int]:
    """What ``migrate_target_schema`` runs: upgrade the target as the owner, then grant the loader.

    When both URLs name the same user (the embedded default: one superuser), only the upgrade runs.
    Returns the migration versions applied.
    """
    from cutover.target import upgrade

    applied = upgrade(owner_url)
    owner, loader = (unquote(urlsplit(u).username or "") for u in (owner_url, loader_url))
    if loader and loader != owner:
        grant_loader(owner_url, loader)
    return applied


def provision_target_roles(
    admin_url: str,
    *,
    owner: str = "cutover_owner",
    loader: str = "cutover_loader",
    owner_password: str | None = None,
    loader_password: str | None = None,
    restrict_connect: bool = True,
) -> TargetRoles:
    """Create (or converge) the target's owner and loader roles; run as a superuser on the target database.

    ``admin_url`` names the target database. ``restrict_connect`` revokes CONNECT and TEMPORARY on it
    from PUBLIC, so only these roles (and superusers) reach the patient data. Schemas and objects
    that already exist (a target migrated before the roles existed) are handed to the owner, and the
    loader is granted on them at once; on an empty database the grants follow the first upgrade
    (:func:`migrate_and_grant`).
    """
    if owner == loader:
        raise ConfigError("the owner and loader roles must differ")
    db = _database(admin_url)
    with psycopg.connect(admin_url, autocommit=True) as conn, conn.transaction():
        _ensure_role(conn, owner, owner_password, OWNER_ATTRIBUTES)
        _ensure_role(conn, loader, loader_password)
        names = {
            "db": sql.Identifier(db),
            "owner": sql.Identifier(owner),
            "loader": sql.Identifier(loader),
        }
        statements = _TARGET_DATABASE_GRANTS + (_RESTRICT_CONNECT if restrict_connect else "")
        for statement in filter(None, (s.strip() for s in statements.split(";"))):
            conn.execute(sql.SQL(statement).format(**names))
        moved = _take_over(conn, owner)
        schemas = _grant_loader(conn, loader)
    log.info(
        "target roles %s (owner) and %s (loader) provisioned on database %s; %d objects handed to the owner, "
        "loader granted on %s",
        owner,
        loader,
        db,
        moved,
        ", ".join(schemas) or "(no schemas yet)",
    )
    return TargetRoles(
        owner=owner,
        loader=loader,
        owner_url=with_user(admin_url, owner, owner_password),
        loader_url=with_user(admin_url, loader, loader_password),
    )


def provision_postgres_reader(
    admin_url: str,
    *,
    reader: str = "cutover_reader",
    password: str | None = None,
    schemas: Sequence[str] = ("public",),
) -> str:
    """A read-only role on a PostgreSQL legacy database; returns the URL to connect as it.

    SELECT on every table and sequence of ``schemas`` (sequences: ``pg_dump`` reads them), USAGE on
    those schemas, and ``default_transaction_read_only`` on, so even a bug that tries to write is
    stopped before the grants are asked. Nothing in the legacy database changes but these grants.
    """
    db = _database(admin_url)
    names = sql.SQL(", ").join(sql.Identifier(s) for s in schemas)
    role = sql.Identifier(reader)
    with psycopg.connect(admin_url, autocommit=True) as conn, conn.transaction():
        _ensure_role(conn, reader, password)
        for statement in (
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role),
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db), role),
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(names, role),
            sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(names, role),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(names, role),
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(names, role),
            sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(names, role),
        ):
            conn.execute(statement)
    log.info("read-only role %s provisioned on legacy database %s", reader, db)
    return with_user(admin_url, reader, password)


MARIADB_READER_PRIVILEGES = "SELECT, SHOW VIEW"
"""What the legacy reader gets on the legacy database: reading rows and view definitions.

``mariadb-dump --single-transaction`` needs no LOCK TABLES (it reads one consistent snapshot) and,
for a database without tablespaces, no PROCESS; triggers and routines the reader cannot see are not
dumped (the simulated legacy systems have none: grant TRIGGER and SELECT on ``mysql.proc`` to a
reader of a system that does, and know that TRIGGER also allows creating triggers)."""


def provision_mariadb_reader(
    admin_url: str, *, reader: str = "cutover_reader", password: str | None = None, host: str = "%"
) -> str:
    """A read-only user on a MariaDB/MySQL legacy database; returns the URL to connect as it.

    ``admin_url`` is a ``mysql://`` URL of a user with GRANT OPTION, naming the legacy database.
    """
    import pymysql

    parts = urlsplit(admin_url)
    db = _database(admin_url)
    account = "%s@%s"
    conn = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS " + account, (reader, host))
            if password is not None:
                cur.execute(
                    "ALTER USER " + account + " IDENTIFIED BY PASSWORD %s",
                    (reader, host, mysql_native_hash(password)),
                )
            cur.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM " + account, (reader, host))
            quoted = "`" + db.replace("`", "``") + "`"
            cur.execute(f"GRANT {MARIADB_READER_PRIVILEGES} ON {quoted}.* TO " + account, (reader, host))
    finally:
        conn.close()
    log.info("read-only user %s provisioned on legacy database %s", reader, db)
    return with_user(admin_url, reader, password)


def provision_legacy_reader(
    admin_url: str, *, reader: str = "cutover_reader", password: str | None = None
) -> str:
    """A read-only role on the legacy database, by dialect (PostgreSQL or MariaDB/MySQL); returns its URL."""
    scheme = urlsplit(admin_url).scheme
    if scheme in {"postgresql", "postgres"}:
        return provision_postgres_reader(admin_url, reader=reader, password=password)
    if scheme in {"mysql", "mariadb"}:
        return provision_mariadb_reader(admin_url, reader=reader, password=password)
    raise ConfigError(
        f"no database roles for a {scheme!r} legacy source (SQLite is a file: make it read-only)"
    )


def provision_roles(
    admin_url: str,
    *,
    legacy_admin_url: str | None = None,
    prefix: str = "cutover",
    passwords: dict[str, str] | None = None,
    restrict_connect: bool = True,
) -> ProvisionedRoles:
    """Provision every role the pipeline needs: ``<prefix>_owner`` and ``<prefix>_loader`` on the target,
    and ``<prefix>_reader`` on the legacy database when ``legacy_admin_url`` is given.

    ``passwords`` maps ``owner``/``loader``/``reader`` to a password (optional each). Idempotent.
    """
    given = passwords or {}
    target = provision_target_roles(
        admin_url,
        owner=f"{prefix}_owner",
        loader=f"{prefix}_loader",
        owner_password=given.get("owner"),
        loader_password=given.get("loader"),
        restrict_connect=restrict_connect,
    )
    reader_url = None
    if legacy_admin_url:
        reader_url = provision_legacy_reader(
            legacy_admin_url, reader=f"{prefix}_reader", password=given.get("reader")
        )
    return ProvisionedRoles(target=target, legacy_reader_url=reader_url)
