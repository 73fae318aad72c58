"""GX data docs that open from the evidence folder with no network (an auditor's machine).

GX Core 1.24's page templates load every script and stylesheet from public CDNs: Bootstrap 4.3.1,
jQuery 3.7.1, Popper 1.12.9, bootstrap-table 1.19.1 and its filter-control extension,
bootstrap-datepicker 1.9.0, Font Awesome 6.6.0, Vega 5, Vega-Lite 5, Vega-Embed 6 and a dark theme
(``@forevolve/bootstrap-dark`` 1.1.0); the navbar's logo comes from GX's S3 bucket. Offline, every
page is unstyled, and the index lists nothing: its tables are drawn by bootstrap-table from data in
a script. The site builder itself lists every validation of the folder's results store.

What this module changes, after GX has written the site:

- the index is rendered as plain HTML tables (:class:`StaticSiteIndexPageRenderer`), one row per
  validation and per suite, so it is populated without any script (bootstrap-table and the
  datepicker of its filters are then unused);
- the assets the pages use are copied once per site into ``static/vendor/`` from pinned XStatic
  packages of PyPI (:data:`VENDORED`: Bootstrap 4.5.3, whose bundle includes Popper, jQuery 3.7.1,
  Font Awesome 6.2.1's solid icons), and every page's external script and stylesheet tags are
  replaced by relative ones (:func:`offline_html`); the logo and favicon point at GX's own copies
  in ``static/images/``;
- the dark-mode overrides of GX's inline styles are dropped: they complete the CDN's dark theme,
  which is not vendored, and alone they would draw dark tables on a light page;
- no gate expectation renders a chart, so Vega is dropped rather than vendored.

The site's pages hold what GX rendered from the sanitised results (ids and counts, never a value):
the rewrite only changes tags in the head, the logo and the favicon.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Literal

from great_expectations.render import RenderedStringTemplateContent, RenderedTableContent
from great_expectations.render.renderer.site_index_page_renderer import SiteIndexPageRenderer

log = logging.getLogger(__name__)

VENDOR_DIR = "static/vendor"
"""Where a site keeps its vendored assets, relative to the site's root (one copy per site)."""


@dataclass(frozen=True)
class Vendored:
    """One file of a pinned XStatic package (``requirements.txt``), copied into every site."""

    distribution: str
    """The PyPI distribution that ships it."""
    package: str
    """Its XStatic module; the file is under the module's ``data/``."""
    path: str
    """Path under ``data/``, kept under ``static/vendor/<name>/`` so a stylesheet's relative urls hold."""
    kind: Literal["stylesheet", "script", "font", "licence"]

    @property
    def target(self) -> str:
        """Path in the site, relative to its root."""
        return f"{VENDOR_DIR}/{self.package.rsplit('.', 1)[-1]}/{self.path}"


VENDORED: tuple[Vendored, ...] = (
    # Bootstrap 4.5.3 (GX asks for 4.3.1; a 4.x minor keeps its classes); the bundle includes Popper
    Vendored("XStatic-Bootstrap", "xstatic.pkg.bootstrap", "css/bootstrap.min.css", "stylesheet"),
    # Font Awesome 6.2.1 (GX asks for 6.6.0): GX's pages use five solid icons, all in 6.2.1; only
    # the solid face, in WOFF2 (every browser since 2016 reads it, so the TrueType fallback the
    # stylesheet also names is never fetched)
    Vendored("XStatic-Font-Awesome", "xstatic.pkg.font_awesome", "css/fontawesome.min.css", "stylesheet"),
    Vendored("XStatic-Font-Awesome", "xstatic.pkg.font_awesome", "css/solid.min.css", "stylesheet"),
    Vendored("XStatic-Font-Awesome", "xstatic.pkg.font_awesome", "webfonts/fa-solid-900.woff2", "font"),
    Vendored("XStatic-Font-Awesome", "xstatic.pkg.font_awesome", "LICENSE.txt", "licence"),
    Vendored("XStatic-jQuery", "xstatic.pkg.jquery", "jquery.min.js", "script"),
    Vendored("XStatic-Bootstrap", "xstatic.pkg.bootstrap", "js/bootstrap.bundle.min.js", "script"),
)
"""The assets every page links, in the order they are linked (Bootstrap and jQuery carry their
licence in their header comment)."""


# --- the site's configuration and build -----------------------------------------------------------


def site_config(site_dir: Path) -> dict[str, Any]:
    """GX's configuration of the data docs site in ``site_dir``: the static index, no how-to buttons.

    The how-to buttons are GX's calls to action (links to its online docs) and, on a validation
    page, a walkthrough dialog of GX's own: nothing an auditor reads.
    """
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "renderer": {"module_name": __name__, "class_name": StaticSiteIndexPageRenderer.__name__},
        },
    }


