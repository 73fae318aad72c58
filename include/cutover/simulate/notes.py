"""SOAP note text for visits, filled from the templates of :mod:`cutover.simulate.vocab`.

Every filled template is built once; a note is then a few integer draws and one ``take`` per
section, so 150,000 notes cost no Python loop.
"""

from __future__ import annotations

import itertools

import numpy as np

from cutover.simulate import vocab as V


def _obj(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


_CACHE: dict[str, np.ndarray] = {}


def soap_tables() -> dict[str, np.ndarray]:
    """Every filled template, once: a note is then a few integer draws and one ``take`` per section."""
    if not _CACHE:
        notes = ("IE", "DN", "PN", "RE", "DC")
        regions = [V.REGION_WORDS[r] for r in V.BODY_REGIONS]
        _CACHE["subjective"] = _obj(
            [
                V.NOTE_OPENERS[n] + t.format(region=r, pain=p, trend=tr, func=f)
                for n, t, r, p, tr, f in itertools.product(
                    notes, V.SUBJECTIVE, regions, range(11), V.TRENDS, V.FUNCTION
                )
            ]
        )
        _CACHE["objective"] = _obj(
            [
                t.format(region=r, deg=d, mmt=m, gait=g)
                for t, r, d, m, g in itertools.product(
                    V.OBJECTIVE, regions, range(30, 150, 10), ("3", "3+", "4-", "4", "4+", "5"), V.GAIT
                )
            ]
        )
        _CACHE["assessment"] = _obj(
            [t.format(progress=p) for t, p in itertools.product(V.ASSESSMENT, V.PROGRESS)]
        )
        _CACHE["plan"] = _obj(
            [t.format(freq=f, focus=x) for t, f, x in itertools.product(V.PLAN, V.FREQUENCIES, V.FOCUS)]
            + list(V.DISCHARGE_PLAN)
        )
    return _CACHE


def soap_notes(
    rng: np.random.Generator,
    note: np.ndarray,
    region: np.ndarray,
    freq: np.ndarray,
    pos: np.ndarray,
    n_visits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tables = soap_tables()
    n = len(note)
    note_idx = np.select(
        [note == "IE", note == "DN", note == "PN", note == "RE", note == "DC"], [0, 1, 2, 3, 4], 1
    )
    progress = pos / np.maximum(n_visits - 1, 1)
    pain = np.clip(np.round(7 - 5 * progress + rng.normal(0, 1.2, n)), 0, 10).astype(np.int64)
    subjective = np.ravel_multi_index(
        (
            note_idx,
            rng.integers(0, len(V.SUBJECTIVE), n),
            region,
            pain,
            rng.integers(0, len(V.TRENDS), n),
            rng.integers(0, len(V.FUNCTION), n),
        ),
        (5, len(V.SUBJECTIVE), len(V.BODY_REGIONS), 11, len(V.TRENDS), len(V.FUNCTION)),
    )
    deg = np.clip(np.round(3 + 8 * progress + rng.normal(0, 1.5, n)), 0, 11).astype(np.int64)
    mmt = np.clip(np.round(1 + 4 * progress + rng.normal(0, 0.8, n)), 0, 5).astype(np.int64)
    objective = np.ravel_multi_index(
        (rng.integers(0, len(V.OBJECTIVE), n), region, deg, mmt, rng.integers(0, len(V.GAIT), n)),
        (len(V.OBJECTIVE), len(V.BODY_REGIONS), 12, 6, len(V.GAIT)),
    )
    assessment = rng.integers(0, len(tables["assessment"]), n)
    plan = np.ravel_multi_index(
        (rng.integers(0, len(V.PLAN), n), freq, rng.integers(0, len(V.FOCUS), n)),
        (len(V.PLAN), len(V.FREQUENCIES), len(V.FOCUS)),
    )
    discharge_plan = len(V.PLAN) * len(V.FREQUENCIES) * len(V.FOCUS) + rng.integers(
        0, len(V.DISCHARGE_PLAN), n
    )
    plan = np.where(note == "DC", discharge_plan, plan)
    return (
        tables["subjective"][subjective],
        tables["objective"][objective],
        tables["assessment"][assessment],
        tables["plan"][plan],
    )
