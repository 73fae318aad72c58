"""Every DAG imports inside the compose stack's Airflow containers, checked without a Docker engine.

For each Airflow service of ``docker-compose.yaml``, a temporary tree stands in for its
container's file system: the image's files (the Dockerfile's ``COPY`` instructions), then the
service's volumes (bind mounts copied from this checkout, named volumes empty) and secrets (a
fresh test key where the operator's file would be mounted), each at its container path re-rooted
under the tree. The service's ``environment`` is resolved as Compose resolves it with only the
secrets set (every ``${VAR:-default}`` at its default), and every container path in it re-rooted
too. Airflow's ``DagBag`` then parses ``dags/`` in a subprocess with exactly that environment and
the tree's copy of the ``cutover`` package (not this checkout's), so a file that is neither in the
image nor mounted, or a variable the stack does not set, fails here as it fails in the containers.
The same process then reads the backup key as the first task needing it would: from the secret,
with no key minted in the state volume (the silent fallback the stack must refuse).

Files are copied, not linked: the package finds its files from ``Path(__file__).resolve()``, which
would follow a link back into the checkout and find what the container would not. One setting is
replaced: the metadata database becomes a SQLite file in the tree, since the ``postgres`` service
does not run here and Airflow builds its PostgreSQL engine with ``asyncpg``, which the image has and
this virtualenv does not (``tests/dags`` checks that parsing never opens that database).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from unit.test_compose import (
    AIRFLOW_ANCHOR,
    COMPOSE_FILE,
    DOCKERFILE,
    ROOT,
    SECRETS,
    dockerfile_instructions,
    filled,
    interpolate_tree,
    services_merging_anchor,
)

IMAGE_ENV = {"AIRFLOW_HOME": "/opt/airflow"}
"""What the official ``apache/airflow`` image sets that this stack relies on (its WORKDIR is the same)."""

IMAGE_PYTHONPATH = "/opt/airflow/include"
"""Where the image imports ``cutover`` from: installed editable from ``/opt/cutover``, whose
``include/`` links to ``/opt/airflow/include`` (docker/airflow.Dockerfile)."""

SECRETS_DIR = "/run/secrets"
"""Where Compose mounts a service's secrets (the short syntax, or a relative ``target``)."""

_PARSE = """
import json, sys
from airflow.dag_processing.dagbag import BundleDagBag

dags = sys.argv[1]
bag = BundleDagBag(dag_folder=dags, bundle_path=dags)
cutover = sys.modules.get("cutover")
from cutover.config import KEY_FILE, key_text, state_dir
try:  # what the first task that needs the backup key does
    key_text()
    key_error = None
except Exception as exc:
    key_error = f"{type(exc).__name__}: {exc}"
minted = (state_dir() / KEY_FILE).exists()  # the silent fallback: a key in the state volume
print(json.dumps({
    "errors": bag.import_errors,
    "dag_ids": sorted(bag.dag_ids),
    "cutover": getattr(cutover, "__file__", None),
    "key_error": key_error,
    "minted": minted,
}))
"""


# --- The container's tree ------------------------------------------------------------------------


def _under(root: Path, container_path: str) -> Path:
    """``container_path`` (absolute, POSIX) re-rooted under ``root``."""
    return root / PurePosixPath(container_path).relative_to("/")


def _put(source: Path, target: Path) -> None:
    """Copy a file or folder to ``target``, replacing what is there (a mount hides the image's files)."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    else:
        shutil.copy2(source, target)


def image_layers() -> tuple[list[tuple[list[str], str]], dict[str, str]]:
    """The Dockerfile's ``COPY`` instructions (sources, destination) and its ``ENV`` settings."""
    copies: list[tuple[list[str], str]] = []
    env = dict(IMAGE_ENV)
    for word, args in dockerfile_instructions(DOCKERFILE):
        if word == "COPY":
            parts = [a for a in args.split() if not a.startswith("--")]
            copies.append((parts[:-1], parts[-1]))
        elif word == "ENV":
            env.update(item.split("=", 1) for item in args.split())
    return copies, env


def volume_mounts(service: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """(host source, or None for a named volume; container target) of each of ``service``'s volumes."""
    mounts: list[tuple[str | None, str]] = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            bind = source.startswith((".", "/", "~"))
        else:
            source, target = volume.get("source", ""), volume["target"]
            bind = volume.get("type") == "bind"
        mounts.append((source if bind else None, target))
    return mounts


def secret_mounts(service: Mapping[str, Any]) -> list[str]:
    """The container path of each of ``service``'s secrets."""
    paths = []
    for secret in service.get("secrets", []):
        if isinstance(secret, str):
            paths.append(f"{SECRETS_DIR}/{secret}")
        else:
            target = secret.get("target") or secret["source"]
            paths.append(target if target.startswith("/") else f"{SECRETS_DIR}/{target}")
    return paths


def reroot(value: str, root: Path, container_paths: Iterable[str]) -> str:
    """Every occurrence of a container path in ``value`` re-rooted under ``root``.

    >>> reroot("sqlite:////opt/airflow/state/x.db", Path("/tmp/t"), ["/opt/airflow"])
    'sqlite:////tmp/t/opt/airflow/state/x.db'
    >>> reroot("http://opt/airflow-apiserver/", Path("/tmp/t"), ["/opt/airflow"])
    'http://opt/airflow-apiserver/'
    """
    prefixes = sorted({p.rstrip("/") for p in container_paths}, key=len, reverse=True)
    if not prefixes:
        return value
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, prefixes)) + r")(?![\w.-])")
    return pattern.sub(lambda m: str(root) + m.group(1), value)


