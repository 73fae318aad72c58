"""The HTML migration report: one page an auditor reads to see what a cutover run did.

Rendered from whatever evidence the run folder holds — ``summary.json`` (rows per legacy table and
outcome, reject reasons, reject policy), ``gates/<gate>.json`` (validation gate results),
``reconciliation.json``, ``timings.json`` (stage timings, downtime against the window),
``sample_estimate.json``, ``defect_verification.json`` (simulated data only) — and linking to the
mapping specification, the GX data docs and the backup manifest. A file that is absent or
unreadable is named as such on the page, never silently skipped.

The page is self-contained (inline CSS and SVG, no script, no external asset) and carries ids,
codes and counts only: it reads known fields of the evidence files, never free text, and a string
that does not look like a code (a table, reason or expectation name) is withheld rather than shown.

This module decides what may appear and computes each section's view model; the Jinja2 template
``templates/migration_report.html.j2`` (on the shared ``base.html.j2``, autoescaped) lays it out.
Only the SVG charts, built and escaped here, pass to it as markup.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from markupsafe import Markup

from cutover.report.templates import render

log = logging.getLogger(__name__)

REPORT: Final = "report.html"

Status = Literal["pass", "warn", "fail"]

ARTIFACTS: Final[tuple[tuple[str, str, bool], ...]] = (
    ("summary.json", "run summary: legacy rows per table and outcome, reject reasons and policy", True),
    ("mapping_spec.html", "mapping specification (HTML; Markdown twin mapping_spec.md)", True),
    ("gates", "validation gate results (gates/<gate>.json)", True),
    ("data_docs", "Great Expectations data docs site", True),
    ("reconciliation.json", "reconciliation, source to target, per table and per patient", True),
    ("timings.json", "stage timings and downtime against the cutover window", True),
    ("safety_worklist.csv", "rejected patients holding safety records, most first (ids and counts)", False),
    (
        "remediation.csv",
        "remediation worklist: root rejects not yet closed, most costly first (ids only)",
        False,
    ),
    ("remediation_report.json", "a remediation run: what became of the corrected rows (pt_remediate)", False),
    ("duplicate_review.csv", "ambiguous duplicate pairs left to a person (legacy ids and scores)", False),
    ("bundle.json", "this bundle's identity: DAG, run, version, previous version, linked evidence", True),
    (
        "backup_manifest.json",
        "legacy backup manifest (pt_backup's bundles; a cutover links its backup)",
        False,
    ),
    ("backup_verified.json", "backup restore test verdict (pt_backup's bundles)", False),
    ("sample_estimate.json", "estimate from a trial run on a sample", False),
    ("defect_verification.json", "planted defects against the simulator's ground truth (demo only)", False),
    ("assessment.html", "pre-migration assessment of the legacy database", False),
)
"""Evidence the report looks for: (name, what it is, expected in every cutover bundle)."""

_CODE = re.compile(r"^[A-Za-z0-9_.:/#@+\-\[\]() ]{1,160}$")
_ID = re.compile(
    r"^(\d{1,19}(#\d{1,4})?|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[A-Za-z]{1,8}[-_]?\d{1,19})$"
)
"""What a record id looks like: a legacy key (``42``, ``42#2`` for an exploded row's part, ``P-00042``)
or a target uuid. A failing id that looks like anything else is withheld."""

COLOURS: Final = {"migrated": "#2e8b57", "merged": "#3b6fb6", "rejected": "#c0392b", "unaccounted": "#9aa3ad"}


# --- reading the evidence --------------------------------------------------------------------------


class Evidence:
    """The evidence files of one folder, each read once; what is absent or unreadable is remembered."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.unreadable: list[str] = []

    def json(self, name: str) -> Any:
        path = self.folder / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            self.unreadable.append(name)
            log.warning("evidence file %s is not JSON; the report names it unreadable", name)
            return None

    def gates(self) -> dict[str, Any]:
        folder = self.folder / "gates"
        if not folder.is_dir():
            return {}
        found = {}
        for path in sorted(folder.glob("*.json")):
            data = self.json(f"gates/{path.name}")
            if isinstance(data, dict):
                found[str(data.get("gate") or path.stem)] = data
        return found

    def data_docs_index(self) -> str | None:
        """Relative path of the data docs' entry page: the shallowest ``index.html`` under ``data_docs/``."""
        folder = self.folder / "data_docs"
        pages = (
            sorted(folder.rglob("index.html"), key=lambda p: (len(p.parts), str(p)))
            if folder.is_dir()
            else []
        )
        return pages[0].relative_to(self.folder).as_posix() if pages else None

    def present(self, name: str) -> bool:
        path = self.folder / name
        return path.is_file() or (path.is_dir() and any(p.is_file() for p in path.rglob("*")))


# --- what may appear, decided here (the templates only lay it out) --------------------------------


@dataclass(frozen=True)
class Code:
    """A table, reason, stage or expectation name as the page may show it: ``text`` is None when the
    value did not look like a code and is withheld."""

    text: str | None


@dataclass(frozen=True)
class Badge:
    status: str
    label: str


@dataclass(frozen=True)
class Ids:
    """The failing ids that look like ids (at most ``shown``), and how many more there were."""

    shown: tuple[str, ...]
    more: int


def _e(value: object) -> str:
    """Escaped for the SVGs this module builds itself (the templates escape everything else)."""
    return html.escape(str(value), quote=True)


def _code(value: object) -> Code:
    """A table, reason, stage or expectation name; anything that does not look like one is withheld.

    >>> _code("date_impossible"), _code("O'Brien, Mary")
    (Code(text='date_impossible'), Code(text=None))
    """
    text = str(value)
    return Code(text if _CODE.match(text) else None)


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _n(value: object) -> str:
    number = _num(value)
    if number is None:
        return "–"
    return f"{int(number):,}" if number == int(number) and abs(number) < 1e15 else f"{number:,.2f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "–"


def _duration(seconds: float | None) -> str:
    """A duration for people: seconds below a minute, else hours, minutes and seconds.

    >>> _duration(3725), _duration(42.5), _duration(None)
    ('1 h 2 min', '42.5 s', '–')
    """
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    return f"{h} h {m} min" if h else f"{m} min {sec} s"


def _badge(status: str, label: str | None = None) -> Badge:
    return Badge(status, label or status)


def _verdict(ok: bool, passed: str, failed: str) -> Badge:
    return Badge("pass", passed) if ok else Badge("fail", failed)


def _ids(ids: Any, shown: int = 10) -> Ids | None:
    if not isinstance(ids, list) or not ids:
        return None
    good = [str(i) for i in ids if isinstance(i, int | str) and _ID.match(str(i))]
    return Ids(tuple(good[:shown]), len(ids) - min(len(good), shown))


# --- SVG charts ------------------------------------------------------------------------------------


def outcome_bars(tables: dict[str, Any]) -> str:
    """Per legacy table, one bar of its legacy rows split into migrated, merged, rejected (and unaccounted).

    Each bar is scaled to its own table's legacy rows, so a table of 3 rows and one of 3 million read
    alike; the counts are printed beside the bar.
    """
    label_w, bar_w, text_w, row_h, top = 130, 560, 330, 24, 30
    width, height = label_w + bar_w + text_w, top + row_h * len(tables) + 10
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' role='img' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' aria-label='rows per legacy table and outcome'>"
    ]
    x = label_w
    for name, colour in COLOURS.items():
        parts.append(f"<rect x='{x}' y='8' width='12' height='12' fill='{colour}'/>")
        parts.append(f"<text x='{x + 16}' y='18'>{_e(name)}</text>")
        x += 110
    for i, (table, row) in enumerate(tables.items()):
        y = top + i * row_h
        legacy = _int(row.get("legacy_rows"))
        counts = {k: _int(row.get(k)) for k in ("migrated", "merged", "rejected")}
        counts["unaccounted"] = max(legacy - sum(counts.values()), 0)
        scale = bar_w / max(legacy, sum(counts.values()), 1)
        label = _e(table) if _CODE.match(table) else "withheld"
        parts.append(f"<text x='4' y='{y + 15}'>{label}</text>")
        parts.append(f"<rect x='{label_w}' y='{y + 3}' width='{bar_w}' height='16' fill='#eef1f5'/>")
        x0 = float(label_w)
        for outcome, count in counts.items():
            if count:
                w = max(count * scale, 1.0)
                parts.append(
                    f"<rect x='{x0:.1f}' y='{y + 3}' width='{w:.1f}' height='16' fill='{COLOURS[outcome]}'>"
                    f"<title>{label}: {count:,} {outcome}</title></rect>"
                )
                x0 += w
        text = f"{legacy:,} legacy · {counts['migrated']:,} / {counts['merged']:,} / {counts['rejected']:,}"
        if counts["unaccounted"]:
            text += f" · {counts['unaccounted']:,} unaccounted"
        parts.append(f"<text x='{label_w + bar_w + 8}' y='{y + 15}'>{_e(text)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def value_bars(values: dict[str, float], unit: Callable[[float], str], colour: str = "#3b6fb6") -> str:
    """Plain horizontal bars, one per key, scaled to the largest value."""
    label_w, bar_w, text_w, row_h = 130, 480, 200, 24
    width, height = label_w + bar_w + text_w, row_h * len(values) + 10
    top = max(values.values(), default=0.0) or 1.0
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' role='img' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>"
    ]
    for i, (name, value) in enumerate(values.items()):
        y = 5 + i * row_h
        w = max(bar_w * value / top, 1.0) if value else 0.0
        parts.append(f"<text x='4' y='{y + 15}'>{_e(name) if _CODE.match(name) else 'withheld'}</text>")
        parts.append(f"<rect x='{label_w}' y='{y + 3}' width='{w:.1f}' height='16' fill='{colour}'/>")
        parts.append(f"<text x='{label_w + w + 8:.1f}' y='{y + 15}'>{_e(unit(value))}</text>")
    parts.append("</svg>")
    return "".join(parts)


