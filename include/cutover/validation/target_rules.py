"""The target gate's rules: PT billing and chart rules as SQL over the loaded ``pt`` schema.

Each rule is a boolean SQL expression over one row ``t`` of a target table: true passes, false
fails, NULL means the rule does not apply to the row (an open episode has no discharge to
check). What a rule reads beyond its row comes through the :data:`JOINS` it names: the row's
parent on its primary key, or the row's children aggregated per row, joined once per table.

Two forms of the same rules, from the same SQL:

- the suite (what GX records and the data docs show): a rule on the row alone is GX's own
  expectation where one says the same (:attr:`TargetRule.native`: two dates in order, a range),
  else ``ExpectColumnValuesToBeInSet`` ``[True]`` over its column of :func:`batch_query` (the
  table's rows and those rules' verdicts: a Luhn check digit, a code set of 74,000 codes); a
  cross-table rule is GX's ``UnexpectedRowsExpectation``, whose
  query (:func:`unexpected_rows_query`) selects the ids of the rows that break it, joins and all,
  so the data docs show the rule as SQL beside its description;
- the computation (:func:`count_query`): one statement per table evaluates every rule of the
  table once, ``SELECT t.id, <rule> AS <name>, … FROM pt.<table> t <joins>`` (:func:`table_query`),
  and returns, per rule, the rows it applies to, the rows that break it and the first ten of
  those ids (by id): counts and ids only, never a value. It is what GX's evaluation of the suite
  counts (``tests/integration/test_target_sql.py`` holds the two equal on a loaded clinic). On a
  1.07M-row clinic (10,000 patients, seed 17; ``python -m bench gate_task``, three runs each,
  interleaved with the GX query assets it replaces, load average 3.5-4.3 on 2 cores) the
  computation took 1.4-1.9 s against GX's 2.5-4.4 s (1.1-1.2 s alone at load 3), and the whole
  target gate task 2.3-3.0 s against 3.7-6.6 s.

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
    """Boolean SQL over ``t`` and the joins it names: true passes, false fails, NULL does not apply."""
    why: str
    dimension: Dimension = "plausibility"
    joins: tuple[str, ...] = ()
    """Keys of :data:`JOINS` the rule reads: the row's parent (by its id) or a per-row aggregate of its
    children; a table's query joins each once, however many of its rules read it."""
    native: tuple[str, dict[str, object]] | None = None
    """GX's own expectation that says what ``sql`` says (class, kwargs), where one fits: the suite
    records the rule as it (a pair of columns ordered, a range) rather than as a computed column in
    ``[True]``. The same rows pass, fail and do not apply (``tests/integration/test_target_sql.py``)."""


def _ordered(later: str, earlier: str) -> tuple[str, dict[str, object]]:
    """GX's pair comparison ``later >= earlier``; a row missing either is not checked, as in SQL."""
    return (
        "ExpectColumnPairValuesAToBeGreaterThanB",
        {
            "column_A": later,
            "column_B": earlier,
            "or_equal": True,
            "ignore_row_if": "either_value_is_missing",
        },
    )


def _in_list(values: frozenset[str] | set[str]) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


def npi_luhn(column: str) -> str:
    """SQL: true where a 10-digit NPI passes the Luhn check over ``80840`` + its digits (the prefix adds 24).

    Digits 1, 3, 5, 7, 9 are doubled (their digit sum taken); the rest are added as they are. ``mod()``
    rather than ``%``: the query passes through SQLAlchemy and psycopg, where ``%`` starts a parameter.
    Written out digit by digit, so it is arithmetic on the row rather than a subquery per row.
    """

    def digit(i: int) -> str:
        return f"substr({column}, {i}, 1)::int"

    doubled = " + ".join(
        f"2 * {digit(i)} - CASE WHEN {digit(i)} > 4 THEN 9 ELSE 0 END" for i in (1, 3, 5, 7, 9)
    )
    plain = " + ".join(digit(i) for i in (2, 4, 6, 8, 10))
    return f"CASE WHEN {column} ~ '^[0-9]{{10}}$' THEN mod(24 + {doubled} + {plain}, 10) = 0 END"


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
_TIMED = f"minutes IS NOT NULL AND cpt_code IN ({_in_list(codes.TIMED_CODES)})"
# an episode's visits in chart order: by date, an evaluation first among a day's notes, then by id
_VISIT_ORDER = "visit_date, (note_type = 'initial_evaluation') DESC, id"

