"""The pipeline's stages as plain functions: what each DAG task calls.

Each stage reads and writes one partition keyed by the run (``runs/<run key>/…`` in the
staging store), returns a small manifest of ids, keys and counts for XCom, and never a
patient value.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, TypedDict

import psycopg
import pyarrow as pa

from cutover.config import LEGACY_SYSTEM, state_dir
from cutover.errors import IntegrityError, PolicyError
from cutover.legacy.schema import LEGACY_TABLES
from cutover.legacy.source import arrow_schema, read_batches
from cutover.loading.load import load_table
from cutover.mapping.dedupe import dedupe, review_records
from cutover.mapping.engine import map_batch
from cutover.mapping.specs import SPECS
from cutover.policy import evaluate
from cutover.report.mapping_spec import write_mapping_spec
from cutover.staging.parquet import read_manifest, read_table_objects, write_batches
from cutover.staging.store import open_store
from cutover.target import upgrade

log = logging.getLogger(__name__)

ROWS_PER_PART = 100_000
"""Rows per staged Parquet part: the unit of a load transaction and of resume."""


class StageManifest(TypedDict):
    table: str
    prefix: str
    rows: int
    parts: int
    seconds: float


class TableOutcome(TypedDict):
    legacy_rows: int
    migrated: int
    merged: int
    rejected: int


def run_key(run_id: str) -> str:
    """A run id made safe for object keys and folder names.

    >>> run_key("manual__2026-11-27T18:00:00+00:00")
    'manual__2026-11-27T18-00-00-00-00'
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)


def migrated_tables() -> list[str]:
    """Legacy tables the mapping covers, in load order (parents first)."""
    return [name for name in LEGACY_TABLES if name in SPECS]


def prepare_target(target_url: str) -> list[int]:
    """Create or upgrade the target schemas; returns the migration versions applied."""
    return upgrade(target_url)


def begin_run(target_url: str, run_id: str, dag_id: str, conf: dict[str, Any], actor: str) -> None:
    """Record the run and who started it (idempotent for a retried task)."""
    with psycopg.connect(target_url) as conn:
        conn.execute(
            "INSERT INTO migration.run (run_id, dag_id, mode, state, conf, triggered_by)"
            " VALUES (%s, %s, %s, 'running', %s, %s) ON CONFLICT (run_id) DO UPDATE SET state = 'running'",
            (run_id, dag_id, conf.get("mode"), json.dumps(conf), actor),
        )
        conn.execute(
            "INSERT INTO migration.audit_log (actor, action, run_id, detail) VALUES (%s, %s, %s, %s)",
            (actor, f"start {dag_id}", run_id, json.dumps({"conf_keys": sorted(conf)})),
        )


def extract_table(legacy_url: str, store_url: str, run_id: str, table: str) -> StageManifest:
    """Stream one legacy table into zstd Parquet parts under ``runs/<run>/extract/<table>``."""
    started = time.perf_counter()
    spec = LEGACY_TABLES[table]
    prefix = f"runs/{run_key(run_id)}/extract/{table}"
    batches = read_batches(legacy_url, table, spec.columns, spec.key)
    manifest = write_batches(
        open_store(store_url), prefix, batches, schema=arrow_schema(spec.columns), rows_per_part=ROWS_PER_PART
    )
    seconds = time.perf_counter() - started
    log.info(
        "extracted %s: %d rows in %d parts, %.1fs", table, manifest["rows"], len(manifest["parts"]), seconds
    )
    return StageManifest(
        table=table, prefix=prefix, rows=manifest["rows"], parts=len(manifest["parts"]), seconds=seconds
    )


def map_table(store_url: str, run_id: str, table: str, *, as_of: date) -> StageManifest:
    """Map every extracted part of one table; stage the mapped parts under ``runs/<run>/mapped``.

    ``as_of`` is the run's logical date: it decides two-digit years and "date in the future", so
    two runs of the same data map it the same way whatever the clock says. A table whose spec
    merges duplicates (patients) is deduplicated as a whole before it is staged; the review list
    (legacy ids and scores) is staged beside it as ``_review.json``.
    """
    started = time.perf_counter()
    spec = SPECS[table]
    store = open_store(store_url)
    source = f"runs/{run_key(run_id)}/extract/{table}"
    prefix = f"runs/{run_key(run_id)}/mapped/{table}"
    mapped: Iterator[pa.Table] = (
        map_batch(spec, part, as_of=as_of) for _, part in read_table_objects(store, source)
    )
    if spec.merges:
        whole, counts, review = dedupe(spec, pa.concat_tables(list(mapped)))
        store.put(
            f"{prefix}/_review.json", json.dumps({"counts": counts, "pairs": review_records(review)}).encode()
        )
        log.info(
            "deduplicated %s: %d clusters, %d merged, %d pairs for review",
            table,
            counts["clusters"],
            counts["merged"],
            counts["review"],
        )
        mapped = iter([whole])
    batches = (batch for part in mapped for batch in part.to_batches())
    manifest = write_batches(store, prefix, batches, schema=spec.staged_schema, rows_per_part=ROWS_PER_PART)
    seconds = time.perf_counter() - started
    log.info("mapped %s: %d rows, %.1fs", table, manifest["rows"], seconds)
    return StageManifest(
        table=table, prefix=prefix, rows=manifest["rows"], parts=len(manifest["parts"]), seconds=seconds
    )


