"""WebPT's Standard Extract: the built-in folder profile ``webpt_extract`` and the simulated deliveries.

A small practice is written as WebPT's first nightly delivery (:func:`cutover.simulate.webpt.write_extract`)
and as the delivery after it (:func:`~cutover.simulate.webpt.write_next_delivery`). The files carry the
extract's quirks (a BOM, one file in cp1252, quoted notes over several lines, a truncated last line,
``appointmnet_id``, negative appointment ids, a repeated ``record_id``, INSOVER lines, RevFlow charge
chains); each file is read as a delivery is read (:func:`cutover.legacy.delivery.materialize`) and every
row mapped by the engine with the profile's specs. Every planted defect of the manifest gets, at the
mapping level, the outcome its kind expects; what only the load decides (an orphan, a visit after
discharge, a duplicate's merge) is checked as far as the files show it.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from cutover.legacy.delivery import materialize
from cutover.legacy.profile import BUILTIN, Profile, builtin_names, load_profile
from cutover.legacy.profile_check import check_ref
from cutover.legacy.source import MALFORMED, read_batches
from cutover.mapping.dedupe import plan_record_merges
from cutover.mapping.engine import Batch, map_batch
from cutover.mapping.library import CHECKS, RULES, build
from cutover.simulate import vocab as V
from cutover.simulate.verify import CASCADE, FLAG_OF_KIND
from cutover.simulate.webpt import (
    BOM_FILES,
    PROFILE,
    TRUNCATED,
    manifest_path,
    write_extract,
    write_next_delivery,
)

PATIENTS, SEED = 60, 4242
DOCUMENTED = Path(__file__).resolve().parents[1] / "fixtures" / "webpt" / "documented_columns.yaml"
SAFETY = ("allergies", "medications", "precautions")
"""The patient-safety files: no page of WebPT's names them; designed, every field assumed."""
DESIGNED = (
    "clinics",
    "therapists",
    "insurance_companies",
    "patients",
    "patient_insurance",
    "cases",
    "visits",
    *SAFETY,
)
"""Tables whose WebPT page was not found: designed, every field assumed."""
AT_LOAD = {"orphan", "visit_after_discharge", "duplicate_patient"}
"""Kinds whose outcome only the load decides (a parent missing, an episode's dates, a merge)."""


# --- reading a delivery ------------------------------------------------------------------------------------
def _materialize(folder: Path, prof: Profile, db: Path) -> str:
    """The delivery as the pipeline reads it."""
    return materialize(folder, prof, db)


def _mapped(url: str, prof: Profile, as_of: date) -> dict[str, pd.DataFrame]:
    """Every mapped table of the delivery, read as ``extract_table`` reads a CSV delivery's tables."""
    out = {}
    for name, spec in prof.specs.items():
        table = prof.tables[name]
        columns = [*table.columns, (MALFORMED, "text")]
        parts = [
            map_batch(spec, batch, as_of=as_of)
            for batch in read_batches(url, table.source_name, columns, table.key, invalid_ids=True)
        ]
        if parts:  # a later delivery's file may hold its header only
            out[name] = pa.concat_tables(parts).to_pandas(types_mapper=pd.ArrowDtype)
    return out


def _outcomes(frame: pd.DataFrame) -> dict[str, tuple[Any, set[str]]]:
    """legacy id → (reason or None, flags of all its parts)."""
    flags: dict[str, set[str]] = defaultdict(set)
    reasons: dict[str, Any] = {}
    for ident, reason, flagged in zip(frame["legacy_id"], frame["reason"], frame["flags"], strict=True):
        reasons.setdefault(ident, None if pd.isna(reason) else reason)
        if not pd.isna(flagged):
            flags[ident] |= set(flagged.split(","))
    return {i: (r, flags[i]) for i, r in reasons.items()}


def _file(folder: Path, prof: Profile, table: str) -> str:
    encoding = (prof.document["tables"][table].get("csv") or {}).get("encoding", "utf-8")
    return (
        (folder / prof.tables[table].source_name)
        .read_bytes()
        .decode("utf-8-sig" if encoding == "utf-8" else encoding)
    )


def _rows(folder: Path, prof: Profile, table: str) -> list[dict[str, str]]:
    """The whole rows of ``table``'s file by the profile's column names (a header alias read as its column)."""
    from cutover.simulate.webpt import read_rows

    return list(read_rows(folder, prof, table))


