"""A resume notices change: the batches a killed run loaded are checked against what it staged now.

A resumed run extracts and maps again; a batch its ledger marks loaded is skipped by the load. If the
legacy data changed between the kill and the resume, the part staged now differs from the one loaded
(its SHA-256, recorded in the ledger when the batch was loaded), and skipping it would keep stale
rows in the target: the resume refuses, naming tables and batches, or, asked to, loads exactly those
batches again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg

from cutover.audit import os_user
from cutover.errors import IntegrityError
from cutover.pipeline import run_key
from cutover.staging.parquet import read_manifest
from cutover.staging.store import open_store

log = logging.getLogger(__name__)


def changed_batches(target_url: str, store_url: str, run_id: str) -> dict[str, list[int]]:
    """Batches of this run the ledger marks loaded whose staged part is not the one loaded any more.

    A resumed run extracts and maps again; a batch loaded before the kill is skipped by its ledger
    entry. If the legacy data changed meanwhile, the part staged now differs from the one loaded
    (its SHA-256, recorded in the ledger when the batch was loaded), and skipping it would keep
    stale rows in the target. Per legacy table, the numbers of such batches.
    """
    store = open_store(store_url)
    with psycopg.connect(target_url) as conn:
        loaded = conn.execute(
            "SELECT legacy_table, batch_no, sha256 FROM migration.batch WHERE run_id = %s AND state = 'loaded'",
            (run_id,),
        ).fetchall()
    changed: dict[str, list[int]] = {}
    parts: dict[str, list[Any]] = {}
    for table, batch_no, sha256 in loaded:
        if table not in parts:
            prefix = f"runs/{run_key(run_id)}/mapped/{table}"
            parts[table] = (
                read_manifest(store, prefix)["parts"] if store.exists(f"{prefix}/_manifest.json") else []
            )
        now = parts[table][batch_no]["sha256"] if batch_no < len(parts[table]) else None
        if now != sha256:
            changed.setdefault(table, []).append(int(batch_no))
    return {t: sorted(b) for t, b in changed.items()}


def check_resume(
    target_url: str, store_url: str, run_id: str, *, reload_changed: bool = False, actor: str | None = None
) -> dict[str, list[int]]:
    """Refuse a resume whose loaded batches no longer match the legacy data (:func:`changed_batches`),
    naming the tables and batches; with ``reload_changed`` their ledger entries are cleared instead, so
    exactly those batches load again (an upsert: the target takes the legacy system's current rows)."""
    changed = changed_batches(target_url, store_url, run_id)
    if not changed:
        return changed
    listed = "; ".join(f"{t} batches {', '.join(map(str, b))}" for t, b in changed.items())
    if not reload_changed:
        raise IntegrityError(
            f"resume of {run_id}: the legacy data changed since these batches were loaded: {listed};"
            " rerun with reload_changed to load them again from the legacy system's current rows"
        )
    with psycopg.connect(target_url) as conn:
        for table, batches in changed.items():
            conn.execute(
                "DELETE FROM migration.batch WHERE run_id = %s AND legacy_table = %s AND batch_no = ANY(%s)",
                (run_id, table, batches),
            )
        conn.execute(
            "INSERT INTO migration.audit_log (actor, action, run_id, detail) VALUES (%s, %s, %s, %s)",
            (actor or os_user(), "reload changed batches", run_id, json.dumps(changed)),
        )
    log.warning("resume of %s: reloading batches whose legacy data changed: %s", run_id, listed)
    return changed
