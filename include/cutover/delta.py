"""Changes made in the legacy system after a wave's cutover, found and carried over (``pt_delta_sync``).

During a phased migration the later waves' clinics still work in the legacy system, and a wave
already migrated may still see late edits there (a note signed late, a payment posted on
Monday). Every extract records each table's high-water mark: the largest ``modified`` value it
read. A row of a migrated wave whose ``modified`` is above the mark of the last run that covered
the wave (its cutover or a later delta sync) changed afterwards — or is new. So is a row that
differs from the copy those runs last extracted, whatever its ``modified`` says: an edit the
legacy system did not stamp (a script's bulk fix) is caught by its row fingerprint
(:mod:`cutover.snapshot`) and counted apart (``unstamped_rows``). The delta sync moves exactly
those rows through the same map and load (upsert by deterministic id: a changed row updates its
target row, a new one is inserted), then raises the marks.

A row *deleted* in the legacy system leaves no row and no timestamp: :func:`deleted_rows` finds it
by comparing the ledger with the legacy ids. Every legacy row the ledger accounts as migrated or
merged by a run that covered a migrated wave, and whose id the legacy table no longer holds, is
reported (``deleted_rows`` in ``delta_report.json``, ids in ``deleted_rows.csv``) — never deleted
from the target: removing a clinical record needs a person's decision. Such a row is reported by
every later sync until that decision is made. Rejected rows are not reported: they never reached
the target, so their deletion leaves nothing to decide.

A row the legacy system *flags* removed (an extract's export flag, e.g. WebPT's ``3``) is the same
decision made explicit: it is never carried by a sync (the extract leaves it out of a delta's scope,
counting it), and a removed row the ledger accounts as migrated or merged is reported
(``removed_rows`` in ``delta_report.json``, ids in ``removed_rows.csv``) for a person to decide.
Nothing is deleted from the target.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import date
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cutover.config import LEGACY_SYSTEM
from cutover.errors import ConfigError
from cutover.legacy.profile import current, legacy_tables
from cutover.legacy.source import flagged, read_batches
from cutover.loading.copy import copy_arrow
from cutover.pipeline import evidence_dir, migrated_tables, run_key
from cutover.plan import load_plan
from cutover.scope import Scope, delta_scope
from cutover.staging.parquet import MANIFEST, read_manifest
from cutover.staging.store import Store, open_store

log = logging.getLogger(__name__)


class NothingMigrated(Exception):
    """No wave has been migrated yet: there is nothing to sync."""


def _wave_runs(target_url: str) -> list[tuple[str, str, list[str]]]:
    """Every phased cutover and delta sync, oldest first: (run id, state, the waves it covered)."""
    with psycopg.connect(target_url) as conn:
        rows = conn.execute(
            "SELECT run_id, state, dag_id, conf FROM migration.run"
            " WHERE dag_id IN ('pt_cutover', 'pt_delta_sync') ORDER BY started_at, run_id"
        ).fetchall()
    runs = []
    for run_id, state, dag_id, conf in rows:
        conf = conf or {}
        if dag_id == "pt_cutover":
            waves = [conf["wave"]] if conf.get("mode") == "phased" and conf.get("wave") else []
        else:
            waves = list(conf.get("waves") or [])
        runs.append((run_id, state, waves))
    return runs


def migrated_waves(target_url: str) -> dict[str, list[str]]:
    """Wave → the successful runs that covered it (its cutover, then delta syncs), oldest first."""
    waves: dict[str, list[str]] = {}
    for run_id, state, covered in _wave_runs(target_url):
        if state == "success":
            for wave in covered:
                waves.setdefault(wave, []).append(run_id)
    return waves


def high_water(store_url: str, runs: list[str]) -> dict[str, str]:
    """Table → the largest ``modified`` any of ``runs`` extracted."""
    store = open_store(store_url)
    marks: dict[str, str] = {}
    for run in runs:
        for table in migrated_tables():
            key = f"runs/{run_key(run)}/extract/{table}/_stats.json"
            if store.exists(key):
                mark = json.loads(store.get(key)).get("high_water")
                if mark and mark > marks.get(table, ""):
                    marks[table] = mark
    return marks


def _same_profile(target_url: str, runs: list[str]) -> None:
    """A delta sync maps changed rows as the waves' runs mapped them: under the same profile, unchanged.
    A run recorded before profiles were recorded (no SHA-256) is taken as the built-in one's."""
    profile = current()
    with psycopg.connect(target_url) as conn:
        recorded = conn.execute(
            "SELECT run_id, profile_name, profile_sha256 FROM migration.run WHERE run_id = ANY(%s)", (runs,)
        ).fetchall()
    for run, name, sha in recorded:
        if sha is not None and sha != profile.sha256:
            raise ConfigError(
                f"run {run} migrated its wave under legacy profile {name} (SHA-256 {sha[:12]}); this sync "
                f"would map under {profile.name} ({profile.sha256[:12]}): a delta sync uses the waves' profile"
            )


