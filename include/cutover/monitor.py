"""After the cutover: re-check the target against the legacy data while the legacy system stays read-only.

``pt_monitor`` re-runs, on a schedule, the reconciliation of every accepted cutover run (each
wave's, or the big bang's) against the legacy data that run staged, and the target gate, then
tracks the data-quality metrics across monitor runs, as OHDSI DQD users keep asking for:

* **accuracy** — share of compared patients whose chart checksums still agree;
* **completeness** — share of legacy rows with an outcome whose target row is still there;
* **consistency** — share of the target gate's expectations that pass.

Each failure (a reconciliation failure: kind, table, legacy id; or a failing target expectation)
is compared with the previous monitor run's: **new**, **resolved**, **persisting**. The history
lives in the staging store (``monitor/history.json``, ids and counts only) and every monitor run's
evidence holds ``monitor.json`` and ``monitor.html`` with the trend.
"""

from __future__ import annotations

import html
import json
import logging
import shutil
from typing import Any

import psycopg

from cutover.errors import CutoverError
from cutover.pipeline import evidence_dir, latest_evidence, validate_gate
from cutover.staging.store import open_store

log = logging.getLogger(__name__)

HISTORY = "monitor/history.json"


class NothingToMonitor(Exception):
    """No accepted cutover run yet."""


def baseline_runs(target_url: str) -> list[str]:
    """The accepted cutover runs to re-check: the latest big bang, or else the latest run of each wave."""
    with psycopg.connect(target_url) as conn:
        rows = conn.execute(
            "SELECT run_id, conf FROM migration.run WHERE dag_id = 'pt_cutover' AND state = 'success'"
            " ORDER BY started_at, run_id"
        ).fetchall()
    big_bang = [r for r, conf in rows if (conf or {}).get("mode") != "phased"]
    if big_bang:
        return [big_bang[-1]]
    latest: dict[str, str] = {}
    for run_id, conf in rows:
        latest[str(conf.get("wave"))] = run_id
    return list(latest.values())


def _reconcile(
    target_url: str, store_url: str, run_id: str, baselines: list[str], actor: str | None = None
) -> dict[str, Any]:
    from cutover.reconcile import reconcile

    folder = evidence_dir(run_id)
    compared = mismatched = rows = lost = 0
    failures: set[str] = set()
    for n, baseline in enumerate(baselines, 1):
        sub = f"{run_id}.{n}"
        report = reconcile(
            target_url, store_url, sub, max_failure_rate=1.0, source_run_id=baseline, actor=actor
        ).as_dict()
        moved = evidence_dir(sub) / "reconciliation.json"
        shutil.move(moved, folder / f"reconciliation_{n}.json")
        shutil.rmtree(evidence_dir(sub), ignore_errors=True)
        compared += report["patients_compared"]
        mismatched += report["patients_mismatched"]
        for table in report["tables"].values():
            rows += table["migrated"] + table["merged"]
            lost += table["unresolved"]
        kinds = report["failures_by_kind"]
        lost += kinds.get("missing", 0)
        with psycopg.connect(target_url) as conn:
            failures |= {
                f"{kind}:{table}:{legacy_id}"
                for kind, table, legacy_id in conn.execute(
                    "SELECT kind, table_name, legacy_id FROM migration.validation_failure WHERE run_id = %s",
                    (sub,),
                )
            }
    return {
        "accuracy": round(1 - mismatched / compared, 6) if compared else 1.0,
        "completeness": round(1 - lost / rows, 6) if rows else 1.0,
        "patients_compared": compared,
        "patients_mismatched": mismatched,
        "failures": failures,
    }


