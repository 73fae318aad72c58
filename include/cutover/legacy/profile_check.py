"""Check a legacy profile before anything runs: its JSON Schema, then what it names.

Every problem is one line naming the file, the line, the field and what is wrong, with the closest
valid names where a name is unknown::

    profiles/acme.yaml:42: tables.patients.map.fields.birth_date.rule: unknown rule 'dat' (did you mean: date?)

First the schema (``profile.schema.json``, JSON Schema draft 2020-12, shipped beside this module)
says whether the profile is well formed; then :mod:`cutover.legacy.profile_rules` checks the parts
the schema passed: columns, tables, the mapping library, the target's tables and fields, keys,
parents and the patient. A value still reading ``TODO`` (a draft a person has not finished) is
refused wherever it is. Messages name fields and names, never a legacy value.

>>> from cutover.legacy.profile import load_document
>>> check(load_document("simulator"))
[]
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from jsonschema import ValidationError

    from cutover.legacy.profile import Document
    from cutover.legacy.profile_rules import Problem

SCHEMA = Path(__file__).resolve().parent / "profile.schema.json"
"""The profile format as JSON Schema (draft 2020-12)."""
TODO = "TODO"
"""What a drafted profile leaves where a person must decide."""

PathT = tuple[Any, ...]


@functools.cache
def schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA.read_text(encoding="utf-8")))


def _raw_key(doc: Document, path: PathT, key: object) -> str:
    """How ``key`` (not text once YAML read it) was written, from the document's locations."""
    for written in doc.locations:
        if len(written) == len(path) + 1 and written[:-1] == path and isinstance(written[-1], str):
            try:
                read = yaml.safe_load(written[-1])
            except yaml.YAMLError:
                continue
            if read == key and type(read) is type(key):
                return written[-1]
    return str(key)


def _plain(doc: Document, value: Any, path: PathT, problems: list[Problem]) -> Any:
    """``value`` with every mapping key text: a key YAML read as a boolean, number or date is reported
    (``yes:``, ``1:``) and left out."""
    from cutover.legacy.profile_rules import Problem, kind

    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if isinstance(key, str):
                kept[key] = _plain(doc, item, (*path, key), problems)
            else:
                raw = _raw_key(doc, path, key)
                problems.append(Problem((*path, raw), f"key read by YAML as {kind(key)}, not text: quote it"))
        return kept
    if isinstance(value, list):
        return [_plain(doc, item, (*path, i), problems) for i, item in enumerate(value)]
    return value


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """A ``{"$ref": "#/$defs/name"}`` node → the node it names."""
    ref = node.get("$ref", "")
    return dict(schema()["$defs"][ref.rsplit("/", 1)[-1]]) if ref.startswith("#/$defs/") else node


def _expected(node: dict[str, Any]) -> str:
    """A schema node in words: ``text``, ``a mapping``, ``one of reject, flag``…"""
    node = _resolve(node)
    words = {"string": "text", "object": "a mapping", "array": "a list", "boolean": "true or false"}
    if "enum" in node:
        return "one of " + ", ".join(map(str, node["enum"]))
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(_expected(n) for n in node.get("oneOf", node.get("anyOf", [])))
    kinds = node.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    shown = " or ".join(words.get(k, f"a {k}" if k != "integer" else "a number") for k in kinds)
    return f"{shown} of {_expected(node['items'])}" if "items" in node and shown == "a list" else shown or "?"


