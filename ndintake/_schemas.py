"""The JSON Schemas of ``schemas/``: loaded and compiled once, with APM-style messages."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import fastjsonschema
import orjson

from ._errors import NdintakeError

_INDEX = re.compile(r"\[(\d+)\]")


def schema_dir() -> Path:
    """Where the schema files are: inside the installed package, else the source tree."""
    packaged = resources.files("ndintake") / "schemas"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema ``schemas/<name>.json`` (e.g. ``"apm/transaction"``)."""
    path = schema_dir() / f"{name}.json"
    try:
        schema: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise NdintakeError(f"no schema {name!r} in {path.parent}") from None
    return schema


def _compile(schema: dict[str, Any], detailed: bool) -> Callable[[Any], Any]:
    validator: Callable[[Any], Any] = fastjsonschema.compile(
        schema, use_default=False, detailed_exceptions=detailed
    )
    return validator


class Validator:
    """One event kind's schema, compiled on first use and then kept.

    ``accepts`` is the fast check (no error messages are built); ``explain``
    runs the detailed validator on a rejected value and says what is wrong.
    """

    __slots__ = ("kind", "schema_name", "_accept", "_detail", "_needs_value")

    def __init__(self, kind: str, schema_name: str) -> None:
        self.kind = kind
        self.schema_name = schema_name
        self._accept: Callable[[Any], Any] | None = None
        self._detail: Callable[[Any], Any] | None = None
        self._needs_value = False

    def _compiled(self) -> Callable[[Any], Any]:
        schema = load_schema(self.schema_name)
        # with nothing required, an object with nothing set still is "not set" upstream
        self._needs_value = not schema.get("required")
        self._accept = _compile(schema, detailed=False)
        return self._accept

    def accepts(self, value: Any) -> bool:
        """True when ``value`` (the object inside the kind's key) is valid."""
        accept = self._accept or self._compiled()
        try:
            accept(value)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return not self._needs_value or _is_set(value)

    def explain(self, value: Any) -> str:
        """The APM-style message for a value ``accepts`` refused."""
        if value is None or (isinstance(value, dict) and not _is_set(value)):
            return f"validation error: '{self.kind}' required"
        if not isinstance(value, dict):
            return f"decode error: data read error: {self.kind}: expected an object, got {_json_type(value)}"
        if self._detail is None:
            self._detail = _compile(load_schema(self.schema_name), detailed=True)
        try:
            self._detail(value)
        except fastjsonschema.JsonSchemaValueException as exc:
            return _message(self.kind, exc)
        return f"validation error: '{self.kind}' required"  # valid, yet nothing set


def _is_set(value: dict[str, Any]) -> bool:
    return any(v is not None for v in value.values())


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


def _path(kind: str, name: str) -> list[str]:
    """``data.context.tags[0]`` -> ``[kind, "context", "tags", "[0]"]``."""
    rest = name.split(".", 1)[1] if "." in name else ""
    rest = _INDEX.sub(r".[\1]", rest)
    return [kind, *(part for part in rest.split(".") if part)]


def _message(kind: str, exc: fastjsonschema.JsonSchemaValueException) -> str:
    """Say what failed and where, the way APM Server words it."""
    path = _path(kind, exc.name or "data")
    rule, definition, value = exc.rule, exc.definition or {}, exc.value
    where = ": ".join(path)
    if rule == "required":
        present = value if isinstance(value, dict) else {}
        missing = next((k for k in definition.get("required", ()) if k not in present), "?")
        return f"validation error: {where}: '{missing}' required"
    if rule == "anyOf" and all(set(branch) <= {"required", "properties"} for branch in definition["anyOf"]):
        fields = ";".join(f for branch in definition["anyOf"] for f in branch.get("required", ()))
        return f"validation error: {where}: requires at least one of the fields '{fields}'"
    argument = definition.get(rule, "") if rule else ""
    if isinstance(argument, list):
        argument = ";".join(str(a) for a in argument)
    elif isinstance(argument, dict):
        argument = ""
    field = path[-1] if len(path) > 1 else kind
    parent = ": ".join(path[:-1]) if len(path) > 1 else kind
    return f"validation error: {parent}: '{field}': validation rule '{rule}({argument})' violated"
