"""The docker-compose stack, checked without a Docker engine.

What ``docker compose config`` would catch (the Compose Specification's JSON schema, after
``${VAR}`` interpolation from ``.env.example``), plus what it would not: every path the file
names exists, every image is pinned, every dependency is a defined service with a meaningful
condition, every Airflow service carries the shared settings, the three connections resolve
through ``cutover.config`` to the services of this stack, secrets have no defaults, and the
Dockerfile's Airflow version is the one requirements.txt pins. The helper scripts under docker/
run for real where they can (openssl, the embedded Python) or against a recording ``mc``.

The schema ships in the ``check-jsonschema`` wheel (its vendored copy of compose-spec.json), so
nothing is downloaded at test time.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml

from cutover.config import fields_from_env, url_from_fields

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "docker" / "airflow.Dockerfile"
DOCKERIGNORE = ROOT / "docker" / "airflow.Dockerfile.dockerignore"
MINIO_INIT = ROOT / "docker" / "minio" / "init.sh"
TARGET_DB_TLS = ROOT / "docker" / "target-db" / "10-require-tls.sh"
AIRFLOW_INIT = ROOT / "docker" / "airflow-init.sh"
DOCS = ROOT / "docs" / "docker-compose.md"
PLAN = ROOT / "cutover_plan.yaml"

AIRFLOW_ANCHOR = "x-airflow-common"
CONN_VARS = (
    "AIRFLOW_CONN_LEGACY_DB",
    "AIRFLOW_CONN_TARGET_DB",
    "AIRFLOW_CONN_TARGET_OWNER_DB",
    "AIRFLOW_CONN_STAGING_STORE",
)
TARGET_ROLES = {"AIRFLOW_CONN_TARGET_DB": "cutover_loader", "AIRFLOW_CONN_TARGET_OWNER_DB": "cutover_owner"}
"""The target's connections and the least-privilege role each logs in as (airflow-init provisions them)."""
TARGET_ADMIN_VAR = "CUTOVER_TARGET_ADMIN_URL"
"""The target's admin URL, which provisions the roles: airflow-init's alone."""
SECRETS = {
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_DB_PASSWORD",
    "AIRFLOW_ADMIN_PASSWORD",
    "REDIS_PASSWORD",
    "TARGET_DB_PASSWORD",
    "S3_SECRET_KEY",
    "MINIO_ROOT_PASSWORD",
    "MINIO_KMS_SECRET_KEY",
}
"""Variables that must never have a default in the compose file nor a value in .env.example."""


# --- Compose-style interpolation ---------------------------------------------------------------


class MissingVariableError(Exception):
    """A ``${VAR:?message}`` or ``${VAR?message}`` whose variable is unset (or empty, with ``:``)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message or 'required'}")
        self.name = name


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start`` (bodies may nest)."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def interpolate(text: str, env: Mapping[str, str], missing: list[str] | None = None) -> str:
    """Substitute variables the way Compose does.

    ``$$`` is a literal ``$``; ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?err}``,
    ``${VAR?err}``, ``${VAR:+alt}``, ``${VAR+alt}`` and nested ``${...}`` in the word are
    supported. An unset plain ``${VAR}`` becomes empty, as in Compose. Missing required variables
    raise, or are appended to ``missing`` (and become empty) when a list is given.

    >>> interpolate("a${X:-${Y}}$$b", {"Y": "y"})
    'ay$b'
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2 : end], env, missing))
            i = end + 1
        elif (match := _NAME.match(text, i + 1)) is not None:
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _expand(body: str, env: Mapping[str, str], missing: list[str] | None) -> str:
    match = _NAME.match(body)
    if match is None:
        raise ValueError(f"invalid variable reference ${{{body}}}")
    name, rest = match.group(), body[match.end() :]
    if not rest:
        return env.get(name, "")
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise ValueError(f"invalid operator in ${{{body}}}")
    word = rest[len(op) :]
    is_set = name in env
    usable = is_set and (env[name] != "" or not op.startswith(":"))
    if op.endswith("-"):
        return env[name] if usable else interpolate(word, env, missing)
    if op.endswith("+"):
        return interpolate(word, env, missing) if usable else ""
    if usable:  # "?" forms
        return env[name]
    if missing is None:
        raise MissingVariableError(name, interpolate(word, env))
    missing.append(name)
    return ""


def interpolate_tree(node: Any, env: Mapping[str, str], missing: list[str] | None = None) -> Any:
    """Interpolate every string value of a loaded YAML document (keys are left as they are)."""
    if isinstance(node, str):
        return interpolate(node, env, missing)
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env, missing) for v in node]
    return node


