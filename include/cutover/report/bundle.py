"""The evidence bundle: a SHA-256 manifest over every file, its verification, and its copy to the store.

``manifest.sha256`` is written in the format GNU ``sha256sum`` prints and ``sha256sum -c`` checks
(``<hex>  <relative path>``, one line a file, sorted), so an auditor needs no Cutover code to see
that nothing in the folder changed after the run: ``cd <evidence> && sha256sum -c manifest.sha256``.
Names holding a backslash or a newline are escaped the way coreutils does (the line starts with
``\\``). The manifest names every file under the folder except itself and the bundle's later
versions (``v2/``, ``v3/``… at its top, each a sealed bundle of its own: :mod:`cutover.evidence`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import TypedDict

from cutover.errors import IntegrityError
from cutover.staging.store import open_store

log = logging.getLogger(__name__)

MANIFEST = "manifest.sha256"
"""The manifest's file name, at the root of the evidence folder."""

LATER_VERSION = re.compile(r"^v(?:[2-9]|[1-9][0-9]+)$")
"""A later version's folder at the top of a run's first bundle (``v2``, ``v3``…)."""


class Published(TypedDict):
    """What :func:`publish_bundle` copied: the store prefix, object count and bytes."""

    prefix: str
    objects: int
    bytes: int


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` (recursive), as sorted POSIX paths relative to it, the manifest and
    later versions' folders excluded."""
    names = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return sorted(
        n.as_posix()
        for n in names
        if n.as_posix() != MANIFEST and not (len(n.parts) > 1 and LATER_VERSION.match(n.parts[0]))
    )


def _digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _line(digest: str, name: str) -> str:
    r"""One manifest line, escaped as coreutils does for names with a backslash or a newline.

    >>> _line("ab", "data_docs/index.html")
    'ab  data_docs/index.html'
    >>> _line("ab", "odd\\name")
    '\\ab  odd\\\\name'
    """
    if "\\" in name or "\n" in name or "\r" in name:
        escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest}  {escaped}"
    return f"{digest}  {name}"


def _unescape(name: str) -> str:
    out, i = [], 0
    while i < len(name):
        if name[i] == "\\" and i + 1 < len(name):
            out.append({"\\": "\\", "n": "\n", "r": "\r"}.get(name[i + 1], name[i + 1]))
            i += 2
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def manifest_sha256(folder: Path) -> str:
    """SHA-256 (hex) of the folder's ``manifest.sha256``: the one figure that vouches for the whole bundle."""
    return _digest(folder / MANIFEST)


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 (hex) of every file under ``folder`` but the manifest, by relative path."""
    return {name: _digest(folder / name) for name in _files(folder)}


def write_bundle_manifest(folder: Path) -> Path:
    """Write ``manifest.sha256`` over every file under ``folder`` (recursive, sorted, excluding itself).

    Written last, after every other evidence file: anything added or changed afterwards shows up
    in :func:`verify_bundle` and in ``sha256sum -c``.
    """
    entries = digests(folder)
    path = folder / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text("".join(_line(d, n) + "\n" for n, d in entries.items()), encoding="utf-8")
    tmp.replace(path)
    log.info("evidence manifest: %d files", len(entries))
    return path


def read_bundle_manifest(text: str) -> dict[str, str]:
    """Parse a ``sha256sum`` listing (text or ``*`` binary mode, escaped names) into {path: hex digest}."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw:
            continue
        escaped = raw.startswith("\\")
        line = raw[1:] if escaped else raw
        digest, sep, name = line.partition(" ")
        if not sep or len(digest) != 64 or not name or name[0] not in " *":
            raise IntegrityError(f"{MANIFEST} line {number} is not a sha256sum line")
        name = _unescape(name[1:]) if escaped else name[1:]
        if name.startswith("/") or ".." in name.split("/"):
            raise IntegrityError(f"{MANIFEST} line {number} names a path outside the bundle")
        entries[name] = digest.lower()
    return entries


def verify_bundle(folder: Path) -> list[str]:
    """What in ``folder`` no longer matches its ``manifest.sha256``; an empty list when intact.

    One entry per problem, ``"<kind>: <relative path>"`` with kind ``changed`` (bytes differ),
    ``missing`` (listed, not on disk) or ``extra`` (on disk, not listed); ``missing:
    manifest.sha256`` when there is no manifest at all.
    """
    path = folder / MANIFEST
    if not path.is_file():
        return [f"missing: {MANIFEST}"]
    listed = read_bundle_manifest(path.read_text(encoding="utf-8"))
    present = set(_files(folder))
    problems = [f"missing: {n}" for n in sorted(set(listed) - present)]
    problems += [f"extra: {n}" for n in sorted(present - set(listed))]
    problems += [f"changed: {n}" for n in sorted(present & set(listed)) if _digest(folder / n) != listed[n]]
    return problems


def evidence_prefix(run_id: str) -> str:
    """The run's evidence prefix in the staging store (``runs/<run key>/evidence``)."""
    from cutover.pipeline import run_key

    return f"runs/{run_key(run_id)}/evidence"


def publish_bundle(folder: Path, store_url: str, run_id: str, *, prefix: str | None = None) -> Published:
    """Copy the evidence folder to the staging store under ``runs/<run key>/evidence/`` (or ``prefix``).

    Writes the manifest first when there is none, and refuses (IntegrityError) a folder that no
    longer matches its manifest: the store must never hold a bundle its own manifest contradicts.
    Each object's SHA-256 as stored is checked against the manifest; ``manifest.sha256`` goes last,
    so a complete manifest in the store means a complete upload before it.
    """
    if not (folder / MANIFEST).is_file():
        write_bundle_manifest(folder)
    problems = verify_bundle(folder)
    if problems:
        raise IntegrityError(
            f"evidence folder does not match its manifest ({len(problems)} problems, first: {problems[:5]})"
        )
    listed = read_bundle_manifest((folder / MANIFEST).read_text(encoding="utf-8"))
    store = open_store(store_url)
    prefix = prefix or evidence_prefix(run_id)
    total = 0
    for name in [*listed, MANIFEST]:
        data = (folder / name).read_bytes()
        info = store.put(f"{prefix}/{name}", data)
        if name in listed and info.sha256 != listed[name]:
            raise IntegrityError(f"stored evidence object {prefix}/{name} does not match the manifest")
        total += info.size
    log.info("published evidence %s: %d objects, %d bytes", prefix, len(listed) + 1, total)
    return Published(prefix=prefix, objects=len(listed) + 1, bytes=total)


def verify_published(store_url: str, run_id: str, *, prefix: str | None = None) -> list[str]:
    """:func:`verify_bundle` for the copy in the staging store: objects missing or changed against its manifest.

    Objects under the prefix that the manifest does not list are reported ``extra`` (later versions'
    copies, under ``<prefix>/v2/``…, aside).
    """
    store = open_store(store_url)
    prefix = prefix or evidence_prefix(run_id)
    key = f"{prefix}/{MANIFEST}"
    if not store.exists(key):
        return [f"missing: {MANIFEST}"]
    listed = read_bundle_manifest(store.get(key).decode("utf-8"))
    present = {k.removeprefix(prefix + "/") for k in store.list(prefix + "/")} - {MANIFEST}
    present = {n for n in present if not ("/" in n and LATER_VERSION.match(n.split("/", 1)[0]))}
    # a listing leaves out what it cannot tell from a temporary file (a hidden name, such as GX's
    # results/.ge_store_backend_id, in a local store): such a name is looked up before it is missing
    hidden = {n for n in set(listed) - present if store.exists(f"{prefix}/{n}")}
    present |= hidden
    problems = [f"missing: {n}" for n in sorted(set(listed) - present)]
    problems += [f"extra: {n}" for n in sorted(present - set(listed))]
    for name in sorted(present & set(listed)):
        if hashlib.sha256(store.get(f"{prefix}/{name}")).hexdigest() != listed[name]:
            problems.append(f"changed: {name}")
    return problems
