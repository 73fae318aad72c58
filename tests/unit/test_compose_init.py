"""The compose stack's init job (``docker/airflow-init.sh``), run without a container.

The ``airflow-init`` service's container is laid out as ``tests/unit/test_compose_dags.py`` lays
it out (the image's files, the service's mounts and secrets under a temporary root, its environment
resolved as Compose resolves it with only the secrets set), and the script's steps run against it:

* the backup key check, the script's first command, with a good, a missing and a malformed key file:
  the exit status and the one line it prints;
* the whole script, with a recording ``airflow`` on the PATH: a missing key or a broken password
  file stops it before Airflow is touched, so the services waiting for it never start;
* the target-roles step, one command of the package (``python -m cutover.security
  provision-target``), with each broken password file (fails before connecting), and against a
  real PostgreSQL: the roles made with the passwords of their files, converged again by a second
  run (a rotated password takes effect), and a login through each connection's password file.

Paths in the lines are shown as the container has them (the temporary root cut off).
"""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg
import pytest
from unit.test_compose import AIRFLOW_INIT, TARGET_ADMIN_VAR, TARGET_ROLES
from unit.test_compose_dags import IMAGE_PYTHONPATH, _under, container_tree, resolved_services

from cutover.config import fields_from_env, url_from_fields
from cutover.security.passwords import scram_sha256_verifier
from cutover.security.roles import with_user

KEY_FILE = "/run/secrets/backup_key"
OWNER_VAR = "AIRFLOW_CONN_TARGET_OWNER_DB"
SCRIPT_IN_IMAGE = "/opt/cutover/docker/airflow-init.sh"
"""Where the image has the script (the Dockerfile's COPY), the command of the airflow-init service."""


@dataclass(frozen=True)
class Container:
    """The airflow-init service's container under ``root``, and its environment (paths re-rooted)."""

    root: Path
    env: dict[str, str]

    def path(self, container_path: str) -> Path:
        return _under(self.root, container_path)

    def shown(self, text: str) -> str:
        """``text`` with the container's paths as the container has them."""
        return text.replace(str(self.root), "")

    def process_env(self, **overrides: str) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root.parent / "home"),
            "LANG": "C.UTF-8",
            **self.env,
            "PYTHONPATH": str(self.path(IMAGE_PYTHONPATH)),
            **overrides,
        }


def conn_url(env: Mapping[str, str], conn_var: str) -> str:
    """The URL Cutover makes of a connection variable in ``env``."""
    return url_from_fields(fields_from_env(env[conn_var]))


def passfile(env: Mapping[str, str], conn_var: str) -> str:
    """The password file a target connection names (its ``passfile``)."""
    return parse_qs(urlsplit(conn_url(env, conn_var)).query)["passfile"][0]


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Container:
    root = tmp_path_factory.mktemp("init") / "container"
    env = container_tree(root, resolved_services()["airflow-init"])
    return Container(root, env)


@pytest.fixture
def secrets(container: Container) -> Iterator[Container]:
    """Good secrets, as the guide makes them (mode 0600), restored after each test."""

    def write_all() -> None:
        key = container.path(KEY_FILE)
        if key.is_dir():
            key.rmdir()
        key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        for var, role in TARGET_ROLES.items():
            path = Path(passfile(container.env, var))
            if path.is_dir():
                path.rmdir()
            path.write_text(f"*:*:*:{role}:{os.urandom(24).hex()}\n")
            path.chmod(0o600)

    write_all()
    yield container
    write_all()


def into_folder(path: Path) -> None:
    """What some Compose versions mount when a secret's file is missing: an empty folder."""
    path.unlink()
    path.mkdir()


# --- 1. The backup key, first ------------------------------------------------------------------------


def script_commands() -> list[str]:
    """The script's top-level lines that run something (comments, blank lines and heredoc bodies skipped)."""
    commands: list[str] = []
    heredoc: str | None = None
    for line in AIRFLOW_INIT.read_text().splitlines():
        if heredoc is not None:
            heredoc = None if line == heredoc else heredoc
            continue
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line)
            if "<<'" in line:
                heredoc = line.split("<<'", 1)[1].split("'", 1)[0]
    return commands