@pytest.mark.parametrize(
    ("title", "text", "env", "expected"),
    [
        ("plain, set", "${A}", {"A": "1"}, "1"),
        ("plain, unset is empty", "x${A}y", {}, "xy"),
        ("bare name", "$A/$B", {"A": "1", "B": "2"}, "1/2"),
        ("escaped dollar", "$${A}", {"A": "1"}, "${A}"),
        (":- on empty", "${A:-d}", {"A": ""}, "d"),
        ("- keeps empty", "${A-d}", {"A": ""}, ""),
        (":- nested default", "${A:-${B:-c}}", {}, "c"),
        (":+ when set", "${A:+alt}", {"A": "1"}, "alt"),
        (":+ when empty", "${A:+alt}", {"A": ""}, ""),
        (":? when set", "${A:?need A}", {"A": "v"}, "v"),
        ("? accepts empty", "${A?need A}", {"A": ""}, ""),
    ],
)
def test_interpolate_follows_compose(title: str, text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected, title


@pytest.mark.parametrize(("text", "env"), [("${A:?need A}", {"A": ""}), ("${A?need A}", {})])
def test_interpolate_refuses_missing_required(text: str, env: dict[str, str]) -> None:
    with pytest.raises(MissingVariableError, match="need A"):
        interpolate(text, env)


# --- Loading the stack ---------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (unquoted values, full-line comments)."""
    env: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number} is not KEY=VALUE"
        assert _NAME.fullmatch(key), f"{path.name}:{number}: {key!r} is no variable name"
        assert not value.startswith(("'", '"')), f"{path.name}:{number}: keep values unquoted"
        assert key not in env, f"{path.name}:{number}: {key} listed twice"
        env[key] = value
    return env


