"""The HTML migration report: renders every kind of evidence, names what is missing, carries no value.

The evidence files here are synthetic but shaped as the pipeline, the gates, reconciliation and the
timings write them; values that must never reach the page are planted where a careless renderer
would pick them up.
"""

from __future__ import annotations

import doctest
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import require

from cutover.report import migration_report
from cutover.report.migration_report import REPORT, gate_status, render_report, write_report

CANARY = "Quillfeather-Zanzibar"
"""A PHI-like value planted in fields the report must not render."""

SUMMARY = {
    "run_id": "manual__2026-11-27T18:00:00+00:00",
    "dag_id": "pt_cutover",
    "legacy_system": "legacy",
    "tables": {
        "clinics": {"legacy_rows": 3, "migrated": 3, "merged": 0, "rejected": 0},
        "patients": {"legacy_rows": 2204, "migrated": 1986, "merged": 207, "rejected": 11},
        "visits": {"legacy_rows": 30412, "migrated": 30101, "merged": 0, "rejected": 311},
        "procedures": {"legacy_rows": 50120, "migrated": 50002, "merged": 0, "rejected": 117},
    },
    "reject_reasons": {
        "patients": {"date_impossible": 11},
        "visits": {"date_impossible": 150, "orphan": 161},
        "procedures": {"parent_rejected": 117},
    },
    "root_causes": [  # as cutover.lineage.root_causes writes them, most costly first
        {
            "root_table": "visits",
            "root_reason": "orphan",
            "root_detail": "case_id",
            "roots": 161,
            "rows": {"procedures": 90},
            "pulled": 90,
        },
        {
            "root_table": "visits",
            "root_reason": "date_impossible",
            "root_detail": "visit_date",
            "roots": 150,
            "rows": {"procedures": 27},
            "pulled": 27,
        },
        {
            "root_table": "patients",
            "root_reason": "date_impossible",
            "root_detail": "dob,created",
            "roots": 11,
            "rows": {},
            "pulled": 0,
        },
    ],
    "reject_policy": {
        "clinics": {"reject_rate": 0.0, "limit": 0.0, "ok": True},
        "patients": {"reject_rate": 0.005, "limit": 0.01, "ok": True},
        "visits": {"reject_rate": 0.0102, "limit": 0.05, "ok": True},
        "procedures": {"reject_rate": 0.0023, "limit": 0.05, "ok": True},
    },
    "accounted": False,  # procedures: 1 row without an outcome
}

GATE_MAPPED = {
    "gate": "mapped",
    "passed": False,
    "results": [
        {
            "table": "patients",
            "expectation": "expect_column_values_to_not_be_null",
            "severity": "fatal",
            "threshold": 0.0,
            "element_count": 2193,
            "unexpected_count": 0,
            "unexpected_share": 0.0,
            "failing_ids": [],
        },
        {
            "table": "procedures",
            "expectation": "units_within_8_minute_rule",
            "severity": "warning",
            "threshold": 0.01,
            "element_count": 50002,
            "unexpected_count": 1002,
            "unexpected_share": 0.02,
            "failing_ids": [str(i) for i in range(1000, 1025)],
            "partial_unexpected_list": [CANARY],
            "status": "finding",
            "rule": "a visit's timed units do not exceed what its minutes allow (8-minute rule) — a finding beyond 1% of rows; plausibility",
        },
        {
            "table": "outcomes",
            "expectation": "lefs_score_between_0_and_80",
            "severity": "fatal",
            "threshold": 0.0,
            "element_count": 4800,
            "unexpected_count": 3,
            "unexpected_share": 0.000625,
            "failing_ids": ["77", "78", CANARY],
        },
    ],
}

RECON = {
    "passed": False,
    "tables": {
        "patients": {
            "legacy_rows": 2204,
            "migrated": 1986,
            "merged": 207,
            "rejected": 11,
            "target_rows": 1986,
            "unresolved": 0,
        },
        "visits": {
            "legacy_rows": 30412,
            "migrated": 30101,
            "merged": 0,
            "rejected": 311,
            "target_rows": 30100,
            "unresolved": 1,
        },
    },
    "patients_compared": 1986,
    "patients_mismatched": 1,
    "failures_by_kind": {"checksum": 1, "missing": 1},
    "failure_rate": 0.001007,
    "max_failure_rate": 0.0,
    "seconds": 4.2,
    "bisection": {
        "levels": 2,
        "segments_compared": 64,
        "leaves": 1,
        "chart_rows_fetched": 31,
        "queries_per_side": 3,
    },
}

