"""The pipeline bench's memory figures: the sum over every process of the run, the backends apart."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))  # bench/ is the checkout's, not an installed package
from bench.measure import Proc, Sample, backend_pids, read_procs, sample, summarise, tree_pids

MB = 1024  # kB

# a made-up machine: init, the bench (100) with its child (200) and two workers (201, 202) of which
# one forked a helper (203); an unrelated python (300); a PostgreSQL server (500) with its own
# processes, a backend of ours (501) with a parallel worker (502), an autovacuum worker on our
# database (503), a backend of another database (504) and one of ours on another server (601)
PROCS = {
    p.pid: p
    for p in (
        Proc(1, 0, 10 * MB, 0, "systemd", ""),
        Proc(100, 1, 50 * MB, 0, "python", ""),
        Proc(200, 100, 300 * MB, 0, "python", ""),
        Proc(201, 200, 400 * MB, 0, "python", ""),
        Proc(202, 200, 410 * MB, 0, "python", ""),
        Proc(203, 201, 20 * MB, 0, "python", ""),
        Proc(300, 1, 900 * MB, 0, "python", ""),
        Proc(500, 1, 30 * MB, 28 * MB, "postgres", "/usr/lib/postgresql/15/bin/postgres -D /var/lib/x"),
        Proc(510, 500, 60 * MB, 58 * MB, "postgres", "postgres: 15/main: checkpointer"),
        Proc(
            501,
            500,
            120 * MB,
            80 * MB,
            "postgres",
            "postgres: 15/main: postgres bench_cutover 127.0.0.1(4242) COPY",
        ),
        Proc(502, 500, 70 * MB, 50 * MB, "postgres", "postgres: 15/main: parallel worker for PID 501"),
        Proc(503, 500, 40 * MB, 30 * MB, "postgres", "postgres: 15/main: autovacuum worker bench_cutover"),
        Proc(504, 500, 99 * MB, 10 * MB, "postgres", "postgres: 15/main: postgres other [local] idle"),
        Proc(600, 1, 30 * MB, 28 * MB, "postgres", "postgres -D /tmp/embedded"),
        Proc(601, 600, 99 * MB, 10 * MB, "postgres", "postgres: postgres bench_cutover [local] idle"),
    )
}


def test_the_clients_are_the_child_and_every_descendant() -> None:
    assert tree_pids(PROCS, {200}) == {200, 201, 202, 203}
    assert tree_pids(PROCS, {200, 999}) == {200, 201, 202, 203}  # one that exited: left out
    assert tree_pids(PROCS, set()) == set()


def test_the_sample_sums_the_tree_and_counts_the_backends_apart() -> None:
    s = sample(PROCS, {200}, 500, ["bench_cutover"])
    assert s.clients_mb == pytest.approx(300 + 400 + 410 + 20)
    assert s.backends_mb == pytest.approx(120 + 70 + 40)  # not the checkpointer, not another database's
    assert s.backends_private_mb == pytest.approx((120 - 80) + (70 - 50) + (40 - 30))


@pytest.mark.parametrize(
    ("title", "mine"),
    [
        ("postgres: postgres bench_cutover 127.0.0.1(5) idle in transaction", True),
        ("postgres: 15/main: postgres bench_cutover ::1(5) idle", True),
        ("postgres: 15/main: postgres bench_cutover_old 127.0.0.1(5) idle", False),
        ("postgres: 15/main: walwriter", False),
        ("postgres: 15/main: autovacuum launcher", False),
    ],
)
def test_a_backend_is_ours_by_the_database_its_title_names(title: str, mine: bool) -> None:
    procs = {500: PROCS[500], 7: Proc(7, 500, MB, 0, "postgres", title)}
    assert (backend_pids(procs, 500, ["bench_cutover"]) == {7}) is mine


def test_the_peak_is_of_the_sum_at_one_time_not_the_sum_of_peaks() -> None:
    samples = [
        Sample(1.0, 500.0, 10.0, 5.0, 1.0),
        Sample(2.0, 700.0, 30.0, 6.0, 3.0),
        Sample(3.0, 600.0, 20.0, 4.0, 2.0),
    ]
    whole = summarise(samples, [0.5, 0.4, 0.3], [2.5, 0.6, 0.3])
    assert (whole["peak_rss_mb"], whole["backends_peak_rss_mb"], whole["backends_peak_private_mb"]) == (
        700.0,
        30.0,
        6.0,
    )
    assert whole["load_average"] == {
        "start": [0.5, 0.4, 0.3],
        "end": [2.5, 0.6, 0.3],
        "max_1min": 3.0,
        "mean_1min": 2.0,
    }
    window = summarise(samples, [1.0, 0, 0], [2.0, 0, 0], since=2.5, until=3.5)
    assert (window["peak_rss_mb"], window["samples"]) == (600.0, 1)


def test_this_process_is_in_the_process_table() -> None:
    import os

    procs = read_procs()
    me = procs[os.getpid()]
    assert me.rss_kb > 0
    assert me.ppid == os.getppid()
