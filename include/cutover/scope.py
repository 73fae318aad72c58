"""Which legacy rows a run moves: everything (big bang), one wave of clinics (phased), or a sample.

A scope is a set of legacy ids per *owner* table — the patients, and the tables other tables reach
their patient through (the simulator's cases and visits) — because every patient-linked legacy table
reaches its patient through a column (:attr:`LegacyTable.patient_key`) that leads to one of them
(:meth:`~cutover.legacy.profile.Profile.owner`; all from the run's profile). Reference tables
(clinics, providers, payers, referring physicians) are always moved whole: the upsert makes a second
copy a no-op.

*Wave*: a patient belongs to the wave of their home clinic, and a duplicate patient to the wave of
the record that survives the merge, so a person seen at clinics of two waves has one owner and
arrives once, with every record. The last wave may take the ``remaining`` clinics: it is then the
complement of the earlier waves, so rows that reach no patient (orphans) are accounted too.

*Sample*: a share of patients from every clinic, topped up so that every record kind appears,
with all their dependent records — the trial run of ``pt_sample_transfer``.

*Rows*: named legacy rows of each table, by their own key — a remediation run's corrected rejects and
the rejects that depend on them (:mod:`cutover.remediation`); a table named in ``whole`` is taken
whole (the patients, as in a delta sync, so that the duplicate matcher sees the same people).
"""

from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from functools import reduce
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cutover.legacy.profile import current, legacy_tables, mapping_specs
from cutover.legacy.source import arrow_schema, read_batches
from cutover.plan import REMAINING, Plan, Wave
from cutover.snapshot import Snapshot
from cutover.staging.store import Store

log = logging.getLogger(__name__)


def whole_in_delta() -> frozenset[str]:
    """Tables a delta sync takes whole within its waves: the patients (the profile's table mapped to
    ``patient``), since the duplicate matcher must see the same people as the wave's cutover did, so
    that a changed duplicate stays merged into the same survivor; and the record tables that merge a
    record entered twice (the safety records), so that a changed survivor keeps every legacy id it
    stands for (``source_records``) and a changed duplicate stays merged into it."""
    merging = {table for table, spec in mapping_specs().items() if spec.merge_same}
    return frozenset({current().patient_table, *merging})


Kind = Literal["all", "wave", "sample", "delta", "rows"]


