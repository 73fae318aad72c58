"""Source-to-target reconciliation of one run: counts, completeness and per-patient chart checksums.

What an auditor asks after a cutover — did every legacy row arrive, and is every chart complete
and correct — answered from two independent sides: the run's mapped Parquet (the legacy side
after normalisation) and the target database. Mismatches go to ``migration.validation_failure``
(run, table, legacy id, new id, kind), replacing that run's earlier rows, and the run fails when
they exceed the allowed share of patients. Reports and errors carry counts, kinds and legacy ids,
never a value of a chart.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from cutover.audit import os_user
from cutover.config import LEGACY_SYSTEM
from cutover.errors import TerminalError, TransientError
from cutover.legacy.profile import current
from cutover.pipeline import evidence_dir, migrated_tables, run_key
from cutover.policy import SET_ASIDE, evaluate
from cutover.reconcile.chart import KINDS, LegacyCharts, TargetCharts, chart_tables
from cutover.reconcile.ledger import (
    TableCounts,
    check_ledger,
    rejected_ids,
    stage_ids,
    stage_patients_from_extract,
)
from cutover.reconcile.segments import ArrowCharts, bisect, differing
from cutover.staging.store import open_store

log = logging.getLogger(__name__)

LEDGER_KINDS = ("unresolved", "missing", "extra", "legacy_recheck")
"""Failure kinds about rows rather than charts; each counts as one failing patient in the rate."""

MAX_IDS_IN_MESSAGE = 10


class ReconcileFailed(TerminalError):
    """Reconciliation found more mismatches than the run allows (see migration.validation_failure)."""


@dataclass(frozen=True)
class ReconcileReport:
    """The outcome of one reconciliation: counts and kinds only, never a value."""

    run_id: str
    tables: dict[str, TableCounts]
    patients_compared: int
    patients_mismatched: int
    failures_by_kind: dict[str, int]
    failure_rate: float
    max_failure_rate: float
    seconds: float
    passed: bool
    bisection: dict[str, int] = field(default_factory=dict)
    """Levels, segments compared, leaves and chart rows fetched: how little of the target was read."""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds per step: stage_ids and ledger (the first session); patients, legacy_charts and
    target_charts (the second session and a thread, at the same time); charts_wait (what of those
    was left when the ledger was done), bisection, legacy_recheck."""
    legacy_recheck: dict[str, Any] = field(default_factory=dict)
    """When asked: the patients re-read from the legacy database and mapped again, and per table how
    many of their rows differ from the staged ones (:mod:`cutover.reconcile.recheck`)."""
    reject_policy: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per table, when asked: the outcome counts against the legacy counts and ``thresholds.yaml``. A
    mass rejection is a finding, not a match: the rows that did load agree with their source, but a
    run that lost more rows than its policy allows does not reconcile."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The failures of the differing charts, under the patient's own legacy id (a merged duplicate's under
# its survivor's), found on the second session: ``rc_patient`` is that session's.
_CHART_FAILURES = """
INSERT INTO migration.validation_failure (run_id, table_name, legacy_id, new_id, kind)
SELECT %(run)s, %(patients)s, coalesce(m.legacy_id, m.patient_id::text), m.patient_id, m.kind
  FROM unnest(%(ids)s::uuid[], %(legacy)s::text[], %(kinds)s::text[]) AS m (patient_id, legacy_id, kind)
ON CONFLICT DO NOTHING
"""


