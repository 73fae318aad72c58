"""A checked profile's mapping section → the mapping engine's specs (:class:`~cutover.mapping.engine.TableSpec`).

Imported on first use of :attr:`cutover.legacy.profile.Profile.specs`: it loads the mapping library
(pandas, Arrow), which reading a profile's tables does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cutover.mapping.engine import Check, Field, Ref, TableSpec
from cutover.mapping.library import CHECKS, EXPLODES, LOAD_CHECKS, RULES, build, parameters
from cutover.target.columns import target_columns

if TYPE_CHECKING:
    from cutover.legacy.profile import Profile


def sources(given: str | list[str]) -> tuple[str, ...]:
    return (given,) if isinstance(given, str) else tuple(given)


def with_key(factory: Any, params: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """A library entry's parameters, the table's key added where the entry takes one and none is given."""
    given = dict(params or {})
    if "key" in parameters(factory) and "key" not in given:
        given["key"] = key
    return given


def build_spec(
    name: str, key: str, mapping: dict[str, Any], *, removed: tuple[str, str] | None = None
) -> TableSpec:
    target = mapping["to"]
    columns = target_columns()[target]
    fields = tuple(
        Field(
            field,
            columns[field].type,
            sources(spec["from"]),
            build(RULES, spec["rule"], spec.get("with")),
            required=bool(spec.get("required", False)),
            invalid=spec.get("invalid", "reject"),
            assumed=bool(spec.get("assumed", False)),
        )
        for field, spec in (mapping.get("fields") or {}).items()
    )
    refs = tuple(
        Ref(
            column,
            spec["from"],
            spec["parent"],
            required=bool(spec.get("required", True)),
            strict=bool(spec.get("strict", False)),
            assumed=bool(spec.get("assumed", False)),
        )
        for column, spec in (mapping.get("refs") or {}).items()
    )
    checks = tuple(
        Check(
            check["code"],
            check["title"],
            build(CHECKS, check["check"], with_key(CHECKS[check["check"]], check.get("with"), key)),
            action=check.get("action", "reject"),
        )
        for check in mapping.get("checks") or ()
    )
    step = mapping.get("explode")
    explode = (
        None
        if not step
        else build(EXPLODES, step["step"], with_key(EXPLODES[step["step"]], step.get("with"), key))
    )
    return TableSpec(
        name,
        target,
        key,
        fields=fields,
        refs=refs,
        checks=checks,
        explode=explode,
        load_flags=tuple(LOAD_CHECKS[flag][1] for flag in mapping.get("load_checks") or ()),
        merges=bool(mapping.get("duplicates")),
        merge_same=_merge_same(mapping.get("duplicates")),
        removed=removed,
        same_patient=tuple(mapping.get("same_patient") or ()),
        doc=str(mapping.get("doc") or ""),
    )


def _merge_same(duplicates: Any) -> tuple[str, ...]:
    """``duplicates: {merge_within: patient_id, same: [...]}`` → (ref column, *compared columns)."""
    if not isinstance(duplicates, dict):
        return ()
    return (f"ref_{duplicates['merge_within']}", *(duplicates.get("same") or ()))


def build_specs(profile: Profile) -> dict[str, TableSpec]:
    """Every mapped legacy table's spec, in the profile's load order."""
    return {
        name: build_spec(
            name,
            table.key,
            profile.document["tables"][name]["map"],
            removed=(table.export_flag.column, table.export_flag.removed) if table.export_flag else None,
        )
        for name, table in profile.tables.items()
        if profile.document["tables"][name].get("map")
    }
