"""Airflow on this machine: the environment for in-process runs (``cutover run``) and the local UI.

Everything defaults to the embedded setup under the state folder: SQLite metadata in
``<state>/airflow``, the repository's ``dags/`` folder, and the three connections as
``AIRFLOW_CONN_*`` variables (configured values are kept).

The local UI (``cutover airflow``) runs the four Airflow 3 components itself rather than
``airflow standalone``, because standalone forces the SimpleAuthManager, whose four fixed roles
cannot say "may clear tasks but not trigger" or "may trigger pt_cutover only". The FAB auth
manager can: the roles below are plain data, synced into Airflow's metadata database at every
start, and every user logs in with a password generated once into the state folder (0600).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cutover.config import CONN_IDS, env_var, fields_from_env, state_dir
from cutover.errors import TransientError

log = logging.getLogger(__name__)

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"

AUTH_MANAGER = "cutover.security.auth_manager.CutoverAuthManager"
"""FAB (custom roles and per-DAG permissions; SimpleAuthManager has four fixed, all-DAG roles), where
pausing a DAG also needs the right to trigger it (:mod:`cutover.security.auth_manager`)."""

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

CUTOVER_DAGS = ("pt_assess", "pt_backup", "pt_cutover", "pt_rollback")
"""DAGs a data engineer may trigger and an operator may clear; pt_rollback may not exist yet."""

Permission = tuple[str, str]
"""A FAB permission: (action, resource), e.g. ``("can_read", "DAGs")``."""

_READ_ONLY: tuple[Permission, ...] = (
    *(
        ("can_read", resource)
        for resource in (
            "DAGs",
            "DAG Dependencies",
            "DAG Code",
            "DAG Runs",
            "DAG Versions",
            "DAG Warnings",
            "Assets",
            "Asset Aliases",
            "Backfills",
            "Cluster Activity",
            "Pools",
            "ImportError",
            "Jobs",
            "SLA Misses",
            "Task Instances",
            "Task Logs",
            "XComs",
            "HITL Detail",
            "Website",
            "Audit Logs",
            "All Audit Logs",
            "My Profile",
            "My Password",
        )
    ),
    ("can_edit", "My Profile"),
    ("can_edit", "My Password"),
    *(
        ("menu_access", menu)
        for menu in (
            "Browse",
            "DAGs",
            "DAG Dependencies",
            "DAG Runs",
            "Assets",
            "Cluster Activity",
            "Documentation",
            "Docs",
            "Jobs",
            "Task Instances",
            "Audit Logs",
        )
    ),
)
"""Airflow's Viewer permissions plus the audit log ("who triggered, cleared, retried what")."""

_CLEAR_AND_RETRY: tuple[Permission, ...] = (
    # clearing or marking a task instance is a PUT on DAG Runs and Task Instances plus an edit of the
    # DAG itself; granted per DAG, never on all DAGs, and never can_create on DAG Runs (= trigger)
    ("can_edit", "Task Instances"),
    ("can_edit", "DAG Runs"),
    *(("can_edit", f"DAG:{dag_id}") for dag_id in CUTOVER_DAGS),
)

_TRIGGER: tuple[Permission, ...] = tuple(("can_create", f"DAG Run:{dag_id}") for dag_id in CUTOVER_DAGS)

ROLES: dict[str, tuple[Permission, ...]] = {
    "Auditor": _READ_ONLY,
    "Operator": _READ_ONLY + _CLEAR_AND_RETRY,
    "DataEngineer": _READ_ONLY + _CLEAR_AND_RETRY + _TRIGGER,
}
"""Cutover's roles, exactly: a sync adds what is missing and removes what is not listed."""

USERS: dict[str, str] = {
    "engineer": "DataEngineer",
    "operator": "Operator",
    "auditor": "Auditor",
    "admin": "Admin",
}
"""Local logins → role. ``admin`` (FAB's built-in Admin) is for connections and users only."""


def _conn_json(url: str) -> str:
    fields = fields_from_env(url)
    data: dict[str, Any] = {"conn_type": fields.conn_type}
    for key in ("host", "schema", "login", "password", "port"):
        value = getattr(fields, key)
        if value not in (None, ""):
            data[key] = value
    if fields.extra:
        data["extra"] = fields.extra
    return json.dumps(data)


