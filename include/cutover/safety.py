"""A run's patient-safety records in numbers, and the remediation worklist of rejected patients.

Allergies, medications and precautions are never rejected on their own (the profile check refuses a
safety field that could reject); they stay out of the target only with their patient. Such a patient
is the first thing a person must fix after a cutover: a chart opened later without its precautions
can hurt someone. :func:`safety_summary` counts what arrived and writes the worklist, rejected
patients with the most safety records first. Legacy ids, reason codes and counts only, never a value.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from cutover.config import LEGACY_SYSTEM
from cutover.legacy.profile import current
from cutover.staging.parquet import read_manifest
from cutover.staging.store import Store
from cutover.target import SAFETY_TABLES, TARGET_SCHEMA

WORKLIST = "safety_worklist.csv"
"""The evidence file of rejected patients holding safety records: legacy ids and counts only."""


def safety_tables() -> dict[str, str]:
    """Target safety table → the legacy table the profile in use maps onto it (those it maps)."""
    mapped = {target: current().mapped_to(target) for target in SAFETY_TABLES}
    return {target: legacy for target, legacy in mapped.items() if legacy is not None}


def _records_of_rejected(store: Store, prefix: str, legacy: str, rejected: pa.Array) -> Counter[str]:
    """Per rejected patient (legacy id): how many rows of ``legacy`` name it as their patient."""
    counts: Counter[str] = Counter()
    for part in read_manifest(store, f"{prefix}/{legacy}")["parts"]:
        raw = store.get(part["key"], sha256=part["sha256"])  # verified against its manifest
        owners = pq.read_table(io.BytesIO(raw), columns=["ref_patient_id"]).column("ref_patient_id")
        theirs = pc.filter(owners, pc.fill_null(pc.is_in(owners, value_set=rejected), False))
        counts.update(theirs.to_pylist())
    return counts


def safety_summary(target_url: str, store: Store, run_id: str, mapped: str, folder: Path) -> dict[str, Any]:
    """The run's safety records: per table what arrived, per patient how many, the rejected patients'
    records (read from the run's mapped parts under ``mapped``; written to :data:`WORKLIST` in
    ``folder``, most records first)."""
    tables = safety_tables()
    if not tables:
        return {"mapped": False}
    patient_table = current().patient_table
    with psycopg.connect(target_url) as conn:
        arrived = {
            target: conn.execute(
                sql.SQL(
                    "SELECT count(*), coalesce(sum(cardinality(t.source_records)), 0),"
                    " count(DISTINCT t.patient_id) FROM {} t JOIN migration.crosswalk c ON c.new_id = t.id"
                    " WHERE c.legacy_system = %s AND c.legacy_table = %s AND c.run_id = %s"
                ).format(sql.Identifier(TARGET_SCHEMA, target)),
                (LEGACY_SYSTEM, legacy, run_id),
            ).fetchone()
            or (0, 0, 0)
            for target, legacy in tables.items()
        }
        rows = sql.SQL(" UNION ALL ").join(
            sql.SQL(
                "SELECT t.patient_id, t.source_records FROM {} t JOIN migration.crosswalk c ON c.new_id = t.id"
                " WHERE c.legacy_system = %(sys)s AND c.legacy_table = {} AND c.run_id = %(run)s"
            ).format(sql.Identifier(TARGET_SCHEMA, target), sql.Literal(legacy))
            for target, legacy in tables.items()
        )
        per_patient = conn.execute(
            sql.SQL(
                "SELECT count(*), coalesce(max(n), 0),"
                " coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY n), 0)"
                " FROM (SELECT patient_id, sum(cardinality(source_records)) AS n FROM ({}) AS x"
                " GROUP BY patient_id) AS y"
            ).format(rows),
            {"sys": LEGACY_SYSTEM, "run": run_id},
        ).fetchone()
        rejected: dict[str, str] = dict(
            conn.execute(
                "SELECT legacy_id, reason_code FROM migration.reject"
                " WHERE legacy_system = %s AND legacy_table = %s AND run_id = %s",
                (LEGACY_SYSTEM, patient_table, run_id),
            ).fetchall()
        )
    held: dict[str, Counter[str]] = {}
    if rejected:
        ids = pa.array(sorted(rejected), pa.string())
        held = {target: _records_of_rejected(store, mapped, legacy, ids) for target, legacy in tables.items()}
    worklist = _worklist(rejected, held)
    _write_worklist(folder / WORKLIST, worklist, list(tables))
    patients, most, median = per_patient or (0, 0, 0)
    return {
        "mapped": True,
        "tables": {
            target: {"legacy_table": tables[target], "rows": rows, "records": records, "patients": owners}
            for target, (rows, records, owners) in arrived.items()
        },
        "patients": int(patients),
        "records_per_patient": {"median": int(median), "max": int(most)},
        "rejected_patients": {
            "patients": len(worklist),
            "records": sum(entry["records"] for entry in worklist),
            "by_table": {target: sum(held[target].values()) for target in held},
            "worklist": WORKLIST,
        },
    }


def _worklist(rejected: dict[str, str], held: dict[str, Counter[str]]) -> list[dict[str, Any]]:
    by_patient: dict[str, dict[str, int]] = defaultdict(dict)
    for target, counts in held.items():
        for patient, n in counts.items():
            by_patient[patient][target] = n
    entries = [
        {"patient": patient, "reason": rejected[patient], **counts, "records": sum(counts.values())}
        for patient, counts in by_patient.items()
    ]
    return sorted(entries, key=lambda e: (-e["records"], _id_order(e["patient"])))


def _id_order(legacy_id: str) -> tuple[int, int, str]:
    return (0, int(legacy_id), "") if legacy_id.lstrip("-").isdigit() else (1, 0, legacy_id)


def _write_worklist(path: Path, worklist: list[dict[str, Any]], targets: list[str]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["patient_legacy_id", "patient_reject_reason", "safety_records", *targets])
    for entry in worklist:
        writer.writerow(
            [entry["patient"], entry["reason"], entry["records"], *(entry.get(t, 0) for t in targets)]
        )
    path.write_text(out.getvalue())
