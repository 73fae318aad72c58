"""The target gate's rules: PT billing and chart rules as SQL over the loaded ``pt`` schema.

Each rule is a boolean SQL expression over one row ``t`` of a target table: true passes, false
fails, NULL means the rule does not apply to the row (an open episode has no discharge to
check). The gate builds one query per table, ``SELECT t.id, <rule> AS <name>, … FROM pt.<table>
t``, hands it to GX as a query asset on a PostgreSQL datasource, and expects every rule column to
be true: PostgreSQL evaluates the rules and counts the failures, and only the ids of up to ten
failing rows come back.

What the schema's CHECK constraints already enforce (formats, code sets, discharge after start,
score ranges) is repeated here only where a PT rule names it, so the evidence shows it was
verified after the load; the value of the gate is in the rules no constraint can express: across
rows and tables (visits inside their episode, a progress note at least every 10 visits, visits
against the authorization), the 8-minute rule on a visit's total timed minutes (the mapping flags
single lines only), code sets too large for a CHECK (ICD-10-CM), NPI check digits (migrated and
flagged by the mapping), and the DQD-style completeness and plausibility findings.

>>> sorted(r.name for r in RULES if r.table == "plan_of_care")[:2]
['certified_within_30_days', 'certifying_npi_luhn']
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from cutover.mapping import codes
from cutover.validation.catalog import Check, Dimension


@dataclass(frozen=True)
class TargetRule:
    table: str
    """Target table (``pt.<table>``); the rule's row is ``t``."""
    name: str
    sql: str
    """Boolean SQL over ``t``: true passes, false fails, NULL does not apply."""
    why: str
    dimension: Dimension = "plausibility"


def _in_list(values: frozenset[str] | set[str]) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


def npi_luhn(column: str) -> str:
    """SQL: true where a 10-digit NPI passes the Luhn check over ``80840`` + its digits (the prefix adds 24).

    Digits 1, 3, 5, 7, 9 are doubled (their digit sum taken); the rest are added as they are. ``mod()``
    rather than ``%``: the query passes through SQLAlchemy and psycopg, where ``%`` starts a parameter.
    """
    return (
        f"CASE WHEN {column} ~ '^[0-9]{{10}}$' THEN mod(24 + (SELECT sum(CASE WHEN mod(i, 2) = 1"
        f" THEN 2 * d - CASE WHEN d > 4 THEN 9 ELSE 0 END ELSE d END)"
        f" FROM (SELECT i, substr({column}, i, 1)::int AS d FROM generate_series(1, 10) AS i) AS n), 10) = 0 END"
    )


def _score_in_range() -> str:
    arms = " ".join(
        f"WHEN '{name}' THEN t.score BETWEEN {low:g} AND {high:g}"
        for name, (low, high) in codes.OUTCOME_RANGES.items()
    )
    return f"CASE t.instrument {arms} END"


def _icd10cm(column: str) -> str:
    """SQL: true where a dotted code is in the CMS ICD-10-CM code set; NULL where there is no code.

    A constant array: PostgreSQL (14+) hashes it once per query, where a join against ``unnest`` is
    misestimated into a nested loop.
    """
    literal = "{" + ",".join(sorted(codes.icd10cm_codes())) + "}"
    return f"CASE WHEN {column} IS NOT NULL THEN replace({column}, '.', '') = ANY('{literal}'::text[]) END"


_EVALUATION_OR_REPORT = "('initial_evaluation', 'progress_report', 're_evaluation')"
_TREATMENT_NOTES = "('initial_evaluation', 'daily_note', 'progress_report', 're_evaluation')"