@dataclass(frozen=True)
class Scope:
    kind: Kind
    ids: dict[str, pa.Array] = field(default_factory=dict)
    """Owner table → its legacy ids inside the scope (typed as its key); for a ``rows`` scope, legacy
    table → the text ids of its own rows inside it."""
    complement: bool = False
    """True: the scope is every row whose key is *not* in ``ids`` (the last wave)."""
    label: str = "all"
    since: dict[str, str] = field(default_factory=dict)
    """Legacy table → high-water mark: only rows ``modified`` after it (a delta sync); tables not
    named, or without a ``modified`` column, are taken whole within the scope, unless the member
    has a snapshot (``runs``)."""
    members: tuple[Scope, ...] = ()
    """A delta scope is the union of its members (one per migrated wave)."""
    runs: tuple[str, ...] = ()
    """A delta member: the runs (store keys, oldest first) whose extracts are its wave's snapshot; a
    row that differs from it has changed, whatever its ``modified`` says (:mod:`cutover.snapshot`)."""
    whole: tuple[str, ...] = ()
    """A ``rows`` scope: the legacy tables it takes whole."""

    def mask(
        self, table: str, batch: pa.RecordBatch, snapshots: Mapping[str, Snapshot] | None = None
    ) -> pa.Array:
        return self._masks(table, batch, snapshots or {})[0]

    def _masks(
        self, table: str, batch: pa.RecordBatch, snapshots: Mapping[str, Snapshot]
    ) -> tuple[pa.Array, pa.Array]:
        """The rows of ``batch`` inside the scope, and those of them inside only because they differ
        from their wave's snapshot (changed without a newer ``modified``)."""
        if self.members:
            pairs = [m._masks(table, batch, snapshots) for m in self.members]
            return reduce(pc.or_, (p[0] for p in pairs)), reduce(pc.or_, (p[1] for p in pairs))
        if self.kind == "rows":
            return self._rows(table, batch), pa.array(np.zeros(batch.num_rows, bool))
        owner = current().owner(table)
        mask = pa.array(np.ones(batch.num_rows, bool))
        if self.kind != "all" and owner is not None:
            column, owner_table = owner
            values = batch.column(column)
            inside = pc.fill_null(pc.is_in(values, value_set=self.ids[owner_table].cast(values.type)), False)
            mask = pc.invert(inside) if self.complement else inside
        since = self.since.get(table)
        stamped = None
        modified = legacy_tables()[table].modified
        if since is not None and modified is not None and modified in batch.schema.names:
            stamped = pc.fill_null(pc.greater(batch.column(modified), since), False)
        snapshot = snapshots.get(self.label)
        if snapshot is None:
            none = pa.array(np.zeros(batch.num_rows, bool))
            return (mask if stamped is None else pc.and_(mask, stamped)), none
        differs = pc.and_(mask, snapshot.differs(batch, legacy_tables()[table].key))
        if stamped is None:
            return differs, differs
        return pc.or_(differs, pc.and_(mask, stamped)), pc.and_(differs, pc.invert(stamped))

    def _rows(self, table: str, batch: pa.RecordBatch) -> pa.Array:
        """A ``rows`` scope's rows of ``batch``: all of a ``whole`` table, else those whose key, as text,
        it names."""
        if table in self.whole:
            return pa.array(np.ones(batch.num_rows, bool))
        named = self.ids.get(table)
        if named is None or not len(named):
            return pa.array(np.zeros(batch.num_rows, bool))
        keys = pc.cast(batch.column(legacy_tables()[table].key), pa.string())
        return pc.fill_null(pc.is_in(keys, value_set=named.cast(pa.string())), False)

    def keep(
        self, table: str, batch: pa.RecordBatch, snapshots: Mapping[str, Snapshot] | None = None
    ) -> pa.RecordBatch:
        """The rows of ``batch`` (a batch of legacy ``table``) inside the scope."""
        return self.select(table, batch, snapshots)[0]

    def select(
        self, table: str, batch: pa.RecordBatch, snapshots: Mapping[str, Snapshot] | None = None
    ) -> tuple[pa.RecordBatch, int]:
        """The rows of ``batch`` inside the scope, and how many of them are inside only because they
        differ from their snapshot (``snapshots``: wave → :class:`~cutover.snapshot.Snapshot`)."""
        if self.kind == "all" and not self.since:
            return batch, 0
        inside, unstamped = self._masks(table, batch, snapshots or {})
        return batch.filter(inside), pc.sum(unstamped).as_py() or 0

    def snapshots(self, store: Store, table: str) -> dict[str, Snapshot]:
        """Per wave of a delta scope, ``table``'s rows as the wave's runs last extracted them; none for
        the tables a delta takes whole (patients)."""
        if table in whole_in_delta():
            return {}
        found = {m.label: Snapshot.of_runs(store, m.runs, table) for m in self.members if m.runs}
        return {label: snapshot for label, snapshot in found.items() if snapshot is not None}

    def counts(self) -> dict[str, int]:
        if self.members:
            return {f"{m.label}.{k}": v for m in self.members for k, v in m.counts().items()}
        return {k: len(v) for k, v in self.ids.items()}

    def _meta(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "complement": self.complement,
            "label": self.label,
            "since": self.since,
            "runs": list(self.runs),
            "whole": list(self.whole),
        }

    def save(self, store: Store, prefix: str) -> None:
        members = self.members or (self,)
        meta = {**self._meta(), "members": [m._meta() for m in self.members]}
        store.put(f"{prefix}/scope.json", json.dumps(meta).encode())
        keys, ids, member = [], [], []
        for n, m in enumerate(members):
            for k, v in m.ids.items():
                keys += [k] * len(v)
                ids.append(v.cast(pa.string()))
                member += [n] * len(v)
        rows = pa.table(
            {
                "member": pa.array(member, pa.int32()),
                "key": pa.array(keys, pa.string()),
                "id": pa.concat_arrays(ids) if ids else pa.array([], pa.string()),
            }
        )
        sink = io.BytesIO()
        pq.write_table(rows, sink, compression="zstd")
        store.put(f"{prefix}/scope.parquet", sink.getvalue())

    @classmethod
    def load(cls, store: Store, prefix: str) -> Scope:
        meta = json.loads(store.get(f"{prefix}/scope.json"))
        rows = pq.read_table(io.BytesIO(store.get(f"{prefix}/scope.parquet")))

        def build(m: dict, n: int) -> Scope:
            mine = rows.filter(pc.equal(rows["member"], n))
            if m["kind"] == "rows":
                named = {
                    key: mine.filter(pc.equal(mine["key"], key))["id"] for key in set(mine["key"].to_pylist())
                }
                return cls(
                    "rows",
                    {k: v.combine_chunks() for k, v in named.items()},
                    label=m["label"],
                    whole=tuple(m.get("whole", ())),
                )
            owners = set(mine["key"].to_pylist()) | set(current().owner_tables())
            ids = {key: pc.unique(mine.filter(pc.equal(mine["key"], key))["id"]) for key in owners}
            ids = ids if m["kind"] != "all" else {}
            return cls(m["kind"], ids, m["complement"], m["label"], m["since"], runs=tuple(m.get("runs", ())))

        if meta["members"]:
            members = tuple(build(m, n) for n, m in enumerate(meta["members"]))
            return cls(meta["kind"], label=meta["label"], members=members)
        return build(meta, 0)


