"""Merge duplicate patients in the mapped stage: who survives, and with which values.

Runs over the whole mapped patients table at once (patients are few next to visits): the
matcher (:mod:`cutover.matching`) decides the clusters; every non-surviving member gets
``merge_into`` = its survivor's legacy id (the loader records it in the crosswalk as
``merged``), and the survivor's row takes the cluster's winning values (survivorship rules of
:func:`cutover.matching.survive_values`). Rows the mapping rejected take no part.
"""

from __future__ import annotations

from typing import Any, TypedDict

import pandas as pd
import pyarrow as pa

from cutover.mapping.engine import TableSpec


class DedupeSummary(TypedDict):
    candidates: int
    clusters: int
    merged: int
    review: int


def dedupe(spec: TableSpec, mapped: pa.Table) -> tuple[pa.Table, DedupeSummary, pd.DataFrame]:
    """Mark duplicates in a mapped patients table; returns the table, counts, and the review pairs (ids, scores)."""
    from cutover.matching import match_patients, survive_values

    frame = mapped.to_pandas(types_mapper=pd.ArrowDtype)
    fields = [name for name, _ in spec.columns]
    ok = frame[frame["reason"].isna()]
    people = ok[["legacy_id", *fields]].copy()
    people["home_clinic_legacy_id"] = ok["ref_home_clinic_id"]
    people["legacy_id"] = people["legacy_id"].astype(str)
    result = match_patients(people)
    survivor = result.survivor.astype(str)
    moved = survivor[survivor.index != survivor.to_numpy()]
    by_id = pd.Series(frame.index, index=frame["legacy_id"].astype(str))
    frame.loc[by_id[moved.index].to_numpy(), "merge_into"] = moved.to_numpy()
    winners = survive_values(people, survivor)
    keep = [c for c in fields if c in winners.columns]
    rows = by_id[winners.index.astype(str)].to_numpy()
    for column in keep:
        frame.loc[rows, column] = winners[column].to_numpy()
    review = result.review[["left_id", "right_id", "score", *[c for c in ("reason",) if c in result.review]]]
    summary = DedupeSummary(
        candidates=len(result.pairs), clusters=int(result.clusters), merged=len(moved), review=len(review)
    )
    table = pa.Table.from_pandas(frame, schema=spec.staged_schema, preserve_index=False)
    return table, summary, review


def review_records(review: pd.DataFrame) -> list[dict[str, Any]]:
    """The review list as plain records (legacy ids and scores only)."""
    return [
        {"left_id": str(r.left_id), "right_id": str(r.right_id), "score": round(float(r.score), 3)}
        | ({"reason": str(r.reason)} if "reason" in review else {})
        for r in review.itertuples(index=False)
    ]