class Delivery:
    def __init__(self, folder: Path, manifest: dict[str, Any], prof: Profile, db: Path) -> None:
        self.folder, self.manifest, self.prof = folder, manifest, prof
        self.url = _materialize(folder, prof, db)
        self.mapped = _mapped(self.url, prof, date.fromisoformat(manifest["as_of"]))
        self.outcomes = {name: _outcomes(frame) for name, frame in self.mapped.items()}

    def column(self, table: str, column: str) -> dict[str, Any]:
        """legacy key → ``column`` as the delivery's database holds it."""
        spec = self.prof.tables[table]
        with sqlite3.connect(self.url.removeprefix("sqlite:///")) as conn:
            sql = f'SELECT "{spec.key}", "{column}" FROM "{spec.source_name}" WHERE "{spec.key}" IS NOT NULL'
            return {str(k): v for k, v in conn.execute(sql)}


@pytest.fixture(scope="module")
def prof() -> Profile:
    return load_profile(PROFILE)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory, prof: Profile) -> Delivery:
    root = tmp_path_factory.mktemp("webpt")
    manifest = write_extract(root / "night-1", patients=PATIENTS, seed=SEED)
    return Delivery(root / "night-1", manifest, prof, root / "night-1.db")


@pytest.fixture(scope="module")
def second(first: Delivery, prof: Profile) -> Delivery:
    out = first.folder.with_name("night-2")
    manifest = write_next_delivery(first.folder, out, seed=SEED + 1)
    return Delivery(out, manifest, prof, out.with_name("night-2.db"))


# --- the profile -------------------------------------------------------------------------------------------
def test_the_profile_checks_clean_and_is_built_in(prof: Profile) -> None:
    problems, summary = check_ref(PROFILE)
    assert problems == []
    assert summary.startswith("ok: profile webpt_extract")
    assert PROFILE in builtin_names()
    folder = BUILTIN / PROFILE
    assert Path(prof.origin) == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["profile.yaml", *(f"{t}.yaml" for t in prof.tables)]
    )
    assert prof.source_format == "csv"


def test_documented_tables_keep_webpt_names_and_keys(prof: Profile) -> None:
    documented = yaml.safe_load(DOCUMENTED.read_text(encoding="utf-8"))
    for table, columns in documented.items():
        read = list(prof.tables[table].column_names)
        assert read[: len(columns)] == columns, table
        assert read[len(columns) :] == (
            ["original_charge_id", "is_active"] if table == "billing_charges" else []
        )
    keys = {t: prof.tables[t].key for t in documented}
    assert keys == {
        "appointments": "appointmnet_id",
        "transactions": "record_id",
        "charges": "record_pointer",  # record_id "may not be unique"
        "authorizations": "record_id",  # authorization_id "may not be unique"
        "billing_charges": "charge_id",
        "payment_adjustments": "record_id",
        "patient_credit": "record_id",
    }
    assert prof.document["tables"]["appointments"]["csv"]["aliases"] == {"appointmnet_id": ["appointment_id"]}
    flags = {t: spec.export_flag.column for t, spec in prof.tables.items() if spec.export_flag is not None}
    # the pages that list export_flag, and every designed table; not Appointments (its list is complete)
    # nor Charges and Billing Charges (cut off before their ends)
    assert set(flags) == {
        "transactions",
        "authorizations",
        "payment_adjustments",
        "patient_credit",
        *DESIGNED,
    }
    assert set(flags.values()) == {"export_flag"}


def test_assumptions_are_marked(prof: Profile) -> None:
    for name, spec in prof.specs.items():
        marks = [f.assumed for f in spec.fields] + [r.assumed for r in spec.refs]
        if name in DESIGNED:
            assert all(marks), f"{name}: a designed table's field is not marked assumed"
    billing = {r.column: r.assumed for r in prof.specs["billing_charges"].refs}
    assert billing == {"visit_id": True, "patient_id": True}  # RevFlow's own ids, read as the EMR's
    status = {f.name: f.assumed for f in prof.specs["appointments"].fields}
    assert status == {"starts_at": False, "status": True}
    assert prof.not_carried["billing_charges"]["cur_balance"].startswith("RevFlow's current balance")


# --- the library's additions ---------------------------------------------------------------------------------
def _run(rule: str, params: dict[str, Any] | None, columns: dict[str, list[Any]]) -> Any:
    frame = pd.DataFrame(columns, dtype="string")
    return build(RULES, rule, params).fn(Batch(frame, date(2025, 6, 30)), tuple(columns))