def window_gauge(downtime: float, window: float) -> str:
    """The cutover window as one bar, with the downtime laid over it from the window's start."""
    width, bar_w = 900, 860
    share = min(downtime / window, 1.0) if window else 1.0
    over = bool(window) and downtime > window
    colour = "#c0392b" if over else "#2e8b57"
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' role='img' width='{width}' height='64' viewBox='0 0 {width} 64' "
        "aria-label='downtime against the window'>"
        f"<rect x='20' y='10' width='{bar_w}' height='22' fill='#eef1f5' stroke='#9aa3ad'/>"
        f"<rect x='20' y='10' width='{max(bar_w * share, 1.0):.1f}' height='22' fill='{colour}'/>"
        f"<text x='20' y='52'>window start</text>"
        f"<text x='{20 + bar_w}' y='52' text-anchor='end'>window end ({_e(_duration(window))})</text>"
        f"<text x='{min(20 + bar_w * share + 6, 700):.1f}' y='26'>downtime {_e(_duration(downtime))}</text>"
        "</svg>"
    )


# --- sections: each returns its view model, or None where the evidence is absent -------------------


def _overview(summary: Any, gates: dict[str, Any], recon: Any, timings: Any) -> list[tuple[str, str]]:
    cards: list[tuple[str, str]] = []
    if isinstance(summary, dict):
        tables = summary.get("tables") or {}
        for key in ("legacy_rows", "migrated", "merged", "rejected"):
            cards.append((_n(sum(_int(t.get(key)) for t in tables.values())), key.replace("_", " ")))
        cards.append(("yes" if summary.get("accounted") else "NO", "every legacy row accounted for"))
    if gates:
        passed = sum(1 for g in gates.values() if g.get("passed") is True)
        cards.append((f"{passed} / {len(gates)}", "validation gates passed"))
        cards.append((_n(len(_findings(gates))), "findings (warning rules broken)"))
    if isinstance(recon, dict):
        cards.append(("clean" if recon.get("passed") else "FAILED", "reconciliation"))
    if isinstance(timings, dict) and _num(timings.get("downtime_seconds")) is not None:
        cards.append((_duration(_num(timings.get("downtime_seconds"))), "downtime"))
    return cards