class _ChartSides:
    """A second session on the target, in the first one's snapshot, that builds both sides' charts.

    The ledger's checks (a million ids joined with the crosswalk and the target) need none of the
    charts, and the charts need none of the ledger's tables, but on one session they ran one after
    the other. The second session imports the first's snapshot (``pg_export_snapshot``), so both
    read the very same target; it finds the patients in scope from the patient table's extract
    (:func:`stage_patients_from_extract`) and the rejected rows from the ledger tables, then the
    target's charts are aggregated by the server while a thread of this process builds the legacy
    side from the Parquet. It writes nothing but its temporary tables.
    """

    def __init__(self, target_url: str, snapshot: str) -> None:
        try:
            self.conn = psycopg.connect(target_url)
        except psycopg.OperationalError as exc:
            raise TransientError(f"target_db: cannot connect ({type(exc).__name__})") from exc
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        _plan_for_bulk(self.conn, analyze=False)

    def build(
        self, store_url: str, run_prefix: str, system: str, phases: dict[str, float], pool: ThreadPoolExecutor
    ) -> tuple[ArrowCharts, TargetCharts]:
        """Both sides' charts: the legacy one on ``pool``, the target one on this session."""
        clock = time.perf_counter()
        ids, keys = stage_patients_from_extract(self.conn, open_store(store_url), run_prefix, system)
        rejected = rejected_ids(self.conn, system, [t for t in chart_tables().values() if t is not None])
        phases["patients"] = round(time.perf_counter() - clock, 3)

        def legacy_charts() -> ArrowCharts:
            clock = time.perf_counter()
            store = open_store(store_url)
            built = ArrowCharts(LegacyCharts(store, f"{run_prefix}/mapped", ids, keys, rejected).build())
            phases["legacy_charts"] = round(time.perf_counter() - clock, 3)
            return built

        legacy = pool.submit(legacy_charts)
        clock = time.perf_counter()
        target = TargetCharts(self.conn)
        phases["target_charts"] = round(time.perf_counter() - clock, 3)
        return legacy.result(), target

    def patients(self, keys: list[int]) -> dict[int, list[tuple[Any, str | None]]]:
        """The patients in scope under each key: (patient id, its own legacy id)."""
        found: dict[int, list[tuple[Any, str | None]]] = {}
        rows = self.conn.execute(
            "SELECT key, patient_id, legacy_id FROM rc_patient WHERE key = ANY(%s) ORDER BY patient_id",
            (keys,),
        ).fetchall()
        for key, patient_id, legacy_id in rows:
            found.setdefault(int(key), []).append((patient_id, legacy_id))
        return found

    def __enter__(self) -> _ChartSides:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()  # read only: its transaction is rolled back


def _compare_charts(
    pending: Future[tuple[ArrowCharts, TargetCharts]], phases: dict[str, float]
) -> tuple[int, dict[str, list[int]], dict[str, int]]:
    """Bisect the two sides' charts (``pending``: built meanwhile by :class:`_ChartSides`) to the
    differing patients; return (patients, keys by kind, stats). Records its seconds in ``phases``."""
    clock = time.perf_counter()
    legacy, target = pending.result()
    phases["charts_wait"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    ours, theirs, stats = bisect(legacy, target)
    mismatched = differing(ours, theirs, KINDS)
    phases["bisection"] = round(time.perf_counter() - clock, 3)
    bisection = {
        "levels": stats.levels,
        "segments_compared": stats.segments_compared,
        "leaves": stats.leaves,
        "chart_rows_fetched": stats.leaf_rows,
        "queries_per_side": stats.queries_per_side,
    }
    return legacy.table.num_rows, mismatched, bisection


STATISTICS_TABLES = ("migration.crosswalk", "migration.reject")
"""The ledger tables every check joins; a load that just wrote them leaves their statistics stale."""


def _plan_for_bulk(conn: psycopg.Connection[Any], *, analyze: bool = True) -> None:
    """Every query here joins whole tables: hash joins, never nested loops over a stale estimate.

    Right after a load, autovacuum has not yet analysed the tables, so the planner believes the
    crosswalk holds a few dozen rows and picks nested loops that take minutes on a million. The
    ledger tables are analysed first (an owner's privilege: without it PostgreSQL skips them with
    a warning), and nested loops are off for this transaction only. So are the default 4 MB of
    ``work_mem``, which splits the hash of a million crosswalk rows into 16 batches spilled to disk
    (64 MB, as the loader's sessions), and JIT compilation, which costs 20-30 ms a statement for
    statements that each run once. The temporary tables (a million extracted ids, their outcomes)
    get 256 MB of local buffers instead of 8 MB, which spilled them to temporary files (this must
    come before the session's first temporary table).
    """
    for table in STATISTICS_TABLES if analyze else ():
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(*table.split("."))))
    conn.execute("SET LOCAL enable_nestloop = off")
    conn.execute("SET LOCAL work_mem = '64MB'")
    conn.execute("SET LOCAL jit = off")
    conn.execute("SET LOCAL temp_buffers = '256MB'")


