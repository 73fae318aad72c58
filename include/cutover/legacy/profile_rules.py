"""What a profile names must exist and hold together: the checks after the schema.

The schema (:mod:`cutover.legacy.profile_check`) says a profile is well formed; these rules say
whether the columns, tables, library entries and target fields it names exist, and whether the
whole holds together (keys, parents without cycles, one patient table). Each rule is one function
yielding :class:`Problem`\\ s; :data:`TABLE_RULES`, :data:`MAP_RULES` and :data:`PROFILE_RULES` compose
them as data. A rule runs only on tables the schema passed; where it cannot decide, it reports.

Building the library entries imports the mapping library (pandas, Arrow): every rule, check and
explode step is built with its parameters, so a bad ``with:`` is found here and not in a task.

>>> closest("dat", ["date", "text", "timestamp"])
('date',)
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process, utils

from cutover.legacy.profile_build import with_key
from cutover.mapping.library import CHECKS, EXPLODES, LOAD_CHECKS, RULES, build
from cutover.mapping.rules import FORM_COLUMNS
from cutover.target.columns import TargetColumn, target_columns

PATIENT = "patient"
"""The target table of the patient: exactly one legacy table maps to it."""
EXPLODE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "cpt_lines": ("seq", "cpt_code", "units", "minutes", "modifiers")
}
"""The columns an explode step adds (a field with rule ``same`` may read them)."""
EXPLODE_COLUMNS: dict[str, tuple[str, ...]] = {"cpt_lines": ("text", "minutes", "units", "modifiers")}
"""An explode step's parameters that name legacy columns."""
CHECK_COLUMNS: dict[str, dict[str, str]] = {
    "before": {"later": "field", "earlier": "field"},
    "exceeds": {"value": "field", "limit": "field"},
    "missing": {"column": "any"},
    "entered_twice": {"within": "any", "columns": "any"},
    "lines_entered_twice": {"within": "any"},
}
"""A row check's parameters that name what it reads: ``field`` a mapped target field, ``any`` also a
legacy column (the check sees the legacy row and the mapped fields)."""

Path = tuple[Any, ...]
Spec = dict[str, Any]


@dataclass(frozen=True)
class Problem:
    """What is wrong (``message``) where (``path`` in the document), with the closest valid names."""

    path: Path
    message: str
    hints: tuple[str, ...] = ()


def closest(name: object, choices: Iterable[str]) -> tuple[str, ...]:
    """The valid names closest to ``name``: at most three, scoring 75 of 100 or more (rapidfuzz's WRatio)
    and within 10 of the best; none when nothing is close."""
    if not isinstance(name, str) or not name:
        return ()
    found = process.extract(
        name,
        list(dict.fromkeys(choices)),
        scorer=fuzz.WRatio,
        processor=utils.default_process,
        limit=3,
        score_cutoff=75,
    )
    best = found[0][1] if found else 0
    return tuple(choice for choice, score, _ in found if score >= best - 10)  # the close ones only


def unknown(path: Path, what: str, name: object, choices: Iterable[str], of: str = "") -> Problem:
    """``unknown rule 'dat'``, with the closest of ``choices``; ``of``: whose (``of visit``)."""
    return Problem(path, f"unknown {what} {name!r}{f' of {of}' if of else ''}", closest(name, choices))


def kind(value: object) -> str:
    """What YAML made of a value, in words."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dt.date):
        return "a date"
    if value is None:
        return "nothing (null)"
    words: dict[type, str] = {str: "text", list: "a list", dict: "a mapping"}
    return words.get(type(value), type(value).__name__)


def not_text(value: object) -> str:
    if isinstance(value, bool | int | float | dt.date) or value is None:
        return f"read by YAML as {kind(value)}, not text: quote it"
    return f"expected text, got {kind(value)}"


def _dict(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class Context:
    """The profile being checked: every table, those the schema passed, the target."""

    tables: dict[str, dict[str, Any]]
    clean: list[str]
    targets: dict[str, dict[str, TargetColumn]] = field(default_factory=target_columns)
    source_format: str = "database"

    def columns(self, table: str) -> dict[str, Any]:
        return _dict(_dict(self.tables.get(table)).get("columns"))

    def map(self, table: str) -> dict[str, Any]:
        return _dict(_dict(self.tables.get(table)).get("map"))


def _outputs(mapping: Spec) -> tuple[str, ...] | None:
    """The columns the map's explode step adds; None when its step is unknown (reported on the step)."""
    step = (mapping.get("explode") or {}).get("step")
    if step is None:
        return ()
    return EXPLODE_OUTPUTS.get(step, ()) if step in EXPLODES else None


