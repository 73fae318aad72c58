"""Where Cutover keeps its state, and how the three connections resolve.

Three connections, named as in Airflow: ``legacy_db`` (the old system), ``target_db`` (the new
system's PostgreSQL) and ``staging_store`` (Parquet staging: a local folder or an S3 bucket).
Each resolves, in order, from ``AIRFLOW_CONN_<ID>`` (URI or Airflow's JSON form), then from the
embedded default under the state folder: the simulator's SQLite file, an embedded PostgreSQL
(``pgserver``) and a local folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlencode, urlsplit

from cutover.errors import ConfigError

ConnId = Literal["legacy_db", "target_db", "staging_store"]
CONN_IDS: tuple[ConnId, ...] = ("legacy_db", "target_db", "staging_store")

LEGACY_SYSTEM = "legacy"
"""Name of the legacy system in the crosswalk and in deterministic target ids."""


def state_dir() -> Path:
    """The folder for embedded services, staging, evidence and Airflow's metadata.

    ``CUTOVER_HOME`` when set, else ``.state`` in the current directory; created mode 0700 (it
    holds PHI: the simulator's legacy file, staged data, backups' work files). The entry points
    (the ``cutover`` command, the DAGs) also set the umask to 0077, so that everything else
    created under it (by Airflow, SQLite, pg_dump) is private to its owner too.
    """
    path = Path(os.environ.get("CUTOVER_HOME") or Path.cwd() / ".state").resolve()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


KEY_ENV = "CUTOVER_BACKUP_KEY"
KEY_FILE_ENV = "CUTOVER_BACKUP_KEY_FILE"
"""The path of a file holding the key's base64 text: a mounted secret (``/run/secrets/…``)."""
REQUIRE_KEY_ENV = "CUTOVER_REQUIRE_BACKUP_KEY"
"""``1`` refuses the embedded default key file: a deployment (the compose stack) sets it, so that a
missing secret stops the first task that needs the key instead of minting a key nobody keeps."""
KEY_FILE = "backup.key"

_ON, _OFF = frozenset({"1", "true", "yes", "on"}), frozenset({"", "0", "false", "no", "off"})


def key_text(configured: str | None = None) -> str:
    """The base64 text of the backup key: ``configured`` (a connection extra), else
    ``CUTOVER_BACKUP_KEY``, else the file ``CUTOVER_BACKUP_KEY_FILE`` names (at most one of the
    two may be set), else the embedded default ``<state folder>/backup.key``, unless
    ``CUTOVER_REQUIRE_BACKUP_KEY=1`` refuses it.

    The key file is checked here (present, readable, base64 of 32 bytes), so that its error names
    the file; its mode is the secret store's business (Compose, Kubernetes) and is not checked.
    The default file is created once, mode 0600, atomically (written aside, then linked into
    place: a task starting at the same time never reads a half-written key); a default key file
    that group or others can read is refused. Errors never show the key.
    """
    if configured:
        return configured
    value, key_file = os.environ.get(KEY_ENV), os.environ.get(KEY_FILE_ENV)
    if value and key_file:
        raise ConfigError(f"both {KEY_ENV} and {KEY_FILE_ENV} are set: keep one")
    if value:
        return value
    if key_file:
        return _key_from_file(Path(key_file))
    required = os.environ.get(REQUIRE_KEY_ENV, "").strip().lower()
    if required not in _ON | _OFF:  # a typo must not switch the refusal off
        raise ConfigError(f"{REQUIRE_KEY_ENV} must be 1 or 0, not {required!r}")
    if required in _ON:
        raise ConfigError(
            f"no backup key: set {KEY_FILE_ENV} (a file holding base64 of 32 bytes) or {KEY_ENV}"
            f" ({REQUIRE_KEY_ENV}=1 refuses the embedded default key file)"
        )
    path = state_dir() / KEY_FILE
    if not path.exists():
        import base64
        import logging
        import tempfile

        fd, aside = tempfile.mkstemp(prefix=".backup.key.", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(base64.b64encode(os.urandom(32)).decode() + "\n")
            os.link(aside, path)  # fails if another process created it first: theirs wins
            logging.getLogger(__name__).warning(
                "created the backup key %s (mode 0600): keep a copy offline", path
            )
        except FileExistsError:
            pass
        finally:
            os.unlink(aside)
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"backup key file {path} is readable by others; chmod 600 it")
    return path.read_text()


