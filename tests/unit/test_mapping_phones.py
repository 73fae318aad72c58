"""Phone numbers read over the whole array give what ``phonenumbers`` gives one number at a time."""

from __future__ import annotations

import random

import pandas as pd
import phonenumbers
import pytest

from cutover.mapping.normalize import phone_e164

FORMS = (
    "{a}-{x}-{y}",
    "({a}) {x}-{y}",
    "({a}){x}-{y}",
    "{a}.{x}.{y}",
    "{a}{x}{y}",
    "{a} {x} {y}",
    "+1 {a} {x} {y}",
    "+1{a}{x}{y}",
    "+1 ({a}) {x}-{y}",
    "1-{a}-{x}-{y}",
    "1{a}{x}{y}",
    "{a}-{x}-{y} x12",
    "{a}-{x}-{y} ext. 7",
    "{a}-{x}",
    "0{a}{x}{y}",
)


def _one_by_one(text: str) -> tuple[str | None, str | None, str | None]:
    try:
        number = phonenumbers.parse(text, "US")
        ok = phonenumbers.is_valid_number(number)
    except phonenumbers.NumberParseException:
        ok = False
    if not ok:
        return None, "phone_invalid", None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, None, "phone_extension_dropped" if number.extension else None


def _texts(seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = set()
    for area in range(200, 1000):  # every area code: US, Canada, the Caribbean, toll-free, 9xx
        exchange = rng.choice(("234", "555", "100", "911", "721", f"{rng.randint(0, 999):03d}"))
        texts.add(rng.choice(FORMS).format(a=area, x=exchange, y=f"{rng.randint(0, 9999):04d}"))
    for _ in range(1_500):
        area = f"{rng.randint(0, 999):03d}"
        texts.add(
            rng.choice(FORMS).format(a=area, x=f"{rng.randint(0, 999):03d}", y=f"{rng.randint(0, 9999):04d}")
        )
    return sorted(texts)


@pytest.mark.parametrize("seed", [11, 12])
def test_phone_e164_agrees_with_phonenumbers_number_by_number(seed: int) -> None:
    texts = _texts(seed)
    got = phone_e164(pd.Series(texts))
    rows = zip(got.values.tolist(), got.reasons.tolist(), got.flags.tolist(), strict=True)
    result = [tuple(None if v is pd.NA else v for v in row) for row in rows]
    expected = [_one_by_one(text) for text in texts]
    assert sum(e[0] is not None for e in expected) > len(texts) // 4  # valid numbers, not only rejects
    assert result == expected
