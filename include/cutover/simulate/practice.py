"""Generate a legacy PT practice in memory: every table as columns, every injected defect recorded.

The generator draws from one ``numpy.random.Generator(PCG64(seed))`` in a fixed order, so a seed and
a size give the same rows and the same manifest, byte for byte. The patient-safety tables, added
later, draw from a second one (``PCG64([seed, 17])``) so that adding them moved no other table. Work is vectorised over columns;
Python loops run only over the small subsets that carry a defect (a few percent of a table).

The practice, in short: clinics with providers; patients with coverage; each patient has 1-3 cases
(episodes of care), each started by an initial evaluation, then daily notes, a progress note every
10th visit and a discharge summary; appointments (arrived, cancelled, no-show, scheduled); procedure
lines with PT CPT codes whose minutes agree with their units under the 8-minute rule; a charge per
code billed; payments and adjustments; diagnoses; outcome measures; scanned documents; allergies and
medications taken at a patient's first case, precautions on some cases (weight bearing, fall risk,
no e-stim...), some only in a visit note's words, some entered again on a later case. Then the
mess of :mod:`cutover.simulate.defects` is injected at its rates.

>>> legacy = generate(patients=40, seed=1)
>>> legacy.row_count("patients") > 40  # duplicates add rows
True
>>> sorted({d["kind"] for d in legacy.defects}) == sorted(RATES)
True
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cutover.legacy.schema import LEGACY_TABLES
from cutover.simulate import vocab as V
from cutover.simulate.defects import DEFECTS, RATES, DefectKind
from cutover.simulate.formats import (
    DATE_FORMATS,
    IMPOSSIBLE_DATES,
    NAME_FORMATS,
    NULL_TOKENS,
    PHONE_FORMATS,
    SSN_PLACEHOLDERS,
    ascii_letters,
    cpt_free_text,
    member_ids,
    money_messy,
    money_text,
    name_messy,
    phone_text,
    typo,
)
from cutover.simulate.notes import soap_notes
from cutover.simulate.pdf import minimal_pdf

log = logging.getLogger(__name__)

GENERATOR_NAME = "cutover.simulate"
GENERATOR_VERSION = "1.0"
AS_OF = "2025-06-30"
"""The day the legacy snapshot was taken: no visit, payment or change is later."""
MIN_PATIENTS = 20

Columns = dict[str, np.ndarray]

_DAY = 86_400


def _days(iso: str) -> int:
    return int(np.datetime64(iso, "D").astype(np.int64))


_AS_OF_D = _days(AS_OF)
_WINDOW_START_D = _days("2014-01-01")


def _obj(values: Sequence[Any]) -> np.ndarray:
    """An object array of ``values`` (numpy would otherwise make fixed-width strings)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def iso_dates(days: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 → ``YYYY-MM-DD`` strings (object array).

    >>> iso_dates(np.array([0, 18328])).tolist()
    ['1970-01-01', '2020-03-07']
    """
    return np.datetime_as_string(np.asarray(days, dtype=np.int64).astype("datetime64[D]"), unit="D").astype(
        object
    )


def iso_timestamps(seconds: np.ndarray) -> np.ndarray:
    """Seconds since the epoch → ``YYYY-MM-DD HH:MM:SS`` strings (object array).

    >>> iso_timestamps(np.array([86_400 + 3_661])).tolist()
    ['1970-01-02 01:01:01']
    """
    text = np.datetime_as_string(
        np.asarray(seconds, dtype=np.int64).astype("datetime64[s]"), unit="s"
    ).astype("U19")
    # Swap the ISO 'T' for a space on the raw UCS-4 buffer: one vectorised store instead of a
    # Python call per value.
    chars = text.view(np.uint32).reshape(len(text), 19)
    chars[:, 10] = ord(" ")
    return text.astype(object)


def _where(condition: np.ndarray, yes: Any, no: Any) -> np.ndarray:
    """``np.where`` with a typed result (its stubs cannot tell a None branch from the one-argument form)."""
    return np.asarray(np.where(condition, yes, no))


def _with_nulls(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    out = values.astype(object)
    out[~present] = None
    return out


def npi_check_digit(first9: np.ndarray) -> np.ndarray:
    """Luhn check digit of NPIs over the prefix 80840 + the first nine digits (``first9``: n × 9).

    >>> npi_check_digit(np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9]])).tolist()  # CMS's example 1234567893
    [3]
    """
    payload = np.concatenate([np.tile([8, 0, 8, 4, 0], (len(first9), 1)), first9], axis=1)
    rev = payload[:, ::-1]
    doubled = rev[:, 0::2] * 2
    total = (doubled // 10 + doubled % 10).sum(axis=1) + rev[:, 1::2].sum(axis=1)
    return np.asarray((10 - total % 10) % 10)


def eight_minute_units(minutes: np.ndarray) -> np.ndarray:
    """Units that timed minutes allow under Medicare's 8-minute rule.

    >>> eight_minute_units(np.array([7, 8, 22, 23, 37, 38, 53])).tolist()
    [0, 1, 1, 2, 2, 3, 4]
    """
    minutes = np.asarray(minutes)
    return np.where(minutes < 8, 0, (minutes - 8) // 15 + 1)


@dataclass
class Legacy:
    """A generated legacy database: tables as columns, plus the ground truth about them."""

    seed: int
    patients: int
    tables: dict[str, Columns]
    defects: list[dict[str, Any]]
    injections: list[dict[str, Any]]
    canaries: list[str]
    canary_cells: list[dict[str, Any]]
    clinics: list[dict[str, Any]]
    dirty_text: set[tuple[str, str]] = field(default_factory=set)
    """(table, column) pairs that may hold bytes (Latin-1) or NUL characters."""

    def row_count(self, table: str) -> int:
        return len(self.tables[table][LEGACY_TABLES[table].key])

    def rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        """The rows of ``table`` as tuples in schema column order (ids are Python ints)."""
        columns = self.tables[table]
        return zip(*(columns[name].tolist() for name in LEGACY_TABLES[table].column_names), strict=True)

    def manifest(self) -> dict[str, Any]:
        """The ground truth a test or a reconciliation compares the pipeline with."""
        return {
            "generator": {"name": GENERATOR_NAME, "version": GENERATOR_VERSION},
            "seed": self.seed,
            "patients": self.patients,
            "as_of": AS_OF,
            "tables": {name: self.row_count(name) for name in LEGACY_TABLES},
            "rates": dict(RATES),
            "defect_kinds": {kind: spec.as_manifest() for kind, spec in DEFECTS.items()},
            "injections": self.injections,
            "defects": self.defects,
            "canaries": self.canaries,
            "canary_cells": self.canary_cells,
            "clinics": self.clinics,
        }


class _Builder:
    """Builds the practice step by step; each method fills ``self.t`` and records what it injects."""

    def __init__(self, patients: int, seed: int) -> None:
        if patients < MIN_PATIENTS:
            raise ValueError(f"patients must be at least {MIN_PATIENTS}, got {patients}")
        self.n = patients
        self.seed = seed
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.safety_rng = np.random.Generator(np.random.PCG64([seed, 17]))
        """The allergies, medications and precautions draw from their own stream, so adding them
        left every other table as it was for a seed."""
        self.t: dict[str, Columns] = {}
        self.defects: list[dict[str, Any]] = []
        self.injections: list[dict[str, Any]] = []
        self.canaries: list[str] = []
        self.canary_cells: list[dict[str, Any]] = []
        self.dirty: set[tuple[str, str]] = set()

    # -- helpers ---------------------------------------------------------------------------------

    def pick(
        self,
        eligible: np.ndarray,
        kind: DefectKind,
        *,
        table: str,
        column: str | None,
        forced: np.ndarray | None = None,
        unit: str | None = None,
    ) -> np.ndarray:
        """Choose ``max(1, round(rate × eligible))`` positions of ``eligible`` (forced ones first)."""
        pool = np.flatnonzero(eligible)
        rate = RATES[kind]
        k = max(1, round(rate * len(pool))) if len(pool) else 0
        if forced is not None:
            must = np.flatnonzero(forced & eligible)
            rest = np.setdiff1d(pool, must, assume_unique=True)
            extra = self.rng.choice(rest, size=min(max(0, k - len(must)), len(rest)), replace=False)
            chosen = np.concatenate([must, extra])
        else:
            chosen = self.rng.choice(pool, size=k, replace=False)
        self.injections.append(
            {
                "kind": kind,
                "table": table,
                "field": column,
                "unit": unit or DEFECTS[kind].unit,
                "eligible": len(pool),
                "selected": len(chosen),
            }
        )
        return np.sort(chosen.astype(np.int64))

    def record(
        self, kind: DefectKind, table: str, ids: np.ndarray, column: str | None = None, **details: Any
    ) -> None:
        """Add one defect per id; a detail is one value for all or a sequence aligned with ``ids``."""
        ids_list = np.asarray(ids).tolist()
        columns = {
            name: (value.tolist() if isinstance(value, np.ndarray) else value)
            for name, value in details.items()
        }
        for i, legacy_id in enumerate(ids_list):
            entry: dict[str, Any] = {"kind": kind, "table": table, "legacy_id": int(legacy_id)}
            if column is not None:
                entry["field"] = column
            for name, value in columns.items():
                entry[name] = value[i] if isinstance(value, list) else value
            self.defects.append(entry)

    def stamp(self, day: np.ndarray, lag_days: int = 0) -> np.ndarray:
        """A working-hours timestamp ``0..lag_days`` after ``day``, never after the snapshot."""
        day = np.asarray(day, dtype=np.int64)
        if lag_days:
            day = day + self.rng.integers(0, lag_days + 1, len(day))
        day = np.minimum(day, _AS_OF_D)
        return iso_timestamps(day * _DAY + self.rng.integers(7 * 3600, 19 * 3600, len(day)))

    def phones(self, area: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Valid-looking US numbers in ``area`` codes: exchange 200-999, not N11, not 555 (so
        ``phonenumbers`` accepts them)."""
        n = len(area)
        exchange = self.rng.integers(200, 1000, n)
        exchange = np.where((exchange % 100 == 11) | (exchange == 555), exchange - 1, exchange)
        line = self.rng.integers(0, 10_000, n)
        return np.asarray(area, dtype=np.int64), exchange, line

    def area_codes_for(self, clinic_idx: np.ndarray) -> np.ndarray:
        table = [V.CLINICS[c].area_codes for c in range(len(V.CLINICS))]
        width = max(len(codes) for codes in table)
        # Pad by repeating so a uniform column pick stays within each clinic's own codes.
        padded = np.array([[codes[i % len(codes)] for i in range(width)] for codes in table])
        col = np.floor(self.rng.random(len(clinic_idx)) * width).astype(np.int64)
        return np.asarray(padded[clinic_idx, col])

    def npis(self, n: int) -> np.ndarray:
        first9 = self.rng.integers(0, 10, (n, 9))
        first9[:, 0] = self.rng.integers(1, 3, n)  # NPIs start with 1 or 2
        digits = np.concatenate([first9, npi_check_digit(first9)[:, None]], axis=1)
        return digits @ (10 ** np.arange(9, -1, -1))

    # -- reference data ----------------------------------------------------------------------------

    def build_clinics(self) -> None:
        self.n_clinics = max(3, min(len(V.CLINICS), self.n // 1500))
        tmpl = V.CLINICS[: self.n_clinics]
        area, exchange, line = self.phones(np.array([c.area_codes[0] for c in tmpl]))
        self.t["clinics"] = {
            "clinic_id": np.arange(1, self.n_clinics + 1),
            "clinic_name": _obj([c.name for c in tmpl]),
            "address": _obj([c.address for c in tmpl]),
            "city": _obj([c.city for c in tmpl]),
            "state": _obj([c.state for c in tmpl]),
            "zip": _obj([c.zip for c in tmpl]),
            "phone": _obj([phone_text(a, e, x, 0, 0) for a, e, x in zip(area, exchange, line, strict=True)]),
            "tz": _obj([c.tz for c in tmpl]),
        }

    def build_payers(self) -> None:
        self.payer_type = _obj([t for _, t in V.PAYERS])
        self.t["payers"] = {
            "payer_id": np.arange(1, len(V.PAYERS) + 1),
            "payer_name": _obj([n for n, _ in V.PAYERS]),
            "payer_type": self.payer_type.copy(),
        }
        self.self_pay_id = 1 + [t for _, t in V.PAYERS].index("Self Pay")

    def build_ref_physicians(self) -> None:
        n = max(12, self.n // 40)
        rng = self.rng
        female = rng.random(n) < 0.5
        given = np.where(
            female,
            _obj(V.FEMALE_GIVEN)[rng.integers(0, len(V.FEMALE_GIVEN), n)],
            _obj(V.MALE_GIVEN)[rng.integers(0, len(V.MALE_GIVEN), n)],
        )
        family = _obj(V.SURNAMES)[rng.integers(0, len(V.SURNAMES), n)]
        suffix = _obj(("MD", "DO", "NP", "PA-C"))[rng.choice(4, n, p=[0.62, 0.18, 0.12, 0.08])]
        clinic = rng.integers(0, self.n_clinics, n)
        fax = self.phones(self.area_codes_for(clinic))
        phone = (fax[0], fax[1], np.minimum(fax[2] + 1, 9999))  # the office line is next to the fax
        self.ref_npi = self.npis(n)
        self.t["ref_physicians"] = {
            "ref_phys_id": np.arange(1, n + 1),
            "phys_name": _obj([f"{g} {f}, {s}" for g, f, s in zip(given, family, suffix, strict=True)]),
            "npi": _obj([str(v) for v in self.ref_npi.tolist()]),
            "fax": _obj([phone_text(a, e, x, 0, 0) for a, e, x in zip(*fax, strict=True)]),
            "phone": _obj([phone_text(a, e, x, 0, 0) for a, e, x in zip(*phone, strict=True)]),
        }

    def build_providers(self) -> None:
        rng = self.rng
        per_clinic = np.bincount(self.pat_clinic[: self.n], minlength=self.n_clinics)
        counts = np.clip(np.round(per_clinic / 120).astype(np.int64), 3, 14)
        self.prov_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.prov_count = counts
        n = int(counts.sum())
        clinic = np.repeat(np.arange(self.n_clinics), counts)
        female = rng.random(n) < 0.6
        given = np.where(
            female,
            _obj(V.FEMALE_GIVEN)[rng.integers(0, len(V.FEMALE_GIVEN), n)],
            _obj(V.MALE_GIVEN)[rng.integers(0, len(V.MALE_GIVEN), n)],
        )
        family = _obj(V.SURNAMES)[rng.integers(0, len(V.SURNAMES), n)]
        self.t["providers"] = {
            "provider_id": np.arange(1, n + 1),
            "clinic_id": clinic + 1,
            "prov_name": _obj([f"{f}, {g}" for f, g in zip(family, given, strict=True)]),
            "credential": _obj(("PT", "DPT", "PTA"))[rng.choice(3, n, p=[0.3, 0.45, 0.25])],
            "npi": _obj([str(v) for v in self.npis(n).tolist()]),
            "active": np.where(rng.random(n) < 0.85, "Y", "N").astype(object),
        }

    def provider_in(self, clinic_idx: np.ndarray) -> np.ndarray:
        """A random provider id of each clinic (0-based clinic index)."""
        offset = np.floor(self.rng.random(len(clinic_idx)) * self.prov_count[clinic_idx]).astype(np.int64)
        return np.asarray(self.prov_start[clinic_idx] + offset + 1)

    # -- patients ----------------------------------------------------------------------------------

    def build_people(self) -> None:
        """Original patients (clean), the duplicates chosen, and the canary patients set aside."""
        rng, n = self.rng, self.n
        weights = np.linspace(1.5, 0.75, self.n_clinics)
        self.pat_clinic = rng.choice(self.n_clinics, n, p=weights / weights.sum())
        self.female = rng.random(n) < 0.56
        peds = rng.random(n) < 0.07
        age = np.where(peds, rng.uniform(6, 18, n), rng.triangular(18, 58, 93, n))
        self.dob = _AS_OF_D - np.round(age * 365.25).astype(np.int64)
        self.family = _obj(V.SURNAMES)[rng.integers(0, len(V.SURNAMES), n)]
        male_given = _obj(V.MALE_GIVEN)[rng.integers(0, len(V.MALE_GIVEN), n)]
        female_given = _obj(V.FEMALE_GIVEN)[rng.integers(0, len(V.FEMALE_GIVEN), n)]
        self.given = np.where(self.female, female_given, male_given)
        middle_kind = rng.choice(3, n, p=[0.25, 0.6, 0.15])
        initials = _obj(list("ABCDEFGHJKLMNPRSTW"))[rng.integers(0, 18, n)]
        other_male = _obj(V.MALE_GIVEN)[rng.integers(0, len(V.MALE_GIVEN), n)]
        other_female = _obj(V.FEMALE_GIVEN)[rng.integers(0, len(V.FEMALE_GIVEN), n)]
        full_middle = np.where(self.female, other_female, other_male)
        self.middle = np.where(middle_kind == 1, initials, np.where(middle_kind == 2, full_middle, ""))

        # Addresses in the towns around the patient's clinic.
        towns = [V.CLINICS[c].towns for c in range(self.n_clinics)]
        n_towns = np.array([len(t) for t in towns])
        town = np.floor(rng.random(n) * n_towns[self.pat_clinic]).astype(np.int64)
        self.city = _obj([towns[c][i][0] for c, i in zip(self.pat_clinic, town, strict=True)])
        zip3 = [towns[c][i][1] for c, i in zip(self.pat_clinic, town, strict=True)]
        self.zip = _obj([f"{z}{d:02d}" for z, d in zip(zip3, rng.integers(1, 100, n), strict=True)])
        self.state = _obj([V.CLINICS[c].state for c in self.pat_clinic])
        number = rng.integers(1, 9_999, n)
        street = _obj(V.STREETS)[rng.integers(0, len(V.STREETS), n)]
        suffix = _obj(V.STREET_SUFFIXES)[rng.integers(0, len(V.STREET_SUFFIXES), n)]
        self.addr1 = _obj([f"{a} {b} {c}" for a, b, c in zip(number, street, suffix, strict=True)])
        addr2_kind = rng.choice(4, n, p=[0.82, 0.08, 0.06, 0.04])
        unit = rng.integers(1, 40, n)
        letter = _obj(list("ABCD"))[rng.integers(0, 4, n)]
        self.addr2 = _obj(
            [
                None if k == 0 else f"Apt {u}" if k == 1 else f"Unit {u}{b}" if k == 2 else f"# {u}"
                for k, u, b in zip(addr2_kind, unit, letter, strict=True)
            ]
        )
        # Phones: (area, exchange, line) per slot, a present mask, formatted at the end.
        self.phone = {}
        for slot, share in (("home_phone", 0.85), ("cell_phone", 0.72), ("emerg_phone", 0.0)):
            area, exchange, line = self.phones(self.area_codes_for(self.pat_clinic))
            self.phone[slot] = [area, exchange, line, rng.random(n) < share]
        self.has_email = rng.random(n) < 0.58
        email_no = rng.integers(1, 100, n)
        domain = _obj(V.EMAIL_DOMAINS)[rng.integers(0, len(V.EMAIL_DOMAINS), n)]
        self.email = _obj(
            [
                f"{ascii_letters(g).lower()}.{ascii_letters(f).lower()}{k}@{d}" if has else None
                for g, f, k, d, has in zip(
                    self.given, self.family, email_no, domain, self.has_email, strict=True
                )
            ]
        )
        has_emerg = rng.random(n) < 0.72
        emerg_given = _obj(V.FEMALE_GIVEN + V.MALE_GIVEN)[
            rng.integers(0, len(V.FEMALE_GIVEN) + len(V.MALE_GIVEN), n)
        ]
        same_family = rng.random(n) < 0.7
        other_family = _obj(V.SURNAMES)[rng.integers(0, len(V.SURNAMES), n)]
        relation = _obj(V.RELATIONS)[rng.integers(0, len(V.RELATIONS), n)]
        self.emerg_contact = _obj(
            [
                f"{g} {f if same else o} ({r})" if has else None
                for g, f, same, o, r, has in zip(
                    emerg_given, self.family, same_family, other_family, relation, has_emerg, strict=True
                )
            ]
        )
        self.phone["emerg_phone"][3] = has_emerg & (rng.random(n) < 0.92)
        has_ssn = rng.random(n) < 0.68
        area_no = rng.integers(1, 900, n)
        area_no = np.where(area_no == 666, 667, area_no)
        group = rng.integers(1, 100, n)
        serial = rng.integers(1, 10_000, n)
        self.ssn = _obj(
            [
                f"{a:03d}-{g:02d}-{s:04d}" if has else None
                for a, g, s, has in zip(area_no, group, serial, has_ssn, strict=True)
            ]
        )

        # Duplicates (of originals), then canary patients among the rest.
        self.dup_of = self.pick(
            np.ones(n, bool), "duplicate_patient", table="patients", column=None, unit="original patient"
        )
        self.n_dup = len(self.dup_of)
        self.dup_row = np.full(n, -1, np.int64)
        self.dup_row[self.dup_of] = n + np.arange(self.n_dup)
        free = np.ones(n, bool)
        free[self.dup_of] = False
        free &= self.phone["home_phone"][3] & self.has_email
        canary_rows = rng.choice(np.flatnonzero(free), size=9, replace=False)
        self.canary_rows = {
            "surname": canary_rows[0:3],
            "given": canary_rows[3:5],
            "phone": canary_rows[5:7],
            "ssn": canary_rows[7:8],
            "email": canary_rows[8:9],
        }

    def plant_canaries(self) -> None:
        """Invented values in the patients' own cells, before any mess touches them."""
        rng = self.rng
        surnames = rng.choice(len(V.CANARY_SURNAMES), 3, replace=False)
        for row, k in zip(self.canary_rows["surname"], surnames, strict=True):
            self.family[row] = V.CANARY_SURNAMES[k]
            self.canaries.append(V.CANARY_SURNAMES[k])
        givens = rng.choice(len(V.CANARY_GIVEN), 2, replace=False)
        for row, k in zip(self.canary_rows["given"], givens, strict=True):
            self.given[row] = V.CANARY_GIVEN[k]
            self.canaries.append(V.CANARY_GIVEN[k])
        # Phone numbers that no other patient has; the raw form and the E.164 form are both canaries.
        taken = {
            (a, e, x)
            for area, exchange, line, _ in self.phone.values()
            for a, e, x in zip(area.tolist(), exchange.tolist(), line.tolist(), strict=True)
        }
        home = self.phone["home_phone"]
        for row in self.canary_rows["phone"]:
            while True:
                key = (int(home[0][row]), int(rng.integers(200, 1000)), int(rng.integers(0, 10_000)))
                if key[1] % 100 != 11 and key[1] != 555 and key not in taken:
                    break
            taken.add(key)
            home[1][row], home[2][row] = key[1], key[2]
            self.canaries += [phone_text(*key, 0, 0), f"+1{key[0]}{key[1]}{key[2]:04d}"]
        existing = {s for s in self.ssn.tolist() if s}
        while True:
            ssn = f"{rng.integers(100, 600)}-{rng.integers(10, 100)}-{rng.integers(1000, 10_000)}"
            if ssn not in existing:
                break
        self.ssn[self.canary_rows["ssn"][0]] = ssn
        self.canaries.append(ssn)
        word = V.CANARY_SURNAMES[int(rng.integers(0, len(V.CANARY_SURNAMES)))].lower()
        email = f"{word}.{int(rng.integers(100, 1000))}@canary.example"
        self.email[self.canary_rows["email"][0]] = email
        self.canaries.append(email)
        for kind, rows in self.canary_rows.items():
            for row in rows.tolist():
                column = {
                    "surname": "pat_name",
                    "given": "pat_name",
                    "phone": "home_phone",
                    "ssn": "ssn",
                    "email": "email",
                }[kind]
                self.canary_cells.append(
                    {"kind": kind, "table": "patients", "legacy_id": row + 1, "field": column}
                )

    def build_duplicates(self) -> None:
        """A second row for each chosen patient: typos, middle names, another phone format, a swapped dob."""
        rng, n, src = self.rng, self.n, self.dup_of
        d = len(src)
        family = self.family[src].copy()
        given = self.given[src].copy()
        middle = self.middle[src].copy()
        typo_in = rng.choice(3, d, p=[0.35, 0.25, 0.40])  # 0 family, 1 given, 2 none
        middle_change = (rng.random(d) < 0.6) | (typo_in == 2)
        ops = rng.integers(0, 3, d)
        positions = rng.random(d)
        letters = rng.integers(0, 26, d)
        middle_pick = rng.integers(0, 1000, d)
        by_initial: dict[str, list[str]] = {}
        for name in sorted(set(V.MALE_GIVEN + V.FEMALE_GIVEN)):
            by_initial.setdefault(name[0], []).append(name)
        details: list[list[str]] = [[] for _ in range(d)]
        for i in range(d):
            if typo_in[i] == 0:
                family[i] = typo(family[i], int(ops[i]), float(positions[i]), int(letters[i]))
                details[i].append("family_typo")
            elif typo_in[i] == 1:
                given[i] = typo(given[i], int(ops[i]), float(positions[i]), int(letters[i]))
                details[i].append("given_typo")
            if middle_change[i]:
                m = middle[i]
                if not m:
                    middle[i] = "ABCDEFGHJKLMNPRSTW"[int(letters[i]) % 18]
                elif len(m) == 1:
                    names = by_initial.get(m, [])
                    choice = int(middle_pick[i]) % 3
                    if choice == 0 or not names:
                        middle[i] = ""
                    elif choice == 1:
                        middle[i] = names[int(middle_pick[i]) % len(names)]
                    else:
                        middle[i] = "ABCDEFGHJKLMNPRSTW"[(int(letters[i]) + 1) % 18]
                        if middle[i] == m:
                            middle[i] = "Z"
                else:
                    middle[i] = m[0] if middle_pick[i] % 2 else ""
                details[i].append("middle_mismatch")
        # Day and month swapped in some dobs (only where the swap is a different valid date).
        dob = self.dob[src].copy()
        month_start = dob.astype("datetime64[D]").astype("datetime64[M]")
        month = month_start.astype(np.int64) % 12 + 1
        day = dob - month_start.astype("datetime64[D]").astype(np.int64) + 1
        swap = (rng.random(d) < 0.15) & (day <= 12) & (day != month)
        for i in np.flatnonzero(swap).tolist():
            year = str(iso_dates(dob[i : i + 1])[0])[:4]
            dob[i] = _days(f"{year}-{int(day[i]):02d}-{int(month[i]):02d}")
            details[i].append("dob_swapped")
        self.dup_details = details
        # Most registrations happen at the same clinic; some at another location of the practice.
        other_clinic = (self.pat_clinic[src] + rng.integers(1, self.n_clinics, d)) % self.n_clinics
        clinic = np.where(rng.random(d) < 0.85, self.pat_clinic[src], other_clinic)

        def extend(values: np.ndarray, dup_values: np.ndarray) -> np.ndarray:
            return np.concatenate([values, dup_values])

        keep_ssn = rng.random(d) < 0.55
        self.family = extend(self.family, family)
        self.given = extend(self.given, given)
        self.middle = extend(self.middle, middle)
        self.dob = extend(self.dob, dob)
        self.female = extend(self.female, self.female[src])
        self.pat_clinic = extend(self.pat_clinic, clinic)
        self.ssn = extend(self.ssn, _where(keep_ssn, self.ssn[src], None))
        moved = rng.random(d) < 0.2
        self.addr1 = extend(self.addr1, np.where(moved, _obj([f"{k} {s} St" for k, s in zip(
            rng.integers(1, 9_999, d), _obj(V.STREETS)[rng.integers(0, len(V.STREETS), d)], strict=True)]),
            self.addr1[src]))  # fmt: skip
        self.addr2 = extend(self.addr2, _where(moved, None, self.addr2[src]))
        for name in ("city", "state", "zip"):
            setattr(self, name, extend(getattr(self, name), getattr(self, name)[src]))
        keep_email = rng.random(d) < 0.5
        self.email = extend(self.email, _where(keep_email, self.email[src], None))
        self.has_email = extend(self.has_email, keep_email & self.has_email[src])
        keep_emerg = rng.random(d) < 0.6
        self.emerg_contact = extend(self.emerg_contact, _where(keep_emerg, self.emerg_contact[src], None))
        for slot, parts in self.phone.items():
            present = parts[3][src]
            if slot == "cell_phone":
                present = present & (rng.random(d) < 0.5)
            elif slot == "emerg_phone":
                present = present & keep_emerg
            self.phone[slot] = [extend(p, p[src]) for p in parts[:3]] + [extend(parts[3], present)]
        self.total_patients = n + d

    def build_patient_table(self) -> None:
        """Assemble the patients table, then mess it up."""
        rng, total = self.rng, self.total_patients
        pat_id = np.arange(1, total + 1)
        ids = pat_id
        # Created: before the first case of the row (or after the original, for a duplicate).
        first_case = np.full(total, _AS_OF_D, np.int64)
        np.minimum.at(first_case, self.case_owner, self.case_start)
        created = first_case - rng.integers(0, 60, total)
        orig_created = created[self.dup_of]
        dup_created = created[self.n :]
        dup_created = np.where(
            first_case[self.n :] < _AS_OF_D,
            np.maximum(dup_created, orig_created + 1),
            np.minimum(orig_created + rng.integers(30, 1500, self.n_dup), _AS_OF_D - 1),
        )
        created[self.n :] = dup_created
        created = np.maximum(created, self.dob)  # a newborn's chart cannot predate the birth
        created_ts = created * _DAY + rng.integers(7 * 3600, 19 * 3600, total)
        modified_ts = created_ts + np.floor(rng.random(total) * ((_AS_OF_D + 1) * _DAY - created_ts)).astype(
            np.int64
        )
        mrn = _obj([str(1_000_000 + i) for i in range(1, total + 1)])

        # Names: 'Last, First M', then the name_format mess (never on canary names).
        names = _obj(
            [
                f"{f}, {g} {m}" if m else f"{f}, {g}"
                for f, g, m in zip(self.family, self.given, self.middle, strict=True)
            ]
        )
        eligible = np.ones(total, bool)
        eligible[self.canary_rows["surname"]] = False
        eligible[self.canary_rows["given"]] = False
        chosen = self.pick(eligible, "name_format", table="patients", column="pat_name")
        styles = rng.integers(0, len(NAME_FORMATS), len(chosen))
        for i, style in zip(chosen.tolist(), styles.tolist(), strict=True):
            names[i] = name_messy(names[i], style)
        self.record("name_format", "patients", ids[chosen], "pat_name", format=_obj(NAME_FORMATS)[styles])

        # Dates of birth: impossible, two-digit years, mixed formats.
        dob = iso_dates(self.dob)
        self.mess_dates("patients", "dob", dob, ids, two_digit=True, impossible=True)

        # Sex.
        sex = np.where(self.female, "F", "M").astype(object)
        chosen = self.pick(np.ones(total, bool), "sex_code", table="patients", column="sex")
        variant = rng.integers(0, 5, len(chosen))
        female = self.female[chosen]
        options_f = ("Female", "female", "2", "U", "")
        options_m = ("Male", "male", "1", "U", "")
        sex[chosen] = [
            (options_f if f else options_m)[v] for f, v in zip(female.tolist(), variant.tolist(), strict=True)
        ]
        self.record("sex_code", "patients", ids[chosen], "sex")

        # SSN placeholders.
        ssn = self.ssn.copy()
        eligible = np.ones(total, bool)
        eligible[self.canary_rows["ssn"]] = False
        chosen = self.pick(eligible, "placeholder_ssn", table="patients", column="ssn", unit="row")
        ssn[chosen] = _obj(SSN_PLACEHOLDERS)[rng.integers(0, len(SSN_PLACEHOLDERS), len(chosen))]
        self.record("placeholder_ssn", "patients", ids[chosen], "ssn")

        # ZIP codes that lost their leading zero.
        zips = self.zip.copy()
        eligible = np.array([z.startswith("0") for z in zips.tolist()], bool)
        chosen = self.pick(eligible, "zip_lost_zero", table="patients", column="zip")
        zips[chosen] = [z[1:] for z in zips[chosen].tolist()]
        self.record("zip_lost_zero", "patients", ids[chosen], "zip")

        # Phones: other formats; a duplicate's home phone always differs from its original's.
        columns: dict[str, np.ndarray] = {}
        codes: dict[str, np.ndarray] = {}
        for slot, (area, exchange, line, present) in self.phone.items():
            eligible = present.copy()
            forced = None
            if slot == "home_phone":
                eligible[self.canary_rows["phone"]] = False
                forced = np.zeros(total, bool)
                forced[self.n :] = True
            chosen = self.pick(eligible, "phone_format", table="patients", column=slot, forced=forced)
            code = np.zeros(total, np.int64)
            code[chosen] = rng.integers(1, len(PHONE_FORMATS), len(chosen))
            if slot == "home_phone":
                dups = np.arange(self.n, total)
                same = code[dups] == code[self.dup_of]
                code[dups[same]] = code[dups[same]] % (len(PHONE_FORMATS) - 1) + 1
            ext = rng.integers(2, 400, total)
            columns[slot] = _obj(
                [
                    phone_text(a, e, x, c, k) if p else None
                    for a, e, x, c, k, p in zip(
                        area.tolist(),
                        exchange.tolist(),
                        line.tolist(),
                        code.tolist(),
                        ext.tolist(),
                        present.tolist(),
                        strict=True,
                    )
                ]
            )
            codes[slot] = code
            self.record(
                "phone_format",
                "patients",
                ids[chosen],
                slot,
                format=_obj(PHONE_FORMATS)[code[chosen]],
            )

        # Optional values spelled as null tokens instead of NULL.
        optional = {
            "email": self.email.copy(),
            "addr2": self.addr2.copy(),
            "cell_phone": columns["cell_phone"],
            "emerg_contact": self.emerg_contact.copy(),
            "emerg_phone": columns["emerg_phone"],
        }
        for column, values in optional.items():
            missing = np.array([v is None for v in values.tolist()], bool)
            chosen = self.pick(missing, "null_token", table="patients", column=column)
            tokens = rng.integers(0, len(NULL_TOKENS), len(chosen))
            values[chosen] = _obj(NULL_TOKENS)[tokens]
            self.record("null_token", "patients", ids[chosen], column)

        # Duplicates point at their original.
        self.record(
            "duplicate_patient",
            "patients",
            ids[self.n :],
            of=(self.dup_of + 1),
            variants=_obj([",".join(v) for v in self.dup_details]),
        )

        self.t["patients"] = {
            "pat_id": pat_id,
            "clinic_id": self.pat_clinic + 1,
            "mrn": mrn,
            "pat_name": names,
            "dob": dob,
            "sex": sex,
            "ssn": ssn,
            "addr1": self.addr1,
            "addr2": optional["addr2"],
            "city": self.city,
            "state": self.state,
            "zip": zips,
            "home_phone": columns["home_phone"],
            "cell_phone": optional["cell_phone"],
            "email": optional["email"],
            "emerg_contact": optional["emerg_contact"],
            "emerg_phone": optional["emerg_phone"],
            "created": iso_timestamps(created_ts),
            "modified": iso_timestamps(modified_ts),
        }
        self.pat_created = created

    def mess_dates(
        self,
        table: str,
        column: str,
        values: np.ndarray,
        ids: np.ndarray,
        *,
        two_digit: bool = False,
        impossible: bool = False,
    ) -> None:
        """Rewrite some ISO dates of ``values`` in place; disjoint cells for each kind."""
        rng = self.rng
        present = np.array([v is not None for v in values.tolist()], bool)
        years = np.array([int(v[:4]) if v else 0 for v in values.tolist()])
        free = present.copy()
        if impossible:
            chosen = self.pick(free, "date_impossible", table=table, column=column)
            style = rng.integers(0, len(IMPOSSIBLE_DATES), len(chosen))
            names = list(IMPOSSIBLE_DATES)
            values[chosen] = [
                IMPOSSIBLE_DATES[names[s]](v)
                for v, s in zip(values[chosen].tolist(), style.tolist(), strict=True)
            ]
            self.record("date_impossible", table, ids[chosen], column, format=_obj(names)[style])
            free[chosen] = False
        if two_digit:
            # Only years a pivot recovers: births 1930-2019 (a future year → previous century),
            # events 2000-2069 (pivot 70).
            ok = (years >= 1930) & (years <= 2019) if column == "dob" else (years >= 2000) & (years < 2070)
            chosen = self.pick(free & ok, "date_two_digit_year", table=table, column=column)
            values[chosen] = [f"{v[5:7]}/{v[8:10]}/{v[2:4]}" for v in values[chosen].tolist()]
            self.record("date_two_digit_year", table, ids[chosen], column)
            free[chosen] = False
        chosen = self.pick(free, "date_mixed_format", table=table, column=column)
        style = rng.integers(0, len(DATE_FORMATS), len(chosen))
        names = list(DATE_FORMATS)
        values[chosen] = [
            DATE_FORMATS[names[s]](v) for v, s in zip(values[chosen].tolist(), style.tolist(), strict=True)
        ]
        self.record("date_mixed_format", table, ids[chosen], column, format=_obj(names)[style])

    # -- episodes of care --------------------------------------------------------------------------

    def build_cases(self) -> None:
        """Cases per original patient, some owned by the patient's duplicate row."""
        rng, n = self.rng, self.n
        k = rng.choice(np.array([1, 2, 3]), n, p=[0.72, 0.22, 0.06])
        case_pat = np.repeat(np.arange(n), k)
        c = len(case_pat)
        lo = np.maximum(_WINDOW_START_D, self.dob[:n] + 4 * 365)
        hi = np.full(n, _AS_OF_D - 10)
        u = rng.random(c)
        order = np.lexsort((u, case_pat))  # starts ascending within each patient
        u = u[order]
        self.case_start = lo[case_pat] + np.floor(u * (hi - lo)[case_pat]).astype(np.int64)
        to_dup = (self.dup_row[case_pat] >= 0) & (rng.random(c) < 0.5)
        self.case_owner = np.where(to_dup, self.dup_row[case_pat], case_pat)
        self.case_region = rng.choice(len(V.BODY_REGIONS), c, p=V.REGION_WEIGHTS)
        self.case_freq = rng.choice(3, c, p=V.FREQUENCY_WEIGHTS)
        self.n_cases = c

    def build_diagnoses(self) -> None:
        rng, c = self.rng, self.n_cases
        k = rng.choice(np.array([1, 2, 3]), c, p=[0.45, 0.4, 0.15])
        order = _top_k(rng, np.array([0.5, 0.25, 0.15, 0.1]), c)
        case = np.repeat(np.arange(c), k)
        seq = np.arange(len(case)) - np.repeat(np.cumsum(k) - k, k)
        slot = order[case, seq]
        region = self.case_region[case]
        icd10 = _obj([V.REGION_DX[V.BODY_REGIONS[r]][s][0] for r, s in zip(region, slot, strict=True)])
        icd9 = _obj([V.REGION_DX[V.BODY_REGIONS[r]][s][1] for r, s in zip(region, slot, strict=True)])
        self.case_dx: list[list[str]] = [[] for _ in range(c)]
        for ci, code in zip(case.tolist(), icd10.tolist(), strict=True):
            self.case_dx[ci].append(code)
        self.case_primary_dx = icd10[np.cumsum(k) - k]
        self.case_primary_dx9 = icd9[np.cumsum(k) - k]
        self.dx_case, self.dx_seq, self.dx_code, self.dx_code9 = case, seq + 1, icd10, icd9

    def build_referrals(self) -> None:
        rng, c = self.rng, self.n_cases
        has = rng.random(c) < 0.88
        cases = np.flatnonzero(has)
        r = len(cases)
        n_phys = len(self.t["ref_physicians"]["ref_phys_id"])
        self.case_ref_phys = rng.integers(0, n_phys, c)
        self.case_referral = np.full(c, -1, np.int64)
        self.case_referral[cases] = np.arange(1, r + 1)
        ref_date = self.case_start[cases] - rng.integers(0, 30, r)
        self.referral_case = cases
        self.t["referrals"] = {
            "referral_id": np.arange(1, r + 1),
            "pat_id": self.case_owner[cases] + 1,
            "ref_phys_id": self.case_ref_phys[cases] + 1,
            "referral_date": iso_dates(ref_date),
            "dx_code": self.case_primary_dx[cases].copy(),
            "modified": self.stamp(ref_date, 10),
        }
        self.referral_dx9 = self.case_primary_dx9[cases]

    def build_visits(self) -> None:
        """Visit dates and note types per case; statuses, reopenings, discharge dates."""
        rng, c = self.rng, self.n_cases
        n_v = 8 + rng.binomial(17, 0.2, c)
        total = int(n_v.sum())
        vcase = np.repeat(np.arange(c), n_v)
        first = np.cumsum(n_v) - n_v
        last = first + n_v - 1
        pos = np.arange(total) - first[vcase]
        gap_lo = np.array([g[0] for g in V.FREQUENCY_GAPS])[self.case_freq][vcase]
        gap_hi = np.array([g[1] for g in V.FREQUENCY_GAPS])[self.case_freq][vcase]
        gap = gap_lo + np.floor(rng.random(total) * (gap_hi - gap_lo)).astype(np.int64)
        gap[pos == 0] = 0
        cum = np.cumsum(gap)
        vdate = self.case_start[vcase] + cum - cum[first][vcase]

        # Reopened cases: discharged, then seen again after a break (those visits are flagged).
        eligible = (n_v >= 10) & (vdate[last] + 45 <= _AS_OF_D)
        reopened = self.pick(eligible, "visit_after_discharge", table="visits", column=None, unit="case")
        is_reopened = np.zeros(c, bool)
        is_reopened[reopened] = True
        dc_pos = n_v - 1
        dc_pos[reopened] = n_v[reopened] - rng.integers(2, 5, len(reopened)) - 1
        shift = np.zeros(c, np.int64)
        shift[reopened] = rng.integers(14, 45, len(reopened))
        after = is_reopened[vcase] & (pos > dc_pos[vcase])
        vdate = vdate + np.where(after, shift[vcase], 0)

        future = vdate > _AS_OF_D
        is_open = np.bincount(vcase[future], minlength=c) > 0
        status = np.where(is_open, "OPEN", np.where(is_reopened, "REOPENED", "DISCHARGED")).astype(object)
        note = np.full(total, "DN", dtype=object)
        progress = (pos > 0) & (pos % 10 == 0)
        note[progress] = np.where(rng.random(int(progress.sum())) < 0.15, "RE", "PN")
        note[pos == 0] = "IE"
        discharged = status != "OPEN"
        dc_index = first[discharged] + dc_pos[discharged]
        note[dc_index] = "DC"
        note[first[reopened] + dc_pos[reopened] + 1] = "RE"  # re-evaluation on return
        discharge = np.full(c, -1, np.int64)
        discharge[discharged] = vdate[dc_index]
        # Discharge dated before the start: a keying error the pipeline must reject.
        chosen = self.pick(
            status == "DISCHARGED", "discharge_before_start", table="cases", column="discharge_date"
        )
        discharge[chosen] = self.case_start[chosen] - rng.integers(1, 60, len(chosen))
        self.bad_discharge = chosen

        self.case_status = status
        self.case_discharge = discharge
        self.case_is_reopened = is_reopened
        self.case_n_visits = n_v
        self.case_last_date = vdate[last]
        kept = ~future
        self.v_all_case = vcase
        self.v_all_date = vdate
        self.v_future = future
        self.v_case = vcase[kept]
        self.v_pos = pos[kept]
        self.v_date = vdate[kept]
        self.v_note = note[kept]
        self.v_after = after[kept]
        nv = len(self.v_case)
        self.v_id = np.arange(1, nv + 1)
        self.v_pat = self.case_owner[self.v_case]
        self.record(
            "visit_after_discharge", "visits", self.v_id[self.v_after], case_id=self.v_case[self.v_after] + 1
        )

    def build_case_table(self) -> None:
        c = self.n_cases
        clinic = self.pat_clinic[self.case_owner]
        self.case_clinic = clinic
        self.case_provider = self.provider_in(clinic)
        start = iso_dates(self.case_start)
        discharge = _with_nulls(iso_dates(np.maximum(self.case_discharge, 0)), self.case_discharge >= 0)
        ids = np.arange(1, c + 1)
        self.t["cases"] = {
            "case_id": ids,
            "pat_id": self.case_owner + 1,
            "clinic_id": clinic + 1,
            "provider_id": self.case_provider,
            "referral_id": _with_nulls(self.case_referral, self.case_referral > 0),
            "start_date": start,
            "discharge_date": discharge,
            "status": self.case_status,
            "body_region": _obj(V.BODY_REGIONS)[self.case_region],
            "reopened": np.where(self.case_is_reopened, "Y", "N").astype(object),
            "modified": self.stamp(np.maximum(self.case_last_date, self.case_start), 20),
        }
        self.record("discharge_before_start", "cases", ids[self.bad_discharge], "discharge_date")

    def build_appointments_and_visit_table(self) -> None:
        rng = self.rng
        nv = len(self.v_case)
        # Notes written without an appointment (walk-ins, telephone calls).
        no_appt = self.pick(np.ones(nv, bool), "note_without_appointment", table="visits", column="appt_id")
        has_appt = np.ones(nv, bool)
        has_appt[no_appt] = False
        same_provider = rng.random(nv) < 0.8
        v_provider = np.where(
            same_provider, self.case_provider[self.v_case], self.provider_in(self.case_clinic[self.v_case])
        )

        def slot(k: int) -> np.ndarray:  # quarter-hour slots from 8:00
            return np.asarray(8 * 3600 + 900 * rng.integers(0, 40, k), dtype=np.int64)

        # Arrived (one per visit with an appointment), cancelled/no-show, scheduled (future).
        arrived = np.flatnonzero(has_appt)
        a_case = self.v_case[arrived]
        a_time = self.v_date[arrived] * _DAY + slot(len(arrived))
        a_status = np.full(len(arrived), "ARRIVED", dtype=object)
        a_prov = v_provider[arrived]
        extra_n = rng.binomial(self.case_n_visits, 0.1)
        e_case = np.repeat(np.arange(self.n_cases), extra_n)
        span = self.case_last_date - self.case_start
        e_day = self.case_start[e_case] + np.floor(rng.random(len(e_case)) * (span[e_case] + 1)).astype(
            np.int64
        )
        keep = e_day <= _AS_OF_D
        e_case, e_day = e_case[keep], e_day[keep]
        e_time = e_day * _DAY + slot(len(e_case))
        e_status = np.where(rng.random(len(e_case)) < 0.6, "CANCELLED", "NOSHOW").astype(object)
        e_prov = self.case_provider[e_case]
        soon = self.v_future & (self.v_all_date <= _AS_OF_D + 28)
        s_case = self.v_all_case[soon]
        s_time = self.v_all_date[soon] * _DAY + slot(len(s_case))
        s_status = np.full(len(s_case), "SCHEDULED", dtype=object)
        s_prov = self.case_provider[s_case]

        case = np.concatenate([a_case, e_case, s_case])
        when = np.concatenate([a_time, e_time, s_time])
        status = np.concatenate([a_status, e_status, s_status])
        prov = np.concatenate([a_prov, e_prov, s_prov])
        visit_of = np.concatenate([arrived, np.full(len(e_case) + len(s_case), -1)])
        order = np.lexsort((case, when))  # ids follow the calendar, as the scheduler issued them
        case, when, status, prov, visit_of = (
            case[order],
            when[order],
            status[order],
            prov[order],
            visit_of[order],
        )
        appt_id = np.arange(1, len(case) + 1)
        v_appt = np.full(nv, -1, np.int64)
        mask = visit_of >= 0
        v_appt[visit_of[mask]] = appt_id[mask]
        mod_day = np.minimum(when // _DAY, _AS_OF_D)
        self.t["appointments"] = {
            "appt_id": appt_id,
            "pat_id": self.case_owner[case] + 1,
            "case_id": case + 1,
            "provider_id": prov,
            "clinic_id": self.case_clinic[case] + 1,
            "appt_time": iso_timestamps(when),
            "status": status,
            "modified": self.stamp(np.where(status == "SCHEDULED", _AS_OF_D - 3, mod_day), 2),
        }
        self.record("note_without_appointment", "visits", self.v_id[no_appt], "appt_id")

        # SOAP text.
        subjective, objective, assessment, plan = soap_notes(
            rng,
            self.v_note,
            self.case_region[self.v_case],
            self.case_freq[self.v_case],
            self.v_pos,
            self.case_n_visits[self.v_case],
        )
        signed_day = self.v_date + rng.integers(0, 4, nv)
        signed = signed_day <= _AS_OF_D
        signed_ts = signed_day * _DAY + rng.integers(16 * 3600, 21 * 3600, nv)
        visit_date = iso_dates(self.v_date)
        self.v_provider = v_provider
        self.t["visits"] = {
            "visit_id": self.v_id,
            "case_id": self.v_case + 1,
            "pat_id": self.v_pat + 1,
            "appt_id": _with_nulls(v_appt, v_appt > 0),
            "provider_id": v_provider,
            "visit_date": visit_date,
            "note_type": self.v_note,
            "subjective": subjective,
            "objective": objective,
            "assessment": assessment,
            "plan": plan,
            "signed_date": _with_nulls(iso_timestamps(signed_ts), signed),
            "modified": self.stamp(np.minimum(signed_day, _AS_OF_D), 30),
        }

    # -- billing -----------------------------------------------------------------------------------

    def build_procedures_and_charges(self) -> None:
        rng = self.rng
        nv = len(self.v_case)
        note = self.v_note
        is_eval = (note == "IE") | (note == "RE")
        # Untimed lines: an evaluation code on IE/RE, sometimes a modality on other visits.
        untimed = np.flatnonzero(is_eval | (rng.random(nv) < 0.1))
        u_code = np.where(
            note[untimed] == "IE",
            _obj(V.EVAL_CPT)[rng.choice(3, len(untimed), p=V.EVAL_WEIGHTS)],
            np.where(
                note[untimed] == "RE",
                V.REEVAL_CPT,
                _obj(V.MODALITY_CPT)[rng.choice(3, len(untimed), p=V.MODALITY_WEIGHTS)],
            ),
        ).astype(object)
        u_minutes = np.where(
            np.isin(u_code, [*V.EVAL_CPT, V.REEVAL_CPT]),
            rng.integers(25, 61, len(untimed)),
            np.where(
                u_code == "97150", rng.integers(30, 46, len(untimed)), rng.integers(10, 16, len(untimed))
            ),
        )
        # Timed lines: 0-1 on evaluations, 1-3 distinct codes on treatment visits.
        n_timed = np.where(
            is_eval,
            (rng.random(nv) < 0.7).astype(np.int64),
            rng.choice(np.array([1, 2, 3]), nv, p=[0.55, 0.35, 0.10]),
        )
        order = _top_k(rng, np.array(V.TIMED_WEIGHTS), nv)
        t_visit = np.repeat(np.arange(nv), n_timed)
        t_seq = np.arange(len(t_visit)) - np.repeat(np.cumsum(n_timed) - n_timed, n_timed)
        t_code = _obj(V.TIMED_CPT)[order[t_visit, t_seq]]
        busy = n_timed[t_visit] >= 2
        t_units = 1 + rng.binomial(2, np.where(busy, 0.2, 0.45))
        # Minutes near 15 per unit (±2): each line and the visit total give the same units under
        # the 8-minute rule.
        t_minutes = 15 * t_units + rng.integers(-2, 3, len(t_visit))

        visit = np.concatenate([untimed, t_visit])
        code = np.concatenate([u_code, t_code])
        units = np.concatenate([np.ones(len(untimed), np.int64), t_units])
        minutes = np.concatenate([u_minutes, t_minutes])
        timed = np.concatenate([np.zeros(len(untimed), bool), np.ones(len(t_visit), bool)])
        order = np.argsort(visit, kind="stable")  # untimed line first within a visit
        visit, code, units, minutes, timed = (
            visit[order],
            code[order],
            units[order],
            minutes[order],
            timed[order],
        )
        n_lines = len(visit)

        # Modifiers: GP always; 59 on 97140 beside 97530 (NCCI pair); KX on some Medicare lines.
        has_97530 = np.zeros(nv, bool)
        has_97530[visit[code == "97530"]] = True
        medicare = self.payer_type[np.maximum(self.pat_primary_payer[self.v_pat], 0)] == "Medicare"
        medicare &= self.pat_primary_payer[self.v_pat] >= 0
        kx = medicare[visit] & (rng.random(n_lines) < 0.05)
        modifiers = np.where(
            (code == "97140") & has_97530[visit], "GP,59", np.where(kx, "GP,KX", "GP")
        ).astype(object)

        # Free-text lines: a visit's timed lines keyed as one line.
        eligible = n_timed >= 2
        free_visits = self.pick(eligible, "cpt_free_text", table="procedures", column="cpt_text")
        in_free = np.zeros(nv, bool)
        in_free[free_visits] = True
        # Units above what the minutes allow, on ordinary timed lines.
        exceed = self.pick(
            timed & ~in_free[visit],
            "units_exceed_minutes",
            table="procedures",
            column="units",
            unit="timed line",
        )
        units[exceed] += rng.choice(np.array([1, 2]), len(exceed), p=[0.7, 0.3])

        # Charges: one per code billed, in dollars.
        fee = np.array([V.FEES_CENTS[c] for c in code.tolist()], np.int64)
        amount = fee * units
        posted = np.minimum(self.v_date[visit] + rng.integers(0, 6, n_lines), _AS_OF_D)
        self.visit_charges = np.bincount(visit, weights=amount, minlength=nv).astype(np.int64)
        self.charge = {
            "visit": visit,
            "code": code,
            "amount": amount,
            "posted": posted,
        }

        # Collapse each free-text visit's timed lines into its first timed line.
        keep = np.ones(n_lines, bool)
        text = code.copy()
        free_line = timed & in_free[visit]
        lines = np.flatnonzero(free_line)
        style = rng.integers(0, 2, nv)
        free_ids: list[int] = []
        free_n: list[int] = []
        start = 0
        while start < len(lines):
            stop = start
            v = visit[lines[start]]
            while stop < len(lines) and visit[lines[stop]] == v:
                stop += 1
            group = lines[start:stop]
            head = group[0]
            parts = list(zip(code[group].tolist(), units[group].tolist(), strict=True))
            text[head] = cpt_free_text(parts, int(style[v]))
            minutes[head] = int(minutes[group].sum())
            units[head] = int(units[group].sum())
            if (modifiers[group] == "GP,59").any():
                modifiers[head] = "GP,59"
            keep[group[1:]] = False
            free_ids.append(int(head))
            free_n.append(len(group))
            start = stop
        proc_of_line = np.cumsum(keep)  # 1-based proc_id of each kept line
        proc_ids = proc_of_line[keep]
        self.t["procedures"] = {
            "proc_id": proc_ids,
            "visit_id": self.v_id[visit[keep]],
            "cpt_text": text[keep],
            "minutes": _obj([str(m) for m in minutes[keep].tolist()]),
            "units": _obj([str(u) for u in units[keep].tolist()]),
            "modifiers": modifiers[keep],
            "modified": self.stamp(self.v_date[visit[keep]], 7),
        }
        self.record(
            "cpt_free_text",
            "procedures",
            proc_of_line[np.array(free_ids, np.int64)],
            "cpt_text",
            codes=np.array(free_n),
        )
        self.record(
            "units_exceed_minutes",
            "procedures",
            proc_of_line[exceed],
            "units",
            cpt_code=code[exceed],
        )

    def build_coverage(self) -> None:
        """Primary (and some secondary) coverage per original; a duplicate registers its own copy."""
        rng, n = self.rng, self.n
        age = (_AS_OF_D - self.dob[:n]) / 365.25
        types = np.array(V.PAYER_TYPES)
        senior_p = np.array([0.85, 0.03, 0.10, 0.0, 0.0, 0.0, 0.0, 0.02])
        other_p = np.array([0.0, 0.14, 0.58, 0.09, 0.07, 0.04, 0.03, 0.05])
        ptype = np.where(
            age >= 65, rng.choice(len(types), n, p=senior_p), rng.choice(len(types), n, p=other_p)
        )
        payer_type = np.array([t for _, t in V.PAYERS])
        payer_of_type = [np.flatnonzero(payer_type == t) for t in types]
        pick = rng.random(n)
        primary = np.array(
            [payer_of_type[t][int(u * len(payer_of_type[t]))] for t, u in zip(ptype, pick, strict=True)]
        )
        self_pay = types[ptype] == "Self Pay"
        secondary = (~self_pay) & (rng.random(n) < np.where(types[ptype] == "Medicare", 0.35, 0.08))
        commercial = payer_of_type[list(types).index("Commercial")]
        second_payer = commercial[rng.integers(0, len(commercial), n)]

        orig = np.flatnonzero(~self_pay)
        sec = np.flatnonzero(secondary)
        dup_covered = np.flatnonzero(~self_pay[self.dup_of])
        pat = np.concatenate([orig, sec, self.n + dup_covered])
        payer = np.concatenate([primary[orig], second_payer[sec], primary[self.dup_of[dup_covered]]])
        priority = np.concatenate(
            [np.ones(len(orig), np.int64), np.full(len(sec), 2), np.ones(len(dup_covered), np.int64)]
        )
        order = np.lexsort((priority, pat))
        pat, payer, priority = pat[order], payer[order], priority[order]
        m = len(pat)
        cov_id = np.arange(1, m + 1)
        # Member ids: a duplicate's copy carries the original's member id.
        member = member_ids(rng, payer_type[payer])
        src_member = {}
        for p, mid, pr in zip(pat.tolist(), member.tolist(), priority.tolist(), strict=True):
            if p < n and pr == 1:
                src_member[p] = mid
        for i, (p, pr) in enumerate(zip(pat.tolist(), priority.tolist(), strict=True)):
            if p >= n and pr == 1:
                member[i] = src_member[int(self.dup_of[p - n])]
        group = _obj(
            [
                f"GRP{g:05d}" if t == "Commercial" else None
                for g, t in zip(rng.integers(0, 100_000, m), payer_type[payer], strict=True)
            ]
        )
        first_case = np.full(self.total_patients, _AS_OF_D, np.int64)
        np.minimum.at(first_case, self.case_owner, self.case_start)
        eff = np.maximum(first_case[pat] - rng.integers(30, 2_000, m), _days("2008-01-01"))
        term = eff + rng.integers(365, 3_000, m)
        has_term = (rng.random(m) < 0.1) & (term < _AS_OF_D)
        self.pat_primary_cov = np.full(self.total_patients, -1, np.int64)
        self.pat_primary_payer = np.full(self.total_patients, -1, np.int64)
        prim = priority == 1
        self.pat_primary_cov[pat[prim]] = cov_id[prim]
        self.pat_primary_payer[pat[prim]] = payer[prim]
        self.t["coverage"] = {
            "cov_id": cov_id,
            "pat_id": pat + 1,
            "payer_id": payer + 1,
            "member_id": member,
            "group_no": group,
            "priority": _obj([str(p) for p in priority.tolist()]),
            "eff_date": iso_dates(eff),
            "term_date": _with_nulls(iso_dates(term), has_term),
            "modified": self.stamp(eff, 60),
        }

    def build_payments(self) -> None:
        """Payer payments, contractual adjustments and copays, posted against visits' charges."""
        rng = self.rng
        nv = len(self.v_case)
        payer = self.pat_primary_payer[self.v_pat]
        insured = payer >= 0
        billed = self.visit_charges > 0
        pay = billed & (rng.random(nv) < np.where(insured, 0.45, 0.3))
        adjust = billed & insured & (rng.random(nv) < 0.2)
        copay = billed & insured & (rng.random(nv) < 0.08)
        share = rng.uniform(0.4, 0.75, nv)
        cut = rng.uniform(0.05, 0.3, nv)
        parts = []
        for mask, label, amount, payer_id in (
            (
                pay,
                "PAYMENT",
                np.round(self.visit_charges * share),
                np.where(insured, payer + 1, self.self_pay_id),
            ),
            (adjust, "ADJUSTMENT", np.round(self.visit_charges * cut), payer + 1),
            (
                copay,
                "PAYMENT",
                rng.choice(np.array([2000, 2500, 3000, 4000]), nv),
                np.full(nv, self.self_pay_id),
            ),
        ):
            idx = np.flatnonzero(mask)
            parts.append(
                (idx, np.full(len(idx), label, dtype=object), amount[idx].astype(np.int64), payer_id[idx])
            )
        visit = np.concatenate([p[0] for p in parts])
        kind = np.concatenate([p[1] for p in parts])
        cents = np.concatenate([p[2] for p in parts])
        payer_id = np.concatenate([p[3] for p in parts])
        paid = self.v_date[visit] + rng.integers(14, 61, len(visit))
        ok = paid <= _AS_OF_D
        visit, kind, cents, payer_id, paid = visit[ok], kind[ok], cents[ok], payer_id[ok], paid[ok]
        order = np.lexsort((visit, paid))
        visit, kind, cents, payer_id, paid = (
            visit[order],
            kind[order],
            cents[order],
            payer_id[order],
            paid[order],
        )
        self.payment_cents = cents
        self.t["payments"] = {
            "payment_id": np.arange(1, len(visit) + 1),
            "pat_id": self.v_pat[visit] + 1,
            "payer_id": payer_id,
            "amount": _obj([money_text(c) for c in cents.tolist()]),
            "kind": kind,
            "paid_on": iso_dates(paid),
            "modified": self.stamp(paid, 3),
        }

    def build_charge_table(self) -> None:
        ch = self.charge
        n = len(ch["visit"])
        order = np.lexsort((ch["visit"], ch["posted"]))
        visit = ch["visit"][order]
        self.t["charges"] = {
            "charge_id": np.arange(1, n + 1),
            "visit_id": self.v_id[visit],
            "pat_id": self.v_pat[visit] + 1,
            "cpt_code": ch["code"][order],
            "amount": _obj([money_text(c) for c in ch["amount"][order].tolist()]),
            "posted": iso_dates(ch["posted"][order]),
            "modified": self.stamp(ch["posted"][order], 5),
        }

    # -- clinical records ----------------------------------------------------------------------------

    def build_outcomes(self) -> None:
        rng = self.rng
        measured = np.flatnonzero(np.isin(self.v_note, ("IE", "PN", "RE", "DC")))
        case = self.v_case[measured]
        # Index of the measurement within its case (0 at the evaluation).
        first = np.r_[True, case[1:] != case[:-1]]
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(case)), 0))
        index = np.arange(len(case)) - group_start
        measure_names = list(V.MEASURES)
        region_measure = np.array([measure_names.index(V.REGION_MEASURE[r]) for r in V.BODY_REGIONS])
        psfs = rng.random(self.n_cases) < 0.2
        rows_visit = np.concatenate([measured, measured[psfs[case]]])
        rows_case = np.concatenate([case, case[psfs[case]]])
        rows_index = np.concatenate([index, index[psfs[case]]])
        rows_measure = np.concatenate(
            [
                region_measure[self.case_region[case]],
                np.full(int(psfs[case].sum()), measure_names.index("PSFS")),
            ]
        )
        order = np.lexsort((rows_measure, rows_visit))
        rows_visit, rows_case, rows_index, rows_measure = (
            rows_visit[order],
            rows_case[order],
            rows_index[order],
            rows_measure[order],
        )
        n = len(rows_visit)
        # Baseline and change per measurement: LEFS/PSFS rise as patients improve, the others fall.
        base_lo = np.array([18, 20, 8, 25, 1.5])[rows_measure]
        base_hi = np.array([50, 60, 30, 70, 5.0])[rows_measure]
        step_lo = np.array([3, -10, -5, -10, 0.5])[rows_measure]
        step_hi = np.array([9, -3, -1, -3, 1.5])[rows_measure]
        top = np.array([V.MEASURE_RANGE[m][1] for m in measure_names])[rows_measure]
        case_u = rng.random((self.n_cases, 2))
        base = base_lo + case_u[rows_case, 0] * (base_hi - base_lo)
        step = step_lo + case_u[rows_case, 1] * (step_hi - step_lo)
        score = np.clip(base + rows_index * step, 0, top)
        decimals = np.isin(rows_measure, [measure_names.index("QuickDASH"), measure_names.index("PSFS")])
        chosen = self.pick(np.ones(n, bool), "score_out_of_range", table="outcomes", column="score")
        score[chosen] = top[chosen] + 1 + rng.random(len(chosen)) * (0.3 * top[chosen])
        text = _obj(
            [
                f"{s:.1f}" if d else str(round(s))
                for s, d in zip(score.tolist(), decimals.tolist(), strict=True)
            ]
        )
        ids = np.arange(1, n + 1)
        self.t["outcomes"] = {
            "outcome_id": ids,
            "case_id": rows_case + 1,
            "visit_id": self.v_id[rows_visit],
            "measure": _obj(measure_names)[rows_measure],
            "score": text,
            "measured_on": iso_dates(self.v_date[rows_visit]),
            "modified": self.stamp(self.v_date[rows_visit], 5),
        }
        self.record(
            "score_out_of_range",
            "outcomes",
            ids[chosen],
            "score",
            measure=_obj(measure_names)[rows_measure[chosen]],
        )

    def build_plans_and_authorizations(self) -> None:
        rng, c = self.rng, self.n_cases
        goal = rng.integers(0, len(V.GOALS), c)
        activity = rng.integers(0, len(V.ACTIVITIES), c)
        goals = _obj(
            [
                V.GOALS[g].format(activity=V.ACTIVITIES[a], measure=V.REGION_MEASURE[V.BODY_REGIONS[r]])
                for g, a, r in zip(goal, activity, self.case_region, strict=True)
            ]
        )
        weeks = np.ceil(self.case_n_visits / np.array([1, 2, 3])[self.case_freq]).astype(np.int64)
        weeks = np.array([4, 6, 8, 12, 16])[np.searchsorted([4, 6, 8, 12, 16], np.minimum(weeks, 16))]
        cert = self.case_start + rng.integers(0, 21, c)
        self.poc_certified = rng.random(c) >= 0.05
        span = self.case_last_date - self.case_start
        recert = cert + 90
        has_recert = (span > 90) & (recert <= _AS_OF_D)
        self.t["plans_of_care"] = {
            "poc_id": np.arange(1, c + 1),
            "case_id": np.arange(1, c + 1),
            "dx_codes": _obj([",".join(codes) for codes in self.case_dx]),
            "goals": goals,
            "frequency": _obj(V.FREQUENCIES)[self.case_freq],
            "duration_weeks": _obj([str(w) for w in weeks.tolist()]),
            "cert_date": iso_dates(np.minimum(cert, _AS_OF_D)),
            "certified_by": np.full(c, None, dtype=object),  # filled once the NPIs are final
            "recert_date": _with_nulls(iso_dates(recert), has_recert),
            "modified": self.stamp(np.minimum(cert, _AS_OF_D), 10),
        }
        # Authorizations for payers that require one.
        cov = self.pat_primary_cov[self.case_owner]
        payer = self.pat_primary_payer[self.case_owner]
        needs = (cov > 0) & np.isin(self.payer_type[np.maximum(payer, 0)], sorted(V.AUTH_PAYER_TYPES))
        cases = np.flatnonzero(needs & (rng.random(c) < 0.8))
        a = len(cases)
        authorized = rng.choice(np.array([6, 8, 10, 12, 20, 24]), a)
        used = np.minimum(authorized, self.case_n_visits[cases])
        start = self.case_start[cases]
        end = start + rng.choice(np.array([30, 60, 90]), a)
        self.t["authorizations"] = {
            "auth_id": np.arange(1, a + 1),
            "case_id": cases + 1,
            "cov_id": cov[cases],
            "visits_authorized": _obj([str(v) for v in authorized.tolist()]),
            "visits_used": _obj([str(v) for v in used.tolist()]),
            "start_date": iso_dates(start),
            "end_date": iso_dates(end),
            "modified": self.stamp(np.minimum(end, _AS_OF_D), 10),
        }

    def build_documents(self) -> None:
        """Scanned referrals, signed plans of care and intake forms, as small PDFs."""
        rng = self.rng
        r_case = self.referral_case
        ref_docs = r_case[rng.random(len(r_case)) < 0.7]
        poc_docs = np.flatnonzero(rng.random(self.n_cases) < 0.5)
        other_docs = np.flatnonzero(rng.random(self.total_patients) < 0.25)
        pat = np.concatenate([self.case_owner[ref_docs], self.case_owner[poc_docs], other_docs])
        kind = np.concatenate(
            [np.zeros(len(ref_docs), np.int64), np.ones(len(poc_docs), np.int64), np.full(len(other_docs), 2)]
        )
        case = np.concatenate([ref_docs, poc_docs, np.full(len(other_docs), -1)])
        day = np.concatenate(
            [
                self.case_start[ref_docs],
                self.case_start[poc_docs] + 7,
                np.maximum(self.pat_created[other_docs], 0),
            ]
        )
        order = np.lexsort((kind, pat))
        pat, kind, case, day = pat[order], kind[order], case[order], np.minimum(day[order], _AS_OF_D)
        n = len(pat)
        doc_id = np.arange(1, n + 1)
        doc_type = _obj(("REFERRAL", "POC", "OTHER"))[kind]
        filler = rng.integers(2, 40, n)
        dates = iso_dates(day).tolist()
        content = np.empty(n, dtype=object)
        filenames = np.empty(n, dtype=object)
        for i in range(n):
            p, k, ci = int(pat[i]), int(kind[i]), int(case[i])
            name = f"{self.given[p]} {self.family[p]}"
            title = (
                "REFERRAL FOR PHYSICAL THERAPY",
                "PLAN OF CARE - PHYSICIAN CERTIFICATION",
                "PATIENT INTAKE FORM",
            )[k]
            lines = [title, f"Patient: {name}", f"Date: {dates[i]}"]
            if ci >= 0:
                lines.append(f"Diagnosis: {', '.join(self.case_dx[ci])}")
                lines.append(f"Body region: {V.BODY_REGIONS[self.case_region[ci]]}")
            lines += [
                f"Line {j + 1}: evaluate and treat; therapeutic exercise; manual therapy; HEP."
                for j in range(int(filler[i]))
            ]
            lines.append(f"Document {doc_id[i]}")
            content[i] = minimal_pdf(lines)
            filenames[i] = f"{('referral', 'poc', 'intake')[k]}_{doc_id[i]}.pdf"
        self.t["documents"] = {
            "doc_id": doc_id,
            "pat_id": pat + 1,
            "doc_type": doc_type,
            "filename": filenames,
            "mime": np.full(n, "application/pdf", dtype=object),
            "content": content,
            "modified": self.stamp(day, 5),
        }

    # -- patient safety ------------------------------------------------------------------------------

    @contextmanager
    def drawing_from(self, rng: np.random.Generator) -> Iterator[None]:
        """Let the helpers (``pick``, ``stamp``, ``mess_dates``) draw from ``rng`` for a while."""
        saved, self.rng = self.rng, rng
        try:
            yield
        finally:
            self.rng = saved

    def build_safety(self) -> None:
        """Allergies and medications on each patient's first case, precautions on some cases.

        Everything here draws from its own generator (``PCG64([seed, 17])``), so the tables built
        before these three stay byte for byte what they were for a seed. Records sit only on cases
        the pipeline keeps (not the ``discharge_before_start`` ones), so a safety record is never lost
        with its parent; a precaution's visit is a surviving, non-canary visit of its own case. A row
        carries at most one defect of the safety kinds (and maybe a ``date_mixed_format``).
        """
        with self.drawing_from(self.safety_rng):
            cases = self.t["cases"]
            host = np.ones(self.n_cases, bool)
            host[self.bad_discharge] = False
            hosts = np.flatnonzero(host)
            owner = cases["pat_id"][hosts]
            # The first kept case of each patient row (case indices ascend with the start date).
            _, first = np.unique(owner, return_index=True)
            first_case = hosts[first]
            # The later kept cases of the same patient row: a duplicate record goes onto one of them.
            order = np.lexsort((hosts, owner))
            self.later_cases = hosts[order]
            grp = owner[order]
            ends = np.flatnonzero(np.r_[grp[1:] != grp[:-1], True])
            rank = np.arange(len(order))
            self.later_at = np.full(self.n_cases, -1, np.int64)
            self.later_at[self.later_cases] = rank
            self.later_n = np.zeros(self.n_cases, np.int64)
            self.later_n[self.later_cases] = ends[np.searchsorted(ends, rank)] - rank
            # Visits a precaution may point at, grouped by case.
            visits = self.t["visits"]
            vcase = visits["case_id"] - 1
            ok = (vcase < self.n_cases) & ~np.isin(visits["visit_id"], self.canary_visit_ids)
            by_case = np.argsort(vcase[ok], kind="stable")
            self.note_visits = visits["visit_id"][ok][by_case]
            self.note_count = np.bincount(vcase[ok], minlength=self.n_cases)
            self.note_start = np.cumsum(self.note_count) - self.note_count

            self.build_allergies(first_case)
            self.build_medications(first_case)
            self.build_precautions(hosts)
            for table, column in (
                ("allergies", "noted"),
                ("medications", "start_date"),
                ("precautions", "start_date"),
            ):
                cols = self.t[table]
                self.mess_dates(table, column, cols[column], cols[LEGACY_TABLES[table].key])
            self.plant_precaution_canary()

    def day_in_case(self, case: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """``offset`` days into each case, no later than its last visit (or the snapshot)."""
        end = np.maximum(np.minimum(self.case_last_date[case], _AS_OF_D), self.case_start[case])
        return np.asarray(np.minimum(self.case_start[case] + offset, end))

    def end_after(self, start: np.ndarray, share: float, lo: int, hi: int) -> np.ndarray:
        """An end ``lo..hi`` days after ``start`` for ``share`` of the rows, -1 for the rest (and past
        the snapshot)."""
        rng, n = self.rng, len(start)
        end = start + rng.integers(lo, hi + 1, n)
        return np.asarray(np.where((rng.random(n) < share) & (end <= _AS_OF_D), end, -1))

    def build_allergies(self, first_case: np.ndarray) -> None:
        rng, n_p = self.rng, len(first_case)
        has = rng.random(n_p) < 0.55
        nkda = has & (rng.random(n_p) < 1 / 3)
        k = np.where(nkda, 1, np.where(has, rng.choice(np.array([1, 2]), n_p, p=[0.65, 0.35]), 0))
        who = np.repeat(np.arange(n_p), k)
        seq = np.arange(len(who)) - np.repeat(np.cumsum(k) - k, k)
        canon = _top_k(rng, np.array(V.ALLERGEN_WEIGHTS), n_p)[who, seq]
        is_nkda = nkda[who]
        canon[is_nkda] = len(V.ALLERGENS)  # the no-known-allergies spellings are the last group
        n = len(who)
        spellings, count = _spelling_table([*V.ALLERGENS.values(), V.NO_KNOWN_ALLERGIES])
        spelling = np.floor(rng.random(n) * count[canon]).astype(np.int64)
        allergen = spellings[canon, spelling]
        case = first_case[who]
        reaction = _obj(V.REACTIONS)[rng.choice(len(V.REACTIONS), n, p=V.REACTION_WEIGHTS)]
        severity = _obj(V.SEVERITIES)[rng.choice(len(V.SEVERITIES), n, p=V.SEVERITY_WEIGHTS)]
        status = _obj(V.ALLERGY_STATUSES)[rng.choice(len(V.ALLERGY_STATUSES), n, p=V.ALLERGY_STATUS_WEIGHTS)]
        reaction[is_nkda] = None
        severity[is_nkda] = None
        status[is_nkda] = "active"
        noted = self.day_in_case(case, rng.integers(0, 8, n))
        ids = np.arange(1, n + 1)
        cols: Columns = {
            "allergy_id": ids,
            "pat_id": self.t["cases"]["pat_id"][case],
            "case_id": case + 1,
            "allergen": allergen,
            "reaction": reaction,
            "severity": severity,
            "status": status,
            "noted": iso_dates(noted),
            "modified": self.stamp(noted, 20),
        }
        chosen = self.pick(is_nkda, "allergy_no_known", table="allergies", column="allergen")
        self.record("allergy_no_known", "allergies", ids[chosen], "allergen")
        free = ~is_nkda
        for column, values in (
            ("allergen", V.ALLERGENS_UNCODED),
            ("severity", V.SEVERITIES_UNMAPPED),
            ("status", V.ALLERGY_STATUSES_UNMAPPED),
        ):
            chosen = self.pick(free, "safety_text_unmapped", table="allergies", column=column)
            cols[column][chosen] = _obj(values)[rng.integers(0, len(values), len(chosen))]
            self.record("safety_text_unmapped", "allergies", ids[chosen], column)
            free[chosen] = False
        # A copy on a later case: the same allergy, often in another spelling of the same allergen.
        chosen, copy = self.copy_to_later_case("allergies", cols, case, free | is_nkda)
        group, now = canon[chosen], spelling[chosen]
        respell = rng.random(len(chosen)) < 0.6
        shift = 1 + np.floor(rng.random(len(chosen)) * (count[group] - 1)).astype(np.int64)
        copy["allergen"] = spellings[group, np.where(respell, (now + shift) % count[group], now)]
        self.t["allergies"] = _append(cols, copy)

    def build_medications(self, first_case: np.ndarray) -> None:
        rng, n_p = self.rng, len(first_case)
        k = rng.choice(5, n_p, p=[0.3, 0.25, 0.2, 0.15, 0.1])
        who = np.repeat(np.arange(n_p), k)
        seq = np.arange(len(who)) - np.repeat(np.cumsum(k) - k, k)
        drug = _top_k(rng, np.array(V.DRUG_WEIGHTS), n_p)[who, seq]
        n = len(who)
        case = first_case[who]
        start = self.day_in_case(case, rng.integers(0, 8, n))
        stop = self.end_after(start, 0.2, 7, 180)
        ids = np.arange(1, n + 1)
        cols: Columns = {
            "med_id": ids,
            "pat_id": self.t["cases"]["pat_id"][case],
            "case_id": case + 1,
            "drug": _obj(V.DRUGS)[drug],
            "dose": _obj(V.DOSES)[rng.integers(0, len(V.DOSES), n)],
            "med_status": _obj(V.MED_STATUSES)[rng.choice(len(V.MED_STATUSES), n, p=V.MED_STATUS_WEIGHTS)],
            "start_date": iso_dates(start),
            "stop_date": _with_nulls(iso_dates(np.maximum(stop, 0)), stop >= 0),
            "modified": self.stamp(np.maximum(start, stop), 20),
        }
        chosen = self.pick(np.ones(n, bool), "safety_text_unmapped", table="medications", column="med_status")
        unmapped = _obj(V.MED_STATUSES_UNMAPPED)
        cols["med_status"][chosen] = unmapped[rng.integers(0, len(unmapped), len(chosen))]
        self.record("safety_text_unmapped", "medications", ids[chosen], "med_status")
        free = np.ones(n, bool)
        free[chosen] = False
        # A copy on a later case, the drug's name sometimes in another letter case.
        chosen, copy = self.copy_to_later_case("medications", cols, case, free)
        recase = rng.random(len(chosen)) < 0.5
        pick = rng.integers(0, 2, len(chosen))
        names = copy["drug"].copy()
        for i in np.flatnonzero(recase).tolist():
            name = names[i]
            variants = [v for v in (name.lower(), name.upper(), name.capitalize()) if v != name]
            names[i] = variants[int(pick[i]) % len(variants)]
        copy["drug"] = names
        self.t["medications"] = _append(cols, copy)

    def build_precautions(self, hosts: np.ndarray) -> None:
        rng = self.rng
        with_prec = hosts[rng.random(len(hosts)) < 0.30]
        k = rng.choice(np.array([1, 2]), len(with_prec), p=[0.75, 0.25])
        who = np.repeat(np.arange(len(with_prec)), k)
        seq = np.arange(len(who)) - np.repeat(np.cumsum(k) - k, k)
        code = _top_k(rng, np.array(V.PRECAUTION_WEIGHTS), len(with_prec))[who, seq]
        n = len(who)
        case = with_prec[who]
        texts, count = _spelling_table(list(V.PRECAUTIONS.values()))
        text = texts[code, np.floor(rng.random(n) * count[code]).astype(np.int64)]
        # Each precaution was noted at a visit of its case (early ones more often); half name it.
        has_visit = self.note_count[case] > 0
        at = self.note_start[case] + np.floor(rng.random(n) ** 2 * self.note_count[case]).astype(np.int64)
        visit = np.where(has_visit, self.note_visits[np.clip(at, 0, max(len(self.note_visits) - 1, 0))], -1)
        start = np.where(has_visit, self.v_date[np.maximum(visit - 1, 0)], self.case_start[case])
        shown = has_visit & (rng.random(n) < 0.5)
        end = self.end_after(start, 0.25, 14, 120)
        ids = np.arange(1, n + 1)
        codes = _obj(list(V.PRECAUTIONS))
        cols: Columns = {
            "prec_id": ids,
            "pat_id": self.t["cases"]["pat_id"][case],
            "case_id": case + 1,
            "visit_id": _with_nulls(visit, shown),
            "prec_code": codes[code],
            "prec_text": text,
            "start_date": iso_dates(start),
            "end_date": _with_nulls(iso_dates(np.maximum(end, 0)), end >= 0),
            "modified": self.stamp(np.maximum(start, end), 10),
        }
        # Only in a note's words: no code, the visit of the note set (a kind the words name: not OTHER).
        named = has_visit & (codes[code] != "OTHER")
        chosen = self.pick(named, "precaution_in_note", table="precautions", column="prec_code")
        form = rng.integers(0, len(V.PRECAUTION_NOTES), len(chosen))
        dates = cols["start_date"][chosen].tolist()
        cols["prec_text"][chosen] = [
            V.PRECAUTION_NOTES[f].format(date=f"{d[5:7]}/{d[8:10]}/{d[:4]}", text=t)
            for f, d, t in zip(form.tolist(), dates, text[chosen].tolist(), strict=True)
        ]
        cols["prec_code"][chosen] = None
        cols["visit_id"][chosen] = visit[chosen].astype(object)
        self.record("precaution_in_note", "precautions", ids[chosen], "prec_code", code=codes[code[chosen]])
        free = np.ones(n, bool)
        free[chosen] = False
        chosen = self.pick(free, "safety_text_unmapped", table="precautions", column="prec_text")
        unclassified = _obj(V.PRECAUTION_TEXTS_UNCLASSIFIED)
        cols["prec_text"][chosen] = unclassified[rng.integers(0, len(unclassified), len(chosen))]
        cols["prec_code"][chosen] = None
        self.record("safety_text_unmapped", "precautions", ids[chosen], "prec_text")
        free[chosen] = False
        # A copy on a later case: same code, text and dates; its visit, if any, is of the later case.
        chosen, copy = self.copy_to_later_case("precautions", cols, case, free)
        to = copy["case_id"] - 1
        named = np.array([v is not None for v in copy["visit_id"].tolist()], bool) & (self.note_count[to] > 0)
        first_visit = self.note_visits[np.clip(self.note_start[to], 0, max(len(self.note_visits) - 1, 0))]
        copy["visit_id"] = _with_nulls(first_visit, named)
        self.t["precautions"] = _append(cols, copy)

    def copy_to_later_case(
        self, table: str, cols: Columns, case: np.ndarray, eligible: np.ndarray
    ) -> tuple[np.ndarray, Columns]:
        """Pick ``safety_duplicate`` rows among ``eligible`` ones whose patient has a later case, and
        copy them there with new ids (recorded with ``of``); the caller may respell the copies."""
        rng = self.rng
        key = LEGACY_TABLES[table].key
        chosen = self.pick(eligible & (self.later_n[case] > 0), "safety_duplicate", table=table, column=None)
        m = len(chosen)
        ahead = 1 + np.floor(rng.random(m) * self.later_n[case[chosen]]).astype(np.int64)
        to = self.later_cases[self.later_at[case[chosen]] + ahead]
        copy = {name: values[chosen].copy() for name, values in cols.items()}
        copy[key] = len(cols[key]) + 1 + np.arange(m)
        copy["case_id"] = to + 1
        copy["modified"] = self.stamp(self.day_in_case(to, rng.integers(0, 8, m)), 20)
        self.record("safety_duplicate", table, copy[key], of=cols[key][chosen])
        return chosen, copy

    def plant_precaution_canary(self) -> None:
        """One canary phrase (not one a visit note holds) at the end of a precaution without defects."""
        rng = self.rng
        prec = self.t["precautions"]
        copied = {
            d["of"] for d in self.defects if d["kind"] == "safety_duplicate" and d["table"] == "precautions"
        }
        marked = {d["legacy_id"] for d in self.defects if d["table"] == "precautions"} | copied
        ids = prec["prec_id"]
        eligible = ~np.isin(ids, np.array(sorted(marked), np.int64))
        row = int(rng.choice(np.flatnonzero(eligible)))
        unused = [p for p in V.CANARY_PHRASES if p not in self.canaries]
        phrase = unused[int(rng.integers(0, len(unused)))]
        prec["prec_text"][row] = f"{prec['prec_text'][row]}; pt {phrase}"
        self.canaries.append(phrase)
        self.canary_cells.append(
            {"kind": "note", "table": "precautions", "legacy_id": int(ids[row]), "field": "prec_text"}
        )

    def repoint_safety_notes(self) -> None:
        """Move a precaution off a visit that ``mess_clinical`` gave an impossible date (the pipeline
        rejects that visit) onto another visit of its case; an ordinary precaution with none left
        names no visit."""
        impossible = np.array(
            sorted(
                d["legacy_id"]
                for d in self.defects
                if d["kind"] == "date_impossible" and d["table"] == "visits"
            ),
            np.int64,
        )
        prec = self.t["precautions"]
        visit = prec["visit_id"]
        named = np.array([v is not None for v in visit.tolist()], bool)
        hit = np.flatnonzero(named)[np.isin(visit[named].astype(np.int64), impossible)]
        in_note = {d["legacy_id"] for d in self.defects if d["kind"] == "precaution_in_note"}
        with self.drawing_from(self.safety_rng):
            for i in hit.tolist():
                c = int(prec["case_id"][i]) - 1
                lo = int(self.note_start[c])
                options = self.note_visits[lo : lo + int(self.note_count[c])]
                options = options[~np.isin(options, impossible)]
                if len(options):
                    visit[i] = int(options[int(self.rng.integers(0, len(options)))])
                elif int(prec["prec_id"][i]) not in in_note:
                    visit[i] = None

    # -- mess on the remaining tables ----------------------------------------------------------------

    def inject_orphans(self) -> None:
        """Break parent links: visits of a missing case, deleted visits, coverage of a missing patient."""
        visits = self.t["visits"]
        nv = len(visits["visit_id"])
        flagged = {d["legacy_id"] for d in self.defects if d["table"] == "visits"}
        eligible = ~np.isin(visits["visit_id"], np.array(sorted(flagged), np.int64))
        eligible[self.canary_visits] = False
        lost_case = self.pick(eligible, "orphan", table="visits", column="case_id", unit="row")
        max_case = len(self.t["cases"]["case_id"])
        visits["case_id"] = visits["case_id"].copy()
        visits["case_id"][lost_case] = max_case + 1 + np.arange(len(lost_case))
        eligible[lost_case] = False
        # Deleted visits leave their procedures, charges and outcomes behind.
        gone = self.pick(eligible, "orphan", table="visits", column=None, unit="deleted visit")
        keep = np.ones(nv, bool)
        keep[gone] = False
        self.t["visits"] = {name: values[keep] for name, values in visits.items()}
        coverage = self.t["coverage"]
        lost_pat = self.pick(
            np.ones(len(coverage["cov_id"]), bool), "orphan", table="coverage", column="pat_id", unit="row"
        )
        coverage["pat_id"] = coverage["pat_id"].copy()
        coverage["pat_id"][lost_pat] = self.total_patients + 1 + np.arange(len(lost_pat))

    def mess_clinical(self) -> None:
        rng = self.rng
        # Dates.
        visits = self.t["visits"]
        self.mess_dates(
            "visits", "visit_date", visits["visit_date"], visits["visit_id"], two_digit=True, impossible=True
        )
        for table, column in (
            ("cases", "start_date"),
            ("cases", "discharge_date"),
            ("referrals", "referral_date"),
            ("plans_of_care", "cert_date"),
            ("outcomes", "measured_on"),
        ):
            cols = self.t[table]
            self.mess_dates(table, column, cols[column], cols[LEGACY_TABLES[table].key])
        # Notes: Latin-1 bytes and control characters (never in the canary notes).
        soap = ("subjective", "objective", "assessment", "plan")
        eligible = ~np.isin(visits["visit_id"], self.canary_visit_ids)
        chosen = self.pick(eligible, "latin1_text", table="visits", column=None, unit="visit")
        fields = rng.integers(0, 4, len(chosen))
        phrase = rng.integers(0, len(V.LATIN1_PHRASES), len(chosen))
        for i, f, p in zip(chosen.tolist(), fields.tolist(), phrase.tolist(), strict=True):
            cells = visits[soap[f]]
            cells[i] = (cells[i] + " " + V.LATIN1_PHRASES[p]).encode("latin-1")
        self.record("latin1_text", "visits", visits["visit_id"][chosen], None, field=_obj(soap)[fields])
        eligible[chosen] = False
        chosen = self.pick(eligible, "control_chars", table="visits", column=None, unit="visit")
        fields = rng.integers(0, 4, len(chosen))
        char = rng.integers(0, len(V.CONTROL_CHARS), len(chosen))
        where = rng.random(len(chosen))
        for i, f, ch, w in zip(chosen.tolist(), fields.tolist(), char.tolist(), where.tolist(), strict=True):
            cells = visits[soap[f]]
            text = cells[i]
            spaces = [k for k, c in enumerate(text) if c == " "]
            at = spaces[int(w * len(spaces))] if spaces else len(text)
            cells[i] = text[:at] + V.CONTROL_CHARS[ch] + text[at:]
        self.record(
            "control_chars",
            "visits",
            visits["visit_id"][chosen],
            None,
            field=_obj(soap)[fields],
            char=_obj(["NUL", "VT", "SUB", "CR"])[char],
        )
        self.dirty |= {("visits", s) for s in soap}
        # Diagnosis codes: ICD-9 and ICD-10 without the dot.
        for table, column, key, icd9 in (
            ("diagnoses", "icd_code", "dx_id", self.dx_code9),
            ("referrals", "dx_code", "referral_id", self.referral_dx9),
        ):
            values = self.t[table][column]
            ids = self.t[table][key]
            free = np.ones(len(values), bool)
            chosen = self.pick(free, "icd9_code", table=table, column=column)
            no_dot = rng.random(len(chosen)) < 0.25
            values[chosen] = [
                c.replace(".", "") if nd else c
                for c, nd in zip(icd9[chosen].tolist(), no_dot.tolist(), strict=True)
            ]
            self.record("icd9_code", table, ids[chosen], column)
            free[chosen] = False
            chosen = self.pick(free, "icd10_no_dot", table=table, column=column)
            values[chosen] = [c.replace(".", "") for c in values[chosen].tolist()]
            self.record("icd10_no_dot", table, ids[chosen], column)
        # Money.
        for table, key in (("charges", "charge_id"), ("payments", "payment_id")):
            cols = self.t[table]
            chosen = self.pick(np.ones(len(cols[key]), bool), "money_format", table=table, column="amount")
            style = rng.integers(0, 4, len(chosen))
            cents = [round(float(a) * 100) for a in cols["amount"][chosen].tolist()]
            messy = [money_messy(c, s) for c, s in zip(cents, style.tolist(), strict=True)]
            cols["amount"][chosen] = [m[0] for m in messy]
            self.record(
                "money_format", table, cols[key][chosen], "amount", format=_obj([m[1] for m in messy])
            )
        # NPIs failing the check digit; then the plans of care copy their certifier's NPI as stored.
        for table, key in (("providers", "provider_id"), ("ref_physicians", "ref_phys_id")):
            cols = self.t[table]
            chosen = self.pick(np.ones(len(cols[key]), bool), "invalid_npi", table=table, column="npi")
            bump = rng.integers(1, 10, len(chosen))
            cols["npi"][chosen] = [
                v[:9] + str((int(v[9]) + b) % 10)
                for v, b in zip(cols["npi"][chosen].tolist(), bump.tolist(), strict=True)
            ]
            self.record("invalid_npi", table, cols[key][chosen], "npi")
        certified = self.poc_certified
        self.t["plans_of_care"]["certified_by"][certified] = self.t["ref_physicians"]["npi"][
            self.case_ref_phys[certified]
        ]

    def plant_note_canaries(self) -> None:
        rng = self.rng
        phrases = rng.choice(len(V.CANARY_PHRASES), 2, replace=False)
        nv = len(self.v_id)
        rows = rng.choice(nv, 2, replace=False)
        subjective = self.t["visits"]["subjective"]
        for row, k in zip(rows.tolist(), phrases.tolist(), strict=True):
            phrase = V.CANARY_PHRASES[k]
            subjective[row] = f"{subjective[row]} Pt {phrase}."
            self.canaries.append(phrase)
            self.canary_cells.append(
                {"kind": "note", "table": "visits", "legacy_id": int(self.v_id[row]), "field": "subjective"}
            )
        self.canary_visits = rows
        self.canary_visit_ids = self.v_id[rows]

    def scan_orphans(self) -> None:
        """Record every row whose parent row is missing, for every relation of the schema."""
        for name, table in LEGACY_TABLES.items():
            columns = self.t[name]
            for fk, parent in table.parents:
                values = columns[fk]
                present = (
                    np.array([v is not None for v in values.tolist()], bool)
                    if values.dtype == object
                    else np.ones(len(values), bool)
                )
                refs = values[present].astype(np.int64)
                missing = ~np.isin(refs, self.t[parent][LEGACY_TABLES[parent].key])
                if missing.any():
                    ids = columns[table.key][present][missing]
                    self.record("orphan", name, ids, fk, parent=parent)

    def build(self) -> Legacy:
        self.build_clinics()
        self.build_payers()
        self.build_people()
        self.plant_canaries()
        self.build_duplicates()
        self.build_providers()
        self.build_ref_physicians()
        self.build_cases()
        self.build_diagnoses()
        self.build_referrals()
        self.build_visits()
        self.build_coverage()
        self.build_patient_table()
        self.build_case_table()
        self.build_appointments_and_visit_table()
        self.plant_note_canaries()
        self.build_procedures_and_charges()
        self.build_charge_table()
        self.build_payments()
        self.build_outcomes()
        self.build_plans_and_authorizations()
        self.build_documents()
        self.t["diagnoses"] = {
            "dx_id": np.arange(1, len(self.dx_case) + 1),
            "case_id": self.dx_case + 1,
            "icd_code": self.dx_code.copy(),
            "seq": _obj([str(s) for s in self.dx_seq.tolist()]),
            "modified": self.stamp(self.case_start[self.dx_case], 14),
        }
        self.inject_orphans()
        self.build_safety()
        self.mess_clinical()
        self.repoint_safety_notes()
        self.scan_orphans()
        self.defects.sort(key=lambda d: (d["kind"], d["table"], d["legacy_id"], d.get("field") or ""))
        tables = {name: self.t[name] for name in LEGACY_TABLES}
        for name, columns in tables.items():
            expected = LEGACY_TABLES[name].column_names
            if tuple(sorted(columns)) != tuple(sorted(expected)):
                raise AssertionError(f"{name}: built columns differ from the schema")
        clinics = [
            {
                "clinic_id": i + 1,
                "state": V.CLINICS[i].state,
                "tz": V.CLINICS[i].tz,
                "patients": int((self.pat_clinic == i).sum()),
            }
            for i in range(self.n_clinics)
        ]
        return Legacy(
            seed=self.seed,
            patients=self.n,
            tables=tables,
            defects=self.defects,
            injections=self.injections,
            canaries=self.canaries,
            canary_cells=self.canary_cells,
            clinics=clinics,
            dirty_text=self.dirty,
        )


def _top_k(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """n independent weighted orderings of ``len(weights)`` items (Gumbel top-k): without replacement."""
    u = np.clip(rng.random((n, len(weights))), 1e-12, 1 - 1e-12)
    keys = np.log(weights)[None, :] - np.log(-np.log(u))
    return np.argsort(-keys, axis=1, kind="stable")


def _spelling_table(groups: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """The spellings of each group as rows of an object matrix (padded with None), and their counts:
    ``table[group, index]`` spells many rows at once.

    >>> table, count = _spelling_table([("PCN", "Penicillin"), ("latex",)])
    >>> table[np.array([0, 1, 0]), np.array([1, 0, 0])].tolist(), count.tolist()
    (['Penicillin', 'latex', 'PCN'], [2, 1])
    """
    table = np.full((len(groups), max(len(g) for g in groups)), None, dtype=object)
    for row, spellings in enumerate(groups):
        table[row, : len(spellings)] = list(spellings)
    return table, np.array([len(g) for g in groups], np.int64)


def _append(columns: Columns, more: Columns) -> Columns:
    """``columns`` with the rows of ``more`` after them."""
    return {name: np.concatenate([values, more[name]]) for name, values in columns.items()}


def generate(*, patients: int, seed: int) -> Legacy:
    """Build a legacy practice of ``patients`` original patients (duplicates come on top)."""
    return _Builder(patients, seed).build()
