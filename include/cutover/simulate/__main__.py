"""``python -m cutover.simulate URL --patients N --seed S [--manifest PATH]``: write a legacy practice."""

from __future__ import annotations

import argparse
import logging
import sys

from cutover.errors import CutoverError
from cutover.simulate import simulate
from cutover.simulate.writers import require_sqlite_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cutover.simulate", description=__doc__)
    parser.add_argument("url", help="sqlite:////abs/path.db, postgresql://user@host:port/db or mysql://…/db")
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--manifest", help="manifest path (default <db file>.manifest.json for SQLite)")
    parser.add_argument("--debug", action="store_true", help="show an error's traceback instead of one line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        require_sqlite_folder(args.url)
        manifest = simulate(args.url, patients=args.patients, seed=args.seed, manifest_path=args.manifest)
    except CutoverError as exc:  # a missing database, a bad URL: one line, as `cutover simulate` says it
        if args.debug:
            raise
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        return 2
    # Counts only: the manifest itself holds PHI canaries.
    for table, count in manifest["tables"].items():
        sys.stdout.write(f"{table:16s} {count:>9,d}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
