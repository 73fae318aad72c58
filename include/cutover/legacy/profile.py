"""A legacy profile: one legacy system's tables and their mapping onto the target, as data.

A profile is a YAML document (one file, or a folder of files: ``profile.yaml`` for the header and one
file per legacy table) checked against ``profile.schema.json``, the mapping library and the target
schema before anything runs (:mod:`cutover.legacy.profile_check`). The built-in ``simulator`` profile
is the legacy system :mod:`cutover.simulate` writes.

A profile is chosen, first match wins, by the run's ``profile`` parameter, the ``CUTOVER_PROFILE``
environment variable, or the ``profile`` key of the ``legacy_db`` connection's extra; the default is
``simulator``. A name is a built-in profile; anything else is a path.

>>> p = load_profile("simulator")
>>> p.name, list(p.tables)[:3], p.tables["visits"].patient_key
('simulator', ['clinics', 'providers', 'ref_physicians'], 'pat_id')
>>> p.specs["procedures"].target
'procedure_line'
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cutover.errors import ConfigError
from cutover.legacy.schema import ExportFlag, LegacyTable

if TYPE_CHECKING:
    from cutover.mapping.engine import TableSpec
    from cutover.staging.store import Store

BUILTIN = Path(__file__).resolve().parent / "profiles"
"""The built-in profiles, one YAML file each (``simulator.yaml``)."""
DEFAULT_PROFILE = "simulator"
HEADER = "profile.yaml"
"""In a folder profile, the file holding the header (name, title, source)."""

Location = tuple[str, int]
"""(file, 1-based line) of a value in the profile's YAML."""


class ProfileError(ConfigError):
    """A profile that does not hold: every problem is one line naming file, line and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more: cutover profile check)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")


@dataclass
class Document:
    """A profile's YAML as plain data, with where each value was written."""

    data: dict[str, Any]
    origin: str
    """The file or folder read."""
    sha256: str
    locations: dict[tuple[Any, ...], Location] = field(default_factory=dict)

    def where(self, path: tuple[Any, ...]) -> str:
        """``file:line`` of ``path`` or of its nearest written ancestor."""
        while path and path not in self.locations:
            path = path[:-1]
        file, line = self.locations.get(path, (self.origin, 1))
        return f"{file}:{line}"


def _walk(node: yaml.Node, path: tuple[Any, ...], file: str, into: dict[tuple[Any, ...], Location]) -> None:
    into.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            step = (*path, key.value)
            into[step] = (file, key.start_mark.line + 1)
            _walk(value, step, file, into)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), file, into)


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it (its nodes carry the same line marks): the
built-in profiles parse in about 11 ms instead of 97 ms, once in every task's process."""