def string_values(node: Any) -> Iterator[str]:
    """Every string value of a loaded YAML document: what Compose interpolates (not comments)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from string_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from string_values(value)


def referenced_variables(doc: Any) -> dict[str, list[str]]:
    """Each variable the document references, with the operator and word of each reference."""
    refs: dict[str, list[str]] = {}
    for value in string_values(doc):
        text = value.replace("$$", "")
        for match in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)", text):
            refs.setdefault(match.group(1), []).append(match.group(2))
        for match in re.finditer(r"\$([A-Za-z_][A-Za-z0-9_]*)", text):
            refs.setdefault(match.group(1), []).append("")
    return refs


def filled(env: Mapping[str, str]) -> dict[str, str]:
    """The example environment with each empty secret given a URL-safe test value."""
    return {k: v or (f"test0{k.lower().replace('_', '0')}" if k in SECRETS else v) for k, v in env.items()}


@dataclass(frozen=True)
class Stack:
    raw: dict[str, Any]
    doc: dict[str, Any]
    env: dict[str, str]

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        services: dict[str, dict[str, Any]] = self.doc["services"]
        return services

    def environment(self, service: str) -> dict[str, str]:
        value = self.services[service].get("environment") or {}
        if isinstance(value, list):
            value = dict(item.partition("=")[::2] for item in value)
        return {str(k): "" if v is None else str(v) for k, v in value.items()}


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return doc


@pytest.fixture(scope="module")
def stack(raw_compose: dict[str, Any], example_env: dict[str, str]) -> Stack:
    env = filled(example_env)
    return Stack(raw_compose, interpolate_tree(raw_compose, env), env)


@pytest.fixture(scope="module")
def defaults_stack(raw_compose: dict[str, Any]) -> Stack:
    """The file as it resolves with only the secrets set: every other value is its default."""
    env = filled(dict.fromkeys(SECRETS, ""))
    return Stack(raw_compose, interpolate_tree(raw_compose, env), env)


def compose_schema() -> dict[str, Any]:
    resource = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath(
        "compose-spec.json"
    )
    schema: dict[str, Any] = json.loads(resource.read_bytes())
    return schema


# --- Schema --------------------------------------------------------------------------------------


def schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_matches_the_compose_specification(stack: Stack) -> None:
    assert schema_errors(stack.doc) == []


@pytest.mark.parametrize(
    ("title", "breakage"),
    [
        ("unknown service key", lambda d: d["services"]["redis"].update(imagee="redis:7")),
        (
            "unknown depends_on condition",
            lambda d: d["services"]["airflow-worker"]["depends_on"]["redis"].update(condition="when_ready"),
        ),
        (
            "healthcheck test of the wrong type",
            lambda d: d["services"]["redis"]["healthcheck"].update(test=7),
        ),
    ],
)
def test_schema_catches_a_broken_file(stack: Stack, title: str, breakage: Any) -> None:
    doc = json.loads(json.dumps(stack.doc))
    breakage(doc)
    assert schema_errors(doc), f"the schema accepted a broken file: {title}"


# --- Variables and secrets -----------------------------------------------------------------------


def test_env_example_lists_exactly_the_variables_the_file_reads(
    raw_compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    used = set(referenced_variables(raw_compose))
    assert sorted(used - set(example_env)) == [], "referenced in docker-compose.yaml, missing in .env.example"
    assert sorted(set(example_env) - used) == [], "listed in .env.example, unused by docker-compose.yaml"


def test_secrets_are_required_and_left_empty_in_the_example(
    raw_compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    refs = referenced_variables(raw_compose)
    required = {name for name, ops in refs.items() if any(op.startswith((":?", "?")) for op in ops)}
    assert required == SECRETS
    for name in SECRETS:
        assert all(op.startswith(":?") for op in refs[name]), f"{name} has a default somewhere"
        assert example_env[name] == "", f".env.example must not carry a value for {name}"
    missing: list[str] = []
    interpolate_tree(raw_compose, example_env, missing)
    assert set(missing) == SECRETS, "copying .env.example unchanged must stop at every missing secret"


def test_example_values_are_the_compose_defaults(
    raw_compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    for name, ops in referenced_variables(raw_compose).items():
        if name in SECRETS:
            continue
        defaults = {op[2:] for op in ops if op.startswith(":-")}
        assert len(defaults) == 1, f"{name} needs exactly one default, found {sorted(defaults)}"
        assert example_env[name] == defaults.pop(), (
            f".env.example shows another value than the default of {name}"
        )


# --- Paths, images, dependencies -----------------------------------------------------------------


def bind_sources(service: Mapping[str, Any]) -> Iterator[str]:
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                yield source
        elif volume.get("type") == "bind":
            yield volume["source"]


def in_repository(path: Path) -> bool:
    """The path is in the repository: tracked by git (a file, or a folder holding tracked files).

    A fresh clone, which is what CI and an operator get, has only tracked paths: an empty or
    untracked folder exists here but not there, and Docker would then create it root-owned.
    Outside a git checkout (an unpacked archive) existence on disk is all there is to check.
    """
    if not (ROOT / ".git").exists():
        return path.exists()
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--", str(path.relative_to(ROOT))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return bool(listed.strip())


def test_every_path_the_file_names_exists(stack: Stack) -> None:
    for name, service in stack.services.items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert in_repository(context), f"{name}: build context {context} is not in the repository"
            if isinstance(build, dict) and "dockerfile" in build:
                dockerfile = context / build["dockerfile"]
                assert in_repository(dockerfile), f"{name}: {dockerfile} is not in the repository"
        for source in bind_sources(service):
            assert in_repository((ROOT / source).resolve()), (
                f"{name}: volume source {source} is not in the repository (no tracked file under it)"
            )
        env_files = service.get("env_file", [])
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            assert in_repository(ROOT / path), f"{name}: env_file {path} is not in the repository"


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comment lines dropped."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_copies_only_files_that_exist_and_are_sent(stack: Stack) -> None:
    included = {
        line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")
    }
    copies = [args for word, args in dockerfile_instructions(DOCKERFILE) if word == "COPY"]
    assert copies, "the Dockerfile copies nothing"
    for args in copies:
        sources = [a for a in args.split() if not a.startswith("--")][:-1]
        for source in sources:
            assert in_repository(ROOT / source), f"COPY source {source} is not in the repository"
            assert source.rstrip("/") in included, f"COPY source {source} is excluded by the .dockerignore"


IMAGE_REF = re.compile(
    r"^(?P<name>(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"  # optional registry, with its port
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>\w[\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def is_pinned(ref: str) -> bool:
    """A tag other than ``latest``, or a digest.

    >>> is_pinned("redis:7.2.11"), is_pinned("redis"), is_pinned("redis:latest")
    (True, False, False)
    """
    match = IMAGE_REF.match(ref)
    if match is None:
        return False
    return bool(match.group("digest")) or match.group("tag") not in (None, "latest")


@pytest.mark.parametrize(
    ("ref", "pinned"),
    [
        ("redis:7.2.11", True),
        ("redis:7", True),
        ("redis", False),
        ("redis:latest", False),
        ("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", True),
        ("registry.local:5000/team/airflow", False),
        ("registry.local:5000/team/airflow:3.3.2", True),
        ("minio/minio@sha256:" + "ab" * 32, True),
        ("minio/minio:latest@sha256:" + "ab" * 32, True),
        ("Bad Name:1", False),
    ],
)
def test_is_pinned(ref: str, pinned: bool) -> None:
    assert is_pinned(ref) is pinned


@pytest.mark.parametrize("which", ["example", "defaults"])
def test_every_image_is_pinned(stack: Stack, defaults_stack: Stack, which: str) -> None:
    resolved = stack if which == "example" else defaults_stack
    for name, service in resolved.services.items():
        assert "image" in service or "build" in service, f"{name} has neither image nor build"
        if "image" in service:
            assert is_pinned(service["image"]), f"{name}: image {service['image']!r} is not pinned"
    for word, args in dockerfile_instructions(DOCKERFILE):
        if word == "FROM":
            assert is_pinned(args.split()[0]), f"Dockerfile FROM {args} is not pinned"


def test_dependencies_are_defined_services_with_meaningful_conditions(stack: Stack) -> None:
    services = stack.services
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on undefined service {target}"
            condition = spec["condition"]
            one_shot = services[target].get("restart") == "no"
            if one_shot:
                assert condition == "service_completed_successfully", f"{name} -> {target}"
            else:
                assert condition == "service_healthy", f"{name} -> {target}: wait for health"
                assert "healthcheck" in services[target], f"{target} has no healthcheck to wait for"


def test_long_running_services_have_healthchecks(stack: Stack) -> None:
    for name, service in stack.services.items():
        if service.get("restart") == "no":
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check.get("test"), f"{name}: healthcheck without a test"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert service.get("restart") in {"always", "unless-stopped"}, f"{name} is not restarted"


def test_published_ports_bind_to_loopback(defaults_stack: Stack) -> None:
    for name, service in defaults_stack.services.items():
        for port in service.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert text.startswith("127.0.0.1:"), f"{name} publishes {text} beyond the host"


# --- Airflow services ----------------------------------------------------------------------------


def services_merging_anchor(text: str, anchor_key: str) -> set[str]:
    """Services whose mapping merges (``<<:``) the node defined under ``anchor_key``."""
    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)
    top = {k.value: v for k, v in root.value}
    anchor_node = top[anchor_key]
    users = set()
    for key, node in top["services"].value:
        for item_key, item_value in node.value:
            if item_key.value == "<<" and item_value is anchor_node:
                users.add(key.value)
    return users


def test_airflow_services_share_the_common_settings(stack: Stack) -> None:
    users = services_merging_anchor(COMPOSE_FILE.read_text(), AIRFLOW_ANCHOR)
    airflow = {name for name in stack.services if name.startswith("airflow-")}
    assert users == airflow
    assert {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"} <= airflow
    assert {"airflow-triggerer", "airflow-worker", "airflow-init"} <= airflow
    for name in sorted(airflow):
        env = stack.environment(name)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert env["AIRFLOW__CORE__FERNET_KEY"] == stack.env["AIRFLOW_FERNET_KEY"], name
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == stack.env["AIRFLOW_JWT_SECRET"], name
        assert env["CUTOVER_HOME"] == "/opt/airflow/state", name
        for var in CONN_VARS:
            assert env.get(var), f"{name} lacks {var}"
        if name != "airflow-init":
            init = stack.services[name]["depends_on"]["airflow-init"]
            assert init["condition"] == "service_completed_successfully", name


def bind_mounts(service: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path → (host path, read-only) of each bind mount of ``service``."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            if source.startswith((".", "/", "~")):
                mounts[target] = (source, "ro" in ",".join(mode).split(","))
        elif volume.get("type") == "bind":
            mounts[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
    return mounts


SECRETS_DIR = "/run/secrets"
"""Where Compose mounts a service's secrets (the short syntax, or a relative ``target``)."""


