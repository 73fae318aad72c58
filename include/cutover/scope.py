"""Which legacy rows a run moves: everything (big bang), one wave of clinics (phased), or a sample.

A scope is three sets of legacy ids — patients, cases and visits — because every patient-linked
legacy table reaches its patient through one of those columns (:attr:`LegacyTable.patient_key`).
Reference tables (clinics, providers, payers, referring physicians) are always moved whole: the
upsert makes a second copy a no-op.

*Wave*: a patient belongs to the wave of their home clinic, and a duplicate patient to the wave of
the record that survives the merge, so a person seen at clinics of two waves has one owner and
arrives once, with every record. The last wave may take the ``remaining`` clinics: it is then the
complement of the earlier waves, so rows that reach no patient (orphans) are accounted too.

*Sample*: a share of patients from every clinic, topped up so that every record kind appears,
with all their dependent records — the trial run of ``pt_sample_transfer``.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from functools import reduce
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cutover.legacy.schema import LEGACY_TABLES
from cutover.legacy.source import arrow_schema, read_batches
from cutover.plan import REMAINING, Plan, Wave
from cutover.snapshot import Snapshot
from cutover.staging.store import Store

log = logging.getLogger(__name__)

KEY_TABLES = {"pat_id": "patients", "case_id": "cases", "visit_id": "visits"}
"""Scope key column → the legacy table whose ids it holds."""

WHOLE_IN_DELTA = frozenset({"patients"})
"""Tables a delta sync takes whole within its waves: the duplicate matcher must see the same people
as the wave's cutover did, so that a changed duplicate stays merged into the same survivor."""

Kind = Literal["all", "wave", "sample", "delta"]


