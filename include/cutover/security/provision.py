"""The target's roles from password-file secrets: what the compose stack's init job provisions.

The owner's and the loader's user names come from the target connections (``target_owner_db`` and
``target_db``, as ``AIRFLOW_CONN_*`` variables), each password from the file the connection's
``passfile`` names: a line of libpq's password file, the same file libpq reads when a task connects,
so no password is in the compose file, the environment or the image. The target's admin
(``CUTOVER_TARGET_ADMIN_URL``, given to the init job alone) provisions the roles
(:func:`cutover.security.roles.provision_target_roles`); a login through each connection then
proves the tasks' connections work as configured (file readable, mode 0600, the password the server
has).

Everything is checked before anything changes. A refusal is a :class:`~cutover.errors.CutoverError`
whose message is one line naming the variable, connection or file and what is wrong with it, never a
password: libpq's own messages, quoted by their last line, name hosts and users only.
``python -m cutover.security provision-target`` is the command line (:mod:`cutover.security.__main__`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

from cutover.config import env_var, fields_from_env, url_from_fields
from cutover.errors import ConfigError, CutoverError, TransientError, retry_can_help
from cutover.security.roles import TargetRoles, provision_target_roles

log = logging.getLogger(__name__)

ADMIN_URL_VAR = "CUTOVER_TARGET_ADMIN_URL"
"""The environment variable with the target admin's URL (superuser, or may create roles and grant)."""

LOGIN_TIMEOUT_SECONDS = 10
"""How long each connection's proving login may take to connect."""


@dataclass(frozen=True)
class Login:
    """A target connection's URL (no password in it), its user and the password its file holds."""

    conn_id: str
    url: str
    user: str
    password: str = field(repr=False)


def server(url: str) -> str:
    """``host:port/database`` of a PostgreSQL URL, libpq's defaults filled in.

    >>> server("postgresql://cutover_loader@target-db/cutover?passfile=/run/secrets/x")
    'target-db:5432/cutover'
    """
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{unquote(parts.path.lstrip('/'))}"


def pgpass_fields(line: str) -> list[str]:
    r"""``host:port:database:user:password``; a backslash escapes the next character, as in libpq.

    >>> pgpass_fields(r"*:5432:pt:cutover_owner:pa\:ss\\word")
    ['*', '5432', 'pt', 'cutover_owner', 'pa:ss\\word']
    """
    fields: list[str] = []
    current, escaped = "", False
    for char in line:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ":" and len(fields) < 4:
            fields, current = [*fields, current], ""
        else:
            current += char
    return [*fields, current]


def pgpass_password(text: str, url: str, user: str) -> str | None:
    """The password libpq takes from a password file's ``text`` for ``user`` at ``url``: the first
    line whose host, port, database and user match (``*`` matches any), or None.

    >>> pgpass_password("# two lines\\n*:*:*:cutover_loader:l\\n*:*:pt:cutover_owner:o\\n",
    ...                 "postgresql://cutover_owner@db/pt", "cutover_owner")
    'o'
    """
    host_port, _, database = server(url).partition("/")
    wanted = [*host_port.rsplit(":", 1), database, user]
    for line in text.splitlines():
        fields = pgpass_fields(line)
        if line.startswith("#") or len(fields) != 5:
            continue
        if all(f in ("*", w) for f, w in zip(fields[:4], wanted, strict=True)):
            return fields[4]
    return None


