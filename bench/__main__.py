"""`python -m bench [name ...]`: run ``bench/<name>_bench.py``'s ``main()``; without names, every benchmark.

A module without a ``main()`` is listed and skipped (it is run as a script instead). Benchmarks
are never run by the tests.

`python -m bench readme [results.json ...] [--check]` is no benchmark: it rewrites the README's
Performance section from ``bench/results/latest.json`` (see :mod:`bench.readme`).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def available() -> list[str]:
    """Names of the benchmarks beside this file (``transform`` for ``transform_bench.py``)."""
    return sorted(p.stem.removesuffix("_bench") for p in Path(__file__).parent.glob("*_bench.py"))


def main(argv: list[str]) -> int:
    """Benchmarks by name; options after the names (``--patients 2000``) go to a benchmark whose
    ``main`` takes them (one name only)."""
    if argv[:1] == ["readme"]:
        from bench import readme

        return readme.main(argv[1:])
    at = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    names, options = argv[:at], argv[at:]
    if options and len(names) != 1:
        print("options need exactly one benchmark name before them", file=sys.stderr)
        return 2
    known = available()
    unknown = [name for name in names if name not in known]
    if unknown:
        print(f"no benchmark {', '.join(map(repr, unknown))}; available: {', '.join(known)}", file=sys.stderr)
        return 2
    for name in names or known:
        module = importlib.import_module(f"bench.{name}_bench")
        run = getattr(module, "main", None)
        if not callable(run):
            print(f"== {name}: no main(), skipped (run bench/{name}_bench.py as a script)")
            continue
        print(f"== {name}", flush=True)
        if options:
            run(options)
        else:
            run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
