"""``cutover profile check``: the schema and the semantic checks of a legacy profile, one line per problem.

Golden cases: the built-in simulator profile with one thing changed (or a small profile written
here), and the exact line the check must give (file, line, dotted field, message, closest names).
"""

from __future__ import annotations

import dataclasses
import doctest
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from cutover import cli
from cutover.legacy import profile_check, profile_rules
from cutover.legacy.profile import ProfileError, from_document, load_profile, profile_path, read_document
from cutover.legacy.profile_build import build_spec
from cutover.legacy.profile_check import check, check_ref, schema
from cutover.legacy.schema import COLUMN_TYPES

SIMULATOR = profile_path("simulator").read_text(encoding="utf-8")

MINI = """\
profile: mini
title: a small legacy system
tables:
  patients:
    key: pat_id
    columns: {pat_id: int, name: text, dob: text}
    patient: pat_id
    map:
      to: patient
      duplicates: merge
      fields:
        family_name: {from: name, rule: name_part, with: {part: family}}
        given_name: {from: name, rule: name_part, with: {part: given}}
        birth_date: {from: dob, rule: date, with: {role: birth}}
  payers:
    key: payer_id
    columns: {payer_id: int, payer_name: text}
    map:
      to: payer
      fields:
        name: {from: payer_name, rule: text}
"""


def line_of(text: str, needle: str, after: str = "") -> int:
    """The 1-based line of ``needle`` (its first line), the first one after ``after`` when given."""
    start = text.index(after) if after else 0
    found = text.index(needle[: needle.index("\n") + 1] if "\n" in needle else needle, start)
    return text.count("\n", 0, found) + 1