def _column(legacy_url: str, table: str, columns: list[str]) -> pa.Table:
    spec = legacy_tables()[table]
    cols = [(c, spec.column_type(c)) for c in columns]
    batches = list(read_batches(legacy_url, spec.source_name, cols, spec.key))
    return pa.Table.from_batches(batches, schema=arrow_schema(cols))


Reader = Callable[[str, tuple[str, ...]], pa.Table]
"""(legacy table, columns) → those columns of the whole table."""


def _reader(legacy_url: str) -> Reader:
    """A reader of legacy columns that reads each (table, columns) once: one scope decision follows
    the same owner tables again and again (the sample's closure after every top-up)."""
    return functools.cache(lambda table, columns: _column(legacy_url, table, list(columns)))


def _closure(read: Reader, patients: pa.Array) -> dict[str, pa.Array]:
    """Patients → the ids of every owner table's rows that hang off them (parents first: the
    simulator's cases and visits through their own ``pat_id``)."""
    profile = current()
    patient = profile.patient_table
    ids = {patient: pc.unique(patients.cast(profile.key_arrow_type(patient)))}
    for table in profile.owner_tables():
        if table == patient:
            continue
        column, owner = profile.owner(table) or ("", "")
        rows = read(table, (profile.tables[table].key, column))
        inside = pc.fill_null(pc.is_in(rows[column], value_set=ids[owner].cast(rows[column].type)), False)
        ids[table] = rows.filter(inside)[profile.tables[table].key].combine_chunks()
    return ids


def patient_owners(legacy_url: str, *, as_of: date) -> pa.Table:
    """Every legacy patient (``patient``, text) with the clinic that owns them (``owner_clinic``): the
    home clinic of their merge survivor.

    Maps and deduplicates the whole patients table (the same code the cutover runs, so the
    clusters are the ones the load will merge); patients are few next to visits.
    """
    from cutover.mapping.dedupe import dedupe
    from cutover.mapping.engine import map_batch

    profile = current()
    name = profile.patient_table
    spec, table = profile.specs[name], profile.tables[name]
    home = profile.home_clinic_column
    batches = list(read_batches(legacy_url, table.source_name, table.columns, table.key))
    raw = pa.Table.from_batches(batches, schema=arrow_schema(table.columns))
    mapped, _, _ = dedupe(spec, pa.concat_tables([map_batch(spec, raw, as_of=as_of)]))
    survivor = pc.coalesce(mapped["merge_into"], mapped["legacy_id"])
    clinics = raw[home] if home else pa.nulls(len(raw), pa.int64())
    clinic_of = dict(zip(raw[table.key].cast(pa.string()).to_pylist(), clinics.to_pylist(), strict=True))
    owner = pa.array([clinic_of.get(s) for s in survivor.to_pylist()], clinics.type)
    return pa.table({"patient": mapped["legacy_id"], "owner_clinic": owner})