def container_tree(root: Path, service: Mapping[str, Any]) -> dict[str, str]:
    """Lay out ``service``'s container under ``root``; returns its environment, paths re-rooted."""
    copies, image_env = image_layers()
    container_paths = {SECRETS_DIR, IMAGE_PYTHONPATH, *IMAGE_ENV.values()}
    for sources, destination in copies:
        container_paths.add(destination)
        for source in sources:
            target = destination + Path(source).name if destination.endswith("/") else destination
            _put(ROOT / source, _under(root, target))
    for host, target in volume_mounts(service):
        container_paths.add(target)
        if host is None:
            _under(root, target).mkdir(parents=True, exist_ok=True)
        else:
            _put((ROOT / host).resolve(), _under(root, target))
    for target in secret_mounts(service):
        container_paths.add(target)
        path = _under(root, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")  # as the docs make one
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.partition("=")[::2] for item in declared)
    env = {**image_env, **{str(k): "" if v is None else str(v) for k, v in declared.items()}}
    return {name: reroot(value, root, container_paths) for name, value in env.items()}


# --- The check -----------------------------------------------------------------------------------


def error_line(text: str) -> str:
    """The exception's own line of an import error (Airflow stores the traceback).

    >>> error_line('Traceback (most recent call last):\\n  File "x.py", line 1\\n    y()\\nKeyError: 1')
    'KeyError: 1'
    """
    lines = text.strip().splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("Traceback (")), default=-1)
    return next((line for line in lines[start + 1 :] if line and not line[0].isspace()), text.strip())


def resolved_services() -> dict[str, dict[str, Any]]:
    """The Airflow services of the compose file, as Compose resolves them with only the secrets set."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    doc = interpolate_tree(raw, filled(dict.fromkeys(SECRETS, "")))
    airflow = services_merging_anchor(COMPOSE_FILE.read_text(), AIRFLOW_ANCHOR)
    return {name: doc["services"][name] for name in sorted(airflow)}


def parse_in_container(tmp_path: Path, service: Mapping[str, Any]) -> dict[str, Any]:
    root = tmp_path / "container"
    env = container_tree(root, service)
    home = _under(root, IMAGE_ENV["AIRFLOW_HOME"])
    dags = Path(env.get("AIRFLOW__CORE__DAGS_FOLDER") or home / "dags")
    process_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        **env,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'metadata.db'}",
        "PYTHONPATH": str(_under(root, IMAGE_PYTHONPATH)),
    }
    result = subprocess.run(
        [sys.executable, "-c", _PARSE, str(dags)],
        env=process_env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["cutover"], "the DAGs did not import cutover"
    assert Path(parsed["cutover"]).is_relative_to(root), (
        f"cutover was imported from {parsed['cutover']}, not from the container's tree"
    )
    parsed["root"] = str(root)
    return parsed


def configurations() -> dict[str, dict[str, Any]]:
    """One service per distinct configuration (volumes, secrets, environment), named after all
    the services that share it: the check runs once for each."""
    groups: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for name, service in resolved_services().items():
        key = json.dumps([service.get(k) for k in ("volumes", "secrets", "environment")], sort_keys=True)
        groups.setdefault(key, ([], service))[0].append(name)
    return {"+".join(names): service for names, service in groups.values()}


CONFIGURATIONS = configurations()


@pytest.mark.slow
@pytest.mark.parametrize("services", list(CONFIGURATIONS))
def test_every_dag_imports_and_the_backup_key_reads_in_the_containers(tmp_path: Path, services: str) -> None:
    parsed = parse_in_container(tmp_path, CONFIGURATIONS[services])
    shown = parsed["root"]  # paths shown as the container has them
    failures = [
        f"dags/{Path(path).name}: {error_line(text).replace(shown, '')}"
        for path, text in sorted(parsed["errors"].items())
    ]
    assert not failures, f"{services}: DAGs that do not import:\n" + "\n".join(failures)
    expected = sorted(p.stem for p in (ROOT / "dags").glob("pt_*.py"))
    assert parsed["dag_ids"] == expected, services
    assert parsed["key_error"] is None, f"{services}: {parsed['key_error'].replace(shown, '')}"
    assert not parsed["minted"], f"{services}: no key configured, one was minted in the state volume"
