#!/usr/bin/env bash
# One-shot initialisation, run by the `airflow-init` service before any other Airflow component starts
# (they wait for it with service_completed_successfully, so a failure here keeps the stack down):
#
#   1. the backup key (the `backup_key` secret) is present and well-formed
#   2. the Fernet key(s) are well-formed
#   3. the target database's least-privilege roles: the owner and the loader, with the passwords of
#      their password secrets, then a login as each through its Airflow connection
#   4. `airflow db migrate`, 5. the cutover roles in Airflow, 6. the admin user
#
# Idempotent: a second run converges the target roles (and their passwords: this is how a rotated
# secret takes effect), `airflow db migrate` applies only missing migrations, and `airflow users
# create` leaves an existing user as it is. Prints names and outcomes, never a secret; a failure is
# one line starting with "airflow-init:".
set -euo pipefail

# 1. Refuse to start without the key rather than fail the first backup of the cutover weekend: the
# same check as the first task needing it (cutover.config.key_text), so the same one line, naming
# the file and what is wrong with it.
python -c 'import sys; sys.excepthook = lambda kind, error, tb: print(f"airflow-init: {error}", file=sys.stderr); from cutover.config import key_text; key_text(); print("airflow-init: backup key present")'

# 2. A malformed Fernet key would surface much later, as a failure to read a connection or a
# variable in the middle of a run: check every key (comma-separated during a rotation) now.
python - <<'PY'
import os
import sys

from cryptography.fernet import Fernet

keys = [k.strip() for k in os.environ.get("AIRFLOW__CORE__FERNET_KEY", "").split(",") if k.strip()]
if not keys:
    sys.exit("airflow-init: AIRFLOW__CORE__FERNET_KEY is empty")
for number, key in enumerate(keys, start=1):
    try:
        Fernet(key)
    except ValueError:
        sys.exit(f"airflow-init: Fernet key {number} of {len(keys)} is not 32 url-safe base64-encoded bytes")
print(f"airflow-init: {len(keys)} Fernet key(s) valid")
PY

# 3. The target's roles (cutover.security.roles): provisioned as the admin of CUTOVER_TARGET_ADMIN_URL,
# which only this service gets; named by the logins of target_owner_db and target_db. Each password is
# read from the file the connection's `passfile` names (a secret in libpq's password-file format), which
# is also how libpq finds it when a task connects: no password in the compose file, the environment
# or the image. Everything is checked before anything changes; the logins afterwards prove the tasks'
# connections work as configured (file readable, mode 0600, the password the server has).
python - <<'ROLES'
import os
import sys
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

from cutover.config import configured_url
from cutover.errors import CutoverError
from cutover.security.roles import provision_target_roles


def fail(message: str) -> NoReturn:
    sys.exit(f"airflow-init: {message}")


def last_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1]


def server(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{unquote(parts.path.lstrip('/'))}"


def pgpass_fields(line: str) -> list[str]:
    """host:port:database:user:password; a backslash escapes the next character, as in libpq."""
    fields: list[str] = []
    field, escaped = "", False
    for char in line:
        if escaped:
            field, escaped = field + char, False
        elif char == "\\":
            escaped = True
        elif char == ":" and len(fields) < 4:
            fields, field = [*fields, field], ""
        else:
            field += char
    return [*fields, field]


def login(conn_id: str) -> tuple[str, str, str]:
    """(URL, user, password) of a target connection, the password from the file its passfile names."""
    url = configured_url(conn_id)
    if not url:
        fail(f"{conn_id} is not configured (AIRFLOW_CONN_{conn_id.upper()})")
    parts = urlsplit(url)
    user = unquote(parts.username or "")
    if not user:
        fail(f"{conn_id} names no user")
    if parts.password:
        fail(f"{conn_id} carries a password: put it in the secret its passfile names instead")
    passfile = parse_qs(parts.query).get("passfile", [""])[0]
    if not passfile:
        fail(f"{conn_id} names no passfile (the secret holding the password of {user})")
    where = f"password file {passfile} of {conn_id}"
    try:
        mode, text = Path(passfile).stat().st_mode, Path(passfile).read_text()
    except FileNotFoundError:
        fail(f"{where} not found")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{where} cannot be read: {getattr(exc, 'strerror', None) or type(exc).__name__}")
    if mode & 0o077:
        fail(f"{where} is readable by group or others, which makes libpq ignore it: chmod 600 it")
    host_port, _, database = server(url).partition("/")
    wanted = [*host_port.rsplit(":", 1), database, user]
    for line in text.splitlines():
        fields = pgpass_fields(line)
        if line.startswith("#") or len(fields) != 5:
            continue
        if all(f in ("*", w) for f, w in zip(fields[:4], wanted, strict=True)):  # libpq takes the first match
            if not fields[4]:
                fail(f"{where}: the password of {user} is empty")
            return url, user, fields[4]
    fail(f"{where} has no line host:port:database:user:password for {user} (docs/docker-compose.md)")


admin = os.environ.get("CUTOVER_TARGET_ADMIN_URL", "")
if not admin:
    fail("CUTOVER_TARGET_ADMIN_URL is not set (the target's admin, who provisions its roles)")
(owner_url, owner, owner_password), (loader_url, loader, loader_password) = (
    login("target_owner_db"),
    login("target_db"),
)
places = {
    "CUTOVER_TARGET_ADMIN_URL": server(admin),
    "target_owner_db": server(owner_url),
    "target_db": server(loader_url),
}
if len(set(places.values())) != 1:
    fail(
        "the target's admin and connections name different databases: "
        + ", ".join(f"{k} {v}" for k, v in places.items())
    )
if owner == loader:
    fail(f"target_owner_db and target_db both log in as {owner}: the owner and the loader must differ")
try:
    provision_target_roles(
        admin, owner=owner, loader=loader, owner_password=owner_password, loader_password=loader_password
    )
except (CutoverError, psycopg.Error) as exc:  # libpq's messages name hosts and users, never passwords
    fail(f"cannot provision the target's roles as its admin: {last_line(exc)}")
for conn_id, url in (("target_owner_db", owner_url), ("target_db", loader_url)):
    try:
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.Error as exc:
        fail(f"{conn_id} cannot log in: {last_line(exc)}")
print(f"airflow-init: target roles {owner} (owner) and {loader} (loader) provisioned, both log in")
ROLES

airflow db migrate

# 5. The cutover roles (DataEngineer triggers, Operator clears and retries, Auditor reads), exactly as
# `cutover airflow` has them; an admin gives people their role in Security → Users.
python -c "from cutover.local_airflow import sync_roles; sync_roles()"

airflow users create \
  --username "${AIRFLOW_ADMIN_USERNAME}" \
  --password "${AIRFLOW_ADMIN_PASSWORD}" \
  --email "${AIRFLOW_ADMIN_EMAIL}" \
  --firstname Cutover \
  --lastname Administrator \
  --role Admin

echo "airflow-init: metadata database migrated, admin user ${AIRFLOW_ADMIN_USERNAME} present"