def _recheck(
    conn: psycopg.Connection[Any], legacy_url: str, store: Any, prefix: str, run_id: str
) -> dict[str, Any]:
    """Run the legacy recheck and record its mismatches as ``legacy_recheck`` failures."""
    from datetime import date

    from cutover.reconcile.recheck import recheck

    stats_key = f"{prefix}/mapped/{current().patient_table}/_stats.json"
    as_of = json.loads(store.get(stats_key)).get("as_of") if store.exists(stats_key) else None
    if as_of is None:
        raise TerminalError(
            f"reconciliation of {run_id}: the mapping's as-of date is not recorded, so the legacy recheck"
            " cannot map the sample as the run did; re-run the mapping"
        )
    patients, mismatched = recheck(
        legacy_url, store, prefix, run_id, as_of=date.fromisoformat(as_of), tables=migrated_tables()
    )
    rows = [(t, i) for t, ids in mismatched.items() for i in ids]
    if rows:
        conn.execute(
            "INSERT INTO migration.validation_failure (run_id, table_name, legacy_id, kind)"
            " SELECT %s, t, i, 'legacy_recheck' FROM unnest(%s::text[], %s::text[]) AS r (t, i)"
            " ON CONFLICT DO NOTHING",
            (run_id, [t for t, _ in rows], [i for _, i in rows]),
        )
    return {"patients": len(patients), "mismatched_rows": {t: len(ids) for t, ids in mismatched.items()}}


def _summary(conn: psycopg.Connection[Any], run_id: str) -> tuple[dict[str, int], list[str]]:
    by_kind = dict(
        conn.execute(
            "SELECT kind, count(*) FROM migration.validation_failure WHERE run_id = %s GROUP BY 1 ORDER BY 1",
            (run_id,),
        ).fetchall()
    )
    sample = conn.execute(
        "SELECT table_name || ' ' || legacy_id FROM migration.validation_failure"
        " WHERE run_id = %s AND kind <> 'extra' ORDER BY kind, table_name, legacy_id LIMIT %s",
        (run_id, MAX_IDS_IN_MESSAGE),
    ).fetchall()
    return {str(k): int(n) for k, n in by_kind.items()}, [str(s) for (s,) in sample]


