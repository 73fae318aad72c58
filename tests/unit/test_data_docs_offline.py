"""The GX data docs of a real gate open with no network: no page loads a script, stylesheet, font or
image from outside the site, every local asset a page names is in the site, and the index lists every
validation and suite in the page itself (no script draws it).

The site is a real one: the mapped gate run twice over small staged outcomes into one evidence folder,
once failing on a planted canary value (which no file may then hold) and once passing.
"""

from __future__ import annotations

import doctest
import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib import metadata, resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from staged_outcomes import outcome, stage_outcomes

from cutover.validation import datadocs
from cutover.validation.catalog import catalog
from cutover.validation.datadocs import GX_STATIC, VENDORED, make_offline, offline_html
from cutover.validation.runner import GateFailed, run_gate
from cutover.validation.suites import description

CANARY = "Qzxv-Canary-Docs-5521"
RUNS = ("docs-run-failing", "docs-run-passing")


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An evidence folder holding two runs of the mapped gate: one failing (the canary), one passing."""
    work = tmp_path_factory.mktemp("docs")
    out = work / "evidence"
    for run in RUNS:
        rows = [outcome(str(i), instrument="LEFS", score=40.0) for i in range(1, 13)]
        if run == RUNS[0]:
            rows[4] = outcome("5", instrument=CANARY, score=40.0)
        url = stage_outcomes(work / run, rows, run_id=run, rows_per_part=5)
        if run == RUNS[0]:
            with pytest.raises(GateFailed):
                run_gate(
                    "mapped", store_url=url, run_id=run, target_url=None, tables=["outcomes"], out_dir=out
                )
        else:
            report = run_gate(
                "mapped", store_url=url, run_id=run, target_url=None, tables=["outcomes"], out_dir=out
            )
            assert report.data_docs == str(out / "data_docs" / "index.html")
    return out


@dataclass
class _Row:
    links: list[str] = field(default_factory=list)
    text: str = ""


class _Refs(HTMLParser):
    """Every (tag, attribute, value) of a src or href, the text of <style> blocks and style attributes,
    and the body rows of each table, by the table's class."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []
        self.styles: list[str] = []
        self.rows: dict[str, list[_Row]] = {}
        self._in_style = False
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.refs += [(tag, k, values[k]) for k in ("src", "href") if k in values]
        if "style" in values:
            self.styles.append(values["style"])
        self._in_style = tag == "style"
        if tag == "table":
            self._table = values.get("class", "")
            self.rows.setdefault(self._table, [])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table is not None and self._in_body:
            self.rows[self._table].append(_Row())
        elif tag == "a" and self._row:
            self._row.links.append(values.get("href", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)
        elif self._row and data.strip():
            self._row.text = f"{self._row.text} {data.strip()}".strip()

    @property
    def _row(self) -> _Row | None:
        if self._table is None or not self._in_body or not self.rows[self._table]:
            return None
        return self.rows[self._table][-1]


def _parsed(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _pages(evidence: Path) -> list[Path]:
    return sorted((evidence / "data_docs").rglob("*.html"))


def test_no_page_loads_anything_from_the_network(evidence: Path) -> None:
    pages = _pages(evidence)
    assert (
        len(pages) == sum(len(t) for t in catalog().by_gate.values()) + len(RUNS) + 1
    )  # suites, runs, index
    external = []
    for page in pages:
        parsed = _parsed(page)
        # a link (<a href>) is followed on a click only; every other src or href is loaded with the page
        external += [
            (page.name, tag, v) for tag, _, v in parsed.refs if tag != "a" and re.match(r"(?i)https?:", v)
        ]
        external += [
            (page.name, "style", u)
            for css in parsed.styles
            for u in re.findall(r"(?i)https?://[^\s'\")]+", css)
        ]
    assert external == []


def test_every_local_asset_a_page_names_is_in_the_site(evidence: Path) -> None:
    site = evidence / "data_docs"
    missing = []
    for page in _pages(evidence):
        for tag, attr, value in _parsed(page).refs:
            parts = urlsplit(value)
            if parts.scheme or not parts.path:  # an external link, or an anchor in the page
                continue
            if not (page.parent / unquote(parts.path)).resolve().is_file():
                missing.append((page.relative_to(site).as_posix(), tag, attr, value))
    assert missing == []


def test_no_static_file_of_gx_that_no_page_uses_is_sealed_into_the_evidence(evidence: Path) -> None:
    site = evidence / "data_docs"
    used = {
        (page.parent / unquote(urlsplit(value).path)).resolve()
        for page in _pages(evidence)
        for _, _, value in _parsed(page).refs
        if not urlsplit(value).scheme and urlsplit(value).path
    }
    kept = [p for folder in GX_STATIC for p in (site / folder).rglob("*") if p.is_file()]
    assert kept  # the favicon and the logo stay
    assert [p.relative_to(site).as_posix() for p in kept if p.resolve() not in used] == []
    assert sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) < 2_500_000  # 8.5 MB before


def test_every_page_uses_the_vendored_assets_in_gx_order(evidence: Path) -> None:
    site = evidence / "data_docs"
    for page in _pages(evidence):
        html = page.read_text(encoding="utf-8")
        root = "../" * (len(page.relative_to(site).parts) - 1) or "./"
        linked = [v for t, _, v in _parsed(page).refs if t in ("link", "script") and "static/vendor/" in v]
        assert linked == [f"{root}{a.target}" for a in VENDORED if a.kind in ("stylesheet", "script")], page
        # Bootstrap first, GX's own inline styles after it (they override it), as GX orders them
        assert html.index("bootstrap.min.css") < html.index("<style>"), page
        assert "prefers-color-scheme: dark" not in html


def test_the_index_lists_every_validation_and_suite_in_the_page(evidence: Path) -> None:
    site = evidence / "data_docs"
    parsed = _parsed(site / "index.html")
    results = sorted((evidence / "results").rglob("*.json"))
    assert len(results) == len(RUNS)
    validations = parsed.rows["table table-sm table-hover ge-index-page-validation-results-table"]
    # a row per stored result: its status links to the validation's page, its suite to the suite's page
    pages = sorted(p.relative_to(site).as_posix() for p in (site / "validations").rglob("*.html"))
    assert sorted(row.links[0] for row in validations) == pages
    assert (
        sorted(f"validations/{p.relative_to(evidence / 'results').with_suffix('.html')}" for p in results)
        == pages
    )
    assert {row.links[1] for row in validations} == {"expectations/mapped/outcomes.html"}
    # newest first: the passing run, then the failing one
    assert [row.text.split()[0] for row in validations] == ["Passed", "Failed"]
    assert [next(r for r in RUNS if r in row.text) for row in validations] == list(reversed(RUNS))
    suites = parsed.rows["table table-sm table-hover ge-index-page-expectation_suites-table"]
    expected = sorted(f"expectations/{g}/{t}.html" for g, tables in catalog().by_gate.items() for t in tables)
    assert [row.links[0] for row in suites] == expected
    assert "bootstrapTable(" not in (site / "index.html").read_text()  # nothing left for a script to draw


def test_the_vendored_assets_are_the_pinned_packages_files_once_per_site(evidence: Path) -> None:
    site = evidence / "data_docs"
    vendored = sorted(p for p in (site / "static" / "vendor").rglob("*") if p.is_file())
    assert [p.relative_to(site).as_posix() for p in vendored] == sorted(
        [a.target for a in VENDORED] + ["static/vendor/SOURCES.txt"]
    )
    for asset in VENDORED:
        assert (site / asset.target).read_bytes() == (
            resources.files(asset.package).joinpath("data", asset.path).read_bytes()
        )
    names = {Path(a.path).name for a in VENDORED}
    copies = [p for p in site.rglob("*") if p.name in names]
    assert len(copies) == len(VENDORED)  # one copy per site, whatever the number of pages and gates
    added = sum(p.stat().st_size for p in vendored)
    assert 400_000 < added < 700_000, added  # about 600 KB per evidence folder
    sources = (site / "static" / "vendor" / "SOURCES.txt").read_text()
    assert {f"{a.distribution} {metadata.version(a.distribution)}" for a in VENDORED} <= set(
        line.split(": ", 1)[1] for line in sources.splitlines()
    )


def test_no_file_of_the_evidence_holds_the_canary(evidence: Path) -> None:
    written = [p for p in evidence.rglob("*") if p.is_file()]
    assert any(p.name == "index.html" for p in written)
    assert [p.name for p in written if CANARY in p.read_bytes().decode("utf-8", "replace")] == []


def test_making_the_site_offline_again_changes_nothing(evidence: Path) -> None:
    site = evidence / "data_docs"
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    make_offline(site)
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before


PAGE_CASES = [
    (
        "a validation page five folders deep: the logo and favicon are GX's local copies",
        '<link rel="shortcut icon" href="../../../../static/images/favicon.ico" type="image/x-icon"/>'
        '<img class="NO-CACHE" src="https://assets.example/logo-long.png?d=20260101T000000Z" alt="GX"/>',
        "../../../../../",
        '<link rel="shortcut icon" href="../../../../../static/images/favicon.ico" type="image/x-icon"/>'
        '<img class="NO-CACHE" src="../../../../../static/images/logo-long.png" alt="GX"/>',
    ),
    (
        "an image GX has no copy of is left alone (a page may lack it offline; nothing else breaks)",
        '<img src="https://assets.example/banner.png">',
        "./",
        '<img src="https://assets.example/banner.png">',
    ),
    (
        "the dark-mode overrides go, nested braces and all; the light styles stay",
        "<style>.a { color: red; }\n@media (prefers-color-scheme: dark) {\n  .t { color: #fff; }\n"
        "  .n a { background: url('https://assets.example/dark.png'); }\n}\n.b { margin: 0; }</style>",
        "./",
        "<style>.a { color: red; }\n\n.b { margin: 0; }</style>",
    ),
    (
        "a stylesheet of any CDN, with integrity and crossorigin attributes, goes",
        '<head><link rel="stylesheet" href="https://cdn.example/a.css" integrity="sha384-x" crossorigin="anonymous">'
        "\n<title>t</title></head>",
        "./",
        '<head><link rel="stylesheet" href="./static/vendor/bootstrap/css/bootstrap.min.css">\n'
        '<link rel="stylesheet" href="./static/vendor/font_awesome/css/fontawesome.min.css">\n'
        '<link rel="stylesheet" href="./static/vendor/font_awesome/css/solid.min.css">\n'
        "<title>t</title></head>",
    ),
]


@pytest.mark.parametrize(("title", "page", "root", "expected"), PAGE_CASES, ids=[c[0] for c in PAGE_CASES])
def test_offline_html(title: str, page: str, root: str, expected: str) -> None:
    assert offline_html(page, root, {"logo-long.png", "favicon.ico"}) == expected
    assert offline_html(expected, root, {"logo-long.png", "favicon.ico"}) == expected  # idempotent


def test_the_module_examples() -> None:
    assert doctest.testmod(datadocs).failed == 0


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))


