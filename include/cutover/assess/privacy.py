"""Which legacy values an assessment may show: deny by default, allow code-like columns only.

Every value in a chart is PHI. The assessment shows *values* (top frequencies) only for columns
on :data:`CODE_COLUMNS` (or mapped by a code rule, :data:`CODE_RULES`), an allow-list of code and small-count columns whose values are drawn
from a short vocabulary (``sex``, ``state``, CPT and ICD codes, statuses…), and even there a
value seen fewer than :data:`MIN_COUNT` times is never shown. Every other text or binary column
is PHI (:func:`phi_columns`): names, dates, identifiers, addresses, phones, emails, note text,
member ids, amounts, scores and document content get patterns and counts only. A column added
to the legacy schema later is PHI until someone adds it to the allow-list.

Integer columns are the legacy system's ids: reports carry ids by design, so they are not PHI.
Their frequent values are shown only for ids of reference data (clinic, provider, payer,
referring physician): "patient 4066 has 42 visits" ties a person's id to their care, so the
frequencies of ids that lead to a patient are not listed.

>>> is_phi("patients", "pat_name"), is_phi("patients", "sex"), is_phi("patients", "pat_id")
(True, False, False)
>>> values_shown("visits", "provider_id"), values_shown("visits", "pat_id"), values_shown("visits", "note_type")
(True, False, True)
>>> "visits.subjective" in phi_columns(), "procedures.cpt_text" in phi_columns()
(True, False)
"""

from __future__ import annotations

from typing import Final

from cutover.legacy.profile import legacy_tables

MIN_COUNT: Final = 5
"""A value (or null-token spelling) seen fewer times than this is never shown (k-anonymity-like)."""

CODE_COLUMNS: Final[frozenset[str]] = frozenset(
    {
        # codes and enumerations: a short vocabulary that describes no one on its own
        "sex",
        "state",
        "tz",
        "credential",
        "active",
        "payer_type",
        "status",
        "med_status",
        "severity",
        "body_region",
        "reopened",
        "note_type",
        "measure",
        "kind",
        "doc_type",
        "mime",
        "cpt_text",
        "cpt_code",
        "modifiers",
        "icd_code",
        "dx_code",
        "dx_codes",
        # small counts and plan parameters: how many, not who
        "priority",
        "seq",
        "units",
        "minutes",
        "frequency",
        "duration_weeks",
        "visits_authorized",
        "visits_used",
    }
)
"""Column names (in any legacy table) whose frequent values may be shown. Everything else is denied."""

CODE_RULES: Final[frozenset[str]] = frozenset(
    {"code", "sex", "flag_yn", "icd", "icd_list", "measure", "timezone"}
)
"""Mapping rules that read a column as a code from a short vocabulary: a profile's column mapped by
one of them is a code column too (a column the profile maps by no such rule stays PHI)."""


def code_columns(table: str) -> frozenset[str]:
    """The columns of ``table`` whose frequent values may be shown, under the profile in use."""
    from cutover.legacy.profile import current

    mapped = (current().document["tables"].get(table, {}).get("map") or {}).get("fields") or {}
    by_rule = {
        column
        for field in mapped.values()
        if field.get("rule") in CODE_RULES
        for column in ([field["from"]] if isinstance(field["from"], str) else field["from"])[:1]
    }
    return CODE_COLUMNS | by_rule


def phi_columns() -> tuple[str, ...]:
    """``table.column`` of every legacy column whose values are never shown, under the profile in use."""
    return tuple(
        f"{table.name}.{column}"
        for table in legacy_tables().values()
        for column, kind in table.columns
        if kind != "int" and column not in code_columns(table.name)
    )


def __getattr__(name: str) -> tuple[str, ...]:
    if name == "PHI_COLUMNS":  # the profile in use's, as :func:`phi_columns`
        return phi_columns()
    raise AttributeError(name)


def is_phi(table: str, column: str) -> bool:
    """True when values of ``table.column`` must never appear in a report.

    A column the profile does not know is PHI (deny by default).
    """
    spec = legacy_tables().get(table)
    if spec is None or column not in spec.column_names:
        return True
    return spec.column_type(column) != "int" and column not in code_columns(table)


def values_shown(table: str, column: str) -> bool:
    """True when frequent values of ``table.column`` may be shown: an allowed code column, or the id
    of a reference-data row (a clinic, a provider, a payer, a referring physician)."""
    spec = legacy_tables().get(table)
    if spec is None or column not in spec.column_names:
        return False
    if spec.column_type(column) == "int":
        parent = dict(spec.parents).get(column)
        return parent is not None and legacy_tables()[parent].patient_key is None
    return not is_phi(table, column)
