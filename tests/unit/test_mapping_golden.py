"""Golden cases of the mapping specs: legacy row in, target row(s) out; and the whole simulated database.

``tests/fixtures/mapping/<legacy table>.yaml`` holds a list of titled cases (the conventions are in
``tests/fixtures/mapping/README.md``). Each case becomes a one-row Arrow table with the legacy
schema's Arrow types, is mapped by :func:`cutover.mapping.engine.map_batch` with a fixed ``as_of``,
and the named target fields, the reject reason and the exact set of flags are compared.

``test_whole_database_maps`` maps every table of a simulated practice and holds the engine's
outcome for each planted defect against the simulator's manifest: what should be rejected at the
mapping stage is, with its reason; what should be normalised is, and is not rejected for that
field's reason; what should be flagged is. It prints a per-kind table (ids and codes only).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from cutover.legacy.profile import load_document
from cutover.legacy.schema import LEGACY_TABLES
from cutover.legacy.source import arrow_schema, read_batches
from cutover.mapping.engine import map_batch
from cutover.mapping.specs import SPECS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mapping"
AS_OF = dt.date(2026, 11, 27)
"""The run's as-of date for every golden case: two-digit years and future dates are read against it."""
CASE_KEYS = {"title", "legacy", "expected", "reason", "flags"}


def _load() -> dict[str, list[dict[str, Any]]]:
    return {
        path.stem: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(FIXTURES.glob("*.yaml"))
    }


CASES = _load()
PARAMS = [
    pytest.param(table, case, id=f"{table}: {case['title']}")
    for table, cases in CASES.items()
    for case in cases
]


def _legacy_row(table: str, values: dict[str, Any]) -> pa.Table:
    """One legacy row with the legacy schema's Arrow types; columns not named are NULL.

    Text columns take YAML strings only (a bare ``02116`` or ``2024-01-02`` would reach the test
    as a number or a date, not as the text the legacy system holds).
    """
    legacy = LEGACY_TABLES[table]
    unknown = set(values) - set(legacy.column_names)
    assert not unknown, f"the case names columns {table} does not have: {sorted(unknown)}"
    for name, kind in legacy.columns:
        value = values.get(name)
        wanted = {"int": int, "text": str, "blob": bytes}[kind]
        assert value is None or isinstance(value, wanted), f"{table}.{name} must be {wanted.__name__} in YAML"
    row = {name: [values.get(name)] for name in legacy.column_names}
    return pa.table(row, schema=arrow_schema(legacy.columns))