TIMINGS = {
    "stages": {
        "extract": {"rows": 120000, "seconds": 12.5},
        "map": {"rows": 120000, "seconds": 40.0},
        "load": {"rows": 119500, "seconds": 25.0},
        "validate": {"rows": 119500, "seconds": 18.0},
    },
    "window": {
        "start": "2026-11-27T18:00:00-05:00",
        "end": "2026-11-30T06:00:00-05:00",
        "tz": "America/New_York",
    },
    "downtime_seconds": 5400,
}

ESTIMATE = {
    "run_id": "sample__1",
    "sample_rows": 12000,
    "full_rows": 120000,
    "sample_seconds": {"extract": 2.0, "map": 3.0, "load": 2.5, "validate": 2.0, "total": 9.5},
    "estimated_seconds": {"extract": 125.0, "map": 400.0, "load": 250.0, "validate": 180.0, "total": 955.0},
    "safety_margin": 1.5,
    "estimated_with_margin_seconds": 1432.5,
    "window_hours": 60.0,
    "fits_window": True,
    "gates_passed": False,
    "decision": "no-go",
    "reasons": ["the sample did not pass every gate"],
    "next_window": {
        "start": "2026-12-04T18:00:00-05:00",
        "end": "2026-12-07T06:00:00-05:00",
        "timezone": "EST",
    },
    "note": CANARY,
}


def _write(folder: Path, name: str, data: object) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


BUNDLE = {
    "dag_id": "pt_cutover",
    "run_id": "manual__2026-11-27T18:00:00+00:00",
    "version": "v2",
    "path": "pt_cutover/manual__2026-11-27T18-00-00-00-00/v2",
    "sealed_by": "engineer",
    "previous": {"version": "v1", "manifest_sha256": "ab" * 32},
    "links": {
        "backup": {"found": True, "verified": True, "path": "pt_backup/b1", "manifest_sha256": "cd" * 32},
        "trial": {
            "found": True,
            "verified": False,
            "path": "pt_sample_transfer/t1",
            "manifest_sha256": "ef" * 32,
        },
        "assessment": {"found": False, "dag_id": "pt_assess"},
    },
}


@pytest.fixture
def full(tmp_path: Path) -> Path:
    """An evidence folder with every kind of evidence the report reads."""
    folder = tmp_path / "evidence"
    _write(folder, "summary.json", SUMMARY)
    _write(folder, "gates/mapped.json", GATE_MAPPED)
    _write(folder, "gates/target.json", {"gate": "target", "passed": True, "results": []})
    _write(folder, "reconciliation.json", RECON)
    _write(folder, "timings.json", TIMINGS)
    _write(
        folder,
        "sample_estimate.json",
        ESTIMATE,
    )
    _write(folder, "backup_manifest.json", {"run_key": "b1", "objects": []})
    _write(folder, "backup_verified.json", {"ok": True})
    _write(folder, "bundle.json", BUNDLE)
    (folder / "mapping_spec.html").write_text("<!doctype html><title>spec</title>")
    (folder / "data_docs" / "local_site").mkdir(parents=True)
    (folder / "data_docs" / "local_site" / "index.html").write_text("<html></html>")
    return folder


