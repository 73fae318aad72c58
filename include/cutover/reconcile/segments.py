"""Key-segmented checksums and bisection, as datafold's data-diff does it, over per-patient charts.

Both sides hold one chart row per patient, keyed by a signed 64-bit patient key and carrying a
digest of the whole chart (two 32-bit halves, ``d1`` and ``d2``). The key space is cut into
``fanout`` contiguous segments; each side answers with (rows, sum of d1, sum of d2) per segment,
and only segments whose checksums differ are cut again, until a segment holds few enough rows to
compare chart by chart. On millions of patients with a handful of mismatches, a few small
aggregate queries per level leave the target, never the charts of matching patients.

The sums are order-independent, so neither side sorts for the target's sake, and each patient's
digest covers its own key: a visit moved from one patient to another changes both digests
instead of cancelling out in a segment sum.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

KEY_MIN = -(2**63)
KEY_MAX = 2**63 - 1


@dataclass(frozen=True, order=True)
class Segment:
    """A closed range of patient keys, ``lo`` to ``hi`` inclusive."""

    lo: int
    hi: int

    def split(self, fanout: int) -> list[Segment]:
        """Cut into at most ``fanout`` contiguous segments of (nearly) equal width.

        >>> Segment(0, 9).split(3)
        [Segment(lo=0, hi=2), Segment(lo=3, hi=5), Segment(lo=6, hi=9)]
        >>> Segment(5, 5).split(4)
        [Segment(lo=5, hi=5)]
        """
        width = self.hi - self.lo + 1
        parts = max(1, min(fanout, width))
        cuts = [self.lo + width * i // parts for i in range(parts + 1)]
        return [Segment(cuts[i], cuts[i + 1] - 1) for i in range(parts)]


ROOT = Segment(KEY_MIN, KEY_MAX)

Checksum = tuple[int, int, int]
"""(rows, sum of d1, sum of d2) of one segment."""


def edges(parts: Sequence[Segment]) -> tuple[list[int], list[int]]:
    """Bucket edges for sorted, non-overlapping segments, and each segment's bucket number.

    A key's bucket is the number of edges at or below it (``width_bucket`` in PostgreSQL,
    ``searchsorted(..., side="right")`` in numpy); gaps between segments get buckets of their own,
    which callers ignore.

    >>> edges([Segment(0, 4), Segment(5, 9), Segment(20, 29)])
    ([0, 5, 10, 20, 30], [1, 2, 4])
    """
    bounds = sorted({p.lo for p in parts} | {p.hi + 1 for p in parts if p.hi < KEY_MAX})
    position = {b: i + 1 for i, b in enumerate(bounds)}
    return bounds, [position[p.lo] for p in parts]


class ChartSide(Protocol):
    """One side of the comparison: per-patient charts it can sum by segment or hand over."""

    def checksums(self, parts: Sequence[Segment]) -> list[Checksum]:
        """One checksum per segment (segments sorted and non-overlapping)."""
        ...

    def charts(self, parts: Sequence[Segment]) -> pa.Table:
        """The chart rows (``key``, digest, components) whose key falls in any of the segments."""
        ...


class ArrowCharts:
    """Charts held in Arrow, sorted by key: segment sums come from prefix sums, no scan per query."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table.sort_by("key") if table.num_rows else table
        self.keys = self.table.column("key").to_numpy()
        zero = np.zeros(1, dtype=np.int64)
        self._d1 = np.concatenate([zero, np.cumsum(self.table.column("d1").to_numpy(), dtype=np.int64)])
        self._d2 = np.concatenate([zero, np.cumsum(self.table.column("d2").to_numpy(), dtype=np.int64)])

    def _bounds(self, parts: Sequence[Segment]) -> tuple[np.ndarray, np.ndarray]:
        los = np.array([p.lo for p in parts], dtype=np.int64)
        his = np.array([p.hi for p in parts], dtype=np.int64)
        return np.searchsorted(self.keys, los, side="left"), np.searchsorted(self.keys, his, side="right")

    def checksums(self, parts: Sequence[Segment]) -> list[Checksum]:
        start, end = self._bounds(parts)
        return [
            (int(e - s), int(self._d1[e] - self._d1[s]), int(self._d2[e] - self._d2[s]))
            for s, e in zip(start.tolist(), end.tolist(), strict=True)
        ]

    def charts(self, parts: Sequence[Segment]) -> pa.Table:
        start, end = self._bounds(parts)
        rows = [np.arange(s, e) for s, e in zip(start.tolist(), end.tolist(), strict=True)]
        return self.table.take(pa.array(np.concatenate(rows) if rows else np.array([], dtype=np.int64)))


