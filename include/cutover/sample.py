"""The trial run: a sample moved into a scratch target, timed, and extrapolated to a go/no-go.

``pt_sample_transfer`` runs the cutover's own stages (extract → map → load, with the same gates)
on a stratified sample (:func:`cutover.scope.sample_scope`) into a scratch database on the target
server, so nothing of the real target is touched. :func:`estimate` then scales each table's
measured stage times by that table's full size over its sample size (tables cost differently per
row: a visit with notes is not a payer), adds the safety margin of the cutover plan and compares
the result with the plan's downtime window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from cutover.legacy.profile import legacy_tables
from cutover.legacy.source import count_rows
from cutover.loading.bulk import restore_seconds
from cutover.staging.store import open_store
from cutover.target import upgrade

log = logging.getLogger(__name__)

STAGES = ("extract", "map", "load", "validate")
GATES = ("extract", "mapped", "target")


class StageTiming(TypedDict):
    rows: int
    seconds: float


def scratch_name(run_id: str) -> str:
    """The scratch database of a trial run.

    >>> scratch_name("manual__2026-11-27T18:00:00+00:00")
    'cutover_trial_c9738d7849'
    """
    return "cutover_trial_" + hashlib.sha256(run_id.encode()).hexdigest()[:10]


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def scratch_url(target_url: str, run_id: str) -> str:
    return _with_database(target_url, scratch_name(run_id))


def create_scratch(target_url: str, run_id: str) -> str:
    """A fresh scratch database beside the target with the target's schemas (a retry starts clean)."""
    name = scratch_name(run_id)
    with psycopg.connect(target_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = scratch_url(target_url, run_id)
    upgrade(url)
    return name


def drop_scratch(target_url: str, run_id: str) -> None:
    with psycopg.connect(target_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch_name(run_id)))
        )


def stage_timings(target_url: str, store_url: str, run_id: str) -> dict[str, dict[str, StageTiming]]:
    """Per stage and legacy table: rows and seconds of one run (extract and map from their staged
    stats, load from the batch ledger and a first load's constraint restore, validate from the
    gates' and the reconciliation's reports, see :func:`validation_timings`)."""
    from cutover.pipeline import latest_evidence, migrated_tables, run_key

    store = open_store(store_url)
    timings: dict[str, dict[str, StageTiming]] = {stage: {} for stage in STAGES}
    for stage, folder in (("extract", "extract"), ("map", "mapped")):
        for table in migrated_tables():
            key = f"runs/{run_key(run_id)}/{folder}/{table}/_stats.json"
            if store.exists(key):
                stats = json.loads(store.get(key))
                timings[stage][table] = StageTiming(rows=stats["rows"], seconds=stats["seconds"])
    with psycopg.connect(target_url) as conn:
        for table, rows, seconds in conn.execute(
            "SELECT legacy_table, sum(rows_in), sum(extract(epoch FROM finished_at - started_at))"
            " FROM migration.batch WHERE run_id = %s AND state = 'loaded' GROUP BY 1",
            (run_id,),
        ):
            timings["load"][table] = StageTiming(rows=int(rows), seconds=float(seconds))
    _add_restore(timings["load"], restore_seconds(target_url, run_id))
    timings["validate"] = validation_timings(latest_evidence(run_id))
    return timings


def validation_timings(evidence: Path) -> dict[str, StageTiming]:
    """The validation's work in a run's evidence folder: ``<gate>:<table>`` per table a gate checked
    (rows: its largest element count), ``<gate>:`` for the gate's own cost (GX's context, the data
    docs: rows 0, not scaled), ``reconciliation`` (rows: the legacy rows it accounted) and its legacy
    recheck (a fixed sample of patients: rows 0, not scaled)."""
    out: dict[str, StageTiming] = {}
    for gate in GATES:
        path = evidence / "gates" / f"{gate}.json"
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        rows: dict[str, int] = {}
        for result in report["results"]:
            rows[result["table"]] = max(rows.get(result["table"], 0), int(result["element_count"]))
        spent = report.get("table_seconds", {})
        for table, seconds in spent.items():
            out[f"{gate}:{table}"] = StageTiming(rows=rows.get(table, 0), seconds=seconds)
        out[f"{gate}:"] = StageTiming(
            rows=0, seconds=round(max(report["seconds"] - sum(spent.values()), 0), 3)
        )
    path = evidence / "reconciliation.json"
    if path.exists():
        report = json.loads(path.read_text())
        accounted = sum(int(t["legacy_rows"]) for t in report["tables"].values())
        # the legacy recheck reads a fixed sample of patients whatever the run's size: not scaled
        recheck = float(report.get("phases", {}).get("legacy_recheck", 0.0))
        out["reconciliation"] = StageTiming(
            rows=accounted, seconds=round(float(report["seconds"]) - recheck, 3)
        )
        out["reconciliation:legacy_recheck"] = StageTiming(rows=0, seconds=round(recheck, 3))
    return out


