"""The first load's reference resolution in Arrow decides as the general merge's SQL does."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

from cutover.loading.direct import Parent, _resolve, _uuids
from cutover.mapping.engine import Ref

A, B = uuid.uuid4(), uuid.uuid4()
PARENT = Parent(
    keys=pa.array(["1", "2"]),
    ids=_uuids(pa.array([A.hex, B.hex])),
    rejected=pa.array(["3"]),
)
# a parent that migrated, one that merged (its survivor's id), one rejected, one unknown, none given
SRC = pa.array(["1", "2", "3", "4", None])


def test_hex_ids_become_the_uuids_bytes() -> None:
    assert _uuids(pa.array([A.hex])).to_pylist() == [A.bytes]
    with pytest.raises(ValueError, match="not hex"):
        _uuids(pa.array(["z" * 32]))


@pytest.mark.parametrize(
    ("ref", "reasons", "flags"),
    [
        (Ref("p", "p", "ps"), [None, None, "parent_rejected", "orphan", "ref_missing"], [None] * 5),
        (
            Ref("p", "p", "ps", required=False, strict=True),
            [None, None, "parent_rejected", "orphan", None],
            [None] * 5,
        ),
        (
            Ref("p", "p", "ps", required=False),
            [None] * 5,
            [None, None, "p_unresolved", "p_unresolved", None],
        ),
    ],
    ids=["required", "strict", "loose"],
)
def test_each_kind_of_reference(ref: Ref, reasons: list, flags: list) -> None:
    ids, reason, flag = _resolve(ref, SRC, PARENT)
    assert ids.to_pylist() == [A.bytes, B.bytes, None, None, None]
    assert reason.to_pylist() == reasons
    assert flag.to_pylist() == flags