JOINS: dict[str, str] = {
    "episode": "LEFT JOIN pt.episode AS e ON e.id = t.episode_id",
    "patient": "LEFT JOIN pt.patient AS p ON p.id = t.patient_id",
    "visit": "LEFT JOIN pt.visit AS v ON v.id = t.visit_id",
    "episodes_of_patient": "LEFT JOIN (SELECT DISTINCT patient_id FROM pt.episode) AS pe ON pe.patient_id = t.id",
    "first_visit": "LEFT JOIN (SELECT DISTINCT ON (episode_id) episode_id,"
                   " note_type = 'initial_evaluation' AS is_evaluation FROM pt.visit"
                   f" ORDER BY episode_id, {_VISIT_ORDER}) AS fv ON fv.episode_id = t.id",
    # the visits since the last evaluation, re-evaluation or progress report form a run; the longest run
    "progress_runs": "LEFT JOIN (SELECT episode_id, max(n) AS longest FROM (SELECT episode_id, count(*) AS n"
                     " FROM (SELECT episode_id, sum(CASE WHEN note_type IN"
                     f" {_EVALUATION_OR_REPORT} THEN 1 ELSE 0 END) OVER (PARTITION BY episode_id ORDER BY"
                     f" {_VISIT_ORDER}) AS run FROM pt.visit) AS s GROUP BY episode_id, run) AS r"
                     " GROUP BY episode_id) AS pr ON pr.episode_id = t.id",
    "visits_in_authorization": "LEFT JOIN (SELECT a.id, count(*) AS n FROM pt.\"authorization\" AS a"
                               " JOIN pt.visit AS v ON v.episode_id = a.episode_id AND v.visit_date BETWEEN"
                               " coalesce(a.start_date, '-infinity'::date) AND coalesce(a.end_date, 'infinity'::date)"
                               " GROUP BY a.id) AS av ON av.id = t.id",
    "procedure_lines": "LEFT JOIN (SELECT visit_id, count(*) FILTER (WHERE timed) AS timed_lines, sum(units)"
                       " FILTER (WHERE timed) AS timed_units, sum(minutes) FILTER (WHERE timed) AS timed_minutes"
                       f" FROM (SELECT visit_id, units, minutes, {_TIMED} AS timed FROM pt.procedure_line) AS l"
                       " GROUP BY visit_id) AS pl ON pl.visit_id = t.id",
}  # fmt: skip
"""What rules read beyond their own row, as joins that keep one row per ``t``: a parent on its primary
key, or children aggregated per parent. A parent's value is only read where the parent row exists
(``CASE WHEN e.id IS NOT NULL``), as a scalar subquery reads NULL where it finds no row. PostgreSQL
joins and aggregates each once per table (hash joins), where a subquery per rule and row would probe
an index for every row."""

