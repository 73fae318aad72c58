"""Plain ISO dates are cut at fixed positions: the same parts as reading every format's pattern."""

from __future__ import annotations

import random
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from cutover.mapping import normalize as nz

FORMS = (
    "{y:04d}-{m:02d}-{d:02d}",
    "{y:04d}-{m:02d}-{d:02d} {H:02d}:{M:02d}:{S:02d}",
    "{y:04d}-{m:02d}-{d:02d} {H:02d}:{M:02d}:{S:02d}.123",
    "{y:04d}-{m:02d}-{d:02d}T{H:02d}:{M:02d}",
    "{y:04d}-{m}-{d}",
    "{m:02d}/{d:02d}/{y:04d}",
    "{m}/{d}/{yy:02d} {H}:{M:02d} PM",
    "{y:04d}{m:02d}{d:02d}",
    "{d:02d}-Mar-{y:04d}",
    "0000-00-00",
    " {y:04d}-{m:02d}-{d:02d}",
)


def _texts(seed: int) -> pa.Array:
    rng = random.Random(seed)
    texts = set()
    for _ in range(4_000):
        year = rng.choice([rng.randint(1890, 2030), rng.randint(0, 9999)])
        texts.add(
            rng.choice(FORMS).format(
                y=year,
                yy=year % 100,
                m=rng.randint(0, 14),
                d=rng.randint(0, 33),
                H=rng.randint(0, 25),
                M=rng.randint(0, 61),
                S=rng.randint(0, 61),
            )
        )
    return pa.array(sorted(texts), pa.large_string())


@pytest.mark.parametrize("role", ["birth", "event"])
def test_plain_iso_fast_path_reads_what_the_formats_read(role: nz.DateRole, monkeypatch) -> None:
    texts = _texts(5)
    fast = nz._date_parts(texts, role, date(2026, 11, 27))
    monkeypatch.setattr(nz, "_PLAIN_ISO_RE", r"^never$")  # every text through the formats' patterns
    slow = nz._date_parts(texts, role, date(2026, 11, 27))
    assert fast.valid.sum() > len(texts) // 4
    for part in ("year", "month", "day", "seconds", "matched", "valid"):
        assert np.array_equal(getattr(fast, part), getattr(slow, part)), part
