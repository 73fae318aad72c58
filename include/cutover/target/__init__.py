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
)
"""The ``pt`` tables in load order, parents first (unqualified names; ``authorization`` is a reserved
word, so always quote: ``psycopg.sql.Identifier("pt", name)``)."""

__all__ = ["TARGET_SCHEMA", "TARGET_TABLES", "current_version", "upgrade"]