def load_mapped(target_url: str, store_url: str, run_id: str, table: str) -> dict[str, Any]:
    """Load one mapped table into the target (resumable per part)."""
    result = load_table(
        target_url,
        open_store(store_url),
        SPECS[table],
        f"runs/{run_key(run_id)}/mapped/{table}",
        run_id=run_id,
    )
    return {
        "table": table,
        "target": result.target_table,
        "batches": result.batches,
        "resumed_batches": result.resumed_batches,
        "rows_in": result.rows_in,
        "migrated": result.migrated,
        "merged": result.merged,
        "rejected": result.rejected,
        "seconds": round(result.seconds, 3),
    }


def outcomes(target_url: str, run_id: str, legacy_rows: dict[str, int]) -> dict[str, TableOutcome]:
    """Per legacy table: rows read, and how many this run migrated, merged and rejected."""
    with psycopg.connect(target_url) as conn:
        counted = conn.execute(
            "SELECT legacy_table, outcome, count(*) FROM ("
            " SELECT legacy_table, outcome FROM migration.crosswalk WHERE legacy_system = %(sys)s AND run_id = %(run)s"
            " UNION ALL SELECT legacy_table, 'rejected' FROM migration.reject"
            " WHERE legacy_system = %(sys)s AND run_id = %(run)s) o GROUP BY 1, 2",
            {"sys": LEGACY_SYSTEM, "run": run_id},
        ).fetchall()
    result = {
        t: TableOutcome(legacy_rows=n, migrated=0, merged=0, rejected=0) for t, n in legacy_rows.items()
    }
    for table, outcome, count in counted:
        if table in result:
            result[table][outcome] = count  # type: ignore[literal-required]
    return result


def reject_reasons(target_url: str, run_id: str) -> dict[str, dict[str, int]]:
    with psycopg.connect(target_url) as conn:
        rows = conn.execute(
            "SELECT legacy_table, reason_code, count(*) FROM migration.reject"
            " WHERE legacy_system = %s AND run_id = %s GROUP BY 1, 2 ORDER BY 1, 2",
            (LEGACY_SYSTEM, run_id),
        ).fetchall()
    reasons: dict[str, dict[str, int]] = {}
    for table, reason, count in rows:
        reasons.setdefault(table, {})[reason] = count
    return reasons


def evidence_dir(run_id: str) -> Path:
    path = state_dir() / "evidence" / run_key(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_summary(
    target_url: str, store_url: str, run_id: str, dag_id: str, *, max_reject_rate: float | None = None
) -> dict[str, Any]:
    """Write ``summary.json`` to the evidence folder and the staging store.

    Fails (after writing the evidence) if a legacy row has no outcome, or a table rejected more
    than its policy allows (``thresholds.yaml``; ``max_reject_rate`` overrides the default).
    Legacy row counts come from the extract stage's manifests in the staging store, so the
    summary needs no data through XCom.
    """
    store = open_store(store_url)
    legacy_rows = {
        table: read_manifest(store, f"runs/{run_key(run_id)}/extract/{table}")["rows"]
        for table in migrated_tables()
    }
    tables = outcomes(target_url, run_id, legacy_rows)
    unaccounted = {
        t: o["legacy_rows"] - (o["migrated"] + o["merged"] + o["rejected"])
        for t, o in tables.items()
        if o["legacy_rows"] != o["migrated"] + o["merged"] + o["rejected"]
    }
    policy = evaluate(dict(tables), max_reject_rate)
    breaches = [p for p in policy if not p.ok]
    summary = {
        "run_id": run_id,
        "dag_id": dag_id,
        "legacy_system": LEGACY_SYSTEM,
        "tables": tables,
        "reject_reasons": reject_reasons(target_url, run_id),
        "reject_policy": {p.table: p.as_dict() for p in policy},
        "accounted": not unaccounted,
    }
    folder = evidence_dir(run_id)
    body = json.dumps(summary, indent=2, sort_keys=True).encode()
    (folder / "summary.json").write_bytes(body)
    store.put(f"runs/{run_key(run_id)}/evidence/summary.json", body)
    for path in write_mapping_spec(folder):
        store.put(f"runs/{run_key(run_id)}/evidence/{path.name}", path.read_bytes())
    with psycopg.connect(target_url) as conn:
        conn.execute(
            "UPDATE migration.run SET state = %s, finished_at = now() WHERE run_id = %s",
            ("success" if not (unaccounted or breaches) else "failed", run_id),
        )
    if unaccounted:
        raise IntegrityError(f"legacy rows without an outcome, per table: {unaccounted}")
    if breaches:
        detail = ", ".join(
            f"{p.table} {p.rejected}/{p.legacy_rows} rejected (limit {p.limit:.1%})" for p in breaches
        )
        raise PolicyError(f"reject rate above the policy: {detail}; see migration.reject for the reasons")
    return {"evidence": str(folder), "tables": len(tables)}