def _contents(ev: Evidence) -> dict[str, Any]:
    rows = []
    for name, what, expected in ARTIFACTS:
        if name in ev.unreadable:
            state = _badge("missing", "unreadable")
        elif ev.present(name):
            state = _badge("present")
        else:
            state = _badge("missing" if expected else "absent", "missing" if expected else "not in this run")
        rows.append((name, what, state))
    rows += [
        (n, "gate result", _badge("missing", "unreadable")) for n in ev.unreadable if n.startswith("gates/")
    ]
    missing = [n for n, _, expected in ARTIFACTS if expected and (n in ev.unreadable or not ev.present(n))]
    return {"rows": rows, "missing": missing}


_ROLE_TEXT: Final = {
    "backup": "backup verification (pt_backup)",
    "trial": "trial run: estimate and go/no-go (pt_sample_transfer)",
    "assessment": "assessment of the legacy database (pt_assess)",
}


def _chain_section(ev: Evidence) -> dict[str, Any] | None:
    """This bundle's place in the evidence chain (``bundle.json``): its version, the version it
    supersedes and the sealed bundles it relies on, each by its manifest's SHA-256 as checked in the
    staging store when this bundle was sealed."""
    bundle = ev.json("bundle.json")
    if not isinstance(bundle, dict):
        return None
    previous = bundle.get("previous")
    links = bundle.get("links")
    at = Path(str(bundle.get("path") or "."))
    rows = []
    for role, found in sorted((links or {}).items() if isinstance(links, dict) else []):
        what = _ROLE_TEXT.get(role, role)
        if not isinstance(found, dict) or not found.get("found"):
            dag = found.get("dag_id", "") if isinstance(found, dict) else ""
            state = _badge("missing" if role == "backup" else "absent", "none found")
            rows.append({"what": what, "dag": _code(dag) if dag else None, "path": None, "state": state})
            continue
        path = str(found.get("path", ""))
        # from this bundle's folder up to the evidence root, then down to the linked bundle's report
        page = {"assessment": "assessment.html", "backup": "backup_verified.json"}.get(role, "report.html")
        rows.append(
            {
                "what": what,
                "path": path,
                "href": f"{'../' * len(at.parts)}{path}/{page}",
                "sha": str(found.get("manifest_sha256", ""))[:16],
                "state": _badge("present", "present, verified")
                if found.get("verified")
                else _badge("fail", "CHANGED"),
            }
        )
    return {
        "version": _code(bundle.get("version", "?")),
        "previous": {
            "version": _code(previous.get("version", "?")),
            "sha": str(previous.get("manifest_sha256", ""))[:16],
        }
        if isinstance(previous, dict)
        else None,
        "sealed_by": _code(bundle.get("sealed_by") or "unknown"),
        "rows": rows,
    }