def validation_rows(validate: dict[str, StageTiming], legacy: dict[str, int]) -> dict[str, int]:
    """The full run's rows for each entry of :func:`validation_timings`, from the legacy tables' rows:
    a target table's are those of the legacy tables loaded into it."""
    from cutover.legacy.profile import mapping_specs

    full: dict[str, int] = {}
    for key, timing in validate.items():
        table = key.partition(":")[2]
        if key == "reconciliation":
            full[key] = sum(legacy.values())
        elif not timing["rows"]:
            full[key] = 0
        elif table in legacy:
            full[key] = legacy[table]
        else:
            full[key] = sum(
                n for t, n in legacy.items() if t in mapping_specs() and mapping_specs()[t].target == table
            )
    return full


def _add_restore(load: dict[str, StageTiming], restored: dict[str, float]) -> None:
    """Count a first load's constraint restore in the load: a ``pt`` table's to the legacy tables
    loaded into it, the ledger's (crosswalk indexes) to every table by its share of rows."""
    from cutover.legacy.profile import mapping_specs
    from cutover.target import TARGET_SCHEMA

    total_rows = sum(t["rows"] for t in load.values()) or 1
    for name, seconds in restored.items():
        schema, table = name.split(".", 1)
        into = [
            legacy for legacy in load if schema == TARGET_SCHEMA and mapping_specs()[legacy].target == table
        ]
        for legacy in load:
            if schema != TARGET_SCHEMA:
                share = seconds * load[legacy]["rows"] / total_rows
            elif legacy in into:
                share = seconds / len(into)
            else:
                continue
            load[legacy] = StageTiming(rows=load[legacy]["rows"], seconds=load[legacy]["seconds"] + share)


def work_seconds(timings: dict[str, dict[str, StageTiming]]) -> dict[str, float]:
    """Seconds spent per stage, and in all (``total``)."""
    per = {stage: round(sum(t["seconds"] for t in timings.get(stage, {}).values()), 3) for stage in STAGES}
    return {**per, "total": round(sum(per.values()), 3)}


def _fit(rows: list[int], seconds: list[float]) -> tuple[float, float]:
    """(fixed seconds per table, seconds per row): the Theil–Sen slope through the sample's mean.

    The slope is the median of the slopes between every two tables: one table slowed by a busy
    moment (a checkpoint, another process) would tilt a least-squares slope, and the full run's
    rows multiply it; a median stays where it was. The line still passes through the mean, so the
    sample's own tables cost what they cost (the delay is carried once, not multiplied) and a full
    run is never estimated below its sample. Both are kept non-negative.

    >>> _fit([10, 110], [1.0, 2.0])
    (0.9, 0.01)
    >>> _fit([10, 20, 30, 40, 50], [1.1, 1.2, 9.0, 1.4, 1.5])  # one table slowed by 7.7 s
    (2.54, 0.01)
    """
    if not rows:
        return 0.0, 0.0
    slopes = [
        (seconds[j] - seconds[i]) / (rows[j] - rows[i])
        for i in range(len(rows))
        for j in range(i + 1, len(rows))
        if rows[j] != rows[i]
    ]
    per_row = max(0.0, statistics.median(slopes)) if slopes else 0.0
    fixed = statistics.fmean(seconds) - per_row * statistics.fmean(rows)
    if fixed < 0:  # no fixed cost visible: all of it per row
        fixed, per_row = 0.0, sum(seconds) / max(1, sum(rows))
    return round(fixed, 9), round(per_row, 9)


