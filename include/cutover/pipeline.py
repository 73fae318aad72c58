"""The pipeline's stages as plain functions: what each DAG task calls.

Each stage reads and writes one partition keyed by the run (``runs/<run key>/…`` in the
staging store), returns a small manifest of ids, keys and counts for XCom, and never a
patient value.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from cutover import remediation, remediation_run
from cutover.audit import audit_head
from cutover.config import LEGACY_SYSTEM
from cutover.errors import ConfigError, IntegrityError, PolicyError
from cutover.evidence import run_key
from cutover.legacy.profile import (
    bind_run,
    current,
    legacy_tables,
    load_profile,
    mapping_specs,
    run_profile,
    selected,
    use,
)
from cutover.legacy.source import MALFORMED, extract_schema, flagged, read_batches
from cutover.lineage import root_causes
from cutover.loading.load import load_table
from cutover.mapping.dedupe import apply_merges, plan_merges, plan_record_merges, review_records
from cutover.mapping.engine import MAP_BATCH_ROWS, map_batch
from cutover.policy import evaluate, set_aside
from cutover.report.mapping_spec import write_mapping_spec
from cutover.safety import safety_summary
from cutover.staging.parquet import iter_batches, read_manifest, write_batches
from cutover.staging.store import Store, open_store
from cutover.target import upgrade

if TYPE_CHECKING:
    from cutover.scope import Kind, Scope

log = logging.getLogger(__name__)

ROWS_PER_PART = 100_000
"""Rows per staged Parquet part, at most: the unit of a load transaction and of resume."""


def balanced_part_rows(rows: int, most: int = ROWS_PER_PART) -> int:
    """Rows per mapped part for a table of about ``rows`` rows: as few parts as ``most`` allows,
    of equal size, so the load's mapped tasks (one per part) take about as long as each other.

    A 5% margin keeps a table that explodes a few rows into parts (procedures) from spilling a
    tiny extra part. 151,000 visits make two parts of 79,275 rows, not 100,000 and 51,000:

    >>> balanced_part_rows(151_000), balanced_part_rows(80_000), balanced_part_rows(250_000)
    (79275, 84000, 87500)
    """
    parts = max(1, math.ceil(rows / most))
    return max(1, min(most, math.ceil(rows / parts * 1.05)))


class StageManifest(TypedDict, total=False):
    table: str
    prefix: str
    rows: int
    parts: int
    seconds: float
    bytes: int
    high_water: str | None
    unstamped: int
    """A delta sync's extract: rows taken because they differ from their snapshot though their
    ``modified`` is not newer than the wave's mark (an edit the legacy system did not stamp)."""
    as_of: str
    """The mapping's as-of date (ISO): what a later re-mapping of the same rows must use."""


class TableOutcome(TypedDict):
    legacy_rows: int
    migrated: int
    merged: int
    rejected: int


def migrated_tables() -> list[str]:
    """Legacy tables the mapping covers, in load order (parents first), under the profile in use."""
    return [name for name in legacy_tables() if name in mapping_specs()]


F = TypeVar("F", bound=Callable[..., Any])


