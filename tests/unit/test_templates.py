"""The pages the evidence carries are rendered from Jinja2 templates: autoescaped, strict about
missing variables, shipped in the package, and every page on the one base layout.

A hostile name (``<script>``) planted where each page takes a table name or an id must come out
escaped or withheld, never as markup.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
import pytest

from cutover.report import migration_report
from cutover.report.migration_report import render_report
from cutover.report.templates import environment, render

HOSTILE = "<script>alert('x')</script>"
PAGES = ("migration_report.html.j2", "assessment.html.j2", "mapping_spec.html.j2")
"""Every page template; each extends the base layout."""


def _assert_inert(page: str) -> None:
    """No markup of the hostile value: neither the element nor an attribute or URL it could carry."""
    assert "<script" not in page.lower()
    assert "alert(" not in page or "&lt;script&gt;" in page  # shown escaped at most, never live


def test_environment_autoescapes_and_is_strict() -> None:
    env = environment()
    assert env.autoescape is True
    assert env.undefined is jinja2.StrictUndefined
    page = env.from_string("<p>{{ v }}</p>").render(v=HOSTILE)
    assert page == "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</p>"
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("<p>{{ v }}</p>").render()


def test_a_missing_variable_is_an_error_not_an_empty_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    views: list[dict[str, Any]] = []
    monkeypatch.setattr(migration_report, "render", lambda name, **view: views.append(view) or "")
    render_report(tmp_path)
    (view,) = views
    assert render("migration_report.html.j2", **view)  # the whole view model renders
    for name in ("cards", "rows", "contents"):
        partial = {k: v for k, v in view.items() if k != name}
        with pytest.raises(jinja2.UndefinedError, match=name):
            render("migration_report.html.j2", **partial)


def test_templates_ship_with_the_package_and_every_page_uses_the_base_layout() -> None:
    folder = files("cutover.report") / "templates"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".j2"))
    assert {"base.html.j2", "macros.html.j2", "style.css.j2", *PAGES} <= set(names)
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["cutover"]
    for name in names:
        assert any(fnmatch.fnmatch(f"report/templates/{name}", p) for p in patterns), name
    for page in PAGES:
        source = (folder / page).read_text()
        assert '{% extends "base.html.j2" %}' in source, page
        assert "<style" not in source, page  # the layout's one stylesheet only
        assert "<script" not in source, page
    base = (folder / "base.html.j2").read_text()
    assert "<script" not in base
    assert "http" not in base + (folder / "style.css.j2").read_text()  # nothing fetched


def _write(folder: Path, name: str, data: object) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_report_escapes_or_withholds_a_hostile_table_name_and_id(tmp_path: Path) -> None:
    row = {"legacy_rows": 5, "migrated": 3, "merged": 1, "rejected": 1}
    _write(
        tmp_path,
        "summary.json",
        {
            "run_id": HOSTILE,
            "dag_id": "pt_cutover",
            "tables": {HOSTILE: row, "patients": row},
            "reject_reasons": {HOSTILE: {HOSTILE: 1}},
            "reject_policy": {HOSTILE: {"ok": False, "limit": 0.01}},
            "root_causes": [
                {
                    "root_table": HOSTILE,
                    "root_reason": HOSTILE,
                    "root_detail": HOSTILE,
                    "roots": 1,
                    "rows": {},
                }
            ],
            "remediation": {"open": 2, "corrected": 0, "accepted": 0, "closed": 1},
        },
    )
    (tmp_path / "remediation.csv").write_text(
        "legacy_table,legacy_id,field,reason,dependants,status,opened_run,decided_by\n"
        + ",".join(f'"{HOSTILE}"' for _ in range(4))
        + f',7,open,"{HOSTILE}",\n'
        + 'patients,83,"dob,created",date_impossible,31,open,manual__2026-11-27T18:00:00+00:00,\n'
    )
    _write(
        tmp_path,
        "gates/mapped.json",
        {
            "gate": HOSTILE,
            "passed": False,
            "results": [
                {
                    "table": HOSTILE,
                    "expectation": HOSTILE,
                    "severity": "warning",
                    "threshold": 0,
                    "unexpected_share": 0.5,
                    "rule": HOSTILE,
                    "failing_ids": [HOSTILE, "42"],
                }
            ],
        },
    )
    _write(tmp_path, "timings.json", {"stages": {HOSTILE: {"rows": 1, "seconds": 1.0}}})
    page = render_report(tmp_path)
    _assert_inert(page)
    assert "alert" not in page  # withheld outright: a table name, a reason, a rule, an id, a gate
    assert "withheld" in page
    assert "<span class='ids'>42</span> <span class='muted'>+1 more</span>" in page
    # the remediation worklist: a hostile row withheld field by field, a plain one shown
    assert "2 open, 0 corrected awaiting a run, 0 accepted as not carried, 1 closed" in page
    assert "<span class='ids'>83</span>" in page
    assert "<code>dob</code>, <code>created</code>" in page
    assert "<td class='n'>31</td>" in page


def test_assessment_escapes_a_hostile_table_column_and_value_and_never_shows_a_phi_value() -> None:
    from cutover.assess import Assessment, CheckResult, render_html
    from cutover.assess.profile import ColumnProfile, TableProfile

    def column(name: str, policy: str) -> ColumnProfile:
        return ColumnProfile(
            column=name,
            logical_type="text",
            phi=policy == "phi",
            rows=10,
            nulls=0,
            null_tokens=0,
            distinct=1,
            distinct_method="exact",
            values_policy=policy,
            values=[(HOSTILE, 10)],
            patterns=[(HOSTILE, 10)],
        )

    profile = TableProfile(
        HOSTILE, HOSTILE, 10, [column(HOSTILE, "shown"), column("pat_name", "phi")], 1, 0.0
    )
    check = CheckResult(
        name="orphans",
        title=HOSTILE,
        table=HOSTILE,
        count=1,
        examples=[7],
        severity="error",
        explanation=HOSTILE,
        column=HOSTILE,
        examined=10,
    )
    page = render_html(Assessment("now", "2026-01-01", "sqlite", {HOSTILE: 10}, [profile], [check], {}))
    _assert_inert(page)
    assert "id='table-&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;'" in page
    assert "PHI: values never shown" in page
    # the PHI column's values never reach the template: one shown column's value, one pattern per column
    assert page.count("<code>&lt;script&gt;") == 3


def test_mapping_spec_escapes_a_hostile_name_from_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    from cutover.report import mapping_spec

    real = mapping_spec.to_markdown()
    planted = real.replace("`pt.patient`", f"`pt.{HOSTILE}`", 1) + f"\n- **{HOSTILE}**: {HOSTILE}\n"
    monkeypatch.setattr(mapping_spec, "to_markdown", lambda profile=None: planted)
    page = mapping_spec.to_html()
    _assert_inert(page)
    assert "<code>pt.&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</code>" in page
    assert "<li>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;: &lt;script&gt;" in page