def _comparable(value: Any) -> Any:
    """Mapped and expected values in one form: dates and timestamps as ISO text, lists as lists."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _flags(rows: list[dict[str, Any]]) -> set[str]:
    return {flag for row in rows for flag in (row["flags"] or "").split(",") if flag}


def test_every_table_has_its_golden_file() -> None:
    assert set(CASES) == set(SPECS), "one YAML file per legacy table, named after it"
    for table, cases in CASES.items():
        assert 5 <= len(cases) <= 25, f"{table}: {len(cases)} cases"
        titles = [case["title"] for case in cases]
        assert len(titles) == len(set(titles)), f"{table}: titles must be unique (they are the test ids)"
        for case in cases:
            assert set(case) <= CASE_KEYS, f"{table}: {case.get('title')}: unknown keys"
            assert {"title", "legacy"} <= set(case), f"{table}: {case.get('title')}: title and legacy needed"
            assert case["legacy"].get(SPECS[table].key) is not None, f"{table}: {case['title']} has no key"


@pytest.mark.parametrize(("table", "case"), PARAMS)
def test_golden_case(table: str, case: dict[str, Any]) -> None:
    spec = SPECS[table]
    mapped = map_batch(spec, _legacy_row(table, case["legacy"]), as_of=AS_OF).to_pylist()
    legacy_id = str(case["legacy"][spec.key])
    assert {row["legacy_id"] for row in mapped} == {legacy_id}
    assert {row["reason"] for row in mapped} == {case.get("reason")}, "reason"
    assert _flags(mapped) == set(case.get("flags") or []), "flags"
    expected = case.get("expected")
    if expected is None:
        return
    wanted = expected if isinstance(expected, list) else [expected]
    assert len(mapped) == len(wanted), "target rows per legacy row"
    for got, want in zip(mapped, wanted, strict=True):
        for name, value in want.items():
            assert name in got, f"{name} is not a column of the mapped {table}"
            assert _comparable(got[name]) == _comparable(value), name
    if spec.explode is not None:
        keys = [row["row_key"] for row in mapped]
        assert keys == [legacy_id] + [f"{legacy_id}#{i}" for i in range(2, len(mapped) + 1)]


# --- the whole simulated database -----------------------------------------------------------------

SEED = 4242
PATIENTS = 200
MAPPING_REJECTS = {"date_impossible", "score_out_of_range", "discharge_before_start"}
"""Reject kinds whose cause the mapping stage sees (the reason code is the kind)."""
LATER_STAGE = {
    "orphan": "load (parent resolved through the crosswalk)",
    "visit_after_discharge": "load (needs the episode's discharge)",
    "duplicate_patient": "merge (matching)",
    "safety_duplicate": "merge (a record entered again in a later episode, decided over the table)",
}
FLAG_OF_KIND = {
    "invalid_npi": "npi_invalid",
    "note_without_appointment": "note_without_appointment",
    "units_exceed_minutes": "units_exceed_minutes",
    "safety_text_unmapped": "safety_text_unmapped",
}
PRECAUTION_CODES = load_document("simulator").data["tables"]["precautions"]["map"]["fields"]["kind"]["with"][
    "codes"
]
"""The simulator's precaution codes (the true kind of a precaution buried in a note)."""
SHOWN_FLAG = {**FLAG_OF_KIND, "placeholder_ssn": "ssn_placeholder", "phone_format": "phone_extension_dropped"}
"""The flag counted in the table's ``flagged`` column for a kind (a normalised phone may drop an extension)."""
DATE_REASONS = {"date_impossible", "date_unparseable", "date_out_of_range"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")
_MOJIBAKE = re.compile(r"[ÂÃ][\x80-\xbf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ ¡-¿]")


@dataclass
class Outcome:
    """What the mapping did to one legacy row (all its output rows)."""

    reason: str | None
    flags: set[str]
    rows: list[dict[str, Any]]
    legacy: dict[str, Any]


@dataclass
class KindTally:
    expected: str
    planted: int = 0
    normalised: int = 0
    rejected: int = 0
    flagged: int = 0
    explained: int = 0
    disagree: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def _targets(table: str, column: str) -> list[str]:
    """Target fields whose value comes from a legacy column."""
    return [f.name for f in SPECS[table].fields if column in f.sources]


def _field_failures(table: str, column: str, codes: set[str]) -> set[str]:
    """Reason/flag codes that mean the column's value was not taken: the rule's codes and ``<field>_missing``."""
    return codes | {f"{f.name}_missing" for f in SPECS[table].fields if column in f.sources and f.required}


def _target_values(out: Outcome, table: str, column: str) -> list[Any]:
    return [row[name] for row in out.rows for name in _targets(table, column)]


def _judge_normalise(defect: dict[str, Any], out: Outcome, as_of: dt.date) -> str | None:
    """None when the defective value was normalised as the manifest expects, else why not (codes only)."""
    kind, table, column = defect["kind"], defect["table"], defect.get("field") or ""
    raw = out.legacy.get(column)
    values = _target_values(out, table, column)
    checks: dict[str, tuple[set[str], Callable[[], str | None]]] = {
        "date_mixed_format": (DATE_REASONS, lambda: None if all(values) else "date NULL"),
        "date_two_digit_year": (
            DATE_REASONS,
            lambda: (
                None
                if all(v is not None and v.year >= 1900 and v <= as_of for v in values)
                else "year outside 1900..as_of"
            ),
        ),
        "name_format": (
            {"name_unparseable"},
            lambda: (
                None
                if all(
                    v is not None and v == v.strip() and "  " not in v and not (len(v) > 1 and v.isupper())
                    for v in (out.rows[0]["family_name"], out.rows[0]["given_name"])
                )
                else "name not trimmed or not proper-cased"
            ),
        ),
        "phone_format": (
            {"phone_invalid"},
            lambda: None if all(re.fullmatch(r"\+1\d{10}", v or "") for v in values) else "phone not E.164",
        ),
        "zip_lost_zero": (
            {"postal_invalid"},
            lambda: (
                None
                if all(v == str(raw).strip().zfill(5) for v in values)
                else "ZIP not restored to five digits"
            ),
        ),
        "sex_code": (
            {"sex_unrecognized"},
            lambda: (
                None
                if all(
                    (v is None) == (str(raw or "").strip() == "") and v in {None, "male", "female", "unknown"}
                    for v in values
                )
                else "sex code not read"
            ),
        ),
        "null_token": (
            set(),
            lambda: None if all(v is None for v in values) else "null token kept as a value",
        ),
        "latin1_text": (set(), lambda: _clean_text_problem(values)),
        "control_chars": (set(), lambda: _clean_text_problem(values)),
        "cpt_free_text": ({"cpt_invalid"}, lambda: _cpt_problem(defect, out)),
        "icd9_code": ({"icd_invalid", "icd9_unmapped"}, lambda: _icd_problem(out, table, nine=True)),
        "icd10_no_dot": ({"icd_invalid"}, lambda: _icd_problem(out, table, nine=False)),
        "placeholder_ssn": (
            {"ssn_invalid"},
            lambda: None if all(v is None for v in values) else "placeholder SSN kept",
        ),
        "money_format": ({"money_invalid"}, lambda: _money_problem(raw, values)),
        "allergy_no_known": (
            set(),
            lambda: (
                None
                if out.rows[0]["no_known_allergies"] and out.rows[0]["substance"] is None
                else "NKDA not read"
            ),
        ),
        "precaution_in_note": (
            {"safety_text_unmapped"},
            lambda: (
                None
                if out.rows[0]["kind"] == PRECAUTION_CODES[defect["code"]] and out.rows[0]["kind_from_text"]
                else "kind not read from the note"
            ),
        ),
    }
    codes, value_check = checks[kind]
    failures = _field_failures(table, column, codes)
    if out.reason in failures:
        return f"rejected {out.reason}"
    if out.flags & failures:
        return "flagged " + ",".join(sorted(out.flags & failures))
    if out.reason is not None:
        return (
            None  # rejected for another field's reason: the caller asks whether a planted defect explains it
        )
    return value_check()


def _clean_text_problem(values: list[Any]) -> str | None:
    for v in values:
        if v is None:
            continue
        if _CONTROL.search(v):
            return "control character left"
        if _MOJIBAKE.search(v):
            return "mojibake left"
        if v != unicodedata.normalize("NFC", v):
            return "not NFC"
    return None


def _cpt_problem(defect: dict[str, Any], out: Outcome) -> str | None:
    if len(out.rows) != defect["codes"]:
        return f"{len(out.rows)} lines for {defect['codes']} codes"
    if any(row["cpt_code"] is None for row in out.rows):
        return "a line without a code"
    minutes = out.legacy.get("minutes")
    if minutes is not None and sum(row["minutes"] or 0 for row in out.rows) != int(minutes):
        return "minutes do not add up to the legacy line's"
    return None


def _icd_problem(out: Outcome, table: str, *, nine: bool) -> str | None:
    row = out.rows[0]
    code = row["icd10_code"] if table == "diagnoses" else row["diagnosis_code"]
    if code is None or not re.fullmatch(r"[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?", code):
        return "no ICD-10-CM code with its dot"
    if table == "diagnoses" and row["source_system"] != ("icd9cm" if nine else "icd10cm"):
        return f"source_system {row['source_system']}"
    return None


def _money_problem(raw: Any, values: list[Any]) -> str | None:
    # an independent reading: strip the dollar sign, separators and spaces, then exact decimal arithmetic
    text = str(raw).strip().replace("$", "").replace(",", "")
    negative = text.startswith("(") and text.endswith(")")
    cents = Decimal(text.strip("()")) * 100 * (-1 if negative else 1)
    return None if values == [int(cents)] else "cents differ from the legacy amount"


def _map_database(url: str, as_of: dt.date) -> dict[str, dict[str, Outcome]]:
    outcomes: dict[str, dict[str, Outcome]] = {}
    for name, table in LEGACY_TABLES.items():
        by_id: dict[str, Outcome] = {}
        for batch in read_batches(url, name, table.columns, table.key, batch_rows=5_000):
            legacy_rows = {str(r[table.key]): r for r in batch.to_pylist()}
            for row in map_batch(SPECS[name], batch, as_of=as_of).to_pylist():
                out = by_id.get(row["legacy_id"])
                if out is None:
                    out = by_id[row["legacy_id"]] = Outcome(None, set(), [], legacy_rows[row["legacy_id"]])
                out.reason = row["reason"]
                out.flags |= {f for f in (row["flags"] or "").split(",") if f}
                out.rows.append(row)
            assert set(legacy_rows) <= set(by_id), f"{name}: a legacy row has no mapped row"
        outcomes[name] = by_id
    return outcomes


def _tally(
    manifest: dict[str, Any], outcomes: dict[str, dict[str, Outcome]], as_of: dt.date
) -> dict[str, KindTally]:
    kinds = manifest["defect_kinds"]
    rejecting: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in manifest["defects"]:
        if d["kind"] in MAPPING_REJECTS:
            rejecting[(d["table"], str(d["legacy_id"]))].add(d["kind"])
    tallies: dict[str, KindTally] = {}
    for d in manifest["defects"]:
        kind, table, legacy_id = d["kind"], d["table"], str(d["legacy_id"])
        tally = tallies.setdefault(kind, KindTally(kinds[kind]["expected"]))
        tally.planted += 1
        out = outcomes[table].get(legacy_id)
        if out is None:
            tally.disagree["no mapped row"].append(legacy_id)
            continue
        if out.reason is not None:
            tally.rejected += 1
        elif tally.expected == "normalise":
            tally.normalised += 1
        if SHOWN_FLAG.get(kind) in out.flags:
            tally.flagged += 1
        if kind in LATER_STAGE:
            if out.reason is not None and not rejecting[(table, legacy_id)]:
                tally.disagree[f"rejected {out.reason} at mapping"].append(legacy_id)
            continue
        if tally.expected == "reject":
            if out.reason != kind:
                tally.disagree[f"reason {out.reason}"].append(legacy_id)
            continue
        other = rejecting[(table, legacy_id)] - {kind}
        if out.reason is not None and other:
            tally.explained += 1  # another planted defect rejects the row first
            continue
        if tally.expected == "flag":
            why = (
                f"rejected {out.reason}"
                if out.reason is not None
                else None
                if FLAG_OF_KIND[kind] in out.flags
                else "not flagged"
            )
        else:
            why = _judge_normalise(d, out, as_of)
            if why is None and out.reason is not None:
                why = f"rejected {out.reason}"  # no planted defect explains it
        if why is not None:
            tally.disagree[why].append(legacy_id)
    return dict(sorted(tallies.items()))


def _unplanted(
    manifest: dict[str, Any], outcomes: dict[str, dict[str, Outcome]]
) -> tuple[dict[str, list[str]], dict[tuple[str, str], int]]:
    """Rejects the manifest does not explain (``table reason`` → ids) and flags on rows without their kind."""
    planted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in manifest["defects"]:
        planted[(d["table"], str(d["legacy_id"]))].add(d["kind"])
    rejects: dict[str, list[str]] = defaultdict(list)
    flags: dict[tuple[str, str], int] = defaultdict(int)
    for table, by_id in outcomes.items():
        for legacy_id, out in by_id.items():
            kinds = planted[(table, legacy_id)]
            if out.reason is not None and out.reason not in kinds:
                rejects[f"{table} {out.reason}"].append(legacy_id)
            for flag in out.flags - {SHOWN_FLAG[k] for k in kinds if k in SHOWN_FLAG}:
                flags[(table, flag)] += 1
    return dict(rejects), dict(sorted(flags.items()))


def format_tally(
    tallies: dict[str, KindTally],
    rejects: dict[str, list[str]] | None = None,
    flags: dict[tuple[str, str], int] | None = None,
) -> str:
    """The per-kind table the test prints (defect kinds, counts, legacy ids: no values)."""
    head = (
        f"{'defect kind':<26}{'expected':<10}{'planted':>8}{'normal.':>8}{'reject.':>8}"
        f"{'flagged':>8}{'explained':>10}{'disagree':>9}"
    )
    lines = [head, "-" * len(head)]
    for kind, t in tallies.items():
        n = sum(len(ids) for ids in t.disagree.values())
        lines.append(
            f"{kind:<26}{t.expected:<10}{t.planted:>8}{t.normalised:>8}{t.rejected:>8}"
            f"{t.flagged:>8}{t.explained:>10}{n:>9}"
        )
        if kind in LATER_STAGE:
            lines.append(f"    judged at the {LATER_STAGE[kind]} stage, not by mapping")
        for why, ids in t.disagree.items():
            lines.append(f"    {why}: {len(ids)} (legacy ids {_ids(ids)})")
    lines.append("rejects no planted defect explains:" + ("" if rejects else " none"))
    for what, ids in (rejects or {}).items():
        lines.append(f"    {what}: {len(ids)} (legacy ids {_ids(ids)})")
    lines.append("flags on rows without a planted defect of their kind:" + ("" if flags else " none"))
    for (table, flag), count in (flags or {}).items():
        lines.append(f"    {table} {flag}: {count}")
    return "\n".join(lines)


def _ids(ids: list[str], shown: int = 10) -> str:
    return ", ".join(ids[:shown]) + (" …" if len(ids) > shown else "")


def test_whole_database_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cutover.simulate import simulate

    url = f"sqlite:///{tmp_path}/l.db"
    manifest = simulate(url, patients=PATIENTS, seed=SEED)
    as_of = dt.date.fromisoformat(manifest["as_of"])
    outcomes = _map_database(url, as_of)
    for name, count in manifest["tables"].items():
        assert len(outcomes[name]) == count, f"{name}: every legacy row has an outcome"
    tallies = _tally(manifest, outcomes, as_of)
    rejects, flags = _unplanted(manifest, outcomes)
    with capsys.disabled():
        print(
            f"\nwhole simulated database, seed {SEED}, {PATIENTS} patients, as of {as_of}\n"
            + format_tally(tallies, rejects, flags)
        )

    # every kind was planted (at least one cell each), so every assertion below could fail
    assert set(tallies) == set(manifest["defect_kinds"])
    for kind in MAPPING_REJECTS:
        assert tallies[kind].rejected == tallies[kind].planted, kind
    for kind, tally in tallies.items():
        if tally.expected == "normalise":
            assert tally.normalised + tally.explained == tally.planted, kind
    disagreements = [
        f"{kind}: {why} ({len(ids)}: {_ids(ids)})"
        for kind, t in tallies.items()
        for why, ids in t.disagree.items()
    ]
    assert disagreements == []
    assert rejects == {}, "the mapping rejected rows no planted defect explains"