def monitor(target_url: str, store_url: str, run_id: str, *, actor: str | None = None) -> dict[str, Any]:
    """One monitor run: reconciliation of every baseline run, the target gate, metrics and their trend."""
    baselines = baseline_runs(target_url)
    if not baselines:
        raise NothingToMonitor("no accepted cutover run to monitor yet")
    recon = _reconcile(target_url, store_url, run_id, baselines, actor)
    failures: set[str] = recon.pop("failures")
    try:
        gate = validate_gate("target", store_url, run_id, target_url=target_url, raise_on_failure=False)
    except CutoverError as error:
        gate = {"passed": False, "error": type(error).__name__}
    gate_file = latest_evidence(run_id) / "gates" / "target.json"
    results = json.loads(gate_file.read_text())["results"] if gate_file.exists() else []
    failing = {f"expectation:{r['table']}:{r['expectation']}" for r in results if r.get("status") != "ok"}
    failures |= failing
    metrics = {
        "accuracy": recon["accuracy"],
        "completeness": recon["completeness"],
        "consistency": round(1 - len(failing) / len(results), 6) if results else 1.0,
    }
    store = open_store(store_url)
    history: list[dict[str, Any]] = json.loads(store.get(HISTORY)) if store.exists(HISTORY) else []
    previous = set(history[-1]["failures"]) if history else set()
    entry = {
        "run_id": run_id,
        "baselines": baselines,
        "metrics": metrics,
        "patients_compared": recon["patients_compared"],
        "new": sorted(failures - previous),
        "resolved": sorted(previous - failures),
        "persisting": sorted(failures & previous),
        "failures": sorted(failures),
    }
    history = [*history, entry]
    store.put(HISTORY, json.dumps(history, indent=1).encode())
    folder = evidence_dir(run_id)
    (folder / "monitor.json").write_text(json.dumps({"current": entry, "trend": _trend(history)}, indent=2))
    (folder / "monitor.html").write_text(render_trend(history))
    log.info(
        "monitor %s: accuracy %.4f, completeness %.4f, consistency %.4f; %d new, %d resolved, %d persisting",
        run_id,
        metrics["accuracy"],
        metrics["completeness"],
        metrics["consistency"],
        len(entry["new"]),
        len(entry["resolved"]),
        len(entry["persisting"]),
    )
    return {
        **metrics,
        "new": len(entry["new"]),
        "resolved": len(entry["resolved"]),
        "persisting": len(entry["persisting"]),
        "target_gate_passed": bool(gate.get("passed")),
    }


def _trend(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "run_id": h["run_id"],
            **h["metrics"],
            "new": len(h["new"]),
            "resolved": len(h["resolved"]),
            "persisting": len(h["persisting"]),
        }
        for h in history
    ]


def render_trend(history: list[dict[str, Any]]) -> str:
    """A self-contained page: the metrics of every monitor run, newest last (ids and counts only)."""
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v if not isinstance(v, float) else f'{v:.2%}'))}</td>"
            for v in (
                t["run_id"],
                t["accuracy"],
                t["completeness"],
                t["consistency"],
                t["new"],
                t["resolved"],
                t["persisting"],
            )
        )
        + "</tr>"
        for t in _trend(history)
    )
    points = " ".join(f"{20 + i * 40},{110 - 100 * t['accuracy']:.1f}" for i, t in enumerate(_trend(history)))
    return (
        "<!doctype html><meta charset='utf-8'><title>Cutover data-quality trend</title>"
        "<style>body{font:14px system-ui;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd}</style>"
        "<h1>Data quality after the cutover</h1>"
        f"<svg width='{max(200, 40 * len(history) + 40)}' height='120' role='img' aria-label='accuracy trend'>"
        f"<polyline fill='none' stroke='#3b6fb6' stroke-width='2' points='{points}'/></svg>"
        "<table><tr><th>monitor run</th><th>accuracy</th><th>completeness</th><th>consistency</th>"
        f"<th>new</th><th>resolved</th><th>persisting</th></tr>{rows}</table>"
    )


__all__ = ["HISTORY", "NothingToMonitor", "baseline_runs", "monitor", "render_trend"]
