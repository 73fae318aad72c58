"""The Parquet gates computed in Arrow report what GX alone reports, on a clinic of some size.

A simulated clinic of 3,000 patients (about 330,000 legacy rows, its planted defects included) is
extracted and mapped in parts of at most 10,000 rows; the extract and mapped gates run once as they
do (every check in Arrow) and once with GX computing every check, as before Arrow: the two reports
are equal, result for result (rows, failing rows, failing ids, status). The unit test
``tests/unit/test_arrow_eval.py`` compares the rules part by part on hostile values.
"""

from __future__ import annotations

import contextlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cutover import pipeline
from cutover.simulate import simulate
from cutover.validation import arrow_eval, runner
from cutover.validation.catalog import Gate

pytestmark = pytest.mark.slow

RUN = "arrow-eval-clinic"


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("arrow-eval-clinic")
    store = f"file://{work / 'stage'}"
    legacy = f"sqlite:///{work / 'legacy.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUTOVER_HOME", str(work / "home"))
        mp.setattr(pipeline, "ROWS_PER_PART", 10_000)
        balanced = pipeline.balanced_part_rows
        mp.setattr(pipeline, "balanced_part_rows", lambda rows: balanced(rows, 10_000))
        simulate(legacy, patients=3_000, seed=7)
        for table in pipeline.migrated_tables():
            pipeline.extract_table(legacy, store, RUN, table)
            pipeline.map_table(store, RUN, table, as_of=date(2026, 11, 27))
        yield store, work


def _results(store: str, gate: Gate, out: Path) -> list[dict[str, Any]]:
    with contextlib.suppress(runner.GateFailed):
        runner.run_gate(gate, store_url=store, run_id=RUN, target_url=None, out_dir=out)
    return list(json.loads((out / f"gate_{gate}.json").read_text())["results"])


@pytest.mark.parametrize("gate", ["extract", "mapped"])
def test_the_gate_reports_the_same_in_arrow_as_gx_alone(
    staged: Any, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, work = staged
    in_arrow = _results(store, gate, work / f"{gate}-arrow")
    monkeypatch.setattr(arrow_eval, "RULES", {})
    by_gx = _results(store, gate, work / f"{gate}-gx")
    assert in_arrow == by_gx
    assert len(in_arrow) > 150
    if gate == "mapped":
        assert sum(r["unexpected_count"] for r in in_arrow) > 100
        assert any(len(r["failing_ids"]) == runner.MAX_IDS for r in in_arrow)
