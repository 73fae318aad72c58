"""The assessment as pipeline stages: what the ``pt_assess`` DAG's tasks call.

Each stage keeps its data in the staging store under the run's partition and returns a small
manifest (ids, keys, counts) for XCom:

- ``runs/<run>/assess/profiles/<table>.json``: one table's profile (:func:`profile_to_store`);
- ``runs/<run>/assess/checks.json``: every check result (:func:`checks_to_store`);
- ``runs/<run>/evidence/assessment.html`` and ``assessment.json``, also written to the run's
  evidence folder (:func:`report_from_store`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import date
from typing import TypedDict

from cutover.assess.checks import CheckResult, run_checks
from cutover.assess.profile import TableProfile, profile_table
from cutover.assess.report import REPORT_FILES, assemble, write_report
from cutover.legacy.profile import legacy_tables
from cutover.pipeline import evidence_dir, run_key
from cutover.staging.store import open_store

log = logging.getLogger(__name__)


class ProfileManifest(TypedDict):
    table: str
    key: str
    rows: int
    columns: int
    phi_columns: int
    seconds: float


class ChecksManifest(TypedDict):
    key: str
    checks: int
    results: int
    rows_by_severity: dict[str, int]
    checks_with_findings: list[str]
    seconds: float


class ReportManifest(TypedDict):
    evidence: str
    files: list[str]
    store_keys: list[str]
    tables: int
    legacy_rows: int


def profile_key(run_id: str, table: str) -> str:
    """Where one table's profile is staged.

    >>> profile_key("manual__1", "visits")
    'runs/manual__1/assess/profiles/visits.json'
    """
    return f"runs/{run_key(run_id)}/assess/profiles/{table}.json"


def checks_key(run_id: str) -> str:
    return f"runs/{run_key(run_id)}/assess/checks.json"


def profile_to_store(legacy_url: str, store_url: str, run_id: str, table: str) -> ProfileManifest:
    """Profile one legacy table and keep the profile in the staging store."""
    profile = profile_table(legacy_url, table)
    key = profile_key(run_id, table)
    open_store(store_url).put(key, json.dumps(profile.to_dict()).encode())
    return ProfileManifest(
        table=table,
        key=key,
        rows=profile.rows,
        columns=len(profile.columns),
        phi_columns=sum(1 for c in profile.columns if c.phi),
        seconds=round(profile.seconds, 3),
    )


def checks_to_store(legacy_url: str, store_url: str, run_id: str, today: date) -> ChecksManifest:
    """Run every pre-migration check and keep the results in the staging store."""
    started = time.perf_counter()
    results = run_checks(legacy_url, today=today)
    seconds = time.perf_counter() - started
    key = checks_key(run_id)
    body = {
        "reference_date": today.isoformat(),
        "seconds": seconds,
        "results": [r.to_dict() for r in results],
    }
    open_store(store_url).put(key, json.dumps(body).encode())
    by_severity: Counter[str] = Counter()
    for r in results:
        by_severity[r.severity] += r.count
    return ChecksManifest(
        key=key,
        checks=len({r.name for r in results}),
        results=len(results),
        rows_by_severity=dict(by_severity),
        checks_with_findings=sorted({r.name for r in results if r.count}),
        seconds=round(seconds, 3),
    )


def report_from_store(
    legacy_url: str, store_url: str, run_id: str, tables: list[str] | None = None, *, actor: str | None = None
) -> ReportManifest:
    """Assemble the staged profiles and checks into the report, in the run's evidence folder, sealed
    and published to the staging store (:func:`cutover.evidence.seal`)."""
    from cutover.evidence import seal, store_prefix

    store = open_store(store_url)
    names = tables or list(legacy_tables())
    profiles = [TableProfile.from_dict(json.loads(store.get(profile_key(run_id, t)))) for t in names]
    staged = json.loads(store.get(checks_key(run_id)))
    results = [CheckResult.from_dict(r) for r in staged["results"]]
    assessment = assemble(
        legacy_url,
        profiles,
        results,
        reference_date=date.fromisoformat(staged["reference_date"]),
        timings={"profiles": sum(p.seconds for p in profiles), "checks": float(staged["seconds"])},
    )
    folder = evidence_dir(run_id)
    paths = write_report(assessment, folder)
    sealed = seal(run_id, store_url, actor=actor)
    keys = [f"{store_prefix(run_id, sealed.version)}/{path.name}" for path in paths]
    log.info("assessment of %d tables written to %s and the staging store", len(profiles), folder)
    return ReportManifest(
        evidence=str(sealed.folder),
        files=[p.name for p in paths],
        store_keys=keys,
        tables=len(profiles),
        legacy_rows=sum(assessment.row_counts.values()),
    )


__all__ = [
    "REPORT_FILES",
    "ChecksManifest",
    "ProfileManifest",
    "ReportManifest",
    "checks_key",
    "checks_to_store",
    "profile_key",
    "profile_to_store",
    "report_from_store",
]
