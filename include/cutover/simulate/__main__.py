"""``python -m cutover.simulate URL --patients N --seed S [--manifest PATH]``: write a legacy practice.

``python -m cutover.simulate --format webpt-extract --out DIR --patients N --seed S`` writes it as a
WebPT Standard Extract (a folder of CSV files) instead, and ``--next-delivery PREV_DIR`` the nightly
delivery after ``PREV_DIR`` into ``DIR``. The manifest goes beside the folder (``DIR.manifest.json``),
never into it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cutover.errors import ConfigError, CutoverError
from cutover.simulate import simulate
from cutover.simulate.writers import require_sqlite_folder

FORMATS = ("database", "webpt-extract")


def write_delivery(
    out: str, *, patients: int, seed: int, manifest: str | None, previous: str | None
) -> dict[str, int]:
    """Write a WebPT extract (or, with ``previous``, the delivery after it) into ``out``; rows per table."""
    from cutover.simulate.practice import MIN_PATIENTS
    from cutover.simulate.webpt import write_extract, write_next_delivery

    folder = Path(out).resolve()
    chosen = Path(manifest).resolve() if manifest else None
    if chosen is not None and folder in chosen.parents:
        raise ConfigError(
            "--manifest: not inside the delivery folder (a reader would take it for a file of it)"
        )
    if previous:
        result = write_next_delivery(Path(previous).resolve(), folder, seed=seed, out_manifest=chosen)
    else:
        if patients < MIN_PATIENTS:
            raise ConfigError(f"--patients must be at least {MIN_PATIENTS} (a clinic of every record kind)")
        result = write_extract(folder, patients=patients, seed=seed, manifest=chosen)
    return dict(result["tables"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cutover.simulate", description=__doc__)
    parser.add_argument(
        "url", nargs="?", help="sqlite:////abs/path.db, postgresql://user@host:port/db or mysql://…/db"
    )
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--manifest", help="manifest path (default <db file>.manifest.json for SQLite)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="database",
        help="a legacy database (URL) or a WebPT extract (--out)",
    )
    parser.add_argument("--out", help="with --format webpt-extract: the delivery folder to write")
    parser.add_argument(
        "--next-delivery", metavar="PREV_DIR", help="write the nightly delivery after the one in PREV_DIR"
    )
    parser.add_argument("--debug", action="store_true", help="show an error's traceback instead of one line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.format == "webpt-extract":
            if args.url or not args.out:
                raise ConfigError("--format webpt-extract writes a folder: give --out DIR, not a URL")
            tables = write_delivery(
                args.out,
                patients=args.patients,
                seed=args.seed,
                manifest=args.manifest,
                previous=args.next_delivery,
            )
        else:
            if not args.url or args.out or args.next_delivery:
                raise ConfigError(
                    "give the legacy database URL to write (or --format webpt-extract --out DIR)"
                )
            require_sqlite_folder(args.url)
            manifest = simulate(args.url, patients=args.patients, seed=args.seed, manifest_path=args.manifest)
            tables = manifest["tables"]
    except CutoverError as exc:  # a missing database, a bad URL: one line, as `cutover simulate` says it
        if args.debug:
            raise
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        return 2
    # Counts only: the manifest itself holds PHI canaries.
    width = max([16, *map(len, tables)])
    for table, count in tables.items():
        sys.stdout.write(f"{table:{width}s} {count:>9,d}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
