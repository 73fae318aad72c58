"""The kinds of mess the simulator injects, where, at what rate, and what a correct pipeline does.

One source of truth: :data:`DefectKind` names the kinds, :data:`DEFECTS` describes each, and
:data:`RATES` is derived from it. The manifest's ``rates`` and ``defect_kinds`` come from here.

Rates are exact shares, not probabilities: for each (table, field) stratum the simulator picks
``max(1, round(rate * eligible))`` cells (at least one whenever anything is eligible, so that a small
practice still shows every kind). ``unit`` says what a rate counts: mostly the rows (or cells) of the
table, for some kinds a parent (a case for ``visit_after_discharge``).

>>> DEFECTS["duplicate_patient"].expected, RATES["duplicate_patient"]
('merge', 0.1)
>>> sorted(DEFECTS) == sorted(DEFECT_KINDS)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

DefectKind = Literal[
    "date_mixed_format",
    "date_two_digit_year",
    "date_impossible",
    "name_format",
    "phone_format",
    "zip_lost_zero",
    "sex_code",
    "null_token",
    "latin1_text",
    "control_chars",
    "cpt_free_text",
    "icd9_code",
    "icd10_no_dot",
    "visit_after_discharge",
    "note_without_appointment",
    "orphan",
    "duplicate_patient",
    "placeholder_ssn",
    "invalid_npi",
    "units_exceed_minutes",
    "money_format",
    "score_out_of_range",
    "discharge_before_start",
    "allergy_no_known",
    "precaution_in_note",
    "safety_duplicate",
    "safety_text_unmapped",
]
DEFECT_KINDS: tuple[DefectKind, ...] = get_args(DefectKind)

Expected = Literal["normalise", "reject", "merge", "flag"]
"""What a correct pipeline does with a defective row: normalise the value (the row migrates),
reject the row (with a reason in the ledger), merge it into its surviving duplicate, or flag it
(migrate as is, and report it)."""


@dataclass(frozen=True)
class DefectSpec:
    """One kind of mess."""

    table: str
    """The main table the kind is recorded on (the first of ``fields``)."""
    expected: Expected
    rate: float
    fields: tuple[str, ...]
    """``table.column`` cells (or ``table`` rows) where instances are recorded."""
    unit: str = "cell"
    """What the rate counts: ``cell`` (a non-null value of the field), ``row``, ``case``, ``visit``…"""
    note: str = ""

    def as_manifest(self) -> dict[str, object]:
        tables = list(dict.fromkeys(field.split(".")[0] for field in self.fields))
        return {
            "table": self.table,
            "tables": tables,
            "fields": list(self.fields),
            "expected": self.expected,
            "rate": self.rate,
            "unit": self.unit,
            "note": self.note,
        }


_CLINICAL_DATES = (
    "patients.dob",
    "visits.visit_date",
    "cases.start_date",
    "cases.discharge_date",
    "referrals.referral_date",
    "plans_of_care.cert_date",
    "outcomes.measured_on",
    "allergies.noted",
    "medications.start_date",
    "precautions.start_date",
)

DEFECTS: dict[DefectKind, DefectSpec] = {
    "date_mixed_format": DefectSpec(
        "patients",
        "normalise",
        0.20,
        _CLINICAL_DATES,
        note="non-ISO spellings: 03/07/2019, 3/7/2019, 07-Mar-2019, 20190307, 2019-03-07 00:00:00 "
        "(detail 'format'); other date columns are clean ISO",
    ),
    "date_two_digit_year": DefectSpec(
        "patients",
        "normalise",
        0.02,
        ("patients.dob", "visits.visit_date"),
        note="03/07/19; birth dates lie in 1930-2019, so 'a future year means the previous century' recovers them",
    ),
    "date_impossible": DefectSpec(
        "patients",
        "reject",
        0.005,
        ("patients.dob", "visits.visit_date"),
        note="02/30/2019, 0000-00-00, 2019-13-45 (detail 'format')",
    ),
    "name_format": DefectSpec(
        "patients",
        "normalise",
        0.05,
        ("patients.pat_name",),
        note="trailing spaces, all caps, lower case, extra inner spaces (detail 'format')",
    ),
    "phone_format": DefectSpec(
        "patients",
        "normalise",
        0.15,
        ("patients.home_phone", "patients.cell_phone", "patients.emerg_phone"),
        note="clean form is 617-234-5678; variants (617) 234-5678, 617.234.5678, 6172345678, "
        "+1 617 234 5678, 617-234-5678 x12 (detail 'format'); a duplicate's home phone always differs",
    ),
    "zip_lost_zero": DefectSpec(
        "patients",
        "normalise",
        0.30,
        ("patients.zip",),
        note="of the ZIP codes that start with 0 (MA, NJ, CT)",
    ),
    "sex_code": DefectSpec(
        "patients",
        "normalise",
        0.08,
        ("patients.sex",),
        note="clean form M/F; variants Male, female, 1, 2, U, '' (1 = male, 2 = female)",
    ),
    "null_token": DefectSpec(
        "patients",
        "normalise",
        0.30,
        (
            "patients.email",
            "patients.addr2",
            "patients.cell_phone",
            "patients.emerg_contact",
            "patients.emerg_phone",
        ),
        unit="missing cell",
        note="a missing optional value spelled N/A, NULL, none, '' or ' ' instead of NULL",
    ),
    "latin1_text": DefectSpec(
        "visits",
        "normalise",
        0.02,
        ("visits.subjective", "visits.objective", "visits.assessment", "visits.plan"),
        unit="visit",
        note="SQLite: raw Latin-1 bytes stored in the TEXT column; PostgreSQL/MariaDB: UTF-8 read as cp1252 (mojibake)",
    ),
    "control_chars": DefectSpec(
        "visits",
        "normalise",
        0.02,
        ("visits.subjective", "visits.objective", "visits.assessment", "visits.plan"),
        unit="visit",
        note="NUL (SQLite, MariaDB; \\x01 in PostgreSQL), \\x0b, \\x1a or a stray \\r",
    ),
    "cpt_free_text": DefectSpec(
        "procedures",
        "normalise",
        0.05,
        ("procedures.cpt_text",),
        unit="visit with 2+ timed lines",
        note="one line holding several codes (97110x2, 97140 x1 / 97110 X 2;97530x1); minutes and units "
        "are the line's totals; detail 'codes' = number of codes",
    ),
    "icd9_code": DefectSpec(
        "diagnoses",
        "normalise",
        0.05,
        ("diagnoses.icd_code", "referrals.dx_code"),
        note="an ICD-9-CM code (724.2, sometimes without the dot); map through the CMS GEMs",
    ),
    "icd10_no_dot": DefectSpec(
        "diagnoses",
        "normalise",
        0.08,
        ("diagnoses.icd_code", "referrals.dx_code"),
        note="M5450 for M54.50",
    ),
    "visit_after_discharge": DefectSpec(
        "visits",
        "flag",
        0.03,
        ("visits",),
        unit="case",
        note="visits dated after the discharge of a REOPENED case (detail 'case_id'); migrate them",
    ),
    "note_without_appointment": DefectSpec(
        "visits",
        "flag",
        0.03,
        ("visits.appt_id",),
        unit="visit",
        note="appt_id is NULL; migrate",
    ),
    "orphan": DefectSpec(
        "visits",
        "reject",
        0.005,
        ("visits.case_id", "procedures.visit_id", "charges.visit_id", "outcomes.visit_id", "coverage.pat_id"),
        unit="row",
        note="visits pointing at a missing case; children of deleted visits; coverage of a missing "
        "patient (detail 'parent'); found by scanning every relation of the schema",
    ),
    "duplicate_patient": DefectSpec(
        "patients",
        "merge",
        0.10,
        ("patients",),
        unit="original patient",
        note="recorded on the duplicate with 'of' = the original pat_id; typos, middle-name mismatch, "
        "another phone format, sometimes day/month swapped in dob; some cases point at the duplicate",
    ),
    "placeholder_ssn": DefectSpec(
        "patients",
        "normalise",
        0.05,
        ("patients.ssn",),
        unit="row",
        note="999999999, 000000000, 123456789 or blank: normalise to NULL",
    ),
    "invalid_npi": DefectSpec(
        "providers",
        "flag",
        0.03,
        ("providers.npi", "ref_physicians.npi"),
        note="check digit fails the Luhn test over 80840 + the first 9 digits; the provider or physician "
        "migrates (rejecting it would strand its visits), its NPI is reported and not trusted",
    ),
    "units_exceed_minutes": DefectSpec(
        "procedures",
        "flag",
        0.02,
        ("procedures.units",),
        unit="timed line",
        note="timed line billed with more units than its minutes allow (8-minute rule); keep the legacy number",
    ),
    "money_format": DefectSpec(
        "charges",
        "normalise",
        0.05,
        ("charges.amount", "payments.amount"),
        note="clean form 125.00; variants $1,234.50, 125, 125.5, ' 80.00 ' (detail 'format')",
    ),
    "score_out_of_range": DefectSpec(
        "outcomes",
        "reject",
        0.01,
        ("outcomes.score",),
        note="LEFS 0-80, ODI 0-100, NDI 0-50, QuickDASH 0-100, PSFS 0-10",
    ),
    "discharge_before_start": DefectSpec(
        "cases",
        "reject",
        0.005,
        ("cases.discharge_date",),
        unit="discharged case",
    ),
    "allergy_no_known": DefectSpec(
        "allergies",
        "normalise",
        1.0,
        ("allergies.allergen",),
        unit="row",
        note="every no-known-allergies record (NKDA, N.K.D.A., none known...): an allergy row that says the "
        "patient has none; reaction and severity empty, status active (a safety_duplicate copy of one is "
        "recorded as the duplicate only)",
    ),
    "precaution_in_note": DefectSpec(
        "precautions",
        "normalise",
        0.30,
        ("precautions.prec_code", "precautions.prec_text"),
        unit="row",
        note="prec_code is NULL and the precaution is only in a note's words ('03/07/2019 pt seen, reports "
        "... Cont POC.', 'Per MD: ...'); visit_id is the visit of the note; detail 'code' = the true code",
    ),
    "safety_duplicate": DefectSpec(
        "allergies",
        "merge",
        0.15,
        ("allergies", "medications", "precautions"),
        unit="row",
        note="recorded on the copy with 'of' = the original's id (same table, same patient): an earlier "
        "record carried onto a later case of the patient, an allergen respelled (PCN for Penicillin) or a "
        "drug in another letter case; a precaution's code, text and dates are the same",
    ),
    "safety_text_unmapped": DefectSpec(
        "allergies",
        "flag",
        0.05,
        (
            "allergies.allergen",
            "allergies.severity",
            "allergies.status",
            "medications.med_status",
            "precautions.prec_text",
        ),
        note="a value the mapping cannot code: an allergen outside the coded list (strawberries), a severity "
        "'see chart' or '?', a status '??', a med_status '?', a precaution text of no known kind (its "
        "prec_code NULL); migrate the text as is and report it",
    ),
}
"""Every kind, in the order of :data:`DefectKind`."""

RATES: dict[DefectKind, float] = {kind: spec.rate for kind, spec in DEFECTS.items()}
