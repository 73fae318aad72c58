"""`python -m bench [name ...]`: run bench/<name>_bench.py's main(); without names, every benchmark."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(names: list[str]) -> None:
    available = sorted(p.stem.removesuffix("_bench") for p in Path(__file__).parent.glob("*_bench.py"))
    for name in names or available:
        if name not in available:
            raise SystemExit(f"no benchmark {name!r}; available: {', '.join(available)}")
        print(f"== {name}")
        module = importlib.import_module(f"bench.{name}_bench")
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