def _column(
    ctx: Context, table: str, path: Path, column: object, extra: Iterable[str] | None = ()
) -> Iterator[Problem]:
    """``column`` is one of the table's (or of ``extra``; None: anything may be, it cannot be told)."""
    known = [*ctx.columns(table), *(extra or ())]
    if extra is not None and column not in known:
        yield unknown(path, "column", column, known)


def _table(ctx: Context, path: Path, name: object) -> Iterator[Problem]:
    if name not in ctx.tables:
        yield unknown(path, "table", name, ctx.tables)


# --- a table's own columns ------------------------------------------------------------------------------
def key_column(ctx: Context, name: str, spec: Spec) -> Iterator[Problem]:
    path = ("tables", name, "key")
    yield from _column(ctx, name, path, spec["key"])
    if ctx.columns(name).get(spec["key"]) == "blob":
        yield Problem(path, f"the key column {spec['key']} is a blob: a key is an int or text column")


def named_columns(ctx: Context, name: str, spec: Spec) -> Iterator[Problem]:
    """``patient``, ``changes`` and ``not_carried`` name the table's columns."""
    at = ("tables", name)
    if "patient" in spec:
        yield from _column(ctx, name, (*at, "patient"), spec["patient"])
    changes = spec.get("changes") or {}
    if "modified" in changes:
        yield from _column(ctx, name, (*at, "changes", "modified"), changes["modified"])
    if "export_flag" in changes:
        flag = changes["export_flag"]
        yield from _column(ctx, name, (*at, "changes", "export_flag", "column"), flag["column"])
    for column in (spec.get("map") or {}).get("not_carried") or {}:
        yield from _column(ctx, name, (*at, "map", "not_carried", column), column)


def parents(ctx: Context, name: str, spec: Spec) -> Iterator[Problem]:
    for column, parent in (spec.get("parents") or {}).items():
        path = ("tables", name, "parents", column)
        yield from _column(ctx, name, path, column)
        yield from _table(ctx, path, parent)


def csv_file(ctx: Context, name: str, spec: Spec) -> Iterator[Problem]:
    """A table's ``csv`` options belong to a CSV delivery, and its aliases name its own columns, each
    header name meaning one column only."""
    at = ("tables", name, "csv")
    options = _dict(spec.get("csv"))
    if options and ctx.source_format != "csv":
        yield Problem(at, "csv options in a profile whose source format is not csv")
    taken: dict[str, str] = {}
    for column, names in _dict(options.get("aliases")).items():
        yield from _column(ctx, name, (*at, "aliases", column), column)
        for alias in names if isinstance(names, list) else []:
            if alias in ctx.columns(name) or taken.setdefault(alias, column) != column:
                yield Problem(
                    (*at, "aliases", column), f"the header name {alias} already means another column"
                )


TableRule = Callable[[Context, str, Spec], Iterable[Problem]]
"""A rule of one table (or of its map): the context, the table's name, its spec (or its map)."""
TABLE_RULES: tuple[TableRule, ...] = (key_column, named_columns, parents, csv_file)


