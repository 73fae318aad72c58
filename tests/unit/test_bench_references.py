"""The pipeline bench's references: one that did not load every row it was given is a failure."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))  # bench/ is the checkout's, not an installed package
from bench.pipeline_bench import ROWS_PER_PATIENT, SIZES, _ratio, judge, parse_options
from bench.references import check_rows, repair_copy, repair_text, sqlite_counts, verdict

FIGURES = {"seconds": 3.5, "peak_rss_mb": 250.0}


@pytest.mark.parametrize(
    ("title", "loaded", "exit_code", "ok", "short"),
    [
        ("every row, exit 0", {"public.visits": 150_940, "public.cases": 9}, 0, True, {}),
        # pgloader on bad UTF-8: the table abandoned, exit 0 all the same
        (
            "a table cut short, exit 0",
            {"public.visits": 4, "public.cases": 9},
            0,
            False,
            {"public.visits": [150_940, 4]},
        ),
        ("a table missing", {"public.cases": 9}, 0, False, {"public.visits": [150_940, 0]}),
        (
            "rows loaded twice",
            {"public.visits": 150_940, "public.cases": 18},
            0,
            False,
            {"public.cases": [9, 18]},
        ),
        ("every row, but a failed exit", {"public.visits": 150_940, "public.cases": 9}, 1, False, {}),
    ],
)
def test_a_reference_is_ok_only_with_every_row_and_exit_0(
    title: str, loaded: dict[str, int], exit_code: int, ok: bool, short: dict[str, list[int]]
) -> None:
    given = {"public.visits": 150_940, "public.cases": 9}
    v = verdict(check_rows(given, loaded), exit_code, FIGURES, "pgloader")
    assert (v["ok"], v["short_tables"], v["rows_given"]) == (ok, short, 150_949), title
    assert v["seconds"] == 3.5


def test_a_failed_reference_gets_no_ratio() -> None:
    failed = verdict(check_rows({"a.t": 10}, {"a.t": 4}), 0, FIGURES, "x")
    passed = verdict(check_rows({"a.t": 10}, {"a.t": 10}), 0, FIGURES, "x")
    assert _ratio(failed, 7.0) is None
    assert _ratio(passed, 7.0) == 0.5  # the reference's seconds ÷ ours: below 1, ours is slower
    assert _ratio(None, 7.0) is None


def test_a_target_without_a_ratio_is_missed() -> None:
    targets = judge({"load_vs_psql_same_work": None, "load_vs_psql_copy": 0.5, "gate_share": 0.15})
    assert targets["load_vs_psql_same_work"] == {"value": None, "target": ">= 1.5", "met": False}
    assert targets["load_vs_psql_copy"]["met"]
    assert targets["gate_share"]["met"]
    assert not targets["peak_rss_mb"]["met"]  # not measured


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("Muñoz".encode(), "Muñoz"),
        ("Muñoz Gößler".encode("latin-1"), "Muñoz Gößler"),
        ("€ 20 – paid".encode("cp1252"), "€ 20 – paid"),
        (b"\x81\x8d", "\x81\x8d"),  # undefined in Windows-1252: Latin-1 takes it
        (b"a\x00b", "ab"),
    ],
)
def test_repair_text(raw: bytes, text: str) -> None:
    assert repair_text(raw) == text


def test_the_repaired_copy_holds_text_where_the_legacy_one_held_bytes(tmp_path: Path) -> None:
    legacy, repaired = tmp_path / "legacy.db", tmp_path / "repaired.db"
    with sqlite3.connect(legacy) as conn:
        conn.execute("CREATE TABLE visits (visit_id INTEGER PRIMARY KEY, subjective TEXT, pain INTEGER)")
        conn.execute("CREATE TABLE notes (note_id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany(
            "INSERT INTO visits VALUES (?, ?, ?)",
            [(1, "fine", 3), (2, "Mu\xf1oz".encode("latin-1"), 4), (3, None, 5)],
        )
        conn.execute("INSERT INTO notes VALUES (1, ?)", ("G\xf6\xdf".encode("latin-1"),))
    assert repair_copy(legacy, repaired, ["visits"]) == 1
    with sqlite3.connect(repaired) as conn:
        assert conn.execute(
            "SELECT subjective, typeof(subjective) FROM visits WHERE visit_id = 2"
        ).fetchone() == (
            "Muñoz",
            "text",
        )
        assert conn.execute("SELECT typeof(body) FROM notes").fetchone() == ("blob",)  # not asked for
    with sqlite3.connect(legacy) as conn:  # the legacy database is left as it was
        assert conn.execute("SELECT typeof(subjective) FROM visits WHERE visit_id = 2").fetchone() == (
            "blob",
        )
    assert sqlite_counts(repaired) == sqlite_counts(legacy) == {"public.visits": 3, "public.notes": 1}


@pytest.mark.parametrize(
    ("argv", "patients", "size"),
    [
        (["--size", "1m"], 10_000, "1m"),
        (["--size", "4m"], 40_000, "4m"),
        (["--size", "10m"], 100_000, "10m"),
        (["--patients", "40000"], 40_000, "4m"),
        (["--patients", "2000"], 2_000, "2000 patients"),
    ],
)
def test_sizes(argv: list[str], patients: int, size: str) -> None:
    options = parse_options(argv)
    assert (options.patients, options.size) == (patients, size)


def test_the_10m_size_is_about_10m_legacy_rows() -> None:
    from cutover.simulate.practice import MIN_PATIENTS

    assert SIZES["10m"] >= MIN_PATIENTS
    assert 10e6 <= SIZES["10m"] * ROWS_PER_PATIENT < 12e6


def test_a_size_and_patients_together_are_refused() -> None:
    with pytest.raises(SystemExit):
        parse_options(["--size", "1m", "--patients", "5"])