RULES: tuple[TargetRule, ...] = (
    # patient
    TargetRule("patient", "birth_date_plausible", "t.birth_date BETWEEN DATE '1900-01-01' AND current_date",
               "a date of birth between 1900 and today"),
    TargetRule("patient", "has_episode", "pe.patient_id IS NOT NULL",
               "a migrated patient has at least one episode of care", "completeness", ("episodes_of_patient",)),
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
               "discharge is on or after the start of the episode",
               native=_ordered("discharge_date", "start_date")),
    TargetRule("episode", "start_after_birth", "CASE WHEN p.id IS NOT NULL THEN t.start_date >= p.birth_date END",
               "an episode starts after the patient's birth", joins=("patient",)),
    TargetRule("episode", "discharged_has_date",
               "CASE WHEN t.status = 'discharged' THEN t.discharge_date IS NOT NULL END",
               "a discharged episode records its discharge date", "completeness"),
    TargetRule("episode", "opens_with_evaluation", "fv.is_evaluation",
               "an initial evaluation opens every episode (its first visit)", "completeness", ("first_visit",)),
    TargetRule("episode", "progress_note_every_10_visits", "pr.longest <= 10",
               "an evaluation, re-evaluation or progress report at least every 10 visits (Medicare)",
               "completeness", ("progress_runs",)),
    # authorization
    TargetRule("authorization", "used_within_authorized", "t.visits_used <= t.visits_authorized",
               "visits used (as recorded) do not exceed the visits authorized",
               native=_ordered("visits_authorized", "visits_used")),
    TargetRule("authorization", "visits_within_authorized", "coalesce(av.n, 0) <= t.visits_authorized",
               "the episode's visits in the authorization's dates do not exceed the visits authorized",
               joins=("visits_in_authorization",)),
    TargetRule("authorization", "dates_ordered", "t.end_date >= t.start_date",
               "an authorization ends on or after its start", native=_ordered("end_date", "start_date")),
    # plan of care
    TargetRule("plan_of_care", "certified_within_30_days",
               "CASE WHEN e.id IS NOT NULL THEN t.certified_on IS NOT NULL AND t.certified_on <= e.start_date + 30 END",
               "a physician certified the plan of care within 30 days of the episode's start (Medicare)",
               "completeness", ("episode",)),
    TargetRule("plan_of_care", "recertified_within_90_days", "t.recertified_on <= t.certified_on + 90",
               "a recertification comes at most 90 days after the certification (Medicare)"),
    TargetRule("plan_of_care", "certifying_npi_luhn", npi_luhn("t.certifying_npi"),
               "the certifying physician's NPI passes its Luhn check digit", "conformance"),
    TargetRule("plan_of_care", "has_diagnosis", "cardinality(t.diagnosis_codes) > 0",
               "a plan of care names at least one diagnosis", "completeness"),
    # visit
    TargetRule("visit", "within_episode",
               "CASE WHEN e.id IS NOT NULL THEN t.visit_date >= e.start_date"
               " AND (e.discharge_date IS NULL OR t.visit_date <= e.discharge_date) END",
               "a visit falls within its episode's dates (reopened cases are flagged visit_after_discharge)",
               joins=("episode",)),
    TargetRule("visit", "after_birth", "CASE WHEN p.id IS NOT NULL THEN t.visit_date >= p.birth_date END",
               "a visit is after the patient's birth", joins=("patient",)),
    TargetRule("visit", "patient_matches_episode", "CASE WHEN e.id IS NOT NULL THEN e.patient_id = t.patient_id END",
               "a visit belongs to the same patient as its episode (after duplicate merges)", "conformance",
               ("episode",)),
    TargetRule("visit", "signed_on_or_after_visit", "t.signed_on >= t.visit_date",
               "a note is signed on or after the visit"),
    TargetRule("visit", "has_procedure",
               f"CASE WHEN t.note_type IN {_TREATMENT_NOTES} THEN pl.visit_id IS NOT NULL END",
               "a treatment visit bills at least one procedure line", "completeness", ("procedure_lines",)),
    TargetRule("visit", "timed_units_8_minute",
               "CASE WHEN pl.timed_lines > 0 THEN pl.timed_units <= (pl.timed_minutes + 7) / 15 END",
               "a visit's timed units do not exceed what its total timed minutes allow (Medicare 8-minute rule)",
               joins=("procedure_lines",)),
    # procedure line
    TargetRule("procedure_line", "untimed_one_unit",
               f"CASE WHEN t.cpt_code IN ({_in_list(codes.ONE_UNIT_CODES)}) THEN t.units <= 1 END",
               "untimed codes billed once a session (evaluations, 97010, 97150...) carry one unit"),
    TargetRule("procedure_line", "cpt_known", f"t.cpt_code IN ({_in_list(set(codes.CPT_CODES))})",
               "a procedure code is one of the PT code table's CPT/HCPCS codes", "conformance",
               native=("ExpectColumnValuesToBeInSet", {"column": "cpt_code", "value_set": sorted(codes.CPT_CODES)})),
    # diagnosis
    TargetRule("diagnosis", "icd10cm", _icd10cm("t.icd10_code"),
               "a diagnosis is a valid ICD-10-CM code (CMS code set)", "conformance"),
    # outcome measure
    TargetRule("outcome_measure", "score_in_range", _score_in_range(),
               "scores lie in the instrument's range: LEFS 0-80, ODI 0-100, NDI 0-50, QuickDASH 0-100, PSFS 0-10"),
    TargetRule("outcome_measure", "measured_within_episode",
               "CASE WHEN e.id IS NOT NULL THEN t.measured_on >= e.start_date"
               " AND (e.discharge_date IS NULL OR t.measured_on <= e.discharge_date) END",
               "an outcome is measured within its episode", joins=("episode",)),
    # charge
    TargetRule("charge", "amount_positive", "t.amount_cents > 0", "a charge is a positive amount",
               native=("ExpectColumnValuesToBeBetween", {"column": "amount_cents", "min_value": 0, "strict_min": True})),
    TargetRule("charge", "patient_matches_visit", "CASE WHEN v.id IS NOT NULL THEN v.patient_id = t.patient_id END",
               "a charge belongs to the same patient as its visit (after duplicate merges)", "conformance",
               ("visit",)),
)  # fmt: skip
"""Every target rule, grouped by table in load order."""


