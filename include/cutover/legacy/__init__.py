"""The legacy practice system: its profile (:mod:`cutover.legacy.profile`), schema and how to read it.

Importing the package is cheap: it loads neither the profile nor the database drivers.
"""

from __future__ import annotations

from typing import Any

from cutover.legacy.schema import DIALECTS, Dialect, LegacyTable, ddl, drop_ddl, quote

__all__ = ["DIALECTS", "LEGACY_TABLES", "Dialect", "LegacyTable", "ddl", "drop_ddl", "quote"]


def __getattr__(name: str) -> Any:
    if name == "LEGACY_TABLES":
        from cutover.legacy.profile import simulator

        return simulator().tables
    raise AttributeError(name)