def write(tmp_path: Path, text: str, name: str = "acme.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edited(tmp_path: Path, old: str, new: str) -> tuple[Path, str]:
    assert SIMULATOR.count(old) == 1, f"not once in simulator.yaml: {old!r}"
    text = SIMULATOR.replace(old, new)
    return write(tmp_path, text), text


def problems(path: Path) -> list[str]:
    return check(read_document(path))


# (title, old, new, where: the line's text or (after, text), field, message)
CASES = [
    # the mapping library
    ("unknown rule", "birth_date: {from: [dob, created], rule: date,", "birth_date: {from: [dob, created], rule: dat,",
     None, "tables.patients.map.fields.birth_date.rule", "unknown rule 'dat' (did you mean: date?)"),
    ("unknown check", "check: before\n          with: {later: discharge_date", "check: befor\n          with: {later: discharge_date",
     None, "tables.cases.map.checks.0.check", "unknown check 'befor' (did you mean: before?)"),
    ("unknown explode step", "explode: {step: cpt_lines,", "explode: {step: cpt_line,",
     None, "tables.procedures.map.explode.step", "unknown explode step 'cpt_line' (did you mean: cpt_lines?)"),
    ("unknown load check", "load_checks: [visit_after_discharge,", "load_checks: [visit_after_discharg,",
     None, "tables.visits.map.load_checks.0",
     "unknown load check 'visit_after_discharg' (did you mean: visit_after_discharge?)"),
    ("load check of another target", "same_patient: [visit_id]", "same_patient: [visit_id]\n      load_checks: [visit_before_birth]",
     "load_checks: [visit_before_birth]\n", "tables.charges.map.load_checks.0",
     "visit_before_birth applies to target table visit, not charge"),
    ("integer kind", "priority: {from: priority, rule: integer, with: {kind: smallint}}",
     "priority: {from: priority, rule: integer, with: {kind: tinyint}}",
     None, "tables.coverage.map.fields.priority.with", "integer: unknown integer type tinyint"),
    ("unknown parameter", "priority: {from: priority, rule: integer, with: {kind: smallint}}",
     "priority: {from: priority, rule: integer, with: {knd: smallint}}",
     None, "tables.coverage.map.fields.priority.with", "integer: unknown parameter knd (expected: kind)"),
    ("missing parameter", "with: {table: {PT: PT, PTA: PTA, DPT: DPT}, reason: credential_unknown}",
     "with: {table: {PT: PT, PTA: PTA, DPT: DPT}}",
     None, "tables.providers.map.fields.credential.with", "code: parameter reason is required"),
    ("name form and its columns", "middle_name: {from: pat_name, rule: name_part, with: {part: middle}}",
     "middle_name: {from: pat_name, rule: name_part, with: {part: middle, form: family_given}}",
     None, "tables.patients.map.fields.middle_name.from", "name_part with form family_given reads 2 column(s), not 1"),
    ("name part", "middle_name: {from: pat_name, rule: name_part, with: {part: middle}}",
     "middle_name: {from: pat_name, rule: name_part, with: {part: nickname}}",
     None, "tables.patients.map.fields.middle_name.with", "name_part: unknown name part nickname"),
    ("unit rule finding", "with: {finding: units_exceed_minutes}", "with: {finding: units_over}",
     None, "tables.procedures.map.checks.0.with",
     "units_rule: finding units_over is not a unit rule (units_exceed_minutes, untimed_multiple_units)"),
    ("date role", "effective_date: {from: eff_date, rule: date, with: {role: event}}",
     "effective_date: {from: eff_date, rule: date, with: {role: evnt}}",
     None, "tables.coverage.map.fields.effective_date.with.role",
     "'evnt' is not one of birth, event, service (did you mean: event?)"),
    ("code table key read as a boolean", "VA: va,", "yes: va,",
     None, "tables.payers.map.fields.payer_type.with.table.yes", "key read by YAML as a boolean, not text: quote it"),
    ("code table key read as a number", "{PT: PT, PTA: PTA, DPT: DPT}", "{PT: PT, PTA: PTA, DPT: DPT, 42: PT}",
     None, "tables.providers.map.fields.credential.with.table.42", "key read by YAML as a number, not text: quote it"),
    ("code table value read as a boolean", "ADJUSTMENT: adjustment}", "ADJUSTMENT: no}",
     None, "tables.payments.map.fields.kind.with.table.ADJUSTMENT", "read by YAML as a boolean, not text: quote it"),
    # legacy columns
    ("unknown key column", "    key: pat_id\n", "    key: patient_id\n",
     None, "tables.patients.key", "unknown column 'patient_id' (did you mean: pat_id?)"),
    ("blob key", "key: doc_id", "key: content",
     None, "tables.documents.key", "the key column content is a blob: a key is an int or text column"),
    ("missing key", "    key: dx_id\n", "", "  diagnoses:", "tables.diagnoses.key", "missing (required)"),
    ("unknown patient column", "    patient: pat_id\n    changes: {modified: modified}\n    map:\n      to: coverage",
     "    patient: patid\n    changes: {modified: modified}\n    map:\n      to: coverage",
     None, "tables.coverage.patient", "unknown column 'patid' (did you mean: pat_id?)"),
    ("unknown parents column", "parents: {case_id: cases, visit_id: visits}", "parents: {case_id: cases, visitid: visits}",
     None, "tables.outcomes.parents.visitid", "unknown column 'visitid' (did you mean: visit_id?)"),
    ("unknown modified column", "seq: text, modified: text}\n    parents: {case_id: cases}\n    patient: case_id\n    changes: {modified: modified}",
     "seq: text, modified: text}\n    parents: {case_id: cases}\n    patient: case_id\n    changes: {modified: modfied}",
     "changes: {modified: modfied}", "tables.diagnoses.changes.modified", "unknown column 'modfied' (did you mean: modified?)"),
    ("unknown export flag column", "columns: {payer_id: int, payer_name: text, payer_type: text}",
     "columns: {payer_id: int, payer_name: text, payer_type: text}\n    changes: {export_flag: {column: payer_flag, new: 1}}",
     "changes: {export_flag", "tables.payers.changes.export_flag.column",
     "unknown column 'payer_flag'"),
    ("a field from an unknown column", "cpt_code: {from: cpt_code, rule: same, required: true}",
     "cpt_code: {from: cpt_code, rule: upper, required: true}",
     None, "tables.procedures.map.fields.cpt_code.from", "unknown column 'cpt_code'"),
    ("a field from unknown columns", "postal_code: {from: [zip, state], rule: postal, invalid: flag}\n        phone: {from: phone,",
     "postal_code: {from: [zip, stat], rule: postal, invalid: flag}\n        phone: {from: phone,",
     None, "tables.clinics.map.fields.postal_code.from.1", "unknown column 'stat' (did you mean: state?)"),
    ("a ref from an unknown column", "home_clinic_id: {from: clinic_id,", "home_clinic_id: {from: clinic,",
     None, "tables.patients.map.refs.home_clinic_id.from", "unknown column 'clinic' (did you mean: clinic_id?)"),
    ("a check of an unknown column", "with: {column: appt_id}", "with: {column: appt_ids}",
     None, "tables.visits.map.checks.0.with.column",
     "unknown field or column 'appt_ids' (did you mean: appt_id?)"),
    ("a check of an unmapped field", "with: {later: discharge_date, earlier: start_date}",
     "with: {later: discharge_date, earlier: start}",
     None, "tables.cases.map.checks.0.with.earlier", "unknown mapped field 'start' (did you mean: start_date?)"),
    ("entered twice in an unknown column", "columns: [cpt_code, amount_cents, posted_on]",
     "columns: [cpt_code, amount_cents, posted_at]",
     None, "tables.charges.map.checks.0.with.columns.2",
     "unknown field or column 'posted_at' (did you mean: posted?)"),
    # tables
    ("unknown parent table", "parents: {case_id: cases, visit_id: visits}", "parents: {case_id: cases, visit_id: visit}",
     None, "tables.outcomes.parents.visit_id", "unknown table 'visit' (did you mean: visits?)"),
    ("a ref to an unknown table", "visit_id: {from: visit_id, parent: visits, required: false, strict: true}",
     "visit_id: {from: visit_id, parent: visit, required: false, strict: true}",
     None, "tables.outcomes.map.refs.visit_id.parent", "unknown table 'visit' (did you mean: visits?)"),
    ("a ref to a parent of another target", "provider_id: {from: provider_id, parent: providers, required: false}\n        referral_id",
     "provider_id: {from: provider_id, parent: clinics, required: false}\n        referral_id",
     None, "tables.cases.map.refs.provider_id.parent",
     "legacy table clinics maps to clinic, but episode.provider_id references provider"),
    # the target
    ("unknown target table", "      to: clinic\n", "      to: clinics\n",
     None, "tables.clinics.map.to", "unknown target table 'clinics' (did you mean: clinic?)"),
    ("unknown target field", "subjective: {from: subjective", "subjectve: {from: subjective",
     None, "tables.visits.map.fields.subjectve", "unknown target field 'subjectve' of visit (did you mean: subjective?)"),
    ("unknown reference", "appointment_id: {from: appt_id", "appointment: {from: appt_id",
     None, "tables.visits.map.refs.appointment", "unknown reference 'appointment' of visit (did you mean: appointment_id?)"),
    ("id mapped", "mrn: {from: mrn, rule: text}", "id: {from: pat_id, rule: integer}\n        mrn: {from: mrn, rule: text}",
     None, "tables.patients.map.fields.id", "id is never mapped: the target assigns it"),
    ("a reference as a field", "mrn: {from: mrn, rule: text}",
     "mrn: {from: mrn, rule: text}\n        home_clinic_id: {from: clinic_id, rule: integer}",
     "home_clinic_id: {from: clinic_id, rule: integer}", "tables.patients.map.fields.home_clinic_id",
     "home_clinic_id references clinic: map it under refs"),
    ("a field as a reference", "visit_id: {from: visit_id, parent: visits, required: false, strict: true}",
     "visit_id: {from: visit_id, parent: visits, required: false, strict: true}\n        score: {from: score, parent: visits}",
     "score: {from: score, parent: visits}", "tables.outcomes.map.refs.score",
     "outcome_measure.score references no table: map it under fields"),
    ("a required field unmapped", "        visit_date: {from: visit_date, rule: date, with: {role: service}, required: true}\n", "",
     ("  visits:", "      fields:"), "tables.visits.map.fields",
     "required target field visit.visit_date (NOT NULL) is not mapped: add it to fields"),
    ("a required reference unmapped",
     "recertified_on: {from: recert_date, rule: date, with: {role: event}}\n      refs:\n        episode_id: {from: case_id, parent: cases}\n",
     "recertified_on: {from: recert_date, rule: date, with: {role: event}}\n      refs: {}\n",
     ("  plans_of_care:", "      refs: {}"), "tables.plans_of_care.map.refs",
     "required target field plan_of_care.episode_id (NOT NULL) is not mapped: add it to refs"),
    # the profile as a whole
    ("rows of a patient without a patient column",
     "    patient: pat_id\n    changes: {modified: modified}\n    map:\n      to: coverage",
     "    changes: {modified: modified}\n    map:\n      to: coverage",
     "  coverage:\n", "tables.coverage",
     "its rows belong to a patient (required ref patient_id into patients) but it names no patient column: "
     "add patient: pat_id (a parents column)"),
    ("a parent cycle", "  clinics:\n    key: clinic_id\n", "  clinics:\n    key: clinic_id\n    parents: {clinic_id: patients}\n",
     "parents: {clinic_id: patients}", "tables.clinics.parents.clinic_id",
     "parent relations form a cycle: clinics → patients → clinics"),
    ("the patient table's patient column", "    patient: pat_id\n    changes: {modified: modified}\n    map:\n      to: patient\n",
     "    patient: clinic_id\n    changes: {modified: modified}\n    map:\n      to: patient\n",
     None, "tables.patients.patient", "the patient table's patient column is its key pat_id, not clinic_id"),
    ("a patient column that is no parent", "    patient: pat_id\n    changes: {modified: modified}\n    map:\n      to: coverage",
     "    patient: member_id\n    changes: {modified: modified}\n    map:\n      to: coverage",
     None, "tables.coverage.patient", "member_id is not a parents column: it must lead through parents to patients"),
    ("a patient column leading elsewhere",
     "parents: {pat_id: patients, clinic_id: clinics, provider_id: providers, referral_id: referrals}\n    patient: pat_id",
     "parents: {pat_id: patients, clinic_id: clinics, provider_id: providers, referral_id: referrals}\n    patient: clinic_id",
     "patient: clinic_id", "tables.cases.patient",
     "clinic_id leads to clinics, which has no patient column (it must lead to patients)"),
    ("merge outside the patient table", "      to: payer\n", "      to: payer\n      duplicates: merge\n",
     ("  payers:", "duplicates: merge"), "tables.payers.map.duplicates",
     "merge is only for the table mapped to patient (patients)"),
    ("same patient of an unknown ref", "same_patient: [episode_id]", "same_patient: [episode]",
     None, "tables.visits.map.same_patient.0", "unknown ref 'episode' (did you mean: episode_id?)"),
    ("a TODO left", "doc: A physician's referral to therapy.", "doc: TODO say what a referral is",
     None, "tables.referrals.map.doc", "still holds a TODO: finish the draft"),
    ("a TODO rule is only a TODO", "diagnosis_code: {from: dx_code, rule: icd, invalid: flag}",
     "diagnosis_code: {from: dx_code, rule: TODO, invalid: flag}",
     None, "tables.referrals.map.fields.diagnosis_code.rule", "still holds a TODO: finish the draft"),
    # the schema
    ("a misspelt top-level key", "tables:\n  clinics:", "tabels:\n  clinics:",
     None, "tabels", "unknown field (did you mean: tables?)"),
    ("a misspelt field key", "name: {from: clinic_name, rule: text, required: true}",
     "name: {from: clinic_name, rul: text, required: true}",
     None, "tables.clinics.map.fields.name.rul", "unknown field (did you mean: rule?)"),
    ("an unknown column type", "tz: text}", "tz: txt}",
     None, "tables.clinics.columns.tz", "'txt' is not one of int, text, blob (did you mean: text?)"),
    ("an unknown invalid action", "phone: {from: phone, rule: phone, invalid: flag}\n        timezone",
     "phone: {from: phone, rule: phone, invalid: flg}\n        timezone",
     None, "tables.clinics.map.fields.phone.invalid", "'flg' is not one of reject, flag (did you mean: flag?)"),
    ("a number for a column", "address_line: {from: address, rule: text}", "address_line: {from: 5, rule: text}",
     None, "tables.clinics.map.fields.address_line.from", "expected text or a list of text, got a number"),
    ("an empty list of columns", "address_line: {from: address, rule: text}", "address_line: {from: [], rule: text}",
     None, "tables.clinics.map.fields.address_line.from", "empty: give at least one"),
    ("a number in a list of columns", "address_line: {from: address, rule: text}",
     "address_line: {from: [5, address], rule: text}",
     None, "tables.clinics.map.fields.address_line.from.0", "read by YAML as a number, not text: quote it"),
    ("text for a boolean", "name: {from: payer_name, rule: text, required: true}",
     "name: {from: payer_name, rule: text, required: maybe}",
     None, "tables.payers.map.fields.name.required", "expected true or false, got text"),
    ("a date for a title", "title: Cutover's simulated", "title: 2026-12-01\ndescription: Cutover's simulated",
     "title: 2026-12-01", "title", "read by YAML as a date, not text: quote it"),
    ("an unknown source format", "  format: database", "  format: xml",
     None, "source.format", "'xml' is not one of database, csv"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "where", "field", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_one_change_one_line(
    tmp_path: Path, old: str, new: str, where: object, field: str, message: str
) -> None:
    path, text = edited(tmp_path, old, new)
    after, needle = where if isinstance(where, tuple) else ("", where or new)
    assert problems(path) == [f"{path}:{line_of(text, needle, after)}: {field}: {message}"]


def test_the_simulator_profile_holds() -> None:
    assert check(read_document(profile_path("simulator"))) == []
    assert check_ref("simulator")[0] == []


def test_the_clinicnote_folder_profile_holds() -> None:
    assert check_ref(str(Path(__file__).parents[1] / "fixtures" / "profiles" / "clinicnote"))[0] == []


def test_the_small_profile_holds(tmp_path: Path) -> None:
    assert problems(write(tmp_path, MINI)) == []


def test_source_options_are_free(tmp_path: Path) -> None:
    path, _ = edited(tmp_path, "  format: database", "  format: csv\n  delimiter: ';'\n  encoding: cp1252")
    assert problems(path) == []


def test_two_legacy_tables_to_one_target(tmp_path: Path) -> None:
    text = MINI + (
        "  insurers:\n"
        "    key: ins_id\n"
        "    columns: {ins_id: int, ins_name: text}\n"
        "    map:\n"
        "      to: payer\n"
        "      fields:\n"
        "        name: {from: ins_name, rule: text}\n"
    )
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}:{line_of(text, '      to: payer', '  insurers:')}: tables.insurers.map.to: "
        "target table payer is already mapped from legacy table payers (one legacy table per target table)"
    ]


def test_no_patient_table(tmp_path: Path) -> None:
    text = MINI.replace("      to: patient\n      duplicates: merge\n", "      to: payer\n")
    text = text[: text.index("  payers:")]
    text = text.replace(
        "family_name: {from: name, rule: name_part, with: {part: family}}", "name: {from: name, rule: text}"
    )
    text = "\n".join(
        line for line in text.splitlines() if "given_name" not in line and "birth_date" not in line
    )
    path = write(tmp_path, text + "\n")
    assert problems(path) == [
        f"{path}:{line_of(text, 'tables:')}: tables: no legacy table maps to the target table patient (exactly one must)"
    ]


def test_a_longer_cycle_is_named_once(tmp_path: Path) -> None:
    text = MINI + "".join(
        f"  {name}:\n    key: id\n    columns: {{id: int, up: int}}\n    parents: {{up: {parent}}}\n"
        for name, parent in (("a", "b"), ("b", "c"), ("c", "a"))
    )
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}:{line_of(text, 'parents: {up: b}')}: tables.a.parents.up: parent relations form a cycle: a → b → c → a"
    ]