def _links(ev: Evidence) -> list[tuple[str, str, bool]]:
    links = [
        ("mapping_spec.html", "Mapping specification"),
        ("mapping_spec.md", "Mapping specification (Markdown)"),
        (ev.data_docs_index() or "data_docs/index.html", "Data docs (Great Expectations)"),
        ("backup_manifest.json", "Backup manifest"),
        ("backup_verified.json", "Backup restore test"),
        ("summary.json", "Run summary (JSON)"),
        ("reconciliation.json", "Reconciliation (JSON)"),
        ("timings.json", "Stage timings (JSON)"),
        ("assessment.html", "Pre-migration assessment"),
        ("defect_verification.json", "Planted defects verification (JSON, demo only)"),
    ]
    return [(path, label, (ev.folder / path).is_file()) for path, label in links]


def _rows_section(summary: Any) -> dict[str, Any] | None:
    if not isinstance(summary, dict) or not isinstance(summary.get("tables"), dict):
        return None
    tables: dict[str, Any] = summary["tables"]
    policy = summary.get("reject_policy") or {}
    trial = summary.get("dag_id") == "pt_sample_transfer"
    rows = []
    for table, row in tables.items():
        legacy = _int(row.get("legacy_rows"))
        done = sum(_int(row.get(k)) for k in ("migrated", "merged", "rejected"))
        rule = policy.get(table) or {}
        rows.append(
            {
                "table": _code(table),
                "figures": [_n(legacy), *(_n(row.get(k)) for k in ("migrated", "merged", "rejected"))],
                "rate": _pct(_int(row.get("rejected")), legacy),
                "policy": _policy_badge(rule, trial=trial) if rule else None,
                "accounted": _verdict(done == legacy, "yes", f"{legacy - done:,} without outcome"),
            }
        )
    return {"bars": Markup(outcome_bars(tables)), "rows": rows}


def _policy_badge(rule: dict[str, Any], *, trial: bool) -> Badge:
    """A table's reject policy verdict. On a trial's sample, a rate over the limit is red only where
    it is over for certain (its 95% lower bound too: then the trial says no-go), amber where the
    sample is too small to tell, which the cutover's full count decides.

    >>> _policy_badge({"ok": False, "limit": 0.05, "rate_lower_95": 0.01}, trial=True)
    Badge(status='warn', label='over on the sample, within its noise (limit 5.0 %)')
    """
    limit = f"limit {100 * (_num(rule.get('limit')) or 0):.1f} %"
    if rule.get("ok"):
        return _badge("pass", limit)
    if trial and (_num(rule.get("rate_lower_95")) or 0) <= (_num(rule.get("limit")) or 0):
        return _badge("warn", f"over on the sample, within its noise ({limit})")
    return _badge("fail", limit)


