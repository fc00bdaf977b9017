"""The one-pass accept check of APM event lines: the byte scanner of
:mod:`ndintake.core.bytecheck` when it is built, else msgspec types generated
from the JSON Schemas (this module).

msgspec validates while it parses (into structs the cyclic GC does not track,
rather than dicts), so a line can be accepted without ``orjson.loads`` and a
schema walk; the event's ``data`` is then parsed from its bytes only when read. The types are never
looser than the schema: a schema construct this module does not translate
exactly makes the field it sits on refused (``forbid_unknown_fields`` on every
struct), rules the types cannot say are checked in ``__post_init__``, and the
"validated only when set" rules of ``isset`` are applied always (stricter). So
a line the typed check accepts is one the schema accepts, and one it refuses
goes to the slow path, which decides and words every refusal.

Also stricter than the schema: ``1.0`` for an integer, ``null`` for a required
field, unknown keys, integers outside 64 bits (orjson reads those as floats),
a struct that must be set (a required one, a list element, the event itself)
with no scalar, list or map field set, and an exception's ``cause`` list. What
orjson refuses msgspec refuses too, except in values it only skips: maps of
any JSON (``context.custom``...) are read as ``msgspec.Raw`` and each value
parsed by orjson, and lines that may nest deeper than orjson allows are left
to the slow path, so the lazy parse of ``data`` cannot fail. Without msgspec
installed, :func:`envelope_check` returns None and the readers keep the slow path.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any, Callable, Literal, Union

import orjson

from .isset import CAUSES
from ...core.bytecheck import envelope_checker
from ...core.schemas import Validator, raw_schema

try:
    import msgspec
except ImportError:  # pragma: no cover - msgspec is an optional extra
    msgspec = None  # type: ignore[assignment]

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
#: orjson refuses a line nested deeper than this: a line with this many "[" and
#: "{" is left to the slow path (msgspec's own limit is Python's recursion limit).
_DEPTH = 1024
#: Keywords that only name or word things: they never change a decision.
_WORDS = frozenset({"description", "$id", "$comment", "title", "examples"})
_INT_RANGE = (-(2**63), 2**63 - 1)  # within orjson's integers (it reads larger ones as floats)
_ANY_KEY = re.compile(r"(?:\[[^\]]*\]|\.)\*\$")  # a pattern that re.search finds in every string
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


class _Untranslatable(Exception):
    """A schema construct with no exact (or stricter) msgspec type."""


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if kind is None:
        raise _Untranslatable("no type")
    return {kind} if isinstance(kind, str) else set(kind)


class _Translator:
    """Builds the msgspec types of one schema (structs are made once each)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._count = 0
        self._raw_maps = 0  # maps of msgspec.Raw made so far
        self._always_set: set[Any] = set()  # structs whose every instance is "set"

    def value(self, schema: dict[str, Any], *, set_required: bool = False) -> Any:
        """The type of a value the schema accepts, ``None`` included if allowed."""
        known = {"type", "properties", "required", "additionalProperties", "patternProperties", "items", "anyOf",
                 "allOf", "enum", "maxLength", "minLength", "pattern", "minimum", "maximum", "minItems",
                 "maxItems", "minProperties", "maxProperties"}
        if not isinstance(schema, dict):  # false: nothing is valid (a refused cause list)
            raise _Untranslatable("a false schema")
        if set(schema) - known - _WORDS:
            raise _Untranslatable(str(set(schema) - known - _WORDS))
        types = _types(schema)
        members: list[Any] = []
        if "enum" in schema:
            return self._enum(schema, types)
        if "null" in types:
            members.append(None)
        if "string" in types:
            members.append(self._meta(str, max_length=schema.get("maxLength"), min_length=schema.get("minLength"),
                                      pattern=schema.get("pattern")))
        if "boolean" in types:
            members.append(bool)
        if "number" in types:
            members.append(self._meta(float, ge=schema.get("minimum"), le=schema.get("maximum")))
        elif "integer" in types:
            low, high = schema.get("minimum"), schema.get("maximum")
            low = _INT_RANGE[0] if low is None else max(low, _INT_RANGE[0])
            high = _INT_RANGE[1] if high is None else min(high, _INT_RANGE[1])
            members.append(self._meta(int, ge=low, le=high))
        if "array" in types:
            if "items" not in schema:
                raise _Untranslatable("a list of anything")
            items = self.value(schema["items"], set_required=True)
            members.append(self._meta(list[items], min_length=schema.get("minItems"),  # type: ignore[valid-type]
                                      max_length=schema.get("maxItems")))
        if "object" in types:
            members.append(self._object(schema, set_required))
        if not members or set(types) - {"null", "string", "boolean", "number", "integer", "array", "object"}:
            raise _Untranslatable(f"type {types}")
        if {"anyOf", "allOf"} & set(schema) and "object" not in types:
            raise _Untranslatable("anyOf/allOf on a non-object")
        return Union[tuple(members)] if len(members) > 1 else members[0]

    def _enum(self, schema: dict[str, Any], types: set[str]) -> Any:
        if set(schema) - {"type", "enum"} - _WORDS or not types <= {"null", "string"}:
            raise _Untranslatable("enum")
        values = [v for v in schema["enum"] if isinstance(v, str)] if "string" in types else []
        members: list[Any] = [Literal[tuple(values)]] if values else []
        if "null" in types and None in schema["enum"]:
            members.append(None)
        if not members:
            raise _Untranslatable("empty enum")
        return Union[tuple(members)] if len(members) > 1 else members[0]

    @staticmethod
    def _meta(base: Any, **constraints: Any) -> Any:
        given = {key: value for key, value in constraints.items() if value is not None}
        return Annotated[base, msgspec.Meta(**given)] if given else base

    def _object(self, schema: dict[str, Any], set_required: bool) -> Any:
        if "properties" in schema:
            if {"additionalProperties", "patternProperties", "minProperties", "maxProperties"} & set(schema):
                raise _Untranslatable("a struct with extra keys")
            return self._struct(schema, set_required)
        if "required" in schema or "anyOf" in schema or "allOf" in schema:
            raise _Untranslatable("a map with rules")
        patterns = schema.get("patternProperties", {})
        extra = schema.get("additionalProperties", True)
        if len(patterns) > 1 or (patterns and extra is not False):
            raise _Untranslatable("patternProperties")
        if patterns:
            (pattern, item_schema), = patterns.items()
            # "X*$" (the header maps' "[.*]*$") is found in any key: no regex per key
            key: Any = str if _ANY_KEY.fullmatch(pattern) else Annotated[str, msgspec.Meta(pattern=pattern)]
            item = self.value(item_schema)
        elif extra is False:
            key, item = str, Any
            schema = {**schema, "maxProperties": 0}
        elif extra is True:  # values of any JSON: skipped by msgspec, read by orjson (``_raw_ok``)
            key, item = str, msgspec.Raw
            self._raw_maps += 1
        else:
            key, item = str, self.value(extra)
        low = schema.get("minProperties", 1 if set_required else None)
        return self._meta(dict[key, item], min_length=low, max_length=schema.get("maxProperties"))  # type: ignore[valid-type]

    def _struct(self, schema: dict[str, Any], set_required: bool) -> Any:
        outer = self._raw_maps  # the struct checks its own maps of anything
        required = set(schema.get("required", ()))
        fields: list[tuple[str, Any, Any]] = []
        rename: dict[str, str] = {}
        names: dict[str, str] = {}
        raw_maps: list[str] = []
        for index, (key, sub) in enumerate(schema["properties"].items()):
            before = self._raw_maps
            try:
                kind = self.value(sub, set_required=key in required)
                if self._raw_maps > before:
                    if self._raw_maps > before + 1 or not _is_raw_map(kind):
                        raise _Untranslatable("a map of anything that is not a field's value")
                    raw_maps.append(f"f{index}")
            except _Untranslatable:
                if key in required:
                    raise
                continue  # the field is refused when present: forbid_unknown_fields
            name = f"f{index}"
            rename[name], names[key] = key, name
            if key in required:
                kind = _without_null(kind)
                fields.append((name, kind, msgspec.NODEFAULT))
            else:
                fields.append((name, Union[kind, msgspec.UnsetType], msgspec.UNSET))
        fields.sort(key=lambda field: field[2] is not msgspec.NODEFAULT)  # required fields first
        structs = {name: _struct_of(kind) for name, kind, _ in fields}
        set_structs = {name: struct for name, struct in structs.items() if struct in self._always_set}
        post_init, always_set = _post_init(schema, names, set_required, raw_maps, set_structs)
        self._raw_maps = outer
        namespace = {"__post_init__": post_init} if post_init is not None else {}
        self._count += 1
        # gc=False: a struct lives only during the check and holds no cycle; untracked, it is cheaper
        struct = msgspec.defstruct(
            f"{self._name}_{self._count}", fields, forbid_unknown_fields=True, rename=rename, gc=False,
            namespace=namespace,
        )
        if always_set:
            self._always_set.add(struct)
        return struct


