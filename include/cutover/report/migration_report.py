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
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

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

_CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}header code{background:rgba(255,255,255,.18);color:#fff}main{padding:8px 28px 40px;max-width:1400px}
h2{margin:28px 0 10px;font-size:18px;border-bottom:1px solid #d5dae1;padding-bottom:4px}
h3{margin:16px 0 6px;font-size:15px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-top:16px}
.card{background:#fff;border:1px solid #d5dae1;border-radius:6px;padding:10px 16px;min-width:130px}
.card b{display:block;font-size:22px}.card span{color:#5b6675;font-size:12px}
table{border-collapse:collapse;background:#fff;width:100%;margin:6px 0 14px}
th,td{border:1px solid #e1e5ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}table.narrow{width:auto;min-width:320px}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.st{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.fail,.missing{background:#fbe3e4;color:#9b1c23}.warn{background:#fff1d6;color:#8a5300}
.pass,.present{background:#e4f4e8;color:#1e6b34}.absent{background:#eef1f5;color:#5b6675}
.muted{color:#6b7785}.ids{font:12px ui-monospace,monospace;color:#394556;word-break:break-all}
.note{background:#fff;border-left:4px solid #c9a227;padding:6px 12px;margin:8px 0}
svg{background:#fff;border:1px solid #e1e5ea;border-radius:6px;max-width:100%;height:auto}
svg text{font:12px system-ui,sans-serif;fill:#1d2430}
code{font:12px ui-monospace,monospace;background:#f1f3f6;padding:0 3px;border-radius:3px}
"""

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


# --- small formatting helpers ----------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _code(value: object) -> str:
    """A table, reason, stage or expectation name; anything that does not look like one is withheld."""
    text = str(value)
    if _CODE.match(text):
        return f"<code>{_e(text)}</code>"
    return "<span class='muted'>(withheld: not a code)</span>"


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


def _badge(status: str, label: str | None = None) -> str:
    return f"<span class='st {_e(status)}'>{_e(label or status)}</span>"


def _table(head: Iterable[str], rows: Iterable[str], narrow: bool = False) -> str:
    cls = " class='narrow'" if narrow else ""
    return f"<table{cls}><tr>{''.join(f'<th>{_e(h)}</th>' for h in head)}</tr>{''.join(rows)}</table>"


def _missing(what: str, name: str) -> str:
    return f"<p class='note'>No {_e(what)} in this bundle (<code>{_e(name)}</code> is absent).</p>"


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
        parts.append(f"<text x='4' y='{y + 15}'>{_e(table) if _CODE.match(table) else 'withheld'}</text>")
        parts.append(f"<rect x='{label_w}' y='{y + 3}' width='{bar_w}' height='16' fill='#eef1f5'/>")
        x0 = float(label_w)
        for outcome, count in counts.items():
            if count:
                w = max(count * scale, 1.0)
                parts.append(
                    f"<rect x='{x0:.1f}' y='{y + 3}' width='{w:.1f}' height='16' fill='{COLOURS[outcome]}'>"
                    f"<title>{_e(table)}: {count:,} {outcome}</title></rect>"
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
        parts.append(f"<text x='4' y='{y + 15}'>{_e(name)}</text>")
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


# --- sections --------------------------------------------------------------------------------------


def _overview(summary: Any, gates: dict[str, Any], recon: Any, timings: Any) -> str:
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
    return (
        "<div class='cards'>"
        + "".join(f"<div class='card'><b>{_e(v)}</b><span>{_e(k)}</span></div>" for v, k in cards)
        + "</div>"
    )


def _contents(ev: Evidence) -> str:
    rows = []
    for name, what, expected in ARTIFACTS:
        if name in ev.unreadable:
            state = _badge("missing", "unreadable")
        elif ev.present(name):
            state = _badge("present")
        else:
            state = _badge("missing" if expected else "absent", "missing" if expected else "not in this run")
        rows.append(f"<tr><td><code>{_e(name)}</code></td><td>{_e(what)}</td><td>{state}</td></tr>")
    rows += [
        f"<tr><td><code>{_e(n)}</code></td><td>gate result</td><td>{_badge('missing', 'unreadable')}</td></tr>"
        for n in ev.unreadable
        if n.startswith("gates/")
    ]
    missing = [n for n, _, expected in ARTIFACTS if expected and (n in ev.unreadable or not ev.present(n))]
    lead = (
        f"<p class='note'>Missing from this bundle: {', '.join(f'<code>{_e(n)}</code>' for n in missing)}. "
        "The sections that need them say so below.</p>"
        if missing
        else "<p class='muted'>Every expected evidence file is present.</p>"
    )
    return "<h2>Bundle contents</h2>" + lead + _table(("file", "what it is", "state"), rows)


_ROLE_TEXT: Final = {
    "backup": "backup verification (pt_backup)",
    "trial": "trial run: estimate and go/no-go (pt_sample_transfer)",
    "assessment": "assessment of the legacy database (pt_assess)",
}


def _chain_section(ev: Evidence) -> str:
    """This bundle's place in the evidence chain (``bundle.json``): its version, the version it
    supersedes and the sealed bundles it relies on, each by its manifest's SHA-256 as checked in the
    staging store when this bundle was sealed."""
    bundle = ev.json("bundle.json")
    if not isinstance(bundle, dict):
        return ""
    head = "<h2>Evidence chain</h2>"
    previous = bundle.get("previous")
    lead = f"<p>Version {_code(bundle.get('version', '?'))}"
    if isinstance(previous, dict):
        lead += (
            f"; supersedes {_code(previous.get('version', '?'))} (manifest SHA-256 "
            f"<code>{_e(str(previous.get('manifest_sha256', ''))[:16])}…</code>), which stays sealed as it was"
        )
    lead += f"; sealed by {_code(bundle.get('sealed_by') or 'unknown')}.</p>"
    links = bundle.get("links")
    if not isinstance(links, dict) or not links:
        return head + lead + "<p class='muted'>This run links no other evidence.</p>"
    at = Path(str(bundle.get("path") or "."))
    rows = []
    for role, found in sorted(links.items()):
        what = _e(_ROLE_TEXT.get(role, role))
        if not isinstance(found, dict) or not found.get("found"):
            dag = found.get("dag_id", "") if isinstance(found, dict) else ""
            state = _badge("missing" if role == "backup" else "absent", "none found")
            rows.append(
                f"<tr><td>{what}</td><td>{_code(dag) if dag else ''}</td><td></td><td>{state}</td></tr>"
            )
            continue
        path = str(found.get("path", ""))
        state = _badge("present", "present, verified") if found.get("verified") else _badge("fail", "CHANGED")
        # from this bundle's folder up to the evidence root, then down to the linked bundle's report
        up = "../" * len(at.parts)
        page = {"assessment": "assessment.html", "backup": "backup_verified.json"}.get(role, "report.html")
        target = f"{up}{path}/{page}"
        rows.append(
            f"<tr><td>{what}</td><td><a href='{_e(target)}'><code>{_e(path)}</code></a></td>"
            f"<td><code>{_e(str(found.get('manifest_sha256', ''))[:16])}…</code></td><td>{state}</td></tr>"
        )
    return head + lead + _table(("relied on", "bundle", "manifest SHA-256", "state at seal"), rows)


def _links(ev: Evidence) -> str:
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
    items = [
        f"<li><a href='{_e(path)}'>{_e(label)}</a> <span class='muted'>{_e(path)}</span></li>"
        if (ev.folder / path).is_file()
        else f"<li>{_e(label)} <span class='st absent'>not in this bundle</span></li>"
        for path, label in links
    ]
    items.append(
        "<li><code>manifest.sha256</code> <span class='muted'>SHA-256 of every file in this folder, written after "
        "this page: check with <code>sha256sum -c manifest.sha256</code> inside the folder</span></li>"
    )
    return "<h2>Evidence files</h2><ul>" + "".join(items) + "</ul>"


def _rows_section(summary: Any) -> str:
    if not isinstance(summary, dict) or not isinstance(summary.get("tables"), dict):
        return "<h2>Rows per legacy table</h2>" + _missing("run summary", "summary.json")
    tables: dict[str, Any] = summary["tables"]
    policy = summary.get("reject_policy") or {}
    trial = summary.get("dag_id") == "pt_sample_transfer"
    rows = []
    for table, row in tables.items():
        legacy = _int(row.get("legacy_rows"))
        done = sum(_int(row.get(k)) for k in ("migrated", "merged", "rejected"))
        rule = policy.get(table) or {}
        verdict = _policy_badge(rule, trial=trial) if rule else "–"
        rows.append(
            f"<tr><td>{_code(table)}</td><td class='n'>{_n(legacy)}</td><td class='n'>{_n(row.get('migrated'))}</td>"
            f"<td class='n'>{_n(row.get('merged'))}</td><td class='n'>{_n(row.get('rejected'))}</td>"
            f"<td class='n'>{_pct(_int(row.get('rejected')), legacy)}</td><td>{verdict}</td>"
            f"<td>{_badge('pass', 'yes') if done == legacy else _badge('fail', f'{legacy - done:,} without outcome')}</td></tr>"
        )
    return (
        "<h2>Rows per legacy table</h2>"
        "<p class='muted'>Every legacy row ends as exactly one of: migrated, merged into a surviving duplicate, "
        "or rejected with a reason code. Each bar is one table's legacy rows (100 %).</p>"
        + outcome_bars(tables)
        + _table(
            (
                "legacy table",
                "legacy rows",
                "migrated",
                "merged",
                "rejected",
                "reject rate",
                "reject policy",
                "accounted",
            ),
            rows,
        )
    )


def _policy_badge(rule: dict[str, Any], *, trial: bool) -> str:
    """A table's reject policy verdict. On a trial's sample, a rate over the limit is red only where
    it is over for certain (its 95% lower bound too: then the trial says no-go), amber where the
    sample is too small to tell, which the cutover's full count decides.

    >>> _policy_badge({"ok": False, "limit": 0.05, "rate_lower_95": 0.01}, trial=True)
    "<span class='st warn'>over on the sample, within its noise (limit 5.0 %)</span>"
    """
    limit = f"limit {100 * (_num(rule.get('limit')) or 0):.1f} %"
    if rule.get("ok"):
        return _badge("pass", limit)
    if trial and (_num(rule.get("rate_lower_95")) or 0) <= (_num(rule.get("limit")) or 0):
        return _badge("warn", f"over on the sample, within its noise ({limit})")
    return _badge("fail", limit)


def _rejects_section(summary: Any) -> str:
    head = "<h2>Reject reasons</h2>"
    if not isinstance(summary, dict):
        return head + _missing("run summary", "summary.json")
    reasons = summary.get("reject_reasons") or {}
    tables = summary.get("tables") or {}
    if not reasons:
        return head + "<p>No legacy row was rejected.</p>"
    rows = []
    for table, by_reason in reasons.items():
        legacy = _int((tables.get(table) or {}).get("legacy_rows"))
        for reason, count in sorted(by_reason.items(), key=lambda kv: -_int(kv[1])):
            rows.append(
                f"<tr><td>{_code(table)}</td><td>{_code(reason)}</td><td class='n'>{_n(count)}</td>"
                f"<td class='n'>{_pct(_int(count), legacy)}</td></tr>"
            )
    return (
        head + "<p class='muted'>Rejected rows stay in <code>migration.reject</code> with their reason; "
        "<code>cutover trace TABLE ID</code> shows one of them.</p>"
        + _table(("legacy table", "reason code", "rows", "of the table's legacy rows"), rows)
    )


def _root_causes_section(summary: Any) -> str:
    """The run's rejects grouped by root cause (``summary.json``'s ``root_causes``, most costly first):
    how many legacy rows of which table were rejected for what, and how many rows of each other table
    their rejection pulled along. Codes and counts only."""
    head = "<h2>Rejects by root cause</h2>"
    if not isinstance(summary, dict):
        return head + _missing("run summary", "summary.json")
    causes = summary.get("root_causes")
    if not isinstance(causes, list):
        return (
            head
            + "<p class='muted'>This run's summary has no root causes (written before reject lineage).</p>"
        )
    causes = [c for c in causes if isinstance(c, dict)]
    if not causes:
        return head + "<p>No legacy row was rejected.</p>"
    column = re.compile(
        r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$"
    )  # a legacy column's name, as a reject's detail gives it
    rows = []
    for cause in causes:
        detail = str(cause.get("root_detail") or "")
        columns = detail.split(",")
        about = (
            f" ({', '.join(_code(c) for c in columns)})"
            if all(column.match(c) for c in columns)
            else " <span class='muted'>(column withheld: not a column name)</span>"
        )
        about = about if detail else ""
        if cause.get("root_table") is None:
            what = "rows rejected as cascades before the ledger kept lineage: root cause not recorded"
        else:
            what = (
                f"{_n(cause.get('roots'))} {_code(cause.get('root_table'))} rejected "
                f"{_code(cause.get('root_reason'))}{about}"
            )
        pulled = cause.get("rows") if isinstance(cause.get("rows"), dict) else {}
        by_table = (
            ", ".join(f"{_n(n)} {_code(t)}" for t, n in pulled.items()) or "<span class='muted'>none</span>"
        )
        rows.append(
            f"<tr><td>{what}</td><td class='n'>{_n(cause.get('pulled'))}</td><td>→ {by_table}</td></tr>"
        )
    return (
        head
        + "<p class='muted'>A rejected row takes the rows that depend on it along (<code>parent_rejected</code>): "
        "a patient rejected for one field rejects its episodes, their visits, their charges. Each line is one "
        "root cause, the legacy defect to correct, with the rows it cost, most first; "
        "<code>cutover trace TABLE ID</code> shows a row's chain down to its root.</p>"
        + _table(("root cause", "rows pulled along", "by legacy table"), rows)
    )


def _safety_section(summary: Any, recon: Any) -> str:
    """Patient-safety records: what arrived per table and per patient, the reconciliation's verdict on
    them, and the rejected patients whose records wait on the remediation worklist (counts only)."""
    head = "<h2>Patient-safety records</h2>"
    if not isinstance(summary, dict):
        return head + _missing("run summary", "summary.json")
    safety = summary.get("safety")
    if not isinstance(safety, dict) or not safety.get("mapped"):
        return head + "<p>The legacy profile maps no allergies, medications or precautions.</p>"
    tables = safety.get("tables") or {}
    per = safety.get("records_per_patient") or {}
    rows = [
        f"<tr><td>{_code(target)}</td><td>{_code(t.get('legacy_table'))}</td><td class='n'>{_n(t.get('records'))}</td>"
        f"<td class='n'>{_n(t.get('rows'))}</td><td class='n'>{_n(t.get('patients'))}</td></tr>"
        for target, t in tables.items()
        if isinstance(t, dict)
    ]
    failures = (recon.get("failures_by_kind") or {}) if isinstance(recon, dict) else None
    if failures is None:
        verdict = _badge("warn", "not reconciled") + " no reconciliation in this bundle"
    elif _int(failures.get("chart_safety")):
        verdict = _badge("fail", "missing") + (
            f" {_n(failures.get('chart_safety'))} migrated patient(s) lack safety records (chart_safety)"
        )
    else:
        verdict = (
            _badge("pass", "complete") + " every migrated patient's safety records arrived (chart_safety 0)"
        )
    line = (
        f"<p>{verdict}. Safety records per patient: {_n(safety.get('patients'))} patients hold them, "
        f"median {_n(per.get('median'))}, at most {_n(per.get('max'))}.</p>"
    )
    held = safety.get("rejected_patients") or {}
    if _int(held.get("patients")):
        by = ", ".join(f"{_code(t)} {_n(n)}" for t, n in (held.get("by_table") or {}).items())
        line += (
            f"<p>{_badge('fail', 'to fix first')} {_n(held.get('patients'))} rejected patient(s) hold "
            f"{_n(held.get('records'))} safety records ({by}) that could not migrate with them: they head the "
            f"remediation worklist (<code>{_code(held.get('worklist'))}</code>, most records first).</p>"
        )
    else:
        line += "<p>No rejected patient holds a safety record.</p>"
    return (
        head
        + "<p class='muted'>Allergies, medications and precautions are never rejected on their own: a value the "
        "rules cannot code is carried as written and flagged; only a rejected patient keeps them out. A record "
        "entered again in a later episode is merged into the first and counts once per legacy record.</p>"
        + line
        + _table(
            ("target table", "legacy table", "legacy records", "target rows", "patients"), rows, narrow=True
        )
    )


def _merges_section(summary: Any) -> str:
    head = "<h2>Duplicate merges</h2>"
    if not isinstance(summary, dict):
        return head + _missing("run summary", "summary.json")
    tables = summary.get("tables") or {}
    merged = {t: row for t, row in tables.items() if _int(row.get("merged"))}
    if not merged:
        return head + "<p>No duplicate record was merged in this run.</p>"
    rows = [
        f"<tr><td>{_code(t)}</td><td class='n'>{_n(row.get('merged'))}</td><td class='n'>{_n(row.get('migrated'))}</td>"
        f"<td class='n'>{_pct(_int(row.get('merged')), _int(row.get('legacy_rows')))}</td></tr>"
        for t, row in merged.items()
    ]
    return (
        head
        + "<p class='muted'>Duplicates found before the load (blocking, Fellegi–Sunter scores, survivorship) are "
        "merged into one surviving record; <code>migration.crosswalk</code> maps every merged legacy id to its "
        "survivor. Ambiguous pairs go to a review list (ids and scores only).</p>"
        + _table(
            ("legacy table", "merged into a survivor", "migrated (survivors included)", "merged share"),
            rows,
            narrow=True,
        )
    )


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


def _findings_section(gates: dict[str, Any]) -> str:
    """The findings first: what an auditor must read even when every gate passed."""
    found = _findings(gates)
    if not gates:
        return ""
    head = "<h2>Findings</h2>"
    if not found:
        return head + "<p class='muted'>No warning rule was broken beyond its threshold.</p>"
    rows = [
        f"<tr><td class='n'>{_pct(_num(r.get('unexpected_share')) or 0, 1)}</td>"
        f"<td class='n'>{_n(r.get('unexpected_count'))} of {_n(r.get('element_count'))}</td>"
        f"<td>{_e(r['rule']) if _RULE.match(str(r.get('rule') or '')) else _code(r.get('expectation', ''))}</td>"
        f"<td>{_code(gate)} · {_code(r.get('table', ''))}</td><td>{_code(r.get('expectation', ''))}</td>"
        f"<td>{_ids(r.get('failing_ids'))}</td></tr>"
        for gate, r in found
    ]
    return (
        head
        + "<p class='muted'>A finding is a warning rule broken beyond its threshold: the run goes on, and the "
        "same count is in the gate's log line and its data docs. Worst share first.</p>"
        + _table(("share", "rows", "rule", "gate · table", "expectation", "failing ids"), rows)
    )


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


def _ids(ids: Any, shown: int = 10) -> str:
    if not isinstance(ids, list) or not ids:
        return ""
    good = [str(i) for i in ids if isinstance(i, int | str) and _ID.match(str(i))]
    text = ", ".join(good[:shown])
    more = len(ids) - min(len(good), shown)
    return f"<span class='ids'>{_e(text)}</span>" + (
        f" <span class='muted'>+{more:,} more</span>" if more else ""
    )


def _gates_section(gates: dict[str, Any], docs: str | None) -> str:
    head = "<h2>Validation gates</h2>"
    if not gates:
        return head + _missing("validation gate results", "gates/")
    parts = [head]
    if docs:
        parts.append(
            f"<p>Full results: <a href='{_e(docs)}'>data docs</a> (failing records named by id only).</p>"
        )
    summary_rows = []
    for name, gate in gates.items():
        results = [r for r in gate.get("results") or [] if isinstance(r, dict)]
        counts = {s: sum(1 for r in results if gate_status(r) == s) for s in ("pass", "warn", "fail")}
        summary_rows.append(
            f"<tr><td><a href='#gate-{_e(name)}'>{_code(name)}</a></td>"
            f"<td>{_badge('pass' if gate.get('passed') else 'fail', 'passed' if gate.get('passed') else 'failed')}</td>"
            + "".join(f"<td class='n'>{counts[s]:,}</td>" for s in ("pass", "warn", "fail"))
            + "</tr>"
        )
    parts.append(
        _table(("gate", "verdict", "expectations passed", "warnings", "failed"), summary_rows, narrow=True)
    )
    for name, gate in gates.items():
        rows = []
        for r in gate.get("results") or []:
            if not isinstance(r, dict):
                continue
            status = gate_status(r)
            rows.append(
                f"<tr><td>{_code(r.get('table', ''))}</td><td>{_code(r.get('expectation', ''))}</td>"
                f"<td>{_code(r.get('severity', ''))}</td><td class='n'>{_pct(_num(r.get('threshold')) or 0, 1)}</td>"
                f"<td class='n'>{_n(r.get('element_count'))}</td><td class='n'>{_n(r.get('unexpected_count'))}</td>"
                f"<td class='n'>{_pct(_num(r.get('unexpected_share')) or 0, 1)}</td><td>{_badge(status)}</td>"
                f"<td>{_ids(r.get('failing_ids'))}</td></tr>"
            )
        parts.append(
            f"<h3 id='gate-{_e(name)}'>Gate {_code(name)} "
            f"{_badge('pass' if gate.get('passed') else 'fail', 'passed' if gate.get('passed') else 'failed')}</h3>"
            + _table(
                (
                    "table",
                    "expectation",
                    "severity",
                    "threshold",
                    "rows",
                    "failing rows",
                    "failing share",
                    "result",
                    "failing ids",
                ),
                rows,
            )
        )
    return "".join(parts)


def _window(window: Any) -> tuple[datetime, datetime] | None:
    """The window's start and end, or None when either is missing, unparseable or the end is not later."""
    try:
        start, end = datetime.fromisoformat(str(window["start"])), datetime.fromisoformat(str(window["end"]))
        return (start, end) if end > start else None
    except (KeyError, ValueError, TypeError):
        return None


def _timings_section(timings: Any) -> str:
    head = "<h2>Stage timings and downtime</h2>"
    if not isinstance(timings, dict):
        return head + _missing("stage timings", "timings.json")
    parts = [head]
    stages = {k: v for k, v in (timings.get("stages") or {}).items() if isinstance(v, dict)}
    if stages:
        rows = []
        for stage, t in stages.items():
            seconds, rows_n = _num(t.get("seconds")), _num(t.get("rows"))
            rate = rows_n / seconds if rows_n is not None and seconds else None
            rows.append(
                f"<tr><td>{_code(stage)}</td><td class='n'>{_n(rows_n)}</td><td class='n'>{_e(_duration(seconds))}</td>"
                f"<td class='n'>{_n(round(rate)) if rate is not None else '–'}</td></tr>"
            )
        parts.append(value_bars({s: _num(t.get("seconds")) or 0.0 for s, t in stages.items()}, _duration))
        parts.append(_table(("stage", "rows", "time", "rows per second"), rows, narrow=True))
    else:
        parts.append("<p class='note'>No stage timings in <code>timings.json</code>.</p>")
    downtime = _num(timings.get("downtime_seconds"))
    window = timings.get("window") or {}
    span = _window(window)
    if downtime is None:
        parts.append("<p class='note'>No downtime figure in <code>timings.json</code>.</p>")
    elif span is None:
        parts.append(
            f"<p>Downtime {_e(_duration(downtime))}; <span class='note'>no cutover window recorded.</span></p>"
        )
    else:
        start, end = span
        length = (end - start).total_seconds()
        within = downtime <= length
        parts.append(
            f"<p>Window {_e(start.isoformat())} → {_e(end.isoformat())} ({_code(window.get('tz') or window.get('timezone') or 'no time zone')}): "
            f"downtime {_e(_duration(downtime))} of {_e(_duration(length))} ({_pct(downtime, length)}) "
            f"{_badge('pass' if within else 'fail', 'within the window' if within else 'over the window')}</p>"
            + window_gauge(downtime, length)
        )
    return "".join(parts)


def _recon_section(recon: Any) -> str:
    head = "<h2>Reconciliation</h2>"
    if not isinstance(recon, dict):
        return head + _missing("reconciliation result", "reconciliation.json")
    passed = bool(recon.get("passed"))
    parts = [
        head,
        f"<p>{_badge('pass' if passed else 'fail', 'clean' if passed else 'failed')} "
        f"{_n(recon.get('patients_compared'))} patients compared, {_n(recon.get('patients_mismatched'))} mismatched "
        f"(per-patient checksums of visits, units by CPT code, diagnoses, charges, payments, balance)"
        f"{', in ' + _e(_duration(_num(recon.get('seconds')))) if _num(recon.get('seconds')) is not None else ''}.</p>",
    ]
    tables = recon.get("tables") or {}
    if tables:
        cols = ("legacy_rows", "migrated", "merged", "rejected", "target_rows", "unresolved")
        rows = [
            f"<tr><td>{_code(t)}</td>"
            + "".join(f"<td class='n'>{_n(row.get(c))}</td>" for c in cols)
            + f"<td>{_badge('pass' if not _int(row.get('unresolved')) else 'fail', 'ok' if not _int(row.get('unresolved')) else 'unresolved ids')}</td></tr>"
            for t, row in tables.items()
            if isinstance(row, dict)
        ]
        parts.append(_table(("legacy table", *(c.replace("_", " ") for c in cols), "crosswalk"), rows))
    rate, limit = _num(recon.get("failure_rate")), _num(recon.get("max_failure_rate"))
    if rate is not None:
        parts.append(
            f"<p>Failing patients {_pct(rate, 1)} of those compared; the run allows {_pct(limit or 0, 1)}.</p>"
        )
    bisection = {k: v for k, v in (recon.get("bisection") or {}).items() if _num(v) is not None}
    if bisection:
        parts.append(
            "<p class='muted'>Key-segmented checksums, bisected only where segments differ: "
            + ", ".join(f"{_e(k.replace('_', ' '))} {_n(v)}" for k, v in bisection.items() if _CODE.match(k))
            + ".</p>"
        )
    kinds = recon.get("failures_by_kind") or {}
    if kinds:
        parts.append(
            "<h3>Mismatches by kind</h3>"
            + _table(
                ("kind", "records"),
                (f"<tr><td>{_code(k)}</td><td class='n'>{_n(v)}</td></tr>" for k, v in kinds.items()),
                narrow=True,
            )
            + "<p class='muted'>Each mismatch is in <code>migration.validation_failure</code> (run, table, legacy id, "
            "new id, kind).</p>"
        )
    return "".join(parts)


def _numbers(data: Any, prefix: str = "") -> list[tuple[str, float]]:
    """The numeric leaves of a JSON document with their key paths (strings are never shown)."""
    if isinstance(data, dict):
        return [item for k, v in data.items() for item in _numbers(v, f"{prefix}{k}.")]
    number = _num(data)
    return [(prefix.rstrip("."), number)] if number is not None and prefix else []


def _total(seconds: Any) -> Any:
    """A trial's seconds: per stage with a ``total`` (``sample_seconds``), or one figure."""
    return seconds.get("total") if isinstance(seconds, dict) else seconds


def _estimate_section(estimate: Any) -> str:
    """The trial run's extrapolation (``sample_estimate.json``): go or no-go, and against which window."""
    if estimate is None:
        return ""
    head = "<h2>Estimate from the sample run</h2>"
    if not isinstance(estimate, dict):
        return head + "<p class='note'><code>sample_estimate.json</code> is not a JSON object.</p>"
    parts = [head]
    decision = estimate.get("decision")
    if decision in ("go", "no-go"):
        reasons = [r for r in estimate.get("reasons") or [] if isinstance(r, str) and _CODE.match(r)]
        parts.append(
            f"<p>{_badge('pass' if decision == 'go' else 'fail', decision)} "
            + _e(
                "; ".join(reasons)
                if reasons
                else "the estimate fits the window and the sample passed every gate"
            )
            + "</p>"
        )
    per_stage = {
        k: v
        for k, v in (estimate.get("estimated_seconds") or {}).items()
        if k != "total" and _num(v) is not None
    }
    if per_stage:
        parts.append(value_bars({k: float(v) for k, v in per_stage.items()}, _duration, colour="#8a6fb6"))
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
    rows = (f"<tr><td>{_e(k)}</td><td class='n'>{_e(v)}</td></tr>" for k, v in figures)
    parts.append(_table(("figure", "value"), rows, narrow=True))
    leaves = [(k, v) for k, v in _numbers(estimate) if _CODE.match(k)]
    parts.append(
        "<details><summary>Every figure of <code>sample_estimate.json</code></summary>"
        + _table(
            ("figure", "value"),
            (f"<tr><td><code>{_e(k)}</code></td><td class='n'>{_n(v)}</td></tr>" for k, v in leaves),
            narrow=True,
        )
        + "</details>"
    )
    return "".join(parts)


def _defects_section(report: Any) -> str:
    if not isinstance(report, dict):
        return ""
    rows = [
        f"<tr><td>{_code(kind)}</td><td>{_code(r.get('expected', ''))}</td>"
        + "".join(f"<td class='n'>{_n(r.get(c))}</td>" for c in ("planted", "agree", "explained", "disagree"))
        + f"<td>{_badge('pass' if r.get('ok') else 'fail', 'ok' if r.get('ok') else 'NO')}</td></tr>"
        for kind, r in report.items()
        if isinstance(r, dict)
    ]
    return "<h2>Planted defects (simulated legacy data)</h2>" + _table(
        ("defect kind", "expected", "planted", "agree", "explained", "disagree", "ok"), rows
    )


# --- the page --------------------------------------------------------------------------------------


def render_report(folder: Path, *, generated_at: datetime | None = None) -> str:
    """The migration report of the evidence in ``folder``, as one self-contained HTML page."""
    ev = Evidence(folder)
    summary = ev.json("summary.json")
    gates = ev.gates()
    recon = ev.json("reconciliation.json")
    timings = ev.json("timings.json")
    estimate = ev.json("sample_estimate.json")
    defects = ev.json("defect_verification.json")
    run = summary if isinstance(summary, dict) else {}
    when = (generated_at or datetime.now(UTC)).isoformat(timespec="seconds")
    body = (
        _overview(summary, gates, recon, timings)
        + _findings_section(gates)
        + _rows_section(summary)
        + _rejects_section(summary)
        + _root_causes_section(summary)
        + _safety_section(summary, recon)
        + _merges_section(summary)
        + _gates_section(gates, ev.data_docs_index())
        + _recon_section(recon)
        + _timings_section(timings)
        + _estimate_section(estimate)
        + _defects_section(defects)
        + _chain_section(ev)
        + _links(ev)
        + _contents(ev)
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Migration report {_e(run.get('run_id', ''))}</title><style>{_CSS}</style></head><body>"
        "<header><h1>Migration report</h1>"
        f"<p>run {_code(run.get('run_id', 'unknown'))} · DAG {_code(run.get('dag_id', 'unknown'))} · legacy system "
        f"{_code(run.get('legacy_system', 'unknown'))} · generated {_e(when)} · ids, codes and counts only</p>"
        f"</header><main>{body}</main></body></html>\n"
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