def test_a_validation_page_reads_each_rule_as_a_rule(evidence: Path) -> None:
    """The data docs say what each expectation checks (its description: the rule, its severity and
    threshold, its Kahn dimension), not GX's "values must belong to this set: True"."""
    page = next(p for p in (evidence / "data_docs" / "validations").rglob("*.html") if RUNS[1] in str(p))
    text = " ".join(_text(page).split())
    for check in catalog().by_gate["mapped"]["outcomes"]:
        assert " ".join(description(check).split()) in text, check.name
    assert "values must belong to this set: True" not in text


def test_a_changed_rule_is_what_the_data_docs_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    checks = catalog().by_gate["mapped"]["outcomes"]
    changed = next(c for c in checks if c.name == "mapped.outcomes.score_in_range")
    rule = "an outcome score is within its instrument's published range (changed for this test)"
    patched = [replace(c, why=rule) if c is changed else c for c in checks]
    monkeypatch.setitem(catalog().by_gate["mapped"], "outcomes", patched)
    rows = [outcome(str(i), instrument="LEFS", score=40.0) for i in range(1, 7)]
    url = stage_outcomes(tmp_path / "run", rows, run_id="docs-rule", rows_per_part=5)
    out = tmp_path / "evidence"
    run_gate("mapped", store_url=url, run_id="docs-rule", target_url=None, tables=["outcomes"], out_dir=out)
    page = next((out / "data_docs" / "validations").rglob("*.html"))
    assert f"{rule} — fatal beyond 1% of rows" in " ".join(_text(page).split())
