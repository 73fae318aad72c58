"""The mapping specifications: one per target table, the single source of truth for the mapping.

Each spec names its legacy table, the target columns with their types, the parent references,
and a vectorised transform built from the normalisers. The auditor's mapping document is
generated from these specs.
"""

from __future__ import annotations

import pandas as pd

from cutover.mapping import normalize as nz
from cutover.mapping.engine import Ref, TableSpec


def first_reason(*reasons: pd.Series) -> pd.Series:
    """The first reject reason per row, NA where there is none.

    >>> first_reason(pd.Series([None, "a"]), pd.Series(["b", "c"])).tolist()
    ['b', 'a']
    """
    out = pd.Series(pd.NA, index=reasons[0].index, dtype="string")
    for reason in reasons:
        out = out.fillna(reason.astype("string"))
    return out


def required(values: pd.Series, reason: pd.Series, code: str) -> pd.Series:
    """A required field's reason: its normaliser's own reason, else ``code`` where it is missing."""
    missing = values.isna()
    return reason.astype("string").mask(missing & reason.isna(), code)


def _none(index: pd.Index) -> pd.Series:
    return pd.Series(pd.NA, index=index, dtype="string")


def _text(s: pd.Series) -> pd.Series:
    return nz.clean_text(nz.null_tokens(s).values).values


def _clinics(df: pd.DataFrame) -> pd.DataFrame:
    name = _text(df["clinic_name"])
    return pd.DataFrame(
        {
            "name": name,
            "address_line": _text(df["address"]),
            "city": _text(df["city"]),
            "state": _text(df["state"]).str.upper(),
            "postal_code": nz.postal_code(df["zip"], df["state"]).values,
            "phone": nz.phone_e164(df["phone"]).values,
            "timezone": _text(df["tz"]),
            "reason": required(name, _none(df.index), "name_missing"),
        }
    )


def _providers(df: pd.DataFrame) -> pd.DataFrame:
    name = nz.split_person_name(df["prov_name"])
    npi = nz.npi_valid(df["npi"])
    return pd.DataFrame(
        {
            "family_name": name["family"],
            "given_name": name["given"],
            "credential": _text(df["credential"]).str.upper(),
            "npi": npi.values,
            "active": nz.null_tokens(df["active"]).values.str.upper().eq("Y").fillna(False),
            "reason": first_reason(
                required(name["family"], name["reason"], "name_missing"),
                required(npi.values, npi.reasons, "npi_missing"),
            ),
        }
    )


def _patients(df: pd.DataFrame) -> pd.DataFrame:
    name = nz.split_person_name(df["pat_name"])
    dob = nz.parse_date(df["dob"], role="birth")
    state = _text(df["state"]).str.upper()
    return pd.DataFrame(
        {
            "mrn": _text(df["mrn"]),
            "family_name": name["family"],
            "given_name": name["given"],
            "middle_name": name["middle"],
            "birth_date": dob.values,
            "sex": nz.sex_code(df["sex"]).values,
            "ssn": nz.ssn(df["ssn"]).values,
            "address_line1": _text(df["addr1"]),
            "address_line2": _text(df["addr2"]),
            "city": _text(df["city"]),
            "state": state,
            "postal_code": nz.postal_code(df["zip"], state).values,
            "phone_home": nz.phone_e164(df["home_phone"]).values,
            "phone_mobile": nz.phone_e164(df["cell_phone"]).values,
            "email": _text(df["email"]).str.lower(),
            "emergency_contact_name": _text(df["emerg_contact"]),
            "emergency_contact_phone": nz.phone_e164(df["emerg_phone"]).values,
            "created_at": nz.parse_timestamp(df["created"]).values,
            "updated_at": nz.parse_timestamp(df["modified"]).values,
            "reason": first_reason(
                required(name["family"], name["reason"], "name_missing"),
                required(name["given"], _none(df.index), "name_missing"),
                required(dob.values, dob.reasons, "birth_date_missing"),
            ),
        }
    )


EPISODE_STATUS = {"OPEN": "open", "DISCHARGED": "discharged", "REOPENED": "reopened"}


