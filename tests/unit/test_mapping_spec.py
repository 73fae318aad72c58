"""The specs account for every legacy column, and the auditor's document shows every field."""

from __future__ import annotations

from pathlib import Path

from cutover.legacy.schema import LEGACY_TABLES
from cutover.mapping.specs import NOT_CARRIED, SPECS
from cutover.report.mapping_spec import to_html, to_markdown


def test_every_legacy_table_has_a_spec_in_load_order() -> None:
    assert list(SPECS) == list(LEGACY_TABLES)


def test_every_legacy_column_is_mapped_or_listed_as_not_carried() -> None:
    for table, legacy in LEGACY_TABLES.items():
        spec = SPECS[table]
        unmapped = set(legacy.column_names) - spec.sources
        assert unmapped == set(NOT_CARRIED.get(table, {})), table
        assert spec.sources <= set(legacy.column_names) | {"cpt_code", "seq"}, table


def test_references_follow_the_legacy_relations() -> None:
    for table, spec in SPECS.items():
        relations = set(LEGACY_TABLES[table].parents)
        for ref in spec.refs:
            assert (ref.source, ref.parent) in relations, (table, ref)


def test_document_shows_every_field_source_and_dropped_column() -> None:
    md = to_markdown()
    for spec in SPECS.values():
        assert f"`pt.{spec.target}` ← legacy `{spec.legacy}`" in md
        for field in spec.fields:
            assert f"| `{field.name}` | {field.type} |" in md
            for source in field.sources:
                assert f"`{spec.legacy}.{source}`" in md
        for column in NOT_CARRIED.get(spec.legacy, {}):
            assert f"`{spec.legacy}.{column}`" in md
    page = to_html()
    assert page.startswith("<!DOCTYPE html>")  # the shared base layout's
    assert "<script" not in page
    assert page.count("<table>") == len(SPECS)


def test_document_names_its_profile_and_the_fields_it_assumes(tmp_path: Path) -> None:
    from cutover.legacy.profile import load_profile, simulator

    md = to_markdown(simulator())
    assert "Legacy profile **simulator**" in md
    assert f"SHA-256 `{simulator().sha256}`" in md
    assert "Fields resting on an assumption about the source: none." in md
    edited = tmp_path / "sim.yaml"
    text = Path(simulator().origin).read_text()
    edited.write_text(
        text.replace("mrn: {from: mrn, rule: text}", "mrn: {from: mrn, rule: text, assumed: true}")
    )
    profile = load_profile(edited)
    md = to_markdown(profile)
    assert profile.sha256 != simulator().sha256
    assert f"SHA-256 `{profile.sha256}`" in md
    assert "Fields resting on an assumption about the source: `patient.mrn`." in md
    assert "| `mrn` | text | `patients.mrn` | " in md
    assert "**assumed** about the source" in md
