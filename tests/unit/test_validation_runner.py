"""The Parquet gates on small staged tables: streaming over parts, loadable rows only, ids and never values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from staged_outcomes import outcome, stage_outcomes

from cutover.errors import TransientError
from cutover.validation.runner import GateFailed, run_gate

CANARY = "Qzxv-Canary-Instrument-4417"
RUN = "unit-run"


def _files_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file())


def _result(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in report["results"] if r["expectation"] == name)


def test_mapped_gate_fails_on_a_bad_code_naming_ids_and_counts_never_the_value(tmp_path: Path) -> None:
    rows = [outcome(str(i), instrument="LEFS", score=40.0) for i in range(1, 8)]
    rows[2] = outcome("3", instrument=CANARY, score=40.0)
    # a rejected row is not loaded, so its bad value is not the gate's business
    rows.append(outcome("99", instrument="Qzxv-Rejected-Value", score=500.0, reason="measure_unknown"))
    url = stage_outcomes(tmp_path, rows, run_id=RUN, rows_per_part=3)
    out = tmp_path / "out"
    with pytest.raises(GateFailed) as failed:
        run_gate("mapped", store_url=url, run_id=RUN, target_url=None, tables=["outcomes"], out_dir=out)
    message = str(failed.value)
    assert "mapped gate failed" in message
    assert "mapped.outcomes.instrument.code_set on outcomes: 1/7 rows" in message
    assert CANARY not in message
    report = json.loads((out / "gate_mapped.json").read_text())
    code_set = _result(report, "mapped.outcomes.instrument.code_set")
    assert code_set["failing_ids"] == ["3"]
    assert code_set["status"] == "failed"
    assert _result(report, "mapped.outcomes.score_in_range")["element_count"] == 6  # unknown instrument: n/a
    assert (out / "data_docs" / "index.html").exists()
    written = _files_text(out)
    assert "withheld" in written  # the unexpected-value column of the data docs
    assert CANARY not in written
    assert "Qzxv-Rejected-Value" not in written


def test_keys_are_unique_across_parts_and_a_share_below_the_threshold_is_tolerated(
    tmp_path: Path,
) -> None:
    rows = [outcome(str(i), instrument="ODI", score=30.0) for i in range(1, 201)]
    rows[150] = outcome("7", instrument="ODI", score=30.0)  # the key of row 7 again, in another part
    rows[10] = outcome(
        "11", instrument="NDI", score=51.0
    )  # NDI is 0-50: 1 of 200 (0.5%) under the 1% threshold
    url = stage_outcomes(tmp_path, rows, run_id=RUN, rows_per_part=64)
    out = tmp_path / "out"
    with pytest.raises(GateFailed, match=r"mapped\.outcomes\.row_key\.key_unique on outcomes: 2/200 rows"):
        run_gate("mapped", store_url=url, run_id=RUN, target_url=None, tables=["outcomes"], out_dir=out)
    report = json.loads((out / "gate_mapped.json").read_text())
    assert _result(report, "mapped.outcomes.row_key.key_unique")["failing_ids"] == ["7"]
    score = _result(report, "mapped.outcomes.score_in_range")
    assert (score["unexpected_count"], score["element_count"], score["status"]) == (1, 200, "tolerated")
    assert score["failing_ids"] == ["11"]


def test_an_unreachable_target_is_transient_and_the_error_never_quotes_the_url(tmp_path: Path) -> None:
    url = "postgresql://cutover:S3cret-Pw-991@127.0.0.1:9/nowhere"
    with pytest.raises(TransientError) as failed:
        run_gate("target", store_url="", run_id=RUN, target_url=url, tables=["visits"], out_dir=tmp_path)
    assert "S3cret-Pw-991" not in str(failed.value)
    assert failed.value.__cause__ is None
    assert failed.value.__suppress_context__


def test_the_suites_stored_as_json_read_back_as_the_suites_built_in_code(tmp_path: Path) -> None:
    from cutover.validation import runner
    from cutover.validation.catalog import Gate, catalog
    from cutover.validation.suites import build_suite, suite_name

    ctx = runner._context(tmp_path)
    runner._add_suites(ctx)
    assert len(ctx.expectations_store.list_keys()) == sum(len(t) for t in catalog().by_gate.values())

    def documents(suite: Any) -> list[dict[str, Any]]:
        out = [e.configuration.to_json_dict() for e in suite.expectations]
        for document in out:
            document.pop("id", None)  # the stored suite carries the generated ids, a built one none
        return out

    cases: list[tuple[Gate, str]] = [("extract", "visits"), ("mapped", "procedures"), ("target", "visit")]
    for gate, table in cases:
        stored, built = ctx.suites.get(suite_name(gate, table)), build_suite(gate, table)
        assert documents(stored) == documents(built)
        assert [e.description for e in stored.expectations] == [e.description for e in built.expectations]


def test_preloading_imports_gx_and_builds_the_catalog_without_a_connection() -> None:
    import subprocess
    import sys

    code = (
        "import sys, socket\n"
        "socket.socket.connect = lambda *a: (_ for _ in ()).throw(AssertionError('connects'))\n"
        "import cutover.validation.preload as p\n"
        "from cutover.validation import catalog\n"
        "assert 'great_expectations' in sys.modules and p.SECONDS > 0\n"
        "assert catalog._catalog.cache_info().currsize == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