def test_a_table_may_name_itself_as_parent(tmp_path: Path) -> None:
    text = MINI.replace(
        "columns: {payer_id: int, payer_name: text}",
        "columns: {payer_id: int, payer_name: text, parent_payer: int}\n    parents: {parent_payer: payers}",
    )
    assert problems(write(tmp_path, text)) == []


def test_every_todo_is_a_line(tmp_path: Path) -> None:
    text = MINI.replace("title: a small legacy system", "title: TODO").replace(
        "name: {from: payer_name, rule: text}",
        "name: {from: payer_name, rule: text}\n        TODO_field: {from: TODO, rule: TODO}",
    )
    path = write(tmp_path, text)
    todo = line_of(text, "TODO_field")
    assert problems(path) == [
        f"{path}:2: title: still holds a TODO: finish the draft",
        f"{path}:{todo}: tables.payers.map.fields.TODO_field: still holds a TODO: finish the draft",
        f"{path}:{todo}: tables.payers.map.fields.TODO_field.from: still holds a TODO: finish the draft",
        f"{path}:{todo}: tables.payers.map.fields.TODO_field.rule: still holds a TODO: finish the draft",
    ]


def test_a_folder_profile_names_the_table_file(tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    folder.mkdir()
    header, tables = MINI.split("tables:\n")
    patients, payers = tables.split("  payers:\n")
    write(folder, header, "profile.yaml")
    write(folder, "\n".join(line[2:] for line in patients.splitlines()) + "\n", "patients.yaml")
    payers_text = (
        "payers:\n"
        + "\n".join(line[2:] for line in payers.splitlines()).replace("rule: text", "rule: txt")
        + "\n"
    )
    write(folder, payers_text, "payers.yaml")
    assert problems(folder) == [
        f"{folder / 'payers.yaml'}:{line_of(payers_text, 'rule: txt')}: tables.payers.map.fields.name.rule: "
        "unknown rule 'txt' (did you mean: text?)"
    ]
    assert check_ref(str(folder))[0] == problems(folder)


def test_several_problems_in_reading_order(tmp_path: Path) -> None:
    text = MINI.replace("rule: text}", "rule: txt}").replace(
        "      to: patient\n", "      to: patient\n      fields_: {}\n"
    )
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}:{line_of(text, 'fields_')}: tables.patients.map.fields_: unknown field (did you mean: fields?)",
        f"{path}:{line_of(text, 'rule: txt')}: tables.payers.map.fields.name.rule: unknown rule 'txt' (did you mean: text?)",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "profile: x\ntables: [a, b]\n",
        "profile: x\ntables: {a: 5}\n",
        "profile: x\ntables: {a: {key: 1, columns: []}}\n",
        "profile: x\ntables: {a: {key: id, columns: {id: int}, parents: [x], map: {to: 5, fields: {a: 5}}}}\n",
        "profile: x\ntables: {a: {key: id, columns: {id: int}, map: {to: patient, checks: [5, {check: 3}], refs: 7}}}\n",
        "profile: x\ntables: {a: {key: id, columns: {id: int}, map: {to: patient, fields: {family_name: {from: [], rule: []}}}}}\n",
        "profile: x\ntables: {a: {key: id, columns: {id: int}, patient: id, parents: {id: a}, map: {to: patient, explode: {step: cpt_lines, with: {text: 5}}}}}\n",
        "profile: [x]\nsource: csv\ntables: {1: {}, null: {}, a: {key: id, columns: {id: int}, map: {to: patient, load_checks: [1, 1]}}}\n",
    ],
)
def test_a_malformed_profile_is_reported_never_a_crash(tmp_path: Path, text: str) -> None:
    found = problems(write(tmp_path, text))
    assert found
    assert all(line.startswith(f"{tmp_path / 'acme.yaml'}:") and "\n" not in line for line in found)