def test_library_rules_and_checks() -> None:
    mods = _run("modifiers", None, {"m": ["GP", "gp, 59", "GP-KX-GP", None, "GP,XYZ"]})
    assert [list(v) for v in mods.values] == [["GP"], ["GP", "59"], ["GP", "KX"], [], ["GP"]]
    assert mods.flags.fillna("").tolist() == ["", "", "", "", "modifier_invalid"]
    state = _run(
        "appointment_state",
        {"no_show": ["No Show"]},
        {
            "s": ["Active", "Inactive", "inactive", "Active", "Inactive", "Gone", None],
            "c": [None, None, None, "2025-06-01 09:55:00", "2025-06-01 09:55:00", None, None],
            "r": [None, "No Show", "Illness", None, None, None, None],
        },
    )
    assert state.values.fillna("").tolist() == [
        "scheduled",
        "no_show",
        "cancelled",
        "arrived",
        "arrived",
        "",
        "",
    ]
    assert state.reasons.fillna("").tolist() == ["", "", "", "", "", "status_unknown", ""]
    code = _run(
        "upper_except", {"values": {"INSOVER": "insurance_overage"}}, {"c": ["97110", " insover ", None]}
    )
    assert code.values.fillna("").tolist() == ["97110", "", ""]
    assert code.flags.fillna("").tolist() == ["", "insurance_overage", ""]
    view = pd.DataFrame({"is_active": ["1", "0", " 0 ", None], "cpt": ["97161", "97161", "97110", "97010"]})
    assert build(CHECKS, "value_in", {"column": "is_active", "values": ["0"]})(view).tolist() == [
        False,
        True,
        True,
        False,
    ]
    view["u"] = pd.array([1, 2, 3, 2], dtype="Int64")
    assert build(CHECKS, "untimed_units", {"code": "cpt", "units": "u"})(view).tolist() == [
        False,
        True,  # an evaluation billed twice
        False,  # a timed code: the 8-minute rule needs minutes the file does not have
        True,
    ]
    with pytest.raises(ValueError, match="at least one"):
        build(RULES, "upper_except", {"values": {}})


# --- the first delivery ----------------------------------------------------------------------------------------
def test_files_counts_and_manifest(first: Delivery, prof: Profile) -> None:
    m = first.manifest
    assert (m["format"], m["delivery"], m["profile"]) == ("webpt-extract", 1, PROFILE)
    assert sorted(p.name for p in first.folder.iterdir()) == sorted(
        t.source_name for t in prof.tables.values()
    )
    assert manifest_path(first.folder).is_file()  # beside the delivery, never in it
    assert set(m["tables"]) == set(prof.tables)
    assert {f: v["table"] for f, v in m["files"].items()} == {
        t.source_name: n for n, t in prof.tables.items()
    }
    for name in prof.specs:
        assert len(first.outcomes[name]) == m["tables"][name], f"{name}: every row has one outcome"
    texts = {n: _file(first.folder, prof, n) for n in prof.tables}
    for canary in m["canaries"]:
        assert any(canary in t for t in texts.values()) or canary.startswith("+1"), "a canary is not written"
    assert {c["table"] for c in m["canary_cells"]} <= {"patients", "visits", "precautions"}
    assert {"field": "precaution_text", "table": "precautions"}.items() <= next(
        c for c in m["canary_cells"] if c["table"] == "precautions"
    ).items()
    assert "outcomes" in str(m["dropped_defects"]["score_out_of_range"])  # a table WebPT has no file for


def test_csv_quirks(first: Delivery, prof: Profile) -> None:
    raw = {n: (first.folder / t.source_name).read_bytes() for n, t in prof.tables.items()}
    assert {n for n, b in raw.items() if b.startswith(b"\xef\xbb\xbf")} == set(BOM_FILES)
    with pytest.raises(UnicodeDecodeError):  # the patients file is Windows-1252, as its profile says
        raw["patients"].decode("utf-8")
    assert any(c in raw["patients"].decode("cp1252") for c in "éüñëèçá")
    assert raw["appointments"][3:].startswith(b"appointmnet_id,")
    visits = raw["visits"].decode("utf-8-sig")
    assert '""much better""' in visits  # doubled quotes
    assert ".\n" in visits  # a note over two lines
    assert "Schedule conflict, will call back" in raw["appointments"].decode("utf-8-sig")
    last = raw[TRUNCATED].decode().rsplit("\r\n", 1)[1]
    assert not raw[TRUNCATED].endswith(b"\n")
    assert len(next(csv.reader([last]))) < len(prof.tables[TRUNCATED].columns)
    malformed = [d for d in first.manifest["defects"] if d["kind"] == "csv_malformed"]
    lines = raw[TRUNCATED].decode().count("\n") + 1
    assert malformed == [{"kind": "csv_malformed", "table": TRUNCATED, "legacy_id": f"csv-line-{lines}"}]


