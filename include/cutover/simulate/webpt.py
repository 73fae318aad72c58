"""Write a simulated practice as a WebPT "Standard Extract": a delivery of CSV files, and its ground truth.

:func:`write_extract` simulates a practice with :func:`cutover.simulate.simulate` (into a SQLite file
in a temporary folder) and rewrites it as WebPT delivers it: one file per table of the built-in profile
``webpt_extract`` (``legacy/profiles/webpt_extract/``, whose column lists are the files' headers),
WebPT's column names and codes, dates ``YYYY-MM-DD`` and times ``YYYY-MM-DD HH:MM:SS`` (the
simulator's own messy dates stay messy), ``export_flag`` 1 on every row, written with :mod:`csv`
(minimal quoting) one table at a time. :func:`write_next_delivery` writes the nightly delivery that
follows a written one: only changed rows, flagged 1 new, 2 modified, 3 removed.

The manifest holds PHI canaries, so it is written beside the delivery, never in it (a reader would
take it for part of the delivery): ``<folder>.manifest.json`` unless told otherwise.

Ids are the simulator's wherever WebPT has a place for them:

===================  ================================================================================
file (profile table) ids
===================  ================================================================================
appointments         ``appointmnet_id`` = the simulator's ``appt_id``, negated for an appointment booked
                     ahead and never checked in (every scheduled one, every third cancelled or no-show)
charges              one row per CPT code: ``record_id`` = the simulator's ``proc_id`` (repeated when one
                     free-text line held several codes), ``record_pointer`` = ``proc_id`` for its first
                     code and a number above the highest ``proc_id`` for each further code
billing_charges      ``charge_id`` = ``record_id`` = the simulator's ``charge_id`` (the active state);
                     a chain's earlier states and the INSOVER lines are numbered above the highest
transactions         the simulator's ``payment_id`` of a patient's own payments (the self-pay payer);
                     the unpaid transactions are numbered above the highest
payment_adjustments  the simulator's ``payment_id`` of a payer's payments and adjustments; INSOVER above
patient_credit       the INSOVER credits, numbered from 1
allergies,           assumed files (WebPT documents none): ``allergy_id``, ``medication_id`` =
medications,         ``med_id``, ``precaution_id`` = ``prec_id``, their values as the simulator typed them
precautions          (NKDA spellings, unmapped statuses, precautions only in a note's words, duplicates)
the others           the simulator's: ``patient_identity_id`` = ``cov_id``, ``therapist_id`` =
                     ``provider_id``, ``insurance_company_id`` = ``payer_id``, clinics, patients, cases,
                     visits and authorizations (``record_id`` = ``auth_id``) alike
===================  ================================================================================

The simulator's tables WebPT has no file for (referrals, referring physicians, plans of care,
diagnoses, outcomes, documents) are not written, and their defects are left out of the manifest, as
are the defects a WebPT file cannot hold (:data:`DROPPED_KINDS`) and those of the rows written to the
files the profile does not map (payer payments and adjustments: ``payment_adjustments``).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import logging
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from cutover.legacy.profile import Profile, load_profile
from cutover.simulate import vocab as V
from cutover.simulate.writers import to_server_text

log = logging.getLogger(__name__)

FORMAT = "webpt-extract"
PROFILE = "webpt_extract"
BOM_FILES = frozenset({"appointments", "visits"})
"""Profile tables whose UTF-8 file starts with a byte-order mark (the profile's utf-8 reads it)."""
TRUNCATED = "transactions"
"""The file whose last line is cut short: that line is a ``csv_malformed`` reject, ``csv-line-<n>``."""
TRUNCATED_FIELDS = 7
CHAIN_SHARE, MIN_CHAINS = 0.03, 3
"""RevFlow charges spread over 2-3 states (only the newest active): a share of the charges, at least."""
INSOVER_ROWS = 3
UNPAID_ROWS = 2
NO_SHOW = "No Show"
CANCEL_REASONS = ("Patient cancelled", "Illness", "Weather", "Schedule conflict, will call back")
INSURANCE_TYPE = {"Medicare": 3, "Medicaid": 6, "Commercial": 9, "Workers Comp": 7, "Auto/PIP": 10}
INSURANCE_TYPE |= {"Tricare": 8, "VA": 13, "Self Pay": 5}
PLAN_TYPE = {"Medicare Advantage - Humana": 16, "Blue Cross Blue Shield": 17, "Aetna": 2, "Cigna": 1}
"""WebPT insurance-type codes (1 HMO … 17 BCBS) by the simulator's payer type, and for a few named plans."""
NOTE_TYPE = {"IE": "IE", "DN": "DN", "PN": "PN", "RE": "RE", "DC": "DS"}
"""WebPT's note type by the simulator's (every third discharge is written DQ, the FAQ's other code)."""

TABLE_OF = {
    "clinics": "clinics",
    "providers": "therapists",
    "payers": "insurance_companies",
    "patients": "patients",
    "coverage": "patient_insurance",
    "cases": "cases",
    "authorizations": "authorizations",
    "appointments": "appointments",
    "visits": "visits",
    "procedures": "charges",
    "charges": "billing_charges",
    "payments": "transactions",
    "allergies": "allergies",
    "medications": "medications",
    "precautions": "precautions",
}
"""The profile table each simulator table is written to (payer payments go to payment_adjustments)."""
COLUMN_OF = {
    ("patients", "pat_name"): "last_name,first_name,middle_name",
    ("patients", "addr2"): "address2",
    ("patients", "emerg_contact"): "emergency_contact_name",
    ("patients", "emerg_phone"): "emergency_contact_phone",
    ("visits", "appt_id"): "appointment_id",
    ("coverage", "pat_id"): "patient_id",
    ("charges", "amount"): "charge_amount",
    ("payments", "amount"): "dollar_amount_paid",
    ("allergies", "status"): "allergy_status",
    ("allergies", "noted"): "noted_date",
    ("medications", "drug"): "medication_name",
    ("medications", "med_status"): "medication_status",
    ("precautions", "prec_code"): "precaution_code",
    ("precautions", "prec_text"): "precaution_text",
}
"""The extract's column of a simulator column it renames (the manifest's ``field``), by simulator table."""
DROPPED_KINDS = {
    "cpt_free_text": "WebPT writes one CPT code per charges row: the writer splits the line (record_id repeats)",
    "units_exceed_minutes": "the charges file has no minutes: the 8-minute rule cannot be judged",
}
OWN_KINDS: dict[str, dict[str, Any]] = {
    "csv_malformed": {
        "expected": "reject",
        "table": TRUNCATED,
        "note": "the file's last line is cut short: nothing of it is trusted, its id is csv-line-<line>",
    },
    "charge_state_superseded": {
        "expected": "reject",
        "table": "billing_charges",
        "note": "an earlier state (is_active 0) of a RevFlow charge: the active state migrates alone",
    },
    "insurance_overage": {
        "expected": "flag",
        "table": "billing_charges",
        "note": "an INSOVER line ($0, negative balance): migrated without a CPT code, flagged",
    },
    "payment_unpaid": {
        "expected": "reject",
        "table": "transactions",
        "note": "a patient transaction marked unpaid (txn_paid 0): not money received",
    },
    "negative_appointment_id": {
        "expected": "normalise",
        "table": "appointments",
        "note": "an appointment booked ahead: its negative id is its id, it migrates as any other",
    },
    "record_id_repeated": {
        "expected": "normalise",
        "table": "charges",
        "note": "a charges row whose record_id another row has (keyed by record_pointer): it migrates",
    },
    "authorization_id_repeated": {
        "expected": "normalise",
        "table": "authorizations",
        "note": "an authorization whose authorization_id another row has (keyed by record_id): it migrates",
    },
}
"""The extract's own kinds of row, beside the simulator's defects (same manifest shape)."""


def manifest_path(folder: Path) -> Path:
    """Where a delivery's manifest goes by default: beside the folder, ``<folder>.manifest.json``.

    >>> manifest_path(Path("/tmp/webpt/night-1"))
    PosixPath('/tmp/webpt/night-1.manifest.json')
    """
    return folder.with_name(folder.name + ".manifest.json")


def profile() -> Profile:
    return load_profile(PROFILE)


# --- writing files ---------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    """A value as its CSV text: NULL empty, the simulator's Latin-1 bytes as a UTF-8 export shows them
    (mojibake), NUL as \\x01 (as the simulator's PostgreSQL writer keeps them)."""
    if value is None:
        return ""
    return str(to_server_text(value, "postgresql"))


def _encoding(prof: Profile, table: str) -> str:
    own = (prof.document["tables"][table].get("csv") or {}).get("encoding")
    return str(own or (prof.document.get("source") or {}).get("encoding") or "utf-8")


def write_file(
    folder: Path,
    prof: Profile,
    table: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    cut: Mapping[str, Any] | None = None,
    header: Sequence[str] | None = None,
) -> tuple[int, int | None]:
    """Write ``table``'s file, row by row; (records written, the physical line of the ``cut`` row).

    ``cut``: a last row written short (its first :data:`TRUNCATED_FIELDS` fields, no line end), as
    a transfer cut off mid-file leaves it. ``header``: other header names (a later delivery's).
    """
    spec = prof.tables[table]
    columns = spec.column_names
    encoding = _encoding(prof, table)
    if table in BOM_FILES and encoding == "utf-8":
        encoding = "utf-8-sig"
    buffer = io.StringIO()
    out = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    records = lines = 0
    with (folder / spec.source_name).open("w", encoding=encoding, newline="") as handle:

        def emit(values: Sequence[str]) -> None:
            nonlocal lines
            out.writerow(values)
            text = buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            lines += text.count("\n")
            handle.write(text)

        emit(list(header or columns))
        for row in rows:
            if records == 0 and not set(row) <= set(columns):
                raise ValueError(f"{table}: no column {sorted(set(row) - set(columns))} in the profile")
            emit([_cell(row.get(c)) for c in columns])
            records += 1
        if cut is None:
            return records, None
        short = io.StringIO()
        csv.writer(short, quoting=csv.QUOTE_MINIMAL, lineterminator="").writerow(
            [_cell(cut.get(c)) for c in columns[:TRUNCATED_FIELDS]]
        )
        handle.write(short.getvalue())
        return records + 1, lines + 1


# --- the simulated practice, read back ---------------------------------------------------------------------
def _decode(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw  # the simulator's Latin-1 note bytes, written as a UTF-8 export shows them


def _query(conn: sqlite3.Connection, sql: str) -> Iterator[dict[str, Any]]:
    cursor = conn.execute(sql)
    names = [d[0] for d in cursor.description]
    while batch := cursor.fetchmany(5_000):
        for row in batch:
            yield dict(zip(names, row, strict=True))


def _cents(text: Any) -> int:
    """The simulator's amount text ($1,234.50, ' 80.00 ', 125) in cents."""
    cleaned = str(text or "0").replace("$", "").replace(",", "").strip() or "0"
    return round(float(cleaned) * 100)


def _money(cents: int) -> str:
    return f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _later(stamp: str, minutes: int) -> str:
    return (datetime.fromisoformat(stamp) + timedelta(minutes=minutes)).isoformat(sep=" ")


def _split_name(text: str | None) -> tuple[str | None, str | None, str | None]:
    """'Last, First Middle' as typed (capitals, spaces and all) → last, first, middle.

    >>> _split_name("SMITH, JOHN A"), _split_name("Lee")
    (('SMITH', 'JOHN', 'A'), ('Lee', None, None))
    """
    if text is None:
        return None, None, None
    family, comma, rest = text.partition(",")
    if not comma:
        return text, None, None
    given, _, middle = rest.lstrip(" ").partition(" ")
    return family, given or None, middle.lstrip(" ") or None


class _Visit(NamedTuple):
    case: int | None
    patient: int | None
    provider: int | None
    day: str | None
    """The visit's date, clean (None where the simulator planted an unreadable one)."""
    note: str
    signed: str | None


class _Practice:
    """The simulated practice's ids and the few facts several files need, read once from its database."""

    def __init__(self, conn: sqlite3.Connection, as_of: date, seed: int) -> None:
        from cutover.mapping import normalize as nz

        self.conn, self.as_of, self.rng = conn, as_of, np.random.default_rng(seed)
        self.day = as_of.isoformat()
        self.payers = {
            r[0]: (r[1], r[2]) for r in conn.execute("SELECT payer_id, payer_name, payer_type FROM payers")
        }
        self.self_pay = next(i for i, (_, kind) in self.payers.items() if kind == "Self Pay")
        self.clinic_of_patient = dict(conn.execute("SELECT pat_id, clinic_id FROM patients").fetchall())
        self.providers = {
            r[0]: _split_name(r[1])[:2] for r in conn.execute("SELECT provider_id, prov_name FROM providers")
        }
        self.primary = {
            r[0]: (r[1], r[2])
            for r in conn.execute("SELECT pat_id, cov_id, payer_id FROM coverage WHERE priority = '1'")
        }
        self.cases = {
            r[0]: (r[1], r[2], r[3])
            for r in conn.execute("SELECT case_id, pat_id, clinic_id, provider_id FROM cases")
        }
        rows = conn.execute(
            "SELECT visit_id, case_id, pat_id, provider_id, visit_date, note_type, signed_date, appt_id FROM visits"
        ).fetchall()
        days = nz.parse_date(
            pd.Series([r[4] for r in rows], dtype="string"), role="service", today=as_of
        ).values
        self.visits = {
            r[0]: _Visit(
                r[1], r[2], r[3], None if pd.isna(d) else d.isoformat(), r[5], (r[6] or "")[:10] or None
            )
            for r, d in zip(rows, days.tolist(), strict=True)
        }
        self.note_of_appt = {r[7]: r[5] for r in rows if r[7] is not None}
        # a deleted visit's charges still name its patient
        self.patient_of_visit = dict(conn.execute("SELECT visit_id, pat_id FROM charges").fetchall())
        self.patient_of_visit |= {v: visit.patient for v, visit in self.visits.items() if visit.patient}
        self.visits_of_patient: dict[int, list[tuple[str, int, int | None]]] = defaultdict(list)
        for v, visit in sorted(self.visits.items()):
            if visit.day and visit.patient:
                self.visits_of_patient[visit.patient].append((visit.day, v, visit.case))
        for listed in self.visits_of_patient.values():
            listed.sort()
        self.appt_ids = {
            a: -a if status == "SCHEDULED" or (status in ("CANCELLED", "NOSHOW") and a % 3 == 0) else a
            for a, status in conn.execute("SELECT appt_id, status FROM appointments")
        }
        self.charges_of_patient: dict[int, list[tuple[str, int, str]]] = defaultdict(list)
        for charge, pat, posted, cpt in conn.execute(
            "SELECT charge_id, pat_id, posted, cpt_code FROM charges ORDER BY posted, charge_id"
        ):
            self.charges_of_patient[pat].append((posted, charge, cpt))

    def type_code(self, payer: int | None) -> int | None:
        if payer is None or payer not in self.payers:
            return None
        name, kind = self.payers[payer]
        return PLAN_TYPE.get(name, INSURANCE_TYPE.get(kind))

    def latest_visit(self, patient: int, on: str) -> tuple[str, int, int | None] | None:
        listed = self.visits_of_patient.get(patient, [])
        at = bisect.bisect_right(listed, (on, 2**62, 2**62))
        return listed[at - 1] if at else (listed[0] if listed else None)

    def latest_charge(self, patient: int, on: str) -> tuple[str, int, str] | None:
        listed = self.charges_of_patient.get(patient, [])
        at = bisect.bisect_right(listed, (on, 2**62, "~"))
        return listed[at - 1] if at else (listed[0] if listed else None)


# --- one generator per file ---------------------------------------------------------------------------------
def _clinics(p: _Practice) -> Iterator[dict[str, Any]]:
    for r in _query(p.conn, "SELECT * FROM clinics ORDER BY clinic_id"):
        yield {
            "clinic_id": r["clinic_id"], "company_id": 1, "clinic_name": r["clinic_name"],
            "address": r["address"], "city": r["city"], "state": r["state"], "zip": r["zip"],
            "phone": r["phone"], "time_zone": r["tz"], "modified_date": p.day, "export_flag": 1,
        }  # fmt: skip


def _insurance_companies(p: _Practice) -> Iterator[dict[str, Any]]:
    for payer, (name, _) in sorted(p.payers.items()):
        yield {
            "insurance_company_id": payer, "insurance_name": name, "insurance_type_id": p.type_code(payer),
            "modified_date": p.day, "export_flag": 1,
        }  # fmt: skip


def _therapists(p: _Practice) -> Iterator[dict[str, Any]]:
    for r in _query(p.conn, "SELECT * FROM providers ORDER BY provider_id"):
        last, first, _ = _split_name(r["prov_name"])
        yield {
            "therapist_id": r["provider_id"], "clinic_id": r["clinic_id"], "last_name": last, "first_name": first,
            "credential": r["credential"], "npi": r["npi"], "active": 1 if r["active"] == "Y" else 0,
            "modified_date": p.day, "export_flag": 1,
        }  # fmt: skip


def _patients(p: _Practice) -> Iterator[dict[str, Any]]:
    for r in _query(p.conn, "SELECT * FROM patients ORDER BY pat_id"):
        last, first, middle = _split_name(r["pat_name"])
        yield {
            "patient_id": r["pat_id"], "clinic_id": r["clinic_id"], "mrn": r["mrn"], "last_name": last,
            "first_name": first, "middle_name": middle, "dob": r["dob"], "sex": r["sex"],
            # WebPT stores 999999999 for no SSN (§4.5)
            "ssn": r["ssn"] if r["ssn"] not in (None, "") else "999999999",
            "address1": r["addr1"], "address2": r["addr2"], "city": r["city"], "state": r["state"],
            "zip": r["zip"], "home_phone": r["home_phone"], "cell_phone": r["cell_phone"], "email": r["email"],
            "emergency_contact_name": r["emerg_contact"], "emergency_contact_phone": r["emerg_phone"],
            "created_date": r["created"], "modified_date": (r["modified"] or "")[:10], "export_flag": 1,
        }  # fmt: skip


def _patient_insurance(p: _Practice) -> Iterator[dict[str, Any]]:
    for r in _query(p.conn, "SELECT * FROM coverage ORDER BY cov_id"):
        yield {
            "patient_identity_id": r["cov_id"], "patient_id": r["pat_id"], "insurance_company_id": r["payer_id"],
            "insurance_type_id": p.type_code(r["payer_id"]), "policy_number": r["member_id"],
            "group_number": r["group_no"], "priority": r["priority"], "effective_date": r["eff_date"],
            "termination_date": r["term_date"], "modified_date": (r["modified"] or "")[:10], "export_flag": 1,
        }  # fmt: skip


def _cases(p: _Practice) -> Iterator[dict[str, Any]]:
    for r in _query(p.conn, "SELECT * FROM cases ORDER BY case_id"):
        closed = r["status"] != "OPEN"
        yield {
            "case_id": r["case_id"], "patient_id": r["pat_id"], "clinic_id": r["clinic_id"],
            "therapist_id": r["provider_id"], "case_status": "I" if closed else "A", "start_date": r["start_date"],
            "discharge_date": r["discharge_date"], "case_closed_date": r["discharge_date"] if closed else None,
            "reopened": 1 if r["reopened"] == "Y" else 0, "body_region": r["body_region"],
            "modified_date": (r["modified"] or "")[:10], "export_flag": 1,
        }  # fmt: skip


def _allergies(p: _Practice) -> Iterator[dict[str, Any]]:
    for r in _query(p.conn, "SELECT * FROM allergies ORDER BY allergy_id"):
        yield {
            "allergy_id": r["allergy_id"], "patient_id": r["pat_id"], "case_id": r["case_id"],
            "allergen": r["allergen"], "reaction": r["reaction"], "severity": r["severity"],
            "allergy_status": r["status"], "noted_date": r["noted"], "modified_date": (r["modified"] or "")[:10],
            "export_flag": 1,
        }  # fmt: skip


def _medications(p: _Practice) -> Iterator[dict[str, Any]]:
    for r in _query(p.conn, "SELECT * FROM medications ORDER BY med_id"):
        yield {
            "medication_id": r["med_id"], "patient_id": r["pat_id"], "case_id": r["case_id"],
            "medication_name": r["drug"], "dose": r["dose"], "medication_status": r["med_status"],
            "start_date": r["start_date"], "stop_date": r["stop_date"], "modified_date": (r["modified"] or "")[:10],
            "export_flag": 1,
        }  # fmt: skip


def _precautions(p: _Practice) -> Iterator[dict[str, Any]]:
    for r in _query(p.conn, "SELECT * FROM precautions ORDER BY prec_id"):
        yield {
            "precaution_id": r["prec_id"], "patient_id": r["pat_id"], "case_id": r["case_id"],
            "visit_id": r["visit_id"], "precaution_code": r["prec_code"], "precaution_text": r["prec_text"],
            "start_date": r["start_date"], "end_date": r["end_date"], "modified_date": (r["modified"] or "")[:10],
            "export_flag": 1,
        }  # fmt: skip


def _authorizations(p: _Practice, repeated: list[int]) -> Iterator[dict[str, Any]]:
    """Every seventh authorization repeats the previous one's authorization_id (WebPT: "may not be unique")."""
    sql = (
        "SELECT a.*, c.pat_id, c.clinic_id, v.member_id, v.group_no, y.payer_name, y.payer_type "
        "FROM authorizations a LEFT JOIN cases c ON c.case_id = a.case_id LEFT JOIN coverage v "
        "ON v.cov_id = a.cov_id LEFT JOIN payers y ON y.payer_id = v.payer_id ORDER BY a.auth_id"
    )
    previous: int | None = None
    for r in _query(p.conn, sql):
        number = r["auth_id"]
        if number % 7 == 0 and previous is not None:
            number = previous
            repeated.append(r["auth_id"])
        previous = r["auth_id"]
        yield {
            "record_id": r["auth_id"], "authorization_id": number, "case_id": r["case_id"],
            "auth_number": f"AU{100_000 + r['auth_id']}", "auth_start_date": r["start_date"],
            "auth_end_date": r["end_date"], "visit_authorized_for": r["visits_authorized"],
            "notes": 'Faxed to payer, ref "PT-eval"\nRenew after visit 6' if r["auth_id"] % 5 == 0 else None,
            "authorization_status": "A" if (r["end_date"] or "") >= p.day else "I", "patient_id": r["pat_id"],
            "clinic_id": r["clinic_id"], "modified_date": (r["modified"] or "")[:10], "ins_name": r["payer_name"],
            "policy_number": r["member_id"], "group_number": r["group_no"], "payer_type": r["payer_type"],
            "export_flag": 1,
        }  # fmt: skip


def _appointments(p: _Practice) -> Iterator[dict[str, Any]]:
    series: dict[int, int] = {}
    for r in _query(p.conn, "SELECT * FROM appointments ORDER BY appt_id"):
        appt, status, start = r["appt_id"], r["status"], r["appt_time"]
        ident = p.appt_ids[appt]
        parent = series.setdefault(r["case_id"], ident) if ident < 0 else None
        arrived = status == "ARRIVED"
        evaluation = p.note_of_appt.get(appt) == "IE"
        comment = None
        if appt % 11 == 0:
            comment = "Pt called, running late"
        elif appt % 13 == 0:
            comment = 'Asked for "same time" next week\nconfirmed by text'
        last, first = p.providers.get(r["provider_id"], (None, None))
        yield {
            "appointmnet_id": ident, "parent_appointment_id": parent if parent != ident else None,
            "start_date": start, "end_date": _later(start, 45),
            "check_in_time": _later(start, -5) if arrived else None,
            "check_out_time": _later(start, 50) if arrived else None,
            "calendar_title": f"{last}, {first}", "clinic_id": r["clinic_id"], "therapist_id": r["provider_id"],
            "appointment_type": "Initial Evaluation" if evaluation else "Follow Up", "case_id": r["case_id"],
            "patient_id": r["pat_id"], "appointment_status": "Inactive" if status in ("CANCELLED", "NOSHOW") else "Active",
            "appointment_creator_id": r["provider_id"], "apt_apttype": "IE" if evaluation else "FU",
            "visit_comment": comment,
            "reason": NO_SHOW if status == "NOSHOW" else CANCEL_REASONS[appt % 4] if status == "CANCELLED" else None,
            "time_stamp": r["modified"],
        }  # fmt: skip


def _visits(p: _Practice) -> Iterator[dict[str, Any]]:
    for r in _query(p.conn, "SELECT * FROM visits ORDER BY visit_id"):
        visit, plan, assessment = r["visit_id"], r["plan"], r["assessment"]
        if visit % 7 == 0 and isinstance(plan, str):
            plan = plan.replace(". ", ".\n", 1)  # a note typed over two lines
        if visit % 9 == 0 and isinstance(assessment, str):
            assessment += ' Pt reports "much better", sleeping well.'
        note = NOTE_TYPE.get(r["note_type"], r["note_type"])
        yield {
            "visit_id": visit, "case_id": r["case_id"], "patient_id": r["pat_id"],
            "appointment_id": p.appt_ids.get(r["appt_id"]), "therapist_id": r["provider_id"],
            "visit_date": r["visit_date"], "note_type": "DQ" if note == "DS" and visit % 3 == 0 else note,
            "subjective": r["subjective"], "objective": r["objective"], "assessment": assessment, "plan": plan,
            "note_finalized_date": (r["signed_date"] or "")[:10] or None,
            "modified_date": (r["modified"] or "")[:10], "export_flag": 1,
        }  # fmt: skip


def _charges(p: _Practice, orphans: set[int], pointers: dict[int, list[int]]) -> Iterator[dict[str, Any]]:
    """One row per CPT code of the simulator's procedure lines (a free-text line split by its codes)."""
    from cutover.mapping import normalize as nz

    (top,) = p.conn.execute("SELECT COALESCE(MAX(proc_id), 0) FROM procedures").fetchone()
    extra = int(top)
    names = ["proc_id", "visit_id", "cpt_text", "minutes", "units", "modifiers", "modified"]
    cursor = p.conn.execute(f"SELECT {', '.join(names)} FROM procedures ORDER BY proc_id")
    while chunk := cursor.fetchmany(5_000):
        frame = pd.DataFrame(chunk, columns=names, dtype=object)
        lines = nz.parse_cpt_lines(frame[["proc_id", "cpt_text", "minutes", "units", "modifiers"]])
        of = {int(r[0]): r for r in chunk}
        counted = lines["proc_id"].value_counts()
        for proc, seq, code, units, modifiers in zip(
            lines["proc_id"].tolist(), lines["seq"].tolist(), lines["cpt_code"].tolist(),
            lines["units"].tolist(), lines["modifiers"].tolist(), strict=True,
        ):  # fmt: skip
            proc = int(proc)
            _, visit_id, text, _, _, _, modified = of[proc]
            if seq == 1:
                pointer = proc
            else:
                extra += 1
                pointer = extra
            if proc in orphans or counted[proc] > 1:
                pointers[proc].append(pointer)
            visit = p.visits.get(visit_id)
            patient = visit.patient if visit else p.patient_of_visit.get(visit_id)
            case = p.cases.get(visit.case) if visit and visit.case else None
            cov = p.primary.get(patient) if patient else None
            code = None if pd.isna(code) else code
            units = None if pd.isna(units) else int(units)
            fee = V.FEES_CENTS.get(code or "")
            yield {
                "record_id": proc, "visit_date": visit.day if visit else None, "record_pointer": pointer,
                "cpt": code or text, "clinic_id": case[1] if case else None, "patient_id": patient,
                "case_id": visit.case if visit else None, "visit_id": visit_id,
                "therapist_id": visit.provider if visit else None, "insurance_id": cov[0] if cov else None,
                "insurance_type_id": p.type_code(cov[1]) if cov else None, "units": units,
                "charge_amount": _money(fee * units) if fee and units else None,
                "cpt_code_id": 1_000 + sorted(V.FEES_CENTS).index(code) if code and fee else None, "client_id": 1,
                "note_type": NOTE_TYPE.get(visit.note, visit.note) if visit else None,
                "cpt_modifier": ",".join(modifiers) if modifiers is not None and len(modifiers) else None,
                "modified_date": (modified or "")[:10], "note_finalized_date": visit.signed if visit else None,
                "PrimaryIns": cov[0] if cov else None,
            }  # fmt: skip


def _billing_row(
    p: _Practice, charge: int, patient: int, visit_id: int, cpt: str, amount: str, posted: str, stamp: str
) -> dict[str, Any]:
    visit = p.visits.get(visit_id)
    cov = p.primary.get(patient)
    payer = cov[1] if cov else None
    insured = payer is not None and payer != p.self_pay
    cents = _cents(amount)
    fee = V.FEES_CENTS.get(cpt)
    provider = visit.provider if visit else None
    dos = f"{(visit.day if visit and visit.day else posted)} 00:00:00"
    return {
        "record_id": charge, "patient_account_number": patient, "date_of_service": dos,
        "charge_date": f"{posted} {stamp[11:19] or '00:00:00'}", "charge_id": charge, "update_date": stamp,
        "cpt_code": cpt, "mod1": "GP" if fee else None, "units": cents // fee if fee and cents > 0 else 0,
        "cur_ins_code": payer if insured else 0,
        "cur_insurance_code": p.payers[payer][0] if insured and payer else "CASH PATIENT",
        "cur_insurance_class": "Primary" if insured else "Patient", "gpms_code": "WPT01",
        "charge_amount": amount, "company_id": 1, "visit_id": visit_id,
        "place_of_service_id": p.clinic_of_patient.get(patient),
        "treating_therapist_id": 9_000 + provider if provider else None, "webpt_treating_therapist_id": provider,
        "billing_therapist_id": 9_000 + provider if provider else None, "webpt_billing_therapist_id": provider,
        "total_ins_pay_amt": "0.00", "total_pat_adj_amt": "0.00", "cur_balance": _money(cents),
        "owed_amt": _money(cents), "total_pay_amt": "0.00", "total_adj_amt": "0.00", "age_start_date": dos,
        "total_ins_adj_amt": "0.00", "original_charge_id": charge, "is_active": 1,
    }  # fmt: skip


def _billing_charges(
    p: _Practice,
    chains: Mapping[int, int],
    superseded: list[int],
    overage: Mapping[int, tuple[int, int, int]],
) -> Iterator[dict[str, Any]]:
    """The simulator's charges, a chain's earlier states before its active one, then the INSOVER lines
    (``overage``: INSOVER charge id → (patient, visit, cents))."""
    (top,) = p.conn.execute("SELECT COALESCE(MAX(charge_id), 0) FROM charges").fetchone()
    next_id = int(top) + len(overage)  # the INSOVER lines first above the highest, then the states
    for r in _query(p.conn, "SELECT * FROM charges ORDER BY charge_id"):
        args = (r["pat_id"], r["visit_id"], r["cpt_code"], r["amount"], r["posted"], r["modified"])
        states = chains.get(r["charge_id"], 0)
        first = next_id + 1
        for k in range(states):  # earlier states: another amount (a corrected charge), inactive
            next_id += 1
            superseded.append(next_id)
            row = _billing_row(
                p, next_id, *args[:3], _money(_cents(r["amount"]) + 1_000 * (states - k)), *args[4:]
            )
            yield row | {
                "update_date": _later(r["modified"], -60 * 24 * (states - k)),
                "original_charge_id": first,
                "is_active": 0,
            }
        row = _billing_row(p, r["charge_id"], *args)
        yield row | ({"original_charge_id": first} if states else {})
    for charge, (patient, visit, cents) in sorted(overage.items()):
        day = p.visits[visit].day or p.day
        row = _billing_row(p, charge, patient, visit, "INSOVER", "0.00", day, f"{day} 12:00:00")
        yield row | {"mod1": None, "units": 0, "cur_balance": _money(-cents), "owed_amt": _money(-cents)}


def _payments(p: _Practice, patient_paid: bool) -> str:
    where = "=" if patient_paid else "<>"
    return f"SELECT * FROM payments WHERE payer_id {where} {p.self_pay} ORDER BY payment_id"


def _transaction(p: _Practice, r: Mapping[str, Any], flag: int = 1) -> dict[str, Any]:
    payment, patient = r["payment_id"], r["pat_id"]
    seen = p.latest_visit(patient, r["paid_on"] or p.day)
    description = "Copay"
    if payment % 4 == 0:
        description = "Copay, card on file"
    elif payment % 9 == 0:
        description = 'Pt said "will pay the rest next visit"\nreceipt e-mailed'
    return {
        "record_id": payment, "otc_id": 700_000 + payment, "case_id": seen[2] if seen else None,
        "visit_date": seen[0] if seen else None, "payment_date": r["paid_on"], "dollar_amount_paid": r["amount"],
        "patient_id": patient, "description": description, "clinic_id": p.clinic_of_patient.get(patient),
        "txn_paid": 1, "txn_status": "Paid", "txn_txntypeid": 1, "modified_date": (r["modified"] or "")[:10],
        "export_flag": flag,
    }  # fmt: skip


def _adjustment(
    p: _Practice, record: int, patient: int, charge: tuple[str, int, str] | None, paid: str, stamp: str,
    payer: int | None, kind: str, amount: str,
) -> dict[str, Any]:  # fmt: skip
    paying = kind == "PAYMENT"
    insover = kind == "INSOVER"
    name, payer_type = p.payers.get(payer or -1, (None, None))
    return {
        "record_id": record, "payment_adjustment_id": record, "charge_id": charge[1] if charge else None,
        "date_of_service": f"{charge[0]} 00:00:00" if charge else None, "updated_date": stamp,
        "cpt_code": charge[2] if charge else None,
        "payment_code": "INSOVER" if insover else "INSPAY" if paying else None,
        "payment_amount": amount if paying or insover else "0.00", "deposit_date": f"{paid} 00:00:00",
        "post_date": f"{paid} 00:00:00", "adjustment_code": None if paying or insover else "CO45",
        "adjustment_amount": "0.00" if paying or insover else amount, "gpms_code": "WPT01", "export_flag": 1,
        "company_id": 1, "payment_type": "EFT", "eob_key": 900_000 + record,
        "adj_qual": None if paying or insover else "CO", "adj_code": None if paying or insover else "45",
        "payment_code_id": 11 if paying or insover else 12, "patient_responsible_amount": "0.00",
        "place_of_service_id": p.clinic_of_patient.get(patient),
        "payment_desc": "Insurance overpayment" if insover else "Insurance payment" if paying else "Contractual adjustment",
        "payment_code_code": "INSOVER" if insover else "INSPAY" if paying else "ADJ", "created_by": 1,
        "from_payer_id": payer, "from_payer_name": name, "from_payer_desc": payer_type, "xfer_amt": "0.00",
    }  # fmt: skip


def _payment_adjustments(
    p: _Practice, overage: Mapping[int, tuple[int, int, int]]
) -> Iterator[dict[str, Any]]:
    for r in _query(p.conn, _payments(p, patient_paid=False)):
        patient, paid = r["pat_id"], r["paid_on"]
        billed = p.latest_charge(patient, paid)
        yield _adjustment(
            p, r["payment_id"], patient, billed, paid, r["modified"], r["payer_id"], r["kind"], r["amount"]
        )
    (top,) = p.conn.execute("SELECT COALESCE(MAX(payment_id), 0) FROM payments").fetchone()
    for n, (charge, (patient, visit, cents)) in enumerate(sorted(overage.items()), 1):
        day = p.visits[visit].day or p.day
        payer = p.primary.get(patient, (None, None))[1]
        line = (day, charge, "INSOVER")
        yield _adjustment(
            p, int(top) + n, patient, line, day, f"{day} 12:00:00", payer, "INSOVER", _money(cents)
        )


def _patient_credit(p: _Practice, overage: Mapping[int, tuple[int, int, int]]) -> Iterator[dict[str, Any]]:
    for n, (charge, (patient, visit, cents)) in enumerate(sorted(overage.items()), 1):
        day = p.visits[visit].day or p.day
        payer = p.primary.get(patient, (None, None))[1]
        name, payer_type = p.payers.get(payer or -1, (None, None))
        provider = p.visits[visit].provider
        last, first = p.providers.get(provider or -1, (None, None))
        clinic = p.clinic_of_patient.get(patient)
        yield {
            "record_id": n, "patient_credit_id": 500 + n, "patient_id": patient, "from_ins_code": payer,
            "payer_name": name, "deposit_date": day, "amount": _money(cents), "original_amount": _money(cents),
            "payment_type": "Check", "created_date": day, "company_id": 1, "payment_code_id": 11,
            "place_of_service_id": clinic, "place_of_service_name": p.conn.execute(
                "SELECT clinic_name FROM clinics WHERE clinic_id = ?", (clinic,)).fetchone()[0],
            "provider_id": 9_000 + provider if provider else None, "provider_first_name": first,
            "provider_last_name": last, "webpt_therapist_id": provider, "charge_id": charge,
            "time_stamp": f"{day} 12:00:00", "created_by": 1, "patient_credit_type": 2, "money_type": 1,
            "status": "Applied", "from_payer_id": payer, "from_payer_name": name, "from_payer_desc": payer_type,
            "ins_class_desc": "Primary", "payment_desc": "Insurance overpayment refunded to patient",
            "payment_code_code": "INSOVER", "export_flag": 1,
        }  # fmt: skip


# --- the first delivery ---------------------------------------------------------------------------------------
def _chosen(p: _Practice, pool: Sequence[int], k: int) -> list[int]:
    k = min(k, len(pool))
    return (
        sorted(int(i) for i in p.rng.choice(np.asarray(pool, dtype=np.int64), size=k, replace=False))
        if k
        else []
    )


def _translate(
    sim: Mapping[str, Any],
    p: _Practice,
    patient_paid: set[int],
    orphan_pointers: Mapping[int, list[int]],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """The simulator's defects as the profile's tables and ids name them; the ones left out, counted."""
    kept: list[dict[str, Any]] = []
    dropped: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d in sim["defects"]:
        table, kind, ident = d["table"], d["kind"], d["legacy_id"]
        if (
            table not in TABLE_OF
            or kind in DROPPED_KINDS
            or (table == "payments" and ident not in patient_paid)
        ):
            dropped[kind][table] += 1
            continue
        ids = [ident]
        if table == "procedures":
            ids = orphan_pointers.get(ident, [])
        elif table == "appointments":
            ids = [p.appt_ids[ident]]
        for i in ids:
            entry = {**d, "table": TABLE_OF[table], "legacy_id": i}
            if "field" in d:
                entry["field"] = COLUMN_OF.get((table, d["field"]), d["field"])
            if "parent" in d:
                entry["parent"] = TABLE_OF.get(d["parent"], d["parent"])
            kept.append(entry)
    return kept, {kind: dict(tables) for kind, tables in sorted(dropped.items())}


def _kinds(sim: Mapping[str, Any], defects: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``defect_kinds`` of the kinds planted: the simulator's, with the profile's tables and fields, and ours."""
    kinds: dict[str, dict[str, Any]] = {}
    for kind in sorted({d["kind"] for d in defects}):
        mine = [d for d in defects if d["kind"] == kind]
        tables = sorted({d["table"] for d in mine})
        fields = sorted({f"{d['table']}.{d['field']}" for d in mine if d.get("field")})
        if kind in OWN_KINDS:
            kinds[kind] = {**OWN_KINDS[kind], "tables": tables, "fields": fields, "rate": None, "unit": "row"}
        else:
            spec = dict(sim["defect_kinds"][kind])
            kinds[kind] = spec | {
                "table": TABLE_OF.get(spec["table"], tables[0]),
                "tables": tables,
                "fields": fields,
            }
    return kinds


def _own(kind: str, table: str, ids: Iterable[int | str]) -> list[dict[str, Any]]:
    return [{"kind": kind, "table": table, "legacy_id": i} for i in ids]


def _write_first(
    folder: Path, prof: Profile, conn: sqlite3.Connection, sim: Mapping[str, Any], seed: int
) -> dict[str, Any]:
    p = _Practice(conn, date.fromisoformat(sim["as_of"]), seed)
    flawed: dict[str, set[int]] = defaultdict(set)
    for d in sim["defects"]:
        flawed[d["table"]].add(d["legacy_id"])
    # RevFlow chains: a share of the clean charges spread over 2-3 states
    charges = [r[0] for r in conn.execute("SELECT charge_id FROM charges ORDER BY charge_id")]
    picked = _chosen(
        p,
        [c for c in charges if c not in flawed["charges"]],
        max(MIN_CHAINS, round(CHAIN_SHARE * len(charges))),
    )
    chains = {c: int(p.rng.integers(1, 3)) for c in picked}
    # INSOVER: an insurer's overpayment handed back to a patient (a $0 charge, a payment, a credit)
    (top_charge,) = conn.execute("SELECT COALESCE(MAX(charge_id), 0) FROM charges").fetchone()
    paid_by_payer = sorted(
        r[0] for r in conn.execute(f"SELECT DISTINCT pat_id FROM payments WHERE payer_id <> {p.self_pay}")
    )
    overage: dict[int, tuple[int, int, int]] = {}
    for patient in _chosen(p, [i for i in paid_by_payer if i not in flawed["patients"]], INSOVER_ROWS):
        visits = [
            v
            for (v,) in conn.execute(
                "SELECT visit_id FROM charges WHERE pat_id = ? ORDER BY posted DESC", (patient,)
            )
        ]
        visit = next((v for v in visits if v in p.visits), None)
        if visit is not None:
            overage[int(top_charge) + len(overage) + 1] = (patient, visit, int(p.rng.integers(5, 40)) * 100)

    files: dict[str, dict[str, Any]] = {}
    malformed: list[str] = []

    def write(table: str, rows: Iterable[Mapping[str, Any]], cut: Mapping[str, Any] | None = None) -> None:
        count, line = write_file(folder, prof, table, rows, cut=cut)
        files[prof.tables[table].source_name] = {"table": table, "rows": count}
        if line is not None:
            malformed.append(f"csv-line-{line}")

    repeated_auth: list[int] = []
    orphans = {d["legacy_id"] for d in sim["defects"] if d["table"] == "procedures" and d["kind"] == "orphan"}
    pointers: dict[int, list[int]] = defaultdict(list)
    superseded: list[int] = []
    write("clinics", _clinics(p))
    write("insurance_companies", _insurance_companies(p))
    write("therapists", _therapists(p))
    write("patients", _patients(p))
    write("patient_insurance", _patient_insurance(p))
    write("cases", _cases(p))
    write("authorizations", _authorizations(p, repeated_auth))
    write("appointments", _appointments(p))
    write("visits", _visits(p))
    write("allergies", _allergies(p))
    write("medications", _medications(p))
    write("precautions", _precautions(p))
    write("charges", _charges(p, orphans, pointers))
    write("billing_charges", _billing_charges(p, chains, superseded, overage))
    write("payment_adjustments", _payment_adjustments(p, overage))
    write("patient_credit", _patient_credit(p, overage))

    # transactions: the patient's own payments, two unpaid ones, and the last one cut short
    patient_paid = [r[0] for r in conn.execute(_payments(p, patient_paid=True).replace("*", "payment_id", 1))]
    last = patient_paid[-1]
    (top_payment,) = conn.execute("SELECT COALESCE(MAX(payment_id), 0) FROM payments").fetchone()
    unpaid = [int(top_payment) + len(overage) + n for n in range(1, UNPAID_ROWS + 1)]
    owing = _chosen(p, [i for i in p.visits_of_patient if i not in flawed["patients"]], UNPAID_ROWS)

    def transactions() -> Iterator[dict[str, Any]]:
        for r in _query(conn, _payments(p, patient_paid=True)):
            if r["payment_id"] != last:
                yield _transaction(p, r)
        for ident, patient in zip(unpaid, owing, strict=False):
            day, _, _ = p.visits_of_patient[patient][-1]
            row = {"payment_id": ident, "pat_id": patient, "paid_on": day, "amount": "30.00", "modified": day}
            yield _transaction(p, row) | {"txn_paid": 0, "txn_status": "Due", "description": "Copay due"}

    cut = next(_query(conn, f"SELECT * FROM payments WHERE payment_id = {last}"))
    write(TRUNCATED, transactions(), cut=_transaction(p, cut))

    defects, dropped = _translate(sim, p, set(patient_paid) - {last}, pointers)
    split = sorted(i for proc, listed in pointers.items() if proc not in orphans for i in listed)
    defects += _own("csv_malformed", TRUNCATED, malformed)
    defects += _own("charge_state_superseded", "billing_charges", superseded)
    defects += _own("insurance_overage", "billing_charges", sorted(overage))
    defects += _own("payment_unpaid", TRUNCATED, unpaid[: len(owing)])
    defects += _own(
        "negative_appointment_id", "appointments", sorted(i for i in p.appt_ids.values() if i < 0)
    )
    defects += _own("record_id_repeated", "charges", split)
    defects += _own("authorization_id_repeated", "authorizations", repeated_auth)
    defects.sort(key=lambda d: (d["kind"], d["table"], str(d["legacy_id"]), d.get("field") or ""))
    if {c["table"] for c in sim["canary_cells"]} - set(TABLE_OF):
        raise AssertionError("a canary sits in a table the extract does not write")
    cells = [
        c
        | {"table": TABLE_OF[c["table"]]}
        | ({"field": COLUMN_OF.get((c["table"], c["field"]), c["field"])} if "field" in c else {})
        for c in sim["canary_cells"]
    ]
    return {
        "format": FORMAT,
        "delivery": 1,
        "profile": PROFILE,
        "generator": sim["generator"],
        "seed": seed,
        "patients": sim["patients"],
        "as_of": sim["as_of"],
        "tables": {f["table"]: f["rows"] for f in files.values()},
        "files": dict(sorted(files.items())),
        "defects": defects,
        "defect_kinds": _kinds(sim, defects),
        "dropped_defects": dropped,
        "canaries": sim["canaries"],
        "canary_cells": cells,
        "clinics": sim["clinics"],
    }


def write_extract(folder: Path, *, patients: int, seed: int, manifest: Path | None = None) -> dict[str, Any]:
    """Simulate a practice of ``patients`` (``seed``) and write it into ``folder`` as WebPT's first
    delivery; its manifest goes to ``manifest`` (default :func:`manifest_path`) and is returned."""
    from cutover.simulate import simulate, write_manifest

    prof = profile()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # the files hold (simulated) PHI
    with tempfile.TemporaryDirectory(prefix="webpt-sim-") as tmp:
        db = Path(tmp) / "simulator.db"
        sim = simulate(f"sqlite:///{db}", patients=patients, seed=seed)
        conn = sqlite3.connect(db)
        conn.text_factory = _decode
        try:
            result = _write_first(folder, prof, conn, sim, seed)
        finally:
            conn.close()
    write_manifest(manifest or manifest_path(folder), result)
    log.info(
        "wrote a WebPT extract of %d patients (seed %d): %d files, %d rows, %d planted defects",
        patients,
        seed,
        len(result["files"]),
        sum(result["tables"].values()),
        len(result["defects"]),
    )
    return result


# --- the next nightly delivery -------------------------------------------------------------------------------------
def read_rows(folder: Path, prof: Profile, table: str) -> Iterator[dict[str, str]]:
    """The rows of ``table``'s file in a written delivery, by the profile's column names (a header alias
    read as its column); a line that is not a whole row (the truncated one) is skipped."""
    spec = prof.tables[table]
    encoding = _encoding(prof, table)
    aliases = (prof.document["tables"][table].get("csv") or {}).get("aliases") or {}
    named = {alias: column for column, listed in aliases.items() for alias in listed}
    with (folder / spec.source_name).open(
        encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline=""
    ) as handle:
        reader = csv.reader(handle)
        header = [named.get(h, h) for h in next(reader)]
        for values in reader:
            if len(values) == len(header):
                yield dict(zip(header, values, strict=True))


def _pick(
    folder: Path,
    prof: Profile,
    table: str,
    n: int,
    rng: np.random.Generator,
    avoid: set[str],
    keep: Any = None,
) -> list[dict[str, str]]:
    """``n`` rows of ``table`` chosen at random among those whose key is not in ``avoid`` (and ``keep`` holds)."""
    key = prof.tables[table].key
    pool = [
        r[key] for r in read_rows(folder, prof, table) if r[key] not in avoid and (keep is None or keep(r))
    ]
    chosen = set(rng.choice(np.asarray(pool, dtype=object), size=min(n, len(pool)), replace=False).tolist())
    avoid |= chosen
    return [r for r in read_rows(folder, prof, table) if r[key] in chosen]


def _top(folder: Path, prof: Profile, table: str, column: str) -> int:
    return max(
        (int(r[column]) for r in read_rows(folder, prof, table) if r[column].lstrip("-").isdigit()), default=0
    )


NEW_ALLERGENS = ("Latex (gloves)", "Sulfa", "codeine", "adhesive tape")
"""The allergy the first patient back reports at its new evaluation: the first it has not on file."""


def _next_safety_rows(
    folder: Path,
    prof: Profile,
    rng: np.random.Generator,
    avoid: dict[str, set[str]],
    flawed: set[str],
    returning: Sequence[tuple[str, int, int]],
    day: str,
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The next delivery's safety rows as (change, table, row): a medication discontinued (2: status,
    stop date); at the new evaluations (``returning``: patient, case, visit), the first patient's new
    allergy and the second's new precaution (1). A row edited is none of a defect, a duplicate's
    original or a flawed patient's, so the edit changes nothing but what it says."""

    def current(r: Mapping[str, str]) -> bool:
        started = r["start_date"]
        return (
            r["medication_status"].strip().lower() in {"active", "current", "y"}
            and not r["stop_date"]
            and len(started) == 10
            and started[4] == "-"
            and started <= day
            and r["patient_id"] not in flawed
        )

    for r in _pick(folder, prof, "medications", 1, rng, avoid["medications"], current):
        yield "edited", "medications", r | {
            "medication_status": "discontinued", "stop_date": day, "modified_date": day, "export_flag": 2,
        }  # fmt: skip
    canonical = {spelling: name for name, spellings in V.ALLERGENS.items() for spelling in spellings}
    for n, (patient, case, visit) in enumerate(returning, 1):
        if n == 1:
            held = {
                canonical.get(r["allergen"])
                for r in read_rows(folder, prof, "allergies")
                if r["patient_id"] == patient
            }
            allergen = next(a for a in NEW_ALLERGENS if canonical[a] not in held)
            yield "new", "allergies", {
                "allergy_id": _top(folder, prof, "allergies", "allergy_id") + 1, "patient_id": patient,
                "case_id": case, "allergen": allergen, "reaction": "rash", "severity": "moderate",
                "allergy_status": "active", "noted_date": day, "modified_date": day, "export_flag": 1,
            }  # fmt: skip
        elif n == 2:
            yield "new", "precautions", {
                "precaution_id": _top(folder, prof, "precautions", "precaution_id") + 1, "patient_id": patient,
                "case_id": case, "visit_id": visit, "precaution_code": "FALL",
                "precaution_text": "High fall risk - use gait belt", "start_date": day, "modified_date": day,
                "export_flag": 1,
            }  # fmt: skip


def write_next_delivery(
    folder: Path, out: Path, *, seed: int, manifest: Path | None = None, out_manifest: Path | None = None
) -> dict[str, Any]:
    """Write into ``out`` the nightly delivery after the one in ``folder`` (its manifest: ``manifest``,
    default :func:`manifest_path`); return its manifest (written to ``out_manifest``, default beside
    ``out``).

    Only changed rows, as WebPT's nightly files hold them: edited rows (export_flag 2, a newer
    modified_date: patients, authorizations, a transaction, a medication discontinued); new rows (1,
    ids above the highest: two patients back for a new case, each with its appointment, evaluation
    note, charge line, billed charge and copay, the first reporting a new allergy, the second given a
    fall-risk precaution at the evaluation); removed rows (3: transactions and an authorization; the
    appointment and both charge files carry no export_flag, so nothing of theirs can be flagged
    removed); one patient repeated unchanged with 2. Every other file is written with its header only (a delivery has every
    file). The appointments file spells its key ``appointment_id`` here, the FAQ's spelling (the
    profile's alias), as a vendor that fixed its typo would.
    """
    prof = profile()
    before = json.loads((manifest or manifest_path(folder)).read_text(encoding="utf-8"))
    as_of = date.fromisoformat(before["as_of"]) + timedelta(days=1)
    day, stamp = as_of.isoformat(), f"{as_of.isoformat()} 07:30:00"
    rng = np.random.default_rng(seed)
    avoid: dict[str, set[str]] = defaultdict(set)
    for d in before["defects"]:
        avoid[d["table"]].add(str(d["legacy_id"]))
        if d.get("of") is not None:  # a duplicate's original (a patient, a safety record) too
            avoid[d["table"]].add(str(d["of"]))
    for c in before["canary_cells"]:
        avoid[c["table"]].add(str(c["legacy_id"]))
    flawed = set(avoid["patients"])
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    changes: dict[str, dict[str, list[int]]] = {
        k: defaultdict(list) for k in ("edited", "new", "removed", "unchanged_repeat")
    }

    def add(change: str, table: str, row: dict[str, Any]) -> None:
        rows[table].append(row)
        changes[change][table].append(int(row[prof.tables[table].key]))

    for r in _pick(folder, prof, "patients", 3, rng, avoid["patients"]):
        phone = f"617-{int(rng.integers(2, 9))}34-{int(rng.integers(0, 10_000)):04d}"
        add("edited", "patients", r | {"cell_phone": phone, "modified_date": day, "export_flag": 2})
    for r in _pick(folder, prof, "patients", 1, rng, avoid["patients"]):
        add("unchanged_repeat", "patients", r | {"export_flag": 2})
    dated = lambda r: len(r["auth_end_date"]) == 10 and r["visit_authorized_for"].isdigit()  # noqa: E731
    for r in _pick(folder, prof, "authorizations", 2, rng, avoid["authorizations"], dated):
        end = (date.fromisoformat(r["auth_end_date"]) + timedelta(days=30)).isoformat()
        visits = str(int(r["visit_authorized_for"]) + 4)
        add(
            "edited",
            "authorizations",
            r
            | {"auth_end_date": end, "visit_authorized_for": visits, "modified_date": day, "export_flag": 2},
        )
    for r in _pick(folder, prof, "authorizations", 1, rng, avoid["authorizations"]):
        add("removed", "authorizations", r | {"modified_date": day, "export_flag": 3})
    for r in _pick(folder, prof, "transactions", 1, rng, avoid["transactions"]):
        add(
            "edited",
            "transactions",
            r | {"description": "Receipt re-sent", "modified_date": day, "export_flag": 2},
        )
    for r in _pick(folder, prof, "transactions", 2, rng, avoid["transactions"]):
        add("removed", "transactions", r | {"modified_date": day, "export_flag": 3})

    # new rows: a patient back for a new case: its case, appointment, evaluation note, charge line and
    # billed charge, and a copay
    ids = {
        "cases": _top(folder, prof, "cases", "case_id"),
        "appointments": _top(folder, prof, "appointments", "appointmnet_id"),
        "visits": _top(folder, prof, "visits", "visit_id"),
        "charges": _top(folder, prof, "charges", "record_pointer"),
        "record_id": _top(folder, prof, "charges", "record_id"),
        "billing_charges": max(_top(folder, prof, "billing_charges", c) for c in ("charge_id", "record_id")),
        "transactions": _top(folder, prof, "transactions", "record_id"),
    }
    staff = {r["clinic_id"]: r["therapist_id"] for r in read_rows(folder, prof, "therapists")}
    returning: list[tuple[str, int, int]] = []
    for n, person in enumerate(_pick(folder, prof, "patients", 2, rng, avoid["patients"]), 1):
        patient, clinic = person["patient_id"], person["clinic_id"]
        therapist = staff.get(clinic) or next(iter(staff.values()))
        case, appt, visit = ids["cases"] + n, ids["appointments"] + n, ids["visits"] + n
        returning.append((patient, case, visit))
        start = f"{day} 10:00:00"
        add("new", "cases", {
            "case_id": case, "patient_id": patient, "clinic_id": clinic, "therapist_id": therapist,
            "case_status": "A", "start_date": day, "reopened": 0, "body_region": "Knee", "modified_date": day,
            "export_flag": 1,
        })  # fmt: skip
        add("new", "appointments", {
            "appointmnet_id": appt, "start_date": start, "end_date": _later(start, 45),
            "check_in_time": _later(start, -5), "check_out_time": _later(start, 50), "clinic_id": clinic,
            "therapist_id": therapist, "appointment_type": "Initial Evaluation", "case_id": case,
            "patient_id": patient, "appointment_status": "Active", "appointment_creator_id": therapist,
            "apt_apttype": "IE", "time_stamp": stamp,
        })  # fmt: skip
        add("new", "visits", {
            "visit_id": visit, "case_id": case, "patient_id": patient, "appointment_id": appt,
            "therapist_id": therapist, "visit_date": day, "note_type": "IE",
            "subjective": "Pt reports R knee pain 6/10 after a fall, worse on stairs.",
            "objective": "AROM knee flexion 95 deg, strength 4-/5.", "assessment": "Good rehab potential.",
            "plan": "PT 2x/wk for 6 wks: therex, manual, HEP.", "note_finalized_date": day,
            "modified_date": day, "export_flag": 1,
        })  # fmt: skip
        add("new", "charges", {
            "record_id": ids["record_id"] + n, "visit_date": day, "record_pointer": ids["charges"] + n,
            "cpt": "97162", "clinic_id": clinic, "patient_id": patient, "case_id": case, "visit_id": visit,
            "therapist_id": therapist, "units": 1, "charge_amount": "185.00", "client_id": 1, "note_type": "IE",
            "cpt_modifier": "GP", "modified_date": day, "note_finalized_date": day,
        })  # fmt: skip
        charge = ids["billing_charges"] + n
        add("new", "billing_charges", {
            "record_id": charge, "patient_account_number": patient, "date_of_service": f"{day} 00:00:00",
            "charge_date": stamp, "charge_id": charge, "update_date": stamp, "cpt_code": "97162", "mod1": "GP",
            "units": 1, "charge_amount": "185.00", "company_id": 1, "visit_id": visit,
            "webpt_treating_therapist_id": therapist, "cur_balance": "185.00", "owed_amt": "185.00",
            "original_charge_id": charge, "is_active": 1,
        })  # fmt: skip
        add("new", "transactions", {
            "record_id": ids["transactions"] + n, "case_id": case, "visit_date": day, "payment_date": day,
            "dollar_amount_paid": "25.00", "patient_id": patient, "description": "Copay", "clinic_id": clinic,
            "txn_paid": 1, "txn_status": "Paid", "txn_txntypeid": 1, "modified_date": day, "export_flag": 1,
        })  # fmt: skip
    for change, table, row in _next_safety_rows(folder, prof, rng, avoid, flawed, returning, day):
        add(change, table, row)

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for table, spec in prof.tables.items():
        header = ["appointment_id" if c == "appointmnet_id" else c for c in spec.column_names]
        count, _ = write_file(out, prof, table, rows.get(table, []), header=header)
        files[spec.source_name] = {"table": table, "rows": count}
    result = {
        "format": FORMAT,
        "delivery": int(before["delivery"]) + 1,
        "previous": folder.name,
        "profile": PROFILE,
        "seed": seed,
        "as_of": day,
        "tables": {f["table"]: f["rows"] for f in files.values()},
        "files": dict(sorted(files.items())),
        **{change: {t: sorted(i) for t, i in listed.items()} for change, listed in changes.items()},
        "defects": [],
        "defect_kinds": {},
        "canaries": [],
        "canary_cells": [],
    }
    from cutover.simulate import write_manifest

    write_manifest(out_manifest or manifest_path(out), result)
    return result