@dataclass
class BisectStats:
    """How much work the bisection did: the figures that show it stayed away from matching data."""

    levels: int = 0
    segments_compared: int = 0
    leaves: int = 0
    leaf_rows: int = 0
    queries_per_side: int = 0
    differing_keys: list[int] = field(default_factory=list)


def bisect(
    legacy: ChartSide,
    target: ChartSide,
    *,
    fanout: int = 32,
    leaf_rows: int = 256,
    root: Segment = ROOT,
) -> tuple[pa.Table, pa.Table, BisectStats]:
    """The chart rows of both sides in every segment whose checksums differ, drilled down to leaves.

    A differing segment becomes a leaf once either side holds at most ``leaf_rows`` patients in
    it (or it is a single key); all leaves are fetched in one request per side. Segments are
    processed level by level, one checksum request per side and level.
    """
    stats = BisectStats()
    pending = [root]
    leaves: list[Segment] = []
    while pending:
        parts = sorted(p for segment in pending for p in segment.split(fanout))
        ours, theirs = legacy.checksums(parts), target.checksums(parts)
        stats.levels += 1
        stats.queries_per_side += 1
        stats.segments_compared += len(parts)
        pending = []
        for part, a, b in zip(parts, ours, theirs, strict=True):
            if a == b:
                continue
            if max(a[0], b[0]) <= leaf_rows or part.lo == part.hi:
                leaves.append(part)
            else:
                pending.append(part)
    stats.leaves = len(leaves)
    if not leaves:
        empty = legacy.charts([])
        return empty, empty, stats
    leaves.sort()
    ours_rows, theirs_rows = legacy.charts(leaves), target.charts(leaves)
    stats.queries_per_side += 1
    stats.leaf_rows = max(ours_rows.num_rows, theirs_rows.num_rows)
    log.info(
        "bisection: %d levels, %d segments compared, %d leaves, %d chart rows fetched",
        stats.levels,
        stats.segments_compared,
        stats.leaves,
        stats.leaf_rows,
    )
    return ours_rows, theirs_rows, stats


def differing(ours: pa.Table, theirs: pa.Table, groups: dict[str, tuple[str, ...]]) -> dict[str, list[int]]:
    """Per kind, the keys whose components in ``groups[kind]`` differ (or whose chart one side lacks).

    >>> a = pa.table({"key": [1, 2], "n": [1, 1], "s": [5, 5]})
    >>> b = pa.table({"key": [2, 3], "n": [1, 1], "s": [6, 0]})
    >>> differing(a, b, {"n": ("n",), "s": ("s",)})
    {'n': [1, 3], 's': [1, 2, 3]}
    """
    columns = sorted({c for cols in groups.values() for c in cols})
    left = ours.select(["key", *columns])
    right = theirs.select(["key", *columns]).rename_columns(["key", *(f"{c}__t" for c in columns)])
    joined = left.join(right, "key", join_type="full outer")
    present_l = pc.is_valid(joined.column(columns[0])) if columns else None
    present_r = pc.is_valid(joined.column(f"{columns[0]}__t")) if columns else None
    one_sided = pc.invert(pc.and_(present_l, present_r)) if columns else None
    out: dict[str, list[int]] = {}
    for kind, cols in groups.items():
        mask = one_sided
        for c in cols:
            ne = pc.fill_null(pc.not_equal(joined.column(c), joined.column(f"{c}__t")), False)
            mask = pc.or_(mask, ne)
        keys = joined.column("key").filter(mask).to_pylist()
        out[kind] = sorted(keys)
    return {kind: keys for kind, keys in out.items() if keys}