def plan_delta(
    legacy_url: str, store_url: str, target_url: str, run_id: str, *, as_of: date
) -> dict[str, Any]:
    """Stage the scope of a delta sync: changed rows of every migrated wave. Counts and marks only."""
    waves = migrated_waves(target_url)
    if not waves:
        raise NothingMigrated("no wave has been migrated yet: nothing to sync")
    _same_profile(target_url, [r for runs in waves.values() for r in runs])
    plan = load_plan()
    marks = {wave: high_water(store_url, runs) for wave, runs in waves.items()}
    snapshots = {wave: [run_key(r) for r in runs] for wave, runs in waves.items()}
    scope = delta_scope(legacy_url, plan, marks, as_of=as_of, runs=snapshots)
    scope.save(open_store(store_url), f"runs/{run_key(run_id)}")
    log.info("delta sync %s: waves %s since their last runs", run_id, ", ".join(waves))
    return {"waves": sorted(waves), "since": marks, "last_runs": {w: r[-1] for w, r in waves.items()}}


DELETED_SCHEMA = pa.schema(
    [
        pa.field("legacy_table", pa.string()),
        pa.field("legacy_id", pa.string()),
        pa.field("new_id", pa.string()),
        pa.field("wave", pa.string()),
    ]
)
"""``deleted_rows.csv``, ids only: ``new_id`` is the ``pt`` row that carries the legacy row (the
surviving patient for a merged duplicate); ``wave`` is empty for reference data (clinics,
providers, payers, referring physicians), which belongs to every wave."""


def covering_runs(target_url: str) -> dict[str, list[str]]:
    """Run → the migrated waves it covered: the runs whose crosswalk rows are rows of migrated waves.

    A re-upsert stamps a crosswalk row with the run that wrote it last, so a row first migrated
    by wave 1's cutover and updated by a delta sync carries the sync's run id. Every run that
    covered a migrated wave counts, whatever its state: a failed run's loaded rows stay in the
    target (a phased cutover of the wave that failed before the one that succeeded, a failed
    sync), and the sync in progress is still running. A delta sync only ever covers waves
    already migrated; a wave whose cutover has not yet succeeded is not migrated.
    """
    every = _wave_runs(target_url)
    migrated = {wave for _, state, covered in every if state == "success" for wave in covered}
    runs: dict[str, list[str]] = {}
    for run_id, _, waves in every:
        if covered := sorted(w for w in waves if w in migrated):
            runs[run_id] = covered
    return runs


# The ledger's migrated and merged rows of one legacy table that the legacy ids (legacy_ids, a
# temporary table) no longer hold: one hash anti-join in the database, ids only.
_GONE = """
SELECT c.legacy_id, coalesce(c.merged_into, c.new_id)::text, c.run_id
  FROM migration.crosswalk AS c
 WHERE c.legacy_system = %(sys)s AND c.legacy_table = %(table)s
   AND c.outcome IN ('migrated', 'merged')
   AND (%(whole)s OR c.run_id = ANY(%(runs)s))
   AND NOT EXISTS (SELECT 1 FROM legacy_ids AS l WHERE l.legacy_id = c.legacy_id)
 ORDER BY length(c.legacy_id), c.legacy_id
"""


def _gone(
    conn: psycopg.Connection[Any], legacy_url: str, table: str, runs: list[str]
) -> list[tuple[Any, ...]]:
    """(legacy id, new id, run id) of ``table``'s ledger rows whose legacy row is gone.

    The legacy ids are streamed a batch at a time into a temporary table (binary COPY), so
    memory holds one batch of ids; the comparison is the database's.
    """
    spec = legacy_tables()[table]
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE legacy_ids (legacy_id text) ON COMMIT DROP")
        for batch in read_batches(legacy_url, spec.source_name, [(spec.key, spec.key_type)], spec.key):
            ids = pc.cast(batch.column(0), pa.string())
            copy_arrow(cur, "legacy_ids", pa.table({"legacy_id": ids}), ["text"])
        cur.execute("ANALYZE legacy_ids")
        # an anti-join over whole tables: a nested loop is never the right plan, yet the planner
        # picks one when the crosswalk, just loaded, has no statistics yet (minutes at 500k rows)
        cur.execute("SET LOCAL enable_nestloop = off")
        # reference data is moved whole by every run, a later wave's too: all its rows count
        whole = spec.patient_key is None
        cur.execute(_GONE, {"sys": LEGACY_SYSTEM, "table": table, "whole": whole, "runs": runs})
        return cur.fetchall()


