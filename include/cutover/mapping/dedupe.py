"""Merge duplicate patients in the mapped stage: who survives, and with which values.

Deduplication is the one global step of the mapping: whether two patients are one person can only
be told with every patient at hand. It is split so that only what is truly global is held at once:

1. :func:`plan_merges` reads the mapped patients (as many passes over bounded batches as it needs,
   never the whole table as one frame) and keeps, for every patient the mapping did not reject,
   only the columns the matcher compares (:data:`MATCH_COLUMNS`, 13 of 25 staged columns); the
   matcher (:mod:`cutover.matching`) decides the clusters. Survivorship then needs every field,
   but only of the members of clusters of two or more (about a fifth of the patients): a second
   pass collects those rows alone.
2. :func:`apply_merges` marks one batch at a time: every non-surviving member gets ``merge_into``
   = its survivor's legacy id (the loader records it in the crosswalk as ``merged``), and the
   survivor's row takes the cluster's winning values (survivorship rules of
   :func:`cutover.matching.survive_values`). Rows the mapping rejected take no part.

A singleton's winning values are its own, so leaving singletons untouched gives the same rows as
marking the whole table at once (:func:`dedupe`, kept for callers that hold a small table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cutover.mapping.engine import TableSpec
from cutover.matching.prepare import REQUIRED_COLUMNS

MATCH_COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, "name_suffix")
"""Mapped patient columns the matcher reads: ``legacy_id`` and the compared fields (``name_suffix``
too: records with different suffixes, a father and son, are never merged)."""


class DedupeSummary(TypedDict):
    candidates: int
    clusters: int
    merged: int
    review: int


@dataclass(frozen=True)
class MergePlan:
    """What deduplication decided: ids and winning values, applied batch by batch."""

    moved: pd.Series
    """Legacy id of each merged (non-surviving) patient → its survivor's legacy id."""
    winners: pd.DataFrame
    """Survivors of clusters of two or more, indexed by legacy id: the cluster's winning field values."""
    summary: DedupeSummary
    review: pd.DataFrame
    """Pairs for a human: legacy ids, score and reason only."""


def _people(rows: pa.Table, columns: list[str]) -> pd.DataFrame:
    """The matcher's frame: ``columns`` of the rows the mapping did not reject, legacy ids as text."""
    people = rows.select(columns).to_pandas(types_mapper=pd.ArrowDtype)
    if "ref_home_clinic_id" in people:
        people = people.rename(columns={"ref_home_clinic_id": "home_clinic_legacy_id"})
    people["legacy_id"] = people["legacy_id"].astype(str)
    return people


def _kept(batch: pa.RecordBatch | pa.Table, columns: list[str], ids: pa.Array | None = None) -> pa.Table:
    """``columns`` of a batch's rows without a reason (and, given ``ids``, whose legacy id is one of them)."""
    keep = pc.is_null(batch.column("reason"))
    if ids is not None:
        keep = pc.and_(keep, pc.is_in(batch.column("legacy_id"), value_set=ids))
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return table.filter(keep).select(columns)


def plan_merges(
    spec: TableSpec,
    batches: Callable[[], Iterable[pa.RecordBatch | pa.Table]],
    decisions: Mapping[tuple[str, str], str] | None = None,
) -> MergePlan:
    """Decide the merges of a mapped patients table read twice through ``batches()`` (ids and scores out);
    ``decisions``: a person's verdicts on review pairs (:func:`cutover.matching.match_patients`)."""
    from cutover.matching import match_patients, survive_values

    fields = [name for name, _ in spec.columns]
    match_columns = [c for c in MATCH_COLUMNS if c == "legacy_id" or c in fields]
    compared = [_kept(b, match_columns) for b in batches()]
    schema = spec.staged_schema
    people = _people(
        pa.concat_tables(compared) if compared else schema.empty_table().select(match_columns),
        match_columns,
    )
    del compared
    result = match_patients(people, decisions=decisions)
    del people
    survivor = result.survivor.astype(str)
    moved = survivor[survivor.index != survivor.to_numpy()]
    # survivorship over the members of clusters of two or more: every field, a fraction of the rows
    members = survivor[survivor.isin(set(moved.to_numpy()))]
    full_columns = [
        "legacy_id",
        *fields,
        *(["ref_home_clinic_id"] if "ref_home_clinic_id" in schema.names else []),
    ]
    ids = pa.array(members.index.to_list(), pa.string())
    rows = [_kept(b, full_columns, ids) for b in batches()]
    group = _people(
        pa.concat_tables(rows) if rows else schema.empty_table().select(full_columns), full_columns
    )
    winners = survive_values(group, members) if len(group) else pd.DataFrame(columns=fields)
    review = result.review[["left_id", "right_id", "score", *[c for c in ("reason",) if c in result.review]]]
    summary = DedupeSummary(
        candidates=len(result.pairs), clusters=int(result.clusters), merged=len(moved), review=len(review)
    )
    return MergePlan(
        moved=moved,
        winners=winners[[c for c in fields if c in winners.columns]],
        summary=summary,
        review=review,
    )


