"""Run policy: how many rejects a table may have before the run fails.

The limits live in ``thresholds.yaml`` beside this module (one source of truth); a run may
tighten or loosen the default through its ``max_reject_rate`` parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

THRESHOLDS = Path(__file__).with_name("thresholds.yaml")


@cache
def thresholds() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(THRESHOLDS.read_text())
    return data


def reject_limit(table: str, override: float | None = None) -> float:
    """The reject-rate limit of a legacy table; ``override`` replaces the default (not per-table limits).

    >>> reject_limit("clinics"), reject_limit("visits"), reject_limit("visits", 0.1)
    (0.0, 0.05, 0.1)
    """
    rates = thresholds()["reject_rate"]
    if table in rates.get("tables", {}):
        return float(rates["tables"][table])
    return float(override if override is not None else rates["default"])


@dataclass(frozen=True)
class RejectPolicy:
    table: str
    legacy_rows: int
    rejected: int
    limit: float

    @property
    def rate(self) -> float:
        return self.rejected / self.legacy_rows if self.legacy_rows else 0.0

    @property
    def ok(self) -> bool:
        return self.rate <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {"reject_rate": round(self.rate, 6), "limit": self.limit, "ok": self.ok}


def evaluate(tables: dict[str, Any], override: float | None = None) -> list[RejectPolicy]:
    """The reject policy of each table, from its ``legacy_rows`` and ``rejected`` counts."""
    return [
        RejectPolicy(table, int(o["legacy_rows"]), int(o["rejected"]), reject_limit(table, override))
        for table, o in tables.items()
    ]
