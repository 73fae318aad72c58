"""What a benchmark's figure was measured under: the memory of every process of the run, sampled, and
the machine's load average.

A figure from one process's peak (``VmHWM``) leaves out the worker processes, ``psql`` or
``pgloader`` and the database server's backends; a figure without the load average cannot be told
apart from a slow machine. :class:`Measurement` samples ``/proc`` every :data:`INTERVAL` seconds
while a step runs and keeps, per sample, the resident memory summed over the watched process trees
(the clients) and over the PostgreSQL backends serving the watched databases (reported apart: their
shared buffers are the server's, not the run's), and the 1-minute load average.

The parts that decide what counts are pure functions over a process table (:func:`tree_pids`,
:func:`backend_pids`, :func:`summarise`), so the unit tests give them a made-up one.

>>> procs = {1: Proc(1, 0, 100_000, 0, "init", ""), 10: Proc(10, 1, 200_000, 0, "python", ""),
...          11: Proc(11, 10, 300_000, 0, "python", ""), 12: Proc(12, 1, 999_999, 0, "python", "")}
>>> sorted(tree_pids(procs, {10}))
[10, 11]
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTERVAL = 0.25
"""Seconds between two samples: reading ``/proc`` of ~150 processes costs ~5 ms of CPU, 2% of one core."""

_TITLE = re.compile(
    r"^postgres: (?:[^:]*: )?"  # "postgres: " and, where cluster_name is set, "15/main: "
    r"(?:autovacuum worker (?P<vacuumed>\S+)"
    r"|parallel worker for PID (?P<leader>\d+)"
    r"|(?P<user>\S+) (?P<database>\S+) \S)"
)
"""A backend's process title (``update_process_title``): a client's, an autovacuum worker's, a
parallel worker's. The server's own processes (checkpointer, walwriter …) match none."""


@dataclass(frozen=True)
class Proc:
    """One process as ``/proc`` shows it; memory in kB."""

    pid: int
    ppid: int
    rss_kb: int
    shmem_kb: int
    """The shared-memory part of ``rss_kb`` (``RssShmem``): for a backend, the shared buffers it touched."""
    name: str
    title: str
    """The command line (read for ``postgres`` processes only: their title names the database)."""


def read_procs(root: Path = Path("/proc")) -> dict[int, Proc]:
    """Every process readable now; one that exits while being read is left out."""
    found: dict[int, Proc] = {}
    for entry in root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if line.startswith(_FIELDS))
            name = fields.get("Name", "").strip()
            title = ""
            if name == "postgres":
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            found[int(entry.name)] = Proc(
                pid=int(entry.name),
                ppid=int(fields.get("PPid", "0")),
                rss_kb=_kb(fields.get("VmRSS")),
                shmem_kb=_kb(fields.get("RssShmem")),
                name=name,
                title=title,
            )
        except (OSError, ValueError):
            continue
    return found


_FIELDS = ("Name:", "PPid:", "VmRSS:", "RssShmem:")


def _kb(value: str | None) -> int:
    return int(value.split()[0]) if value else 0  # "  123456 kB"; kernel threads have none


def tree_pids(procs: Mapping[int, Proc], roots: Iterable[int]) -> set[int]:
    """``roots`` and every descendant of theirs that ``procs`` holds."""
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found: set[int] = set()
    todo = [pid for pid in roots if pid in procs]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def backend_pids(procs: Mapping[int, Proc], postmaster: int, databases: Iterable[str]) -> set[int]:
    """The backends of ``postmaster`` serving ``databases``: their clients' backends, their parallel
    workers and the autovacuum workers vacuuming them.

    >>> procs = {
    ...     5: Proc(5, 1, 0, 0, "postgres", "/usr/lib/postgresql/15/bin/postgres -D …"),
    ...     6: Proc(6, 5, 9, 8, "postgres", "postgres: 15/main: checkpointer"),
    ...     7: Proc(7, 5, 9, 1, "postgres", "postgres: 15/main: postgres bench_cutover 127.0.0.1(5) COPY"),
    ...     8: Proc(8, 5, 9, 1, "postgres", "postgres: 15/main: parallel worker for PID 7"),
    ...     9: Proc(9, 5, 9, 1, "postgres", "postgres: 15/main: postgres other_db [local] idle"),
    ... }
    >>> sorted(backend_pids(procs, 5, ["bench_cutover"]))
    [7, 8]
    """
    wanted = set(databases)
    ours: set[int] = set()
    leaders: dict[int, int] = {}
    for proc in procs.values():
        if proc.ppid != postmaster or not (match := _TITLE.match(proc.title)):
            continue
        if match["leader"]:
            leaders[proc.pid] = int(match["leader"])
        elif (match["database"] or match["vacuumed"]) in wanted:
            ours.add(proc.pid)
    return ours | {pid for pid, leader in leaders.items() if leader in ours}


@dataclass(frozen=True)
class Sample:
    at: float
    """``time.time()`` of the sample (wall clock: a child process's stage times compare with it)."""
    clients_mb: float
    backends_mb: float
    backends_private_mb: float
    """The backends' resident memory without the shared memory they touched (``RssShmem``)."""
    load_1min: float


def sample(
    procs: Mapping[int, Proc], roots: Iterable[int], postmaster: int | None, databases: Iterable[str]
) -> Sample:
    """One sample of ``procs``: the trees under ``roots`` and the backends serving ``databases``."""
    clients = tree_pids(procs, roots)
    backends = backend_pids(procs, postmaster, databases) if postmaster is not None else set()
    return Sample(
        at=time.time(),
        clients_mb=sum(procs[p].rss_kb for p in clients) / 1024,
        backends_mb=sum(procs[p].rss_kb for p in backends) / 1024,
        backends_private_mb=sum(procs[p].rss_kb - procs[p].shmem_kb for p in backends) / 1024,
        load_1min=os.getloadavg()[0],
    )


def load_average() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages now."""
    return [round(x, 2) for x in os.getloadavg()]


def summarise(
    samples: Iterable[Sample], start: list[float], end: list[float], since: float = 0.0, until: float = 1e18
) -> dict[str, Any]:
    """The figures of the samples taken between ``since`` and ``until`` (wall clock): the peaks of
    the sums (the most memory the run held at one time) and the load average around them.

    >>> s = [Sample(1.0, 100.0, 10.0, 2.0, 1.5), Sample(2.0, 300.0, 5.0, 1.0, 2.5), Sample(9.0, 900.0, 0, 0, 9)]
    >>> summarise(s, [1.0, 1.0, 1.0], [2.0, 1.0, 1.0], until=5.0)["peak_rss_mb"]
    300.0
    """
    chosen = [s for s in samples if since <= s.at <= until]
    loads = [s.load_1min for s in chosen]
    return {
        "peak_rss_mb": round(max((s.clients_mb for s in chosen), default=0.0), 1),
        "backends_peak_rss_mb": round(max((s.backends_mb for s in chosen), default=0.0), 1),
        "backends_peak_private_mb": round(max((s.backends_private_mb for s in chosen), default=0.0), 1),
        "samples": len(chosen),
        "load_average": {
            "start": start,
            "end": end,
            "max_1min": round(max([*loads, start[0], end[0]]), 2),
            "mean_1min": round(sum(loads) / len(loads), 2) if loads else round((start[0] + end[0]) / 2, 2),
        },
    }


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine and ``/proc`` shows it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        (backend,) = conn.execute("SELECT pg_backend_pid()").fetchone() or (0,)
        procs = read_procs()
    return procs[backend].ppid if backend in procs else None


@dataclass
class Measurement:
    """Samples memory and load in a thread while a step runs; :meth:`figures` then gives its figures.

    ``watch`` adds a process (and its descendants) to the clients; ``databases`` names the
    databases whose backends count (on the server of ``postmaster``).
    """

    postmaster: int | None = None
    databases: tuple[str, ...] = ()
    roots: set[int] = field(default_factory=set)
    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0
    seconds: float = 0.0
    start_load: list[float] = field(default_factory=list)
    end_load: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, pid: int) -> None:
        self.roots.add(pid)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(sample(read_procs(), set(self.roots), self.postmaster, self.databases))
            self._stop.wait(INTERVAL)

    def __enter__(self) -> Measurement:
        self.start_load = load_average()
        self.started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="measure", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append(sample(read_procs(), set(self.roots), self.postmaster, self.databases))
        self.end_load = load_average()

    def figures(self) -> dict[str, Any]:
        """Seconds, memory peaks and load average of the whole step."""
        found = summarise(self.samples, self.start_load, self.end_load)
        return {"seconds": round(self.seconds, 2), **found}

    def window(self, since: float, until: float, start: list[float], end: list[float]) -> dict[str, Any]:
        """Memory peaks and load average of the samples taken in a part of the step (wall clock),
        with the load averages the part recorded at its start and end."""
        return summarise(self.samples, start, end, since, until)