def test_extract_quirks(first: Delivery, prof: Profile) -> None:
    appointments = _rows(first.folder, prof, "appointments")
    negative = [r for r in appointments if r["appointmnet_id"].startswith("-")]
    assert negative
    assert not any(r["check_in_time"] for r in negative)  # booked ahead, never checked in
    charges = _rows(first.folder, prof, "charges")
    records = pd.Series([r["record_id"] for r in charges])
    assert records.duplicated().any()
    assert not pd.Series([r["record_pointer"] for r in charges]).duplicated().any()
    billing = _rows(first.folder, prof, "billing_charges")
    insover = [r for r in billing if r["cpt_code"] == "INSOVER"]
    assert insover
    assert all(r["charge_amount"] == "0.00" and r["cur_balance"].startswith("-") for r in insover)
    chains = defaultdict(list)
    for r in billing:
        chains[r["original_charge_id"]].append(r["is_active"])
    spread = [states for states in chains.values() if len(states) > 1]
    assert spread
    assert all(sorted(s) == ["0"] * (len(s) - 1) + ["1"] for s in spread)
    assert all(2 <= len(s) <= 3 for s in spread)
    credits = _rows(first.folder, prof, "patient_credit")
    assert {r["charge_id"] for r in credits} == {r["charge_id"] for r in insover}
    assert {r["patient_credit_type"] for r in credits} == {"2"}
    authorizations = pd.Series([r["authorization_id"] for r in _rows(first.folder, prof, "authorizations")])
    assert authorizations.duplicated().any()
    patients = _rows(first.folder, prof, "patients")
    assert "999999999" in {r["ssn"] for r in patients}  # WebPT's "no SSN"
    assert all(r["export_flag"] == "1" for t in DESIGNED for r in _rows(first.folder, prof, t))


def test_planted_defects_get_their_outcome(first: Delivery) -> None:
    m = first.manifest
    kinds = m["defect_kinds"]
    rejecting: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in m["defects"]:
        if kinds[d["kind"]]["expected"] == "reject":
            rejecting[(d["table"], str(d["legacy_id"]))].add(d["kind"])
    keys = {t: {str(k) for k in first.column(t, first.prof.tables[t].key)} for t in first.prof.tables}
    report: dict[str, list[str]] = defaultdict(list)
    for d in m["defects"]:
        kind, table, ident = d["kind"], d["table"], str(d["legacy_id"])
        expected = kinds[kind]["expected"]
        reason, flags = first.outcomes[table][ident]
        if kind == "orphan":  # rejected at load: its parent is not in the delivery
            ok = str(first.column(table, d["field"])[ident]) not in keys[d["parent"]]
        elif expected == "reject":
            ok = reason == kind
        elif expected == "flag" and kind not in AT_LOAD:
            ok = reason is None and FLAG_OF_KIND.get(kind, kind) in flags
        else:
            ok = reason is None
        if not ok and not (reason is not None and reason in rejecting[(table, ident)] - {kind}):
            report[kind].append(f"{table} {ident}: {reason} {sorted(flags)}")
    assert not report, dict(report)
    planted = {d["kind"] for d in m["defects"]}
    assert {"csv_malformed", "charge_state_superseded", "insurance_overage", "payment_unpaid"} <= planted
    assert {"negative_appointment_id", "record_id_repeated", "authorization_id_repeated"} <= planted


def test_no_row_is_rejected_for_a_reason_not_planted(first: Delivery) -> None:
    planted = {(d["table"], str(d["legacy_id"])) for d in first.manifest["defects"]}
    unplanned = {
        (t, i, r)
        for t, got in first.outcomes.items()
        for i, (r, _) in got.items()
        if r and (t, i) not in planted
    }
    assert not unplanned


