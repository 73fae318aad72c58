"""The assessment: profiles of every legacy table plus every check, as an HTML page and its JSON twin.

:func:`run_assessment` profiles the tables and runs :data:`~cutover.assess.checks.CHECKS`;
:func:`write_report` writes ``assessment.html`` (one self-contained page: inline CSS, no scripts,
no external assets, every string escaped with :func:`html.escape`) and ``assessment.json`` (the
same content, for machines and for diffing two assessments). Neither holds a patient value: the
profiles show values only for the allowed code columns (seen at least five times), and the checks
carry counts and legacy ids.
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from cutover.assess.checks import CHECKS, SEVERITIES, Check, CheckResult, run_checks
from cutover.assess.privacy import MIN_COUNT
from cutover.assess.profile import ColumnProfile, TableProfile, profile_table
from cutover.legacy.profile import legacy_tables
from cutover.legacy.source import dialect_of

log = logging.getLogger(__name__)

REPORT_FILES: Final = ("assessment.html", "assessment.json")
FORMAT_VERSION: Final = 1


@dataclass(frozen=True)
class CheckSummary:
    """One check over all the places it looked."""

    name: str
    title: str
    severity: str
    explanation: str
    count: int
    places: int
    """Places (table, column) with at least one finding."""
    examined_places: int


@dataclass(frozen=True)
class Assessment:
    """Everything the report shows: profiles, check results, legacy row counts, when and how long."""

    generated_at: str
    """UTC, ISO 8601."""
    reference_date: str
    """The day date checks judged against (two-digit years, dates in the future)."""
    legacy_dialect: str
    row_counts: dict[str, int]
    profiles: list[TableProfile]
    checks: list[CheckResult]
    timings: dict[str, float] = field(default_factory=dict)

    def summaries(self) -> list[CheckSummary]:
        """One line per check, in the order the checks ran."""
        out: dict[str, CheckSummary] = {}
        for r in self.checks:
            s = out.get(r.name)
            out[r.name] = CheckSummary(
                name=r.name,
                title=r.title,
                severity=r.severity,
                explanation=r.explanation,
                count=(s.count if s else 0) + r.count,
                places=(s.places if s else 0) + (1 if r.count else 0),
                examined_places=(s.examined_places if s else 0) + 1,
            )
        return list(out.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "generated_at": self.generated_at,
            "reference_date": self.reference_date,
            "legacy_dialect": self.legacy_dialect,
            "privacy": {
                "values_shown_for": "code columns only (cutover.assess.privacy.CODE_COLUMNS)",
                "min_count": MIN_COUNT,
            },
            "row_counts": self.row_counts,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "summary": [s.__dict__ for s in self.summaries()],
            "checks": [r.to_dict() for r in self.checks],
            "profiles": [p.to_dict() for p in self.profiles],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Assessment:
        return cls(
            generated_at=data["generated_at"],
            reference_date=data["reference_date"],
            legacy_dialect=data["legacy_dialect"],
            row_counts=dict(data["row_counts"]),
            profiles=[TableProfile.from_dict(p) for p in data["profiles"]],
            checks=[CheckResult.from_dict(c) for c in data["checks"]],
            timings=dict(data.get("timings", {})),
        )


def assemble(
    legacy_url: str,
    profiles: Sequence[TableProfile],
    checks: Sequence[CheckResult],
    *,
    reference_date: date,
    timings: dict[str, float] | None = None,
) -> Assessment:
    """An :class:`Assessment` from parts computed elsewhere (the DAG profiles each table in its own task)."""
    order = {name: i for i, name in enumerate(legacy_tables())}
    profiles = sorted(profiles, key=lambda p: order.get(p.table, len(order)))
    return Assessment(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        reference_date=reference_date.isoformat(),
        legacy_dialect=dialect_of(legacy_url),
        row_counts={p.table: p.rows for p in profiles},
        profiles=list(profiles),
        checks=list(checks),
        timings=dict(timings or {}),
    )


def run_assessment(
    legacy_url: str,
    *,
    tables: Iterable[str] | None = None,
    checks: Iterable[Check] = CHECKS,
    today: date | None = None,
    workers: int = 2,
) -> Assessment:
    """Profile every legacy table and run every check.

    ``tables``: profile only these (the checks always cover the whole schema). ``today``: the reference
    day for date checks (default: the machine's date; pass the run's date for a repeatable assessment).
    ``workers``: threads; the checks run beside the profiles (SQLite reads hold the GIL, so the gain on
    two cores is small: about 23 s -> 22 s for 1.07 M rows).
    """
    started = time.perf_counter()
    names = list(tables or legacy_tables())
    reference = today or date.today()
    timings: dict[str, float] = {}

    def checks_task() -> list[CheckResult]:
        began = time.perf_counter()
        results = run_checks(legacy_url, checks, today=reference)
        timings["checks"] = time.perf_counter() - began
        return results

    # Reading SQLite rows is Python work, Arrow kernels release the GIL: threads overlap them usefully.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        checked = pool.submit(checks_task)
        profiles = list(pool.map(lambda t: profile_table(legacy_url, t), names))
        results = checked.result()
    timings["profiles"] = sum(p.seconds for p in profiles)
    timings["total"] = time.perf_counter() - started
    log.info(
        "assessed %d tables, %d rows: %d check results, %.1fs",
        len(profiles),
        sum(p.rows for p in profiles),
        len(results),
        timings["total"],
    )
    return assemble(legacy_url, profiles, results, reference_date=reference, timings=timings)


# --- rendering ----------------------------------------------------------------------------------


def render_json(assessment: Assessment) -> str:
    return json.dumps(assessment.to_dict(), indent=2, ensure_ascii=False) + "\n"


_CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}main{padding:8px 28px 40px;max-width:1400px}
h2{margin:28px 0 10px;font-size:18px;border-bottom:1px solid #d5dae1;padding-bottom:4px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-top:16px}
.card{background:#fff;border:1px solid #d5dae1;border-radius:6px;padding:10px 16px;min-width:130px}
.card b{display:block;font-size:22px}.card span{color:#5b6675;font-size:12px}
table{border-collapse:collapse;background:#fff;width:100%;margin:6px 0 14px}
th,td{border:1px solid #e1e5ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}table.narrow{width:auto;min-width:320px}td.n{text-align:right;font-variant-numeric:tabular-nums}
.sev{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.error{background:#fbe3e4;color:#9b1c23}.warning{background:#fff1d6;color:#8a5300}
.info{background:#e3eefc;color:#1f4f8f}.clean{background:#e4f4e8;color:#1e6b34}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre;background:#f1f3f6;
padding:0 3px;border-radius:3px}ul.kv{margin:0;padding:0;list-style:none}ul.kv li{white-space:nowrap}
details{background:#fff;border:1px solid #d5dae1;border-radius:6px;margin:8px 0;padding:6px 12px}
summary{cursor:pointer;font-weight:600}.muted{color:#6b7785}.phi{color:#9b1c23;font-weight:600}
.ids{font:12px ui-monospace,monospace;color:#394556}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def _sev(severity: str, count: int) -> str:
    if count == 0:
        return '<span class="sev clean">clean</span>'
    return f'<span class="sev {_e(severity)}">{_e(severity)}</span>'


def _pairs(items: Sequence[tuple[str, int]], *, code: bool) -> str:
    if not items:
        return ""
    rows = "".join(
        f"<li>{f'<code>{_e(k)}</code>' if code else _e(k)} <span class='muted'>{_n(v)}</span></li>"
        for k, v in items
    )
    return f'<ul class="kv">{rows}</ul>'


def _summary_html(a: Assessment) -> str:
    sums = a.summaries()
    by_sev = {s: sum(1 for x in sums if x.severity == s and x.count) for s in SEVERITIES}
    cards = [
        (_n(len(a.profiles)), "legacy tables"),
        (_n(sum(a.row_counts.values())), "legacy rows"),
        (_n(len(sums)), "checks run"),
        (_n(by_sev["error"]), "checks with errors"),
        (_n(by_sev["warning"]), "checks with warnings"),
        (_n(by_sev["info"]), "checks with notes"),
    ]
    cards_html = "".join(f'<div class="card"><b>{v}</b><span>{_e(k)}</span></div>' for v, k in cards)
    rows = "".join(
        f"<tr><td><a href='#check-{_e(s.name)}'>{_e(s.title)}</a><br><span class='muted'>{_e(s.name)}</span></td>"
        f"<td>{_sev(s.severity, s.count)}</td><td class='n'>{_n(s.count)}</td>"
        f"<td class='n'>{s.places} of {s.examined_places}</td></tr>"
        for s in sums
    )
    return (
        f'<div class="cards">{cards_html}</div><h2>Checks</h2>'
        "<table><tr><th>Check</th><th>Severity</th><th>Rows</th><th>Places with findings</th></tr>"
        f"{rows}</table>"
    )


def _checks_html(a: Assessment) -> str:
    parts = []
    for s in a.summaries():
        results = [r for r in a.checks if r.name == s.name]
        found = [r for r in results if r.count]
        clean = [r for r in results if not r.count]
        body = ""
        if found:
            body += (
                "<table><tr><th>Table</th><th>Column</th><th>Rows</th><th>Of rows examined</th>"
                "<th>Example legacy ids</th></tr>"
                + "".join(
                    f"<tr><td>{_e(r.table)}</td><td>{_e(r.column or '')}</td><td class='n'>{_n(r.count)}</td>"
                    f"<td class='n'>{_n(r.examined)} ({_pct(r.count, r.examined)})</td>"
                    f"<td class='ids'>{_e(', '.join(map(str, r.examples)))}</td></tr>"
                    for r in found
                )
                + "</table>"
            )
        if clean:
            places = ", ".join(f"{r.table}.{r.column}" if r.column else r.table for r in clean)
            body += f"<p class='muted'>Checked and clean: {_e(places)}</p>"
        parts.append(
            f"<details id='check-{_e(s.name)}'{' open' if s.count and s.severity == 'error' else ''}>"
            f"<summary>{_e(s.title)} {_sev(s.severity, s.count)} <span class='muted'>{_n(s.count)} rows</span>"
            f"</summary><p>{_e(s.explanation)}</p>{body}</details>"
        )
    return "<h2>Check details</h2>" + "".join(parts)


def _range(c: ColumnProfile) -> str:
    if c.logical_type == "int":
        return "" if c.min_value is None else f"{_n(c.min_value)} – {_n(c.max_value or 0)}"
    if c.min_length is None:
        return ""
    unit = "bytes" if c.logical_type == "blob" else "chars"
    return f"{_n(c.min_length)} – {_n(c.max_length or 0)} {unit}<br><span class='muted'>mean {c.mean_length}</span>"


def _values_cell(c: ColumnProfile) -> str:
    if c.values_policy == "phi":
        return "<span class='phi'>PHI: values never shown</span>"
    if c.values_policy == "key":
        return "<span class='muted'>key (unique ids)</span>"
    if c.values_policy == "id":
        return "<span class='muted'>ids leading to a patient: frequencies not listed</span>"
    out = _pairs(c.values, code=True)
    if c.hidden_rare:
        out += (
            f"<span class='muted'>{_n(c.hidden_rare)} rows with values seen &lt; {MIN_COUNT}× hidden</span>"
        )
    return out


def _profile_html(p: TableProfile) -> str:
    rows = []
    for c in p.columns:
        empty = _pct(c.empty, c.rows)
        spell = _pairs(c.empty_spellings, code=True) if c.empty else ""
        distinct = ("≈ " if c.distinct_method == "approximate" else "") + _n(c.distinct)
        patterns = _pairs(c.patterns, code=True)
        if c.other_patterns:
            patterns += f"<span class='muted'>{_n(c.other_patterns)} rows in other patterns</span>"
        flag = " <span class='phi'>PHI</span>" if c.phi else ""
        rows.append(
            f"<tr><td><b>{_e(c.column)}</b>{flag}</td><td>{_e(c.logical_type)}</td>"
            f"<td class='n'>{empty}{spell}</td><td class='n'>{distinct}"
            f"{'' if c.distinct_method == 'exact' else '<br><span class=muted>estimate</span>'}</td>"
            f"<td>{_range(c)}</td><td>{patterns}</td><td>{_values_cell(c)}</td></tr>"
        )
    return (
        f"<details id='table-{_e(p.table)}'><summary>{_e(p.table)} <span class='muted'>{_n(p.rows)} rows, "
        f"{len(p.columns)} columns, key {_e(p.key)}</span></summary>"
        "<table><tr><th>Column</th><th>Type</th><th>Empty (NULL or null token)</th><th>Distinct</th>"
        "<th>Length / range</th><th>Patterns</th><th>Frequent values</th></tr>"
        + "".join(rows)
        + "</table></details>"
    )


def render_html(assessment: Assessment) -> str:
    """The assessment as one self-contained HTML page."""
    a = assessment
    counts = "".join(f"<tr><td>{_e(t)}</td><td class='n'>{_n(n)}</td></tr>" for t, n in a.row_counts.items())
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in a.timings.items())
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Pre-migration assessment</title><style>{_CSS}</style></head><body>"
        "<header><h1>Pre-migration assessment of the legacy practice system</h1>"
        f"<p>Generated {_e(a.generated_at)} · legacy database: {_e(a.legacy_dialect)} · dates judged "
        f"against {_e(a.reference_date)}{' · ' + _e(timing) if timing else ''}</p></header><main>"
        + _summary_html(a)
        + _checks_html(a)
        + "<h2>Legacy tables</h2><table class='narrow'><tr><th>Table</th><th>Rows</th></tr>"
        + counts
        + "</table><h2>Profiles</h2>"
        + f"<p class='muted'>Patterns: A upper-case letter, a lower-case letter, 9 digit, ^ control "
        "character, punctuation and spaces as written; runs of more than four letters are shortened to four, "
        "only the first 40 characters are read (… marks more). Values are shown only for code columns, and "
        f"only values seen at least {MIN_COUNT} times; PHI columns show patterns and counts only.</p>"
        + "".join(_profile_html(p) for p in a.profiles)
        + "</main></body></html>\n"
    )


def write_report(assessment: Assessment, folder: Path) -> list[Path]:
    """Write ``assessment.html`` and ``assessment.json`` into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in zip(REPORT_FILES, (render_html(assessment), render_json(assessment)), strict=True):
        path = folder / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    log.info("assessment report written: %s", ", ".join(p.name for p in written))
    return written