def reconcile(
    target_url: str,
    store_url: str,
    run_id: str,
    *,
    max_failure_rate: float = 0.0,
    system: str = LEGACY_SYSTEM,
    source_run_id: str | None = None,
    reject_policy: bool = False,
    max_reject_rate: float | None = None,
    legacy_url: str | None = None,
    actor: str | None = None,
) -> ReconcileReport:
    """Reconcile one loaded run against its staged extract and mapped Parquet.

    a. counts per table and outcome; every extracted legacy id resolved through the crosswalk
       or the reject table (else ``unresolved``); every expected target row present (else
       ``missing``); every target row accounted for by the crosswalk (else ``extra``);
    b. per-patient chart checksums, bisected by patient key (:mod:`cutover.reconcile.segments`),
       mismatches as ``chart_visits``, ``chart_units``, ``chart_dx``, ``chart_charges``,
       ``chart_payments``, ``chart_balance``, ``chart_safety`` against the surviving patient;
    c. the run's rows of ``migration.validation_failure`` replaced by this result;
    c'. with ``legacy_url``, a sample of patients read again from the legacy database and mapped
       again, every row compared with the staged one (:mod:`cutover.reconcile.recheck`): a change
       anywhere between the legacy system and the staging store is a ``legacy_recheck`` failure;
    d. with ``reject_policy``, every table's rejected share of its legacy rows against
       ``thresholds.yaml`` (``max_reject_rate`` overriding the default), so a run whose load lost
       too many rows fails here however well the rows that loaded match;
    e. :class:`ReconcileFailed` when the failing share of patients exceeds ``max_failure_rate``, a
       table breaks its reject policy, or any migrated patient's safety records (allergies,
       medications, precautions) did not all arrive (``chart_safety``: fatal at any rate), raised after the failures and the report
       (``reconciliation.json`` in the evidence) are written.

    The target is read in one repeatable-read snapshot, so a concurrent writer cannot make the
    two sides disagree half-way.
    """
    started = time.perf_counter()
    store = open_store(store_url)
    # the monitor re-checks an earlier run's staged data, recording the result under its own run
    source = source_run_id or run_id
    prefix = f"runs/{run_key(source)}"
    try:
        conn = psycopg.connect(target_url)
    except psycopg.OperationalError as exc:
        raise TransientError(f"target_db: cannot connect ({type(exc).__name__})") from exc
    with conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            _plan_for_bulk(conn)
            phases: dict[str, float] = {}
            (snapshot,) = conn.execute("SELECT pg_export_snapshot()").fetchone() or ("",)
            with (
                _ChartSides(target_url, snapshot) as sides,
                ThreadPoolExecutor(2, thread_name_prefix="charts") as pool,
            ):
                # both sides' charts are built by a second backend and a thread while this backend
                # checks the ledger (the threads wait for the server or Arrow, the GIL released)
                pending = pool.submit(sides.build, store_url, prefix, system, phases, pool)
                clock = time.perf_counter()
                conn.execute("DELETE FROM migration.validation_failure WHERE run_id = %s", (run_id,))
                legacy_rows = stage_ids(conn, store, prefix, migrated_tables())
                phases["stage_ids"] = round(time.perf_counter() - clock, 3)
                clock = time.perf_counter()
                tables = check_ledger(conn, run_id, system, legacy_rows, source_run_id=source)
                phases["ledger"] = round(time.perf_counter() - clock, 3)
                compared, mismatched, bisection = _compare_charts(pending, phases)
                keys = [k for ks in mismatched.values() for k in ks]
                under = sides.patients(sorted(set(keys)))
            failed = [
                (p, i, kind) for kind, ks in mismatched.items() for k in ks for p, i in under.get(k, [])
            ]
            conn.execute(
                _CHART_FAILURES,
                {
                    "run": run_id,
                    "patients": current().patient_table,
                    "ids": [p for p, _, _ in failed],
                    "legacy": [i for _, i, _ in failed],
                    "kinds": [kind for _, _, kind in failed],
                },
            )
            clock = time.perf_counter()
            rechecked = _recheck(conn, legacy_url, store, prefix, run_id) if legacy_url else {}
            phases["legacy_recheck"] = round(time.perf_counter() - clock, 3)
            by_kind, sample = _summary(conn, run_id)
            patients_mismatched = len(set(keys))
            unsafe = len(mismatched.get("chart_safety", []))
            ledger_failures = sum(by_kind.get(k, 0) for k in LEDGER_KINDS)
            rate = (patients_mismatched + ledger_failures) / max(1, compared)
            aside: dict[str, int] = dict(
                conn.execute(
                    "SELECT legacy_table, count(*) FROM migration.reject WHERE legacy_system = %s"
                    " AND run_id = %s AND reason_code = ANY(%s) GROUP BY 1",
                    (system, run_id, sorted(SET_ASIDE)),
                ).fetchall()
            )
            policy = (
                evaluate({t: {**o, "set_aside": aside.get(t, 0)} for t, o in tables.items()}, max_reject_rate)
                if reject_policy
                else []
            )
            report = ReconcileReport(
                run_id=run_id,
                tables=tables,
                patients_compared=compared,
                patients_mismatched=patients_mismatched,
                failures_by_kind=by_kind,
                failure_rate=round(rate, 6),
                max_failure_rate=max_failure_rate,
                seconds=round(time.perf_counter() - started, 3),
                passed=rate <= max_failure_rate and all(p.ok for p in policy) and not unsafe,
                bisection=bisection,
                phases=phases,
                legacy_recheck=rechecked,
                reject_policy={
                    p.table: {"legacy_rows": p.legacy_rows, "rejected": p.rejected, **p.as_dict()}
                    for p in policy
                },
            )
            conn.execute(
                "INSERT INTO migration.audit_log (actor, action, run_id, detail) VALUES (%s, %s, %s, %s)",
                (
                    actor or os_user(),
                    "reconcile",
                    run_id,
                    json.dumps({k: v for k, v in report.as_dict().items() if k != "tables"}),
                ),
            )
    body = json.dumps(report.as_dict(), indent=2, sort_keys=True).encode()
    (evidence_dir(run_id) / "reconciliation.json").write_bytes(body)  # the store's copy comes with the seal
    log.info(
        "reconciled %s: %d patients compared, %d mismatched, failures %s, %.1fs",
        run_id,
        compared,
        patients_mismatched,
        by_kind,
        report.seconds,
    )
    breaches = [p for p in policy if not p.ok]
    if breaches:
        raise ReconcileFailed(
            f"reconciliation of run {run_id} failed: more rows rejected than the policy allows: "
            + ", ".join(f"{p.table} {p.rejected}/{p.legacy_rows} (limit {p.limit:.1%})" for p in breaches)
            + "; see migration.reject for the reasons"
        )
    if unsafe:
        raise ReconcileFailed(
            f"reconciliation of run {run_id} failed: the safety records (allergies, medications, "
            f"precautions) of {unsafe} migrated patient(s) did not all arrive (chart_safety); a chart "
            "must not open without them: see migration.validation_failure"
        )
    if not report.passed:
        detail = ", ".join(f"{kind} {n}" for kind, n in by_kind.items())
        raise ReconcileFailed(
            f"reconciliation of run {run_id} failed: {sum(by_kind.values())} failures ({detail});"
            f" {patients_mismatched}/{compared} patients mismatched, failure rate {rate:.2%} above"
            f" {max_failure_rate:.2%}; first legacy ids: {', '.join(sample) or 'none'};"
            " see migration.validation_failure"
        )
    return report