@dataclass(frozen=True)
class Scope:
    kind: Kind
    ids: dict[str, pa.Array] = field(default_factory=dict)
    """Scope key column → int64 legacy ids."""
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
        column = LEGACY_TABLES[table].patient_key
        mask = pa.array(np.ones(batch.num_rows, bool))
        if self.kind != "all" and column is not None:
            inside = pc.fill_null(pc.is_in(batch.column(column), value_set=self.ids[column]), False)
            mask = pc.invert(inside) if self.complement else inside
        since = self.since.get(table)
        stamped = None
        if since is not None and "modified" in batch.schema.names:
            stamped = pc.fill_null(pc.greater(batch.column("modified"), since), False)
        snapshot = snapshots.get(self.label)
        if snapshot is None:
            none = pa.array(np.zeros(batch.num_rows, bool))
            return (mask if stamped is None else pc.and_(mask, stamped)), none
        differs = pc.and_(mask, snapshot.differs(batch, LEGACY_TABLES[table].key))
        if stamped is None:
            return differs, differs
        return pc.or_(differs, pc.and_(mask, stamped)), pc.and_(differs, pc.invert(stamped))

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
        if table in WHOLE_IN_DELTA:
            return {}
        found = {m.label: Snapshot.of_runs(store, m.runs, table) for m in self.members if m.runs}
        return {label: snapshot for label, snapshot in found.items() if snapshot is not None}

    def counts(self) -> dict[str, int]:
        if self.members:
            return {f"{m.label}.{k}": v for m in self.members for k, v in m.counts().items()}
        return {KEY_TABLES[k]: len(v) for k, v in self.ids.items()}

    def _meta(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "complement": self.complement,
            "label": self.label,
            "since": self.since,
            "runs": list(self.runs),
        }

    def save(self, store: Store, prefix: str) -> None:
        members = self.members or (self,)
        meta = {**self._meta(), "members": [m._meta() for m in self.members]}
        store.put(f"{prefix}/scope.json", json.dumps(meta).encode())
        keys, ids, member = [], [], []
        for n, m in enumerate(members):
            for k, v in m.ids.items():
                keys += [k] * len(v)
                ids.append(v.cast(pa.int64()))
                member += [n] * len(v)
        rows = pa.table(
            {
                "member": pa.array(member, pa.int32()),
                "key": pa.array(keys, pa.string()),
                "id": pa.concat_arrays(ids) if ids else pa.array([], pa.int64()),
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
            ids = {key: pc.unique(mine.filter(pc.equal(mine["key"], key))["id"]) for key in KEY_TABLES}
            ids = ids if m["kind"] != "all" else {}
            return cls(m["kind"], ids, m["complement"], m["label"], m["since"], runs=tuple(m.get("runs", ())))

        if meta["members"]:
            members = tuple(build(m, n) for n, m in enumerate(meta["members"]))
            return cls(meta["kind"], label=meta["label"], members=members)
        return build(meta, 0)


def _column(legacy_url: str, table: str, columns: list[str]) -> pa.Table:
    spec = LEGACY_TABLES[table]
    cols = [(c, spec.column_type(c)) for c in columns]
    batches = list(read_batches(legacy_url, table, cols, spec.key))
    return (
        pa.Table.from_batches(batches)
        if batches
        else pa.table({c: pa.array([], pa.int64()) for c in columns})
    )


def _closure(legacy_url: str, patients: pa.Array) -> dict[str, pa.Array]:
    """Patients → the cases and visits that hang off them (through their own ``pat_id``)."""
    ids = {"pat_id": pc.unique(patients.cast(pa.int64()))}
    for key, table in (("case_id", "cases"), ("visit_id", "visits")):
        rows = _column(legacy_url, table, [key, "pat_id"])
        ids[key] = rows.filter(pc.fill_null(pc.is_in(rows["pat_id"], value_set=ids["pat_id"]), False))[
            key
        ].combine_chunks()
    return ids


def patient_owners(legacy_url: str, *, as_of: date) -> pa.Table:
    """Every legacy patient with the clinic that owns them: the home clinic of their merge survivor.

    Maps and deduplicates the whole patients table (the same code the cutover runs, so the
    clusters are the ones the load will merge); patients are few next to visits.
    """
    from cutover.mapping.dedupe import dedupe
    from cutover.mapping.engine import map_batch
    from cutover.mapping.specs import SPECS

    spec = SPECS["patients"]
    table = LEGACY_TABLES["patients"]
    batches = list(read_batches(legacy_url, "patients", table.columns, table.key))
    raw = pa.Table.from_batches(batches, schema=arrow_schema(table.columns))
    mapped, _, _ = dedupe(spec, pa.concat_tables([map_batch(spec, raw, as_of=as_of)]))
    survivor = pc.coalesce(mapped["merge_into"], mapped["legacy_id"]).cast(pa.int64())
    legacy_ids = mapped["legacy_id"].cast(pa.int64())
    clinic_of = dict(zip(raw["pat_id"].to_pylist(), raw["clinic_id"].to_pylist(), strict=True))
    owner = pa.array([clinic_of.get(s) for s in survivor.to_pylist()], pa.int64())
    return pa.table({"pat_id": legacy_ids, "owner_clinic": owner})


def wave_scope(
    legacy_url: str, plan: Plan, wave: Wave, *, as_of: date, since: dict[str, str] | None = None
) -> Scope:
    """The rows of one wave (see the module docstring); with ``since``, only those changed after it."""
    owners = patient_owners(legacy_url, as_of=as_of)

    def patients_of(clinics: tuple[int, ...]) -> pa.Array:
        inside = pc.fill_null(
            pc.is_in(owners["owner_clinic"], value_set=pa.array(clinics, pa.int64())), False
        )
        return owners.filter(inside)["pat_id"].combine_chunks()

    if wave.clinics == REMAINING:
        earlier = tuple(c for w in plan.earlier(wave) if w.clinics != REMAINING for c in w.clinics)
        ids = _closure(legacy_url, patients_of(earlier))
        return Scope("wave", ids, complement=True, label=wave.name, since=since or {})
    return Scope("wave", _closure(legacy_url, patients_of(wave.clinics)), label=wave.name, since=since or {})


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
    extracted (:mod:`cutover.snapshot`). Tables in :data:`WHOLE_IN_DELTA` are taken whole.
    """
    members = tuple(
        replace(
            wave_scope(
                legacy_url,
                plan,
                plan.wave(name),
                as_of=as_of,
                since={t: mark for t, mark in marks.items() if t not in WHOLE_IN_DELTA},
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
    patients = _column(legacy_url, "patients", ["pat_id", "clinic_id"]).to_pandas()
    chosen: set[int] = set()
    for _, group in patients.groupby(patients["clinic_id"].fillna(-1)):
        size = max(1, round(len(group) * share))
        chosen.update(int(p) for p in rng.choice(group["pat_id"].to_numpy(), size=size, replace=False))
    ids = _closure(legacy_url, pa.array(sorted(chosen), pa.int64()))
    case_owner = _column(legacy_url, "cases", ["case_id", "pat_id"])
    visit_owner = _column(legacy_url, "visits", ["visit_id", "pat_id"])
    owners = {"case_id": case_owner, "visit_id": visit_owner}
    for name, table in LEGACY_TABLES.items():
        key = table.patient_key
        if key is None or name in KEY_TABLES.values():
            continue
        rows = _column(legacy_url, name, [table.key, key])
        if len(rows) == 0 or pc.any(pc.is_in(rows[key], value_set=ids[key])).as_py():
            continue
        pick = rows[key][int(rng.integers(len(rows)))].as_py()
        patient = pick if key == "pat_id" else _owner_of(owners[key], key, pick)
        if patient is not None:
            chosen.add(int(patient))
            ids = _closure(legacy_url, pa.array(sorted(chosen), pa.int64()))
    log.info("sample: %d of %d patients (share %.3f, seed %d)", len(chosen), len(patients), share, seed)
    return Scope("sample", ids, label=f"sample {share:.1%}")


def _owner_of(rows: pa.Table, key: str, value: int | None) -> int | None:
    match = rows.filter(pc.equal(rows[key], value))
    return match["pat_id"][0].as_py() if len(match) else None