def _key_from_file(path: Path) -> str:
    """The key text in ``path`` (``CUTOVER_BACKUP_KEY_FILE``), checked as base64 of 32 bytes.

    The check is :func:`cutover.backup.crypto.load_key`'s, repeated here (this module is below the
    backup package) so that the error names the file rather than only "backup key".
    """
    import base64
    import binascii

    where = f"backup key file {path} ({KEY_FILE_ENV})"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"{where} not found") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not text") from None
    if not text:
        raise ConfigError(f"{where} is empty")
    try:
        size = len(base64.b64decode(text, validate=True))
    except binascii.Error:
        size = -1
    if size != 32:
        raise ConfigError(f"{where} does not hold base64 of 32 bytes (make one: openssl rand -base64 32)")
    return text


def connection_extra(conn_id: str) -> dict[str, Any]:
    """The extra of ``conn_id`` as configured through ``AIRFLOW_CONN_*`` ({} when unset).

    >>> connection_extra("no_such_connection")
    {}
    """
    value = os.environ.get(env_var(conn_id))
    return dict(fields_from_env(value).extra) if value else {}


def env_var(conn_id: str) -> str:
    """The environment variable Airflow reads a connection from.

    >>> env_var("target_db")
    'AIRFLOW_CONN_TARGET_DB'
    """
    return f"AIRFLOW_CONN_{conn_id.upper()}"


@dataclass(frozen=True)
class ConnFields:
    """The fields of an Airflow connection that Cutover reads."""

    conn_type: str
    host: str | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = None
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def fields_from_env(value: str) -> ConnFields:
    """Parse an ``AIRFLOW_CONN_*`` value the way Airflow does: JSON or a URI."""
    value = value.strip()
    if value.startswith("{"):
        data = json.loads(value)
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra else {}
        return ConnFields(
            conn_type=data.get("conn_type", ""),
            host=data.get("host"),
            schema=data.get("schema"),
            login=data.get("login"),
            password=data.get("password"),
            port=data.get("port"),
            extra=extra,
        )
    parts = urlsplit(value)
    if not parts.scheme:
        raise ConfigError("connection value is neither JSON nor a URI")
    scheme = parts.scheme.replace("-", "_")
    query = _query(parts.query)
    if EXTRA_KEY in query:  # Airflow's URI form for extras that are not plain strings
        extras: dict[str, Any] = json.loads(query[EXTRA_KEY][0] or "{}")
    else:
        extras = {k: v[0] if len(v) == 1 else v for k, v in query.items()}
    return ConnFields(
        conn_type={"postgresql": "postgres"}.get(scheme, scheme),
        host=unquote(parts.hostname or "") or None,
        schema=unquote(parts.path[1:]) if parts.path.startswith("/") else (unquote(parts.path) or None),
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        port=parts.port,
        extra=extras,
    )


EXTRA_KEY = "__extra__"
"""The query parameter of an Airflow connection URI that carries the whole extra as JSON."""

LIBPQ_PARAMS = frozenset(
    {
        "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "require_auth",
        "channel_binding", "connect_timeout", "client_encoding", "options", "application_name",
        "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
        "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslmode", "requiressl",
        "sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode",
        "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
        "ssl_max_protocol_version", "min_protocol_version", "max_protocol_version", "krbsrvname",
        "gsslib", "gssdelegation", "service", "target_session_attrs", "load_balance_hosts",
    }
)  # fmt: skip
"""libpq's connection parameters: what a PostgreSQL URL's query may carry (TLS: ``sslmode``,
``sslrootcert``, ``sslcert``, ``sslkey``, …)."""


def _libpq_query(extra: dict[str, Any]) -> dict[str, Any]:
    """The extras libpq understands, booleans as ``1``/``0``.

    An Airflow Postgres connection's extra may also hold keys for Airflow's own hook (``cursor``,
    ``iam``, ``aws_conn_id``…) that libpq would refuse in a URL; they are left out.

    >>> _libpq_query({"sslmode": "verify-full", "sslsni": True, "cursor": "dictcursor"})
    {'sslmode': 'verify-full', 'sslsni': 1}
    """
    return {k: int(v) if isinstance(v, bool) else v for k, v in extra.items() if k in LIBPQ_PARAMS}


def _query(query: str) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(query, keep_blank_values=True)


