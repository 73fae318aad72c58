"""The Jinja2 templates of the pages the evidence carries, and the one environment that renders them.

Every page extends ``base.html.j2`` (head, inline CSS, header, main): self-contained, no script, no
external asset. Autoescaping is on and a variable the template names but the view model lacks is an
error (``StrictUndefined``), not an empty string. The templates only lay out: what text may appear
(codes, ids, rules) is decided in Python before a value reaches them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


@cache
def environment() -> Environment:
    """The environment, built once: templates load from this package (shipped as package data)."""
    return Environment(
        loader=PackageLoader("cutover.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(name: str, **view: Any) -> str:
    """The template ``name`` laid out with the view model ``view``."""
    return environment().get_template(name).render(**view)
