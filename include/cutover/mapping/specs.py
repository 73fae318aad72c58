"""The mapping specifications of the built-in ``simulator`` profile (:mod:`cutover.legacy.profile`).

The profile (``legacy/profiles/simulator.yaml``) is the single source of truth for the mapping: each
spec names its legacy table, every target field with its source column(s) and rule, the parent
references and the row checks. The engine runs them; the auditor's mapping document is generated
from them. A run uses its own profile's specs (``Profile.specs``); these are the simulator's.
"""

from __future__ import annotations

from typing import Any

from cutover.mapping.engine import TableSpec


def __getattr__(name: str) -> Any:
    from cutover.legacy.profile import simulator

    if name == "SPECS":
        specs: dict[str, TableSpec] = simulator().specs
        return specs
    if name == "NOT_CARRIED":
        return simulator().not_carried
    raise AttributeError(name)