# --- its mapping ----------------------------------------------------------------------------------------
def _typed(value: object, hint: Any, path: Path) -> Iterator[Problem]:
    """``value`` against a library parameter's annotation (text, booleans, choices, lists, tables)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            shown = ", ".join(map(str, args))
            yield Problem(path, f"{value!r} is not one of {shown}", closest(value, map(str, args)))
    elif hint is str:
        if not isinstance(value, str):
            yield Problem(path, not_text(value))
    elif hint is bool:
        if not isinstance(value, bool):
            yield Problem(path, f"expected true or false, got {kind(value)}")
    elif origin is list:
        if not isinstance(value, list):
            yield Problem(path, f"expected a list, got {kind(value)}")
        else:
            for i, item in enumerate(value):
                yield from _typed(item, args[0], (*path, i))
    elif origin in (dict, Mapping):
        if not isinstance(value, dict):
            yield Problem(path, f"expected a mapping, got {kind(value)}")
        else:
            for key, item in value.items():
                yield from _typed(key, args[0], (*path, key))
                yield from _typed(item, args[1], (*path, key))


def _built(
    library: Mapping[str, Callable[..., Any]], name: str, params: dict[str, Any], path: Path
) -> Iterator[Problem]:
    """The entry built with ``params``: what its parameters' types or the entry itself refuse."""
    try:
        hints = typing.get_type_hints(library[name])
    except Exception:  # an annotation not resolvable here: the build below still decides
        hints = {}
    given = [(value, hints[param], (*path, param)) for param, value in params.items() if param in hints]
    typed = [p for value, hint, at in given for p in _typed(value, hint, at)]
    if typed:
        yield from typed
        return
    try:
        build(library, name, params)
    except ValueError as exc:
        yield Problem(path, str(exc))
    except Exception as exc:  # an entry that refuses its parameters other than with a ValueError
        yield Problem(path, f"{name}: these parameters do not build ({type(exc).__name__}: {exc})")


def target(ctx: Context, name: str, mapping: Spec) -> Iterator[Problem]:
    if mapping["to"] not in ctx.targets:
        yield unknown(("tables", name, "map", "to"), "target table", mapping["to"], ctx.targets)


def fields(ctx: Context, name: str, mapping: Spec) -> Iterator[Problem]:
    at = ("tables", name, "map", "fields")
    columns = ctx.targets.get(mapping["to"])
    outputs = _outputs(mapping)
    for field_name, spec in (mapping.get("fields") or {}).items():
        path = (*at, field_name)
        if columns is not None:
            if field_name == "id":
                yield Problem(path, "id is never mapped: the target assigns it")
            elif field_name not in columns:
                fillable = [c for c, col in columns.items() if c != "id" and col.references is None]
                yield unknown(path, "target field", field_name, fillable, of=mapping["to"])
            elif columns[field_name].references is not None:
                referenced = columns[field_name].references
                yield Problem(path, f"{field_name} references {referenced}: map it under refs")
        sources = [spec["from"]] if isinstance(spec["from"], str) else spec["from"]
        extra = outputs if spec["rule"] == "same" else ()
        for i, source in enumerate(sources):
            at_from = (*path, "from") if isinstance(spec["from"], str) else (*path, "from", i)
            yield from _column(ctx, name, at_from, source, extra)
        if spec["rule"] not in RULES:
            yield unknown((*path, "rule"), "rule", spec["rule"], RULES)
        else:
            yield from _built(RULES, spec["rule"], dict(spec.get("with") or {}), (*path, "with"))
            yield from _name_columns(path, spec, sources)


def _name_columns(path: Path, spec: Spec, sources: list[Any]) -> Iterator[Problem]:
    """A name_part reads as many columns as its ``form`` says (else the mapping fails on the first batch)."""
    form = dict(spec.get("with") or {}).get("form", "one_column")
    wanted = FORM_COLUMNS.get(form) if spec["rule"] == "name_part" else None
    if wanted is not None and len(sources) != wanted:
        yield Problem(
            (*path, "from"), f"name_part with form {form} reads {wanted} column(s), not {len(sources)}"
        )


def refs(ctx: Context, name: str, mapping: Spec) -> Iterator[Problem]:
    columns = ctx.targets.get(mapping["to"])
    for column, spec in (mapping.get("refs") or {}).items():
        path = ("tables", name, "map", "refs", column)
        yield from _column(ctx, name, (*path, "from"), spec["from"])
        yield from _table(ctx, (*path, "parent"), spec["parent"])
        if columns is None:
            continue
        if column not in columns or column == "id":
            references = [c for c, col in columns.items() if col.references is not None]
            yield unknown(path, "reference", column, references, of=mapping["to"])
            continue
        referenced = columns[column].references
        if referenced is None:
            yield Problem(path, f"{mapping['to']}.{column} references no table: map it under fields")
        elif spec["parent"] in ctx.clean:
            parent_to = ctx.map(spec["parent"]).get("to")
            if parent_to != referenced and (parent_to is None or parent_to in ctx.targets):
                mapped = f"maps to {parent_to}" if parent_to else "is not mapped"
                yield Problem(
                    (*path, "parent"),
                    f"legacy table {spec['parent']} {mapped}, but {mapping['to']}.{column} references {referenced}",
                )


