"""Validation gates: GX Core suites at extract, mapped and target, with PHI-safe results and data docs.

- :mod:`cutover.validation.catalog`: every check, derived from the legacy schema, the mapping specs,
  the target's CHECK constraints and the code tables (the one source of truth);
  :mod:`cutover.validation.target_rules`: the PT rules as SQL.
- ``gates.yaml`` (:mod:`cutover.validation.config`): severity and threshold of every expectation.
- :mod:`cutover.validation.suites`: the GX suites, built in code and committed under ``expectations/``.
- :mod:`cutover.validation.runner`: :func:`run_gate`, the results JSON and the data docs; the rules
  computed in Arrow (:mod:`~cutover.validation.arrow_eval`) and in PostgreSQL
  (:func:`~cutover.validation.target_rules.count_query`), recorded through GX.
- :mod:`cutover.validation.preload`: a gate task's imports, for a worker to pay once before it forks.

GX itself is imported only when a gate runs, so importing this package stays light.
"""

from __future__ import annotations

from cutover.validation.catalog import GATES, Gate
from cutover.validation.runner import ExpectationResult, GateFailed, GateReport, run_gate

__all__ = ["GATES", "ExpectationResult", "Gate", "GateFailed", "GateReport", "run_gate"]
