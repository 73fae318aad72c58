"""Key uniqueness across staged parts: settled from 64-bit hashes, confirmed on the keys themselves.

Every test stages the same kind of table as the mapped gate reads (outcomes), cut into parts, and
checks that duplicates across parts are counted and named by legacy id exactly as counting every
key at once would, even when every key's hash collides with every other's.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from staged_outcomes import outcome, stage_outcomes

from cutover.pipeline import run_key
from cutover.staging.parquet import write_batches
from cutover.staging.store import open_store
from cutover.validation import runner
from cutover.validation.runner import GateFailed, run_gate

RUN = "unit-unique"
KEY_UNIQUE = "mapped.outcomes.row_key.key_unique"


def _rows() -> list[dict[str, Any]]:
    """300 outcomes in five parts of 64: keys repeated within a part, across parts, three times, and
    on rows that do not load (rejected, merged), which do not count."""
    rows = [outcome(str(i)) for i in range(1, 301)]
    rows[100] = outcome("100-b", row_key="7#2")  # part 1; "7#2" again in part 4
    rows[260] = outcome("260-b", row_key="7#2")
    rows[70] = outcome("70-b", row_key="12")  # part 1, the key of row 12 (part 0)
    rows[200] = outcome("200-b", row_key="150")  # part 3, the key of row 150 (part 2): and again
    rows[290] = outcome("290-b", row_key="150")
    rows[25] = outcome("25-b", row_key="21")  # part 0, the key of row 21 in the same part
    rows[280] = outcome("280-b", row_key="33", reason="measure_unknown")  # rejected: not loaded
    rows[281] = outcome("281-b", row_key="34", merge_into="9")  # merged: not loaded
    return rows


def _expected(rows: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Count and first ten ids from counting every loadable key at once (the gate's definition)."""
    keys = pa.array(
        [r["row_key"] for r in rows if r["reason"] is None and r["merge_into"] is None], pa.string()
    )
    counts = pc.value_counts(keys.drop_null())
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    return int(pc.sum(dup.field("counts")).as_py() or 0), [
        str(v).split("#")[0] for v in dup.field("values").to_pylist()[:10]
    ]


def _key_unique(tmp_path: Path, rows: list[dict[str, Any]], *, rows_per_part: int) -> dict[str, Any]:
    url = stage_outcomes(tmp_path, rows, run_id=RUN, rows_per_part=rows_per_part)
    out = tmp_path / "out"
    with contextlib.suppress(GateFailed):
        run_gate("mapped", store_url=url, run_id=RUN, target_url=None, tables=["outcomes"], out_dir=out)
    report = json.loads((out / "gate_mapped.json").read_text())
    return next(r for r in report["results"] if r["expectation"] == KEY_UNIQUE)


def test_duplicates_across_parts_are_counted_and_named_like_counting_every_key_at_once(
    tmp_path: Path,
) -> None:
    rows = _rows()
    found = _key_unique(tmp_path, rows, rows_per_part=64)
    count, ids = _expected(rows)
    assert (count, ids) == (9, ["12", "21", "7", "150"])
    assert found["unexpected_count"] == count
    assert found["failing_ids"] == ids
    assert found["element_count"] == 298
    assert found["status"] == "failed"


@pytest.mark.parametrize("duplicated", [True, False])
def test_colliding_hashes_are_confirmed_on_the_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duplicated: bool
) -> None:
    """With every key hashed alike, only keys that really repeat count, in order of first appearance."""
    rows = _rows() if duplicated else [outcome(str(i)) for i in range(1, 301)]
    monkeypatch.setattr(runner, "_key_hashes", lambda values: np.full(len(values), 42, np.uint64))
    found = _key_unique(tmp_path, rows, rows_per_part=64)
    assert (found["unexpected_count"], found["failing_ids"]) == _expected(rows)
    assert found["status"] == ("failed" if duplicated else "ok")


def test_more_than_ten_duplicated_keys_name_the_first_ten(tmp_path: Path) -> None:
    rows = [outcome(str(i)) for i in range(1, 201)]
    for n in range(15):  # keys 1..15 again in the last part, in reverse order
        rows[199 - n] = outcome(f"dup-{n}", row_key=str(15 - n))
    found = _key_unique(tmp_path, rows, rows_per_part=50)
    assert (found["unexpected_count"], found["failing_ids"]) == _expected(rows)
    assert found["failing_ids"] == [str(i) for i in range(1, 11)]