def _paths(node: object, path: tuple[object, ...]) -> Iterator[tuple[object, ...]]:
    yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, item in items:
        yield from _paths(item, (*path, key))


def test_a_changed_value_is_refused_or_builds(tmp_path: Path) -> None:
    """Every value of two tables of the simulator profile (checks, an explode step, load checks) replaced
    in turn by a wrong kind: the check never raises, and what it passes loads and builds its specs."""
    doc = read_document(profile_path("simulator"))
    paths = [
        p for t in ("procedures", "visits") for p in list(_paths(doc.data["tables"][t], ("tables", t)))[1:]
    ]
    for path in paths:
        for wrong in (None, 5, "x"):
            data = json.loads(json.dumps(doc.data))
            node = data
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = wrong
            changed = dataclasses.replace(doc, data=data)
            if not check(changed):  # what passes loads, and its table's spec builds
                table = from_document(changed).tables[str(path[1])]
                assert build_spec(table.name, table.key, data["tables"][table.name]["map"]), (path, wrong)


def test_a_document_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "profile: x\ntables:\n  a: {key: id\n  b: 1\n")
    found, summary = check_ref(str(path))
    assert summary == ""
    assert found == [f"{path}:4: expected ',' or '}}', but got ':'"]
    missing, _ = check_ref(str(tmp_path / "nowhere.yaml"))
    assert missing == [
        f"{tmp_path / 'nowhere.yaml'}: no such profile (a built-in name: simulator, webpt_extract, or a path)"
    ]