def secret_targets(service: Mapping[str, Any]) -> dict[str, str]:
    """Secret name → container path, for each of ``service``'s secrets (short or long syntax)."""
    targets = {}
    for secret in service.get("secrets", []):
        if isinstance(secret, str):
            targets[secret] = f"{SECRETS_DIR}/{secret}"
        else:
            target = secret.get("target") or secret["source"]
            targets[secret["source"]] = target if target.startswith("/") else f"{SECRETS_DIR}/{target}"
    return targets


def test_every_airflow_service_gets_the_plan_and_the_backup_key(stack: Stack) -> None:
    """The plan mounted read-only where ``CUTOVER_PLAN`` points, the key from a secret (never from
    the environment), the embedded default key refused. (tests/unit/test_compose_dags.py imports
    every DAG with these mounts and settings; tests/unit/test_compose_init.py runs the init's key
    check, which refuses to start the stack without it.)"""
    for name in sorted(n for n in stack.services if n.startswith("airflow-")):
        service, env = stack.services[name], stack.environment(name)
        plan = bind_mounts(service).get(env.get("CUTOVER_PLAN", ""))
        assert plan, f"{name}: CUTOVER_PLAN is not a mounted file"
        assert (ROOT / plan[0]).resolve() == PLAN, f"{name} mounts another plan than {PLAN.name}"
        assert plan[1], f"{name}: mount the plan read-only"
        secrets = [s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])]
        assert "backup_key" in secrets, f"{name} lacks the backup_key secret"
        assert env.get("CUTOVER_BACKUP_KEY_FILE") == "/run/secrets/backup_key", name
        assert env.get("CUTOVER_REQUIRE_BACKUP_KEY") == "1", f"{name} may fall back to the default key"
        assert "CUTOVER_BACKUP_KEY" not in env, f"{name}: the key belongs in the secret, not the environment"


def test_every_secret_is_declared_used_and_kept_out_of_git_and_the_image(stack: Stack) -> None:
    declared: dict[str, Any] = stack.doc.get("secrets") or {}
    used: set[str] = set()
    for name, service in stack.services.items():
        for secret in secret_targets(service):
            assert secret in declared, f"{name} uses the secret {secret}, which secrets: does not declare"
            used.add(secret)
    assert sorted(set(declared) - used) == [], "secrets declared that no service uses"
    included = [ln[1:].rstrip("/") for ln in DOCKERIGNORE.read_text().splitlines() if ln.startswith("!")]
    for secret, spec in declared.items():
        assert set(spec) == {"file"}, f"secret {secret}: a file the operator makes, nothing else"
        relative = Path(spec["file"])
        assert relative.parts[0] == "secrets", f"secret {secret}: keep its file under ./secrets/"
        if (ROOT / ".git").exists():
            ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(relative)])
            assert ignored.returncode == 0, f"{relative} is not ignored by git"
        assert not any(str(relative) == i or str(relative).startswith(f"{i}/") for i in included), (
            f"{relative} is sent to the image build"
        )


