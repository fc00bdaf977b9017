"""APM Server validates a nested object only when it is *set*: the rules of the
Go decoders (elastic/apm-data ``input/elasticapm/internal/modeldecoder``, the
generated ``IsSet()`` and ``validate()`` methods of ``model_generated.go``),
written into the APM and RUM v3 JSON Schemas when they are loaded.

What "set" means, per Go type (``IsSet()`` and ``nullable/nullable.go``):

- a scalar (``nullable.String``, ``Int``, ``Float64``, ``Bool``, ``Interface``,
  ``HTTPHeader``, timestamps): any value but null (``""`` and ``{}`` headers
  count as set);
- a map (``map[string]any``: labels, tags, custom, cookies, env, marks): at
  least one entry;
- a slice: at least one element;
- a struct (a schema with ``properties``): one of its *known* fields is set
  (unknown keys are ignored by the decoder).

The rewrite, applied to every object schema with ``properties``:

- an optional struct field is checked only when set (``if`` unset, ``else`` its
  rules); a value of the wrong type is "set" and still fails its ``type``;
- a required struct field must be set (``'span_count' required`` upstream),
  through a sub-schema marked :data:`SET_MARK`;
- a "requires at least one of" ``anyOf`` counts a struct branch only when set.

- each element of a list of structs must be set (``<field> slice element
  required``), through a sub-schema marked :data:`ELEMENT_MARK`, and is always
  validated. Everything else in the files is kept as written.
"""

from __future__ import annotations

from typing import Any

import orjson

def _copy(schema: Any) -> Any:
    """A deep copy of JSON data (orjson: many times faster than ``copy.deepcopy``)."""
    return orjson.loads(orjson.dumps(schema))


#: ``$comment`` of the sub-schema that says a required struct field is set; the
#: message builder words its failure as upstream's ``'<field>' required``.
SET_MARK = "ndintake: set"
#: ``$comment`` of the sub-schema that says a slice element is set (upstream's
#: ``<field> slice element required``).
ELEMENT_MARK = "ndintake: slice element"

#: Fields that are ``nullable.HTTPHeader`` (set when not null, even ``{}``).
_HEADER_KEYS = frozenset({"headers", "he"})


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


#: ``$comment`` of an object schema with ``properties`` that is a Go map upstream
#: (the log's nested ECS fields, ``NestedStruct map[string]interface{}``): set
#: with any entry, its rules always applied.
MAP_MARK = "ndintake: map"


def _is_struct(schema: dict[str, Any]) -> bool:
    return (
        isinstance(schema.get("properties"), dict)
        and "object" in _types(schema)
        and schema.get("$comment") != MAP_MARK
    )


def _is_map(key: str, schema: dict[str, Any]) -> bool:
    """A ``map[string]any`` field: set only with an entry (not headers, not ``Interface``)."""
    types = _types(schema)
    return "object" in types and "string" not in types and key not in _HEADER_KEYS and not _is_struct(schema)


def unset(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A schema true when the value of field ``key`` (of ``schema``) is not set:
    null, or an object of unset known fields, an empty map, an empty list. A
    value of another type is "set" (and then fails its ``type``). Written with
    ``properties`` rather than one ``anyOf`` branch per field, so that checking
    it costs one look at the fields present."""
    types = _types(schema)
    if _is_struct(schema):
        fields = {name: unset(name, sub) for name, sub in schema["properties"].items() if isinstance(sub, dict)}
        return {"type": ["null", "object"], "properties": fields}
    if _is_map(key, schema):
        return {"type": ["null", "object"], "maxProperties": 0}
    if "array" in types:
        return {"type": ["null", "array"], "maxItems": 0}
    return {"type": "null"}


def set_condition(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A schema true when the value of field ``key`` (of ``schema``) is set."""
    return {"not": unset(key, schema)}


def fields_set(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema true for an object with one of the known fields of ``schema``
    set (and for any value that is neither an object nor null)."""
    return {"not": unset("", {**schema, "type": ["null", "object"]})}


#: How deep an exception's ``cause`` chain is validated: upstream validates it
#: recursively; JSON Schema without ``$ref`` (which the batch check's embedding
#: of the schemas would break) unrolls it, and deeper causes are checked as
#: plain objects.
CAUSE_DEPTH = 3
#: The (exception, cause list) keys whose causes are validated as exceptions.
CAUSES = (("exception", "cause"), ("ex", "ca"))


def rewrite(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with upstream's "validated only when set" rules (a copy)."""
    schema = _copy(schema)
    for key, cause in CAUSES:
        exception = schema.get("properties", {}).get(key)
        if isinstance(exception, dict) and cause in exception.get("properties", {}):
            _unroll_causes(exception, cause)
    return _rewrite(schema)


def _unroll_causes(exception: dict[str, Any], cause: str) -> None:
    """Type each ``cause`` element as an exception, ``CAUSE_DEPTH`` levels deep
    (apm-data: ``errorException.Cause []errorException``)."""
    level = _copy(exception)
    for _ in range(CAUSE_DEPTH):
        element = _copy(level)
        element["type"] = "object"
        outer = _copy(exception)
        outer["properties"][cause]["items"] = element
        level = outer
    exception["properties"][cause]["items"] = level["properties"][cause]["items"]


def _rewrite(schema: dict[str, Any]) -> dict[str, Any]:
    items = schema.get("items")
    if isinstance(items, dict):
        if _is_struct(items):  # each element must be set, then is validated
            mark = {"$comment": ELEMENT_MARK, **fields_set(items)}
            schema["items"] = {"allOf": [mark, _rewrite(items)]}
        else:
            schema["items"] = _rewrite(items)
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return schema
    originals = _copy(properties)  # the conditions read the schemas as written
    required = set(schema.get("required", ()))
    for key, sub in originals.items():
        if not isinstance(sub, dict):
            continue
        if not _is_struct(sub):
            properties[key] = _rewrite(properties[key])
            continue
        rules = _rewrite({k: v for k, v in properties[key].items() if k not in ("type", "description")})
        wrapped: dict[str, Any] = {"type": sub["type"]}
        if key in required:
            mark = {"$comment": SET_MARK, **fields_set(sub)}
            wrapped["allOf"] = [mark, rules]
        else:  # validated only when set
            wrapped["if"] = unset(key, sub)
            wrapped["else"] = rules
        properties[key] = wrapped
    for branch in schema.get("anyOf", ()):
        if set(branch) <= {"required", "properties"}:
            for key in branch.get("properties", {}):
                if key in originals and _is_struct(originals[key]):
                    branch["properties"][key] = set_condition(key, originals[key])
    return schema


def is_set(value: Any, schema: dict[str, Any]) -> bool:
    """True when ``value`` (an object under ``schema``) has a known field set."""
    if not isinstance(value, dict):
        return value is not None
    for key, sub in schema.get("properties", {}).items():
        field = value.get(key)
        if field is None:
            continue
        if isinstance(field, dict) and _is_struct(sub):
            if is_set(field, sub):
                return True
        elif isinstance(field, dict) and _is_map(key, sub) or isinstance(field, list) and "array" in _types(sub):
            if field:
                return True
        else:
            return True
    return False