def _rejects_section(summary: Any) -> list[tuple[Code, Code, str, str]] | None:
    """Rejected rows per table and reason code, the most frequent reason first; [] when none."""
    if not isinstance(summary, dict):
        return None
    tables = summary.get("tables") or {}
    rows = []
    for table, by_reason in (summary.get("reject_reasons") or {}).items():
        legacy = _int((tables.get(table) or {}).get("legacy_rows"))
        for reason, count in sorted(by_reason.items(), key=lambda kv: -_int(kv[1])):
            rows.append((_code(table), _code(reason), _n(count), _pct(_int(count), legacy)))
    return rows


_COLUMN: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")
"""A legacy column's name, as a reject's detail gives it."""


def _root_causes_section(summary: Any) -> list[dict[str, Any]] | str | None:
    """The run's rejects grouped by root cause (``summary.json``'s ``root_causes``, most costly first):
    how many legacy rows of which table were rejected for what, and how many rows of each other table
    their rejection pulled along. Codes and counts only. ``"unrecorded"`` for a summary written before
    reject lineage."""
    if not isinstance(summary, dict):
        return None
    causes = summary.get("root_causes")
    if not isinstance(causes, list):
        return "unrecorded"
    rows = []
    for cause in (c for c in causes if isinstance(c, dict)):
        detail = str(cause.get("root_detail") or "")
        columns = detail.split(",") if detail else []
        pulled = cause["rows"] if isinstance(cause.get("rows"), dict) else {}
        rows.append(
            {
                "known": cause.get("root_table") is not None,
                "roots": _n(cause.get("roots")),
                "table": _code(cause.get("root_table")),
                "reason": _code(cause.get("root_reason")),
                "columns": [_code(c) for c in columns] if all(_COLUMN.match(c) for c in columns) else None,
                "pulled": _n(cause.get("pulled")),
                "by_table": [(_n(n), _code(t)) for t, n in pulled.items()],
            }
        )
    return rows


REMEDIATION_SHOWN: Final = 10
"""Worklist rows the report lists; ``remediation.csv`` in the bundle has them all."""


def _remediation_section(summary: Any, ev: Evidence) -> dict[str, Any] | None:
    """Root rejects tracked across runs (``summary.json``'s ``remediation``: open, corrected awaiting a
    run, accepted as not carried, closed), what a remediation run carried, and the worklist's first
    open rows: ids, column names, codes and counts, each withheld unless it looks like one."""
    if not isinstance(summary, dict) or not isinstance(summary.get("remediation"), dict):
        return None
    counts = {k: _n(summary["remediation"].get(k)) for k in ("open", "corrected", "accepted", "closed")}
    carried = ev.json("remediation_report.json")
    rows: list[tuple[Any, ...]] = []
    path = ev.folder / "remediation.csv"
    if path.is_file():
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            for entry in csv.DictReader(handle):
                if entry.get("status") != "open" or len(rows) >= REMEDIATION_SHOWN:
                    continue
                legacy_id = str(entry.get("legacy_id") or "")
                columns = [c for c in str(entry.get("field") or "").split(",") if c]
                dependants = str(entry.get("dependants") or "")
                rows.append(
                    (
                        _code(entry.get("legacy_table")),
                        legacy_id if _ID.match(legacy_id) else None,
                        [_code(c) for c in columns] if all(_COLUMN.match(c) for c in columns) else None,
                        _code(entry.get("reason")),
                        _n(int(dependants) if dependants.isdigit() else None),
                        _code(entry.get("opened_run") or "–"),
                    )
                )
    return {
        "counts": counts,
        "rows": rows,
        "carried": (
            {k: _n(carried.get(k)) for k in ("corrected_rows", "scope_rows", "carried", "rejected_again")}
            if isinstance(carried, dict)
            else None
        ),
    }


