"""A one-pass accept check over JSON bytes, compiled once from JSON Schemas.

:func:`envelope_checker` compiles the schemas of an envelope's keys (``{"<key>":
{...}}`` lines) into a node table that a small C scanner (``_bytecheck.c``)
walks while it reads a line's bytes: no Python object is built, so a line is
checked in a fraction of the time ``orjson.loads`` takes to parse it, and its
value can be parsed later, only if someone reads it.

The check only ever accepts. It is never looser than the schema and is
stricter wherever that keeps it small, so a line it refuses goes to the slow
path, which decides and words every refusal:

- a schema construct it does not translate exactly makes the field it sits on
  refused when present (a required one makes its whole object untranslatable);
- a struct that must be *set* (a required one, a list element, the event
  itself) needs a scalar, a non-empty list or a non-empty map among its known
  fields, and ``null`` for a required field is refused;
- ``1.0`` for an integer is refused (APM Server's integer readers refuse it),
  and so are integers of more than 18 digits;
- keys with escapes, duplicate keys of a struct, nesting deeper than 64, and
  everything orjson refuses (invalid UTF-8, lone surrogates, control
  characters, numbers that overflow a double, bytes after the value).

Keys a struct does not name are allowed wherever the schema allows them (their
values only have to be JSON that orjson reads). Without the compiled extension
(no C compiler when ndintake was installed), :func:`envelope_checker` returns
None and callers keep their other paths.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

try:
    from . import _bytecheck
except ImportError:  # pragma: no cover - built when ndintake is installed with a C compiler
    _bytecheck = None  # type: ignore[assignment]

__all__ = ["Check", "available", "envelope_checker", "is_scanner", "item_checker"]

#: ``check(line) -> key``: the line's one key if the check accepts the line, else None.
Check = Callable[[bytes], "str | None"]

# node types; the same values as in _bytecheck.c
_NULL, _BOOL, _INT, _FLOAT, _STR, _ARR, _STRUCT, _MAP, _ANY, _OBJ = (1 << i for i in range(10))
_BRANCH_TYPES = {"string": _STR, "integer": _INT, "number": _INT | _FLOAT, "boolean": _BOOL, "array": _ARR,
                 "object": _OBJ, "null": 0}
_INT64 = (-(2**63), 2**63 - 1)
#: Keywords that never change a decision: names, words, annotations, and definitions
#: (only a ``$ref``, never translated, would use them).
_WORDS = frozenset({"description", "$id", "$comment", "$schema", "title", "examples", "default", "readOnly",
                    "writeOnly", "deprecated", "definitions", "$defs"})
_KNOWN = frozenset({"type", "properties", "required", "additionalProperties", "patternProperties", "items",
                    "anyOf", "allOf", "enum", "maxLength", "minLength", "pattern", "minimum", "maximum",
                    "minItems", "maxItems", "minProperties", "maxProperties"}) | _WORDS
#: A key pattern that ``re.search`` finds in every string ("[.*]*$"): no call per key.
_ANY_KEY = re.compile(r"(?:\[[^\]]*\]|\.)\*\$")
_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")


def available() -> bool:
    """True when the compiled scanner is installed."""
    return _bytecheck is not None


def is_scanner(check: object) -> bool:
    """True for a check made by :func:`envelope_checker`."""
    return _bytecheck is not None and isinstance(check, _bytecheck.Checker)


class _Untranslatable(Exception):
    """A schema construct with no exact (or stricter) translation."""


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if kind is None:
        raise _Untranslatable("no type")
    types = {kind} if isinstance(kind, str) else set(kind)
    if not types or types - set(_TYPES):
        raise _Untranslatable(f"type {kind!r}")
    return types


def _node(
    types: int,
    *,
    min_len: int = 0,
    max_len: int = -1,
    pattern: Callable[[str], Any] | bytes | None = None,
    enum: frozenset[str] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    int_min: int = _INT64[0],
    int_max: int = _INT64[1],
    items: int = -1,
    min_items: int = 0,
    max_items: int = -1,
    props: tuple[tuple[bytes, int, bool], ...] = (),
    rules: tuple[tuple[bool, tuple[tuple[int, int], ...]], ...] = (),
    must_be_set: bool = False,
    unknown: int = -1,
    key_pattern: Callable[[str], Any] | bytes | None = None,
    map_item: int = -1,
    min_props: int = 0,
    max_props: int = -1,
) -> tuple[Any, ...]:
    """One node, in the order ``_bytecheck.c`` reads it."""
    return (types, min_len, max_len, pattern, enum, minimum, maximum, int_min, int_max, items, min_items,
            max_items, props, rules, must_be_set, unknown, key_pattern, map_item, min_props, max_props)


class _Compiler:
    """Builds the node table of a set of schemas."""

    def __init__(self) -> None:
        self.nodes: list[tuple[Any, ...]] = []
        self._any = self._add(_node(_ANY))
        self._forbidden = self._add(_node(0))

    def _add(self, node: tuple[Any, ...]) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def value(self, schema: Any, *, set_required: bool = False) -> int:
        """The node of a value the schema accepts (``False``: none)."""
        if schema is False:
            return self._forbidden
        if not isinstance(schema, dict) or set(schema) - _KNOWN - {"const"}:
            raise _Untranslatable(repr(schema)[:80])
        if "const" in schema:
            return self._const(schema)
        types = _types(schema)
        if "enum" in schema:
            return self._enum(schema, types)
        if {"anyOf", "allOf"} & set(schema) and "object" not in types:
            raise _Untranslatable("anyOf/allOf on a non-object")
        mask = 0
        fields: dict[str, Any] = {}
        if "null" in types:
            mask |= _NULL
        if "boolean" in types:
            mask |= _BOOL
        if "string" in types:
            mask |= _STR
            fields.update(min_len=_count(schema, "minLength", 0), max_len=_count(schema, "maxLength", -1))
            if "pattern" in schema:
                fields["pattern"] = _pattern(schema["pattern"])
        if "number" in types:
            mask |= _INT | _FLOAT
            fields.update(minimum=_bound(schema, "minimum"), maximum=_bound(schema, "maximum"))
        elif "integer" in types:
            mask |= _INT
            low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
            fields.update(int_min=_INT64[0] if low is None else _clamp(math.ceil(low)),
                          int_max=_INT64[1] if high is None else _clamp(math.floor(high)))
        if "array" in types:
            if "items" not in schema:
                raise _Untranslatable("a list of anything")
            mask |= _ARR
            fields.update(items=self.value(schema["items"], set_required=True),
                          min_items=_count(schema, "minItems", 0), max_items=_count(schema, "maxItems", -1))
        if "object" in types:
            if "properties" in schema:
                mask |= _STRUCT
                fields.update(self._struct(schema, set_required))
            else:
                mask |= _MAP
                fields.update(self._map(schema, set_required))
        return self._add(_node(mask, **fields))

    def _enum(self, schema: dict[str, Any], types: set[str]) -> int:
        if set(schema) - {"type", "enum"} - _WORDS or not types <= {"null", "string"}:
            raise _Untranslatable("enum")
        values = frozenset(v for v in schema["enum"] if isinstance(v, str)) if "string" in types else frozenset()
        mask = (_STR if values else 0) | (_NULL if "null" in types and None in schema["enum"] else 0)
        if not mask:
            raise _Untranslatable("empty enum")
        return self._add(_node(mask, enum=values or None))

    def _const(self, schema: dict[str, Any]) -> int:
        """A string or ``null`` constant (with no other rule but a type that admits it)."""
        value = schema["const"]
        if set(schema) - {"const", "type"} - _WORDS or not (value is None or isinstance(value, str)):
            raise _Untranslatable("const")
        kind = "null" if value is None else "string"
        if "type" in schema and kind not in _types(schema):
            raise _Untranslatable("a const of another type")
        return self._add(_node(_NULL) if value is None else _node(_STR, enum=frozenset({value})))

    def _map(self, schema: dict[str, Any], set_required: bool) -> dict[str, Any]:
        if {"required", "anyOf", "allOf"} & set(schema):
            raise _Untranslatable("a map with rules")
        patterns = schema.get("patternProperties", {})
        extra = schema.get("additionalProperties", True)
        if len(patterns) > 1 or (patterns and extra is not False):
            raise _Untranslatable("patternProperties")
        fields: dict[str, Any] = {"max_props": _count(schema, "maxProperties", -1)}
        if patterns:
            ((pattern, item),) = patterns.items()
            if not _ANY_KEY.fullmatch(pattern):
                fields["key_pattern"] = _pattern(pattern)
            fields["map_item"] = self.value(item)
        elif extra is False:
            fields.update(map_item=self._any, max_props=0)
        elif extra is True:
            fields["map_item"] = self._any
        else:
            fields["map_item"] = self.value(extra)
        fields["min_props"] = _count(schema, "minProperties", 1 if set_required else 0)
        if fields["min_props"] > 1:  # the scanner counts a duplicate key twice
            raise _Untranslatable("minProperties > 1")
        return fields

    def _struct(self, schema: dict[str, Any], set_required: bool) -> dict[str, Any]:
        if {"patternProperties", "minProperties", "maxProperties"} & set(schema):
            raise _Untranslatable("a struct with extra keys")
        required = set(schema.get("required", ()))
        extra = schema.get("additionalProperties", True)
        unknown = -1 if extra is False else self._any if extra is True else self.value(extra)
        props: list[tuple[bytes, int, bool]] = []
        index: dict[str, int] = {}
        properties = schema["properties"]
        if not isinstance(properties, dict) or not all(isinstance(key, str) for key in required):
            raise _Untranslatable("properties")
        for key, sub in properties.items():
            try:
                node = self.value(sub, set_required=key in required)
            except _Untranslatable:
                if key in required:
                    raise
                node = self._forbidden  # refused when present
            if node != self._forbidden:
                index[key] = len(props)
            props.append((key.encode(), node, key in required))
        for key in sorted(required - properties.keys()):  # an unknown key that must be there
            index[key] = len(props)
            props.append((key.encode(), self._forbidden if unknown < 0 else unknown, True))
        if len(props) > _bytecheck.MAX_PROPS:
            raise _Untranslatable("too many properties")
        rules: list[tuple[bool, tuple[tuple[int, int], ...]]] = []
        if "anyOf" in schema:
            rules.append((False, tuple(_branch(branch, index) for branch in schema["anyOf"])))
        for part in schema.get("allOf", ()):
            if set(part) - {"if", "then"} - _WORDS or not {"if", "then"} <= set(part):
                raise _Untranslatable("allOf")
            rules.append((True, (_branch(part["if"], index), _branch(part["then"], index))))
        return {"props": tuple(props), "rules": tuple(rules), "must_be_set": set_required, "unknown": unknown}


#: ``^[...]+$`` or ``^[...]*$``: a string of characters of one class, without escapes or brackets.
_CHAR_CLASS = re.compile(r"\^\[(\^?)([^\[\]\\]+)\]([+*])\$")


def _pattern(pattern: str) -> Callable[[str], Any] | bytes:
    """A pattern as the scanner takes it: a character class of ASCII characters
    as 256 byte flags and the least length (a non-ASCII character's bytes are
    all flagged in a negated class, none in another), else ``re.search``. The
    flags are read off ``re`` itself, so they mean what the regex means."""
    if not isinstance(pattern, str):
        raise _Untranslatable("pattern")
    match = _CHAR_CLASS.fullmatch(pattern)
    if match is None or not match.group(2).isascii():
        try:
            return re.compile(pattern).search
        except re.error:
            raise _Untranslatable("pattern") from None
    negated, least = bool(match.group(1)), 1 if match.group(3) == "+" else 0
    one = re.compile(f"[{match.group(1)}{match.group(2)}]")
    flags = bytes(int(one.fullmatch(chr(byte)) is not None) if byte < 0x80 else int(negated) for byte in range(256))
    return flags + bytes([least])


def _clamp(bound: int) -> int:
    """An integer bound within 64 bits (the scanner takes no integer of 19 digits anyway)."""
    return min(max(bound, _INT64[0]), _INT64[1])


def _count(schema: dict[str, Any], keyword: str, default: int) -> int:
    """A length or count keyword: a non-negative integer, else untranslatable."""
    value = schema.get(keyword, default)
    if isinstance(value, bool) or not isinstance(value, int) or (value < 0 and value != default):
        raise _Untranslatable(keyword)
    return min(value, 2**62)  # larger counts mean the same to the scanner


def _bound(schema: dict[str, Any], keyword: str) -> float | None:
    value = schema.get(keyword)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise _Untranslatable(keyword)
    return None if value is None else float(value)


def _branch(schema: dict[str, Any], index: dict[str, int]) -> tuple[int, int]:
    """A ``{"properties": {f: {"type": ...}}, "required": [f]}`` branch: (field, types)."""
    if set(schema) - {"properties", "required"} - _WORDS or len(schema.get("required", ())) != 1:
        raise _Untranslatable("a branch")
    (key,) = schema["required"]
    if key not in index:
        raise _Untranslatable("a branch on a refused field")
    sub = schema.get("properties", {}).get(key, {"type": list(_TYPES)})
    if set(sub) - {"type"} - _WORDS:
        raise _Untranslatable("a branch with rules")
    mask = 0
    for name in _types(sub):
        mask |= _BRANCH_TYPES[name]
    return index[key], mask


def envelope_checker(schemas: Sequence[tuple[str, Any]]) -> Check | None:
    """The check of envelope lines ``{"<key>": {...}}`` for ``(key, schema)``
    pairs: it returns the line's key when the line has exactly one key, one of
    these, whose value (an object) the key's schema accepts, and None
    otherwise. Keys whose schema does not translate are always refused. None
    without the compiled scanner or when no schema translates."""
    return _checker(schemas, whole=False)


def item_checker(schemas: Sequence[tuple[str, Any]]) -> Check | None:
    """The check of lines that are one object: for ``(kind, schema)`` pairs, it
    returns the first kind whose schema accepts the line, else None (kinds whose
    schema does not translate never). None without the compiled scanner or when
    no schema translates."""
    return _checker(schemas, whole=True)


def _checker(schemas: Sequence[tuple[str, Any]], whole: bool) -> Check | None:
    if _bytecheck is None:
        return None
    compiler = _Compiler()
    keys: list[tuple[str, bytes, int]] = []
    for key, schema in schemas:
        try:
            node = compiler.value(schema, set_required=True)
        except (_Untranslatable, TypeError, ValueError, AttributeError, OverflowError):
            continue  # not translated, or a schema the validators would not take either
        types, *rest = compiler.nodes[node]
        compiler.nodes[node] = (types & (_STRUCT | _MAP), *rest)  # an event is an object
        keys.append((key, key.encode(), node))
    if not keys:
        return None
    try:
        check: Check = _bytecheck.Checker(tuple(compiler.nodes), tuple(keys), whole=whole)
    except (TypeError, ValueError, OverflowError):  # a value the table cannot hold (a bound past 64 bits...)
        return None
    return check