def url_from_fields(conn: ConnFields) -> str:
    """Turn connection fields into the URL that Cutover's code takes.

    >>> url_from_fields(ConnFields("sqlite", schema="/tmp/legacy.db"))
    'sqlite:////tmp/legacy.db'
    >>> url_from_fields(ConnFields("postgres", "db", "pt", "etl", None, 5432))
    'postgresql://etl@db:5432/pt'
    >>> url_from_fields(ConnFields("postgres", "db", "pt", "etl", None, 5432,
    ...                            {"sslmode": "verify-full", "sslrootcert": "/etc/ca.pem"}))
    'postgresql://etl@db:5432/pt?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem'
    >>> url_from_fields(ConnFields("aws", extra={"bucket": "stage", "endpoint_url": "http://127.0.0.1:9000"}))
    's3://stage?endpoint_url=http%3A%2F%2F127.0.0.1%3A9000'
    """
    kind = conn.conn_type.lower()
    if kind == "sqlite":
        path = conn.schema or conn.host or ""
        return f"sqlite:///{path}" if path.startswith("/") else f"sqlite:///{Path(path).resolve()}"
    if kind == "csv":  # a delivery of CSV files in a local folder (legacy_db)
        path = conn.extra.get("path") or conn.schema or conn.host or ""
        return "csv://" + str(Path("/" + path.lstrip("/")) if not Path(path).is_absolute() else path)
    if kind in {"sftp", "ssh"}:  # a delivery of CSV files on an SFTP server (legacy_db)
        auth = ""
        if conn.login:
            auth = (
                quote(conn.login, safe="")
                + (":" + quote(conn.password, safe="") if conn.password else "")
                + "@"
            )
        port = f":{conn.port}" if conn.port else ""
        # Airflow's rule for the URL's path: ``outbox`` is in the login folder, ``/data/outbox`` absolute
        folder = str(conn.extra.get("path") or conn.schema or "")
        options = (
            "key_file",
            "private_key",
            "private_key_passphrase",
            "host_key",
            "no_host_key_check",
            "allow_host_key_change",
            "conn_timeout",
        )
        query = {k: conn.extra[k] for k in options if conn.extra.get(k) not in (None, "")}
        return f"sftp://{auth}{conn.host or ''}{port}/{folder}" + (f"?{urlencode(query)}" if query else "")
    if kind in {"file", "fs", "local"}:
        path = conn.extra.get("path") or conn.schema or conn.host or ""
        return "file://" + str(Path("/" + path.lstrip("/")) if not Path(path).is_absolute() else path)
    if kind in {"postgres", "postgresql", "mysql", "mariadb"}:
        scheme = {"postgres": "postgresql", "mariadb": "mysql"}.get(kind, kind)
        auth = ""
        if conn.login:
            auth = quote(conn.login, safe="")
            if conn.password:
                auth += ":" + quote(conn.password, safe="")
            auth += "@"
        port = f":{conn.port}" if conn.port else ""
        query = {k: v for k, v in conn.extra.items() if isinstance(v, str | int)}
        if scheme == "postgresql":
            query = _libpq_query(query)
        tail = f"?{urlencode(query)}" if query else ""
        return f"{scheme}://{auth}{conn.host or ''}{port}/{conn.schema or ''}{tail}"
    if kind in {"aws", "s3"}:
        bucket = conn.extra.get("bucket") or conn.host
        if not bucket:
            raise ConfigError("staging_store: an S3 connection needs a bucket (host or extra.bucket)")
        prefix = conn.extra.get("prefix") or conn.schema or ""
        query = {
            k: conn.extra[k]
            for k in ("endpoint_url", "region_name", "sse", "kms_key_id", "object_lock_days")
            if conn.extra.get(k)
        }
        if conn.login:
            query["aws_access_key_id"] = conn.login
        if conn.password:
            query["aws_secret_access_key"] = conn.password
        path = f"/{prefix.strip('/')}" if prefix else ""
        return f"s3://{bucket}{path}" + (f"?{urlencode(query)}" if query else "")
    raise ConfigError(f"unsupported connection type {conn.conn_type!r}")


def configured_url(conn_id: str) -> str | None:
    """The URL configured for ``conn_id`` through ``AIRFLOW_CONN_*``, or None."""
    value = os.environ.get(env_var(conn_id))
    return url_from_fields(fields_from_env(value)) if value else None


def redact(url: str) -> str:
    """A URL fit for a log line: password and keys hidden.

    >>> redact("postgresql://etl:secret@db:5432/pt")
    'postgresql://etl:***@db:5432/pt'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(":" + parts.password + "@", ":***@")
    query = "&".join(
        p
        if not p.startswith(
            ("aws_secret_access_key=", "password=", "sslpassword=", "private_key=", "private_key_passphrase=")
        )
        else p.split("=")[0] + "=***"
        for p in parts.query.split("&")
        if p
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def url_from_connection(conn: Any) -> str:
    """The URL of an Airflow ``Connection`` object (duck-typed: this package does not import Airflow)."""
    return url_from_fields(
        ConnFields(
            conn_type=conn.conn_type or "",
            host=conn.host,
            schema=conn.schema,
            login=conn.login,
            password=conn.password,
            port=conn.port,
            extra=dict(conn.extra_dejson or {}),
        )
    )