PASSWORD_NAME = re.compile(r"PASSWORD|SECRET|FERNET_KEY|_AUTH$", re.I)
"""Names of settings (environment variables, JSON fields) that hold a password or a key."""
URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/@?#\s]*)@")


def password_literals(doc: Mapping[str, Any], secret_values: set[str]) -> list[str]:
    """Where an interpolated compose document holds a password that is none of ``secret_values``
    (what the required variables were given): a literal in the file, or a default."""
    found = []
    for name, service in doc["services"].items():
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.partition("=")[::2] for item in env)
        for key, raw in env.items():
            value = "" if raw is None else str(raw)
            if PASSWORD_NAME.search(key) and not key.endswith("_FILE") and value not in secret_values:
                found.append(f"{name}: {key}")
            for match in URL_USERINFO.finditer(value):
                _, has_password, password = match.group(1).partition(":")
                if has_password and password not in secret_values:
                    found.append(f"{name}: {key} (a password in a URL)")
            if value.lstrip().startswith("{"):
                for field, item in json.loads(value).items():
                    if PASSWORD_NAME.search(field) and str(item) not in secret_values:
                        found.append(f"{name}: {key} (field {field})")
    return found


def test_no_password_literal_in_the_compose_file(stack: Stack) -> None:
    """Every password and key in the stack's settings is one of the required variables (.env) or
    lives in a secret file: none is written in the compose file, none has a default."""
    assert password_literals(stack.doc, {stack.env[name] for name in SECRETS}) == []


@pytest.mark.parametrize(
    ("title", "breakage"),
    [
        ("a literal", lambda d: d["services"]["postgres"]["environment"].update(POSTGRES_PASSWORD="hunter2")),
        (
            "a password in a connection URL",
            lambda d: d["services"]["airflow-worker"]["environment"].update(
                AIRFLOW_CONN_TARGET_DB="postgresql://cutover_loader:hunter2@target-db:5432/cutover"
            ),
        ),
        (
            "a password in a JSON connection",
            lambda d: d["services"]["airflow-worker"]["environment"].update(
                AIRFLOW_CONN_STAGING_STORE='{"conn_type": "aws", "password": "hunter2"}'
            ),
        ),
    ],
)
def test_password_literals_are_found(stack: Stack, title: str, breakage: Any) -> None:
    doc = json.loads(json.dumps(stack.doc))
    breakage(doc)
    assert password_literals(doc, {stack.env[name] for name in SECRETS}), f"not found: {title}"


def test_the_target_admin_password_reaches_its_server_and_the_init_only(stack: Stack) -> None:
    """The tasks connect as the least-privilege roles: the superuser's password is in target-db
    (which sets it) and airflow-init (which provisions the roles), in no other container."""
    password = stack.env["TARGET_DB_PASSWORD"]
    for name in stack.services:
        holders = sorted(k for k, v in stack.environment(name).items() if password in v)
        expected = {"target-db": ["POSTGRES_PASSWORD"], "airflow-init": [TARGET_ADMIN_VAR]}.get(name, [])
        assert holders == expected, f"{name} holds the target's admin password in {holders}"


def test_airflow_init_provisions_the_target_roles_once_the_target_is_healthy(stack: Stack) -> None:
    init = stack.services["airflow-init"]
    assert init["depends_on"]["target-db"] == {"condition": "service_healthy"}
    assert {"postgres", "redis"} <= set(init["depends_on"]), "the init no longer waits for its database"
    assert TARGET_ADMIN_VAR in stack.environment("airflow-init")
    for name in sorted(n for n in stack.services if n.startswith("airflow-")):
        env, mounted = stack.environment(name), secret_targets(stack.services[name])
        for var in TARGET_ROLES:
            query = parse_qs(urlsplit(url_from_fields(fields_from_env(env[var]))).query)
            assert query["passfile"][0] in mounted.values(), f"{name}: the passfile of {var} is not mounted"
        if name != "airflow-init":
            assert TARGET_ADMIN_VAR not in env, f"{name} gets the target's admin"
    script = AIRFLOW_INIT.read_text()
    assert "python -m cutover.security provision-target" in script, (
        "airflow-init.sh no longer provisions the target's roles"
    )