def _waves_by_scope(store: Store, run: str, table: str, legacy_ids: pa.Array) -> pa.Array | None:
    """The wave of each of ``legacy_ids`` as ``run`` (a sync of several waves) scoped it, or None
    when the run's scope or extract is no longer staged.

    The legacy row is gone, but the run's extract holds its patient key, and the run's scope the
    ids of each wave's patients, cases and visits at the time.
    """
    prefix = f"runs/{run_key(run)}"
    extract = f"{prefix}/extract/{table}"
    if not (store.exists(f"{prefix}/scope.json") and store.exists(f"{extract}/{MANIFEST}")):
        return None
    spec = legacy_tables()[table]
    scope = Scope.load(store, prefix)
    members = scope.members or (scope,)
    wanted = pc.cast(legacy_ids, current().key_arrow_type(table))
    keys: list[pa.Array] = []
    labels: list[pa.Array] = []
    columns = list(dict.fromkeys([spec.key, str(spec.patient_key)]))
    for part in read_manifest(store, extract)["parts"]:
        parquet = pq.ParquetFile(io.BytesIO(store.get(part["key"], sha256=part["sha256"])))
        for batch in parquet.iter_batches(columns=columns):
            batch = batch.filter(pc.fill_null(pc.is_in(batch.column(spec.key), value_set=wanted), False))
            if not batch.num_rows:
                continue
            label = pa.nulls(batch.num_rows, pa.string())
            for member in reversed(members):  # the first wave that holds the row names it
                label = pc.if_else(member.mask(table, batch), pa.scalar(member.label), label)
            keys.append(batch.column(spec.key))
            labels.append(label)
    if not keys:
        return None
    found = pc.index_in(wanted, value_set=pa.concat_arrays(keys))
    return pa.concat_arrays(labels).take(found)


def _wave_column(
    store: Store, table: str, run_ids: pa.Array, legacy_ids: pa.Array, runs: dict[str, list[str]]
) -> pa.Array:
    """The wave of each gone row: its run's wave when the run covered one, else from the run's scope."""
    if legacy_tables()[table].patient_key is None:
        return pa.array([""] * len(run_ids), pa.string())
    waves = pa.nulls(len(run_ids), pa.string())
    for run in pc.unique(run_ids).to_pylist():
        mine = pc.equal(run_ids, run)
        covered = runs.get(run, [])
        named: pa.Array | None = None
        if len(covered) > 1:
            named = _waves_by_scope(store, run, table, legacy_ids.filter(mine))
        fallback = ";".join(covered)  # the run's waves, when its staged scope cannot tell
        if named is None:
            named = pa.array([fallback] * int(pc.sum(mine).as_py() or 0), pa.string())
        else:
            named = pc.fill_null(named, fallback)
        waves = pc.replace_with_mask(waves, mine, named)
    return waves


def deleted_rows(legacy_url: str, target_url: str, store_url: str) -> pa.Table:
    """Legacy rows of migrated waves deleted in the legacy system after they were migrated (ids only).

    Per migrated table: the rows the ledger accounts as migrated or merged by a run that covered
    a migrated wave (:func:`covering_runs`; for reference data, every migrated row) whose id the
    legacy table no longer holds. A row of a wave not yet migrated is not in the ledger, and a
    rejected row never reached the target: neither is reported. Nothing is deleted here.
    Returns a table of :data:`DELETED_SCHEMA`, ordered by table (load order) and legacy id.
    """
    runs = covering_runs(target_url)
    store = open_store(store_url)
    parts = []
    with psycopg.connect(target_url, autocommit=True) as conn:
        for table in migrated_tables():
            gone = _gone(conn, legacy_url, table, sorted(runs))
            if not gone:
                continue
            legacy_id, new_id, run_id = (pa.array(c, pa.string()) for c in zip(*gone, strict=True))
            parts.append(
                pa.table(
                    [
                        pa.array([table] * len(gone), pa.string()),
                        legacy_id,
                        new_id,
                        _wave_column(store, table, run_id, legacy_id, runs),
                    ],
                    schema=DELETED_SCHEMA,
                )
            )
    return pa.concat_tables(parts) if parts else DELETED_SCHEMA.empty_table()


REMOVED_CHUNK = 5_000


