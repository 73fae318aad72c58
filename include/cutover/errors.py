"""The error hierarchy: say whether a retry can help.

Messages name tables, batches, counts and legacy ids, never patient values.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CutoverError(Exception):
    """Base of every error Cutover raises on purpose."""


class TerminalError(CutoverError):
    """Bad data, a broken contract or a refused precondition: retrying cannot help."""


class TransientError(CutoverError):
    """A network, database or storage hiccup: Airflow may retry the task."""


class ConfigError(TerminalError):
    """A connection or setting is missing or malformed."""


class IntegrityError(TerminalError):
    """A checksum, count or manifest does not match what was expected."""


class PolicyError(TerminalError):
    """The run broke a policy of thresholds.yaml (e.g. too many rejects in a table)."""


class UnknownNameError(ConfigError):
    """A name the user typed (a legacy table, a DAG) that is not one of the known ones.

    The message names it and lists the known names, closest first.

    >>> str(UnknownNameError("legacy table", "visit", ["clinics", "patients", "visits"]))
    "unknown legacy table 'visit'; known (closest first): visits, clinics, patients"
    """

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind, self.name, self.known = kind, name, closest_first(name, known)
        super().__init__(f"unknown {kind} {name!r}; known (closest first): {', '.join(self.known)}")


def closest_first(name: str, known: Iterable[str]) -> list[str]:
    """``known``, the names most like ``name`` first (difflib's ratio; ties keep their order).

    >>> closest_first("pt_bakup", ["pt_assess", "pt_cutover", "pt_backup"])
    ['pt_backup', 'pt_assess', 'pt_cutover']
    """
    names = list(known)
    score = {n: difflib.SequenceMatcher(None, name.lower(), n.lower()).ratio() for n in names}
    return sorted(names, key=lambda n: -score[n])