def under_run_profile(fn: F) -> F:
    """Run a stage under the profile its run began with (its ``store_url`` and ``run_id``
    arguments say which run): every stage of one run maps, checks and accounts by one profile."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        store_url, run_id = bound.arguments["store_url"], bound.arguments["run_id"]
        with use(run_profile(open_store(store_url), f"runs/{run_key(run_id)}")):
            return fn(*args, **kwargs)

    return cast(F, wrapper)


def prepare_target(target_url: str) -> list[int]:
    """Create or upgrade the target schemas; returns the migration versions applied."""
    return upgrade(target_url)


def begin_run(
    target_url: str,
    run_id: str,
    dag_id: str,
    conf: dict[str, Any],
    actor: str,
    *,
    store_url: str | None = None,
    profile_ref: str | None = None,
    audit_url: str | None = None,
) -> None:
    """Record the run, who started it and the legacy profile it works under (idempotent for a retried
    task), and take the target for it: another live run holding it is refused at once
    (:func:`cutover.runs.claim_target`).

    With ``store_url``, the run also takes its copy of the remediation corrections, each vouched for by
    the audit log of ``audit_url`` (the target's, by default; the trial's scratch has none of its own):
    :func:`cutover.remediation_run.bind_run`.

    The profile (``profile_ref``, else the configured one) is recorded with its SHA-256 in
    ``migration.run`` and, with ``store_url``, under the run's prefix in the staging store, where
    every later stage of the run reads it again (:func:`cutover.legacy.profile.run_profile`). A run
    resumed under another profile, or under its own profile edited since, is refused.
    """
    from cutover.runs import claim_target

    ref = profile_ref or selected()
    profile = load_profile(ref)
    with psycopg.connect(target_url) as conn:
        row = conn.execute("SELECT profile_sha256 FROM migration.run WHERE run_id = %s", (run_id,)).fetchone()
        if row is not None and row[0] is not None and row[0] != profile.sha256:
            raise ConfigError(
                f"run {run_id} began under another legacy profile (SHA-256 {row[0][:12]}), not "
                f"{profile.name} ({profile.sha256[:12]}): a run resumes under the profile it began with"
            )
        conn.execute(
            "INSERT INTO migration.run (run_id, dag_id, mode, state, conf, triggered_by, profile_name, profile_sha256)"
            " VALUES (%s, %s, %s, 'running', %s, %s, %s, %s)"
            " ON CONFLICT (run_id) DO UPDATE SET state = 'running',"
            " profile_name = EXCLUDED.profile_name, profile_sha256 = EXCLUDED.profile_sha256",
            (run_id, dag_id, conf.get("mode"), json.dumps(conf), actor, profile.name, profile.sha256),
        )
        claim_target(conn, run_id)
        conn.execute(
            "INSERT INTO migration.audit_log (actor, action, run_id, detail) VALUES (%s, %s, %s, %s)",
            (
                actor,
                f"start {dag_id}",
                run_id,
                json.dumps(
                    {"conf_keys": sorted(conf), "profile": profile.name, "profile_sha256": profile.sha256}
                ),
            ),
        )
    if store_url is not None:
        store = open_store(store_url)
        bind_run(store, f"runs/{run_key(run_id)}", profile, ref)
        remediation_run.bind_run(store, audit_url or target_url, run_key(run_id))


class NoWaveToday(Exception):
    """A scheduled phased run on a date no wave goes live: the run skips."""


class LateStart(Exception):
    """A scheduled run starting long after its window opened: the run skips, and an alert goes out."""


def choose_scope(
    *, mode: str, wave: str, scheduled: bool, run_date: datetime, started: datetime | None = None
) -> dict[str, Any]:
    """What a cutover run moves: ``big_bang`` (everything) or one wave of the cutover plan.

    A scheduled run is always phased and takes the wave whose go-live date is the run's date in
    the plan's timezone; raises :class:`NoWaveToday` when there is none, and :class:`LateStart` when
    it ``started`` later than its window's start (``run_date``) plus the plan's tolerance (a DAG
    unpaused days after a Friday it missed: a cutover outside its window must never happen by
    itself). A triggered phased run names its wave, or takes the day's.
    """
    from cutover.plan import load_plan

    if not scheduled and mode != "phased":
        return {"mode": "big_bang", "wave": None}
    plan = load_plan()
    if scheduled and started is not None and (late := plan.late_start(run_date, started)):
        raise LateStart(late)
    if wave:
        return {"mode": "phased", "wave": plan.wave(wave).name}
    day = run_date.astimezone(plan.tz).date()
    chosen = plan.wave_on(day)
    if chosen is None:
        upcoming = [f"{w.name} on {w.go_live}" for w in plan.waves if w.go_live > day]
        raise NoWaveToday(f"no wave goes live on {day}; next: {', '.join(upcoming) or 'none'}")
    return {"mode": "phased", "wave": chosen.name}


@under_run_profile
def plan_scope(
    legacy_url: str,
    store_url: str,
    run_id: str,
    *,
    kind: Kind,
    as_of: date,
    wave: str | None = None,
    share: float = 0.02,
    seed: int = 0,
) -> dict[str, Any]:
    """Decide which legacy rows this run moves and stage the decision as ``runs/<run>/scope.*``.

    ``all`` for a big-bang run, one wave of the cutover plan for a phased run, a stratified
    sample for the trial run. Returns counts only.
    """
    from cutover.plan import load_plan
    from cutover.scope import Scope, sample_scope, wave_scope

    if kind == "wave":
        plan = load_plan()
        scope = wave_scope(legacy_url, plan, plan.wave(str(wave)), as_of=as_of)
    elif kind == "sample":
        scope = sample_scope(legacy_url, share=share, seed=seed)
    else:
        scope = Scope("all")
    scope.save(open_store(store_url), f"runs/{run_key(run_id)}")
    log.info("scope of %s: %s %s", run_id, scope.label, scope.counts())
    return {"kind": scope.kind, "label": scope.label, "complement": scope.complement, **scope.counts()}


def _scope(store: Store, run_id: str) -> Scope:
    from cutover.scope import Scope

    prefix = f"runs/{run_key(run_id)}"
    return Scope.load(store, prefix) if store.exists(f"{prefix}/scope.json") else Scope("all")


def _staged(
    store: Store,
    table: str,
    prefix: str,
    manifest: Any,
    seconds: float,
    *,
    high_water: str | None = None,
    unstamped: int | None = None,
    as_of: date | None = None,
) -> StageManifest:
    """A stage's manifest for XCom (counts only), also kept beside its parts as ``_stats.json``."""
    result = StageManifest(
        table=table,
        prefix=prefix,
        rows=manifest["rows"],
        parts=len(manifest["parts"]),
        seconds=seconds,
        bytes=sum(p["bytes"] for p in manifest["parts"]),
    )
    if high_water is not None:
        result["high_water"] = high_water
    if unstamped is not None:
        result["unstamped"] = unstamped
    if as_of is not None:
        result["as_of"] = as_of.isoformat()
    store.put(f"{prefix}/_stats.json", json.dumps(result).encode())
    return result


