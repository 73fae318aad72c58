"""The mapping specifications: one per target table, the single source of truth for the mapping.

Each spec names its legacy table, every target field with its source column(s) and rule, the
parent references, and the row checks. The engine runs them; the auditor's mapping document is
generated from them.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cutover.mapping import normalize as nz
from cutover.mapping import rules as r
from cutover.mapping.engine import Check, Explode, Field, LoadFlag, Ref, TableSpec

CREDENTIALS = {"PT": "PT", "PTA": "PTA", "DPT": "DPT"}
PAYER_TYPES = {
    "MEDICARE": "medicare",
    "MEDICAID": "medicaid",
    "COMMERCIAL": "commercial",
    "WORKERS COMP": "workers_comp",
    "AUTO/PIP": "auto_pip",
    "TRICARE": "tricare",
    "VA": "va",
    "SELF PAY": "self_pay",
}
EPISODE_STATUS = {"OPEN": "open", "DISCHARGED": "discharged", "REOPENED": "reopened"}
APPOINTMENT_STATUS = {
    "SCHEDULED": "scheduled",
    "ARRIVED": "arrived",
    "CANCELLED": "cancelled",
    "NOSHOW": "no_show",
}
NOTE_TYPES = {
    "IE": "initial_evaluation",
    "DN": "daily_note",
    "PN": "progress_report",
    "RE": "re_evaluation",
    "DC": "discharge_summary",
}
DOC_TYPES = {"REFERRAL": "referral", "POC": "plan_of_care", "OTHER": "other"}
PAYMENT_KINDS = {"PAYMENT": "payment", "ADJUSTMENT": "adjustment"}


def _before(later: str, earlier: str) -> Callable[[pd.DataFrame], pd.Series]:
    def fires(view: pd.DataFrame) -> pd.Series:
        return (view[later] < view[earlier]).fillna(False)

    return fires


def _cpt_lines(frame: pd.DataFrame) -> pd.DataFrame:
    lines = nz.parse_cpt_lines(frame[["proc_id", "cpt_text", "minutes", "units", "modifiers"]])
    rest = frame.drop(columns=["cpt_text", "minutes", "units", "modifiers"])
    return lines.merge(rest, on="proc_id", how="left", validate="many_to_one")


def _first_entry_order(view: pd.DataFrame, key: str) -> pd.Index:
    """The view's index in legacy-id order: of two identical rows, the lower legacy id was entered first."""
    ids = pd.to_numeric(view[key], errors="coerce")
    return view.assign(_id=ids).sort_values(["_id", key], kind="stable").index


def _entered_twice(key: str, columns: tuple[str, ...]) -> Callable[[pd.DataFrame], pd.Series]:
    """Rows equal to an earlier legacy row (lower id) of the same visit in ``columns``: the later ones fire.

    A check sees one mapping batch (:data:`cutover.mapping.engine.MAP_BATCH_ROWS`, 50,000 legacy
    rows): a row re-entered so much later that it falls in another batch is not found.
    """

    def fires(view: pd.DataFrame) -> pd.Series:
        ordered = view.loc[_first_entry_order(view, key), list(columns)]
        repeated = ordered.duplicated(keep="first") & ordered["visit_id"].notna()
        return repeated.reindex(view.index).fillna(False).astype(bool)

    return fires


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def _procedure_entered_twice(view: pd.DataFrame) -> pd.Series:
    """Procedure lines of a legacy row identical to an earlier legacy row (lower ``proc_id``) of its visit.

    Two legacy rows are compared by all their lines (code, units, minutes, modifiers, in text
    order): the normalised lines, so ``97110x2`` and ``97110 X 2`` are one entry. Every line of the
    later row fires. One mapping batch at a time (50,000 legacy rows): a repeat entered so much
    later that it lands in another batch is not found.
    """
    ordered = view.loc[_first_entry_order(view.assign(_seq=pd.to_numeric(view["seq"])), "proc_id")]
    modifiers = pc.binary_join(
        pc.cast(pa.chunked_array([pa.array(ordered["modifiers"].array)]), pa.list_(pa.large_string())),
        _text("+"),
    )
    lines = pa.table(
        {
            "proc_id": pa.array(ordered["proc_id"].astype("string").array),
            "visit_id": pa.array(ordered["visit_id"].astype("string").array),
            "line": pc.binary_join_element_wise(
                *(
                    pc.fill_null(pc.cast(pa.array(ordered[c].array), pa.large_string()), "")
                    for c in ("seq", "cpt_code", "units", "minutes")
                ),
                pc.fill_null(modifiers, ""),
                _text("|"),
            ),
        }
    )
    # one text per legacy row, its lines in order (an ordered, single-threaded aggregation)
    rows = lines.group_by("proc_id", use_threads=False).aggregate([("visit_id", "first"), ("line", "list")])
    entries = pd.DataFrame(
        {
            "proc_id": rows["proc_id"].to_pandas(types_mapper=pd.ArrowDtype),
            "visit_id": rows["visit_id_first"].to_pandas(types_mapper=pd.ArrowDtype),
            "entry": pc.binary_join(rows["line_list"], _text("\n")).to_pandas(types_mapper=pd.ArrowDtype),
        }
    )
    entries = entries.loc[_first_entry_order(entries, "proc_id")]
    repeated = entries.duplicated(["visit_id", "entry"], keep="first") & entries["visit_id"].notna()
    later = pa.array(entries.loc[repeated, "proc_id"].array)
    fires = pc.is_in(pa.array(view["proc_id"].astype("string").array), value_set=later)
    return pd.Series(fires.to_numpy(zero_copy_only=False), index=view.index).fillna(False).astype(bool)


