"""Check a legacy profile before anything runs (placeholder: completed by the profile-check work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cutover.legacy.profile import Document


def check(doc: Document) -> list[str]:
    """Every problem of ``doc``, one line each (``file:line: field: message``); empty when it holds."""
    return []


def check_ref(ref: str) -> tuple[list[str], str]:
    """(problems, one-line summary) of the profile ``ref`` names (a built-in name or a path)."""
    from cutover.legacy.profile import ProfileError, from_document, load_document

    try:
        doc = load_document(ref)
    except ProfileError as exc:
        return exc.problems, ""
    problems = check(doc)
    if problems:
        return problems, ""
    profile = from_document(doc)
    fields = sum(len(spec.fields) for spec in profile.specs.values())
    return [], (
        f"ok: profile {profile.name} ({profile.sha256[:12]}): {len(profile.tables)} legacy tables, "
        f"{len(profile.specs)} mapped, {fields} target fields"
    )