def wave_scope(
    legacy_url: str, plan: Plan, wave: Wave, *, as_of: date, since: dict[str, str] | None = None
) -> Scope:
    """The rows of one wave (see the module docstring); with ``since``, only those changed after it."""
    owners = patient_owners(legacy_url, as_of=as_of)
    read = _reader(legacy_url)

    def patients_of(clinics: tuple[int, ...]) -> pa.Array:
        wanted = pa.array([str(c) for c in clinics], pa.string())
        inside = pc.fill_null(pc.is_in(owners["owner_clinic"].cast(pa.string()), value_set=wanted), False)
        return owners.filter(inside)["patient"].combine_chunks()

    if wave.clinics == REMAINING:
        earlier = tuple(c for w in plan.earlier(wave) if w.clinics != REMAINING for c in w.clinics)
        ids = _closure(read, patients_of(earlier))
        return Scope("wave", ids, complement=True, label=wave.name, since=since or {})
    return Scope("wave", _closure(read, patients_of(wave.clinics)), label=wave.name, since=since or {})


def delta_scope(
    legacy_url: str,
    plan: Plan,
    high_water: dict[str, dict[str, str]],
    *,
    as_of: date,
    runs: Mapping[str, list[str]] | None = None,
) -> Scope:
    """Rows of migrated waves changed since their last run (``high_water``: wave → table → mark).

    A row changed if its ``modified`` is above the wave's mark or, with ``runs`` (wave → the store
    keys of the runs that covered it, oldest first), if it differs from the copy those runs last
    extracted (:mod:`cutover.snapshot`). Tables of :func:`whole_in_delta` are taken whole.
    """
    members = tuple(
        replace(
            wave_scope(
                legacy_url,
                plan,
                plan.wave(name),
                as_of=as_of,
                since={t: mark for t, mark in marks.items() if t not in whole_in_delta()},
            ),
            runs=tuple((runs or {}).get(name, ())),
        )
        for name, marks in high_water.items()
    )
    return Scope("delta", label="delta " + ", ".join(high_water), members=members)


def sample_scope(legacy_url: str, *, share: float, seed: int) -> Scope:
    """A stratified sample: ``share`` of each clinic's patients (at least one), then one patient more
    for every patient-linked table the sample would otherwise leave empty."""
    rng = np.random.default_rng(seed)
    read = _reader(legacy_url)
    profile = current()
    name = profile.patient_table
    key, home = profile.tables[name].key, profile.home_clinic_column
    patients = read(name, (key, home) if home else (key,)).to_pandas()
    clinic = patients[home].fillna(-1) if home else pd.Series(0, index=patients.index)
    chosen: set[Any] = set()
    for _, group in patients.groupby(clinic):
        size = max(1, round(len(group) * share))
        chosen.update(
            p.item() if hasattr(p, "item") else p
            for p in rng.choice(group[key].to_numpy(), size=size, replace=False)
        )

    def closure() -> dict[str, pa.Array]:
        return _closure(read, pa.array(sorted(chosen), profile.key_arrow_type(name)))

    ids = closure()
    for table, spec in profile.tables.items():
        owner = profile.owner(table)
        if owner is None or table in profile.owner_tables():
            continue
        column, owner_table = owner
        rows = read(table, (spec.key, column))
        value_set = ids[owner_table].cast(rows[column].type)
        if len(rows) == 0 or pc.any(pc.is_in(rows[column], value_set=value_set)).as_py():
            continue
        patient = _patient_of(read, owner_table, rows[column][int(rng.integers(len(rows)))].as_py())
        if patient is not None:
            chosen.add(patient)
            ids = closure()
    log.info("sample: %d of %d patients (share %.3f, seed %d)", len(chosen), len(patients), share, seed)
    return Scope("sample", ids, label=f"sample {share:.1%}")


def _patient_of(read: Reader, table: str, value: object) -> object | None:
    """The patient a row of ``table`` (by its key ``value``) belongs to, following its owners."""
    profile = current()
    while value is not None and table != profile.patient_table:
        column, owner_table = profile.owner(table) or ("", "")
        rows = read(table, (profile.tables[table].key, column))
        match = rows.filter(pc.equal(rows[profile.tables[table].key], value))
        value = match[column][0].as_py() if len(match) else None
        table = owner_table
    return value