def test_cli_refuses_a_broken_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, text = edited(
        tmp_path,
        "birth_date: {from: [dob, created], rule: date,",
        "birth_date: {from: [dob, created], rule: dat,",
    )
    assert cli.main(["profile", "check", str(path)]) == 1
    out, err = capsys.readouterr()
    line = line_of(text, "birth_date: {from: [dob")
    assert (
        out
        == f"{path}:{line}: tables.patients.map.fields.birth_date.rule: unknown rule 'dat' (did you mean: date?)\n"
    )
    assert err == f"1 problem(s) in {path}\n"


def test_cli_passes_the_builtin_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["profile", "check", "simulator"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("ok: profile simulator (")
    assert "21 legacy tables, 21 mapped" in out


def test_cli_a_profile_that_is_not_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "profile: [x\n")
    assert cli.main(["profile", "check", str(path)]) == 1
    out, _ = capsys.readouterr()
    assert out.count("\n") == 1
    assert out.startswith(f"{path}:")


def test_load_profile_raises_the_first_problem(tmp_path: Path) -> None:
    path, _ = edited(tmp_path, "tz: text}", "tz: txt}")
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert str(raised.value) == problems(path)[0]
    several = write(
        tmp_path,
        MINI.replace("rule: text}", "rule: txt}").replace("tables:", "tabels: {}\ntables:"),
        "two.yaml",
    )
    with pytest.raises(ProfileError) as raised:
        load_profile(several)
    first = problems(several)[0]
    assert str(raised.value) == f"{first} (and 1 more: cutover profile check)"
    assert "\n" not in str(raised.value)


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schema_column_types_are_the_legacy_ones() -> None:
    assert (
        tuple(schema()["$defs"]["table"]["properties"]["columns"]["additionalProperties"]["enum"])
        == COLUMN_TYPES
    )