def _struct_of(kind: Any) -> Any:
    """The struct class of a field whose only other values are null and unset, else None."""
    members = kind.__args__ if getattr(kind, "__origin__", None) is Union else (kind,)
    rest = [m for m in members if m is not type(None) and m is not msgspec.UnsetType]
    if len(rest) == 1 and isinstance(rest[0], type) and issubclass(rest[0], msgspec.Struct):
        return rest[0]
    return None


def _is_raw_map(kind: Any) -> bool:
    """``kind`` is (a union with) a map of ``msgspec.Raw``, maybe ``Annotated``."""
    members = kind.__args__ if getattr(kind, "__origin__", None) is Union else (kind,)
    for member in members:
        member = getattr(member, "__origin__", member) if hasattr(member, "__metadata__") else member
        if getattr(member, "__origin__", None) is dict and member.__args__[1] is msgspec.Raw:
            return True
    return False


def _raw_ok(value: dict[str, Any]) -> bool:
    """Every value of a map msgspec only skipped (it checks neither UTF-8 nor
    integers too large for a double there) is one orjson reads."""
    try:
        for raw in value.values():
            _loads(memoryview(raw))
    except _JSONDecodeError:
        return False
    return True


def _without_null(kind: Any) -> Any:
    args = getattr(kind, "__args__", None)
    if getattr(kind, "__origin__", None) is Union and args is not None:
        rest = tuple(arg for arg in args if arg is not type(None))
        return Union[rest] if len(rest) > 1 else rest[0]
    if kind is None:
        raise _Untranslatable("a required null")
    return kind


