"""The same DAGs under CeleryExecutor: Redis as broker, two Celery workers on loopback, PostgreSQL metadata.

A real Airflow stack runs as subprocesses with a temporary AIRFLOW_HOME: API server (the task
SDK's execution API), scheduler, DAG processor and two ``airflow celery worker`` processes, each
with its own hostname (``[core] hostname_callable``) so the task instances say which worker ran
them. ``pt_assess`` proves the harness; then ``pt_backup`` and ``pt_cutover`` run on a 200-patient
clinic, and the target must equal, table by table (rows and checksum), the target of a local
``dag.test()`` run (``cutover run``) of the same clinic.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from conftest import require_service, seed_airflow_home

from cli_helpers import evidence_of, run_cutover
from cutover.config import fields_from_env
from cutover.simulate import simulate
from cutover.target.checksums import table_checksums

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
BIN = Path(sys.executable).parent
PATIENTS = 200
SEED = 606
WORKERS = ("worker-1", "worker-2")

# A worker's hostname comes from this module, so two workers on one machine tell themselves apart.
IDENTITY_MODULE = """
import os


def hostname() -> str:
    return os.environ["CUTOVER_TEST_WORKER_NAME"]
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _new_database(admin_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlsplit(admin_url)._replace(path="/" + name).geturl()


def _drop_database(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sqlalchemy_url(url: str, driver: str = "postgresql+psycopg2") -> str:
    """A libpq URL in SQLAlchemy's form (socket directories stay in the query)."""
    parts = urlsplit(url)
    return parts._replace(scheme=driver).geturl()


def _conn_json(url: str) -> str:
    """An ``AIRFLOW_CONN_*`` value in Airflow's JSON form (a SQLite path or a socket URL survives it intact)."""
    fields = fields_from_env(url)
    data = {k: getattr(fields, k) for k in ("conn_type", "host", "schema", "login", "password", "port")}
    return json.dumps({**{k: v for k, v in data.items() if v not in (None, "")}, "extra": fields.extra})


class CeleryAirflow:
    """Airflow with CeleryExecutor as subprocesses; stopped (each by its own pid) at the end."""

    def __init__(
        self, home: Path, metadata_url: str, connections: dict[str, str], cutover_home: Path
    ) -> None:
        self.home = home
        self.metadata_url = metadata_url
        self.logs = home / "process-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        (home / "identity").mkdir(exist_ok=True)
        (home / "identity" / "cutover_test_identity.py").write_text(IDENTITY_MODULE)
        self.port = _free_port()
        self.queue = f"cutover_{uuid.uuid4().hex[:8]}"  # Redis is shared: a queue of our own
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.started: dict[str, float] = {}
        self.timings: dict[str, float] = {}
        fernet = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CUTOVER_HOME"))},
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join([str(home / "identity"), str(DAGS)]),
            "CUTOVER_HOME": str(cutover_home),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__FERNET_KEY": fernet,
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # only the runs the test triggers: no scheduled run of pt_cutover or pt_delta_sync
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _sqlalchemy_url(metadata_url),
            # psycopg 3 is async-capable and installed; asyncpg (Airflow's default guess) is not
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": _sqlalchemy_url(metadata_url, "postgresql+psycopg"),
            "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:6379/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + _sqlalchemy_url(metadata_url, "postgresql"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            # as docker-compose configures them: the tasks' modules preloaded in each worker
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "cutover.celery_config.CELERY_CONFIG",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # the DAG files do not change during the test: parsed once, not every 30 s beside the tasks
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            **{f"AIRFLOW_CONN_{k.upper()}": _conn_json(v) for k, v in connections.items()},
        }

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
        return done

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        out = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [str(BIN / "airflow"), *args],
            env={**self.env, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its children
        )
        self.processes.append((name, process))

    def up(self) -> None:
        started = time.monotonic()
        self.airflow("db", "migrate")
        self.start("api-server", "api-server", "--port", str(self.port), "--host", "127.0.0.1")
        self.start("scheduler", "scheduler")
        self.start("dag-processor", "dag-processor")
        for name in WORKERS:
            self.start(
                name,
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--queues",
                self.queue,
                "--skip-serve-logs",
                "--without-gossip",
                "--without-mingle",
                env={
                    "CUTOVER_TEST_WORKER_NAME": name,
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "cutover_test_identity.hostname",
                },
            )
        self.wait_for(self._api_ready, 240, "the API server to answer")
        self.wait_for(
            self._dags_parsed, 240, "the DAG processor to parse pt_assess, pt_backup and pt_cutover"
        )
        # every Cutover DAG is created paused (whatever the configuration): unpause what the test
        # triggers, as a data engineer must (the scheduler's own runs are off: USE_JOB_SCHEDULE)
        self.airflow("dags", "unpause", "^pt_(assess|backup|cutover)$", "--treat-dag-id-as-regex", "-y")
        self.timings["start"] = time.monotonic() - started

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-2500:] for p in sorted(self.logs.glob("*.log"))
        )

    def wait_for(self, ready, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.processes if p.poll() is not None]
            assert not dead, f"{dead} exited while waiting for {what}\n{self.tails()}"
            if ready():
                return
            time.sleep(2)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.tails()}")

    def _api_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def query(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.metadata_url) as conn:
            return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]

    def _dags_parsed(self) -> bool:
        rows = self.query("SELECT dag_id FROM serialized_dag")
        return {"pt_assess", "pt_backup", "pt_cutover"} <= {r[0] for r in rows}

    def trigger(self, dag_id: str, conf: dict[str, object] | None = None) -> str:
        """Trigger ``dag_id`` (as ``airflow dags trigger`` does); returns the run id."""
        run_id = f"celery__{dag_id}__{uuid.uuid4().hex[:6]}"
        self.airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf or {}))
        self.started[run_id] = time.monotonic()
        return run_id

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> float:
        """Wait for a run to finish; assert it succeeded; returns seconds since its trigger."""
        state: list[str] = []

        def finished() -> bool:
            rows = self.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
            state[:] = [str(rows[0][0])] if rows else []
            return bool(state) and state[0] in {"success", "failed"}

        self.wait_for(finished, timeout, f"{dag_id} run {run_id}")
        if state != ["success"]:
            tasks = self.query(
                "SELECT task_id, map_index, state, hostname FROM task_instance WHERE run_id = %s ORDER BY 1, 2",
                (run_id,),
            )
            raise AssertionError(f"{dag_id} {state}: {tasks}\n{self.tails()}")
        self.timings[dag_id] = time.monotonic() - self.started[run_id]
        return self.timings[dag_id]

    def hosts(self, run_id: str) -> dict[str, int]:
        rows = self.query(
            "SELECT hostname, count(*) FROM task_instance WHERE run_id = %s AND state = 'success' GROUP BY 1",
            (run_id,),
        )
        return {str(h): int(n) for h, n in rows}


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    legacy = tmp_path_factory.mktemp("clinic") / "legacy.db"
    manifest = simulate(f"sqlite:///{legacy}", patients=PATIENTS, seed=SEED)
    return legacy, manifest