def _schema_problem(error: ValidationError) -> Iterator[Problem]:
    from cutover.legacy.profile_rules import Problem, closest, kind, not_text

    path = tuple(error.absolute_path)
    instance, node, validator = error.instance, error.schema, error.validator
    if validator == "additionalProperties" and isinstance(instance, dict):
        known = list(node.get("properties", {}))
        for extra in instance:
            if extra not in known:
                yield Problem((*path, extra), "unknown field", closest(extra, known))
    elif validator == "required" and isinstance(instance, dict):
        for name in error.validator_value:
            if name not in instance:
                yield Problem((*path, name), "missing (required)")
    elif validator == "type":
        expected = _expected(node)
        if expected == "text" and not isinstance(instance, dict | list):
            yield Problem(path, not_text(instance))
        else:
            yield Problem(path, f"expected {expected}, got {kind(instance)}")
    elif validator == "enum":
        shown = ", ".join(map(str, error.validator_value))
        yield Problem(
            path, f"{instance!r} is not one of {shown}", closest(instance, map(str, error.validator_value))
        )
    elif validator in ("oneOf", "anyOf"):
        # the alternative of the value's own type says what is wrong inside it (an empty list)
        inside = [
            e for e in error.context or () if not (e.validator == "type" and tuple(e.absolute_path) == path)
        ]
        if inside:
            yield from _schema_problem(inside[0])
        else:
            yield Problem(path, f"expected {_expected(node)}, got {kind(instance)}")
    elif validator in ("minProperties", "minItems", "minLength"):
        yield Problem(path, "empty: give at least one" if validator != "minLength" else "empty")
    elif validator == "uniqueItems":
        yield Problem(path, "lists an entry twice")
    else:
        yield Problem(path, error.message)


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def _schema_problems(data: dict[str, Any]) -> list[Problem]:
    problems = [p for error in _validator().iter_errors(data) for p in _schema_problem(error)]
    # a misspelt key is one problem: not also the required key it was meant to be
    misspelt = {(p.path[:-1], p.hints[0]) for p in problems if p.message == "unknown field" and p.hints}
    return [
        p
        for p in problems
        if not (p.message == "missing (required)" and (p.path[:-1], p.path[-1]) in misspelt)
    ]


def _todos(value: Any, path: PathT) -> Iterator[PathT]:
    """Where a key or a text value still holds ``TODO``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if TODO in key:
                yield (*path, key)
            yield from _todos(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _todos(item, (*path, i))
    elif isinstance(value, str) and TODO in value:
        yield path


def _line(doc: Document, problem: Problem) -> str:
    dotted = ".".join(map(str, problem.path)) or "profile"
    hint = f" (did you mean: {', '.join(problem.hints)}?)" if problem.hints else ""
    return f"{doc.where(problem.path)}: {dotted}: {problem.message}{hint}"


def _place(doc: Document, problem: Problem) -> tuple[str, int]:
    file, _, line = doc.where(problem.path).rpartition(":")
    return file, int(line) if line.isdigit() else 0


def check(doc: Document) -> list[str]:
    """Every problem of ``doc``, one line each (``file:line: field: message``); empty when it holds."""
    from cutover.legacy.profile_rules import Problem, semantic_problems

    problems: list[Problem] = []
    data = _plain(doc, doc.data, (), problems)
    problems += _schema_problems(data)
    problems += semantic_problems(data, [p.path for p in problems])
    todos = list(_todos(data, ()))
    # a TODO is the one problem of what it stands in for (not also an unknown rule 'TODO')
    problems = [p for p in problems if not any(p.path[: len(t)] == t for t in todos)]
    problems += [Problem(t, "still holds a TODO: finish the draft") for t in todos]
    lines = {_line(doc, p): _place(doc, p) for p in problems}
    return sorted(lines, key=lambda line: lines[line])


def check_ref(ref: str) -> tuple[list[str], str]:
    """(problems, one-line summary) of the profile ``ref`` names (a built-in name or a path)."""
    from cutover.legacy.profile import ProfileError, from_document, load_document

    try:
        doc = load_document(ref)
    except ProfileError as exc:
        return exc.problems, ""
    except OSError as exc:  # there, but not readable (permissions, a broken link)
        return [f"{ref}: cannot be read ({exc.strerror or type(exc).__name__})"], ""
    problems = check(doc)
    if problems:
        return problems, ""
    profile = from_document(doc)
    fields = sum(len(spec.fields) for spec in profile.specs.values())
    return [], (
        f"ok: profile {profile.name} ({profile.sha256[:12]}): {len(profile.tables)} legacy tables, "
        f"{len(profile.specs)} mapped, {fields} target fields"
    )