RULES: tuple[TargetRule, ...] = (
    # patient
    TargetRule("patient", "birth_date_plausible", "t.birth_date BETWEEN DATE '1900-01-01' AND current_date",
               "a date of birth between 1900 and today"),
    TargetRule("patient", "has_episode", "EXISTS (SELECT 1 FROM pt.episode e WHERE e.patient_id = t.id)",
               "a migrated patient has at least one episode of care", "completeness"),
    TargetRule("patient", "has_contact", "coalesce(t.phone_home, t.phone_mobile, t.email) IS NOT NULL",
               "a patient can be reached: a phone or an e-mail", "completeness"),
    # provider, referring physician
    TargetRule("provider", "npi_luhn", npi_luhn("t.npi"),
               "a provider's NPI passes its Luhn check digit (prefix 80840)", "conformance"),
    TargetRule("referring_physician", "npi_luhn", npi_luhn("t.npi"),
               "a referring physician's NPI passes its Luhn check digit", "conformance"),
    TargetRule("referral", "diagnosis_icd10cm", _icd10cm("t.diagnosis_code"),
               "a referral diagnosis is a valid ICD-10-CM code", "conformance"),
    # episode
    TargetRule("episode", "discharge_after_start", "t.discharge_date >= t.start_date",
               "discharge is on or after the start of the episode"),
    TargetRule("episode", "start_after_birth",
               "(SELECT t.start_date >= p.birth_date FROM pt.patient p WHERE p.id = t.patient_id)",
               "an episode starts after the patient's birth"),
    TargetRule("episode", "discharged_has_date",
               "CASE WHEN t.status = 'discharged' THEN t.discharge_date IS NOT NULL END",
               "a discharged episode records its discharge date", "completeness"),
    TargetRule("episode", "opens_with_evaluation",
               "(SELECT v.note_type = 'initial_evaluation' FROM pt.visit v WHERE v.episode_id = t.id"
               " ORDER BY v.visit_date, (v.note_type = 'initial_evaluation') DESC, v.id LIMIT 1)",
               "an initial evaluation opens every episode (its first visit)", "completeness"),
    TargetRule("episode", "progress_note_every_10_visits",
               "(SELECT max(n) <= 10 FROM (SELECT count(*) AS n FROM (SELECT sum(CASE WHEN v.note_type IN "
               f"{_EVALUATION_OR_REPORT} THEN 1 ELSE 0 END) OVER (ORDER BY v.visit_date,"
               " (v.note_type = 'initial_evaluation') DESC, v.id) AS g FROM pt.visit v WHERE v.episode_id = t.id)"
               " AS s GROUP BY g) AS c)",
               "an evaluation, re-evaluation or progress report at least every 10 visits (Medicare)",
               "completeness"),
    # authorization
    TargetRule("authorization", "used_within_authorized", "t.visits_used <= t.visits_authorized",
               "visits used (as recorded) do not exceed the visits authorized"),
    TargetRule("authorization", "visits_within_authorized",
               "(SELECT count(*) FROM pt.visit v WHERE v.episode_id = t.episode_id AND v.visit_date"
               " BETWEEN coalesce(t.start_date, '-infinity'::date) AND coalesce(t.end_date, 'infinity'::date))"
               " <= t.visits_authorized",
               "the episode's visits in the authorization's dates do not exceed the visits authorized"),
    TargetRule("authorization", "dates_ordered", "t.end_date >= t.start_date",
               "an authorization ends on or after its start"),
    # plan of care
    TargetRule("plan_of_care", "certified_within_30_days",
               "(SELECT t.certified_on IS NOT NULL AND t.certified_on <= e.start_date + 30"
               " FROM pt.episode e WHERE e.id = t.episode_id)",
               "a physician certified the plan of care within 30 days of the episode's start (Medicare)",
               "completeness"),
    TargetRule("plan_of_care", "recertified_within_90_days", "t.recertified_on <= t.certified_on + 90",
               "a recertification comes at most 90 days after the certification (Medicare)"),
    TargetRule("plan_of_care", "certifying_npi_luhn", npi_luhn("t.certifying_npi"),
               "the certifying physician's NPI passes its Luhn check digit", "conformance"),
    TargetRule("plan_of_care", "has_diagnosis", "cardinality(t.diagnosis_codes) > 0",
               "a plan of care names at least one diagnosis", "completeness"),
    # visit
    TargetRule("visit", "within_episode",
               "(SELECT t.visit_date >= e.start_date AND (e.discharge_date IS NULL OR t.visit_date <= e.discharge_date)"
               " FROM pt.episode e WHERE e.id = t.episode_id)",
               "a visit falls within its episode's dates (reopened cases are flagged visit_after_discharge)"),
    TargetRule("visit", "after_birth",
               "(SELECT t.visit_date >= p.birth_date FROM pt.patient p WHERE p.id = t.patient_id)",
               "a visit is after the patient's birth"),
    TargetRule("visit", "patient_matches_episode",
               "(SELECT e.patient_id = t.patient_id FROM pt.episode e WHERE e.id = t.episode_id)",
               "a visit belongs to the same patient as its episode (after duplicate merges)", "conformance"),
    TargetRule("visit", "signed_on_or_after_visit", "t.signed_on >= t.visit_date",
               "a note is signed on or after the visit"),
    TargetRule("visit", "has_procedure",
               f"CASE WHEN t.note_type IN {_TREATMENT_NOTES} THEN EXISTS (SELECT 1 FROM pt.procedure_line pl"
               " WHERE pl.visit_id = t.id) END",
               "a treatment visit bills at least one procedure line", "completeness"),
    TargetRule("visit", "timed_units_8_minute",
               "(SELECT CASE WHEN count(*) > 0 THEN sum(pl.units) <= (sum(pl.minutes) + 7) / 15 END"
               " FROM pt.procedure_line pl WHERE pl.visit_id = t.id AND pl.minutes IS NOT NULL"
               f" AND pl.cpt_code IN ({_in_list(codes.TIMED_CODES)}))",
               "a visit's timed units do not exceed what its total timed minutes allow (Medicare 8-minute rule)"),
    # procedure line
    TargetRule("procedure_line", "untimed_one_unit",
               f"CASE WHEN t.cpt_code IN ({_in_list(codes.ONE_UNIT_CODES)}) THEN t.units <= 1 END",
               "untimed codes billed once a session (evaluations, 97010, 97150...) carry one unit"),
    TargetRule("procedure_line", "cpt_known", f"t.cpt_code IN ({_in_list(set(codes.CPT_CODES))})",
               "a procedure code is one of the PT code table's CPT/HCPCS codes", "conformance"),
    # diagnosis
    TargetRule("diagnosis", "icd10cm", _icd10cm("t.icd10_code"),
               "a diagnosis is a valid ICD-10-CM code (CMS code set)", "conformance"),
    # outcome measure
    TargetRule("outcome_measure", "score_in_range", _score_in_range(),
               "scores lie in the instrument's range: LEFS 0-80, ODI 0-100, NDI 0-50, QuickDASH 0-100, PSFS 0-10"),
    TargetRule("outcome_measure", "measured_within_episode",
               "(SELECT t.measured_on >= e.start_date AND (e.discharge_date IS NULL OR t.measured_on <= e.discharge_date)"
               " FROM pt.episode e WHERE e.id = t.episode_id)",
               "an outcome is measured within its episode"),
    # charge
    TargetRule("charge", "amount_positive", "t.amount_cents > 0", "a charge is a positive amount"),
    TargetRule("charge", "patient_matches_visit",
               "(SELECT v.patient_id = t.patient_id FROM pt.visit v WHERE v.id = t.visit_id)",
               "a charge belongs to the same patient as its visit (after duplicate merges)", "conformance"),
)  # fmt: skip
"""Every target rule, grouped by table in load order."""


def rule_column(rule: TargetRule) -> str:
    return rule.name


@cache
def table_query(table: str) -> str:
    """One query per target table: the row id and one boolean column per rule."""
    rules = [r for r in RULES if r.table == table]
    columns = ", ".join(f"({r.sql}) AS {rule_column(r)}" for r in rules)
    return f'SELECT t.id, {columns} FROM pt."{table}" AS t'


def target_checks(table: str) -> list[Check]:
    return [
        Check(
            "target",
            table,
            f"target.{table}.{r.name}",
            "ExpectColumnValuesToBeInSet",
            {"column": rule_column(r), "value_set": [True]},
            r.why,
            r.dimension,
        )
        for r in RULES
        if r.table == table
    ]