def key_check() -> list[str]:
    """The init's backup key check, as argv: its first command after the shell options."""
    commands = script_commands()
    assert commands[0] == "set -euo pipefail", "the script does not stop at the first failure"
    argv = shlex.split(commands[1])
    assert argv[:2] == ["python", "-c"], f"the first check is no one-line Python: {commands[1]}"
    assert len(argv) == 3, f"the first check is no one-line Python: {commands[1]}"
    assert "key_text()" in argv[2], "the first check is not the backup key's"
    return [sys.executable, "-c", argv[2]]


def run_key_check(container: Container) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        key_check(), env=container.process_env(), capture_output=True, text=True, timeout=60
    )


def test_the_key_check_passes_with_a_good_key(secrets: Container) -> None:
    result = run_key_check(secrets)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "airflow-init: backup key present\n"
    assert not secrets.path("/opt/airflow/state/backup.key").exists(), "a key was minted in the state volume"


@pytest.mark.parametrize(
    ("title", "damage", "line"),
    [
        ("missing", lambda p: p.unlink(), "not found"),
        ("compose made a folder", into_folder, "cannot be read: Is a directory"),
        ("empty", lambda p: p.write_text("\n"), "is empty"),
        (
            "not base64",
            lambda p: p.write_text("correct horse battery staple\n"),
            "does not hold base64 of 32 bytes (make one: openssl rand -base64 32)",
        ),
        (
            "16 bytes",
            lambda p: p.write_text(base64.b64encode(os.urandom(16)).decode()),
            "does not hold base64 of 32 bytes (make one: openssl rand -base64 32)",
        ),
    ],
)
def test_the_key_check_fails_with_one_line(
    secrets: Container, title: str, damage: Callable[[Path], object], line: str
) -> None:
    key = secrets.path(KEY_FILE)
    before = key.read_text()
    damage(key)
    result = run_key_check(secrets)
    assert result.returncode == 1, title
    assert result.stdout == ""
    assert (
        secrets.shown(result.stderr)
        == f"airflow-init: backup key file {KEY_FILE} (CUTOVER_BACKUP_KEY_FILE) {line}\n"
    )
    assert before.strip() not in result.stderr
    assert not secrets.path("/opt/airflow/state/backup.key").exists(), "a key was minted in the state volume"


# --- 2. The whole script stops there ----------------------------------------------------------------

RECORDING_AIRFLOW = """#!/bin/sh
printf '%s\\n' "$*" >> "$AIRFLOW_CALLS"
"""


def run_script(
    container: Container, tmp_path: Path, **overrides: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The image's copy of the script, with ``python`` the test's interpreter and ``airflow`` recording its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "airflow").write_text(RECORDING_AIRFLOW)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    calls = tmp_path / "airflow-calls"
    env = container.process_env(PATH=f"{bin_dir}:{os.environ['PATH']}", AIRFLOW_CALLS=str(calls), **overrides)
    script = container.path(SCRIPT_IN_IMAGE)
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_the_script_stops_before_airflow_without_a_key(secrets: Container, tmp_path: Path) -> None:
    secrets.path(KEY_FILE).unlink()
    result, calls = run_script(secrets, tmp_path)
    assert result.returncode == 1
    assert secrets.shown(result.stderr) == (
        f"airflow-init: backup key file {KEY_FILE} (CUTOVER_BACKUP_KEY_FILE) not found\n"
    )
    assert calls == [], "airflow ran after the key check failed"


def test_the_script_stops_before_airflow_on_a_broken_password_file(
    secrets: Container, tmp_path: Path
) -> None:
    from cryptography.fernet import Fernet

    owner_file = passfile(secrets.env, "AIRFLOW_CONN_TARGET_OWNER_DB")
    Path(owner_file).chmod(0o644)
    result, calls = run_script(secrets, tmp_path, AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode())
    assert result.returncode == 1
    assert secrets.shown(result.stderr).splitlines() == [
        f"airflow-init: password file {secrets.shown(owner_file)} of target_owner_db is readable by group or"
        " others, which makes libpq ignore it: chmod 600 it"
    ]
    assert result.stdout.splitlines() == [
        "airflow-init: backup key present",
        "airflow-init: 1 Fernet key(s) valid",
    ]
    assert calls == [], "airflow ran after the target's roles failed"


