"""Throughput of the normalisers on 1M legacy-like rows with many duplicates.

Prints rows/s for ``parse_date`` and ``phone_e164`` and the ratio against a reference measured in
the same run: for dates ``pd.to_datetime(format="mixed")`` over the same rows (vectorised, but
without reasons or two-digit-year rules), for phones ``phonenumbers`` called once per row on a
sample (what a naive per-row mapping costs). Run: ``.venv/bin/python bench/normalize_bench.py [rows]``.
Synthetic values only.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from cutover.mapping import normalize as nz

T = TypeVar("T")


def _dates(rng: np.random.Generator, rows: int, distinct: int) -> pd.Series:
    days = rng.integers(0, 365 * 60, distinct)
    base = pd.Series(pd.Timestamp("1950-01-01") + pd.to_timedelta(days, unit="D"))
    formats = ["%Y-%m-%d", "%m/%d/%Y", "%-m/%-d/%Y", "%m/%d/%y", "%d-%b-%Y", "%Y%m%d", "%Y-%m-%d 00:00:00"]
    pool = [d.strftime(formats[i % len(formats)]) for i, d in enumerate(base)] + ["02/30/2019", "N/A", ""]
    return pd.Series(np.asarray(pool, dtype=object)[rng.integers(0, len(pool), rows)], dtype=object)


def _phones(rng: np.random.Generator, rows: int, distinct: int) -> pd.Series:
    area = rng.integers(201, 990, distinct)
    exch = rng.integers(200, 999, distinct)
    line = rng.integers(0, 10000, distinct)
    shapes = [
        "({a}) {e}-{l:04d}",
        "{a}.{e}.{l:04d}",
        "{a}{e}{l:04d}",
        "+1 {a} {e} {l:04d}",
        "{a}-{e}-{l:04d} x12",
    ]
    pool = [
        shapes[i % len(shapes)].format(a=a, e=e, l=num)
        for i, (a, e, num) in enumerate(zip(area, exch, line, strict=True))
    ]
    return pd.Series(
        np.asarray([*pool, "none"], dtype=object)[rng.integers(0, len(pool) + 1, rows)], dtype=object
    )


def _timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main(rows: int = 1_000_000) -> None:
    rng = np.random.default_rng(20240307)
    dates = _dates(rng, rows, distinct=20_000)
    phones = _phones(rng, rows, distinct=30_000)
    print(f"rows={rows:,}  distinct dates={dates.nunique():,}  distinct phones={phones.nunique():,}")

    result, ours = _timed(nz.parse_date, dates, role="birth", today=date(2025, 6, 1))
    _, ref = _timed(pd.to_datetime, dates, format="mixed", errors="coerce")
    bad = int(result.reasons.notna().sum())
    print(
        f"parse_date   {rows / ours:>12,.0f} rows/s ({ours:.2f} s, {bad:,} with a reason); "
        f"pd.to_datetime(mixed) {rows / ref:,.0f} rows/s; ratio {ref / ours:.1f}x"
    )

    result, ours = _timed(nz.phone_e164, phones)
    import phonenumbers

    sample = phones.sample(50_000, random_state=1).tolist()
    start = time.perf_counter()
    for text in sample:
        with contextlib.suppress(phonenumbers.NumberParseException):
            phonenumbers.format_number(phonenumbers.parse(text, "US"), phonenumbers.PhoneNumberFormat.E164)
    per_row = (time.perf_counter() - start) / len(sample)
    print(
        f"phone_e164   {rows / ours:>12,.0f} rows/s ({ours:.2f} s, {int(result.values.notna().sum()):,} valid); "
        f"phonenumbers per row {1 / per_row:,.0f} rows/s; ratio {per_row * rows / ours:.1f}x"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
