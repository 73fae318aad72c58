"""The pre-migration assessment: profile the legacy database and run named checks, without showing PHI.

Before a cutover, data engineers look at what the legacy system really holds (as OHDSI
WhiteRabbit does for a source) and at what the migration will reject, flag or normalise:

- :func:`profile_table`: per column, type, emptiness, distinct count, format patterns and, for code
  columns only, the frequent values (:mod:`cutover.assess.profile`, :mod:`cutover.assess.privacy`);
- :data:`CHECKS`: named checks, one function each, returning counts and example legacy ids
  (:mod:`cutover.assess.checks`);
- :func:`run_assessment` and :func:`write_report`: everything, as ``assessment.html`` and its JSON
  twin ``assessment.json`` (:mod:`cutover.assess.report`).
"""

from __future__ import annotations

from cutover.assess.checks import CHECKS, SEVERITIES, Check, CheckResult, LegacyData, Severity, run_checks
from cutover.assess.privacy import CODE_COLUMNS, MIN_COUNT, PHI_COLUMNS, is_phi
from cutover.assess.profile import ColumnProfile, TableProfile, profile_table, value_patterns
from cutover.assess.report import (
    REPORT_FILES,
    Assessment,
    assemble,
    render_html,
    render_json,
    run_assessment,
    write_report,
)

__all__ = [
    "CHECKS",
    "CODE_COLUMNS",
    "MIN_COUNT",
    "PHI_COLUMNS",
    "REPORT_FILES",
    "SEVERITIES",
    "Assessment",
    "Check",
    "CheckResult",
    "ColumnProfile",
    "LegacyData",
    "Severity",
    "TableProfile",
    "assemble",
    "is_phi",
    "profile_table",
    "render_html",
    "render_json",
    "run_assessment",
    "run_checks",
    "value_patterns",
    "write_report",
]