def connection_login(env: Mapping[str, str], conn_id: str) -> Login:
    """The login of a target connection configured in ``env``, its password read from its passfile.

    Refuses (:class:`ConfigError`) a connection that is missing, names no user, carries a password
    itself or names no passfile, and a passfile that is missing, unreadable, readable by group or
    others (libpq would ignore it), without a line for the user, or with an empty password.
    """
    variable = env_var(conn_id)
    value = env.get(variable, "")
    if not value:
        raise ConfigError(f"{conn_id} is not configured ({variable})")
    try:
        url = url_from_fields(fields_from_env(value))
    except ValueError as exc:  # not the value itself: it may hold a password
        raise ConfigError(f"{conn_id} cannot be read from {variable} ({type(exc).__name__})") from None
    parts = urlsplit(url)
    user = unquote(parts.username or "")
    if not user:
        raise ConfigError(f"{conn_id} names no user")
    if parts.password:
        raise ConfigError(f"{conn_id} carries a password: put it in the secret its passfile names instead")
    passfile = parse_qs(parts.query).get("passfile", [""])[0]
    if not passfile:
        raise ConfigError(f"{conn_id} names no passfile (the secret holding the password of {user})")
    where = f"password file {passfile} of {conn_id}"
    try:
        mode, text = Path(passfile).stat().st_mode, Path(passfile).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{where} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"{where} cannot be read: {reason}") from None
    if mode & 0o077:
        raise ConfigError(
            f"{where} is readable by group or others, which makes libpq ignore it: chmod 600 it"
        )
    password = pgpass_password(text, url, user)
    if password is None:
        raise ConfigError(
            f"{where} has no line host:port:database:user:password for {user} (docs/docker-compose.md)"
        )
    if not password:
        raise ConfigError(f"{where}: the password of {user} is empty")
    return Login(conn_id=conn_id, url=url, user=user, password=password)


def _last_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1]


_REFUSED_SQLSTATE_CLASSES = ("28", "42")
"""Invalid authorization, and access rule violations (42501: a privilege the admin lacks): terminal."""


def _refusal(message: str, exc: Exception) -> CutoverError:
    """``message`` as the error that says whether a retry can help (a server down: yes; refused: no)."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate[:2] in _REFUSED_SQLSTATE_CLASSES or not retry_can_help(exc):
        return ConfigError(message)
    return TransientError(message)


def provision_target_from_secrets(
    env: Mapping[str, str], *, owner_conn: str = "target_owner_db", loader_conn: str = "target_db"
) -> TargetRoles:
    """Provision the target's owner and loader with the passwords of their connections' password
    files, as the admin of ``env``'s :data:`ADMIN_URL_VAR`; then log in through each connection.

    Checks first, in this order, and changes nothing when one fails: the admin's URL is set; each
    connection and its password file (:func:`connection_login`); the admin and both connections name
    the same server and database; the owner and the loader are different users. Idempotent: a
    second call converges the roles again, and sets the passwords the files hold now (a rotation).
    Returns the roles with the connections' own URLs (no password in them).
    """
    admin = env.get(ADMIN_URL_VAR, "")
    if not admin:
        raise ConfigError(f"{ADMIN_URL_VAR} is not set (the target's admin, who provisions its roles)")
    owner, loader = connection_login(env, owner_conn), connection_login(env, loader_conn)
    places = {ADMIN_URL_VAR: server(admin), owner_conn: server(owner.url), loader_conn: server(loader.url)}
    if len(set(places.values())) != 1:
        raise ConfigError(
            "the target's admin and connections name different databases: "
            + ", ".join(f"{k} {v}" for k, v in places.items())
        )
    if owner.user == loader.user:
        raise ConfigError(
            f"{owner_conn} and {loader_conn} both log in as {owner.user}: the owner and the loader must differ"
        )
    try:
        provision_target_roles(
            admin,
            owner=owner.user,
            loader=loader.user,
            owner_password=owner.password,
            loader_password=loader.password,
        )
    except (CutoverError, psycopg.Error) as exc:
        raise _refusal(f"cannot provision the target's roles as its admin: {_last_line(exc)}", exc) from exc
    for login in (owner, loader):
        try:
            psycopg.connect(login.url, connect_timeout=LOGIN_TIMEOUT_SECONDS).close()
        except psycopg.Error as exc:
            raise _refusal(f"{login.conn_id} cannot log in: {_last_line(exc)}", exc) from exc
    log.info(
        "target roles %s (owner) and %s (loader) log in through their connections", owner.user, loader.user
    )
    return TargetRoles(owner=owner.user, loader=loader.user, owner_url=owner.url, loader_url=loader.url)


__all__ = [
    "ADMIN_URL_VAR",
    "Login",
    "connection_login",
    "pgpass_fields",
    "pgpass_password",
    "provision_target_from_secrets",
    "server",
]
