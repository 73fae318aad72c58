"""The runnable examples in the docstrings of the CSV-delivery modules and what they touched hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "cutover.legacy.delivery",
    "cutover.legacy.csvfile",
    "cutover.legacy.source",
    "cutover.mapping.engine",
    "cutover.policy",
    "cutover.config",
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
