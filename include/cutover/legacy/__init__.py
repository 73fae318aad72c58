"""The legacy practice system: its schema (:mod:`cutover.legacy.schema`) and how to read it.

Importing the package is cheap: it loads the schema only, not the database drivers.
"""

from __future__ import annotations

from cutover.legacy.schema import DIALECTS, LEGACY_TABLES, Dialect, LegacyTable, ddl, drop_ddl, quote

__all__ = ["DIALECTS", "LEGACY_TABLES", "Dialect", "LegacyTable", "ddl", "drop_ddl", "quote"]
