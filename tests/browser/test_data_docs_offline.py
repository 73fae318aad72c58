"""The auditor's view of the GX data docs, with the network off: headless Chromium (Debian's
``chromium``) driven by Playwright opens a real gate's evidence folder from disk, every request that is
not ``file://`` aborted and recorded.

The index is styled by the vendored Bootstrap (the same page with ``static/vendor/`` blocked too is
not), its icons drawn by the vendored Font Awesome, its tables list both validations of the folder and
every suite, Bootstrap's tabs work, and a validation's page opens from the index, styled, showing the
failing id and no value. Screenshots go to ``$CUTOVER_ARTIFACTS`` (default ``tests/browser/artifacts/``):
``data-docs-index.png``, ``data-docs-validation.png``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require
from staged_outcomes import outcome, stage_outcomes

from cutover.validation.catalog import catalog
from cutover.validation.datadocs import VENDORED
from cutover.validation.runner import GateFailed, run_gate

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("CUTOVER_ARTIFACTS") or Path(__file__).parent / "artifacts")
CANARY = "Qzxv-Canary-Browser-3390"
RUNS = ("browser-run-failing", "browser-run-passing")
VALIDATIONS = "table.ge-index-page-validation-results-table tbody tr"
SUITES = "table.ge-index-page-expectation_suites-table tbody tr"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data docs of an evidence folder holding two runs of the mapped gate, one failing on id 5."""
    work = tmp_path_factory.mktemp("docs-browser")
    out = work / "evidence"
    for run in RUNS:
        rows = [outcome(str(i), instrument="LEFS", score=40.0) for i in range(1, 13)]
        if run == RUNS[0]:
            rows[4] = outcome("5", instrument=CANARY, score=40.0)
        url = stage_outcomes(work / run, rows, run_id=run, rows_per_part=5)
        try:
            run_gate("mapped", store_url=url, run_id=run, target_url=None, tables=["outcomes"], out_dir=out)
        except GateFailed:
            assert run == RUNS[0]
    return out / "data_docs"


@pytest.fixture
def browser() -> Iterator[Any]:
    # CI (.ci/run) installs it: there a missing browser fails the test instead of skipping it
    require(
        CHROMIUM.exists(), f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Debian's Chromium, never Playwright's downloaded browsers; --no-sandbox: CI runs as root
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _offline(browser: Any, blocked: list[str], allow: Callable[[str], bool]) -> Any:
    """A page of a fresh context where every request ``allow`` refuses is aborted and recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if allow(url):
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def _navbar_display(page: Any) -> str:
    return str(page.evaluate("getComputedStyle(document.querySelector('nav.navbar')).display"))


def test_the_data_docs_open_styled_and_populated_with_the_network_off(browser: Any, site: Path) -> None:
    blocked: list[str] = []
    errors: list[str] = []
    page = _offline(browser, blocked, lambda url: url.startswith("file://"))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((site / "index.html").as_uri())
    page.wait_for_load_state("load")

    # styled: Bootstrap makes the navbar a flex box (a nav's default is block) and pads a small
    # table's cells 0.3rem (a cell's default is 1px)
    assert _navbar_display(page) == "flex"
    padding = page.evaluate(f"getComputedStyle(document.querySelector('{VALIDATIONS} td')).paddingTop")
    assert padding == "4.8px"
    # the status icons are drawn with the vendored Font Awesome face, loaded from the site
    loaded = page.evaluate(
        """async () => { await document.fonts.ready;
             return Array.from(document.fonts).filter(f => f.family.includes('Font Awesome 6 Free'))
                                              .map(f => f.status); }"""
    )
    assert loaded == ["loaded"]

    # populated: a row per validation, newest first, and every suite behind Bootstrap's tab
    rows = page.locator(VALIDATIONS)
    assert rows.count() == len(RUNS)
    assert [t.split()[0] for t in rows.all_inner_texts()] == ["Passed", "Failed"]
    assert page.locator(SUITES).first.is_hidden()
    page.click("#Expectation-Suites-tab")
    page.locator(SUITES).first.wait_for(state="visible")
    assert page.locator(SUITES).count() == sum(len(tables) for tables in catalog().by_gate.values())
    page.click("#Validation-Results-tab")
    page.wait_for_function("getComputedStyle(document.querySelector('#Validation-Results')).opacity === '1'")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "data-docs-index.png"))

    # the failed validation's page, from its status link: styled, the failing id shown, never the value
    rows.nth(1).get_by_role("link", name="Failed").click()
    page.wait_for_load_state("load")
    assert "/validations/mapped/outcomes/browser-run-failing/" in page.url
    assert _navbar_display(page) == "flex"
    body = page.inner_text("body")
    assert "withheld" in body
    assert CANARY not in page.content()
    assert (
        page.locator("td", has_text="withheld").first.evaluate("td => getComputedStyle(td).paddingTop")
        != "1px"
    )
    page.screenshot(path=str(ARTIFACTS / "data-docs-validation.png"), full_page=True)

    assert errors == []
    assert blocked == []  # nothing was even asked of the network


def test_without_the_vendored_assets_the_same_page_is_unstyled(browser: Any, site: Path) -> None:
    """The control: the styles measured above come from ``static/vendor/``, not from the browser."""
    blocked: list[str] = []
    page = _offline(browser, blocked, lambda url: url.startswith("file://") and "/static/vendor/" not in url)
    page.goto((site / "index.html").as_uri())
    page.wait_for_load_state("load")
    assert _navbar_display(page) == "block"
    linked = [a for a in VENDORED if a.kind in ("stylesheet", "script")]  # the font: by a stylesheet
    assert sorted(blocked) == sorted((site / a.target).as_uri() for a in linked)
    # the tables are in the page all the same: no script draws them
    assert page.locator(VALIDATIONS).count() == len(RUNS)
