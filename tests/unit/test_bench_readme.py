"""The README's Performance block is generated from the pipeline bench's results."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))  # bench/ is the checkout's, not an installed package
from bench.readme import BEGIN, END, README, BlockMissing, block, rewrite

LOAD = {"start": [1.0, 1.0, 1.0], "end": [2.0, 1.0, 1.0], "max_1min": 2.5, "mean_1min": 1.8}
RESULT: dict[str, Any] = {
    "rows": 1_068_261,
    "patients": 10_000,
    "server": "system",
    "measured_at": "2026-12-06T16:00:00+00:00",
    "machine": {"cpus": 2, "memory_mb": 24105, "postgresql": "15.20"},
    "stages": {"extract": 60000.0, "map": 50000.0, "stage": 900000.0, "load": 104_000.0, "validate": 40000.0},
    "stage_seconds": {"extract": 12.0, "map": 14.0, "stage": 2.0, "load": 10.24, "validate": 25.6},
    "end_to_end_seconds": 94.7,
    "end_to_end_rows_per_s": 11280.5,
    "end_to_end": {"seconds": 94.7, "load_average": LOAD},
    "gate_share": 0.27,
    "peak_rss_mb": 1182.0,
    "peak_rss_mb_largest_process": 512.0,
    "postgres_backends_peak_rss_mb": 187.0,
    "postgres_backends_peak_private_mb": 60.0,
    "load_vs_psql_copy": 0.31,
    "load_vs_psql_same_work": 1.128,
    "load_vs_psql": {
        "bare_csv": 0.31,
        "bare_binary": 0.2,
        "live_schema": 1.9,
        "same_work_target_rows": 0.798,
    },
    "end_to_end_vs_pgloader": 0.21,
    "references": {
        "pgloader": {
            "ok": False,
            "exit_code": 0,
            "rows_given": 1_068_261,
            "rows_loaded": 917_325,
            "short_tables": {"public.visits": [150_940, 4]},
            "seconds": 15.0,
            "load_average": LOAD | {"mean_1min": 2.2},
        },
        "pgloader_repaired": {
            "ok": True,
            "exit_code": 0,
            "rows_given": 1_068_261,
            "rows_loaded": 1_068_261,
            "short_tables": {},
            "seconds": 20.0,
            "repaired_cells": 3100,
            "load_average": LOAD | {"mean_1min": 2.6},
        },
    },
}


def test_rewrite_touches_nothing_outside_the_markers() -> None:
    text = f"# Title\n\nbefore\n\n## Performance\n\n{BEGIN}\nold figures\n{END}\n\n## Decisions\n\nafter\n"
    new = rewrite(text, "new figures\n")
    assert (
        new
        == f"# Title\n\nbefore\n\n## Performance\n\n{BEGIN}\nnew figures\n{END}\n\n## Decisions\n\nafter\n"
    )
    assert rewrite(new, "new figures\n") == new  # run again: the same text


@pytest.mark.parametrize(
    "text",
    ["no markers\n", f"{BEGIN}\nonly the start\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{END}\n{BEGIN}\n{END}\n"],
)
def test_rewrite_refuses_a_readme_without_one_pair_of_markers(text: str) -> None:
    with pytest.raises(BlockMissing):
        rewrite(text, "x")


def test_the_block_shows_the_results_figures() -> None:
    text = block([RESULT])
    assert "1,068,261 legacy rows" in text
    assert "| 94.7 s (11k rows/s) |" in text
    assert "| 1.13 / 0.80 |" in text  # same work / target rows only
    assert "| 0.31 / 0.20 / 1.90 |" in text
    assert "| 27% |" in text
    assert "1,182 MB / 512 MB" in text
    assert "187 MB (60 MB)" in text
    assert "1.8 (max 2.5)" in text
    assert "| 2.2–2.6 |" in text  # the references' load averages


def test_a_reference_that_dropped_rows_is_said_so() -> None:
    text = " ".join(block([RESULT]).split())  # unwrapped
    assert "as given: 917,325 of 1,068,261 rows, exit 0" in text
    assert "only 4 of 150,940 rows of `visits`" in text
    assert "took 33% longer" in text
    failed = copy.deepcopy(RESULT)
    failed["load_vs_psql_same_work"] = None
    del failed["references"]["pgloader_repaired"]
    failed["end_to_end_vs_pgloader"] = None
    text = " ".join(block([failed]).split())
    assert "| failed / 0.80 |" in text
    assert "failed (as given: 917,325 of 1,068,261 rows, exit 0)" in text


def test_a_repaired_copy_that_failed_too_gets_no_ratio_and_is_said_so() -> None:
    broken = copy.deepcopy(RESULT)
    broken["references"]["pgloader_repaired"] |= {"ok": False, "exit_code": 1, "rows_loaded": 931_181}
    broken["end_to_end_vs_pgloader"] = None
    text = " ".join(block([broken]).split())
    assert "no ratio: failed on the repaired copy too (931,181 rows, exit 1;" in text
    assert "it stopped with exit 1 after loading 931,181 of 1,068,261 rows: no ratio at this size" in text
    assert "the ratio uses that run" not in text


def test_the_targets_are_said_met_or_missed() -> None:
    from bench.pipeline_bench import judge

    result = copy.deepcopy(RESULT) | {"targets": judge(RESULT)}
    text = " ".join(block([result]).split())  # unwrapped
    assert "`load_vs_psql_same_work` >= 1.5: 1.128 (missed)" in text
    assert "`peak_rss_mb` <= 1536: 1182.0 (met)" in text


def test_two_sizes_are_two_columns_smallest_first() -> None:
    bigger = copy.deepcopy(RESULT) | {"rows": 4_289_400, "patients": 40_000, "peak_rss_mb": 1353.0}
    text = block([bigger, RESULT])
    assert "|  | 1.07M rows | 4.29M rows |" in text
    assert "changed by +14%" in text


def test_the_readme_has_one_block() -> None:
    text = README.read_text()
    assert text.count(BEGIN) == text.count(END) == 1
    assert text.index("## Performance") < text.index(BEGIN) < text.index(END)
