"""Run policy: how many rejects a table may have before the run fails.

The limits live in ``thresholds.yaml`` beside this module (one source of truth), or in the file
``CUTOVER_THRESHOLDS`` names (a clinic group's own policy, in the same form); a run may tighten or
loosen the default through its ``max_reject_rate`` parameter.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from cutover.errors import ConfigError

THRESHOLDS = Path(__file__).with_name("thresholds.yaml")
SET_ASIDE = frozenset({"removed_in_source", "charge_state_superseded"})
"""Reasons a row is not migrated that are not defects of the data: the legacy system itself says
the row is gone (an extract row flagged removed) or superseded (an older state of a billing charge
whose newest state is migrated). Such rows are accounted and reported apart, and the reject policy
counts neither them nor their rows (a delivery that removes many rows is not a bad load)."""


def thresholds_path() -> Path:
    """The policy file: ``CUTOVER_THRESHOLDS`` when set (a clinic group's own policy), else the package's."""
    chosen = os.environ.get("CUTOVER_THRESHOLDS")
    return Path(chosen) if chosen else THRESHOLDS


def thresholds() -> dict[str, Any]:
    return _read(thresholds_path())


@cache
def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"CUTOVER_THRESHOLDS: no policy file at {path}")
    try:
        data = yaml.safe_load(path.read_text())
        float(data["reject_rate"]["default"])
        {str(t): float(v) for t, v in (data["reject_rate"].get("tables") or {}).items()}
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{path.name}: not a reject policy (reject_rate.default and reject_rate.tables: table → share)"
        ) from exc
    return dict(data)


def reject_limit(table: str, override: float | None = None) -> float:
    """The reject-rate limit of a legacy table; ``override`` replaces the default (not per-table limits).

    >>> reject_limit("clinics"), reject_limit("visits"), reject_limit("visits", 0.1)
    (0.0, 0.05, 0.1)
    """
    rates = thresholds()["reject_rate"]
    if table in (rates.get("tables") or {}):
        return float(rates["tables"][table])
    return float(override if override is not None else rates["default"])


@dataclass(frozen=True)
class RejectPolicy:
    table: str
    legacy_rows: int
    rejected: int
    limit: float
    set_aside: int = 0
    """Of ``legacy_rows`` and ``rejected``, the rows set aside (:data:`SET_ASIDE`): not counted."""

    @property
    def rate(self) -> float:
        """Rejected rows over legacy rows, neither counting the rows set aside.

        >>> round(RejectPolicy("charges", 100, 12, 0.05, set_aside=10).rate, 4)  # 2 of 90
        0.0222
        """
        kept = self.legacy_rows - self.set_aside
        return (self.rejected - self.set_aside) / kept if kept > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.rate <= self.limit

    @property
    def rate_lower_95(self) -> float:
        """The least reject rate the counts allow at 95% confidence (:func:`wilson_lower`): what a
        trial's sample says of the full table; on a full run it only tells how sure a breach is."""
        kept = self.legacy_rows - self.set_aside
        return wilson_lower(self.rejected - self.set_aside, kept)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reject_rate": round(self.rate, 6),
            "rate_lower_95": round(self.rate_lower_95, 6),
            "limit": self.limit,
            "ok": self.ok,
            **({"set_aside": self.set_aside} if self.set_aside else {}),
        }


def wilson_lower(failed: int, n: int, z: float = 1.959964) -> float:
    """The lower bound of the Wilson score interval with continuity correction (Newcombe, 1998) of
    ``failed`` of ``n``, at 95% by default.

    A sample's reject rate is noisy: 1 of 3 is 33%, yet says little of the full table. The bound is
    what the sample shows for certain; the continuity correction keeps it honest on the few rows a
    sample holds of a small table, where the plain Wilson bound claims too much.

    >>> round(wilson_lower(1, 3), 3), round(wilson_lower(300, 1000), 3), wilson_lower(0, 0)
    (0.018, 0.272, 0.0)
    """
    if n <= 0 or failed <= 0:
        return 0.0
    p = failed / n
    z2 = z * z
    root = math.sqrt(max(0.0, z2 - 2 - 1 / n + 4 * p * (n * (1 - p) + 1)))
    return max(0.0, (2 * n * p + z2 - 1 - z * root) / (2 * (n + z2)))


def sample_breaches(reject_policy: dict[str, Any]) -> list[str]:
    """The tables whose reject rate on a trial's sample is above their limit for certain (the 95% lower
    bound, :func:`wilson_lower`, above it): one reason each, for the trial's no-go.

    >>> sample_breaches({"patients": {"reject_rate": 0.3, "rate_lower_95": 0.27, "limit": 0.05},
    ...                  "visits": {"reject_rate": 0.33, "rate_lower_95": 0.04, "limit": 0.05}})
    ['patients: 30.0% rejected on the sample, at least 27.0% at 95% confidence, above its 5.0% limit']
    """
    return [
        f"{table}: {p['reject_rate']:.1%} rejected on the sample, at least {p['rate_lower_95']:.1%} at 95% "
        f"confidence, above its {p['limit']:.1%} limit"
        for table, p in reject_policy.items()
        if isinstance(p, dict) and float(p.get("rate_lower_95") or 0) > float(p.get("limit") or 0)
    ]


def set_aside(reasons: dict[str, int]) -> int:
    """How many of a table's rejects (by reason) are set aside rather than rejected for a defect."""
    return sum(n for reason, n in reasons.items() if reason in SET_ASIDE)


def evaluate(tables: dict[str, Any], override: float | None = None) -> list[RejectPolicy]:
    """The reject policy of each table, from its ``legacy_rows``, ``rejected`` and ``set_aside`` counts."""
    return [
        RejectPolicy(
            table,
            int(o["legacy_rows"]),
            int(o["rejected"]),
            reject_limit(table, override),
            set_aside=int(o.get("set_aside") or 0),
        )
        for table, o in tables.items()
    ]
