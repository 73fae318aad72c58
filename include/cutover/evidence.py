"""One evidence chain per cutover: a sealed, versioned folder per DAG run, linked by manifests' SHA-256.

Every DAG run writes its evidence under the state folder, one folder per run::

    evidence/<dag_id>/<run key>/          version 1 of the run's bundle
    evidence/<dag_id>/<run key>/v2/       version 2: a complete bundle of its own

**Sealed, never rewritten.** :func:`seal` writes ``bundle.json`` (which DAG, run and version, who
sealed it, the bundle it supersedes and the bundles it links), the report, then ``manifest.sha256``
over every file (:mod:`cutover.report.bundle`), makes the files read-only, publishes the copy to the
staging store (``runs/<run key>/evidence/``, ``…/evidence/v2/``) and records the manifest's SHA-256 in
``migration.run`` and the audit log. What is written to a run's evidence after its seal (a cleared
``write_evidence``, the demo's planted-defect check) goes to a new version, a copy of the last one
(:func:`writable`), sealed in turn: a sealed file is never overwritten, and each version names the
SHA-256 of the one before it.

**Linked.** A cutover relies on evidence other runs sealed: the backup its gate accepted, the trial
run's estimate and go/no-go, the assessment of the legacy database. :func:`link` finds each in the
staging store (the place every worker shares), checks its copy against its own manifest and writes
``links.json`` with the manifest's SHA-256; :func:`seal` checks the links again and records the
verdicts in ``bundle.json``, which the report shows. A linked bundle that no longer matches its
manifest is refused (IntegrityError): the chain must not rest on evidence changed after its seal.

**Verified.** :func:`verify_chain` (``cutover evidence verify RUN_ID``) checks, for every version of
the run and, recursively, every bundle it links: the seal, the identity, the previous version's and
the links' SHA-256, the store's copy, and the database's record; it names whatever does not match.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cutover.config import state_dir
from cutover.errors import IntegrityError, UnknownNameError
from cutover.locks import file_lock
from cutover.report.bundle import (
    LATER_VERSION,
    MANIFEST,
    _files,
    manifest_sha256,
    publish_bundle,
    verify_bundle,
    verify_published,
    write_bundle_manifest,
)
from cutover.staging.store import Store, open_store

log = logging.getLogger(__name__)

BUNDLE: Final = "bundle.json"
"""The bundle's identity card: DAG, run, version, sealed when and by whom, previous version, links."""

LINKS: Final = "links.json"
"""The sealed bundles this run relies on (:func:`link`), by their manifests' SHA-256."""

NO_DAG: Final = "cli"
"""The DAG folder of evidence written outside any DAG run (a stage called from a script or a test)."""

ROLES: Final = {"backup": "pt_backup", "trial": "pt_sample_transfer", "assessment": "pt_assess"}
"""What a run may rely on, and the DAG whose runs seal it."""

_STORE_BUNDLE = re.compile(r"^(runs/[^/]+/evidence(?:/v[0-9]+)?)/bundle\.json$")


def run_key(run_id: str) -> str:
    """A run id made safe for object keys and folder names.

    >>> run_key("manual__2026-11-27T18:00:00+00:00")
    'manual__2026-11-27T18-00-00-00-00'
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)


def root() -> Path:
    """The evidence root under the state folder: ``<dag_id>/<run key>/`` below it."""
    return state_dir() / "evidence"


def _current_dag() -> str:
    """The DAG whose task runs in this process (Airflow exports ``AIRFLOW_CTX_DAG_ID`` to a task's
    environment), or :data:`NO_DAG`."""
    return run_key(os.environ.get("AIRFLOW_CTX_DAG_ID") or NO_DAG)


def _find(run_id: str) -> Path | None:
    """The folder that holds the run's evidence under any DAG, or None. A run id found under several
    DAGs is refused unless the running DAG is one of them: one DAG's evidence is never read as another's."""
    found = sorted(p for p in root().glob(f"*/{run_key(run_id)}") if p.is_dir())
    if len(found) > 1:
        found = [p for p in found if p.parent.name == _current_dag()]
        if not found:
            dags = ", ".join(p.parent.name for p in sorted(root().glob(f"*/{run_key(run_id)}")))
            raise IntegrityError(f"run {run_id} has evidence under several DAGs ({dags}): name the DAG")
    return found[0] if found else None


def run_folder(run_id: str, dag_id: str | None = None, *, create: bool = True) -> Path:
    """The run's evidence folder (its first version), ``<root>/<dag_id>/<run key>``.

    Without ``dag_id``: to write (``create``), a DAG's task writes under its own DAG; elsewhere, and
    to read, the folder that already holds the run's evidence under any DAG (:func:`_find`), else a
    new one under :data:`NO_DAG`. Not ``create``: UnknownNameError when the run has no evidence.
    """
    if dag_id is None and create and os.environ.get("AIRFLOW_CTX_DAG_ID"):
        dag_id = _current_dag()
    if dag_id is None:
        found = _find(run_id)
        if found is not None:
            return found
        if not create:
            raise UnknownNameError("run with evidence", run_id, [p.name for p in root().glob("*/*")])
        dag_id = NO_DAG
    folder = root() / run_key(dag_id) / run_key(run_id)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def versions(run: Path) -> list[Path]:
    """The run's bundle versions, oldest first: the run folder, then ``v2``, ``v3``… inside it."""
    later = [p for p in run.iterdir() if p.is_dir() and LATER_VERSION.match(p.name)] if run.is_dir() else []
    return [run, *sorted(later, key=lambda p: int(p.name[1:]))]


