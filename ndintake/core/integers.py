"""Integers written as floats: what JSON Schema lets pass and APM Server refuses.

JSON Schema reads ``1.0`` and ``1e2`` as integers; APM Server's Go decoders read
integer fields with json-iterator's integer readers, which refuse a number
written with a fraction or an exponent (a decode error), and its interface
fields typed ``int`` refuse it too. orjson hands such a number on as a Python
``float``, so a value the schema accepted is refused when a ``float`` sits where
the schema allows integers but no other numbers.

:func:`float_finder` compiles, once per schema, a function that looks only at
those places (plain ``dict.get`` chains and loops over arrays, generated as
Python source like fastjsonschema's validators) and returns the path of the
first float it finds, or None.
"""

from __future__ import annotations

from typing import Any, Callable

#: ``finder(value) -> path or None``: where an integer field holds a float.
FloatFinder = Callable[[Any], "tuple[str, ...] | None"]

_ITEMS = "[]"  # a tree key: every element of an array
_VALUES = "{}"  # a tree key: every value of an object
_LEAF = "."  # a tree key: this place must not hold a float


def _integer_only(schema: dict[str, Any]) -> bool:
    types = schema.get("type")
    listed = types if isinstance(types, list) else [types]
    return "integer" in listed and "number" not in listed


def _tree(schema: Any, tree: dict[str, Any]) -> dict[str, Any]:
    """Add the integer-only places of ``schema`` to ``tree`` (nested dicts keyed by
    property name, :data:`_ITEMS`, :data:`_VALUES`; :data:`_LEAF` marks a place)."""
    if not isinstance(schema, dict):
        return tree
    if _integer_only(schema):
        tree[_LEAF] = True
    for key, sub in (schema.get("properties") or {}).items():
        _tree(sub, tree.setdefault(key, {}))
    for sub in (schema.get("patternProperties") or {}).values():
        _tree(sub, tree.setdefault(_VALUES, {}))
    if isinstance(schema.get("additionalProperties"), dict):
        _tree(schema["additionalProperties"], tree.setdefault(_VALUES, {}))
    if isinstance(schema.get("items"), dict):
        _tree(schema["items"], tree.setdefault(_ITEMS, {}))
    for word in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(word) or ():
            _tree(sub, tree)
    for word in ("then", "else"):
        _tree(schema.get(word), tree)
    return _prune(tree)


def _prune(tree: dict[str, Any]) -> dict[str, Any]:
    """Drop the branches that hold no place."""
    for key in [key for key, sub in tree.items() if key != _LEAF and not _prune(sub)]:
        del tree[key]
    return tree


def _source(tree: dict[str, Any]) -> str:
    lines = ["def find(v0):"]
    names = iter(range(1, 1 << 30))

    def emit(node: dict[str, Any], var: str, path: tuple[str, ...], indent: str) -> None:
        if node.get(_LEAF):
            lines.append(f"{indent}if {var}.__class__ is float: return {path!r}")
        children = {key: sub for key, sub in node.items() if key != _LEAF}
        if not children:
            return
        if _ITEMS in children:
            item = f"v{next(names)}"
            lines.append(f"{indent}if {var}.__class__ is list:")
            lines.append(f"{indent}    for {item} in {var}:")
            emit(children.pop(_ITEMS), item, path, indent + "        ")
        if not children:
            return
        lines.append(f"{indent}if {var}.__class__ is dict:")
        inner = indent + "    "
        if _VALUES in children:
            value = f"v{next(names)}"
            lines.append(f"{inner}for {value} in {var}.values():")
            emit(children.pop(_VALUES), value, path, inner + "    ")
        for key, sub in children.items():
            child = f"v{next(names)}"
            lines.append(f"{inner}{child} = {var}.get({key!r})")
            emit(sub, child, (*path, key), inner)

    emit(tree, "v0", (), "    ")
    lines.append("    return None")
    return "\n".join(lines)


def float_finder(schema: dict[str, Any]) -> FloatFinder | None:
    """The finder for ``schema``, or None when it has no integer-only field."""
    tree = _tree(schema, {})
    if not tree:
        return None
    scope: dict[str, Any] = {}
    exec(compile(_source(tree), "<ndintake.core.integers>", "exec"), scope)  # source generated above from the schema
    finder: FloatFinder = scope["find"]
    return finder