@under_run_profile
def extract_table(legacy_url: str, store_url: str, run_id: str, table: str) -> StageManifest:
    """Stream one legacy table (the run's scope of it) into zstd Parquet parts under ``runs/<run>/extract/<table>``.

    Also records the table's high-water mark (the largest ``modified`` value read), from which
    ``pt_delta_sync`` finds rows changed in the legacy system after this run; the parts themselves
    are the snapshot a later sync compares rows with (:mod:`cutover.snapshot`).
    """
    started = time.perf_counter()
    spec = legacy_tables()[table]
    store = open_store(store_url)
    scope = _scope(store, run_id)
    snapshots = scope.snapshots(store, table)
    prefix = f"runs/{run_key(run_id)}/extract/{table}"
    csv = current().source_format == "csv"  # a delivered file's rows carry what was wrong with a line
    columns = [*spec.columns, *([(MALFORMED, "text")] if csv else [])]
    tops: list[str] = []
    unstamped = 0

    def scoped() -> Iterator[pa.RecordBatch]:
        nonlocal unstamped
        for batch in read_batches(legacy_url, spec.source_name, columns, spec.key, invalid_ids=True):
            kept, changed_unstamped = scope.select(table, batch, snapshots)
            if scope.kind == "delta" and spec.export_flag is not None:
                # a row its legacy system flags removed is never carried by a sync (delta.removed_rows)
                removed = flagged(kept.column(spec.export_flag.column), spec.export_flag.removed)
                kept = kept.filter(pc.invert(removed))
            unstamped += changed_unstamped
            if spec.modified is not None and kept.num_rows:
                tops.append(pc.max(kept.column(spec.modified)).as_py() or "")
            if kept.num_rows:
                yield kept

    manifest = write_batches(
        store,
        prefix,
        scoped(),
        schema=extract_schema(spec.columns, malformed=csv),
        rows_per_part=ROWS_PER_PART,
    )
    seconds = time.perf_counter() - started
    log.info(
        "extracted %s: %d rows in %d parts, %.1fs", table, manifest["rows"], len(manifest["parts"]), seconds
    )
    return _staged(
        store,
        table,
        prefix,
        manifest,
        seconds,
        high_water=max(tops, default="") or None,
        unstamped=unstamped if snapshots else None,
    )