def test_components_run_their_airflow_3_commands(stack: Stack) -> None:
    commands = {name: stack.services[name].get("command") for name in stack.services}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    assert commands["airflow-worker"] == "celery worker"
    url = urlsplit(stack.environment("airflow-worker")["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.hostname == "airflow-apiserver"
    assert url.path == "/execution/"
    published = stack.services["airflow-apiserver"]["ports"][0]
    assert published.rsplit(":", 1)[1] == str(url.port), "execution API port is not the API server's"


def test_worker_can_be_scaled(stack: Stack) -> None:
    worker = stack.services["airflow-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert stack.environment("airflow-worker")["DUMB_INIT_SETSID"] == "0"
    assert "--scale airflow-worker=" in DOCS.read_text()


def test_connections_resolve_to_the_services_of_this_stack(stack: Stack) -> None:
    env = stack.environment("airflow-worker")
    legacy = url_from_fields(fields_from_env(env["AIRFLOW_CONN_LEGACY_DB"]))
    assert legacy == f"sqlite:///{env['CUTOVER_HOME']}/legacy.db"

    db = stack.environment("target-db")
    admin = urlsplit(stack.environment("airflow-init")[TARGET_ADMIN_VAR])
    assert (admin.scheme, admin.hostname, admin.port) == ("postgresql", "target-db", 5432)
    assert (admin.username, admin.password) == (db["POSTGRES_USER"], db["POSTGRES_PASSWORD"])
    assert admin.path == f"/{db['POSTGRES_DB']}"
    assert parse_qs(admin.query)["sslmode"] == ["require"]
    secrets = secret_targets(stack.services["airflow-worker"])
    for var, role in TARGET_ROLES.items():
        target = urlsplit(url_from_fields(fields_from_env(env[var])))
        assert (target.scheme, target.hostname, target.port, target.path) == (
            admin.scheme,
            admin.hostname,
            admin.port,
            admin.path,
        ), f"{var} names another database than the one whose roles airflow-init provisions"
        assert target.username == role, var
        assert target.password is None, f"{var} carries a password: it belongs in its passfile secret"
        query = parse_qs(target.query)
        assert query["sslmode"] == ["require"], var
        assert query["passfile"][0] in secrets.values(), f"{var}: its passfile is no mounted secret"

    staging = fields_from_env(env["AIRFLOW_CONN_STAGING_STORE"])
    init = stack.environment("minio-init")
    assert staging.conn_type == "aws"
    assert (staging.login, staging.password) == (init["S3_ACCESS_KEY"], init["S3_SECRET_KEY"])
    assert staging.extra["bucket"] == init["S3_BUCKET"] == "cutover-staging"
    staging_url = urlsplit(url_from_fields(staging))
    assert (staging_url.scheme, staging_url.netloc) == ("s3", "cutover-staging")
    query = parse_qs(staging_url.query)
    assert query["endpoint_url"] == ["http://minio:9000"]
    assert query["region_name"] == ["us-east-1"]
    assert query["sse"] == ["AES256"]
    assert "kms_key_id" not in query


def test_endpoint_and_encryption_are_swappable(
    raw_compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    env = filled(example_env) | {
        "S3_ENDPOINT_URL": "https://s3.eu-central-1.amazonaws.com",
        "S3_REGION": "eu-central-1",
        "S3_BUCKET": "acme-pt-cutover",
        "S3_SSE": "aws:kms",
        "S3_KMS_KEY_ID": "arn:aws:kms:eu-central-1:111122223333:key/k1",
        "TARGET_DB_HOST": "pt-prod.example.internal",
        "TARGET_DB_TLS": "sslmode=verify-full&sslrootcert=/opt/airflow/certs/target-ca.pem",
    }
    doc = interpolate_tree(raw_compose, env)
    conns = doc["services"]["airflow-worker"]["environment"]
    staging = urlsplit(url_from_fields(fields_from_env(conns["AIRFLOW_CONN_STAGING_STORE"])))
    query = parse_qs(staging.query)
    assert staging.netloc == "acme-pt-cutover"
    assert query["endpoint_url"] == [env["S3_ENDPOINT_URL"]]
    assert query["sse"] == ["aws:kms"]
    assert query["kms_key_id"] == [env["S3_KMS_KEY_ID"]]
    admin_url = doc["services"]["airflow-init"]["environment"][TARGET_ADMIN_VAR]
    for url in (*(url_from_fields(fields_from_env(conns[var])) for var in TARGET_ROLES), admin_url):
        target = urlsplit(url)
        assert target.hostname == "pt-prod.example.internal"
        query = parse_qs(target.query)
        query.pop("passfile", None)
        assert query == {"sslmode": ["verify-full"], "sslrootcert": ["/opt/airflow/certs/target-ca.pem"]}


def test_secrets_agree_across_services(stack: Stack) -> None:
    airflow = stack.environment("airflow-scheduler")
    metadata = urlsplit(airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert metadata.hostname == "postgres"
    assert metadata.password == stack.environment("postgres")["POSTGRES_PASSWORD"]
    broker = urlsplit(airflow["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.hostname == "redis"
    assert broker.password == stack.environment("redis")["REDISCLI_AUTH"]
    minio, init = stack.environment("minio"), stack.environment("minio-init")
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (
        init["MINIO_ROOT_USER"],
        init["MINIO_ROOT_PASSWORD"],
    )


# --- The image -----------------------------------------------------------------------------------


def test_dockerfile_builds_the_pinned_airflow_for_the_locked_python(stack: Stack) -> None:
    pin = re.search(r"^apache-airflow==(\S+)\s*$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pin, "requirements.txt pins no apache-airflow version"
    lock_python = re.search(r"--python (\d+\.\d+)", (ROOT / "requirements.lock").read_text())
    assert lock_python, "requirements.lock does not say which Python it was compiled for"
    froms = [args for word, args in dockerfile_instructions(DOCKERFILE) if word == "FROM"]
    assert froms == [f"apache/airflow:{pin.group(1)}-python{lock_python.group(1)}"]

    runs = " ".join(args for word, args in dockerfile_instructions(DOCKERFILE) if word == "RUN")
    assert "-c /opt/cutover/requirements.lock" in runs, "the lock must constrain the install"
    assert "-e /opt/cutover" in runs
    # The Dockerfile installs requirements.txt up to this line: test and lint tools stay out.
    assert re.search(r"^# test and lint", (ROOT / "requirements.txt").read_text(), re.M)

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert stack.raw[AIRFLOW_ANCHOR]["image"].endswith(f":{version}}}"), (
        "image tag is not the package version"
    )


# --- The helper scripts, run for real where they can ---------------------------------------------


def test_shell_scripts_parse() -> None:
    scripts = sorted((ROOT / "docker").rglob("*.sh"))
    assert scripts
    for script in scripts:
        shell = "sh" if script.read_text().startswith("#!/bin/sh") else "bash"
        result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
        assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is not executable"


def _fernet_check() -> str:
    text = AIRFLOW_INIT.read_text()
    match = re.search(r"<<'PY'\n(.*?)\nPY\n", text, re.S)
    assert match, "airflow-init.sh no longer checks the Fernet key"
    return match.group(1)


@pytest.mark.parametrize(
    ("title", "key", "ok"),
    [
        ("one valid key", "valid", True),
        ("rotation: two valid keys", "valid,valid", True),
        ("too short", "c2hvcnQ=", False),
        ("empty", "", False),
    ],
)
def test_airflow_init_checks_the_fernet_key(title: str, key: str, ok: bool) -> None:
    from cryptography.fernet import Fernet

    key = ",".join(Fernet.generate_key().decode() if k == "valid" else k for k in key.split(","))
    env = {**os.environ, "AIRFLOW__CORE__FERNET_KEY": key}
    result = subprocess.run([sys.executable, "-c", _fernet_check()], env=env, capture_output=True, text=True)
    assert (result.returncode == 0) is ok, f"{title}: {result.stderr}"
    if key:
        assert key not in result.stdout + result.stderr, "the check printed the key"


def _run_tls_script(pgdata: Path, hba: str) -> subprocess.CompletedProcess[str]:
    (pgdata / "postgresql.conf").write_text("listen_addresses = '*'\n")
    (pgdata / "pg_hba.conf").write_text(hba)
    env = {**os.environ, "PGDATA": str(pgdata)}
    return subprocess.run(["bash", str(TARGET_DB_TLS)], env=env, capture_output=True, text=True)


IMAGE_HBA = """\
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
host    replication     all             127.0.0.1/32            trust

host all all all scram-sha-256
"""


def test_target_db_accepts_network_logins_over_tls_only(tmp_path: Path) -> None:
    result = _run_tls_script(tmp_path, IMAGE_HBA)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "server.key").stat().st_mode) == 0o600
    cert = subprocess.run(
        [
            "openssl",
            "x509",
            "-in",
            str(tmp_path / "server.crt"),
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CN=target-db" in cert.replace(" ", "")
    assert "DNS:target-db" in cert
    conf = (tmp_path / "postgresql.conf").read_text()
    assert "ssl = on" in conf
    assert "ssl_min_protocol_version = 'TLSv1.2'" in conf
    rules = [ln.split() for ln in (tmp_path / "pg_hba.conf").read_text().splitlines() if ln.strip()]
    network = [r for r in rules if r[0].startswith("host") and r[3] == "all"]
    assert network == [
        ["hostssl", "all", "all", "all", "scram-sha-256"],
        ["hostnossl", "all", "all", "all", "reject"],
    ]
    assert ["host", "all", "all", "127.0.0.1/32", "trust"] in rules, "in-container logins were changed"


def test_target_db_script_fails_when_it_cannot_restrict_logins(tmp_path: Path) -> None:
    result = _run_tls_script(tmp_path, "local all all trust\n")
    assert result.returncode != 0
    assert "host all all all" in result.stderr


RECORDING_MC = """#!/bin/sh
# Stand-in for the MinIO client: records each call, keeps the policy file, fails on request.
printf '%s\\n' "$*" >> "$MC_LOG"
case "$*" in
  "admin policy create "*) cp "$6" "$MC_POLICY_COPY" ;;
  "admin user info "*) echo "AccessKey: $5"; echo "PolicyName: ${MC_ATTACHED_POLICY:-}" ;;
esac
case "$*" in
  ${MC_FAIL_ON:-no-failure-requested}*) exit 1 ;;
esac
exit 0
"""


def _run_minio_init(tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mc = bin_dir / "mc"
    mc.write_text(RECORDING_MC)
    mc.chmod(0o755)
    log = tmp_path / "mc.log"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        "MC_LOG": str(log),
        "MC_POLICY_COPY": str(tmp_path / "policy.json"),
        "MINIO_ROOT_USER": "root",
        "MINIO_ROOT_PASSWORD": "root-password",
        "S3_BUCKET": "cutover-staging",
        "S3_ACCESS_KEY": "cutover-pipeline",
        "S3_SECRET_KEY": "pipeline-secret",
        "STAGING_RETENTION_MODE": "COMPLIANCE",
        "STAGING_RETENTION_DAYS": "30",
        **extra,
    }
    result = subprocess.run(["sh", str(MINIO_INIT)], env=env, capture_output=True, text=True)
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_minio_init_makes_a_locked_encrypted_bucket_and_a_scoped_user(tmp_path: Path) -> None:
    result, calls = _run_minio_init(tmp_path)
    assert result.returncode == 0, result.stderr
    verbs = [" ".join(c.split()[:3]) for c in calls]
    assert calls[1] == "mb --ignore-existing --with-lock local/cutover-staging"
    assert calls[2] == "retention set --default COMPLIANCE 30d local/cutover-staging"
    assert calls[3] == "encrypt set sse-s3 local/cutover-staging"
    assert (
        verbs.index("admin policy create")
        < verbs.index("admin user add")
        < verbs.index("admin policy attach")
    )
    assert "pipeline-secret" not in result.stdout + result.stderr
    assert not (tmp_path / "cutover-staging-policy.json").exists(), "the policy file was left behind"

    policy = json.loads((tmp_path / "policy.json").read_text())
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert resources == {"arn:aws:s3:::cutover-staging", "arn:aws:s3:::cutover-staging/*"}
    assert {"s3:PutObject", "s3:GetObject", "s3:PutObjectRetention", "s3:ListBucket"} <= actions
    forbidden = {
        "s3:BypassGovernanceRetention",
        "s3:DeleteObjectVersion",
        "s3:PutBucketObjectLockConfiguration",
    }
    assert not actions & forbidden
    assert not any("*" in a for a in actions)


def test_minio_init_stops_on_a_bucket_without_object_lock(tmp_path: Path) -> None:
    result, calls = _run_minio_init(tmp_path, MC_FAIL_ON="retention set")
    assert result.returncode != 0
    assert not any(c.startswith("admin") for c in calls), "went on after the retention failed"


@pytest.mark.parametrize(("attached", "ok"), [("cutover-staging", True), ("readwrite", False)])
def test_minio_init_accepts_an_already_attached_policy_only(tmp_path: Path, attached: str, ok: bool) -> None:
    result, _ = _run_minio_init(tmp_path, MC_FAIL_ON="admin policy attach", MC_ATTACHED_POLICY=attached)
    assert (result.returncode == 0) is ok, result.stderr


# --- The guide -----------------------------------------------------------------------------------


def test_guide_covers_every_service_and_the_swaps(stack: Stack) -> None:
    guide = DOCS.read_text()
    for name in stack.services:
        assert f"`{name}`" in guide, f"docs/docker-compose.md does not describe {name}"
    for topic in (
        "S3_ENDPOINT_URL",
        "aws:kms",
        "sslmode=verify-full",
        "@sha256:",
        "docker compose up",
        "secrets/backup.key",
        "CUTOVER_PLAN",
        "CUTOVER_REQUIRE_BACKUP_KEY",
        "provision_roles",
    ):
        assert topic in guide, f"docs/docker-compose.md does not cover {topic}"
    # the guide makes each password secret for the role whose connection reads it
    made = {
        file: role
        for role, file in re.findall(r"printf '\*:\*:\*:(\w+):%s\\n' [^>\n]*> (secrets/[^\s)]+)", guide)
    }
    worker = stack.services["airflow-worker"]
    for var, role in TARGET_ROLES.items():
        query = parse_qs(
            urlsplit(url_from_fields(fields_from_env(stack.environment("airflow-worker")[var]))).query
        )
        secret = next(s for s, path in secret_targets(worker).items() if path == query["passfile"][0])
        file = str(Path(stack.doc["secrets"][secret]["file"]))
        assert made.get(file) == role, f"the guide does not show how to make {file} for {role}"
    triggers = [m.group(1) for m in re.finditer(r"airflow dags trigger (\w+)", guide)]
    assert "pt_backup" in triggers, "the trial steps trigger no backup"
    assert "pt_cutover" in triggers, "the trial steps trigger no cutover"
    assert triggers.index("pt_backup") < triggers.index("pt_cutover"), "pt_cutover before its backup"
    if "pt_sample_transfer" in triggers:
        assert triggers.index("pt_backup") < triggers.index("pt_sample_transfer")
