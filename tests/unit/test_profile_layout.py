"""A third legacy layout, ClinicNote (:mod:`profile_layout`), mapped by its folder profile and no Python.

Every table of the generated database is read as the extract reads it (the profile's source names
and columns, :func:`cutover.legacy.source.read_batches`) and mapped by the engine with the
profile's specs: every legacy row has exactly one outcome, and the counts add up to what the
generator wrote. The rows ClinicNote took from the simulator map as the simulator profile maps the
rows they came from: the name split over two columns, the vendor's sex codes, its date format and
the text-keyed appointments come out as the simulator's own mapping says they should.

The library's new parameters are tested here too: ``date``/``timestamp`` ``formats`` and
``name_part``'s ``form``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from profile_layout import APPT_KEY, BLANK_KEY_ROWS, PADDED_APPT, PROFILE, SEX_CODES, Layout, write_layout

from cutover.legacy.profile import Profile, load_profile, simulator
from cutover.legacy.source import read_batches
from cutover.mapping import normalize as nz
from cutover.mapping.engine import KEYLESS_PREFIX, Batch, map_batch
from cutover.mapping.library import RULES, build

SIMULATOR_OF = {
    "site": "clinics",
    "staff": "providers",
    "pt_master": "patients",
    "episode": "cases",
    "appt": "appointments",
    "tx_visit": "visits",
    "tx_line": "procedures",
    "fee": "charges",
}
"""The simulator profile's table each ClinicNote table's rows came from (same ids)."""


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return write_layout(tmp_path_factory.mktemp("clinicnote"))


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile(PROFILE)


def _mapped(url: str, profile: Profile, name: str, as_of: date) -> pd.DataFrame:
    """Every mapped row of the profile's table ``name``, read as the extract reads it."""
    table, spec = profile.tables[name], profile.specs[name]
    parts = [
        map_batch(spec, batch, as_of=as_of)
        for batch in read_batches(url, table.source_name, table.columns, table.key, invalid_ids=True)
    ]
    return pa.concat_tables(parts).to_pandas(types_mapper=pd.ArrowDtype)


class _Cache:
    def __init__(self, layout: Layout, profile: Profile) -> None:
        self.layout, self.profile = layout, profile
        self.done: dict[tuple[str, str], pd.DataFrame] = {}

    def clinicnote(self, name: str) -> pd.DataFrame:
        key = ("clinicnote", name)
        if key not in self.done:
            self.done[key] = _mapped(self.layout.url, self.profile, name, self.layout.as_of)
        return self.done[key]

    def simulator(self, name: str) -> pd.DataFrame:
        key = ("simulator", name)
        if key not in self.done:
            self.done[key] = _mapped(self.layout.simulator_url, simulator(), name, self.layout.as_of)
        return self.done[key]


@pytest.fixture(scope="module")
def mapped(layout: Layout, profile: Profile) -> _Cache:
    return _Cache(layout, profile)


def _plain(value: Any) -> Any:
    """A mapped value comparable with ``==``: NA as None, lists as lists."""
    return None if value is None or value is pd.NA else value


def _values(normalized: pd.Series) -> list[Any]:
    return [_plain(v) for v in normalized.tolist()]