@under_run_profile
def map_table(store_url: str, run_id: str, table: str, *, as_of: date) -> StageManifest:
    """Map every extracted part of one table; stage the mapped parts under ``runs/<run>/mapped``.

    ``as_of`` is the run's logical date: it decides two-digit years and "date in the future", so
    two runs of the same data map it the same way whatever the clock says.

    Memory is bounded by a batch (:data:`~cutover.mapping.engine.MAP_BATCH_ROWS` rows), not by
    the table: parts are read as a stream of batches and mapped one batch at a time. A table
    whose spec merges duplicates is staged aside (``_unmerged``), deduplicated over all its rows
    holding only the compared columns (the matcher's for patients,
    :func:`~cutover.mapping.dedupe.plan_merges`; a record table's owner and compared fields,
    :func:`~cutover.mapping.dedupe.plan_record_merges`), then marked batch by batch; the counts
    and the review list (legacy ids and scores) are staged beside it as ``_review.json``.
    """
    started = time.perf_counter()
    spec = mapping_specs()[table]
    store = open_store(store_url)
    source = f"runs/{run_key(run_id)}/extract/{table}"
    prefix = f"runs/{run_key(run_id)}/mapped/{table}"
    # the remediation's corrections, applied over the extracted rows (the extract stays the legacy copy)
    corrected = remediation_run.overlay(store, run_key(run_id), table)
    mapped: Iterator[pa.Table] = (
        map_batch(spec, remediation_run.apply(batch, corrected), as_of=as_of)
        for batch in iter_batches(store, source, max_rows=MAP_BATCH_ROWS)
    )
    unmerged = f"{prefix}/_unmerged"
    if spec.merges:
        # the one global step: the mapped rows are staged aside, the merges decided over them
        # (holding only the matcher's columns), then applied batch by batch
        write_batches(
            store,
            unmerged,
            (batch for part in mapped for batch in part.to_batches()),
            schema=spec.staged_schema,
            rows_per_part=ROWS_PER_PART,
        )
        staged = functools.partial(iter_batches, store, unmerged, max_rows=MAP_BATCH_ROWS)
        if spec.merge_same:
            plan = plan_record_merges(spec, staged)
        else:  # a person's decisions on review pairs stand in for the scores'
            plan = plan_merges(spec, staged, remediation_run.decisions(store, run_key(run_id), table))
        counts = plan.summary
        store.put(
            f"{prefix}/_review.json",
            json.dumps({"counts": counts, "pairs": review_records(plan.review)}).encode(),
        )
        log.info(
            "deduplicated %s: %d clusters, %d merged, %d pairs for review",
            table,
            counts["clusters"],
            counts["merged"],
            counts["review"],
        )
        mapped = (
            apply_merges(spec, batch, plan)
            for batch in iter_batches(store, unmerged, max_rows=MAP_BATCH_ROWS)
        )
    batches = (batch for part in mapped for batch in part.to_batches())
    part_rows = balanced_part_rows(read_manifest(store, source)["rows"])
    manifest = write_batches(store, prefix, batches, schema=spec.staged_schema, rows_per_part=part_rows)
    if spec.merges:
        store.delete_prefix(unmerged)
    seconds = time.perf_counter() - started
    log.info("mapped %s: %d rows, %.1fs", table, manifest["rows"], seconds)
    return _staged(store, table, prefix, manifest, seconds, as_of=as_of)


@under_run_profile
def mapped_batches(store_url: str, run_id: str, table: str) -> list[int]:
    """The batch numbers (staged parts) of one mapped table: what the load maps over."""
    manifest = read_manifest(open_store(store_url), f"runs/{run_key(run_id)}/mapped/{table}")
    return list(range(len(manifest["parts"])))