def estimate(
    sample: dict[str, dict[str, StageTiming]],
    full_rows: dict[str, int],
    *,
    window_hours: float,
    safety_margin: float,
    gates_passed: bool,
    reject_breaches: list[str] | None = None,
) -> dict[str, Any]:
    """Extrapolate a sample run's stage times to the full tables; the go/no-go: no-go when the
    estimate does not fit the window, a gate failed, or the sample shows a table above its reject
    limit for certain (``reject_breaches``, :func:`cutover.policy.sample_breaches`).

    ``sample["validate"]``, keyed as :func:`validation_timings` keys it, needs its full rows in
    ``full_rows`` under the same keys (:func:`validation_rows`).

    Per stage, a table costs a fixed time (connections, transactions, Parquet files, the mapping's
    set-up) plus a time per row. In a sample the fixed part dominates, so the two are fitted over
    all tables of the stage at once (a Theil–Sen slope through the sample's mean, both non-negative:
    one table slowed by a busy moment does not tilt it) rather than read off one table: the full stage is then ``tables × fixed + per_row × full rows``. The
    extract is not scaled: the trial's extract already reads every legacy row to pick the sample's. Loads
    run parents before children, so the stages add up, as one worker would run them: a
    conservative figure for a wider executor.
    """
    per_stage: dict[str, float] = {}
    for stage in STAGES:
        timings = list(sample.get(stage, {}).values())
        if stage == "extract":  # the trial's extract already scans every legacy row (the scope filters after)
            per_stage[stage] = round(sum(t["seconds"] for t in timings), 3)
            continue
        # a cost that does not grow with rows (a gate's own: GX's context, its data docs) stays as it is
        flat = sum(t["seconds"] for t in timings if not t["rows"])
        scaled = {table: t for table, t in sample.get(stage, {}).items() if t["rows"]}
        fixed, per_row = _fit([t["rows"] for t in scaled.values()], [t["seconds"] for t in scaled.values()])
        rows = sum(full_rows.get(table, t["rows"]) for table, t in scaled.items())
        per_stage[stage] = round(flat + len(scaled) * fixed + per_row * rows, 3)
    total = sum(per_stage.values())
    with_margin = total * safety_margin
    fits = with_margin <= window_hours * 3600
    sample_rows = sum(t["rows"] for t in sample["extract"].values())
    return {
        "sample_rows": sample_rows,
        "full_rows": sum(n for table, n in full_rows.items() if table in legacy_tables()),
        "estimated_seconds": {**per_stage, "total": round(total, 3)},
        "safety_margin": safety_margin,
        "estimated_with_margin_seconds": round(with_margin, 3),
        "window_hours": window_hours,
        "fits_window": fits,
        "gates_passed": gates_passed,
        "reject_breaches": list(reject_breaches or []),
        "decision": "go" if fits and gates_passed and not reject_breaches else "no-go",
        "reasons": [
            reason
            for reason, bad in (
                (f"estimate {with_margin / 3600:.2f} h exceeds the {window_hours:.1f} h window", not fits),
                ("the sample did not pass every gate", not gates_passed),
            )
            if bad
        ]
        + [f"reject policy: {b}" for b in reject_breaches or []],
    }


def legacy_counts(legacy_url: str) -> dict[str, int]:
    from cutover.pipeline import migrated_tables

    tables = legacy_tables()
    return {
        table: count_rows(legacy_url, tables[table].source_name)
        for table in migrated_tables()
        if table in tables
    }


def decide(
    legacy_url: str,
    target_url: str,
    store_url: str,
    run_id: str,
    *,
    gates_passed: bool,
    now: datetime,
    actor: str | None = None,
) -> dict[str, Any]:
    """The trial's result: timings, the extrapolated full run, the window it must fit, go or no-go.

    Written to the evidence folder as ``sample_estimate.json``, with a link to the newest assessment
    (:func:`cutover.evidence.link`), and sealed: the store's copy, and the seal in the target's audit
    log when the target is migrated already.
    """
    from cutover.evidence import link
    from cutover.pipeline import evidence_dir, latest_evidence, seal_evidence
    from cutover.plan import load_plan
    from cutover.policy import sample_breaches

    plan = load_plan()
    timings = stage_timings(scratch_url(target_url, run_id), store_url, run_id)
    full = legacy_counts(legacy_url)
    summary_file = latest_evidence(run_id) / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    result = estimate(
        timings,
        full | validation_rows(timings["validate"], full),
        window_hours=plan.window_hours,
        safety_margin=plan.safety_margin,
        gates_passed=gates_passed,
        reject_breaches=sample_breaches(summary.get("reject_policy") or {}),
    )
    start, end = plan.next_window(now)
    result |= {
        "run_id": run_id,
        "sample_seconds": work_seconds(timings),
        "next_window": {"start": start.isoformat(), "end": end.isoformat(), "timezone": plan.timezone},
        "stages": {
            stage: {
                "rows": sum(t["rows"] for t in timings[stage].values()),
                "seconds": round(sum(t["seconds"] for t in timings[stage].values()), 3),
            }
            for stage in STAGES
        },
    }
    body = json.dumps(result, indent=2, sort_keys=True).encode()
    (evidence_dir(run_id) / "sample_estimate.json").write_bytes(body)
    link(run_id, store_url, roles=("assessment",))
    seal_evidence(store_url, run_id, target_url=target_url, actor=actor)
    log.info(
        "trial run: %d sample rows; full run estimated %.0f s (%.0f s with margin) against a %.0f h window: %s",
        result["sample_rows"],
        result["estimated_seconds"]["total"],
        result["estimated_with_margin_seconds"],
        plan.window_hours,
        result["decision"],
    )
    return result


__all__ = ["create_scratch", "decide", "drop_scratch", "estimate", "scratch_url", "stage_timings"]
