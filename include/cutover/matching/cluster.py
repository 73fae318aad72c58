"""Clusters of merge pairs, guarded against chaining; the surviving record of each cluster.

Merge pairs join records transitively (A~B and B~C put A, B and C together), but a join is
refused when any record on one side conflicts with or vetoes any record on the other
(:func:`cutover.matching.compare.blocked`), including pairs that blocking never proposed. Pairs are
joined strongest first (score descending, then canonical positions), so when A~B and B~C cannot
both hold, the stronger one wins, and the same input always gives the same clusters. A refused
merge pair goes to review.
"""

from __future__ import annotations

import logging

import numpy as np

from cutover.matching.compare import blocked
from cutover.matching.config import MatchConfig
from cutover.matching.prepare import Prepared

log = logging.getLogger(__name__)


def guarded_clusters(
    prep: Prepared,
    left: np.ndarray,
    right: np.ndarray,
    score: np.ndarray,
    merge: np.ndarray,
    config: MatchConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, refused)``: a cluster label per record (its lowest canonical position) and, per pair,
    whether a merge pair was refused because it would have joined conflicting records."""
    n = len(prep)
    parent = np.arange(n, dtype=np.int64)
    members: dict[int, list[int]] = {}
    refused = np.zeros(len(left), bool)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = int(parent[root])
        while parent[x] != root:  # path compression
            parent[x], x = root, int(parent[x])
        return root

    edges = np.flatnonzero(merge)
    edges = edges[np.lexsort((right[edges], left[edges], -score[edges]))]
    for e in edges.tolist():
        a, b = find(int(left[e])), find(int(right[e]))
        if a == b:
            continue
        side_a = members.get(a, [a])
        side_b = members.get(b, [b])
        if len(side_a) + len(side_b) > 2:
            xs = np.repeat(np.asarray(side_a, np.int64), len(side_b))
            ys = np.tile(np.asarray(side_b, np.int64), len(side_a))
            if blocked(prep, np.minimum(xs, ys), np.maximum(xs, ys), config).any():
                refused[e] = True
                continue
        if len(side_a) < len(side_b):
            a, b, side_a, side_b = b, a, side_b, side_a
        parent[b] = a
        members[a] = side_a + side_b
        members.pop(b, None)
    roots = np.fromiter((find(i) for i in range(n)), np.int64, n)
    labels = np.full(n, n, np.int64)
    np.minimum.at(labels, roots, np.arange(n, dtype=np.int64))
    if refused.any():
        log.info(
            "cluster guard: %d merge pairs refused (conflicting members), sent to review", int(refused.sum())
        )
    return labels[roots], refused


def choose_survivors(prep: Prepared, labels: np.ndarray) -> np.ndarray:
    """Canonical position of each record's survivor: most complete, then earliest created, then lowest id."""
    n = len(prep)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((np.arange(n), prep.created, -prep.completeness, labels))
    sorted_labels = labels[order]
    heads = order[np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]]
    survivor_of = np.full(n, -1, np.int64)
    survivor_of[labels[heads]] = heads
    return survivor_of[labels]
