"""The mapping specification for auditors, generated from a legacy profile (:mod:`cutover.legacy.profile`).

It names the profile and the SHA-256 of its files, then for every target table: its legacy source,
its parent references, and for every target field its source column(s), the rule that normalises
them, what a bad value does, and whether the field rests on an assumption about the source; then
the row checks and the code crosswalk's provenance. Markdown, and a self-contained HTML page laid out
from it by the Jinja2 template ``templates/mapping_spec.html.j2`` on the report's base layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cutover.legacy.profile import Profile, current
from cutover.mapping.engine import TableSpec
from cutover.mapping.normalize import GEM_SOURCE
from cutover.report.templates import render


def _ref_line(spec: TableSpec) -> list[str]:
    lines = []
    for ref in spec.refs:
        if ref.required:
            policy = "required: a missing parent rejects the row (ref_missing, orphan, parent_rejected)"
        elif ref.strict:
            policy = "optional; a given id that does not resolve rejects the row (orphan)"
        else:
            policy = f"optional; an id that does not resolve becomes NULL, flagged {ref.column}_unresolved"
        assumed = "; **assumed**" if ref.assumed else ""
        lines.append(f"`{ref.column}` ← `{spec.legacy}.{ref.source}` → `{ref.parent}` ({policy}{assumed})")
    return lines


def _bad_value(spec: TableSpec, required: bool, invalid: str, assumed: bool = False) -> str:
    from cutover.target import SAFETY_TABLES

    parts = ["**assumed** about the source"] if assumed else []
    if required:
        parts.append("required")
    if spec.target in SAFETY_TABLES and invalid == "reject":
        parts.append("never rejects (the rule takes every value)")  # the profile check holds it so
    else:
        parts.append("invalid → reject" if invalid == "reject" else "invalid → NULL, flagged")
    return "; ".join(parts)


def to_markdown(profile: Profile | None = None) -> str:
    """The specification of ``profile`` (default: the profile in use)."""
    from cutover.target import SAFETY_TABLES

    profile = profile or current()
    specs: dict[str, TableSpec] = profile.specs
    assumed = [f"`{spec.target}.{f.name}`" for spec in specs.values() for f in spec.fields if f.assumed] + [
        f"`{spec.target}.{r.column}`" for spec in specs.values() for r in spec.refs if r.assumed
    ]
    out = [
        "# Cutover mapping specification",
        "",
        f"Legacy profile **{profile.name}**" + (f" ({profile.title})" if profile.title else "") + ",",
        f"SHA-256 `{profile.sha256}`. Generated from the profile; do not edit by hand.",
        "Every legacy row ends as exactly one of: migrated, merged into a surviving duplicate, rejected with",
        "a reason code. Target ids are deterministic: `migration.legacy_uuid(system, legacy table, legacy id)`.",
        "",
        "Fields resting on an assumption about the source: "
        + (", ".join(assumed) if assumed else "none")
        + ".",
        "",
    ]
    for spec in specs.values():
        out += [f"## `pt.{spec.target}` ← legacy `{spec.legacy}` (key `{spec.key}`)", "", spec.doc, ""]
        if spec.target in SAFETY_TABLES:
            out += [
                "A patient-safety record: never rejected on its own, only with its patient (the profile check "
                "holds every field and reference below to that); the reconciliation's `chart_safety` fails the "
                "run when a migrated patient's records did not all arrive.",
                "",
            ]
        if spec.merge_same:
            within, *same = spec.merge_same
            out += [
                f"Records of one `{within.removeprefix('ref_')}` whose "
                + ", ".join(f"`{c}`" for c in same)
                + " are equal (text compared without ASCII letter case) are one record entered more than once: "
                "merged into the lowest legacy id (crosswalk outcome `merged`), every legacy id kept in "
                "`source_records`.",
                "",
            ]
        elif spec.merges:
            out += ["Duplicates are merged into one surviving record (crosswalk outcome `merged`).", ""]
        if spec.explode is not None:
            out += [f"One legacy row → several target rows: {spec.explode.title}.", ""]
        refs = _ref_line(spec)
        if refs:
            out += ["References:", "", *[f"- {line}" for line in refs], ""]
        out += ["| target field | type | source | rule | bad value |", "|---|---|---|---|---|"]
        for f in spec.fields:
            sources = ", ".join(f"`{spec.legacy}.{s}`" for s in f.sources)
            rule = f.rule.title.replace("|", "\\|")
            out.append(
                f"| `{f.name}` | {f.type} | {sources} | {rule} | {_bad_value(spec, f.required, f.invalid, f.assumed)} |"
            )
        out.append("")
        dropped = profile.not_carried.get(spec.legacy, {})
        if dropped:
            out += ["Legacy columns not carried:", ""]
            out += [f"- `{spec.legacy}.{column}`: {why}" for column, why in dropped.items()]
            out.append("")
        if spec.checks or spec.load_flags:
            out += ["Row checks:", ""]
            out += [f"- `{c.code}` ({c.action}): {c.title}" for c in spec.checks]
            out += [f"- `{c.code}` (flag, checked against the target): {c.title}" for c in spec.load_flags]
            out.append("")
    out += ["## Code crosswalk provenance", ""]
    out += [f"- **{k}**: {v}" for k, v in GEM_SOURCE.items()]
    return "\n".join(out) + "\n"


Inline = list[tuple[bool, str]]
"""A line of the Markdown as the page shows it: (is code, text) runs, the emphasis marks dropped."""


def _inline(text: str) -> Inline:
    """The runs of a Markdown line: backticks open and close code.

    >>> _inline("`pt.patient` ← legacy **patients**")
    [(False, ''), (True, 'pt.patient'), (False, ' ← legacy patients')]
    """
    return [(i % 2 == 1, part.replace("**", "")) for i, part in enumerate(text.split("`"))]


def _blocks(markdown: str) -> tuple[str, list[dict[str, Any]]]:
    """The document's title and its blocks (headings, paragraphs, lists, field tables), read from the
    Markdown twin so that the two pages cannot say different things."""
    title = ""
    blocks: list[dict[str, Any]] = []
    for line in markdown.splitlines():
        last = blocks[-1] if blocks else None
        if line.startswith("# "):
            title = line[2:]
        elif line.startswith("## "):
            blocks.append({"kind": "h2", "text": _inline(line[3:])})
        elif line.startswith("|---"):
            continue
        elif line.startswith("| target field"):
            blocks.append(
                {"kind": "table", "head": [c.strip() for c in line.strip("|").split("|")], "rows": []}
            )
        elif line.startswith("| ") and last is not None and last["kind"] == "table":
            last["rows"].append(
                [_inline(c.strip().replace("\\|", "|")) for c in line.strip("|").split(" | ")]
            )
        elif line.startswith("- "):
            if last is None or last["kind"] != "ul":
                blocks.append(last := {"kind": "ul", "items": []})
            last["items"].append(_inline(line[2:]))
        elif line:
            blocks.append({"kind": "p", "text": _inline(line)})
    return title, blocks


def to_html(profile: Profile | None = None) -> str:
    """The same document as a self-contained HTML page (no external assets), on the report's layout."""
    profile = profile or current()
    title, blocks = _blocks(to_markdown(profile))
    return render("mapping_spec.html.j2", title=title, profile=profile.name, blocks=blocks)


def write_mapping_spec(folder: Path) -> list[Path]:
    """Write ``mapping_spec.md`` and ``mapping_spec.html`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    md, page = folder / "mapping_spec.md", folder / "mapping_spec.html"
    md.write_text(to_markdown())
    page.write_text(to_html())
    return [md, page]