def _safety_section(summary: Any, recon: Any) -> dict[str, Any] | None:
    """Patient-safety records: what arrived per table and per patient, the reconciliation's verdict on
    them, and the rejected patients whose records wait on the remediation worklist (counts only)."""
    if not isinstance(summary, dict):
        return None
    safety = summary.get("safety")
    if not isinstance(safety, dict) or not safety.get("mapped"):
        return {"mapped": False}
    failures = (recon.get("failures_by_kind") or {}) if isinstance(recon, dict) else None
    if failures is None:
        verdict = (_badge("warn", "not reconciled"), "no reconciliation in this bundle")
    elif _int(failures.get("chart_safety")):
        verdict = (
            _badge("fail", "missing"),
            f"{_n(failures.get('chart_safety'))} migrated patient(s) lack safety records (chart_safety)",
        )
    else:
        verdict = (
            _badge("pass", "complete"),
            "every migrated patient's safety records arrived (chart_safety 0)",
        )
    per = safety.get("records_per_patient") or {}
    held = safety.get("rejected_patients") or {}
    return {
        "mapped": True,
        "verdict": verdict,
        "patients": _n(safety.get("patients")),
        "median": _n(per.get("median")),
        "max": _n(per.get("max")),
        "held": {
            "patients": _n(held.get("patients")),
            "records": _n(held.get("records")),
            "by_table": [(_code(t), _n(n)) for t, n in (held.get("by_table") or {}).items()],
            "worklist": _code(held.get("worklist")),
        }
        if _int(held.get("patients"))
        else None,
        "rows": [
            (
                _code(target),
                _code(t.get("legacy_table")),
                *(_n(t.get(k)) for k in ("records", "rows", "patients")),
            )
            for target, t in (safety.get("tables") or {}).items()
            if isinstance(t, dict)
        ],
    }


def _merges_section(summary: Any) -> list[tuple[Code, str, str, str]] | None:
    if not isinstance(summary, dict):
        return None
    tables = summary.get("tables") or {}
    return [
        (
            _code(t),
            _n(row.get("merged")),
            _n(row.get("migrated")),
            _pct(_int(row.get("merged")), _int(row.get("legacy_rows"))),
        )
        for t, row in tables.items()
        if _int(row.get("merged"))
    ]


_RULE = re.compile(r"^[A-Za-z0-9 _.,;:'’()/%+\-–—#]{1,300}$")
"""What a rule's description (the catalog's text, never a value) may hold to be shown."""