def required_fields(ctx: Context, name: str, mapping: Spec) -> Iterator[Problem]:
    """Every NOT NULL target field (but ``id``) is a field or a ref of the map."""
    columns = ctx.targets.get(mapping["to"])
    mapped = {*(mapping.get("fields") or {}), *(mapping.get("refs") or {})}
    for column, spec in (columns or {}).items():
        if spec.required and column != "id" and column not in mapped:
            section = "fields" if spec.references is None else "refs"
            yield Problem(
                ("tables", name, "map", section),
                f"required target field {mapping['to']}.{column} (NOT NULL) is not mapped: add it to {section}",
            )


def checks(ctx: Context, name: str, mapping: Spec) -> Iterator[Problem]:
    mapped = list(mapping.get("fields") or {})
    outputs = _outputs(mapping)
    readable = [*ctx.columns(name), *mapped, *(outputs or ())]
    key = str(ctx.tables[name]["key"])
    for i, check in enumerate(mapping.get("checks") or ()):
        path = ("tables", name, "map", "checks", i)
        if check["check"] not in CHECKS:
            yield unknown((*path, "check"), "check", check["check"], CHECKS)
            continue
        params = with_key(CHECKS[check["check"]], check.get("with"), key)
        built = list(_built(CHECKS, check["check"], params, (*path, "with")))
        yield from built
        if built:
            continue
        for param, role in CHECK_COLUMNS.get(check["check"], {}).items():
            named = params.get(param)
            for j, column in enumerate([named] if isinstance(named, str) else named or ()):
                at = (*path, "with", param) if isinstance(named, str) else (*path, "with", param, j)
                if role == "field" and column not in mapped:
                    yield unknown(at, "mapped field", column, mapped)
                elif role == "any" and column not in readable and outputs is not None:
                    yield unknown(at, "field or column", column, readable)


def explode(ctx: Context, name: str, mapping: Spec) -> Iterator[Problem]:
    if "explode" not in mapping:
        return
    path = ("tables", name, "map", "explode")
    step = mapping["explode"]["step"]
    if step not in EXPLODES:
        yield unknown((*path, "step"), "explode step", step, EXPLODES)
        return
    params = with_key(EXPLODES[step], mapping["explode"].get("with"), str(ctx.tables[name]["key"]))
    built = list(_built(EXPLODES, step, params, (*path, "with")))
    yield from built
    if not built:
        for param in EXPLODE_COLUMNS.get(step, ()):
            yield from _column(ctx, name, (*path, "with", param), params[param])


def listed(ctx: Context, name: str, mapping: Spec) -> Iterator[Problem]:
    """``same_patient`` names refs of the map; ``load_checks`` apply to its target table."""
    at = ("tables", name, "map")
    for i, ref in enumerate(mapping.get("same_patient") or ()):
        if ref not in (mapping.get("refs") or {}):
            yield unknown((*at, "same_patient", i), "ref", ref, mapping.get("refs") or {})
    for i, flag in enumerate(mapping.get("load_checks") or ()):
        if flag not in LOAD_CHECKS:
            yield unknown((*at, "load_checks", i), "load check", flag, LOAD_CHECKS)
        elif LOAD_CHECKS[flag][0] != mapping["to"]:
            applies = LOAD_CHECKS[flag][0]
            if mapping["to"] in ctx.targets:  # else the unknown target is the problem
                yield Problem(
                    (*at, "load_checks", i), f"{flag} applies to target table {applies}, not {mapping['to']}"
                )


NEVER_REJECTING = frozenset(
    {
        "text",
        "upper",
        "lower",
        "flag_yn",
        "same",
        "allergen",
        "precaution_kind",
        "uncoded_text",
        "record_sources",
    }
)
"""Rules that never give a reason: a value they read is taken, or NULL, or flagged."""