class _Checker(HTMLParser):
    """Parses the page, requiring balanced non-void elements; collects links, sources and text."""

    VOID: ClassVar[set[str]] = {"meta", "br", "rect", "hr", "img", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self.attrs_seen: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs_seen += attrs
        self.hrefs += [v or "" for k, v in attrs if k == "href"]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs_seen += attrs

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack, f"</{tag}> closes nothing"
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [], f"unclosed elements: {checker.stack}"
    return checker


def test_full_report_renders_every_section_from_the_evidence(full: Path) -> None:
    path = write_report(full)
    assert path == full / REPORT
    page = path.read_text()
    parsed = _parse(page)
    text = " ".join(parsed.text)
    # per-table bars: one stacked bar per table, segments titled with the counts
    assert parsed.tags.count("svg") >= 3  # outcomes, stage timings, downtime gauge
    assert "patients: 207 merged" in page
    assert "visits: 311 rejected" in page
    assert "1 unaccounted" in text  # procedures: 50120 - (50002 + 117)
    assert "1 without outcome" in text
    # the findings first: their count beside the gates passed, then each, worst share first, as a rule
    assert "findings (warning rules broken)" in text
    assert text.index("Findings") < text.index("Rows per legacy table")
    assert "a visit's timed units do not exceed what its minutes allow (8-minute rule)" in text
    # reject reasons, with the share of the table
    assert "orphan" in text
    assert "161" in text
    assert "0.53 %" in text
    # rejects by root cause, the costliest first, each with the rows it pulled along per table
    causes = page[page.index("<h2>Rejects by root cause</h2>") :]
    orphans = causes.index("161 <code>visits</code> rejected <code>orphan</code> (<code>case_id</code>)")
    assert orphans < causes.index("150 <code>visits</code> rejected <code>date_impossible</code>")
    assert "→ 90 <code>procedures</code>" in causes
    assert (
        "11 <code>patients</code> rejected <code>date_impossible</code> (<code>dob</code>, <code>created</code>)"
        in causes
    )
    # duplicate merges
    assert "Duplicate merges" in text
    assert "9.39 %" in text
    # gates: pass, warn (warning over threshold), fail (fatal over threshold); failing ids capped
    assert "1 / 2" in text  # gates passed
    assert {"pass", "warn", "fail"} <= set(parsed.text)
    assert "1000, 1001" in text
    assert "+15 more" in text
    # reconciliation, timings, downtime against the window
    assert "1,986 patients compared, 1 mismatched" in text
    assert "Failing patients 0.10 % of those compared; the run allows 0.00 %" in text
    assert "segments compared 64" in text
    assert "checksum" in text
    assert "unresolved ids" in text
    assert "3,000" in text  # map: 120000 rows / 40 s
    assert "downtime 1 h 30 min of 60 h 0 min (2.50 %)" in text
    assert "within the window" in text
    assert "estimated_seconds.load" in text
    assert "no-go" in text
    assert "the sample did not pass every gate" in text
    assert "23 min 52 s" in text  # 1432.5 s with the margin
    # links to the other evidence, the data docs entry page found below data_docs/
    assert "data_docs/local_site/index.html" in parsed.hrefs
    assert {"mapping_spec.html", "backup_manifest.json", "backup_verified.json"} <= set(parsed.hrefs)
    assert "Every expected evidence file is present." in text
    # its place in the evidence chain: the version it supersedes, what it relies on and each link's state
    for shown in ("supersedes", "abababababababab", "engineer", "present, verified", "CHANGED", "none found"):
        assert shown in text
    assert "../../../pt_backup/b1/backup_verified.json" in parsed.hrefs  # up from …/run/v2 to the root


def test_report_is_self_contained_and_carries_no_planted_value(full: Path) -> None:
    _write(full, "gates/odd.json", {"gate": "odd", "passed": True, "results": [{"table": "O'Brien, Mary"}]})
    page = render_report(full)
    parsed = _parse(page)
    assert CANARY not in page
    assert "O&#x27;Brien" not in page
    assert "O'Brien" not in page
    assert "withheld" in page
    assert not {"script", "link", "img", "iframe", "object"} & set(parsed.tags)
    assert not any(k == "src" or k.startswith("on") for k, _ in parsed.attrs_seen)
    external = [a for a in page.split("'") + page.split('"') if a.startswith(("http:", "https:", "//"))]
    assert set(external) <= {"http://www.w3.org/2000/svg"}


def test_root_causes_show_codes_and_counts_only(tmp_path: Path) -> None:
    planted = {
        "root_table": "patients",
        "root_reason": "date_impossible",
        "root_detail": f"dob,{CANARY}",
        "roots": 2,
        "rows": {"O'Brien, Mary": 5},
        "pulled": 5,
    }
    unknown = {
        "root_table": None,
        "root_reason": None,
        "root_detail": None,
        "roots": 0,
        "rows": {"charges": 3},
    }
    _write(tmp_path, "summary.json", {**SUMMARY, "root_causes": [planted, unknown]})
    page = render_report(tmp_path)
    text = " ".join(_parse(page).text)
    assert CANARY not in page
    assert "O'Brien" not in page
    assert "O&#x27;Brien" not in page
    assert "column withheld" in text
    assert "2 <code>patients</code> rejected <code>date_impossible</code>" in page
    assert "root cause not recorded" in text
    assert "→ 3 <code>charges</code>" in page
    _write(tmp_path, "summary.json", {k: v for k, v in SUMMARY.items() if k != "root_causes"})
    assert "written before reject lineage" in render_report(tmp_path)
    _write(tmp_path, "summary.json", {**SUMMARY, "root_causes": []})
    assert "Rejects by root cause</h2><p>No legacy row was rejected." in render_report(tmp_path)


def test_missing_evidence_is_named_not_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    _write(folder, "summary.json", SUMMARY)
    (folder / "timings.json").write_text("{not json")
    page = write_report(folder).read_text()
    text = " ".join(_parse(page).text)
    for name in ("gates/", "reconciliation.json", "data_docs", "backup_manifest.json"):
        assert name in text
    assert "No validation gate results in this bundle" in text
    assert "No reconciliation result in this bundle" in text
    assert "unreadable" in text  # timings.json is there but not JSON
    assert "not in this run" in text  # optional evidence (sample estimate, demo-only files)
    assert "Rows per legacy table" in text
    assert "2,204" in text


def test_empty_folder_still_renders(tmp_path: Path) -> None:
    page = render_report(tmp_path)
    text = " ".join(_parse(page).text)
    assert "No run summary in this bundle" in text
    assert "Missing from this bundle" in text


def test_gate_status_thresholds_and_severity() -> None:
    base = {"element_count": 1000, "threshold": 0.01}
    assert gate_status({**base, "severity": "fatal", "unexpected_count": 10}) == "pass"  # 1 % ≤ 1 %
    assert gate_status({**base, "severity": "fatal", "unexpected_count": 11}) == "fail"
    assert gate_status({**base, "severity": "warning", "unexpected_count": 11}) == "warn"
    assert gate_status({**base, "severity": "fatal", "unexpected_count": 0, "success": False}) == "fail"


def test_doctests() -> None:
    failures, tried = doctest.testmod(migration_report)
    assert tried
    assert not failures


@pytest.mark.slow
def test_headless_chromium_renders_the_page(full: Path, tmp_path: Path) -> None:
    require(Path("/usr/bin/chromium").exists(), "Debian's chromium is not installed at /usr/bin/chromium")
    page = write_report(full)
    shot = tmp_path / "report.png"
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [
            "/usr/bin/chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--window-size=1400,2400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    shutil.rmtree(profile, ignore_errors=True)


def test_a_trials_report_says_what_its_go_no_go_says(tmp_path: Path) -> None:
    """On a trial's sample, a table over its reject limit is red only when it is over for certain (and
    then the trial says no-go); over within the sample's noise it is amber, and the trial may go."""
    folder = tmp_path / "trial"
    summary = {
        **SUMMARY,
        "dag_id": "pt_sample_transfer",
        "reject_policy": {
            "patients": {"reject_rate": 0.33, "rate_lower_95": 0.01, "limit": 0.05, "ok": False},
            "visits": {"reject_rate": 0.3, "rate_lower_95": 0.27, "limit": 0.05, "ok": False},
        },
    }
    _write(folder, "summary.json", summary)
    _write(
        folder,
        "sample_estimate.json",
        {**ESTIMATE, "decision": "no-go", "reasons": ["reject policy: visits"]},
    )
    text = " ".join(_parse(write_report(folder).read_text()).text)
    assert "over on the sample, within its noise (limit 5.0 %)" in text  # patients: 1 of 3, say
    assert "9.5 s" in text  # the sample's own run time, not "–"
    page = (folder / "report.html").read_text()
    assert "<span class='st fail'>limit 5.0 %</span>" in page  # visits: over for certain
    assert "<span class='st fail'>no-go</span>" in page
