"""Mapping: legacy values to the target's clean, typed values (normalisers and code tables)."""

from __future__ import annotations

from cutover.mapping.normalize import (
    FLAGS,
    NULL_TOKENS,
    REASON_DISPOSITION,
    REASONS,
    Flag,
    Normalized,
    Reason,
    clean_text,
    join_person_name,
    null_tokens,
    parse_date,
    parse_timestamp,
    phone_e164,
    postal_code,
    sex_code,
    split_person_name,
    ssn,
)

__all__ = [
    "FLAGS",
    "NULL_TOKENS",
    "REASONS",
    "REASON_DISPOSITION",
    "Flag",
    "Normalized",
    "Reason",
    "clean_text",
    "join_person_name",
    "null_tokens",
    "parse_date",
    "parse_timestamp",
    "phone_e164",
    "postal_code",
    "sex_code",
    "split_person_name",
    "ssn",
]