class LocalReference(threading.Thread):
    """``cutover run pt_backup`` then ``cutover run pt_cutover`` (in-process ``dag.test()``) on the same
    clinic into a target of its own; runs beside the Celery stack, so the two overlap in time."""

    def __init__(self, legacy: Path, target: str, home: Path) -> None:
        super().__init__(daemon=True)
        self.env = {"AIRFLOW_CONN_LEGACY_DB": f"sqlite:///{legacy}", "AIRFLOW_CONN_TARGET_DB": target}
        self.home = home
        self.results: list[subprocess.CompletedProcess[str]] = []
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        for dag_id in ("pt_backup", "pt_cutover"):
            self.results.append(run_cutover(["run", dag_id], self.home, self.env))
            if self.results[-1].returncode != 0:
                break
        self.seconds = time.monotonic() - started


@dataclass
class Stack:
    harness: CeleryAirflow
    celery_target: str
    local_target: str
    local: LocalReference
    assess_run: str
    backup_run: str


@pytest.fixture
def stack(
    pg_admin_url: str,
    clinic: tuple[Path, dict[str, object]],
    tmp_path_factory: pytest.TempPathFactory,
    airflow_template: Path,
) -> Iterator[Stack]:
    """The Celery stack up, pt_assess and pt_backup triggered, and the local reference run under way."""
    require_service("Redis", "127.0.0.1", 6379)
    root = tmp_path_factory.mktemp("celery")
    metadata = _new_database(pg_admin_url, "airflow")
    celery_target = _new_database(pg_admin_url, "celery_target")
    local_target = _new_database(pg_admin_url, "local_target")
    legacy, _ = clinic
    for folder in ("state", "local"):
        (root / folder).mkdir()
    seed_airflow_home(root / "local", airflow_template)
    harness = CeleryAirflow(
        root / "airflow",
        metadata,
        {
            "legacy_db": f"sqlite:///{legacy}",
            "target_db": celery_target,
            "staging_store": f"file://{root / 'stage'}",
        },
        root / "state",
    )
    local = LocalReference(legacy, local_target, root / "local")
    local.start()  # needs no Airflow stack: overlaps with its start-up
    try:
        harness.up()
        # independent DAGs run side by side: the assessment while the backup is made
        yield Stack(
            harness,
            celery_target,
            local_target,
            local,
            harness.trigger("pt_assess"),
            harness.trigger("pt_backup"),
        )
    finally:
        harness.stop()
        local.join(timeout=900)
        run_cutover(["stop"], root / "local")
        for url in (celery_target, local_target, metadata):
            _drop_database(pg_admin_url, url)


