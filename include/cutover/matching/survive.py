"""Survivorship: the values the surviving patient carries, field by field."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cutover.matching.prepare import MatchInputError, natural_order

log = logging.getLogger(__name__)


def survive_values(patients: pd.DataFrame, survivor: pd.Series) -> pd.DataFrame:
    """One row per surviving legacy id (the index, in natural id order) with the winning value of each field.

    Per field: the survivor's own value when it has one; else the most recently created cluster
    member's non-null value (then the lowest legacy id). ``sex`` ``unknown`` counts as missing
    unless no member knows better. ``ssn`` only when every non-null SSN in the cluster agrees (else
    NA: a human resolves it). ``created_at`` is the cluster's earliest (the patient's first
    registration). The columns are the input's, without ``legacy_id``.

    >>> import datetime as dt
    >>> df = pd.DataFrame({"legacy_id": ["1", "2"], "email": [None, "a@b.example"], "sex": ["unknown", "female"],
    ...                    "ssn": ["123456780", None],
    ...                    "created_at": [dt.datetime(2020, 1, 1), dt.datetime(2021, 1, 1)]})
    >>> out = survive_values(df, pd.Series({"1": "1", "2": "1"}))
    >>> out.loc["1", ["email", "sex", "ssn"]].tolist(), out["created_at"].dt.year.tolist()
    (['a@b.example', 'female', '123456780'], [2020])
    """
    ids = patients["legacy_id"].astype(str)
    surv_map = survivor.astype(str)
    surv_map.index = surv_map.index.astype(str)
    surv = ids.map(surv_map)
    if surv.isna().any():
        raise MatchInputError(f"survive_values: {int(surv.isna().sum())} legacy ids without a survivor")
    df = patients.reset_index(drop=True)
    surv = surv.reset_index(drop=True)
    natural_rank = np.empty(len(df), np.int64)
    natural_rank[natural_order(ids)] = np.arange(len(df))
    created = (
        pd.to_datetime(df["created_at"], errors="coerce")
        if "created_at" in df.columns
        else pd.Series(pd.NaT, index=df.index, dtype="datetime64[s]")
    )
    stamps = created.to_numpy(dtype="datetime64[s]", na_value=np.datetime64("NaT"))
    # Sorted ascending: the most recent first, a missing timestamp last.
    recency = np.where(np.isnat(stamps), np.iinfo(np.int64).max, -stamps.astype(np.int64))
    is_survivor = (ids.reset_index(drop=True) == surv).to_numpy()
    # Survivor first, then the most recently created, then the lowest id.
    order = np.lexsort((natural_rank, recency, ~is_survivor))
    ranked = df.iloc[order].drop(columns=["legacy_id"])
    keys = surv.iloc[order].to_numpy()
    if "sex" in ranked.columns:
        ranked = ranked.assign(sex=ranked["sex"].mask(ranked["sex"].astype(object).eq("unknown")))
    grouped = ranked.groupby(keys, sort=False)
    out = grouped.first()
    if "sex" in out.columns:
        own_sex = df["sex"].iloc[order][is_survivor[order]]
        own_sex.index = keys[is_survivor[order]]
        out["sex"] = out["sex"].fillna(own_sex.reindex(out.index))
    if "ssn" in out.columns:
        distinct = ranked["ssn"].groupby(keys, sort=False).nunique(dropna=True)
        disputed = distinct.reindex(out.index) > 1
        if disputed.any():
            log.warning("survivorship: %d clusters with disagreeing SSNs keep no SSN", int(disputed.sum()))
        out["ssn"] = out["ssn"].mask(disputed)
    if "created_at" in out.columns:
        out["created_at"] = df["created_at"].iloc[order].groupby(keys, sort=False).min().reindex(out.index)
    out.index = out.index.astype(str)
    out = out.iloc[natural_order(pd.Series(out.index))]
    out.index = pd.Index(out.index, name="legacy_id", dtype="string")
    return out