def _node(text: str, loader_class: Any) -> tuple[Any, Any]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _parse(text: str, file: str, prefix: tuple[Any, ...] = ()) -> tuple[Any, dict[tuple[Any, ...], Location]]:
    try:
        try:
            node, data = _node(text, _LOADER)
        except yaml.YAMLError:  # a user's mistake: told in PyYAML's own words, as it always was
            node, data = _node(text, yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ProfileError([f"{file}:{line}: {problem}"]) from None
    locations: dict[tuple[Any, ...], Location] = {}
    if node is not None:
        _walk(node, prefix, file, locations)
    return data, locations


def read_document(path: Path) -> Document:
    """The profile at ``path`` (a file, or a folder of ``*.yaml`` files) as one document."""
    if not path.exists():
        raise ProfileError(
            [f"{path}: no such profile (a built-in name: {', '.join(builtin_names())}, or a path)"]
        )
    if path.is_file():
        raw = path.read_bytes()
        whole, where = _parse(raw.decode("utf-8", errors="replace"), str(path))
        if not isinstance(whole, dict):
            raise ProfileError([f"{path}:1: a profile is a mapping (profile, title, tables)"])
        return Document(whole, str(path), hashlib.sha256(raw).hexdigest(), where)
    files = sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml"} and p.is_file())
    if not (path / HEADER).is_file():
        raise ProfileError([f"{path}: a folder profile needs {HEADER} (profile, title)"])
    digest = hashlib.sha256()
    data: dict[str, Any] = {}
    locations: dict[tuple[Any, ...], Location] = {}
    tables: dict[str, Any] = {}
    for file in files:
        raw = file.read_bytes()
        digest.update(file.name.encode() + b"\0" + hashlib.sha256(raw).digest())
        header = file.name == HEADER
        part, where = _parse(raw.decode("utf-8", errors="replace"), str(file), () if header else ("tables",))
        if not isinstance(part, dict):
            raise ProfileError(
                [f"{file}:1: a mapping is expected ({'header' if header else 'table: {...}'})"]
            )
        if header:
            data.update(part)
            tables.update(part.get("tables") or {})
        else:
            for name in part:
                if name in tables:
                    raise ProfileError(
                        [f"{where[('tables', name)][0]}:{where[('tables', name)][1]}: table {name} twice"]
                    )
            tables.update(part)
        locations.update(where)
    data["tables"] = tables
    return Document(data, str(path), digest.hexdigest(), locations)


@functools.cache
def builtin_names() -> list[str]:
    """The built-in profiles: a file ``profiles/<name>.yaml`` or a folder ``profiles/<name>/``."""
    files = [p.stem for p in BUILTIN.glob("*.yaml")]
    return sorted(files + [p.name for p in BUILTIN.iterdir() if (p / HEADER).is_file()])


def profile_path(ref: str | os.PathLike[str]) -> Path:
    """A built-in name → its file; anything else is a path."""
    text = os.fspath(ref)
    if text in builtin_names():
        folder = BUILTIN / text
        return folder if folder.is_dir() else BUILTIN / f"{text}.yaml"
    return Path(text).expanduser()


def choose(param: str | None = None, legacy_extra: Mapping[str, Any] | None = None) -> str:
    """The profile a run uses: its parameter, ``CUTOVER_PROFILE``, the ``legacy_db`` extra, the default."""
    for candidate in (param, os.environ.get("CUTOVER_PROFILE"), (legacy_extra or {}).get("profile")):
        if candidate:
            return str(candidate)
    return DEFAULT_PROFILE


def load_document(ref: str | os.PathLike[str]) -> Document:
    return read_document(profile_path(ref))


@dataclass(frozen=True)
class Profile:
    """A checked profile: the legacy tables in load order and, built on first use, the mapping specs."""

    name: str
    title: str
    sha256: str
    origin: str
    document: dict[str, Any]
    tables: dict[str, LegacyTable]
    """Every legacy table, parents first."""

    @functools.cached_property
    def specs(self) -> dict[str, TableSpec]:
        """The mapping spec of every legacy table that has one, in load order (imports the mapping)."""
        from cutover.legacy.profile_build import build_specs

        return build_specs(self)

    @property
    def mapped_tables(self) -> list[str]:
        """The legacy tables the profile maps (those a run migrates), in load order."""
        return [name for name in self.tables if self.document["tables"][name].get("map")]

    @property
    def not_carried(self) -> dict[str, dict[str, str]]:
        """Legacy columns no target field carries, with the reason the profile gives."""
        return {
            name: dict((table.get("map") or {}).get("not_carried") or {})
            for name, table in self.document["tables"].items()
            if (table.get("map") or {}).get("not_carried")
        }

    def mapped_to(self, target: str) -> str | None:
        """The legacy table mapped onto ``target`` (a ``pt`` table), None when none is."""
        return next(
            (name for name, t in self.document["tables"].items() if (t.get("map") or {}).get("to") == target),
            None,
        )

    @property
    def patient_table(self) -> str:
        """The legacy table of patients (mapped onto ``patient``)."""
        name = self.mapped_to("patient")
        if name is None:
            raise ConfigError(f"profile {self.name}: no legacy table maps onto the target's patient table")
        return name

    @property
    def home_clinic_column(self) -> str | None:
        """The patients' column holding their home clinic (the reference onto ``home_clinic_id``)."""
        refs = (self.document["tables"][self.patient_table].get("map") or {}).get("refs") or {}
        ref = refs.get("home_clinic_id")
        return None if ref is None else str(ref["from"])

    def owner(self, table: str) -> tuple[str, str] | None:
        """(column, table) through which ``table``'s rows reach their patient: the patients' own key,
        else the table's ``patient`` column and the parent it points to; None for reference data."""
        spec = self.tables[table]
        if table == self.patient_table:
            return spec.key, table
        if spec.patient_key is None:
            return None
        return spec.patient_key, dict(spec.parents)[spec.patient_key]

    def owner_tables(self) -> list[str]:
        """The tables other tables reach their patient through (the patients first), parents first."""
        owners = {o[1] for t in self.tables if (o := self.owner(t)) is not None}
        return [t for t in self.tables if t in owners]

    @property
    def source_format(self) -> str:
        """``database`` (the ``legacy_db`` connection is a database) or ``csv`` (a delivery of files)."""
        return str((self.document.get("source") or {}).get("format") or "database")

    def key_arrow_type(self, table: str) -> Any:
        """The Arrow type of ``table``'s key: int64 for an integer id, string for a text id."""
        import pyarrow as pa

        return pa.string() if self.tables[table].key_type == "text" else pa.int64()


def _order(tables: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Parents first, otherwise in the order written (a cycle is refused by the check before)."""
    done: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name not in tables:
            return
        if name in visiting:
            raise ValueError(f"parent relations form a cycle through {name}")
        visiting.add(name)
        for parent in (tables[name].get("parents") or {}).values():
            if parent != name:
                visit(parent)
        visiting.discard(name)
        done.append(name)

    for name in tables:
        visit(name)
    return done


def legacy_table(name: str, spec: Mapping[str, Any]) -> LegacyTable:
    columns = tuple((str(c), str(t)) for c, t in (spec.get("columns") or {}).items())
    changes = spec.get("changes") or {}
    flag = changes.get("export_flag")
    return LegacyTable(
        name=name,
        key=str(spec["key"]),
        columns=columns,  # type: ignore[arg-type]
        parents=tuple((str(c), str(p)) for c, p in (spec.get("parents") or {}).items()),
        patient_key=spec.get("patient"),
        source=str(spec.get("source") or name),
        modified=changes.get("modified"),
        export_flag=None
        if not flag
        else ExportFlag(
            column=str(flag["column"]),
            new=str(flag.get("new", "1")),
            modified=str(flag.get("modified", "2")),
            removed=str(flag.get("removed", "3")),
        ),
    )


def from_document(doc: Document) -> Profile:
    """The profile of a document already checked (:func:`cutover.legacy.profile_check.check`)."""
    tables = doc.data["tables"]
    ordered = _order(tables)
    return Profile(
        name=str(doc.data.get("profile") or Path(doc.origin).stem),
        title=str(doc.data.get("title") or ""),
        sha256=doc.sha256,
        origin=doc.origin,
        document=doc.data,
        tables={name: legacy_table(name, tables[name]) for name in ordered},
    )


def _stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """What tells a profile's files changed without reading them: names, sizes, modification times."""
    files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    stats = ((f.name, f.stat()) for f in files if f.is_file())
    return tuple((name, stat.st_mtime_ns, stat.st_size) for name, stat in stats)


@functools.lru_cache(maxsize=16)
def _cached(path: str, stamp: tuple[tuple[str, int, int], ...]) -> Profile:
    from cutover.legacy.profile_check import check

    doc = read_document(Path(path))
    problems = check(doc)
    if problems:
        raise ProfileError(problems)
    return from_document(doc)


def load_profile(ref: str | os.PathLike[str] | None = None) -> Profile:
    """The profile ``ref`` names (default: :func:`choose`), checked; a broken one is a :class:`ProfileError`.

    Read once per process while its files are unchanged (names, sizes, modification times)."""
    path = profile_path(ref if ref is not None else choose())
    if not path.exists():
        read_document(path)  # the one-line error
    return _cached(str(path), _stamp(path))


@functools.cache
def simulator() -> Profile:
    """The built-in profile of the simulated legacy system."""
    return load_profile(DEFAULT_PROFILE)


# --- the profile in use -------------------------------------------------------------------------------
_IN_USE: list[Profile] = []
_SELECTED: list[str] = []


def select(ref: str | None) -> None:
    """The profile this process works under from now on (a task process: its run's choice, made by
    the DAGs' ``on_execute_callback`` from the run's parameter and the ``legacy_db`` extra); None
    goes back to :func:`choose`."""
    _SELECTED[:] = [ref] if ref else []


def selected() -> str:
    """The reference of the profile this process works under: :func:`select`'s, else :func:`choose`'s."""
    return _SELECTED[0] if _SELECTED else choose()


def current() -> Profile:
    """The profile the code running now works under: the one :func:`use` set (a run's), else the
    selected one (:func:`selected`)."""
    return _IN_USE[-1] if _IN_USE else load_profile(selected())


@contextlib.contextmanager
def use(profile: Profile) -> Iterator[Profile]:
    """Work under ``profile`` inside the block (process-wide, so worker threads see it too: a task
    process runs one task at a time)."""
    _IN_USE.append(profile)
    try:
        yield profile
    finally:
        _IN_USE.remove(profile)


def legacy_tables() -> dict[str, LegacyTable]:
    """The legacy tables of the profile in use, parents first."""
    return current().tables


def mapping_specs() -> dict[str, TableSpec]:
    """The mapping specs of the profile in use, in load order."""
    return current().specs


# --- a run's profile ----------------------------------------------------------------------------------
RUN_PROFILE = "profile.json"
"""Under a run's prefix in the staging store: which profile the run works under (name, ref, SHA-256),
signed like the staged manifests."""


def _signature(record: Mapping[str, str]) -> str:
    from cutover.staging.store import manifest_key

    body = json.dumps({k: record[k] for k in ("name", "ref", "sha256")}, sort_keys=True).encode()
    return hmac.new(manifest_key(), body, hashlib.sha256).hexdigest()


def bind_run(store: Store, prefix: str, profile: Profile, ref: str) -> dict[str, str]:
    """Record under the run's ``prefix`` that the run works under ``profile`` (read from ``ref``)."""
    record = {"name": profile.name, "ref": ref, "sha256": profile.sha256}
    store.put(f"{prefix}/{RUN_PROFILE}", json.dumps({**record, "signature": _signature(record)}).encode())
    return record


def run_profile(store: Store, prefix: str) -> Profile:
    """The profile a run works under, read again from where it was when the run began; a profile
    changed since (its SHA-256 differs) or a record the pipeline did not sign is refused. A run that
    recorded none (a stage called on its own) works under :func:`current`."""
    from cutover.errors import IntegrityError

    key = f"{prefix}/{RUN_PROFILE}"
    if not store.exists(key):
        return current()
    record = json.loads(store.get(key))
    if not isinstance(record, dict) or not hmac.compare_digest(
        str(record.get("signature", "")),
        _signature({k: str(record.get(k, "")) for k in ("name", "ref", "sha256")}),
    ):
        raise IntegrityError(f"{key}: the run's profile record is not signed by this pipeline")
    profile = load_profile(record["ref"])
    if profile.sha256 != record["sha256"]:
        raise IntegrityError(
            f"profile {record['name']} changed since the run began (SHA-256 {record['sha256'][:12]} → "
            f"{profile.sha256[:12]}): a run works under one profile; start a new run"
        )
    return profile