# --- 3. The target's roles ---------------------------------------------------------------------------


ROLES_COMMAND = "python -m cutover.security provision-target"
"""The target-roles step: one command, the package's (:mod:`cutover.security.provision`)."""


def roles_step() -> list[str]:
    """The init's target-roles step, as argv with the test's interpreter."""
    (line,) = [c for c in script_commands() if c.startswith(ROLES_COMMAND)]
    argv = shlex.split(line)
    assert argv[argv.index("--label") + 1] == "airflow-init", "the step's lines no longer say who failed"
    return [sys.executable, *argv[1:]]


def test_the_roles_step_is_one_command_after_the_checks_and_before_airflow() -> None:
    commands = script_commands()
    step = next(i for i, c in enumerate(commands) if c.startswith(ROLES_COMMAND))
    fernet = next(i for i, c in enumerate(commands) if c.startswith("python - <<'PY'"))
    migrate = commands.index("airflow db migrate")
    assert 1 < fernet < step < migrate, "the roles are provisioned out of order"
    assert [c for c in commands if "<<" in c] == ["python - <<'PY'"], "inline Python besides the Fernet check"


def run_roles(container: Container, **overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        roles_step(), env=container.process_env(**overrides), capture_output=True, text=True, timeout=120
    )


def _owner_file(c: Container) -> Path:
    return Path(passfile(c.env, "AIRFLOW_CONN_TARGET_OWNER_DB"))


@pytest.mark.parametrize(
    ("title", "damage", "line"),
    [
        ("missing", lambda c: _owner_file(c).unlink(), "password file {owner} of target_owner_db not found"),
        (
            "compose made a folder",
            lambda c: into_folder(_owner_file(c)),
            "password file {owner} of target_owner_db cannot be read: Is a directory",
        ),
        (
            "readable by others",
            lambda c: _owner_file(c).chmod(0o644),
            "password file {owner} of target_owner_db is readable by group or others, which makes libpq"
            " ignore it: chmod 600 it",
        ),
        (
            "a bare password, not a password-file line",
            lambda c: _owner_file(c).write_text("s3cret-owner-password\n"),
            "password file {owner} of target_owner_db has no line host:port:database:user:password for"
            " cutover_owner (docs/docker-compose.md)",
        ),
        (
            "another role's line",
            lambda c: _owner_file(c).write_text("*:*:*:cutover_loader:s3cret-owner-password\n"),
            "password file {owner} of target_owner_db has no line host:port:database:user:password for"
            " cutover_owner (docs/docker-compose.md)",
        ),
        (
            "an empty password",
            lambda c: _owner_file(c).write_text("*:*:*:cutover_owner:\n"),
            "password file {owner} of target_owner_db: the password of cutover_owner is empty",
        ),
    ],
)
def test_the_roles_step_refuses_a_broken_password_file(
    secrets: Container, title: str, damage: Callable[[Container], object], line: str
) -> None:
    damage(secrets)
    result = run_roles(secrets)
    assert result.returncode == 1, title
    owner = secrets.shown(str(_owner_file(secrets)))
    assert secrets.shown(result.stderr) == f"airflow-init: {line.format(owner=owner)}\n", title
    assert "s3cret" not in result.stdout + result.stderr


