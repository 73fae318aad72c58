"""Validation gates: GX Core suites at extract, mapped and target, with PHI-safe results and data docs."""