def _check_types(schema: dict[str, Any]) -> frozenset[type]:
    """The Python types a sub-schema of an ``anyOf``/``if`` branch accepts (only ``type``)."""
    if set(schema) - {"type"} - _WORDS:
        raise _Untranslatable("a branch with rules")
    return frozenset(t for name in _types(schema) - {"null"} for t in _PY_TYPES[name])


def _branch(schema: dict[str, Any], names: dict[str, str]) -> tuple[str, frozenset[type]]:
    """A ``{"properties": {f: {"type": ...}}, "required": [f]}`` branch: (field, types)."""
    if set(schema) - {"properties", "required"} - _WORDS or len(schema.get("required", ())) != 1:
        raise _Untranslatable("a branch")
    (key,) = schema["required"]
    if key not in names:
        raise _Untranslatable("a branch on a refused field")
    return names[key], _check_types(schema.get("properties", {}).get(key, {"type": list(_PY_TYPES)}))


def _has(value: Any, types: frozenset[type]) -> bool:
    """``value`` is of ``types`` (``dict`` standing for any object); an object
    counts only when set, as ``isset`` counts a struct branch of an ``anyOf``."""
    if isinstance(value, msgspec.Struct):
        return dict in types and _filled(value)
    return value.__class__ in types


def _filled(obj: Any) -> bool:
    """Stricter than "set" (some known field set): some scalar, non-empty list or
    non-empty map field is set (a nested struct alone does not count)."""
    for value in msgspec.structs.astuple(obj):
        if value is None or value is msgspec.UNSET or isinstance(value, msgspec.Struct):
            continue
        if not isinstance(value, (list, dict)) or value:
            return True
    return False


_SCALARS = frozenset({str, int, float, bool})