def removed_rows(legacy_url: str, target_url: str) -> pa.Table:
    """Legacy rows flagged removed by their legacy system that the ledger accounts as migrated or
    merged (ids only, :data:`DELETED_SCHEMA`; ``wave`` empty): each waits for a person's decision."""
    parts = []
    with psycopg.connect(target_url) as conn:
        for table in migrated_tables():
            spec = legacy_tables()[table]
            if spec.export_flag is None:
                continue
            flag = spec.export_flag
            columns = [(spec.key, spec.key_type), (flag.column, spec.column_type(flag.column))]
            for batch in read_batches(legacy_url, spec.source_name, columns, spec.key):
                ids = pc.cast(batch.column(0).filter(flagged(batch.column(1), flag.removed)), pa.string())
                ids = ids.drop_null()
                for start in range(0, len(ids), REMOVED_CHUNK):
                    found = conn.execute(
                        "SELECT legacy_id, coalesce(merged_into, new_id)::text FROM migration.crosswalk"
                        " WHERE legacy_system = %s AND legacy_table = %s AND outcome IN ('migrated', 'merged')"
                        " AND legacy_id = ANY(%s::text[]) ORDER BY length(legacy_id), legacy_id",
                        (LEGACY_SYSTEM, table, ids[start : start + REMOVED_CHUNK].to_pylist()),
                    ).fetchall()
                    if found:
                        legacy_id, new_id = (pa.array(c, pa.string()) for c in zip(*found, strict=True))
                        names = pa.array([table] * len(found), pa.string())
                        blank = pa.array([""] * len(found), pa.string())
                        parts.append(pa.table([names, legacy_id, new_id, blank], schema=DELETED_SCHEMA))
    return pa.concat_tables(parts) if parts else DELETED_SCHEMA.empty_table()


def write_delta_report(
    store_url: str, run_id: str, planned: dict[str, Any], *, legacy_url: str, target_url: str
) -> dict[str, Any]:
    """``delta_report.json``: per table, how many rows changed since each wave's last run (of them,
    ``unstamped_rows`` without a newer ``modified``) and how many migrated rows were deleted in the legacy system since (counts only); the deleted rows' ids in
    ``deleted_rows.csv``. Nothing is deleted in the target."""
    store = open_store(store_url)
    changed, unstamped = {}, {}
    for table in migrated_tables():
        key = f"runs/{run_key(run_id)}/extract/{table}/_stats.json"
        if store.exists(key):
            stats = json.loads(store.get(key))
            changed[table] = stats["rows"]
            unstamped[table] = stats.get("unstamped", 0)
    gone = deleted_rows(legacy_url, target_url, store_url)
    deleted = dict.fromkeys(migrated_tables(), 0)
    for row in gone.group_by("legacy_table").aggregate([("legacy_id", "count")]).to_pylist():
        deleted[row["legacy_table"]] = row["legacy_id_count"]
    flagged = removed_rows(legacy_url, target_url)
    removed = dict.fromkeys(migrated_tables(), 0)
    for row in flagged.group_by("legacy_table").aggregate([("legacy_id", "count")]).to_pylist():
        removed[row["legacy_table"]] = row["legacy_id_count"]
    report = {
        **planned,
        "run_id": run_id,
        "changed_rows": changed,
        "unstamped_rows": unstamped,
        "deleted_rows": deleted,
        "removed_rows": removed,
    }
    body = json.dumps(report, indent=2, sort_keys=True).encode()
    folder = evidence_dir(run_id)
    (folder / "delta_report.json").write_bytes(body)
    for name, rows in (("deleted_rows.csv", gone), ("removed_rows.csv", flagged)):
        pacsv.write_csv(rows, folder / name, write_options=pacsv.WriteOptions(quoting_style="needed"))
    if flagged.num_rows:
        log.warning(
            "delta sync %s: %d migrated legacy rows flagged removed by the legacy system (%s); reported, not deleted",
            run_id,
            flagged.num_rows,
            ", ".join(f"{t} {n}" for t, n in removed.items() if n),
        )
    total = gone.num_rows
    if not total:
        log.info("delta sync %s: no migrated legacy row deleted in the legacy system", run_id)
    else:
        log.warning(
            "delta sync %s: %d migrated legacy rows deleted in the legacy system (%s); reported, not deleted",
            run_id,
            total,
            ", ".join(f"{t} {n}" for t, n in deleted.items() if n),
        )
    return {
        "changed_rows": sum(changed.values()),
        "waves": planned["waves"],
        "deleted_rows": total,
        "removed_rows": flagged.num_rows,
    }