def test_the_schema_ships_with_the_package() -> None:
    assert profile_check.SCHEMA.parent == Path(profile_check.__file__).resolve().parent
    assert profile_check.SCHEMA.is_file()


@pytest.mark.parametrize("module", [profile_check, profile_rules], ids=lambda m: m.__name__)
def test_doctests(module: object) -> None:
    failures, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried
    assert not failures


def test_csv_options_need_a_csv_source_and_aliases_name_one_column(tmp_path: Path) -> None:
    own = "    key: payer_id\n    csv: {aliases: {payer_name: [name, payer_id]}, encoding: cp1252}\n"
    text = MINI.replace("    key: payer_id\n", own)
    path = write(tmp_path, text)
    at = line_of(text, "    csv: {aliases")
    assert problems(path) == [
        f"{path}:{at}: tables.payers.csv: csv options in a profile whose source format is not csv",
        f"{path}:{at}: tables.payers.csv.aliases.payer_name: the header name payer_id already means another column",
    ]
    csv = write(
        tmp_path, text.replace("profile: mini\n", "profile: mini\nsource: {format: csv}\n"), "csv.yaml"
    )
    assert [p.split(": ", 1)[1] for p in problems(csv)] == [
        "tables.payers.csv.aliases.payer_name: the header name payer_id already means another column"
    ]
    bad = write(tmp_path, text.replace("encoding: cp1252", "encoding: latin9"), "bad.yaml")
    assert any("tables.payers.csv.encoding" in p for p in problems(bad))