def rule_column(rule: TargetRule) -> str:
    return rule.name


def cross_table(rule: TargetRule) -> bool:
    """Whether the rule reads beyond its own row (a parent, or the row's children)."""
    return bool(rule.joins)


def _rules_of(table: str) -> list[TargetRule]:
    return [r for r in RULES if r.table == table]


def _joins(rules: list[TargetRule]) -> str:
    return "".join(f" {JOINS[j]}" for j in dict.fromkeys(j for r in rules for j in r.joins))


def batch_query(table: str) -> str:
    """The GX batch of the table's suite: its rows, and a column per rule on the row alone.

    >>> batch_query("charge")
    'SELECT t.*, (t.amount_cents > 0) AS amount_positive FROM pt."charge" AS t'
    """
    columns = "".join(f", ({r.sql}) AS {rule_column(r)}" for r in _rules_of(table) if not cross_table(r))
    return f'SELECT t.*{columns} FROM pt."{table}" AS t'


def unexpected_rows_query(rule: TargetRule) -> str:
    """GX's ``UnexpectedRowsExpectation`` query of a cross-table rule: the ids of the batch's rows
    that break it (``{batch}`` is GX's placeholder for the batch, any other brace doubled).

    >>> print(unexpected_rows_query(next(r for r in RULES if r.name == "patient_matches_visit")))
    SELECT t.id FROM {batch} AS t LEFT JOIN pt.visit AS v ON v.id = t.visit_id WHERE (CASE WHEN v.id IS NOT NULL THEN v.patient_id = t.patient_id END) IS FALSE
    """
    sql = f"({rule.sql}) IS FALSE".replace("{", "{{").replace("}", "}}")
    return f"SELECT t.id FROM {{batch}} AS t{_joins([rule])} WHERE {sql}"


def count_query(table: str, max_ids: int = 10) -> str:
    """One statement per table: the rows of the table, then per rule (in :data:`RULES`' order) the
    rows it applies to (not NULL), the rows that break it (false) and the first ``max_ids`` of
    their ids by id, as text (NULL when none breaks it).

    The rules are evaluated once, into the statement's materialised ``q``; a rule's ids are read
    back from ``q`` only when it has failing rows (PostgreSQL runs an uncorrelated subquery when
    its value is first needed), with a top-N sort, so memory never holds every failing id.
    """
    rules = _rules_of(table)
    columns = "".join(
        f", count(q.{c}), count(*) FILTER (WHERE NOT q.{c}), CASE WHEN bool_or(NOT q.{c})"
        f" THEN ARRAY(SELECT id::text FROM q WHERE NOT q.{c} ORDER BY id LIMIT {int(max_ids)}) END"
        for c in map(rule_column, rules)
    )
    return f"WITH q AS MATERIALIZED ({table_query(table)}) SELECT count(*){columns} FROM q"


@cache
def table_query(table: str) -> str:
    """One query per target table: the row id and one boolean column per rule, one row per row of the table.

    >>> table_query("charge").split(" FROM ")[1]
    'pt."charge" AS t LEFT JOIN pt.visit AS v ON v.id = t.visit_id'
    """
    rules = _rules_of(table)
    columns = ", ".join(f"({r.sql}) AS {rule_column(r)}" for r in rules)
    return f'SELECT t.id, {columns} FROM pt."{table}" AS t{_joins(rules)}'


def _check(rule: TargetRule) -> Check:
    name = f"target.{rule.table}.{rule.name}"
    if cross_table(rule):
        return Check(
            "target",
            rule.table,
            name,
            "UnexpectedRowsExpectation",
            {"unexpected_rows_query": unexpected_rows_query(rule)},
            rule.why,
            rule.dimension,
        )
    expectation, kwargs = rule.native or (
        "ExpectColumnValuesToBeInSet",
        {"column": rule_column(rule), "value_set": [True]},
    )
    return Check("target", rule.table, name, expectation, dict(kwargs), rule.why, rule.dimension)


def target_checks(table: str) -> list[Check]:
    """The table's rules as checks, in :data:`RULES`' order (that of :func:`count_query`'s columns)."""
    return [_check(r) for r in _rules_of(table)]