def _post_init(
    schema: dict[str, Any], names: dict[str, str], must_be_set: bool, raw_maps: list[str], set_structs: dict[str, Any]
) -> tuple[Callable[[Any], None] | None, bool]:
    """``__post_init__`` for the struct-level rules: "requires at least one of"
    (``anyOf``), "required when" (``allOf`` of ``if``/``then``), and "set" when
    ``must_be_set`` and no required scalar field or ``anyOf`` ensures it. Its
    source is generated (one expression per rule): it runs for every struct
    decoded, list elements included. None when there is no rule."""
    space: dict[str, Any] = {"_has": _has, "_filled": _filled, "_raw_ok": _raw_ok}

    def has(name: str, types: frozenset[type]) -> str:
        space[f"t_{name}"] = types
        if types <= _SCALARS:
            return f"self.{name}.__class__ in t_{name}"
        if types == {dict} and name in set_structs:
            space[f"c_{name}"] = set_structs[name]
            return f"self.{name}.__class__ is c_{name}"
        return f"_has(self.{name}, t_{name})"

    rules: list[str] = []
    required = set(schema.get("required", ()))
    ensured = any(
        key in names and _types(sub) - {"null"} <= {"string", "integer", "number", "boolean"}
        for key, sub in schema["properties"].items() if key in required
    )
    if "anyOf" in schema:
        branches = [_branch(branch, names) for branch in schema["anyOf"]]
        rules.append(" or ".join(has(name, types) for name, types in branches))
        ensured = ensured or all(types <= _SCALARS for _, types in branches)
    for part in schema.get("allOf", ()):
        if set(part) - {"if", "then"} - _WORDS:
            raise _Untranslatable("allOf")
        (when, when_types), (then, then_types) = _branch(part["if"], names), _branch(part["then"], names)
        rules.append(f"not {has(when, when_types)} or {has(then, then_types)}")
    if must_be_set and not ensured:
        rules.append("_filled(self)")
    rules.extend(f"self.{name}.__class__ is not dict or _raw_ok(self.{name})" for name in raw_maps)
    if not rules:
        return None, ensured
    test = " and ".join(f"({rule})" for rule in rules)
    source = f"def __post_init__(self):\n    if not ({test}):\n        raise ValueError('a rule')"
    exec(source, space)  # one function per struct, made once: its rules inlined
    function: Callable[[Any], None] = space["__post_init__"]
    return function, ensured


def _causes_refused(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with an exception's ``cause`` list refused when present (``false``):
    ``isset`` validates each cause as an exception, which is not translated."""
    properties = dict(schema.get("properties", {}))
    for key, cause in CAUSES:
        exception = properties.get(key)
        if isinstance(exception, dict) and cause in exception.get("properties", {}):
            properties[key] = {**exception, "properties": {**exception["properties"], cause: False}}
    return {**schema, "properties": properties}


#: ``check(line) -> key``: the line's one key if the typed check accepts the line, else None.
Check = Callable[[bytes], "str | None"]


@cache
def envelope_check(validators: tuple[tuple[str, Validator], ...]) -> Check | None:
    """The one-pass accept check of APM envelope lines ``{"<key>": {...}}`` for
    the keys of ``validators`` (``(key, validator)`` pairs) that translate (the
    others are always refused): it accepts a line with exactly one of those
    keys whose object that key's validator would accept. The compiled byte
    scanner (:mod:`ndintake.core.bytecheck`) when it is built, else
    :func:`typed_check`. Compiled once per set of validators; None without
    either or when no key translates."""
    scanner = envelope_checker(
        tuple((key, _causes_refused(raw_schema(validator.schema_name))) for key, validator in validators)
    )
    return scanner if scanner is not None else typed_check(validators)


@cache
def typed_check(validators: tuple[tuple[str, Validator], ...]) -> Check | None:
    """:func:`envelope_check` with msgspec types (stricter than the scanner: it
    refuses unknown keys). None without msgspec or when no key translates."""
    if msgspec is None:
        return None
    fields: list[tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for index, (key, validator) in enumerate(validators):
        try:
            schema = _causes_refused(raw_schema(validator.schema_name))
            kind = _Translator(f"{key}_{index}").value(schema, set_required=True)
        except _Untranslatable:
            continue
        name = f"f{index}"
        rename[name] = key
        fields.append((name, Union[_without_null(kind), msgspec.UnsetType], msgspec.UNSET))
    if not fields:
        return None
    envelope = msgspec.defstruct("Envelope", fields, forbid_unknown_fields=True, rename=rename, gc=False)
    decode = msgspec.json.Decoder(envelope).decode
    keys = [(name, rename[name]) for name, _, _ in fields]
    unset = msgspec.UNSET
    refused = (msgspec.DecodeError, RecursionError)

    def check(line: bytes) -> str | None:
        if len(line) > 2 * _DEPTH and line.count(b"[") + line.count(b"{") >= _DEPTH:
            return None
        try:
            obj = decode(line)
        except refused:
            return None
        found = None
        for name, key in keys:
            if getattr(obj, name) is not unset:
                if found is not None:
                    return None
                found = key
        return found

    return check


__all__ = ["Check", "envelope_check", "typed_check"]