def safety(ctx: Context, name: str, mapping: Spec) -> Iterator[Problem]:
    """A patient-safety record (allergy, medication, precaution) is never rejected on its own: no field
    required or rejecting, no rejecting check, every reference but the patient's optional and loose
    (an unresolved episode or note is NULL and flagged); only its patient's reject keeps it out."""
    from cutover.target import SAFETY_TABLES

    if mapping.get("to") not in SAFETY_TABLES:
        return
    at = ("tables", name, "map")
    why = "a patient-safety record is never rejected on its own"
    for field_name, spec in _dict(mapping.get("fields")).items():
        spec = _dict(spec)
        if spec.get("required"):
            yield Problem((*at, "fields", field_name, "required"), f"{why}: drop required (a NULL is kept)")
        elif spec.get("rule") not in NEVER_REJECTING and spec.get("invalid") != "flag":
            yield Problem(
                (*at, "fields", field_name),
                f"{why}: rule {spec.get('rule')} may reject a value; add invalid: flag (NULL, the row flagged)",
            )
    for i, check in enumerate(mapping.get("checks") or ()):
        if _dict(check).get("action", "reject") != "flag":
            yield Problem((*at, "checks", i, "action"), f"{why}: a check may only flag (action: flag)")
    for column, ref in _dict(mapping.get("refs")).items():
        ref = _dict(ref)
        if column == "patient_id":
            continue
        if ref.get("required", True) or ref.get("strict"):
            yield Problem(
                (*at, "refs", column),
                f"{why}: only patient_id may be required; make it required: false (not strict)",
            )
    if "patient_id" not in _dict(mapping.get("refs")):
        yield Problem((*at, "refs"), "a patient-safety record belongs to a patient: add a patient_id ref")


def duplicates(ctx: Context, name: str, mapping: Spec) -> Iterator[Problem]:
    """A record table's merge names one of its refs and fields of its map, and keeps its sources."""
    spec = mapping.get("duplicates")
    if not isinstance(spec, dict):
        return
    at = ("tables", name, "map", "duplicates")
    refs_of = _dict(mapping.get("refs"))
    fields_of = _dict(mapping.get("fields"))
    if spec["merge_within"] not in refs_of:
        yield unknown((*at, "merge_within"), "ref", spec["merge_within"], refs_of)
    for i, column in enumerate(spec["same"]):
        if column not in fields_of:
            yield unknown((*at, "same", i), "mapped field", column, fields_of)
    if _dict(fields_of.get("source_records")).get("rule") != "record_sources":
        yield Problem(
            (*at,),
            "a merged record keeps its sources: map source_records with rule record_sources",
        )


MAP_RULES: tuple[TableRule, ...] = (
    target,
    fields,
    refs,
    required_fields,
    checks,
    explode,
    listed,
    safety,
    duplicates,
)


# --- the profile as a whole -----------------------------------------------------------------------------
def cycles(ctx: Context) -> Iterator[Problem]:
    """No table is its own ancestor (a table naming itself, a hierarchy within one table, is allowed)."""
    edges = {
        t: [(c, p) for c, p in _dict(spec.get("parents")).items() if p in ctx.tables and p != t]
        for t, spec in ctx.tables.items()
        if isinstance(spec, dict)
    }
    found: set[tuple[str, ...]] = set()
    done: set[str] = set()

    def visit(table: str, trail: list[tuple[str, Any]]) -> Iterator[Problem]:
        names = [t for t, _ in trail]
        if table in names:
            loop = trail[names.index(table) :]
            first = min(range(len(loop)), key=lambda i: str(loop[i][0]))
            loop = loop[first:] + loop[:first]  # one report per cycle, from its first name
            if tuple(t for t, _ in loop) not in found:
                found.add(tuple(t for t, _ in loop))
                shown = " → ".join([*(t for t, _ in loop), loop[0][0]])
                yield Problem(
                    ("tables", loop[0][0], "parents", loop[0][1]), f"parent relations form a cycle: {shown}"
                )
            return
        if table in done:
            return
        for column, parent in edges.get(table, ()):
            yield from visit(parent, [*trail, (table, column)])
        done.add(table)

    for table in ctx.tables:
        yield from visit(table, [])


