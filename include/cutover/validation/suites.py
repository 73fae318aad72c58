"""GX Core suites generated from the catalog and ``gates.yaml``: one suite per gate and table.

The suites are built in code at run time (so a gate runs exactly what the catalog says) and
written, byte-stable, to the GX project ``expectations/`` for review and audit:
``python -m cutover.validation.suites [ROOT]`` rewrites ``ROOT/expectations/<gate>.<table>.json``
(ROOT defaults to ``./expectations``); a test holds the committed files equal to the generated
ones. Expectation ids are uuid5 of their names, so regenerating changes nothing unless a check did.

Each expectation carries in ``meta`` its dotted name, severity, threshold and Kahn dimension, in
``notes`` why it exists, and GX's own ``severity`` (fatal → critical); map expectations get
``mostly = 1 - threshold``, so GX's verdict in the data docs agrees with the gate's.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

from cutover.validation.catalog import GATES, Check, Gate, catalog
from cutover.validation.config import policy

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("6f1c7a52-3c1e-4b8e-9a57-0c7d7f5e2a10")
GX_SEVERITY = {"fatal": "critical", "warning": "warning"}


def suite_name(gate: Gate, table: str) -> str:
    return f"{gate}.{table}"


def expectation_document(check: Check) -> dict[str, Any]:
    """The GX 1.x JSON form of one check (what ``ExpectationConfiguration.to_json_dict`` writes)."""
    found = policy(check.name)
    kwargs = dict(check.kwargs)
    if found.threshold > 0 and not check.table_level:
        kwargs["mostly"] = round(1.0 - found.threshold, 6)
    type_ = "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in check.expectation).lstrip("_")
    return {
        "type": type_,
        "kwargs": kwargs,
        "meta": {
            "name": check.name,
            "severity": found.severity,
            "threshold": found.threshold,
            "dimension": check.dimension,
            **({"derived_column": check.kwargs["column"]} if check.derived else {}),
        },
        "notes": check.why,
        "id": str(uuid.uuid5(_NAMESPACE, check.name)),
        "severity": GX_SEVERITY[found.severity],
    }


def suite_document(gate: Gate, table: str) -> dict[str, Any]:
    name = suite_name(gate, table)
    return {
        "name": name,
        "id": str(uuid.uuid5(_NAMESPACE, name)),
        "expectations": [expectation_document(c) for c in catalog().by_gate[gate][table]],
        "meta": {"generated_by": "cutover.validation.suites", "gate": gate, "table": table},
        "notes": None,
    }


def suite_documents() -> dict[str, str]:
    """Every suite as its committed file: relative path → JSON text."""
    return {
        f"expectations/{suite_name(gate, table)}.json": json.dumps(
            suite_document(gate, table), indent=2, sort_keys=True
        )
        + "\n"
        for gate in GATES
        for table in catalog().by_gate[gate]
    }


def build_suite(gate: Gate, table: str) -> Any:
    """The GX ``ExpectationSuite`` of one gate and table (not yet added to a context)."""
    import great_expectations as gx

    document = suite_document(gate, table)
    return gx.ExpectationSuite(
        name=document["name"],
        expectations=[_expectation(e) for e in document["expectations"]],
        meta=document["meta"],
    )


def _expectation(document: dict[str, Any]) -> Any:
    import great_expectations.expectations as gxe

    cls = getattr(gxe, "".join(part.title() for part in document["type"].split("_")))
    return cls(
        **document["kwargs"], meta=document["meta"], notes=document["notes"], severity=document["severity"]
    )


def write_suites(root: Path) -> list[Path]:
    """Write every suite under ``root`` (the GX project folder); remove suites no longer generated."""
    written = []
    for relative, text in suite_documents().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    for stale in set((root / "expectations").glob("*.json")) - set(written):
        stale.unlink()
    return written


def count_expectations() -> dict[str, int]:
    """Expectations per gate."""
    return {gate: sum(len(cs) for cs in catalog().by_gate[gate].values()) for gate in GATES}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path("expectations")
    paths = write_suites(root)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("wrote %d suites under %s: %s", len(paths), root, count_expectations())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