def test_hashes_are_equal_for_equal_keys_and_spread_otherwise() -> None:
    text = pa.array([f"{i}#{i % 7}" for i in range(50_000)] + ["", "a", "a\x00", "é", "ab", "ba"])
    hashes = runner._key_hashes(text)
    assert len(np.unique(hashes)) == len(text)
    # the same keys in another array (other offsets, a slice) hash the same
    again = runner._key_hashes(pa.chunked_array([text.slice(10), text.slice(0, 10)]).combine_chunks())
    assert np.array_equal(again, np.concatenate([hashes[10:], hashes[:10]]))
    numbers = pa.array(np.arange(-5, 50_000), pa.int64())
    assert len(np.unique(runner._key_hashes(numbers))) == len(numbers)
    assert np.array_equal(runner._key_hashes(numbers), runner._key_hashes(pc.cast(numbers, pa.int32())))


def test_an_attachment_column_is_read_as_whether_a_value_is_there(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'stage'}"
    content = [b"x" * 100, None, b"", None, b"y"] * 2000
    table = pa.table({"id": pa.array(range(len(content))), "content": pa.array(content, pa.binary())})
    store = open_store(url)
    manifest = write_batches(store, "t", table.to_batches(), schema=table.schema, rows_per_part=100_000)
    part = manifest["parts"][0]
    flags, names = runner._read(store, part)
    assert flags.column_names == names == ["id", "content"]
    assert flags["content"].to_pylist() == [True if v is not None else None for v in content]
    assert runner._read(store, part, whole=["content"])[0]["content"].to_pylist() == content
    only, names = runner._read(store, part, columns=["content", "missing"])
    assert (only.column_names, names) == (["content"], ["id", "content"])
    assert runner._column(flags["content"]).tolist() == runner._column(table["content"]).tolist()


@pytest.mark.parametrize(
    "content",
    [[b"x", b"yy"] * 3000, [None, None] * 3000, [b"x", None] * 3000],
    ids=["all-present", "all-null", "mixed"],
)
def test_attachment_presence_from_statistics_or_values(tmp_path: Path, content: list[bytes | None]) -> None:
    table = pa.table({"content": pa.array(content, pa.binary())})
    store = open_store(f"file://{tmp_path / 'stage'}")
    manifest = write_batches(store, "t", table.to_batches(), schema=table.schema, rows_per_part=100_000)
    flags, _ = runner._read(store, manifest["parts"][0])
    assert flags["content"].to_pylist() == [True if v is not None else None for v in content]
    assert runner._column(flags["content"]).tolist() == runner._column(table["content"]).tolist()


def test_a_text_column_whose_type_alone_is_checked_is_not_decoded(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'stage'}"
    table = pa.table(
        {"id": pa.array([1, 2, 3]), "note": pa.array(["a", None, "c"]), "n": pa.array([1, 2, 3])}
    )
    store = open_store(url)
    part = write_batches(store, "t", table.to_batches(), schema=table.schema, rows_per_part=10)["parts"][0]
    read, _ = runner._read(store, part, typed=["note", "n", "missing"])
    assert read["note"].null_count == 3
    assert read["n"].to_pylist() == [1, 2, 3]  # only text: a number's NULLs decide its pandas dtype
    assert runner._column(read["note"]).dtype == runner._column(table["note"]).dtype


@pytest.mark.parametrize("collide", [False, True])
def test_integer_legacy_keys_duplicated_across_parts_fail_the_extract_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collide: bool
) -> None:
    from cutover.legacy.schema import LEGACY_TABLES
    from cutover.legacy.source import arrow_schema

    if collide:
        monkeypatch.setattr(runner, "_key_hashes", lambda values: np.zeros(len(values), np.uint64))
    schema = arrow_schema(LEGACY_TABLES["payers"].columns)
    ids = [*range(1, 41), 5, 30, 5]  # 5 three times, 30 twice: the last three rows are the last part
    rows = [{"payer_id": i, "payer_name": "Payer", "payer_type": "commercial"} for i in ids]
    url = f"file://{tmp_path / 'stage'}"
    write_batches(
        open_store(url),
        f"runs/{run_key(RUN)}/extract/payers",
        pa.Table.from_pylist(rows, schema=schema).to_batches(),
        schema=schema,
        rows_per_part=20,
    )
    out = tmp_path / "out"
    with contextlib.suppress(GateFailed):
        run_gate("extract", store_url=url, run_id=RUN, target_url=None, tables=["payers"], out_dir=out)
    report = json.loads((out / "gate_extract.json").read_text())
    found = next(r for r in report["results"] if r["expectation"].endswith("payer_id.key_unique"))
    assert (found["unexpected_count"], found["failing_ids"], found["element_count"]) == (5, ["5", "30"], 43)
