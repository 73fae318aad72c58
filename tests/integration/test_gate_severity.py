"""Fatal gates are for the pipeline's own contract, never for a legacy defect that has a reject reason.

A small clinic with a third of the cells of every legacy table replaced by hostile values (every
kind of the catalogue, :mod:`cutover.simulate.hostile`) goes through extract, map and the two Parquet
gates (real GX): neither gate fails. Whatever the legacy data holds becomes a reject with its reason, a
flag, or a warning; a fatal expectation firing here would mean a row the mapping kept breaks the
target's contract (a defect of the mapping) or a legacy defect stops a run the reject policy should
decide.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cutover import pipeline
from cutover.simulate import simulate
from cutover.simulate.hostile import corrupt
from cutover.staging.parquet import read_table_objects
from cutover.staging.store import open_store
from cutover.validation.runner import run_gate

pytestmark = pytest.mark.slow

RUN = "hostile-gates"


def test_no_fatal_expectation_fires_on_hostile_legacy_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_HOME", str(tmp_path / "home"))
    legacy = tmp_path / "legacy.db"
    simulate(f"sqlite:///{legacy}", patients=60, seed=5)
    replaced = corrupt(legacy, rate=0.33, seed=5, huge_limit=1)
    store = f"file://{tmp_path / 'stage'}"
    for table in pipeline.migrated_tables():
        pipeline.extract_table(f"sqlite:///{legacy}", store, RUN, table)
        pipeline.map_table(store, RUN, table, as_of=date(2026, 11, 27))
    out = tmp_path / "out"
    for gate in ("extract", "mapped"):
        report = run_gate(gate, store_url=store, run_id=RUN, target_url=None, out_dir=out)
        fatal = [
            r.expectation
            for r in report.results
            if r.severity == "fatal" and (r.unexpected_count or not r.evaluated)
        ]
        assert report.passed, (gate, fatal)
        assert fatal == [], gate
    # the legacy defects did not vanish: they are rejects with a reason (and the detail names a column)
    staged = open_store(store)
    rejected = 0
    for table in pipeline.migrated_tables():
        parts = [part for _, part in read_table_objects(staged, f"runs/{RUN}/mapped/{table}")]
        data = pa.concat_tables(parts)
        rejected += pc.sum(pc.is_valid(data["reason"])).as_py() or 0
        invalid = data.filter(pc.equal(data["reason"], "id_invalid"))
        assert pc.all(pc.is_valid(invalid["detail"])).as_py() is not False, table
    assert rejected > 0.2 * len({(r["table"], r["legacy_id"]) for r in replaced})