def _units_finding(code: str) -> Callable[[pd.DataFrame], pd.Series]:
    """Rows where the unit rules (8-minute rule, one-unit untimed codes) report ``code``."""

    def fires(view: pd.DataFrame) -> pd.Series:
        return nz.units_check(view[["cpt_code", "units", "minutes"]]).eq(code)

    return fires


SPECS: dict[str, TableSpec] = {
    spec.legacy: spec
    for spec in (
        TableSpec(
            "clinics",
            "clinic",
            "clinic_id",
            fields=(
                Field("name", "text", ("clinic_name",), r.text(), required=True),
                Field("address_line", "text", ("address",), r.text()),
                Field("city", "text", ("city",), r.text()),
                Field("state", "text", ("state",), r.upper()),
                Field("postal_code", "text", ("zip", "state"), r.postal(), invalid="flag"),
                Field("phone", "text", ("phone",), r.phone(), invalid="flag"),
                Field("timezone", "text", ("tz",), r.timezone(), required=True),
            ),
            doc="A clinic location of the practice group.",
        ),
        TableSpec(
            "providers",
            "provider",
            "provider_id",
            fields=(
                Field(
                    "family_name",
                    "text",
                    ("prov_name",),
                    r.name_part("family", credentials=True),
                    required=True,
                ),
                Field("given_name", "text", ("prov_name",), r.name_part("given", credentials=True)),
                Field("name_suffix", "text", ("prov_name",), r.name_part("suffix", credentials=True)),
                Field("credential", "text", ("credential",), r.code(CREDENTIALS, "credential_unknown")),
                Field("npi", "text", ("npi",), r.npi_digits(), required=True),
                Field("active", "boolean", ("active",), r.flag_yn()),
            ),
            refs=(Ref("clinic_id", "clinic_id", "clinics", required=False),),
            doc=(
                "A treating therapist (PT, PTA, DPT). An NPI failing its check digit migrates, flagged. A "
                "credential written after the name is not kept from the name: the credential column carries it."
            ),
        ),
        TableSpec(
            "ref_physicians",
            "referring_physician",
            "ref_phys_id",
            fields=(
                Field(
                    "family_name",
                    "text",
                    ("phys_name",),
                    r.name_part("family", credentials=True),
                    required=True,
                ),
                Field("given_name", "text", ("phys_name",), r.name_part("given", credentials=True)),
                Field("name_suffix", "text", ("phys_name",), r.name_part("suffix", credentials=True)),
                Field("credential", "text", ("phys_name",), r.name_part("credential", credentials=True)),
                Field("npi", "text", ("npi",), r.npi_digits()),
                Field("fax", "text", ("fax",), r.phone(), invalid="flag"),
                Field("phone", "text", ("phone",), r.phone(), invalid="flag"),
            ),
            doc="A referring physician; the credentials written after the name ('Anil Patel, MD') kept apart.",
        ),
        TableSpec(
            "payers",
            "payer",
            "payer_id",
            fields=(
                Field("name", "text", ("payer_name",), r.text(), required=True),
                Field("payer_type", "text", ("payer_type",), r.code(PAYER_TYPES, "payer_type_unknown")),
            ),
            doc="An insurer or other payer.",
        ),
        TableSpec(
            "patients",
            "patient",
            "pat_id",
            fields=(
                Field("mrn", "text", ("mrn",), r.text()),
                Field("family_name", "text", ("pat_name",), r.name_part("family"), required=True),
                Field("given_name", "text", ("pat_name",), r.name_part("given"), required=True),
                Field("middle_name", "text", ("pat_name",), r.name_part("middle")),
                Field("name_suffix", "text", ("pat_name",), r.name_part("suffix")),
                Field("birth_date", "date", ("dob", "created"), r.date("birth"), required=True),
                Field("sex", "text", ("sex",), r.sex(), invalid="flag"),
                Field("ssn", "text", ("ssn",), r.ssn(), invalid="flag"),
                Field("address_line1", "text", ("addr1",), r.text()),
                Field("address_line2", "text", ("addr2",), r.text()),
                Field("city", "text", ("city",), r.text()),
                Field("state", "text", ("state",), r.upper()),
                Field("postal_code", "text", ("zip", "state"), r.postal(), invalid="flag"),
                Field("phone_home", "text", ("home_phone",), r.phone(), invalid="flag"),
                Field("phone_mobile", "text", ("cell_phone",), r.phone(), invalid="flag"),
                Field("email", "text", ("email",), r.lower()),
                Field("emergency_contact_name", "text", ("emerg_contact",), r.text()),
                Field("emergency_contact_phone", "text", ("emerg_phone",), r.phone(), invalid="flag"),
                Field("created_at", "timestamp", ("created",), r.timestamp(), invalid="flag"),
                Field("updated_at", "timestamp", ("modified",), r.timestamp(), invalid="flag"),
            ),
            refs=(Ref("home_clinic_id", "clinic_id", "clinics", required=False),),
            merges=True,
            doc="A patient's demographics and contacts. Duplicate patients merge into one survivor.",
        ),
        TableSpec(
            "coverage",
            "coverage",
            "cov_id",
            fields=(
                Field("member_id", "text", ("member_id",), r.text()),
                Field("group_number", "text", ("group_no",), r.text()),
                Field("priority", "smallint", ("priority",), r.integer("smallint")),
                Field("effective_date", "date", ("eff_date",), r.date("event")),
                Field("termination_date", "date", ("term_date",), r.date("event")),
            ),
            refs=(Ref("patient_id", "pat_id", "patients"), Ref("payer_id", "payer_id", "payers")),
            checks=(
                Check(
                    "coverage_dates_inverted",
                    "termination before the effective date",
                    _before("termination_date", "effective_date"),
                ),
            ),
            doc="A patient's insurance coverage.",
        ),
        TableSpec(
            "referrals",
            "referral",
            "referral_id",
            fields=(
                Field("referral_date", "date", ("referral_date",), r.date("event")),
                Field("diagnosis_code", "text", ("dx_code",), r.icd(), invalid="flag"),
            ),
            refs=(
                Ref("patient_id", "pat_id", "patients"),
                Ref("referring_physician_id", "ref_phys_id", "ref_physicians", required=False),
            ),
            doc="A physician's referral to therapy.",
        ),
        TableSpec(
            "cases",
            "episode",
            "case_id",
            fields=(
                Field("start_date", "date", ("start_date",), r.date("event"), required=True),
                Field("discharge_date", "date", ("discharge_date",), r.date("event")),
                Field("status", "text", ("status",), r.code(EPISODE_STATUS, "status_unknown")),
                Field("body_region", "text", ("body_region",), r.text()),
                Field("reopened", "boolean", ("reopened",), r.flag_yn()),
            ),
            refs=(
                Ref("patient_id", "pat_id", "patients"),
                Ref("clinic_id", "clinic_id", "clinics", required=False),
                Ref("provider_id", "provider_id", "providers", required=False),
                Ref("referral_id", "referral_id", "referrals", required=False),
            ),
            checks=(
                Check(
                    "discharge_before_start",
                    "discharge before the start",
                    _before("discharge_date", "start_date"),
                ),
            ),
            doc="An episode of care; discharge must not precede the start.",
        ),
        TableSpec(
            "authorizations",
            "authorization",
            "auth_id",
            fields=(
                Field("visits_authorized", "integer", ("visits_authorized",), r.integer("integer")),
                Field("visits_used", "integer", ("visits_used",), r.integer("integer")),
                Field("start_date", "date", ("start_date",), r.date("event")),
                Field("end_date", "date", ("end_date",), r.date("event")),
            ),
            refs=(
                Ref("episode_id", "case_id", "cases"),
                Ref("coverage_id", "cov_id", "coverage", required=False),
            ),
            checks=(
                Check(
                    "authorization_exceeded",
                    "more visits used than authorized",
                    lambda v: (v["visits_used"] > v["visits_authorized"]).fillna(False),
                    action="flag",
                ),
            ),
            doc="A payer's authorization of visits for an episode.",
        ),
        TableSpec(
            "plans_of_care",
            "plan_of_care",
            "poc_id",
            fields=(
                Field("diagnosis_codes", "text[]", ("dx_codes",), r.icd_list()),
                Field("goals", "text", ("goals",), r.text()),
                Field("frequency_per_week", "smallint", ("frequency",), r.leading_integer("smallint")),
                Field("duration_weeks", "smallint", ("duration_weeks",), r.integer("smallint")),
                Field("certified_on", "date", ("cert_date",), r.date("event")),
                Field("certifying_npi", "text", ("certified_by",), r.npi_digits()),
                Field("recertified_on", "date", ("recert_date",), r.date("event")),
            ),
            refs=(Ref("episode_id", "case_id", "cases"),),
            doc="The plan of care certified by a physician.",
        ),
        TableSpec(
            "appointments",
            "appointment",
            "appt_id",
            fields=(
                Field("starts_at", "timestamp", ("appt_time",), r.timestamp(), required=True),
                Field("status", "text", ("status",), r.code(APPOINTMENT_STATUS, "status_unknown")),
            ),
            refs=(
                Ref("patient_id", "pat_id", "patients"),
                Ref("episode_id", "case_id", "cases", required=False),
                Ref("provider_id", "provider_id", "providers", required=False),
                Ref("clinic_id", "clinic_id", "clinics", required=False),
            ),
            doc="A scheduled appointment.",
        ),
        TableSpec(
            "visits",
            "visit",
            "visit_id",
            fields=(
                Field("visit_date", "date", ("visit_date",), r.date("service"), required=True),
                Field(
                    "note_type",
                    "text",
                    ("note_type",),
                    r.code(NOTE_TYPES, "note_type_unknown"),
                    required=True,
                ),
                Field("subjective", "text", ("subjective",), r.text()),
                Field("objective", "text", ("objective",), r.text()),
                Field("assessment", "text", ("assessment",), r.text()),
                Field("plan", "text", ("plan",), r.text()),
                Field("signed_on", "date", ("signed_date",), r.date("service"), invalid="flag"),
            ),
            refs=(
                Ref("episode_id", "case_id", "cases"),
                Ref("patient_id", "pat_id", "patients"),
                Ref("appointment_id", "appt_id", "appointments", required=False),
                Ref("provider_id", "provider_id", "providers", required=False),
            ),
            same_patient=("episode_id",),
            checks=(
                Check(
                    "note_without_appointment",
                    "a visit note with no appointment",
                    lambda v: v["appt_id"].isna(),
                    action="flag",
                ),
            ),
            load_flags=(
                LoadFlag(
                    "visit_after_discharge",
                    "a visit dated after its episode's discharge (a reopened case): migrated, reported",
                    "EXISTS (SELECT 1 FROM pt.episode e WHERE e.id = r.episode_id AND r.visit_date > e.discharge_date)",
                ),
                LoadFlag(
                    "visit_before_birth",
                    "a visit dated before the patient's birth",
                    "EXISTS (SELECT 1 FROM pt.patient p WHERE p.id = r.patient_id AND r.visit_date < p.birth_date)",
                ),
            ),
            doc="A visit note (SOAP) of an episode.",
        ),
        TableSpec(
            "procedures",
            "procedure_line",
            "proc_id",
            fields=(
                Field("cpt_code", "text", ("cpt_code",), r.same(), required=True),
                Field("minutes", "integer", ("minutes",), r.same()),
                Field("units", "integer", ("units",), r.same(), required=True),
                Field("modifiers", "text[]", ("modifiers",), r.same()),
            ),
            refs=(Ref("visit_id", "visit_id", "visits"),),
            explode=Explode(
                "free-text CPT line ('97110x2, 97140 x1') → one procedure line per code; the line's minutes "
                "split across codes in proportion to units, summing exactly to the legacy total",
                _cpt_lines,
                sources=("cpt_text", "minutes", "units", "modifiers"),
            ),
            checks=(
                Check(
                    "units_exceed_minutes",
                    "units above what the minutes allow under the 8-minute rule (kept as billed)",
                    _units_finding("units_exceed_minutes"),
                    action="flag",
                ),
                Check(
                    "untimed_multiple_units",
                    "an untimed code (evaluations, 97010, 97014, 97150…) billed with more than one unit (kept as billed)",
                    _units_finding("untimed_multiple_units"),
                    action="flag",
                ),
                Check(
                    "duplicate_entry",
                    "a legacy row identical to an earlier one (lower id) of the same visit: same codes, units, "
                    "minutes and modifiers (entered twice; migrated, the first one unflagged; compared within "
                    "one mapping batch of 50,000 legacy rows)",
                    _procedure_entered_twice,
                    action="flag",
                ),
            ),
            doc=(
                "A billed procedure line: CPT/HCPCS code, minutes, units, modifiers. Its date is its visit's "
                "(a future one is flagged on the visit)."
            ),
        ),
        TableSpec(
            "diagnoses",
            "diagnosis",
            "dx_id",
            fields=(
                Field("icd10_code", "text", ("icd_code",), r.icd("code"), required=True),
                Field("source_code", "text", ("icd_code",), r.icd("source_code")),
                Field("source_system", "text", ("icd_code",), r.icd("source_system")),
                Field("gem_approximate", "boolean", ("icd_code",), r.icd("gem_approximate")),
                Field("sequence", "smallint", ("seq",), r.integer("smallint")),
            ),
            refs=(Ref("episode_id", "case_id", "cases"),),
            doc="An episode's diagnosis as ICD-10-CM; ICD-9-CM codes mapped with the CMS GEMs.",
        ),
        TableSpec(
            "outcomes",
            "outcome_measure",
            "outcome_id",
            fields=(
                Field("instrument", "text", ("measure",), r.measure(), required=True),
                Field("score", "numeric", ("measure", "score"), r.score(), required=True),
                Field("measured_on", "date", ("measured_on",), r.date("service")),
            ),
            refs=(
                Ref("episode_id", "case_id", "cases"),
                Ref("visit_id", "visit_id", "visits", required=False, strict=True),
            ),
            doc="An outcome measure score (LEFS, ODI, NDI, QuickDASH, PSFS).",
        ),
        TableSpec(
            "charges",
            "charge",
            "charge_id",
            fields=(
                Field("cpt_code", "text", ("cpt_code",), r.upper()),
                Field("amount_cents", "bigint", ("amount",), r.money(), required=True),
                Field("posted_on", "date", ("posted",), r.date("service")),
            ),
            refs=(Ref("visit_id", "visit_id", "visits"), Ref("patient_id", "pat_id", "patients")),
            same_patient=("visit_id",),
            checks=(
                Check(
                    "duplicate_entry",
                    "a charge identical to an earlier one (lower id): same visit, code, amount and posted date "
                    "(entered twice; migrated, the first one unflagged; compared within one mapping batch of "
                    "50,000 legacy rows)",
                    _entered_twice("charge_id", ("visit_id", "cpt_code", "amount_cents", "posted_on")),
                    action="flag",
                ),
            ),
            doc="A charge for a visit, in cents.",
        ),
        TableSpec(
            "payments",
            "payment",
            "payment_id",
            fields=(
                Field("amount_cents", "bigint", ("amount",), r.money(), required=True),
                Field("kind", "text", ("kind",), r.code(PAYMENT_KINDS, "payment_kind_unknown")),
                Field("paid_on", "date", ("paid_on",), r.date("service")),
            ),
            refs=(
                Ref("patient_id", "pat_id", "patients"),
                Ref("payer_id", "payer_id", "payers", required=False),
            ),
            doc="A payment or adjustment, in cents.",
        ),
        TableSpec(
            "documents",
            "document",
            "doc_id",
            fields=(
                Field(
                    "doc_type", "text", ("doc_type",), r.code(DOC_TYPES, "doc_type_unknown"), invalid="flag"
                ),
                Field("filename", "text", ("filename",), r.text()),
                Field("mime_type", "text", ("mime",), r.lower()),
                Field("content", "bytea", ("content",), r.binary(), required=True),
                Field("sha256", "text", ("content",), r.sha256(), required=True),
            ),
            refs=(Ref("patient_id", "pat_id", "patients"),),
            doc="A scanned or generated document: bytes carried and verified by SHA-256.",
        ),
    )
}
"""Specs in load order: parents before children."""

NOT_CARRIED: dict[str, dict[str, str]] = {
    table: {
        "modified": "the legacy change timestamp: read by the delta sync to find rows changed after a wave's cutover"
    }
    for table in SPECS
    if table not in {"clinics", "providers", "ref_physicians", "payers", "patients"}
}
"""Legacy columns no target field carries, each with the reason (the mapping document lists them)."""