def test_the_roles_step_refuses_connections_it_cannot_provision(secrets: Container) -> None:
    loader = secrets.env["AIRFLOW_CONN_TARGET_DB"]
    cases = {
        "a password in the connection": (
            {"AIRFLOW_CONN_TARGET_DB": loader.replace("cutover_loader@", "cutover_loader:s3cret@")},
            "target_db carries a password: put it in the secret its passfile names instead",
        ),
        "the admin on another database": (
            {TARGET_ADMIN_VAR: secrets.env[TARGET_ADMIN_VAR].replace("/cutover?", "/postgres?")},
            "the target's admin and connections name different databases: CUTOVER_TARGET_ADMIN_URL"
            " target-db:5432/postgres, target_owner_db target-db:5432/cutover, target_db target-db:5432/cutover",
        ),
        "the loader as the owner": (
            {"AIRFLOW_CONN_TARGET_DB": secrets.env["AIRFLOW_CONN_TARGET_OWNER_DB"]},
            "target_owner_db and target_db both log in as cutover_owner: the owner and the loader must differ",
        ),
        "no admin": (
            {TARGET_ADMIN_VAR: ""},
            "CUTOVER_TARGET_ADMIN_URL is not set (the target's admin, who provisions its roles)",
        ),
    }
    for title, (overrides, line) in cases.items():
        result = run_roles(secrets, **overrides)
        assert (result.returncode, secrets.shown(result.stderr)) == (1, f"airflow-init: {line}\n"), title
        assert "s3cret" not in result.stdout + result.stderr, title


def _pointed_at(compose_url: str, db_url: str, user: str) -> str:
    """``db_url`` logged in as ``user`` through the password file ``compose_url`` names."""
    parts = urlsplit(with_user(db_url, user))
    query = "&".join(
        filter(
            None, [parts.query, urlencode({"passfile": parse_qs(urlsplit(compose_url).query)["passfile"][0]})]
        )
    )
    return parts._replace(query=query).geturl()


@pytest.fixture
def role_prefix(pg_url: str) -> Iterator[str]:
    """Role names unique to the test (roles are cluster-wide); dropped with everything they hold."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield prefix
    roles = [f"{prefix}_owner", f"{prefix}_loader"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for role in roles:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(f'DROP OWNED BY "{role}" CASCADE')
                conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.slow
@pytest.mark.services
def test_the_roles_step_provisions_the_roles_with_the_passwords_of_their_files(
    secrets: Container, pg_url: str, role_prefix: str
) -> None:
    names = {
        OWNER_VAR: f"{role_prefix}_owner",
        "AIRFLOW_CONN_TARGET_DB": f"{role_prefix}_loader",
    }
    overrides = {var: _pointed_at(secrets.env[var], pg_url, role) for var, role in names.items()}
    overrides[TARGET_ADMIN_VAR] = pg_url
    for attempt in ("first", "again, with a rotated loader password"):
        passwords = {}
        for var, role in names.items():
            passwords[role] = os.urandom(24).hex()
            path = Path(passfile(secrets.env, var))
            path.write_text(f"# made by the test\n*:*:*:{role}:{passwords[role]}\n")
            path.chmod(0o600)
        result = run_roles(secrets, **overrides)
        assert result.returncode == 0, f"{attempt}: {secrets.shown(result.stderr)}"
        assert result.stdout.splitlines()[-1] == (
            f"airflow-init: target roles {role_prefix}_owner (owner) and {role_prefix}_loader (loader)"
            " provisioned, both log in"
        ), attempt
        assert not any(p in result.stdout + result.stderr for p in passwords.values()), (
            "a password was printed"
        )
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolpassword FROM pg_authid"
                " WHERE rolname = ANY(%s)",
                (list(passwords),),
            ).fetchall()
        assert {r[0] for r in rows} == set(passwords), attempt
        for role, superuser, createdb, createrole, verifier in rows:
            # CREATEDB: the owner creates the trial's scratch database (cutover.security.roles)
            assert (superuser, createdb, createrole) == (False, role == names[OWNER_VAR], False), role
            iterations, salt = verifier.split("$")[1].split(":")
            assert verifier == scram_sha256_verifier(
                passwords[role], salt=base64.b64decode(salt), iterations=int(iterations)
            ), f"{attempt}: {role} does not have the password of its file"
        for var in names:  # the tasks' connections, through their password files
            with psycopg.connect(conn_url(overrides, var)) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (names[var],)