def _outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per legacy id: its reason (NA when it maps), after checking its parts agree."""
    per_id = frame.groupby("legacy_id", dropna=False)["reason"]
    assert (per_id.nunique(dropna=False) == 1).all(), "the parts of a legacy row disagree on its outcome"
    return per_id.first().to_frame()


def test_the_profile_is_yaml_only(profile: Profile) -> None:
    assert Path(profile.origin) == PROFILE
    assert sorted(p.name for p in PROFILE.iterdir()) == sorted(
        ["profile.yaml", *(f"{name}.yaml" for name in profile.tables)]
    )
    assert set(profile.specs) == set(SIMULATOR_OF)
    assert profile.tables["appt"].key_type == "text"
    assert profile.tables["tx_line"].modified is None
    assert {n: t.source_name for n, t in profile.tables.items()} == {n: f"cn_{n}" for n in profile.tables}
    fields = {f.name: f for f in profile.specs["pt_master"].fields}
    assert fields["sex"].assumed
    assert fields["family_name"].sources == ("last_nm", "first_nm")
    assert "two columns (family, given)" in fields["family_name"].rule.title
    assert "%d.%m.%Y" in fields["birth_date"].rule.title


@pytest.mark.parametrize("name", list(SIMULATOR_OF))
def test_every_legacy_row_has_one_outcome(
    name: str, layout: Layout, profile: Profile, mapped: _Cache
) -> None:
    outcomes = _outcomes(mapped.clinicnote(name))
    assert len(outcomes) == layout.rows[profile.tables[name].source_name]
    migrated = int(outcomes["reason"].isna().sum())
    rejected = int(outcomes["reason"].notna().sum())
    assert migrated + rejected == layout.rows[profile.tables[name].source_name]
    assert migrated > 0.8 * len(outcomes), f"{name}: {rejected} of {len(outcomes)} rejected"


@pytest.mark.parametrize("name", list(SIMULATOR_OF))
def test_rows_map_as_the_simulator_maps_them(name: str, mapped: _Cache) -> None:
    """The same legacy id has the same outcome under both profiles, and the same target values when
    it maps (except the references, named by text ids in ClinicNote's appointments)."""
    ours = mapped.clinicnote(name)
    theirs = mapped.simulator(SIMULATOR_OF[name]).set_index("row_key")
    if name == "appt":  # A-000123 is the simulator's appointment 123; the blank key is the layout's own
        ours = ours[ours["legacy_id"].str.startswith("A-")]
        ours = ours.assign(row_key=ours["row_key"].str.removeprefix("A-").str.lstrip("0"))
    ours = ours.set_index("row_key")
    assert set(ours.index) == set(theirs.index)
    theirs = theirs.loc[ours.index]
    assert (ours["reason"].isna() == theirs["reason"].isna()).all(), "a row migrates under one profile only"
    kept = ours["reason"].isna().to_numpy()
    fields = [f.name for f in mapped.profile.specs[name].fields]
    assert set(fields) <= set(theirs.columns)
    for column in fields:
        left, right = ours.loc[kept, column].tolist(), theirs.loc[kept, column].tolist()
        differ = sum(_plain(a) != _plain(b) for a, b in zip(left, right, strict=True))
        assert differ == 0, f"{name}.{column}: {differ} rows differ"


def test_split_name_sex_codes_and_own_dates(layout: Layout, mapped: _Cache) -> None:
    """Known rows: the patients ClinicNote keeps in two name columns, coded 1/2/9 and dated DD.MM.YYYY,
    read as the simulator's mapping of the same patients reads them."""
    import sqlite3

    from cutover.legacy.source import sqlite_path

    with sqlite3.connect(sqlite_path(layout.url)) as conn:
        raw = pd.read_sql("SELECT pt_no, last_nm, first_nm, birth_dt, sex_cd FROM cn_pt_master", conn)
    raw["legacy_id"] = raw["pt_no"].astype(str)
    ours = mapped.clinicnote("pt_master").set_index("legacy_id")
    theirs = mapped.simulator("patients").set_index("legacy_id")
    both = raw.set_index("legacy_id").join(ours, rsuffix="_cn").join(theirs, rsuffix="_sim")
    fine = both[both["reason"].isna() & both["reason_sim"].isna()]
    assert len(fine) > 0.8 * len(raw)

    two_names = fine[fine["first_nm"].notna() & fine["first_nm"].str.contains(" ")]
    assert len(two_names) > 0  # a given and a middle name in first_nm
    capitals = fine[fine["last_nm"].str.isupper() & fine["last_nm"].str.len().gt(2)]
    assert len(capitals) > 0  # typed in capitals, proper-cased alike
    for part in ("family_name", "given_name", "middle_name", "name_suffix"):
        assert (fine[part].fillna("") == fine[f"{part}_sim"].fillna("")).all(), part

    own = fine["birth_dt"].str.fullmatch(r"\d{2}\.\d{2}\.\d{4}")
    assert own.all()
    assert (fine["birth_date"] == fine["birth_date_sim"]).all()
    assert (
        pd.to_datetime(fine["birth_dt"], format="%d.%m.%Y").dt.date == fine["birth_date"].astype(object)
    ).all()

    coded = fine[fine["sex_cd"].isin(SEX_CODES.values())]
    assert set(coded["sex_cd"]) >= {"1", "2"}
    assert (coded["sex"] == coded["sex_cd"].map({v: k for k, v in SEX_CODES.items()})).all()
    assert (coded["sex"] == coded["sex_sim"]).all()
    # 1 is female here, where the built-in sex rule (ISO/IEC 5218) would read male
    assert (coded.loc[coded["sex_cd"] == "1", "sex"] == "female").all()


def test_text_ids(layout: Layout, mapped: _Cache) -> None:
    appt = mapped.clinicnote("appt")
    sim = mapped.simulator("appointments")
    ids = set(appt["legacy_id"])
    assert {APPT_KEY % int(i) for i in sim["legacy_id"]} <= ids  # the padded key read trimmed
    assert APPT_KEY % PADDED_APPT in ids
    blank = appt[appt["legacy_id"].str.startswith(KEYLESS_PREFIX)]
    assert len(blank) == BLANK_KEY_ROWS["cn_appt"]
    assert (blank["reason"] == "id_invalid").all()

    visits = mapped.clinicnote("tx_visit").set_index("legacy_id")
    sim_visits = mapped.simulator("visits").set_index("legacy_id").loc[visits.index]
    expected = sim_visits["ref_appointment_id"].map(lambda i: APPT_KEY % int(i), na_action="ignore")
    assert (visits["ref_appointment_id"].fillna("") == expected.fillna("")).all()
    assert visits["ref_appointment_id"].notna().sum() > 0.9 * len(visits)


# --- the library's parameters --------------------------------------------------------------------------
AS_OF = date(2025, 6, 30)


def _run(rule: str, params: dict[str, Any], columns: dict[str, list[Any]]) -> nz.Normalized:
    frame = pd.DataFrame(columns, dtype="string")
    return build(RULES, rule, params).fn(Batch(frame, AS_OF), tuple(columns))


def test_date_formats_keep_the_reasons_and_roles() -> None:
    texts = [
        "07.03.2019",
        "7.3.2019",
        "31.02.2019",
        "07.13.2019",
        "2019-03-07",
        " ",
        "N/A",
        None,
        "01.01.2026",
    ]
    event = _run("date", {"role": "event", "formats": ["%d.%m.%Y"]}, {"d": texts})
    assert _values(event.values)[:2] == [date(2019, 3, 7)] * 2
    assert _values(event.reasons) == [
        None, None, "date_impossible", "date_impossible", "date_unparseable", None, None, None, None,
    ]  # fmt: skip
    birth = _run("date", {"role": "birth", "formats": ["%d.%m.%Y"]}, {"d": texts})
    assert _values(birth.reasons)[-1] == "date_out_of_range"  # born after the as-of date
    service = _run("date", {"role": "service", "formats": ["%d.%m.%Y"]}, {"d": texts})
    assert _values(service.flags)[-1] == "date_future"
    assert _values(service.values)[-1] == date(2026, 1, 1)
    two = _run(
        "date", {"role": "birth", "formats": ["%d.%m.%y", "%d.%m.%Y"]}, {"d": ["07.03.30", "07.03.1930"]}
    )
    assert _values(two.values) == [date(1930, 3, 7)] * 2  # a birth is never in the future
    mon = _run("date", {"formats": ["%d %b %Y"]}, {"d": ["7 Mar 2019", "7 Foo 2019"]})
    assert _values(mon.values)[0] == date(2019, 3, 7)
    assert _values(mon.reasons) == [None, "date_unparseable"]


def test_timestamp_formats() -> None:
    got = _run(
        "timestamp",
        {"formats": ["%d.%m.%Y %H:%M", "%d.%m.%Y %I:%M %p"]},
        {"t": ["07.03.2019 14:05", "07.03.2019  2:05 PM", "07.03.2019 25:00", "2019-03-07 14:05:00"]},
    )
    assert got.values.astype(str).tolist()[:2] == ["2019-03-07 14:05:00"] * 2
    assert _values(got.reasons)[2:] == ["date_impossible", "date_unparseable"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"formats": ["%d.%m.%Q"]}, "unknown directive %Q"),
        ({"formats": ["%d.%m"]}, "needs a day, a month and a year"),
        ({"formats": ["%d.%m.%Y.%d"]}, "repeats"),
        ({"formats": []}, "a list of strptime formats"),
        ({"formats": [7]}, "a list of strptime formats"),
    ],
)
def test_a_bad_format_is_refused_when_the_spec_is_built(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(RULES, "date", params)


def test_names_in_columns_split_as_one_column() -> None:
    family = ["SMITH JR", "o'brien-smith", "Lee", None, "Sm1th", "NA", "\u202eEvil"]
    given = ["JOHN A", "mary", None, "Ann", "Bob", None, "Eve"]
    whole = [
        "SMITH JR, JOHN A",
        "o'brien-smith, mary",
        "Lee,",
        ", Ann",
        "Sm1th, Bob",
        None,
        "\u202eEvil, Eve",
    ]
    for part in ("family", "given", "middle", "suffix"):
        two = _run("name_part", {"part": part, "form": "family_given"}, {"f": family, "g": given})
        one = _run("name_part", {"part": part}, {"n": whole})
        assert _values(two.values) == _values(one.values), part
        assert _values(two.reasons) == _values(one.reasons), part
        assert _values(two.flags) == _values(one.flags), part
    three = _run(
        "name_part",
        {"part": "middle", "form": "family_given_middle"},
        {"f": ["SMITH", "Lee"], "g": ["JOHN", "Ann"], "m": ["a.", None]},
    )
    assert _values(three.values) == ["A", None]
    assert (
        "three columns (family, given, middle)"
        in build(RULES, "name_part", {"part": "given", "form": "family_given_middle"}).title
    )
    with pytest.raises(ValueError, match="reads 2 source column"):
        _run("name_part", {"part": "family", "form": "family_given"}, {"n": whole})