def airflow_env() -> dict[str, str]:
    """Environment for Airflow on the embedded defaults; configured values are kept."""
    from cutover.embedded import default_url

    home = state_dir()
    env = {
        "CUTOVER_HOME": str(home),
        "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", str(home / "airflow")),
        "AIRFLOW__CORE__DAGS_FOLDER": os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_FOLDER)),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": os.environ.get("AIRFLOW__CORE__UNIT_TEST_MODE", "False"),
        # one auth manager for every use of this metadata database, so its FAB tables exist
        "AIRFLOW__CORE__AUTH_MANAGER": os.environ.get("AIRFLOW__CORE__AUTH_MANAGER", AUTH_MANAGER),
    }
    for conn_id in CONN_IDS:
        name = env_var(conn_id)
        env[name] = os.environ.get(name) or _conn_json(default_url(conn_id))
    return env


def prepare_airflow() -> dict[str, str]:
    """Set :func:`airflow_env` in this process and migrate the metadata database once per version."""
    env = airflow_env()
    os.environ.update(env)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    marker = Path(env["AIRFLOW_HOME"]) / ".db-migrated"
    from importlib.metadata import version

    stamp = f"{version('apache-airflow')} {env['AIRFLOW__CORE__AUTH_MANAGER']}"
    if not marker.exists() or marker.read_text() != stamp:
        log.info("preparing Airflow's metadata database under %s", env["AIRFLOW_HOME"])
        with open(Path(env["AIRFLOW_HOME"]) / "db-migrate.log", "wb") as out:
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=os.environ,
                stdout=out,
                stderr=out,
                check=True,
            )
        marker.write_text(stamp)
    return env


# --- logins -----------------------------------------------------------------------------------


def logins_file() -> Path:
    """Where the local logins live: ``<state>/airflow-logins.json``, readable by its owner only."""
    return state_dir() / "airflow-logins.json"


def ui_logins() -> dict[str, str]:
    """User name → password for every user of :data:`USERS`, generated once (0600) and then reused."""
    path = logins_file()
    logins: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [user for user in USERS if user not in logins]
    if missing:
        logins.update({user: secrets.token_urlsafe(18) for user in missing})
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(logins, out, indent=1)
        tmp.replace(path)
    path.chmod(0o600)
    return {user: logins[user] for user in USERS}


def sync_access() -> None:
    """Sync :data:`ROLES` and :data:`USERS` into the metadata database (a subprocess: Airflow's config).

    The subprocess reads the passwords from :func:`logins_file` itself, so none is ever on a command line.
    """
    ui_logins()
    code = "from cutover.local_airflow import _sync_access_here; _sync_access_here()"
    home = Path(os.environ["AIRFLOW_HOME"])
    with open(home / "sync-access.log", "wb") as out:
        subprocess.run([sys.executable, "-c", code], env=os.environ, stdout=out, stderr=out, check=True)


def _sync_roles(sm: Any) -> None:
    """FAB's default roles (Admin, Viewer, User, Op, Public), then :data:`ROLES` exactly."""
    sm.sync_roles()
    for name, wanted in ROLES.items():
        role = sm.find_role(name) or sm.add_role(name)
        for perm in list(role.permissions):
            if (perm.action.name, perm.resource.name) not in wanted:
                sm.remove_permission_from_role(role, perm)
        for action, resource in wanted:
            perm = sm.get_permission(action, resource) or sm.create_permission(action, resource)
            if perm not in role.permissions:
                sm.add_permission_to_role(role, perm)


def sync_roles() -> None:
    """The cutover roles in an Airflow deployment's metadata database (``docker/airflow-init.sh``);
    run inside Airflow's configuration. People get their role from an admin, in Security → Users."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as appbuilder:
        _sync_roles(appbuilder.sm)
    log.info("synced roles %s", ", ".join(ROLES))


def _sync_access_here() -> None:
    """Runs inside Airflow's configuration: the roles, then the local stack's users."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    logins = ui_logins()
    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        _sync_roles(sm)
        for user_name, role_name in USERS.items():
            role = sm.find_role(role_name)
            user = sm.find_user(username=user_name)
            if user is None:
                sm.add_user(
                    user_name, user_name, "cutover", f"{user_name}@cutover.invalid", role, logins[user_name]
                )
            else:
                user.roles = [role]
                sm.update_user(user)
                sm.reset_password(user.id, logins[user_name])
    log.info("synced roles %s and users %s", ", ".join(ROLES), ", ".join(USERS))


