"""Patient-safety records (allergies, medications, precautions): reading what a person typed.

A legacy system stores these as free text ("PCN", "latex!!", "NKDA", "Pacemaker - NO E-STIM") and a
chart migrated without them can hurt a patient, so the rules here never reject: what they can read
they code, what they cannot they carry as written and flag ``safety_text_unmapped`` for a clinician
to read. Each text is read once per distinct value.

>>> read_allergen("N.K.D.A.")
Allergen(substance=None, no_known=True, coded=False)
>>> read_allergen("PCN!!")
Allergen(substance='penicillin', no_known=False, coded=True)
>>> read_allergen("strawberries")
Allergen(substance='strawberries', no_known=False, coded=False)
>>> read_precaution("3/2/2024 pt seen, reports NWB L LE x 6 wks. Cont POC.")
'weight_bearing'
>>> read_precaution("see MD note") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from cutover.mapping import normalize as nz
from cutover.mapping.engine import Batch, Rule
from cutover.mapping.rules import cell_text

UNMAPPED = "safety_text_unmapped"
"""The flag of a safety record carrying a value the rules could not code (kept as written)."""

ALLERGEN_MISSING = "allergen_missing"
"""The flag of an allergy record with no allergen text at all (kept: a person must look)."""

NO_KNOWN_ALLERGIES = frozenset(
    {"nkda", "nka", "nkfa", "noknownallergies", "noknowndrugallergies", "noallergies", "none", "noneknown"}
)
"""Spellings of "no known (drug) allergies", compared lower case with everything but letters removed
(N.K.D.A., NKDA!!, "No known allergies")."""

ALLERGENS: dict[str, str] = {
    "penicillin": r"\b(?:pcn|penicillins?|amoxicillin)\b",
    "latex": r"\blatex\b",
    "sulfonamide": r"\bsulfa",
    "codeine": r"\bcodeine\b",
    "iodine": r"\b(?:iodine|contrast)\b",
    "adhesive": r"\b(?:adhesive|tape)\b",
    "nsaid": r"\bnsaids?\b",
    "morphine": r"\b(?:morphine|ms contin)\b",
}
"""Allergens coded by name → what recognises them in the lower-cased text. A text that names two is not
coded (one record, two allergens: a person splits it)."""

PRECAUTION_KINDS: dict[str, str] = {
    "no_electrical_stimulation": r"e-?stim|electrical stim|pacemaker|\btens\b|defibrillator",
    "bleeding_risk": r"coumadin|warfarin|anticoag|bleed|eliquis|xarelto",
    "osteoporosis": r"osteopor",
    "weight_bearing": r"\b(?:nwb|ttwb|tdwb|pwb|wbat|fwb)\b|weight[- ]bearing",
    "fall_risk": r"\bfall risk\b|\bfalls\b",
    "no_resisted_exercise": r"\bno resist|\bresisted\b",
    "range_of_motion": r"\brom\b|range of motion|past neutral|\d+\s*deg",
}
"""Precaution kinds read from the text where the legacy code is empty, first match wins (a pacemaker
note that also mentions ROM is a contraindication to e-stim first). The codes are those of
``pt.precaution_kind`` (V009), ``other`` aside."""

OTHER_KIND = "other"


@dataclass(frozen=True)
class Allergen:
    substance: str | None
    no_known: bool
    coded: bool


@cache
def _allergen_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((name, re.compile(pattern)) for name, pattern in ALLERGENS.items())


def read_allergen(text: str | None) -> Allergen:
    """What an allergen text says: a coded allergen, "no known allergies", or a text to carry as written."""
    if text is None or not text.strip():
        return Allergen(None, False, False)
    if re.sub(r"[^a-z]", "", text.lower()) in NO_KNOWN_ALLERGIES:
        return Allergen(None, True, False)
    found = [name for name, pattern in _allergen_patterns() if pattern.search(text.lower())]
    if len(found) == 1:
        return Allergen(found[0], False, True)
    return Allergen(text.strip(), False, False)


@cache
def _precaution_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((kind, re.compile(pattern)) for kind, pattern in PRECAUTION_KINDS.items())


def read_precaution(text: str | None) -> str | None:
    """The precaution kind a text names, None when it names none."""
    if text is None:
        return None
    lowered = text.lower()
    return next((kind for kind, pattern in _precaution_patterns() if pattern.search(lowered)), None)


def _free_text(b: Batch, column: str) -> pd.Series:
    """A column as clean text, without turning "none" into NULL (an allergy of "None" says something)."""

    def read() -> pd.Series:
        cleaned = nz.clean_text(b[column]).values.astype("string")
        return cleaned.mask(cleaned.str.strip().eq("").fillna(True))

    return b.once(("free_text", column), read)


def _none(index: pd.Index) -> pd.Series:
    return pd.Series(pd.NA, index=index, dtype="string")


def _per_value(values: pd.Series, read: Mapping[str, object]) -> list[object]:
    return [read[v] if isinstance(v, str) else None for v in values.tolist()]


AllergenPart = Literal["substance", "no_known", "coded"]


def allergen(*, part: AllergenPart = "substance") -> Rule:
    """One part of what an allergen text says (see :func:`read_allergen`)."""
    if part not in ("substance", "no_known", "coded"):
        raise ValueError("part: substance, no_known or coded")

    def run(b: Batch, src: tuple[str, ...]) -> nz.Normalized:
        raw = _free_text(b, src[0])
        read = {t: read_allergen(t) for t in raw.dropna().unique().tolist()}
        found = _per_value(raw, read)
        none = _none(raw.index)
        if part == "substance":
            values = pd.Series(
                [a.substance if isinstance(a, Allergen) else None for a in found],
                index=raw.index,
                dtype="string",
            )
            uncoded = [isinstance(a, Allergen) and not a.coded and not a.no_known for a in found]
            flags = none.mask(pd.Series(uncoded, index=raw.index), UNMAPPED).mask(
                raw.isna(), ALLERGEN_MISSING
            )
            return nz.Normalized(values=values, reasons=none, flags=flags)
        attribute = "no_known" if part == "no_known" else "coded"
        values = pd.Series(
            [bool(getattr(a, attribute)) if isinstance(a, Allergen) else False for a in found],
            index=raw.index,
            dtype=nz.BOOL,
        )
        return nz.Normalized(values=values, reasons=none)

    known = ", ".join(sorted(ALLERGENS))
    titles = {
        "substance": f"the allergen: a known one by its name ({known}); another carried as written and flagged "
        f"{UNMAPPED}; NULL for no known allergies; none at all flagged {ALLERGEN_MISSING}",
        "no_known": "true where the text says no known allergies: NKDA, NKA, N.K.D.A., 'No known allergies', "
        "'none known' (letters compared, case and punctuation ignored)",
        "coded": "true where the allergen is a known one, named canonically",
    }
    return Rule(titles[part], run)


def precaution_kind(*, codes: Mapping[str, str], part: Literal["kind", "from_text"] = "kind") -> Rule:
    """A precaution's kind from its legacy code, else from its text; neither → ``other``, flagged."""
    table = {str(k).strip().upper(): str(v) for k, v in codes.items()}
    if part not in ("kind", "from_text"):
        raise ValueError("part: kind or from_text")

    def run(b: Batch, src: tuple[str, ...]) -> nz.Normalized:
        if len(src) != 2:
            raise ValueError(f"precaution_kind reads 2 columns (code, text), {len(src)} given")
        code = cell_text(b, src[0]).str.upper().map(table).astype("string")
        text = _free_text(b, src[1])
        read = {t: read_precaution(t) for t in text.dropna().unique().tolist()}
        from_text = pd.Series(_per_value(text, read), index=text.index, dtype="string")
        kind = code.fillna(from_text)
        unread = kind.isna()
        none = _none(text.index)
        if part == "from_text":
            return nz.Normalized(values=(code.isna() & kind.notna()).astype(nz.BOOL), reasons=none)
        return nz.Normalized(
            values=kind.fillna(OTHER_KIND),
            reasons=none,
            flags=none.mask(unread.to_numpy(dtype=bool), UNMAPPED),
        )

    shown = ", ".join(f"{k} → {v}" for k, v in sorted(table.items()))
    if part == "from_text":
        return Rule(
            "true where the kind was read from the text because the legacy code was empty or unknown", run
        )
    return Rule(
        f"the kind from the legacy code ({shown}); an empty or unknown code: read from the text "
        f"({'; '.join(f'{k}: /{p}/' for k, p in PRECAUTION_KINDS.items())}, first match); neither: "
        f"{OTHER_KIND}, flagged {UNMAPPED}",
        run,
    )