def _cases(df: pd.DataFrame) -> pd.DataFrame:
    start = nz.parse_date(df["start_date"], role="event")
    discharge = nz.parse_date(df["discharge_date"], role="event")
    before = (discharge.values < start.values).fillna(False).astype(bool)
    status = _text(df["status"]).str.upper().map(EPISODE_STATUS)
    return pd.DataFrame(
        {
            "start_date": start.values,
            "discharge_date": discharge.values,
            "status": status,
            "body_region": _text(df["body_region"]),
            "reopened": nz.null_tokens(df["reopened"]).values.str.upper().eq("Y").fillna(False),
            "reason": first_reason(
                required(start.values, start.reasons, "start_date_missing"),
                discharge.reasons,
                pd.Series(pd.NA, index=df.index, dtype="string").mask(before, "discharge_before_start"),
            ),
        }
    )


NOTE_TYPES = {
    "IE": "initial_evaluation",
    "DN": "daily_note",
    "PN": "progress_report",
    "RE": "re_evaluation",
    "DC": "discharge_summary",
}


def _visits(df: pd.DataFrame) -> pd.DataFrame:
    date = nz.parse_date(df["visit_date"], role="event")
    note_type = _text(df["note_type"]).str.upper().map(NOTE_TYPES)
    return pd.DataFrame(
        {
            "visit_date": date.values,
            "note_type": note_type,
            "subjective": _text(df["subjective"]),
            "objective": _text(df["objective"]),
            "assessment": _text(df["assessment"]),
            "plan": _text(df["plan"]),
            "signed_on": nz.parse_date(df["signed_date"], role="event").values,
            "reason": first_reason(
                required(date.values, date.reasons, "visit_date_missing"),
                required(note_type, _none(df.index), "note_type_unknown"),
            ),
        }
    )


SPECS: dict[str, TableSpec] = {
    spec.legacy: spec
    for spec in (
        TableSpec(
            legacy="clinics",
            target="clinic",
            key="clinic_id",
            columns=(
                ("name", "text"),
                ("address_line", "text"),
                ("city", "text"),
                ("state", "text"),
                ("postal_code", "text"),
                ("phone", "text"),
                ("timezone", "text"),
            ),
            transform=_clinics,
            doc="A clinic location of the practice group.",
        ),
        TableSpec(
            legacy="providers",
            target="provider",
            key="provider_id",
            columns=(
                ("family_name", "text"),
                ("given_name", "text"),
                ("credential", "text"),
                ("npi", "text"),
                ("active", "boolean"),
            ),
            refs=(Ref("clinic_id", "clinic_id", "clinics", required=False),),
            transform=_providers,
            doc="A treating therapist (PT, PTA, DPT) with a valid NPI.",
        ),
        TableSpec(
            legacy="patients",
            target="patient",
            key="pat_id",
            columns=(
                ("mrn", "text"),
                ("family_name", "text"),
                ("given_name", "text"),
                ("middle_name", "text"),
                ("birth_date", "date"),
                ("sex", "text"),
                ("ssn", "text"),
                ("address_line1", "text"),
                ("address_line2", "text"),
                ("city", "text"),
                ("state", "text"),
                ("postal_code", "text"),
                ("phone_home", "text"),
                ("phone_mobile", "text"),
                ("email", "text"),
                ("emergency_contact_name", "text"),
                ("emergency_contact_phone", "text"),
                ("created_at", "timestamp"),
                ("updated_at", "timestamp"),
            ),
            refs=(Ref("home_clinic_id", "clinic_id", "clinics", required=False),),
            transform=_patients,
            doc="A patient's demographics and contacts; placeholder SSNs become NULL.",
        ),
        TableSpec(
            legacy="cases",
            target="episode",
            key="case_id",
            columns=(
                ("start_date", "date"),
                ("discharge_date", "date"),
                ("status", "text"),
                ("body_region", "text"),
                ("reopened", "boolean"),
            ),
            refs=(
                Ref("patient_id", "pat_id", "patients"),
                Ref("clinic_id", "clinic_id", "clinics", required=False),
                Ref("provider_id", "provider_id", "providers", required=False),
            ),
            transform=_cases,
            doc="An episode of care; discharge must not precede the start.",
        ),
        TableSpec(
            legacy="visits",
            target="visit",
            key="visit_id",
            columns=(
                ("visit_date", "date"),
                ("note_type", "text"),
                ("subjective", "text"),
                ("objective", "text"),
                ("assessment", "text"),
                ("plan", "text"),
                ("signed_on", "date"),
            ),
            refs=(
                Ref("episode_id", "case_id", "cases"),
                Ref("patient_id", "pat_id", "patients"),
                Ref("provider_id", "provider_id", "providers", required=False),
            ),
            transform=_visits,
            doc="A visit note (SOAP) of an episode.",
        ),
    )
}
"""Specs in load order: parents before children."""