def test_quirky_rows_map(first: Delivery) -> None:
    appt = first.mapped["appointments"].set_index("legacy_id")
    negative = appt[appt.index.str.startswith("-")]
    assert len(negative)
    assert negative["reason"].isna().all()
    assert set(negative["status"].dropna()) <= {"scheduled", "cancelled", "no_show"}
    assert (
        {"arrived", "scheduled", "cancelled", "no_show"}
        >= set(appt["status"].dropna())
        >= {"arrived", "cancelled"}
    )
    billing = first.mapped["billing_charges"].set_index("legacy_id")
    overage = billing[billing["flags"].fillna("").str.contains("insurance_overage")]
    assert len(overage) == len([d for d in first.manifest["defects"] if d["kind"] == "insurance_overage"])
    assert overage["cpt_code"].isna().all()
    assert (overage["amount_cents"] == 0).all()
    originals = first.column("billing_charges", "original_charge_id")
    kept = billing[billing["reason"].isna()]
    assert not pd.Series([originals[i] for i in kept.index]).duplicated().any(), "a real charge migrates once"
    patients = first.mapped["patients"]
    placeholder = patients[patients["flags"].fillna("").str.contains("ssn_placeholder")]
    assert len(placeholder) > len([d for d in first.manifest["defects"] if d["kind"] == "placeholder_ssn"])
    assert placeholder["ssn"].isna().all()
    visits = first.mapped["visits"].set_index("legacy_id")
    latin1 = [d for d in first.manifest["defects"] if d["kind"] == "latin1_text"]
    repaired = [visits.loc[str(d["legacy_id"]), d["field"]] for d in latin1]
    assert repaired
    assert not any("Ã" in text for text in repaired)  # written as mojibake, read back whole
    lines = first.mapped["charges"]
    assert lines["modifiers"].map(len).gt(0).all()
    assert lines["units"].notna().all()


# --- the patient-safety files -----------------------------------------------------------------------------------
def test_safety_files_are_delivered_and_never_reject_a_row(first: Delivery, prof: Profile) -> None:
    """Allergies, medications and precautions arrive as the simulator typed them, every row new, and map
    without a reject of their own (a cascade from a rejected patient is the load's, never the map's)."""
    m = first.manifest
    assert {t: prof.tables[t].source_name for t in SAFETY} == {t: f"{t}.csv" for t in SAFETY}
    for table in SAFETY:
        header = _file(first.folder, prof, table).split("\r\n", 1)[0]
        assert header.split(",") == list(prof.tables[table].column_names)
        rows = _rows(first.folder, prof, table)
        assert len(rows) == m["tables"][table] > 0
        assert {r["export_flag"] for r in rows} == {"1"}
        assert all(len(r["modified_date"]) == 10 for r in rows)  # a Date, as the other files write it
        reasons = set(first.mapped[table]["reason"].dropna())
        assert reasons <= CASCADE, (table, reasons)
    planted = [d for d in m["defects"] if d["table"] in SAFETY]
    assert {d["kind"] for d in planted} >= {
        "allergy_no_known",
        "precaution_in_note",
        "safety_duplicate",
        "safety_text_unmapped",
    }
    for d in planted:  # named by the extract's columns
        assert d.get("field") is None or d["field"] in prof.tables[d["table"]].column_names, d
    unmapped = set(m["defect_kinds"]["safety_text_unmapped"]["fields"])
    assert {"allergies.allergy_status", "medications.medication_status"} & unmapped
    typed = {c["legacy_id"]: c for c in m["canary_cells"] if c["table"] == "precautions"}
    texts = {r["precaution_id"]: r["precaution_text"] for r in _rows(first.folder, prof, "precautions")}
    assert typed
    assert all(any(c in texts[str(i)] for c in m["canaries"]) for i in typed)


def test_every_nkda_spelling_is_no_known_allergies(first: Delivery, prof: Profile) -> None:
    typed = {r["allergy_id"]: r["allergen"] for r in _rows(first.folder, prof, "allergies")}
    nkda = {i for i, text in typed.items() if text in V.NO_KNOWN_ALLERGIES}
    planted = {str(d["legacy_id"]) for d in first.manifest["defects"] if d["kind"] == "allergy_no_known"}
    assert planted
    assert planted <= nkda
    assert len({typed[i] for i in nkda}) > 1, "more than one spelling"
    allergies = first.mapped["allergies"].set_index("legacy_id")
    said = allergies["no_known_allergies"].fillna(False).astype(bool)
    assert set(allergies.index[said]) == nkda
    assert allergies.loc[sorted(nkda), "substance"].isna().all()
    assert allergies.loc[sorted(nkda), "reason"].isna().all()


