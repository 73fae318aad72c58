"""The new PT system's PostgreSQL schema (``pt``) and the migration ledger (``migration``).

Both are created and upgraded only by the versioned SQL files in ``migrations/`` through
:func:`upgrade`; no other code runs DDL against the target.
"""

from __future__ import annotations

from cutover.target.migrate import current_version, upgrade

TARGET_SCHEMA = "pt"
"""The schema of the new system's tables."""

TARGET_TABLES: tuple[str, ...] = (
    "clinic",
    "provider",
    "referring_physician",
    "payer",
    "patient",
    "coverage",
    "referral",
    "episode",
    "authorization",
    "plan_of_care",
    "appointment",
    "visit",
    "procedure_line",
    "diagnosis",
    "outcome_measure",
    "charge",
    "payment",
    "document",
    "allergy",
    "medication",
    "precaution",
)
"""The ``pt`` tables in load order, parents first (unqualified names; ``authorization`` is a reserved
word, so always quote: ``psycopg.sql.Identifier("pt", name)``)."""

SAFETY_TABLES: tuple[str, ...] = ("allergy", "medication", "precaution")
"""The patient-safety tables: a chart's allergies, medications and precautions. A profile may not let
a row of them be rejected on its own (only its patient's reject keeps it out), and the reconciliation
checks every patient's safety records arrived (``chart_safety``)."""

CODE_TABLES: tuple[str, ...] = ("precaution_kind",)
"""``pt`` tables of codes the migrations seed (what a code column may hold), not patient data: no
profile maps onto them and no run writes them."""

__all__ = ["CODE_TABLES", "SAFETY_TABLES", "TARGET_SCHEMA", "TARGET_TABLES", "current_version", "upgrade"]