# --- the four components ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ui_env(port: int) -> dict[str, str]:
    """Settings the components share for a UI on ``port`` (loopback only; configured values kept)."""
    base = f"http://127.0.0.1:{port}"
    wanted = {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # one task process per core: more only thrash (each imports pandas, Arrow, GX)
        "AIRFLOW__CORE__PARALLELISM": str(max(2, os.cpu_count() or 2)),
        # log servers on free ports, so two local Airflows (or a test beside a demo) do not collide
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }
    return {key: os.environ.get(key, value) for key, value in wanted.items()}


@dataclass
class LocalAirflow:
    """The running components of a local Airflow; :meth:`stop` ends them and their children."""

    port: int
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> dict[str, Any]:
        """The API server's health report, or {} while it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as response:
                return dict(json.load(response))
        except (urllib.error.URLError, OSError, ValueError):
            return {}

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Wait until the metadata database, scheduler, DAG processor and triggerer report healthy."""
        deadline = time.monotonic() + timeout
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        while time.monotonic() < deadline:
            dead = [name for name, proc in self.processes.items() if proc.poll() is not None]
            if dead:
                raise TransientError(f"Airflow component(s) {', '.join(dead)} exited; logs in {self.log_dir}")
            report = self.health()
            if report and all((report.get(part) or {}).get("status") == "healthy" for part in parts):
                return
            time.sleep(1)
        raise TransientError(f"Airflow not healthy after {timeout:.0f} s; logs in {self.log_dir}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM each component's process group (its task processes too), SIGKILL what outlives it."""
        for proc in self.processes.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def launch_airflow(port: int) -> LocalAirflow:
    """Prepare the metadata database and logins, then start the four components on ``port``.

    Each component runs in its own session (process group) with its output in
    ``<AIRFLOW_HOME>/components/<name>.log``.
    """
    prepare_airflow()
    os.environ.update(ui_env(port))
    # components start their task processes as `airflow …` found on PATH
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    sync_access()
    log_dir = Path(os.environ["AIRFLOW_HOME"]) / "components"
    log_dir.mkdir(exist_ok=True)
    running = LocalAirflow(port=port, log_dir=log_dir)
    for name in COMPONENTS:
        args = ["--port", str(port), "--host", "127.0.0.1"] if name == "api-server" else []
        out: IO[bytes] = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115  # owned by the child
        # the scheduler forks the LocalExecutor's workers, which fork the tasks: loaded once there,
        # the tasks' heavy modules are loaded in every task (cutover.preloaded_airflow)
        command = "cutover.preloaded_airflow" if name == "scheduler" else "airflow"
        running.processes[name] = subprocess.Popen(
            [sys.executable, "-m", command, name, *args],
            env=os.environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
    return running


@contextmanager
def local_airflow(port: int, timeout: float = 180.0) -> Iterator[LocalAirflow]:
    """A running, healthy local Airflow for the duration of a ``with`` block."""
    running = launch_airflow(port)
    try:
        running.wait_ready(timeout)
        yield running
    finally:
        running.stop()


class _Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler wherever the foreground loop is, so every path ends in stop()."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def start_airflow(port: int) -> int:
    """Run the local Airflow in the foreground until Ctrl-C or SIGTERM; 1 if a component dies."""
    running = launch_airflow(port)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        running.wait_ready()
        _print_banner(running)
        while True:
            dead = [name for name, proc in running.processes.items() if proc.poll() is not None]
            if dead:
                log.error("Airflow component(s) %s exited; logs in %s", ", ".join(dead), running.log_dir)
                return 1
            time.sleep(1)
    except _Stop:
        return 0
    finally:
        # a second Ctrl-C must not cut the orderly stop short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        running.stop()


def _print_banner(running: LocalAirflow) -> None:
    """The local demo's logins, on the console only (they also stay in the 0600 logins file)."""
    lines = [
        f"Airflow UI: {running.url} (component logs in {running.log_dir})",
        f"logins (kept in {logins_file()}, owner-only):",
    ]
    for user, password in ui_logins().items():
        lines.append(f"  {user:<9} {USERS[user]:<13} {password}")
    lines.append("Ctrl-C stops every component.")
    print("\n".join(lines), flush=True)