def version_name(run: Path, folder: Path) -> str:
    """``v1`` for the run folder itself, else the version folder's name."""
    return "v1" if folder == run else folder.name


def is_sealed(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def latest(run_id: str, dag_id: str | None = None) -> Path:
    """The newest version of the run's evidence, sealed or not: where to read what the run wrote."""
    found = _find(run_id) if dag_id is None else None
    return versions(found or run_folder(run_id, dag_id))[-1]


def latest_sealed(run_id: str, dag_id: str | None = None) -> Path | None:
    """The newest sealed version of the run's evidence, or None while nothing is sealed."""
    sealed = [v for v in versions(run_folder(run_id, dag_id, create=False)) if is_sealed(v)]
    return sealed[-1] if sealed else None


def bundle_run_id(folder: Path) -> str:
    """The run id a sealed bundle names (its ``bundle.json``); IntegrityError for a folder that is none."""
    bundle = _read_json(folder / BUNDLE)
    if not (isinstance(bundle, dict) and isinstance(bundle.get("run_id"), str)):
        raise IntegrityError(f"{folder} is not a sealed evidence bundle (no readable {BUNDLE})")
    return bundle["run_id"]


def _locked(run: Path) -> AbstractContextManager[None]:
    """One process at a time opens or seals a version of this run (two tasks of one run may race)."""
    return file_lock(run.parent / f".{run.name}.lock")


def writable(run_id: str, dag_id: str | None = None) -> Path:
    """The folder to add evidence to: the newest version while it is unsealed; once it is sealed, a
    new version, a copy of it (``bundle.json`` and the manifest aside) that the next seal closes."""
    run = run_folder(run_id, dag_id)
    newest = versions(run)[-1]
    if not is_sealed(newest):
        return newest
    with _locked(run):
        known = versions(run)
        newest = known[-1]
        if not is_sealed(newest):
            return newest
        opened = run / f"v{len(known) + 1}"
        opened.mkdir()
        for name in _files(newest):
            if name != BUNDLE:
                (opened / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(newest / name, opened / name)
    log.info("evidence of %s was sealed: writing version %s", run.name, opened.name)
    return opened


# --- the staging store's copies ----------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """A sealed bundle's copy in the staging store."""

    prefix: str
    bundle: dict[str, Any]
    manifest_sha256: str

    def link(self) -> dict[str, Any]:
        b = self.bundle
        return {
            "dag_id": b.get("dag_id"),
            "run_id": b.get("run_id"),
            "version": b.get("version"),
            "path": b.get("path"),
            "store_prefix": self.prefix,
            "sealed_at": b.get("sealed_at"),
            "manifest_sha256": self.manifest_sha256,
        }


def published_bundles(store: Store) -> list[Published]:
    """Every sealed bundle whose copy is in the store (its ``bundle.json`` and manifest), oldest seal first."""
    import hashlib

    keys = set(store.list("runs/"))
    found = []
    for key in sorted(keys):
        match = _STORE_BUNDLE.match(key)
        if not match or f"{match[1]}/{MANIFEST}" not in keys:
            continue
        try:
            bundle = json.loads(store.get(key))
        except ValueError:
            log.warning("evidence %s: bundle.json is not JSON; not a bundle to link", match[1])
            continue
        if isinstance(bundle, dict):
            sha = hashlib.sha256(store.get(f"{match[1]}/{MANIFEST}")).hexdigest()
            found.append(Published(match[1], bundle, sha))
    return sorted(found, key=lambda p: str(p.bundle.get("sealed_at")))


def store_prefix(run_id: str, version: str) -> str:
    """Where a version's copy goes in the store: ``runs/<run key>/evidence`` and ``…/evidence/v2``."""
    base = f"runs/{run_key(run_id)}/evidence"
    return base if version == "v1" else f"{base}/{version}"


def _store_copy(store_url: str, prefix: str, sha: Any) -> tuple[list[str], bool]:
    """A bundle's copy in the store: what no longer matches its own manifest (:func:`verify_published`),
    and whether that manifest is the one of SHA-256 ``sha`` (True when there is none: a problem already)."""
    import hashlib

    store = open_store(store_url)
    key = f"{prefix}/{MANIFEST}"
    problems = verify_published(store_url, "", prefix=prefix)
    same = not store.exists(key) or hashlib.sha256(store.get(key)).hexdigest() == sha
    return problems, same


def _check_published(store_url: str, link: dict[str, Any]) -> list[str]:
    """What no longer matches in a linked bundle's store copy: its objects against its manifest, and
    the manifest against the SHA-256 the link recorded."""
    prefix = str(link.get("store_prefix"))
    problems, same = _store_copy(store_url, prefix, link.get("manifest_sha256"))
    found = [f"{p} ({prefix})" for p in problems]
    return found if same else [*found, f"manifest changed since it was linked: {prefix}/{MANIFEST}"]


def link(
    run_id: str, store_url: str, *, backup_run_key: str | None = None, roles: tuple[str, ...] = tuple(ROLES)
) -> dict[str, Any]:
    """Write ``links.json`` into the run's evidence: per role (:data:`ROLES`), the newest sealed bundle
    of that DAG in the store (for the backup, the one of ``backup_run_key``: the backup the gate
    accepted), by its manifest's SHA-256; a role with none is recorded as such.

    Refuses (IntegrityError) a bundle whose store copy no longer matches its manifest.
    """
    store = open_store(store_url)
    bundles = published_bundles(store)
    links: dict[str, Any] = {}
    for role in roles:
        dag = ROLES[role]
        mine = [b for b in bundles if b.bundle.get("dag_id") == dag]
        if role == "backup" and backup_run_key is not None:
            mine = [b for b in mine if b.prefix.startswith(f"runs/{backup_run_key}/evidence")]
        if not mine:
            links[role] = {"dag_id": dag, "found": False}
            continue
        chosen = mine[-1].link()
        problems = _check_published(store_url, chosen)
        if problems:
            raise IntegrityError(
                f"the {role} evidence {chosen['path']} no longer matches its manifest "
                f"({len(problems)} problems, first: {problems[:3]}); refusing to rely on it"
            )
        links[role] = {**chosen, "found": True}
    (writable(run_id) / LINKS).write_text(json.dumps(links, indent=1, sort_keys=True))
    log.info(
        "evidence of %s links %s",
        run_id,
        ", ".join(f"{r} {v['path']}" if v["found"] else f"no {r}" for r, v in links.items()),
    )
    return links


# --- sealing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    """A sealed version of a run's evidence."""

    folder: Path
    dag_id: str
    run_id: str
    version: str
    manifest_sha256: str
    files: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "evidence": str(self.folder),
            "dag_id": self.dag_id,
            "version": self.version,
            "manifest_sha256": self.manifest_sha256,
            "files": self.files,
        }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def seal(
    run_id: str,
    store_url: str,
    *,
    render: Callable[[Path], Any] | None = None,
    target_url: str | None = None,
    actor: str | None = None,
    dag_id: str | None = None,
) -> Sealed:
    """Seal the newest version of the run's evidence (nothing new when it is sealed already).

    Writes ``bundle.json`` (with the links re-checked in the store), then ``render(folder)`` (the
    report), then the manifest; makes every file read-only (0400); publishes the copy to the store; with
    ``target_url``, records the manifest's SHA-256 in ``migration.run`` and the audit log.
    """
    run = run_folder(run_id, dag_id)
    with _locked(run):
        known = versions(run)
        folder = known[-1]
        version = version_name(run, folder)
        if is_sealed(folder):
            return Sealed(
                folder, run.parent.name, run_id, version, manifest_sha256(folder), len(_files(folder))
            )
        previous = known[-2] if len(known) > 1 else None
        bundle: dict[str, Any] = {
            "dag_id": run.parent.name,
            "run_id": run_id,
            "version": version,
            "path": folder.relative_to(root()).as_posix(),
            "sealed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "sealed_by": actor,
            "previous": None
            if previous is None
            else {
                "version": version_name(run, previous),
                "path": previous.relative_to(root()).as_posix(),
                "manifest_sha256": manifest_sha256(previous),
            },
            "links": _checked_links(folder, store_url),
        }
        (folder / BUNDLE).write_text(json.dumps(bundle, indent=1, sort_keys=True))
        if render is not None:
            render(folder)
        write_bundle_manifest(folder)
        names = _files(folder)
        for name in [*names, MANIFEST]:
            (folder / name).chmod(0o400)  # read-only, and the owner's only: the state folder holds PHI
        sha = manifest_sha256(folder)
        publish_bundle(folder, store_url, run_id, prefix=store_prefix(run_id, version))
    sealed = Sealed(folder, run.parent.name, run_id, version, sha, len(names))
    log.info("evidence sealed: %s %s, %d files, manifest %s", bundle["path"], version, len(names), sha[:12])
    if target_url is not None:
        _record(target_url, sealed, bundle, actor)
    return sealed


def _checked_links(folder: Path, store_url: str) -> dict[str, Any]:
    """The run's links (``links.json``), each re-checked in the store as the bundle is sealed."""
    links = _read_json(folder / LINKS)
    if not isinstance(links, dict):
        return {}
    checked = {}
    for role, found in links.items():
        if isinstance(found, dict) and found.get("found"):
            problems = _check_published(store_url, found)
            checked[role] = {**found, "verified": not problems, "problems": problems[:10]}
        else:
            checked[role] = found
    return checked


def _record(target_url: str, sealed: Sealed, bundle: dict[str, Any], actor: str | None) -> None:
    """The seal in ``migration.run`` (when the run has a row) and the audit log. A target that is
    not there yet (a backup or an assessment before any cutover) is named in a warning instead."""
    import psycopg

    entry = {
        "version": sealed.version,
        "path": bundle["path"],
        "manifest_sha256": sealed.manifest_sha256,
        "sealed_at": bundle["sealed_at"],
    }
    links = {
        role: found["manifest_sha256"]
        for role, found in (bundle.get("links") or {}).items()
        if isinstance(found, dict) and found.get("found")
    }
    detail = {"dag_id": sealed.dag_id, **entry, "files": sealed.files, "links": links}
    try:
        with psycopg.connect(target_url, connect_timeout=10) as conn:
            conn.execute(
                "UPDATE migration.run SET evidence = evidence || %s::jsonb WHERE run_id = %s",
                (json.dumps([entry]), sealed.run_id),
            )
            conn.execute(
                "INSERT INTO migration.audit_log (actor, action, run_id, detail) VALUES (%s, %s, %s, %s)",
                (actor or "unknown", "seal evidence", sealed.run_id, json.dumps(detail)),
            )
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as error:
        if sealed.dag_id in ("pt_cutover", "pt_delta_sync", "pt_remediate", "pt_rollback", "pt_monitor"):
            raise
        log.warning(
            "the seal of %s %s is not in the target's audit log (%s): the target is not migrated or "
            "not reachable; the store's copy and manifest stand",
            bundle["path"],
            sealed.version,
            type(error).__name__,
        )


# --- verifying the chain -----------------------------------------------------------------------------


@dataclass
class Check:
    """One bundle version's verification: what it is and what does not match (empty when intact)."""

    subject: str
    problems: list[str]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def resolve(what: str) -> Path:
    """A run's evidence folder from a run id, a run key or a folder path (its first version)."""
    path = Path(what)
    if path.is_dir() and (path / BUNDLE).is_file():
        bundle = _read_json(path / BUNDLE) or {}
        if bundle.get("version") not in (None, "v1"):
            return path.parent
        return path
    return run_folder(what, create=False)


def verify_chain(what: str, *, store_url: str | None = None, target_url: str | None = None) -> list[Check]:
    """Every version of the run's evidence and, recursively, every bundle it links: each a :class:`Check`."""
    checks: list[Check] = []
    seen: set[str] = set()
    _verify_run(resolve(what), store_url, target_url, checks, seen)
    return checks


def _verify_run(
    run: Path, store_url: str | None, target_url: str | None, checks: list[Check], seen: set[str]
) -> None:
    if str(run) in seen:
        return
    seen.add(str(run))
    known = versions(run)
    recorded = _recorded(target_url, run, known)
    linked: list[Path] = []
    for n, folder in enumerate(known):
        version = version_name(run, folder)
        subject = f"{run.parent.name}/{run.name} {version}"
        if not is_sealed(folder):
            checks.append(Check(subject, ["not sealed (no manifest.sha256): an interrupted or open version"]))
            continue
        problems = [f"seal: {p}" for p in verify_bundle(folder)]
        sha = manifest_sha256(folder)
        bundle = _read_json(folder / BUNDLE)
        if not isinstance(bundle, dict):
            problems.append(f"identity: {BUNDLE} missing or unreadable")
            bundle = {}
        elif (bundle.get("dag_id"), bundle.get("version")) != (run.parent.name, version):
            problems.append(f"identity: {BUNDLE} names {bundle.get('dag_id')} {bundle.get('version')}")
        previous = bundle.get("previous")
        if n > 0 and (
            not isinstance(previous, dict) or previous.get("manifest_sha256") != manifest_sha256(known[n - 1])
        ):
            problems.append(f"previous: the SHA-256 of {version_name(run, known[n - 1])}'s manifest differs")
        for role, found in (bundle.get("links") or {}).items():
            if not (isinstance(found, dict) and found.get("found")):
                continue
            target = root() / str(found.get("path"))
            if target.is_dir() and is_sealed(target):
                if manifest_sha256(target) != found.get("manifest_sha256"):
                    problems.append(
                        f"link {role}: {found.get('path')}'s manifest changed since it was linked"
                    )
                linked.append(_run_of(target))
            elif store_url is not None:
                problems += [f"link {role}: {p}" for p in _check_published(store_url, found)]
            else:
                problems.append(f"link {role}: {found.get('path')} is neither here nor checked in a store")
        if store_url is not None:
            problems += _check_store_copy(store_url, store_prefix(run.name, version), sha)
        if recorded is not None and recorded.get(version) != sha:
            problems.append(
                "database: migration.run does not record this manifest"
                if version not in recorded
                else "database: migration.run records another manifest for this version"
            )
        checks.append(Check(subject, problems, f"manifest {sha[:16]}, {len(_files(folder))} files"))
    for other in linked:
        _verify_run(other, store_url, target_url, checks, seen)


def _check_store_copy(store_url: str, prefix: str, sha: str) -> list[str]:
    """The store's copy of a version: intact against its own manifest, and that manifest this folder's."""
    problems, same = _store_copy(store_url, prefix, sha)
    found = [f"store: {p}" for p in problems]
    return found if same else [*found, "store: the copy's manifest is not this folder's"]


def _run_of(folder: Path) -> Path:
    return folder.parent if LATER_VERSION.match(folder.name) else folder


def _recorded(target_url: str | None, run: Path, known: list[Path]) -> dict[str, str] | None:
    """The manifests ``migration.run`` records for the run, by version; None when it has no row."""
    if target_url is None:
        return None
    import psycopg

    bundle = _read_json(known[0] / BUNDLE) or {}
    run_id = bundle.get("run_id")
    if not run_id:
        return None
    try:
        with psycopg.connect(target_url, connect_timeout=10) as conn:
            row = conn.execute("SELECT evidence FROM migration.run WHERE run_id = %s", (run_id,)).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        return None  # a target not migrated (yet, or before V010) records no run's evidence
    if row is None:
        return None
    return {str(e.get("version")): str(e.get("manifest_sha256")) for e in row[0] if isinstance(e, dict)}


def format_checks(checks: list[Check]) -> list[str]:
    """``cutover evidence verify``'s lines: one per bundle version, one more per problem, a verdict last."""
    lines = []
    for check in checks:
        lines.append(
            f"{'ok  ' if check.ok else 'FAIL'}  {check.subject}"
            + (f": {check.detail}" if check.detail else "")
        )
        lines += [f"      {problem}" for problem in check.problems]
    failed = sum(not c.ok for c in checks)
    lines.append(
        f"evidence chain verified: {len(checks)} sealed versions, every seal and link matches"
        if not failed
        else f"evidence chain NOT verified: {failed} of {len(checks)} versions do not match"
    )
    return lines
