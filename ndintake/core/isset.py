"""What "set" means for a nested object, as APM Server's Go decoders see it
(elastic/apm-data ``input/elasticapm/internal/modeldecoder``, the generated
``IsSet()`` methods of ``model_generated.go``): the marks the message builder
reads, and the checks :class:`~ndintake.core.schemas.Validator` makes on a
labelled object. The rewrite of whole schemas with these rules is the APM
profile's (:mod:`ndintake.profiles.apm.isset`).

What "set" means, per Go type (``IsSet()`` and ``nullable/nullable.go``):

- a scalar (``nullable.String``, ``Int``, ``Float64``, ``Bool``, ``Interface``,
  ``HTTPHeader``, timestamps): any value but null (``""`` and ``{}`` headers
  count as set);
- a map (``map[string]any``: labels, tags, custom, cookies, env, marks): at
  least one entry;
- a slice: at least one element;
- a struct (a schema with ``properties``): one of its *known* fields is set
  (unknown keys are ignored by the decoder).
"""

from __future__ import annotations

from typing import Any

#: ``$comment`` of the sub-schema that says a required struct field is set; the
#: message builder words its failure as upstream's ``'<field>' required``.
SET_MARK = "ndintake: set"
#: ``$comment`` of the sub-schema that says a slice element is set (upstream's
#: ``<field> slice element required``).
ELEMENT_MARK = "ndintake: slice element"

#: ``$comment`` of the value schema of a ``nullable.HTTPHeader`` field (set when
#: not null, even ``{}``): marked in the schema, so no field name is known here.
HEADER_MARK = "ndintake: header value"


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


#: ``$comment`` of an object schema with ``properties`` that is a Go map upstream
#: (the log's nested ECS fields, ``NestedStruct map[string]interface{}``): set
#: with any entry, its rules always applied.
MAP_MARK = "ndintake: map"


def is_struct(schema: dict[str, Any]) -> bool:
    """A Go struct: an object schema with ``properties`` (not marked a map)."""
    return (
        isinstance(schema.get("properties"), dict)
        and "object" in _types(schema)
        and schema.get("$comment") != MAP_MARK
    )


def _is_map(schema: dict[str, Any]) -> bool:
    """A ``map[string]any`` field: set only with an entry (not headers, not ``Interface``)."""
    types = _types(schema)
    return "object" in types and "string" not in types and not _is_headers(schema) and not is_struct(schema)


def _is_headers(schema: dict[str, Any]) -> bool:
    """A ``nullable.HTTPHeader`` field: its values are marked :data:`HEADER_MARK`."""
    values = schema.get("patternProperties")
    return isinstance(values, dict) and any(
        isinstance(value, dict) and value.get("$comment") == HEADER_MARK for value in values.values()
    )


def unset(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema true when the value of a field of schema ``schema`` is not set:
    null, or an object of unset known fields, an empty map, an empty list. A
    value of another type is "set" (and then fails its ``type``). Written with
    ``properties`` rather than one ``anyOf`` branch per field, so that checking
    it costs one look at the fields present."""
    types = _types(schema)
    if is_struct(schema):
        fields = {name: unset(sub) for name, sub in schema["properties"].items() if isinstance(sub, dict)}
        return {"type": ["null", "object"], "properties": fields}
    if _is_map(schema):
        return {"type": ["null", "object"], "maxProperties": 0}
    if "array" in types:
        return {"type": ["null", "array"], "maxItems": 0}
    return {"type": "null"}


def set_condition(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema true when the value of a field of schema ``schema`` is set."""
    return {"not": unset(schema)}


def fields_set(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema true for an object with one of the known fields of ``schema``
    set (and for any value that is neither an object nor null)."""
    return {"not": unset({**schema, "type": ["null", "object"]})}


def is_set(value: Any, schema: dict[str, Any]) -> bool:
    """True when ``value`` (an object under ``schema``) has a known field set."""
    if not isinstance(value, dict):
        return value is not None
    for key, sub in schema.get("properties", {}).items():
        field = value.get(key)
        if field is None:
            continue
        if isinstance(field, dict) and is_struct(sub):
            if is_set(field, sub):
                return True
        elif isinstance(field, dict) and _is_map(sub) or isinstance(field, list) and "array" in _types(sub):
            if field:
                return True
        else:
            return True
    return False