SOURCES = "source_records"
"""The target column of a record table listing the legacy ids a row stands for."""


def plan_record_merges(
    spec: TableSpec, batches: Callable[[], Iterable[pa.RecordBatch | pa.Table]]
) -> MergePlan:
    """Decide the merges of a record table (``spec.merge_same``): within one owner, rows whose compared
    columns are equal (NULL equal to NULL, text without ASCII letter case) are one record; the lowest legacy id survives and its
    ``source_records`` lists every member, itself first. Holds the compared columns of the rows the
    mapping did not reject, never a whole row."""
    within, *same = spec.merge_same
    columns = ["legacy_id", within, *same]
    kept = [_kept(b, columns) for b in batches()]
    compared = pa.concat_tables(kept) if kept else spec.staged_schema.empty_table().select(columns)
    # text compared without ASCII letter case ("Warfarin", "WARFARIN"), as the chart hashes it
    compared = pa.table(
        {
            name: pc.ascii_upper(column)
            if pa.types.is_string(column.type) and name != "legacy_id"
            else column
            for name, column in zip(compared.column_names, compared.columns, strict=True)
        }
    )
    rows = compared.to_pandas(types_mapper=pd.ArrowDtype)
    del kept
    ids = rows["legacy_id"].astype(str)
    numeric = pd.to_numeric(ids, errors="coerce")
    order = pd.DataFrame({"n": numeric.isna(), "v": numeric.fillna(0), "id": ids}).sort_values(
        ["n", "v", "id"]
    )
    rows = rows.loc[order.index]
    key = rows[[within, *same]].astype(str)  # NULL compares equal to NULL ("<NA>"), a list by its text
    first = rows.groupby([key[c] for c in key.columns], sort=False, dropna=False)["legacy_id"].transform(
        "first"
    )
    survivor = pd.Series(first.astype(str).to_numpy(), index=rows["legacy_id"].astype(str).to_numpy())
    moved = survivor[survivor.index != survivor.to_numpy()]
    members = survivor[survivor.isin(set(moved.to_numpy()))]
    sources = members.groupby(members.to_numpy(), sort=False).apply(lambda m: list(m.index))
    winners = pd.DataFrame({SOURCES: sources})
    summary = DedupeSummary(candidates=len(members), clusters=len(sources), merged=len(moved), review=0)
    return MergePlan(moved=moved, winners=winners, summary=summary, review=pd.DataFrame())


def apply_merges(spec: TableSpec, batch: pa.RecordBatch | pa.Table, plan: MergePlan) -> pa.Table:
    """One batch of mapped rows with ``merge_into`` set and the survivors' winning values."""
    if spec.merge_same:
        return _apply_record_merges(spec, batch, plan)
    frame = batch.to_pandas(types_mapper=pd.ArrowDtype)
    ids = frame["legacy_id"].astype(str)
    merged = ids.isin(plan.moved.index).to_numpy()
    if merged.any():
        frame.loc[merged, "merge_into"] = plan.moved[ids[merged]].to_numpy()
    won = ids.isin(plan.winners.index).to_numpy()
    if won.any():
        values = plan.winners.loc[ids[won]]
        for column in plan.winners.columns:
            frame.loc[won, column] = values[column].to_numpy()
    return pa.Table.from_pandas(frame, schema=spec.staged_schema, preserve_index=False)


def _apply_record_merges(spec: TableSpec, batch: pa.RecordBatch | pa.Table, plan: MergePlan) -> pa.Table:
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    ids = table.column("legacy_id").to_pylist()
    merge_into = [plan.moved.get(i) if i is not None else None for i in ids]
    sources = table.column(SOURCES).to_pylist()
    won = plan.winners[SOURCES]
    sources = [won[i] if i in won.index else s for i, s in zip(ids, sources, strict=True)]
    schema = spec.staged_schema
    table = table.set_column(
        schema.get_field_index("merge_into"), "merge_into", pa.array(merge_into, pa.string())
    )
    at = schema.get_field_index(SOURCES)
    return table.set_column(at, schema.field(at), pa.array(sources, schema.field(at).type))


def dedupe(spec: TableSpec, mapped: pa.Table) -> tuple[pa.Table, DedupeSummary, pd.DataFrame]:
    """Mark duplicates in a whole mapped patients table; returns the table, counts, and the review pairs (ids, scores)."""
    plan = plan_merges(spec, lambda: [mapped])
    return apply_merges(spec, mapped, plan), plan.summary, plan.review


def review_records(review: pd.DataFrame) -> list[dict[str, Any]]:
    """The review list as plain records (legacy ids and scores only)."""
    return [
        {"left_id": str(r.left_id), "right_id": str(r.right_id), "score": round(float(r.score), 3)}
        | ({"reason": str(r.reason)} if "reason" in review else {})
        for r in review.itertuples(index=False)
    ]