def test_assess_backup_and_cutover_on_two_celery_workers_equal_a_local_run(
    stack: Stack, clinic: tuple[Path, dict[str, object]]
) -> None:
    """One test, so that one worker process owns the whole stack (xdist never splits it)."""
    harness = stack.harness
    _, manifest = clinic
    harness.wait_run("pt_assess", stack.assess_run, timeout=600)
    assess_hosts = harness.hosts(stack.assess_run)
    assert set(assess_hosts) <= set(WORKERS), assess_hosts
    assert sum(assess_hosts.values()) >= 1

    harness.wait_run("pt_backup", stack.backup_run, timeout=600)
    run_id = harness.trigger("pt_cutover")
    harness.wait_run("pt_cutover", run_id, timeout=1200)
    hosts = harness.hosts(run_id)
    assert set(hosts) == set(WORKERS), f"tasks did not spread over both workers: {hosts}"

    stack.local.join(timeout=900)
    assert not stack.local.is_alive(), "the local reference run did not finish"
    for result in stack.local.results:
        evidence_of(result)
    assert len(stack.local.results) == 2
    timings = {k: round(v) for k, v in {**harness.timings, "local": stack.local.seconds}.items()}
    print(f"seconds: {timings}; tasks per worker: {hosts}", file=sys.stderr)  # shown with -s

    distributed = table_checksums(stack.celery_target)
    assert distributed == table_checksums(stack.local_target)
    assert distributed["patient"]["rows"] > 0
    assert sum(v["rows"] for v in distributed.values()) > 1000
    task_logs = [p for p in (harness.home / "logs").rglob("*.log") if f"run_id={run_id}" in str(p)]
    assert task_logs, "no task logs for the Celery run"
    logs = "\n".join(p.read_text(errors="replace") for p in (harness.home / "logs").rglob("*.log"))
    canaries = [str(c) for c in manifest["canaries"]]  # type: ignore[union-attr]
    assert not [c for c in canaries if c in logs]


def test_harness_helpers() -> None:
    assert (
        _sqlalchemy_url("postgresql://postgres@127.0.0.1:5432/af")
        == "postgresql+psycopg2://postgres@127.0.0.1:5432/af"
    )
    url = _sqlalchemy_url("postgresql://postgres:@/af?host=/tmp/s")
    assert parse_qs(urlsplit(url).query)["host"] == ["/tmp/s"]
