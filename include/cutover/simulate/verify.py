"""Check a run against the simulator's ground truth: what happened to every planted defect.

For each defect kind of the manifest: how many were planted, how many rows ended as the kind
expects (normalised and migrated, rejected with that reason, merged into the right patient,
flagged), how many ended otherwise for a reason the manifest itself explains (the row's parent
was rejected, or the row carries another defect that rejects it), and how many disagree — with
the legacy ids and the outcome that was recorded instead. Ids and codes only.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, TypedDict

import psycopg

from cutover.config import LEGACY_SYSTEM

FLAG_OF_KIND = {
    "invalid_npi": "npi_invalid",
    "note_without_appointment": "note_without_appointment",
    "units_exceed_minutes": "units_exceed_minutes",
    "visit_after_discharge": "visit_after_discharge",
    "placeholder_ssn": "ssn_placeholder",
}
CASCADE = {"parent_rejected", "orphan", "ref_missing"}


MERGE_RECALL = 0.95
"""Duplicate matching is statistical: a statistical kind passes at this recall (the issue's bar), every
other kind only without a single disagreement."""

STATISTICAL = frozenset({"duplicate_patient"})
"""The kinds a statistical matcher decides (a record entered twice merges by equality: never missed)."""


class KindReport(TypedDict):
    expected: str
    planted: int
    agree: int
    explained: int
    disagree: int
    ok: bool
    examples: list[dict[str, Any]]


def verify_run(target_url: str, manifest: dict[str, Any], *, examples: int = 10) -> dict[str, KindReport]:
    """Compare the target's ledger (all runs) with the manifest's planted defects."""
    with psycopg.connect(target_url) as conn:
        outcome = {
            (t, i): (o, r)
            for t, i, o, r in conn.execute(
                "SELECT legacy_table, legacy_id, outcome, reason_code FROM migration.outcome WHERE legacy_system = %s",
                (LEGACY_SYSTEM,),
            ).fetchall()
        }
        merging = sorted(
            {
                d["table"]
                for d in manifest["defects"]
                if manifest["defect_kinds"][d["kind"]]["expected"] == "merge"
            }
        )
        owner: dict[tuple[str, str], Any] = {
            (t, i): new
            for t, i, new in conn.execute(
                "SELECT legacy_table, legacy_id, coalesce(merged_into, new_id) FROM migration.crosswalk"
                " WHERE legacy_system = %s AND legacy_table = ANY(%s)",
                (LEGACY_SYSTEM, merging),
            ).fetchall()
        }
        flags: dict[tuple[str, str], set[str]] = defaultdict(set)
        for t, i, code in conn.execute(
            "SELECT legacy_table, legacy_id, flag_code FROM migration.flag WHERE legacy_system = %s",
            (LEGACY_SYSTEM,),
        ).fetchall():
            flags[(t, i)].add(code)
    kinds = manifest["defect_kinds"]
    rejecting = defaultdict(set)
    for d in manifest["defects"]:
        if kinds[d["kind"]]["expected"] == "reject":
            rejecting[(d["table"], str(d["legacy_id"]))].add(d["kind"])
    report: dict[str, KindReport] = {}
    for d in manifest["defects"]:
        kind = d["kind"]
        expected = kinds[kind]["expected"]
        entry = report.setdefault(
            kind,
            KindReport(expected=expected, planted=0, agree=0, explained=0, disagree=0, ok=True, examples=[]),
        )
        entry["planted"] += 1
        key = (d["table"], str(d["legacy_id"]))
        got, reason = outcome.get(key, ("missing", None))
        if expected == "reject":
            ok = got == "rejected" and (reason == kind or (kind == "orphan" and reason in CASCADE))
        elif expected == "merge":
            # merged into the record (or patient) it duplicates: both now stand for one target row
            ok = key in owner and owner.get(key) == owner.get((key[0], str(d.get("of"))))
        elif expected == "flag":
            ok = got in {"migrated", "merged"} and FLAG_OF_KIND.get(kind, kind) in flags.get(key, set())
        else:
            ok = got in {"migrated", "merged"}
        partner = (d["table"], str(d.get("of")))
        if ok:
            entry["agree"] += 1
        elif got == "rejected" and (reason in CASCADE or (rejecting[key] - {kind})):
            entry["explained"] += 1
        elif expected == "merge" and outcome.get(partner, ("missing", None))[0] == "rejected":
            entry["explained"] += 1  # the duplicate's partner was rejected: nothing to merge into
        else:
            entry["disagree"] += 1
            if len(entry["examples"]) < examples:
                entry["examples"].append(
                    {
                        "table": key[0],
                        "legacy_id": key[1],
                        "outcome": got,
                        "reason": reason,
                        "field": d.get("field"),
                    }
                )
    for kind, entry in report.items():
        judged = entry["planted"] - entry["explained"]
        if kind in STATISTICAL:
            entry["ok"] = judged == 0 or entry["agree"] / judged >= MERGE_RECALL
        else:
            entry["ok"] = entry["disagree"] == 0
    return dict(sorted(report.items()))


def format_report(report: dict[str, KindReport]) -> str:
    lines = [
        f"{'defect kind':<26}{'expected':<10}{'planted':>8}{'agree':>8}{'explained':>10}{'disagree':>9}  ok"
    ]
    for kind, r in report.items():
        lines.append(
            f"{kind:<26}{r['expected']:<10}{r['planted']:>8}{r['agree']:>8}{r['explained']:>10}{r['disagree']:>9}"
            f"  {'yes' if r['ok'] else 'NO'}"
        )
        for ex in r["examples"][:3]:
            lines.append(
                f"    e.g. {ex['table']} {ex['legacy_id']}: {ex['outcome']} {ex['reason'] or ''}".rstrip()
            )
    return "\n".join(lines)