def _findings(gates: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every finding of the run's gates (a warning rule broken beyond its threshold), worst share first."""
    found = [
        (name, r)
        for name, gate in gates.items()
        for r in gate.get("results") or []
        if isinstance(r, dict) and gate_status(r) == "warn"
    ]
    return sorted(
        found, key=lambda f: (-(_num(f[1].get("unexpected_share")) or 0), -_int(f[1].get("unexpected_count")))
    )


def _findings_section(gates: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The findings first: what an auditor must read even when every gate passed."""
    if not gates:
        return None
    return [
        {
            "share": _pct(_num(r.get("unexpected_share")) or 0, 1),
            "rows": f"{_n(r.get('unexpected_count'))} of {_n(r.get('element_count'))}",
            "rule": str(r["rule"]) if _RULE.match(str(r.get("rule") or "")) else None,
            "gate": _code(gate),
            "table": _code(r.get("table", "")),
            "expectation": _code(r.get("expectation", "")),
            "ids": _ids(r.get("failing_ids")),
        }
        for gate, r in _findings(gates)
    ]


def gate_status(result: dict[str, Any]) -> Status:
    """Pass when the share of failing rows is within the expectation's threshold; else fail for a
    fatal expectation and warn for a warning one. An explicit ``success`` in the result wins.

    >>> gate_status({"severity": "fatal", "threshold": 0.0, "unexpected_count": 0, "element_count": 9})
    'pass'
    >>> gate_status({"severity": "warning", "threshold": 0.01, "unexpected_share": 0.05})
    'warn'
    >>> gate_status({"severity": "fatal", "threshold": 0.01, "unexpected_share": 0.05})
    'fail'
    >>> gate_status({"status": "tolerated", "severity": "fatal", "threshold": 0.01, "unexpected_share": 0.005})
    'pass'
    """
    given = {"ok": "pass", "tolerated": "pass", "finding": "warn", "failed": "fail"}.get(
        str(result.get("status"))
    )
    if given is not None:  # the runner's own verdict (cutover.validation.runner.status_of)
        return given  # type: ignore[return-value]
    if isinstance(result.get("success"), bool):
        ok = result["success"]
    else:
        share = _num(result.get("unexpected_share"))
        if share is None:
            elements = _int(result.get("element_count"))
            share = _int(result.get("unexpected_count")) / elements if elements else 0.0
        ok = share <= (_num(result.get("threshold")) or 0.0)
    if ok:
        return "pass"
    return "fail" if result.get("severity") == "fatal" else "warn"


def _gates_section(gates: dict[str, Any]) -> list[dict[str, Any]] | None:
    if not gates:
        return None
    out = []
    for i, (name, gate) in enumerate(gates.items()):
        results = [r for r in gate.get("results") or [] if isinstance(r, dict)]
        statuses = [gate_status(r) for r in results]
        out.append(
            {
                "name": _code(name),
                "anchor": f"gate-{name}" if _CODE.match(name) and " " not in name else f"gate-{i}",
                "verdict": _verdict(bool(gate.get("passed")), "passed", "failed"),
                "counts": [f"{statuses.count(s):,}" for s in ("pass", "warn", "fail")],
                "rows": [
                    {
                        "codes": [_code(r.get(k, "")) for k in ("table", "expectation", "severity")],
                        "threshold": _pct(_num(r.get("threshold")) or 0, 1),
                        "rows": _n(r.get("element_count")),
                        "failing": _n(r.get("unexpected_count")),
                        "share": _pct(_num(r.get("unexpected_share")) or 0, 1),
                        "status": _badge(status),
                        "ids": _ids(r.get("failing_ids")),
                    }
                    for r, status in zip(results, statuses, strict=True)
                ],
            }
        )
    return out


def _window(window: Any) -> tuple[datetime, datetime] | None:
    """The window's start and end, or None when either is missing, unparseable or the end is not later."""
    try:
        start, end = datetime.fromisoformat(str(window["start"])), datetime.fromisoformat(str(window["end"]))
        return (start, end) if end > start else None
    except (KeyError, ValueError, TypeError):
        return None


def _timings_section(timings: Any) -> dict[str, Any] | None:
    if not isinstance(timings, dict):
        return None
    stages = {k: v for k, v in (timings.get("stages") or {}).items() if isinstance(v, dict)}
    rows = []
    for stage, t in stages.items():
        seconds, rows_n = _num(t.get("seconds")), _num(t.get("rows"))
        rate = rows_n / seconds if rows_n is not None and seconds else None
        rows.append(
            (_code(stage), _n(rows_n), _duration(seconds), _n(round(rate)) if rate is not None else "–")
        )
    downtime = _num(timings.get("downtime_seconds"))
    window = timings.get("window") or {}
    span = _window(window)
    view: dict[str, Any] = {
        "bars": Markup(value_bars({s: _num(t.get("seconds")) or 0.0 for s, t in stages.items()}, _duration))
        if stages
        else None,
        "rows": rows,
        "downtime": None if downtime is None else _duration(downtime),
        "window": None,
    }
    if downtime is not None and span is not None:
        start, end = span
        length = (end - start).total_seconds()
        view["window"] = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "tz": _code(window.get("tz") or window.get("timezone") or "no time zone"),
            "length": _duration(length),
            "share": _pct(downtime, length),
            "verdict": _verdict(downtime <= length, "within the window", "over the window"),
            "gauge": Markup(window_gauge(downtime, length)),
        }
    return view


def _recon_section(recon: Any) -> dict[str, Any] | None:
    if not isinstance(recon, dict):
        return None
    cols = ("legacy_rows", "migrated", "merged", "rejected", "target_rows", "unresolved")
    rate, limit = _num(recon.get("failure_rate")), _num(recon.get("max_failure_rate"))
    seconds = _num(recon.get("seconds"))
    bisection = {k: v for k, v in (recon.get("bisection") or {}).items() if _num(v) is not None}
    return {
        "verdict": _verdict(bool(recon.get("passed")), "clean", "failed"),
        "compared": _n(recon.get("patients_compared")),
        "mismatched": _n(recon.get("patients_mismatched")),
        "seconds": None if seconds is None else _duration(seconds),
        "head": ("legacy table", *(c.replace("_", " ") for c in cols), "crosswalk"),
        "tables": [
            (
                _code(t),
                [_n(row.get(c)) for c in cols],
                _verdict(not _int(row.get("unresolved")), "ok", "unresolved ids"),
            )
            for t, row in (recon.get("tables") or {}).items()
            if isinstance(row, dict)
        ],
        "rate": None if rate is None else (_pct(rate, 1), _pct(limit or 0, 1)),
        "bisection": [(k.replace("_", " "), _n(v)) for k, v in bisection.items() if _CODE.match(k)],
        "kinds": [(_code(k), _n(v)) for k, v in (recon.get("failures_by_kind") or {}).items()],
    }


def _numbers(data: Any, prefix: str = "") -> list[tuple[str, float]]:
    """The numeric leaves of a JSON document with their key paths (strings are never shown)."""
    if isinstance(data, dict):
        return [item for k, v in data.items() for item in _numbers(v, f"{prefix}{k}.")]
    number = _num(data)
    return [(prefix.rstrip("."), number)] if number is not None and prefix else []


def _total(seconds: Any) -> Any:
    """A trial's seconds: per stage with a ``total`` (``sample_seconds``), or one figure."""
    return seconds.get("total") if isinstance(seconds, dict) else seconds


def _estimate_section(estimate: Any) -> dict[str, Any] | None:
    """The trial run's extrapolation (``sample_estimate.json``): go or no-go, and against which window."""
    if estimate is None:
        return None
    if not isinstance(estimate, dict):
        return {"readable": False}
    decision = estimate.get("decision")
    reasons = [r for r in estimate.get("reasons") or [] if isinstance(r, str) and _CODE.match(r)]
    per_stage = {
        k: float(v)
        for k, v in (estimate.get("estimated_seconds") or {}).items()
        if k != "total" and _num(v) is not None
    }
    figures = [
        ("sample rows", _n(estimate.get("sample_rows"))),
        ("legacy rows in the full run", _n(estimate.get("full_rows"))),
        ("sample run time", _duration(_num(_total(estimate.get("sample_seconds"))))),
        ("estimated full run", _duration(_num((estimate.get("estimated_seconds") or {}).get("total")))),
        ("safety margin", f"× {_n(estimate.get('safety_margin'))}"),
        ("estimated with margin", _duration(_num(estimate.get("estimated_with_margin_seconds")))),
        ("cutover window", f"{_n(estimate.get('window_hours'))} h"),
    ]
    window = estimate.get("next_window") or {}
    if _window(window):
        figures.append(("next window", f"{window['start']} → {window['end']}"))
    return {
        "readable": True,
        "decision": _verdict(decision == "go", "go", "no-go") if decision in ("go", "no-go") else None,
        "why": "; ".join(reasons)
        if reasons
        else "the estimate fits the window and the sample passed every gate",
        "bars": Markup(value_bars(per_stage, _duration, colour="#8a6fb6")) if per_stage else None,
        "figures": figures,
        "leaves": [(k, _n(v)) for k, v in _numbers(estimate) if _CODE.match(k)],
    }


def _defects_section(report: Any) -> list[tuple[Code, Code, list[str], Badge]] | None:
    if not isinstance(report, dict):
        return None
    return [
        (
            _code(kind),
            _code(r.get("expected", "")),
            [_n(r.get(c)) for c in ("planted", "agree", "explained", "disagree")],
            _verdict(bool(r.get("ok")), "ok", "NO"),
        )
        for kind, r in report.items()
        if isinstance(r, dict)
    ]


# --- the page --------------------------------------------------------------------------------------


def render_report(folder: Path, *, generated_at: datetime | None = None) -> str:
    """The migration report of the evidence in ``folder``, as one self-contained HTML page."""
    ev = Evidence(folder)
    summary = ev.json("summary.json")
    gates = ev.gates()
    recon = ev.json("reconciliation.json")
    timings = ev.json("timings.json")
    run = summary if isinstance(summary, dict) else {}
    return render(
        "migration_report.html.j2",
        header=[_code(run.get(k, "unknown")) for k in ("run_id", "dag_id", "legacy_system")],
        generated=(generated_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        cards=_overview(summary, gates, recon, timings),
        findings=_findings_section(gates),
        rows=_rows_section(summary),
        rejects=_rejects_section(summary),
        causes=_root_causes_section(summary),
        remediation=_remediation_section(summary, ev),
        safety=_safety_section(summary, recon),
        merges=_merges_section(summary),
        gates=_gates_section(gates),
        docs=ev.data_docs_index(),
        recon=_recon_section(recon),
        timings=_timings_section(timings),
        estimate=_estimate_section(ev.json("sample_estimate.json")),
        defects=_defects_section(ev.json("defect_verification.json")),
        chain=_chain_section(ev),
        links=_links(ev),
        contents=_contents(ev),
    )


def write_report(folder: Path) -> Path:
    """Write ``report.html`` into the evidence ``folder`` from whatever evidence it holds; returns its path.

    Write it after every other evidence file but before ``manifest.sha256``, which must cover it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT
    tmp = path.with_name(f".{REPORT}.tmp")
    tmp.write_text(render_report(folder), encoding="utf-8")
    tmp.replace(path)
    log.info("migration report written: %s", path.name)
    return path