def uncoded_text(*, tables: Mapping[str, Mapping[str, str]]) -> Rule:
    """What the code columns said that their code tables do not hold, as written: ``column: value``."""
    known = {column: {str(k).strip().upper() for k in codes} for column, codes in tables.items()}

    def run(b: Batch, src: tuple[str, ...]) -> nz.Normalized:
        missing = [c for c in src if c not in known]
        if missing:
            raise ValueError(f"uncoded_text: no code table for {', '.join(missing)}")
        index = b.frame.index
        values = _none(index)
        for column in src:
            raw = cell_text(b, column)  # as the code rule of the same column read it
            unknown = raw.notna() & ~raw.str.upper().isin(known[column]).fillna(False)
            said = (column + ": " + raw).where(unknown)
            values = (values + "; " + said).where(values.notna() & said.notna(), values.fillna(said))
        return nz.Normalized(values=values, reasons=_none(index))

    return Rule(
        "the values of " + ", ".join(tables) + " that their code tables do not hold, as written "
        "('severity: see chart'), so no legacy text is lost; NULL when every one is coded",
        run,
    )


def record_sources() -> Rule:
    """The record's own legacy id as a one-element list; a merge adds its duplicates' ids."""

    def run(b: Batch, src: tuple[str, ...]) -> nz.Normalized:
        from cutover.mapping.engine import legacy_ids

        ids = legacy_ids(b[src[0]])
        own = pa.array(ids.astype(object).where(ids.notna(), None).tolist(), pa.string())
        present = own.is_valid().to_numpy(zero_copy_only=False)
        offsets = pa.array(np.concatenate([[0], np.cumsum(present)]), pa.int32())
        lists = pa.ListArray.from_arrays(offsets, own.filter(own.is_valid()))
        values = pd.Series(lists, index=ids.index, dtype=pd.ArrowDtype(pa.list_(pa.string())))
        return nz.Normalized(values=values, reasons=_none(ids.index))

    return Rule(
        "the legacy ids of the records this row stands for: its own, then those of the duplicates merged "
        "into it (entered again in a later episode of the same patient)",
        run,
    )
