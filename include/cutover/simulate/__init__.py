"""The legacy clinic simulator: a realistic, messy legacy PT practice database, and its ground truth.

:func:`simulate` generates a practice of ``patients`` patients from ``seed`` (several clinics, every
record kind of the domain primer), injects each kind of mess of :mod:`cutover.simulate.defects` at
a known rate, writes it to SQLite, PostgreSQL or MariaDB, and writes a manifest: the row count of
every table, every defect instance (kind, table, legacy id, field), the canary values planted to
catch PHI leaks, the seed and the rates. Same seed and size, same rows and manifest, byte for byte.

The manifest carries PHI (the canaries); keep it beside the legacy database, never in evidence.

From a shell: ``python -m cutover.simulate sqlite:////tmp/legacy.db --patients 2000 --seed 7``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from cutover.errors import ConfigError
from cutover.simulate.defects import DEFECT_KINDS, DEFECTS, RATES, DefectKind, DefectSpec
from cutover.simulate.practice import AS_OF, Legacy, generate
from cutover.simulate.writers import dialect_of, sqlite_path, write

__all__ = [
    "AS_OF",
    "DEFECTS",
    "DEFECT_KINDS",
    "RATES",
    "DefectKind",
    "DefectSpec",
    "Legacy",
    "default_manifest_path",
    "generate",
    "simulate",
    "write",
]

log = logging.getLogger(__name__)


def default_manifest_path(url: str) -> Path:
    """``<db file>.manifest.json`` for a SQLite URL; server URLs have no default.

    >>> default_manifest_path("sqlite:////tmp/legacy.db")
    PosixPath('/tmp/legacy.db.manifest.json')
    """
    if dialect_of(url) != "sqlite":
        raise ConfigError("simulate: manifest_path is required when the legacy database is a server")
    path = sqlite_path(url)
    return path.with_name(path.name + ".manifest.json")


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest as compact, key-sorted JSON, atomically (a reader never sees half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def simulate(
    url: str, *, patients: int, seed: int, manifest_path: str | Path | None = None
) -> dict[str, Any]:
    """Generate a legacy practice, (re)write its tables at ``url`` and its manifest; return the manifest.

    ``url``: ``sqlite:////abs/path.db`` or ``sqlite:///relative.db``, ``postgresql://user@host:port/db``
    or ``mysql://user:pw@host:port/db`` (MariaDB). ``manifest_path`` defaults to
    ``<db file>.manifest.json`` for SQLite and is required for a server.
    """
    target = Path(manifest_path) if manifest_path is not None else default_manifest_path(url)
    started = time.perf_counter()
    legacy = generate(patients=patients, seed=seed)
    generated = time.perf_counter()
    write(url, legacy)
    written = time.perf_counter()
    manifest = legacy.manifest()
    write_manifest(target, manifest)
    log.info(
        "simulated %d patients (seed %d) into %s: %d rows in %d tables, %d defects; "
        "generate %.1fs, write %.1fs, manifest %.1fs",
        patients,
        seed,
        dialect_of(url),
        sum(manifest["tables"].values()),
        len(manifest["tables"]),
        len(manifest["defects"]),
        generated - started,
        written - generated,
        time.perf_counter() - written,
    )
    return manifest
