"""The mapping specification for auditors, generated from a legacy profile (:mod:`cutover.legacy.profile`).

It names the profile and the SHA-256 of its files, then for every target table: its legacy source,
its parent references, and for every target field its source column(s), the rule that normalises
them, what a bad value does, and whether the field rests on an assumption about the source; then
the row checks and the code crosswalk's provenance. Markdown and a self-contained HTML page.
"""

from __future__ import annotations

import html
from pathlib import Path

from cutover.legacy.profile import Profile, current
from cutover.mapping.engine import TableSpec
from cutover.mapping.normalize import GEM_SOURCE


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


def to_html(profile: Profile | None = None) -> str:
    """The same document as a self-contained HTML page (no external assets)."""
    body: list[str] = []
    for line in to_markdown(profile).splitlines():
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("|---"):
            continue
        elif line.startswith("| target field"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
        elif line.startswith("| "):
            cells = [c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")]
            body.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells) + "</tr>")
        elif line == "" and body and body[-1].startswith("<tr>"):
            body.append("</table>")
        elif line.startswith("- "):
            body.append(f"<li>{_inline(line[2:])}</li>")
        elif line:
            body.append(f"<p>{_inline(line)}</p>")
    style = (
        "body{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem}"
        "table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.3rem .5rem;"
        "vertical-align:top;text-align:left}th{background:#f0f3f7}code{background:#f5f5f5;padding:0 .2rem}"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Cutover mapping specification</title><style>{style}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def _inline(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)).replace("**", "")


def write_mapping_spec(folder: Path) -> list[Path]:
    """Write ``mapping_spec.md`` and ``mapping_spec.html`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    md, page = folder / "mapping_spec.md", folder / "mapping_spec.html"
    md.write_text(to_markdown())
    page.write_text(to_html())
    return [md, page]