def test_safety_records_read_as_the_simulator_profile_reads_them(first: Delivery, prof: Profile) -> None:
    """A precaution only in a note's words gets its kind from the text; a record entered again on a later
    case merges into its original (the owner's rows compared as the load's plan compares them)."""
    codes = prof.document["tables"]["precautions"]["map"]["fields"]["kind"]["with"]["codes"]
    precautions = first.mapped["precautions"].set_index("legacy_id")
    in_note = [d for d in first.manifest["defects"] if d["kind"] == "precaution_in_note"]
    assert in_note
    for d in in_note:
        row = precautions.loc[str(d["legacy_id"])]
        assert (row["kind"], bool(row["kind_from_text"])) == (codes[d["code"]], True), d
    for table in SAFETY:
        mapped = [pa.Table.from_pandas(first.mapped[table], preserve_index=False)]
        plan = plan_record_merges(prof.specs[table], mapped.copy)
        survivor = {str(k): str(v) for k, v in plan.moved.items()}
        copies = [
            d for d in first.manifest["defects"] if d["kind"] == "safety_duplicate" and d["table"] == table
        ]
        assert copies, table
        for d in copies:
            copy, original = str(d["legacy_id"]), str(d["of"])
            assert survivor.get(copy, copy) == survivor.get(original, original), (table, copy, original)


# --- the next delivery -----------------------------------------------------------------------------------------
def test_next_delivery(first: Delivery, second: Delivery, prof: Profile) -> None:
    m = second.manifest
    assert (m["delivery"], m["previous"], m["as_of"]) == (2, first.folder.name, "2025-07-01")
    assert sorted(p.name for p in second.folder.iterdir()) == sorted(
        t.source_name for t in prof.tables.values()
    )
    assert _file(second.folder, prof, "appointments").startswith("appointment_id,")  # the alias
    changed: dict[str, int] = defaultdict(int)
    for change in ("edited", "new", "removed", "unchanged_repeat"):
        for table, ids in m[change].items():
            changed[table] += len(ids)
            assert ids, (change, table)
    assert m["tables"] == {t: changed.get(t, 0) for t in prof.tables}
    assert {"patients", "authorizations", "transactions"} <= set(m["edited"])
    assert {"visits", "charges", "billing_charges", "appointments", "transactions", "cases"} <= set(m["new"])
    assert set(m["removed"]) <= {t for t, s in prof.tables.items() if s.export_flag is not None}
    before = {t: {r[prof.tables[t].key]: r for r in _rows(first.folder, prof, t)} for t in ("patients",)}
    for table in prof.tables:
        rows = {r[prof.tables[table].key]: r for r in _rows(second.folder, prof, table)}
        flag = {"edited": "2", "new": "1", "removed": "3", "unchanged_repeat": "2"}
        for change, code in flag.items():
            for ident in m[change].get(table, []):
                row = rows[str(ident)]
                assert row.get("export_flag", code) == code, (table, ident, change)
                if change in ("edited", "removed") and "modified_date" in row:
                    assert row["modified_date"] == "2025-07-01"
    (same,) = m["unchanged_repeat"]["patients"]
    again = {r["patient_id"]: r for r in _rows(second.folder, prof, "patients")}[str(same)]
    assert again == before["patients"][str(same)] | {"export_flag": "2"}
    removed = {(t, str(i)) for t, ids in m["removed"].items() for i in ids}
    for table, got in second.outcomes.items():
        for ident, (reason, _) in got.items():
            assert reason == ("removed_in_source" if (table, ident) in removed else None), (
                table,
                ident,
                reason,
            )
    prior = set(first.outcomes["visits"])
    assert not {str(i) for i in m["new"]["visits"]} & prior


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cutover.simulate.__main__ import main

    out = tmp_path / "delivery"
    assert main(["--format", "webpt-extract", "--out", str(out), "--patients", "20", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads(manifest_path(out).read_text(encoding="utf-8"))
    assert "patients" in printed
    assert not any(c in printed for c in manifest["canaries"])  # counts only
    assert (
        main(["--format", "webpt-extract", "--out", str(tmp_path / "n2"), "--next-delivery", str(out)]) == 0
    )
    assert manifest_path(tmp_path / "n2").is_file()
    inside = str(out / "m.json")
    assert (
        main(["--format", "webpt-extract", "--out", str(out), "--patients", "20", "--manifest", inside]) == 2
    )
    assert main(["--format", "webpt-extract", "sqlite:///x.db"]) == 2
    assert "--out DIR" in capsys.readouterr().err
