"""APM Server validates a nested object only when it is *set* (see
:mod:`ndintake.core.isset` for what "set" means per Go type): those rules of
the Go decoders (the generated ``IsSet()`` and ``validate()`` methods of
elastic/apm-data's ``model_generated.go``), written into the APM and RUM v3
JSON Schemas when they are loaded.

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

from ...core.isset import ELEMENT_MARK, SET_MARK, fields_set, is_struct, set_condition, unset


def _copy(schema: Any) -> Any:
    """A deep copy of JSON data (orjson: many times faster than ``copy.deepcopy``)."""
    return orjson.loads(orjson.dumps(schema))


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
        if is_struct(items):  # each element must be set, then is validated
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
        if not is_struct(sub):
            properties[key] = _rewrite(properties[key])
            continue
        rules = _rewrite({k: v for k, v in properties[key].items() if k not in ("type", "description")})
        wrapped: dict[str, Any] = {"type": sub["type"]}
        if key in required:
            mark = {"$comment": SET_MARK, **fields_set(sub)}
            wrapped["allOf"] = [mark, rules]
        else:  # validated only when set
            wrapped["if"] = unset(sub)
            wrapped["else"] = rules
        properties[key] = wrapped
    for branch in schema.get("anyOf", ()):
        if set(branch) <= {"required", "properties"}:
            for key in branch.get("properties", {}):
                if key in originals and is_struct(originals[key]):
                    branch["properties"][key] = set_condition(originals[key])
    return schema