@under_run_profile
def load_mapped(
    target_url: str, store_url: str, run_id: str, table: str, batch_nos: list[int] | None = None
) -> dict[str, Any]:
    """Load one mapped table (or some of its batches) into the target, resumable per batch."""
    result = load_table(
        target_url,
        open_store(store_url),
        mapping_specs()[table],
        f"runs/{run_key(run_id)}/mapped/{table}",
        run_id=run_id,
        batch_nos=batch_nos,
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
        "direct_batches": result.direct_batches,
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
    """The folder a stage writes the run's evidence to, ``evidence/<dag_id>/<run key>/`` under the state
    folder: its newest version, or a new one once that is sealed (:func:`cutover.evidence.writable`)."""
    from cutover.evidence import writable

    return writable(run_id)


def latest_evidence(run_id: str) -> Path:
    """The newest version of the run's evidence: where to read what its stages wrote."""
    from cutover.evidence import latest

    return latest(run_id)


@under_run_profile
def write_summary(
    target_url: str,
    store_url: str,
    run_id: str,
    dag_id: str,
    *,
    max_reject_rate: float | None = None,
    actor: str | None = None,
    seal: bool = True,
) -> dict[str, Any]:
    """Write ``summary.json`` to the evidence folder and seal it (``seal``; the trial seals after its
    estimate instead).

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
    reasons = reject_reasons(target_url, run_id)
    policy = evaluate(
        {t: {**o, "set_aside": set_aside(reasons.get(t, {}))} for t, o in tables.items()}, max_reject_rate
    )
    breaches = [p for p in policy if not p.ok]
    tracked = remediation.track(target_url, run_id)
    summary = {
        "run_id": run_id,
        "dag_id": dag_id,
        "legacy_system": LEGACY_SYSTEM,
        "tables": tables,
        "reject_reasons": reasons,
        # the few legacy defects that cost the most rows: rejects grouped by their root cause
        "root_causes": root_causes(target_url, run_id),
        # root rejects tracked across runs until corrected and carried, or accepted as not carried
        "remediation": tracked,
        "reject_policy": {p.table: p.as_dict() for p in policy},
        "accounted": not unaccounted,
        "safety": safety_summary(
            target_url, store, run_id, f"runs/{run_key(run_id)}/mapped", evidence_dir(run_id)
        ),
        # the audit log's head as this run ends: a later rewrite of its history is caught against it
        "audit_head": audit_head(target_url),
    }
    folder = evidence_dir(run_id)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    remediation.write_worklist(folder, remediation.worklist(target_url))
    remediation.write_review(store, run_key(run_id), folder)
    write_mapping_spec(folder)
    with psycopg.connect(target_url) as conn:
        conn.execute(
            "UPDATE migration.run SET state = %s, finished_at = now() WHERE run_id = %s",
            ("success" if not (unaccounted or breaches) else "failed", run_id),
        )
    write_timings(target_url, store_url, run_id)
    sealed = (
        seal_evidence(store_url, run_id, target_url=target_url, actor=actor)
        if seal
        else {"evidence": str(folder)}
    )
    if unaccounted:
        raise IntegrityError(f"legacy rows without an outcome, per table: {unaccounted}")
    if breaches:
        detail = ", ".join(
            f"{p.table} {p.rejected}/{p.legacy_rows} rejected (limit {p.limit:.1%})" for p in breaches
        )
        raise PolicyError(f"reject rate above the policy: {detail}; see migration.reject for the reasons")
    return {**sealed, "tables": len(tables)}


@under_run_profile
def write_timings(target_url: str, store_url: str, run_id: str) -> dict[str, Any]:
    """``timings.json``: rows and seconds per stage, and the run's downtime against the plan's window."""
    from cutover.plan import load_plan
    from cutover.sample import STAGES, stage_timings

    timings = stage_timings(target_url, store_url, run_id)
    with psycopg.connect(target_url) as conn:
        started, finished = conn.execute(
            "SELECT started_at, coalesce(finished_at, now()) FROM migration.run WHERE run_id = %s", (run_id,)
        ).fetchone() or (None, None)
    result: dict[str, Any] = {
        "run_id": run_id,
        "stages": {
            stage: {
                "rows": sum(t["rows"] for t in timings[stage].values()),
                "seconds": round(sum(t["seconds"] for t in timings[stage].values()), 3),
            }
            for stage in STAGES
        },
        "tables": timings,
    }
    if started is not None:
        plan = load_plan()
        start, end = plan.next_window(started)
        result["downtime_seconds"] = round((finished - started).total_seconds(), 3)
        result["window"] = {"start": start.isoformat(), "end": end.isoformat(), "tz": plan.timezone}
    (evidence_dir(run_id) / "timings.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    return result


@under_run_profile
def seal_evidence(
    store_url: str,
    run_id: str,
    *,
    target_url: str | None = None,
    actor: str | None = None,
    dag_id: str | None = None,
) -> dict[str, Any]:
    """Seal the run's evidence (:func:`cutover.evidence.seal`): the HTML report, ``manifest.sha256``,
    the store's copy and, with ``target_url``, its record in ``migration.run`` and the audit log.

    Evidence written after a seal goes to a new version, which the next call seals.
    """
    from cutover.evidence import seal
    from cutover.report.migration_report import write_report

    return seal(
        run_id, store_url, render=write_report, target_url=target_url, actor=actor, dag_id=dag_id
    ).as_dict()


@under_run_profile
def validate_gate(
    gate: str, store_url: str, run_id: str, *, target_url: str | None = None, raise_on_failure: bool = True
) -> dict[str, Any]:
    """Run one GX gate of the run; its results go to ``gates/<gate>.json`` and ``data_docs/`` in the evidence.

    Raises ``GateFailed`` (terminal) when a fatal expectation fails beyond its threshold, unless
    ``raise_on_failure`` is off (the trial run records the failure for its go/no-go instead).
    """
    from cutover.validation.runner import GateFailed, run_gate

    folder = evidence_dir(run_id)

    def file_result() -> None:
        produced = folder / f"gate_{gate}.json"
        if produced.exists():
            (folder / "gates").mkdir(exist_ok=True)
            produced.replace(folder / "gates" / f"{gate}.json")

    try:
        report = run_gate(gate, store_url=store_url, run_id=run_id, target_url=target_url, out_dir=folder)  # type: ignore[arg-type]
    except GateFailed:
        file_result()
        if raise_on_failure:
            raise
        return {"gate": gate, "passed": False}
    file_result()
    return {
        "gate": gate,
        "passed": report.passed,
        "expectations": len(report.results),
        "findings": len(report.findings),
        "seconds": report.seconds,
    }


@under_run_profile
def gate_rejects(
    store_url: str,
    run_id: str,
    *,
    target_url: str | None,
    max_reject_rate: float | None = None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """The reject policy before any write (:mod:`cutover.reject_gate`), its report ``gates/rejects.json``
    in the evidence. A breach fails the run here, with the target untouched, and marks the run failed;
    without ``raise_on_failure`` (the trial run) it is recorded for the go/no-go instead."""
    from cutover.reject_gate import breach_message, check_rejects

    report = check_rejects(
        open_store(store_url),
        f"runs/{run_key(run_id)}",
        mapping_specs(),
        migrated_tables(),
        target_url=target_url,
        max_reject_rate=max_reject_rate,
    )
    folder = evidence_dir(run_id) / "gates"
    folder.mkdir(exist_ok=True)
    (folder / "rejects.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    if not report["passed"] and raise_on_failure:
        if target_url is not None:
            with psycopg.connect(target_url) as conn:
                conn.execute(
                    "UPDATE migration.run SET state = 'failed', finished_at = now() WHERE run_id = %s",
                    (run_id,),
                )
        raise PolicyError(breach_message(report))
    return {"gate": "rejects", "passed": report["passed"]}


@under_run_profile
def reconcile_run(
    target_url: str,
    store_url: str,
    run_id: str,
    *,
    max_failure_rate: float,
    reject_policy: bool = False,
    max_reject_rate: float | None = None,
    legacy_url: str | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Source-to-target reconciliation of the run (``reconciliation.json``); fails above the rate, and,
    with ``reject_policy``, when a table rejected more of its legacy rows than the policy allows; with
    ``legacy_url``, a sample of patients is also read and mapped again from the legacy database."""
    from cutover.reconcile import reconcile

    report = reconcile(
        target_url,
        store_url,
        run_id,
        max_failure_rate=max_failure_rate,
        reject_policy=reject_policy,
        max_reject_rate=max_reject_rate,
        legacy_url=legacy_url,
        actor=actor,
    ).as_dict()
    return {
        k: report[k] for k in ("passed", "patients_compared", "patients_mismatched", "seconds") if k in report
    }


def undo_if_rejected(target_url: str, run_id: str, *, actor: str) -> dict[str, Any]:
    """Restore the pre-load snapshot when the target gate or the reconciliation rejected this run's load.

    Runs after a failure upstream; a failure that was not a verdict on the loaded data (a load
    task that crashed, say) leaves the target as it is, to be resumed from the ledger.
    """
    from cutover.rollback import rollback_run

    folder = latest_evidence(run_id)
    verdicts = {}
    for name, path in (
        ("gate_target", folder / "gates" / "target.json"),
        ("reconcile", folder / "reconciliation.json"),
    ):
        if path.exists():
            verdicts[name] = bool(json.loads(path.read_text()).get("passed"))
    rejected = [name for name, passed in verdicts.items() if not passed]
    if not rejected:
        log.info("no verdict rejected the load of %s: the target stays for a resume", run_id)
        return {"undone": False, "verdicts": verdicts}
    result = rollback_run(target_url, run_id, actor=actor)
    log.warning("%s rejected the load of %s: target restored to its pre-load snapshot", rejected, run_id)
    return {"undone": True, "rejected_by": rejected, "rows": result["rows"]}
