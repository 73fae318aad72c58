"""Check a legacy profile before anything runs (placeholder: completed by the profile-check work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cutover.legacy.profile import Document


def check(doc: Document) -> list[str]:
    """Every problem of ``doc``, one line each (``file:line: field: message``); empty when it holds."""
    return []