def one_table_per_target(ctx: Context) -> Iterator[Problem]:
    first: dict[str, str] = {}
    for name in ctx.clean:
        to = ctx.map(name).get("to")
        if to in first:
            yield Problem(
                ("tables", name, "map", "to"),
                f"target table {to} is already mapped from legacy table {first[to]} (one legacy table per target table)",
            )
        elif to:
            first[to] = name


def _owned(ctx: Context, name: str, home: str) -> Iterator[Problem]:
    """A table without ``patient`` whose rows must point into the patients' records (a required ref
    into the patient table or a table with a patient column) would be taken for reference data."""
    for column, ref in _dict(ctx.map(name).get("refs")).items():
        parent = str(_dict(ref).get("parent"))
        if _dict(ref).get("required", True) and (
            parent == home or "patient" in _dict(ctx.tables.get(parent))
        ):
            yield Problem(
                ("tables", name),
                f"its rows belong to a patient (required ref {column} into {parent}) but it names no "
                f"patient column: add patient: {ref.get('from')} (a parents column)",
            )
            return


def patient(ctx: Context) -> Iterator[Problem]:
    """One table maps to the patient; every ``patient`` column leads to it; only it merges duplicates."""
    chosen = [t for t in ctx.clean if ctx.map(t).get("to") == PATIENT]
    if not chosen:
        if len(ctx.clean) == len(ctx.tables):  # else an unchecked table may be the one: reported already
            yield Problem(
                ("tables",), f"no legacy table maps to the target table {PATIENT} (exactly one must)"
            )
        return
    home = chosen[0]
    for name in ctx.clean:
        spec = ctx.tables[name]
        if ctx.map(name).get("duplicates") == "merge" and name != home:
            yield Problem(
                ("tables", name, "map", "duplicates"),
                f"merge is only for the table mapped to {PATIENT} ({home})",
            )
        if "patient" not in spec and name != home:
            yield from _owned(ctx, name, home)
        if "patient" not in spec or spec["patient"] not in ctx.columns(name):
            continue
        column, path = spec["patient"], ("tables", name, "patient")
        parent = _dict(spec.get("parents")).get(column)
        if name == home:
            if column != spec["key"] and spec["key"] in ctx.columns(name):
                yield Problem(
                    path, f"the patient table's patient column is its key {spec['key']}, not {column}"
                )
        elif parent is None:
            yield Problem(path, f"{column} is not a parents column: it must lead through parents to {home}")
        elif parent in ctx.tables and parent != home and "patient" not in _dict(ctx.tables[parent]):
            yield Problem(
                path, f"{column} leads to {parent}, which has no patient column (it must lead to {home})"
            )


PROFILE_RULES: tuple[Callable[[Context], Iterable[Problem]], ...] = (cycles, one_table_per_target, patient)


def semantic_problems(data: dict[str, Any], broken: Iterable[Path]) -> list[Problem]:
    """Every problem of a profile ``data`` past its schema; ``broken``: where the schema failed."""
    tables = data.get("tables")
    broken = list(broken)
    if not isinstance(tables, dict) or any(p[:1] == ("tables",) and len(p) < 2 for p in broken):
        return []
    failed = {p[1] for p in broken if p[:1] == ("tables",)}
    ctx = Context(tables, [t for t in tables if t not in failed])
    ctx.source_format = str(_dict(data.get("source")).get("format") or "database")
    problems: list[Problem] = []
    for name in ctx.clean:
        spec = tables[name]
        try:
            for table_rule in TABLE_RULES:
                problems += table_rule(ctx, name, spec)
            if "map" in spec:
                for map_rule in MAP_RULES:
                    problems += map_rule(ctx, name, spec["map"])
        except Exception as exc:  # a rule that cannot decide says so rather than letting it pass
            problems.append(Problem(("tables", name), f"could not be checked ({type(exc).__name__}: {exc})"))
    for profile_rule in PROFILE_RULES:
        try:
            problems += profile_rule(ctx)
        except Exception as exc:
            problems.append(Problem(("tables",), f"could not be checked ({type(exc).__name__}: {exc})"))
    return problems
