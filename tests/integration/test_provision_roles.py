"""The target's roles from password-file secrets (``cutover.security.provision``), on a real PostgreSQL.

What the compose stack's init job runs, called as a function and as its command line
(``python -m cutover.security provision-target``): the roles made with the passwords of their
files and converged again (a rotated password takes effect), each connection logging in through its
password file, the owner with CREATEDB and no more; and the refusals that need a server, each one
line without a password. The refusals that need none (a broken password file, a connection carrying
a password, …) are ``tests/unit/test_compose_init.py``'s, run through the script.
"""

from __future__ import annotations

import base64
import doctest
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest

from cutover.errors import ConfigError, CutoverError
from cutover.security import provision, roles
from cutover.security.passwords import scram_sha256_verifier
from cutover.security.provision import ADMIN_URL_VAR, connection_login, provision_target_from_secrets
from cutover.security.roles import with_user

pytestmark = pytest.mark.services


def test_doctests() -> None:
    for module in (provision, roles):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__


@pytest.fixture
def prefix(pg_url: str) -> Iterator[str]:
    """Role names unique to the test (roles are cluster-wide); dropped with everything they hold."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for role in (f"{name}_owner", f"{name}_loader"):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(f'DROP OWNED BY "{role}" CASCADE')
                conn.execute(f'DROP ROLE "{role}"')


def _connection(pg_url: str, user: str, passfile: Path, **query: str) -> str:
    """An ``AIRFLOW_CONN_*`` value: ``pg_url``'s database as ``user``, the password in ``passfile``."""
    parts = urlsplit(with_user(pg_url, user))
    return parts._replace(
        query="&".join(filter(None, [parts.query, urlencode({"passfile": passfile, **query})]))
    ).geturl()


def _secrets(folder: Path, prefix: str) -> dict[str, str]:
    """A password file per role, mode 0600, fresh passwords; returns role → password."""
    passwords = {}
    for kind in ("owner", "loader"):
        role = f"{prefix}_{kind}"
        passwords[role] = os.urandom(24).hex()
        path = folder / f"target_{kind}.pgpass"
        path.write_text(f"# made by the test\n*:*:*:{role}:{passwords[role]}\n")
        path.chmod(0o600)
    return passwords


@pytest.fixture
def env(pg_url: str, prefix: str, tmp_path: Path) -> dict[str, str]:
    """The init job's environment: the admin, and the two connections with their password files."""
    return {
        ADMIN_URL_VAR: pg_url,
        "AIRFLOW_CONN_TARGET_OWNER_DB": _connection(
            pg_url, f"{prefix}_owner", tmp_path / "target_owner.pgpass"
        ),
        "AIRFLOW_CONN_TARGET_DB": _connection(pg_url, f"{prefix}_loader", tmp_path / "target_loader.pgpass"),
    }


def _verifies(verifier: str, password: str) -> bool:
    iterations, salt = verifier.split("$")[1].split(":")
    return verifier == scram_sha256_verifier(
        password, salt=base64.b64decode(salt), iterations=int(iterations)
    )


def test_the_roles_get_the_passwords_of_their_files_and_log_in(
    env: dict[str, str], pg_url: str, prefix: str, tmp_path: Path
) -> None:
    for attempt in ("first", "again, with rotated passwords"):
        passwords = _secrets(tmp_path, prefix)
        made = provision_target_from_secrets(env)
        assert (made.owner, made.loader) == (f"{prefix}_owner", f"{prefix}_loader"), attempt
        assert not any(p in repr(made) for p in passwords.values()), "a password in the result"
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolpassword"
                " FROM pg_authid WHERE rolname = ANY(%s) ORDER BY rolname",
                (list(passwords),),
            ).fetchall()
        # the loader sorts first: logs in, nothing more; the owner may create the trial's scratch database
        assert [r[1:6] for r in rows] == [(False,) * 5, (False, True, False, False, False)], attempt
        for role, *_, verifier in rows:
            assert _verifies(verifier, passwords[role]), f"{attempt}: {role} lacks the password of its file"
        for url, role in ((made.owner_url, made.owner), (made.loader_url, made.loader)):
            assert urlsplit(url).password is None
            with psycopg.connect(url) as conn:  # through the password file, as a task connects
                assert conn.execute("SELECT current_user").fetchone() == (role,)


def test_a_login_hides_its_password(env: dict[str, str], prefix: str, tmp_path: Path) -> None:
    passwords = _secrets(tmp_path, prefix)
    login = connection_login(env, "target_db")
    assert login.password == passwords[f"{prefix}_loader"]
    assert login.password not in repr(login)


def test_the_command_line_prints_one_line(env: dict[str, str], prefix: str, tmp_path: Path) -> None:
    passwords = _secrets(tmp_path, prefix)
    command = [sys.executable, "-m", "cutover.security", "provision-target", "--label", "airflow-init"]
    process_env = {**os.environ, **env}
    result = subprocess.run(command, env=process_env, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        f"airflow-init: target roles {prefix}_owner (owner) and {prefix}_loader (loader) provisioned,"
        " both log in\n"
    )
    process_env[ADMIN_URL_VAR] = urlsplit(env[ADMIN_URL_VAR])._replace(path="/").geturl()
    result = subprocess.run(command, env=process_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        "airflow-init: the target's admin and connections name different databases:"
    )
    assert len(result.stderr.splitlines()) == 1
    assert not any(p in result.stdout + result.stderr for p in passwords.values())


def test_a_server_refusal_is_one_line_without_a_password(
    env: dict[str, str], pg_url: str, prefix: str, tmp_path: Path
) -> None:
    passwords = _secrets(tmp_path, prefix)
    # an admin that may not create roles: the loader, once it exists (provisioned here as a superuser)
    provision_target_from_secrets(env)
    as_loader = {**env, ADMIN_URL_VAR: with_user(pg_url, f"{prefix}_loader", passwords[f"{prefix}_loader"])}
    with pytest.raises(ConfigError) as refused:
        provision_target_from_secrets(as_loader)
    message = str(refused.value)
    assert message.startswith("cannot provision the target's roles as its admin: "), message
    assert re.search("permission denied|must be superuser", message), message
    # a connection the server refuses after the roles are made: its login fails, named
    broken = {
        **env,
        "AIRFLOW_CONN_TARGET_DB": _connection(
            pg_url,
            f"{prefix}_loader",
            tmp_path / "target_loader.pgpass",
            options="-c statement_timeout=bogus",
        ),
    }
    with pytest.raises(CutoverError) as failed:
        provision_target_from_secrets(broken)
    message = str(failed.value)
    assert message.startswith("target_db cannot log in: "), message
    assert "statement_timeout" in message
    for text in (str(refused.value), message):
        assert len(text.splitlines()) == 1
        assert not any(p in text for p in passwords.values())
