"""Source-to-target reconciliation: counts, completeness, and per-patient chart checksums bisected like data-diff."""

from __future__ import annotations

from cutover.reconcile.run import ReconcileFailed, ReconcileReport, reconcile

__all__ = ["ReconcileFailed", "ReconcileReport", "reconcile"]