def build_data_docs(ctx: Any, site_name: str, site_dir: Path, resource_identifiers: list[Any]) -> Path:
    """Build the pages of ``resource_identifiers`` and the index with GX, then make the site offline;
    the index page's path."""
    ctx.build_data_docs(site_names=[site_name], resource_identifiers=resource_identifiers)
    make_offline(site_dir)
    return site_dir / "index.html"


def make_offline(site_dir: Path) -> None:
    """Vendor the assets into ``site_dir`` and rewrite each page that still links a CDN (idempotent);
    then drop the static files GX copies that no page uses (:func:`prune`)."""
    vendor(site_dir)
    images = {p.name for p in (site_dir / "static" / "images").glob("*")}
    for page in sorted(site_dir.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        root = Path(os.path.relpath(site_dir, page.parent)).as_posix() + "/"
        rewritten = offline_html(html, root, images)
        if rewritten != html:
            page.write_text(rewritten, encoding="utf-8")
        left = external_assets(rewritten)
        if left:  # a GX upgrade that links a new asset: the page still opens, without it offline
            log.warning(
                "data docs page %s still loads %d external assets: %s", page.name, len(left), left[:3]
            )
    prune(site_dir)


GX_STATIC = ("static/images", "static/fonts", "static/styles")
"""What GX copies into every site, about 4 MB of images, fonts and a stylesheet, of which the pages
use two images (the favicon and the logo): the rest would be sealed into every evidence bundle."""


def prune(site_dir: Path) -> int:
    """Remove the files of :data:`GX_STATIC` that no page of the site names; bytes removed."""
    pages = "".join(p.read_text(encoding="utf-8") for p in site_dir.rglob("*.html"))
    removed = 0
    for folder in GX_STATIC:
        for path in sorted((site_dir / folder).rglob("*")):
            if path.is_file() and path.relative_to(site_dir).as_posix() not in pages:
                removed += path.stat().st_size
                path.unlink()
        for empty in sorted((site_dir / folder).rglob("*"), reverse=True):
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
    return removed


def vendor(site_dir: Path) -> int:
    """Copy :data:`VENDORED` into ``site_dir`` where missing or different; bytes of the vendored files."""
    total = 0
    for asset in VENDORED:
        content = resources.files(asset.package).joinpath("data", asset.path).read_bytes()
        target = site_dir / asset.target
        if not target.exists() or target.read_bytes() != content:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        total += len(content)
    sources = "".join(
        f"{a.target.removeprefix(VENDOR_DIR + '/')}: {a.distribution} {metadata.version(a.distribution)}\n"
        for a in VENDORED
    )
    listing = site_dir / VENDOR_DIR / "SOURCES.txt"
    if not listing.exists() or listing.read_text() != sources:
        listing.write_text(sources)
    return total + len(sources)


# --- the rewrite of one page ------------------------------------------------------------------------

_EXTERNAL = r"""["']?https?://[^"'\s>)]*["']?"""
_LINK = re.compile(rf"<link\b[^>]*\bhref\s*=\s*{_EXTERNAL}[^>]*>[ \t]*\n?", re.IGNORECASE)
_SCRIPT = re.compile(rf"<script\b[^>]*\bsrc\s*=\s*{_EXTERNAL}[^>]*>\s*</script>[ \t]*\n?", re.IGNORECASE)
_IMAGE = re.compile(r"""(<img\b[^>]*\bsrc\s*=\s*["'])https?://[^"']*/([\w.-]+)(?:\?[^"']*)?(["'])""", re.I)
_FAVICON = re.compile(r"""(\bhref\s*=\s*["'])(?:\./|(?:\.\./)*)static/images/favicon\.ico(["'])""")
_DARK = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*dark\s*\)\s*\{")
_ASSET = re.compile(
    r"""<(?:script|img|iframe|source|audio|video|embed|track)\b[^>]*\bsrc\s*=\s*["']?(https?://[^"'\s>]+)"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?(https?://[^"'\s>]+)"""
    r"""|url\(\s*["']?(https?://[^"')\s]+)"""
    r"""|@import\s+["'](https?://[^"']+)""",
    re.IGNORECASE,
)


def external_assets(html: str) -> list[str]:
    """The urls a page would load from the network: scripts, stylesheets, images, fonts, frames.

    A link (``<a href>``) is followed only on a click, so it is no asset.

    >>> external_assets('<script src="https://cdn.example/x.js"></script><a href="https://gx.io">GX</a>')
    ['https://cdn.example/x.js']
    """
    return [next(g for g in m.groups() if g) for m in _ASSET.finditer(html)]


def _head(root: str, kind: str) -> str:
    if kind == "stylesheet":
        return "".join(
            f'<link rel="stylesheet" href="{root}{a.target}">\n' for a in VENDORED if a.kind == kind
        )
    return "".join(f'<script src="{root}{a.target}"></script>\n' for a in VENDORED if a.kind == kind)


def _first_replaced(pattern: re.Pattern[str], html: str, replacement: str) -> str:
    """Every match of ``pattern`` removed, the first replaced by ``replacement`` (keeping its place
    in the head: GX's inline styles come after Bootstrap's and override it)."""
    done = False

    def swap(_: re.Match[str]) -> str:
        nonlocal done
        if done:
            return ""
        done = True
        return replacement

    return pattern.sub(swap, html)


def _without_dark_mode(html: str) -> str:
    """``html`` without its ``@media (prefers-color-scheme: dark)`` blocks (braces matched)."""
    while found := _DARK.search(html):
        depth, end = 1, found.end()
        while depth and end < len(html):
            depth += {"{": 1, "}": -1}.get(html[end], 0)
            end += 1
        html = html[: found.start()] + html[end:]
    return html


def offline_html(html: str, root: str, images: set[str] | frozenset[str] = frozenset()) -> str:
    """One page of the site with its assets local: ``root`` is the site's root relative to the page
    (``./`` for the index), ``images`` the names of the files in the site's ``static/images/``.

    >>> page = '<head><link rel="stylesheet" href="https://cdn.example/b.css"><style>x</style>'
    >>> page += '<script src="https://cdn.example/j.js"></script><script src="https://cdn.example/v.js"></script>'
    >>> print(offline_html(page, "../"))  # doctest: +NORMALIZE_WHITESPACE
    <head><link rel="stylesheet" href="../static/vendor/bootstrap/css/bootstrap.min.css">
    <link rel="stylesheet" href="../static/vendor/font_awesome/css/fontawesome.min.css">
    <link rel="stylesheet" href="../static/vendor/font_awesome/css/solid.min.css">
    <style>x</style><script src="../static/vendor/jquery/jquery.min.js"></script>
    <script src="../static/vendor/bootstrap/js/bootstrap.bundle.min.js"></script>
    """
    html = _without_dark_mode(html)
    html = _first_replaced(_LINK, html, _head(root, "stylesheet"))
    html = _first_replaced(_SCRIPT, html, _head(root, "script"))
    html = _IMAGE.sub(lambda m: f"{m[1]}{root}static/images/{m[2]}{m[3]}" if m[2] in images else m[0], html)
    return _FAVICON.sub(lambda m: f"{m[1]}{root}static/images/favicon.ico{m[2]}", html)


# --- the index ----------------------------------------------------------------------------------------


class StaticSiteIndexPageRenderer(SiteIndexPageRenderer):
    """GX's index with its tables in the page (every row, newest validation first) instead of data
    for bootstrap-table to draw: no script is needed to list the validations and suites.

    A validation's status links to its page, its suite to the suite's page.
    """

    @classmethod
    def _generate_validation_results_link_table(cls, index_links_dict: dict[str, Any]) -> Any:
        rows = [
            [
                cls._status_cell(bool(link.get("validation_success")), str(link.get("filepath"))),
                cls._get_formatted_datetime(link.get("run_time")),
                link.get("run_name"),
                link.get("asset_name"),
                cls._render_expectation_suite_cell(
                    link.get("expectation_suite_name"), link.get("expectation_suite_filepath")
                ),
            ]
            for link in index_links_dict.get("validations_links", [])
        ]
        return cls._table(
            ["Status", "Run time", "Run name", "Asset", "Expectation suite"], rows, "validation-results"
        )

    @classmethod
    def _generate_expectation_suites_link_table(cls, index_links_dict: dict[str, Any]) -> Any:
        links = sorted(
            index_links_dict.get("expectations_links", []), key=lambda d: d["expectation_suite_name"]
        )
        rows = [
            [cls._render_expectation_suite_cell(d["expectation_suite_name"], d.get("filepath"))]
            for d in links
        ]
        return cls._table(["Expectation suite"], rows, "expectation_suites")

    @classmethod
    def _table(cls, header: list[str], rows: list[list[Any]], name: str) -> Any:
        return RenderedTableContent(
            header_row=header,
            table=rows,
            styling={
                "classes": ["col-12", "ge-index-page-table-container"],
                "body": {"classes": ["table", "table-sm", "table-hover", f"ge-index-page-{name}-table"]},
            },
        )

    @classmethod
    def _status_cell(cls, success: bool, page: str) -> Any:
        return RenderedStringTemplateContent(
            content_block_type="string_template",
            string_template={
                "template": "$icon $status",
                "params": {"icon": "", "status": "Passed" if success else "Failed"},
                "tag": "a",
                "styling": {
                    "attributes": {"href": page},
                    "classes": ["ge-index-page-table-validation-links-item"],
                    "params": {
                        "icon": {
                            "tag": "i",
                            "classes": ["fas", "fa-check-circle", "text-success", "ge-success-icon"]
                            if success
                            else ["fas", "fa-times", "text-danger", "ge-failed-icon"],
                        }
                    },
                },
            },
        )
