"""Severity and threshold of every gate expectation, from ``gates.yaml`` (one file, read here only).

``gates.yaml`` lists rules in order, each a glob over expectation names
(``mapped.*.not_null``) with a severity (``fatal`` stops the DAG before the load commits;
``warning`` is reported) and a threshold (the share of rows allowed to fail). The first rule
that matches a name wins; a name no rule matches is refused, so a new check cannot slip in
without a decision.

>>> policy("extract.visits.visit_id.key_unique")
Policy(severity='fatal', threshold=0.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from cutover.errors import ConfigError

Severity = Literal["fatal", "warning"]
GATES_FILE = Path(__file__).resolve().parent.parent / "gates.yaml"


@dataclass(frozen=True)
class Policy:
    severity: Severity
    threshold: float
    """Share of checked rows allowed to fail (0.0: none)."""


@cache
def _rules() -> list[tuple[str, Policy]]:
    data: dict[str, Any] = yaml.safe_load(GATES_FILE.read_text())
    rules = []
    for entry in data["expectations"]:
        severity, threshold = entry["severity"], float(entry["threshold"])
        if severity not in ("fatal", "warning") or not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"gates.yaml: {entry['match']}: bad severity or threshold")
        rules.append((str(entry["match"]), Policy(severity, threshold)))
    return rules


def policy(name: str) -> Policy:
    """The severity and threshold of the expectation ``name`` (first matching rule of gates.yaml)."""
    for pattern, found in _rules():
        if fnmatchcase(name, pattern):
            return found
    raise ConfigError(f"gates.yaml has no rule for the expectation {name}")
