"""The assessment: profiles of every legacy table plus every check, as an HTML page and its JSON twin.

:func:`run_assessment` profiles the tables and runs :data:`~cutover.assess.checks.CHECKS`;
:func:`write_report` writes ``assessment.html`` (one self-contained page from the autoescaped Jinja2
template ``cutover/report/templates/assessment.html.j2`` on the shared base layout: inline CSS, no
scripts, no external assets) and ``assessment.json`` (the same content, for machines and for
diffing two assessments). Neither holds a patient value: the
profiles show values only for the allowed code columns (seen at least five times), and the checks
carry counts and legacy ids.
"""

from __future__ import annotations

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
from cutover.report.templates import render

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


def _n(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def _sev(severity: str, count: int) -> str:
    """The class and label of a check's severity badge: clean when it found nothing."""
    return severity if count else "clean"


def _pairs(items: Sequence[tuple[str, int]]) -> list[tuple[str, str]]:
    return [(k, _n(v)) for k, v in items]


def _summary(a: Assessment) -> dict[str, Any]:
    sums = a.summaries()
    by_sev = {s: sum(1 for x in sums if x.severity == s and x.count) for s in SEVERITIES}
    return {
        "cards": [
            (_n(len(a.profiles)), "legacy tables"),
            (_n(sum(a.row_counts.values())), "legacy rows"),
            (_n(len(sums)), "checks run"),
            (_n(by_sev["error"]), "checks with errors"),
            (_n(by_sev["warning"]), "checks with warnings"),
            (_n(by_sev["info"]), "checks with notes"),
        ],
        "checks": [
            {
                "name": s.name,
                "title": s.title,
                "sev": _sev(s.severity, s.count),
                "count": _n(s.count),
                "places": f"{s.places} of {s.examined_places}",
            }
            for s in sums
        ],
    }


def _checks(a: Assessment) -> list[dict[str, Any]]:
    out = []
    for s in a.summaries():
        results = [r for r in a.checks if r.name == s.name]
        clean = [r for r in results if not r.count]
        out.append(
            {
                "name": s.name,
                "open": bool(s.count) and s.severity == "error",
                "title": s.title,
                "sev": _sev(s.severity, s.count),
                "count": _n(s.count),
                "explanation": s.explanation,
                "found": [
                    {
                        "table": r.table,
                        "column": r.column or "",
                        "count": _n(r.count),
                        "examined": f"{_n(r.examined)} ({_pct(r.count, r.examined)})",
                        "examples": ", ".join(map(str, r.examples)),
                    }
                    for r in results
                    if r.count
                ],
                "clean": ", ".join(f"{r.table}.{r.column}" if r.column else r.table for r in clean),
            }
        )
    return out


def _range(c: ColumnProfile) -> tuple[str, str | None]:
    """A column's range (integers) or its lengths, and the mean length when there is one."""
    if c.logical_type == "int":
        return ("" if c.min_value is None else f"{_n(c.min_value)} – {_n(c.max_value or 0)}", None)
    if c.min_length is None:
        return ("", None)
    unit = "bytes" if c.logical_type == "blob" else "chars"
    return (f"{_n(c.min_length)} – {_n(c.max_length or 0)} {unit}", str(c.mean_length))


def _column(c: ColumnProfile) -> dict[str, Any]:
    """One profiled column as the page shows it; its values only where the privacy policy shows them."""
    return {
        "column": c.column,
        "phi": c.phi,
        "type": c.logical_type,
        "empty": _pct(c.empty, c.rows),
        "spellings": _pairs(c.empty_spellings) if c.empty else [],
        "distinct": ("≈ " if c.distinct_method == "approximate" else "") + _n(c.distinct),
        "estimate": c.distinct_method != "exact",
        "range": _range(c),
        "patterns": _pairs(c.patterns),
        "other_patterns": _n(c.other_patterns) if c.other_patterns else None,
        "policy": c.values_policy,
        "shown": _pairs(c.values) if c.values_policy not in ("phi", "key", "id") else [],
        "hidden_rare": _n(c.hidden_rare) if c.hidden_rare else None,
    }


def render_html(assessment: Assessment) -> str:
    """The assessment as one self-contained HTML page."""
    a = assessment
    return render(
        "assessment.html.j2",
        generated_at=a.generated_at,
        legacy_dialect=a.legacy_dialect,
        reference_date=a.reference_date,
        timing=", ".join(f"{k} {v:.1f} s" for k, v in a.timings.items()),
        summary=_summary(a),
        checks=_checks(a),
        row_counts=[(t, _n(n)) for t, n in a.row_counts.items()],
        min_count=MIN_COUNT,
        profiles=[
            {
                "table": p.table,
                "rows": _n(p.rows),
                "columns": len(p.columns),
                "key": p.key,
                "profiled": [_column(c) for c in p.columns],
            }
            for p in a.profiles
        ],
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
