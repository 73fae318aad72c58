"""The simulator's practice delivered as CSV files: the same rows, read through a CSV delivery.

:func:`write_delivery` simulates a small practice with :func:`cutover.simulate.simulate` and writes
each of its tables as one CSV file (``<table>.csv``, UTF-8, header line, RFC 4180 quoting) into an
``outbox`` folder, and a profile for it (``simulator_csv.yaml``): the built-in ``simulator``
profile with ``source: {format: csv}`` and each table's file named. Attachments cannot travel in a
CSV file, so ``documents`` is left out (with its manifest entries). A legacy cell stored as bytes
(the simulator's Latin-1 notes) is written as the text it decodes to, as an export would.

The data is the simulator's, defects included, so the simulator's manifest (:func:`manifest`)
is the ground truth of a run over the delivery.
"""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cutover.legacy.profile import BUILTIN

LEFT_OUT = ("documents",)
"""Simulator tables not delivered (attachments have no place in a CSV file)."""


@dataclass(frozen=True)
class CsvDelivery:
    outbox: Path
    """The folder of CSV files (``csv://`` it, or serve it over SFTP)."""
    profile: Path
    rows: dict[str, int]
    """Rows written per profile table (data lines; a row spanning lines counts once)."""
    manifest: dict[str, Any]
    """The simulator's manifest without the tables left out (holds PHI canaries: never into evidence)."""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("cp1252", errors="replace")
    return str(value)


def write_profile(path: Path) -> Path:
    """The simulator profile, reading CSV files named after its tables."""
    data = yaml.safe_load((BUILTIN / "simulator.yaml").read_text())
    data["profile"] = "simulator_csv"
    data["title"] = "The simulator's practice as a delivery of CSV files (tests)"
    data["source"] = {"format": "csv"}
    for name in LEFT_OUT:
        data["tables"].pop(name)
    for name, table in data["tables"].items():
        table["source"] = f"{name}.csv"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def write_delivery(folder: Path, *, patients: int = 60, seed: int = 4343) -> CsvDelivery:
    """Simulate a practice under ``folder`` and deliver it as CSV files in ``folder/outbox``."""
    from cutover.legacy.profile import load_profile
    from cutover.simulate import simulate

    folder.mkdir(parents=True, exist_ok=True)
    outbox = folder / "outbox"
    outbox.mkdir(exist_ok=True)
    db = folder / "simulator.db"
    manifest = simulate(f"sqlite:///{db}", patients=patients, seed=seed)
    profile = load_profile(write_profile(folder / "simulator_csv.yaml"))
    rows: dict[str, int] = {}
    conn = sqlite3.connect(db)
    conn.text_factory = bytes
    try:
        for name, table in profile.tables.items():
            columns = ", ".join(f'"{c}"' for c in table.column_names)
            with (outbox / table.source_name).open("w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out, lineterminator="\r\n")
                writer.writerow(table.column_names)
                cursor = conn.execute(f'SELECT {columns} FROM "{name}" ORDER BY "{table.key}"')
                count = 0
                while batch := cursor.fetchmany(5_000):
                    writer.writerows([_text(v) for v in row] for row in batch)
                    count += len(batch)
            rows[name] = count
    finally:
        conn.close()
    kept = {
        **manifest,
        "tables": {t: n for t, n in manifest["tables"].items() if t not in LEFT_OUT},
        "defects": [d for d in manifest["defects"] if d["table"] not in LEFT_OUT],
    }
    return CsvDelivery(outbox, folder / "simulator_csv.yaml", rows, kept)
