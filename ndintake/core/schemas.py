"""The JSON Schemas of ``ndintake/schemas/``: loaded and compiled once, with APM-style messages."""

from __future__ import annotations

import os
import re
import sys
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable

import fastjsonschema
import orjson

from .errors import NdintakeError
from .integers import FloatFinder, float_finder
from .isset import ELEMENT_MARK, HEADER_MARK, SET_MARK, fields_set, is_set

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

_INDEX = re.compile(r"\[(\d+)\]")

try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - depends on the platform's wheels
    jsonschema_rs = None  # type: ignore[assignment]

#: Validation backends for the accept check, fastest first. Messages always come
#: from fastjsonschema, which also decides whenever the fast backend refuses.
BACKENDS = ("jsonschema-rs", "fastjsonschema")


def _default_backend() -> str:
    wanted = os.environ.get("NDINTAKE_BACKEND", "").strip()
    if wanted:
        if wanted not in BACKENDS:
            raise NdintakeError(f"NDINTAKE_BACKEND={wanted!r}; known backends: {', '.join(BACKENDS)}")
        if wanted == "jsonschema-rs" and jsonschema_rs is None:
            raise NdintakeError("NDINTAKE_BACKEND=jsonschema-rs but jsonschema_rs cannot be imported")
        return wanted
    return "jsonschema-rs" if jsonschema_rs is not None else "fastjsonschema"


_BACKEND = _default_backend()


def backend() -> str:
    """The validation backend in use for the accept check (``NDINTAKE_BACKEND`` overrides)."""
    return _BACKEND


def schema_files() -> Traversable:
    """The package's schema directory, ``ndintake/schemas`` (the same in every kind of install)."""
    return resources.files("ndintake") / "schemas"


#: Rewrites a schema file as a profile validates it (APM's "set" rules): ``schema -> schema``.
Prepare = Callable[[dict[str, Any]], dict[str, Any]]


@cache
def load_schema(name: str, prepare: Prepare | None = None) -> dict[str, Any]:
    """The schema ``ndintake/schemas/<name>.json`` (e.g. ``"apm/transaction"``) as
    validated: through ``prepare`` if given (the APM and RUM v3 schemas get APM
    Server's "a nested object is validated only when set" rules written in)."""
    schema = raw_schema(name)
    return prepare(schema) if prepare is not None else schema


@cache
def raw_schema(name: str) -> dict[str, Any]:
    """The schema file ``ndintake/schemas/<name>.json`` as written."""
    path = schema_files().joinpath(*f"{name}.json".split("/"))
    try:
        schema: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise NdintakeError(f"no schema {name!r} in ndintake/schemas") from None
    return schema


def _compile(schema: dict[str, Any], detailed: bool) -> Callable[[Any], Any]:
    try:
        validator: Callable[[Any], Any] = fastjsonschema.compile(
            schema, use_default=False, detailed_exceptions=detailed
        )
    except KeyError:
        if detailed:
            raise
        # fastjsonschema 2.22 cannot write its short message for "const"
        # ('definition_rule'); the detailed variant accepts the same values
        return _compile(schema, detailed=True)
    return validator


def _fastjsonschema_accept(schema: dict[str, Any]) -> Callable[[Any], bool]:
    check = _compile(schema, detailed=False)
    invalid = fastjsonschema.JsonSchemaValueException

    def accept(value: Any) -> bool:
        try:
            check(value)
        except invalid:
            return False
        return True

    return accept


def _accept_function(schema: dict[str, Any], backend_name: str) -> Callable[[Any], bool]:
    if backend_name == "jsonschema-rs":
        if jsonschema_rs is None:
            raise NdintakeError("the jsonschema-rs backend is not installed")
        is_valid: Callable[[Any], bool] = jsonschema_rs.Draft7Validator(schema).is_valid
        return is_valid
    if backend_name == "fastjsonschema":
        return _fastjsonschema_accept(schema)
    raise NdintakeError(f"unknown backend {backend_name!r}; known: {', '.join(BACKENDS)}")


class Validator:
    """One event kind's schema, compiled on first use and then kept.

    ``accept(backend)`` gives the fast check, a callable ``value -> bool`` that
    builds no messages; ``refusal`` has the last word on a value it refused, with
    fastjsonschema, and says what is wrong.

    ``label`` names the validated object in messages (``transaction: 'id'
    required``); it defaults to ``kind``. With a label, the object sits under that
    key in its line, and one with nothing set is refused (``'transaction'
    required``) even when the schema requires nothing, as APM Server does. None:
    the item is the whole line (prodlytics), and paths start at its fields.
    ``prepare`` rewrites the schema file before it is compiled; with
    ``strict_integers`` a float in a field that allows integers but no other
    numbers is refused, as Go's integer readers refuse ``1.0`` (see
    :mod:`ndintake.core.integers`).
    """

    __slots__ = (
        "kind", "schema_name", "label", "strict_integers", "_prepare", "_given", "_accept", "_detail", "_floats"
    )

    def __init__(
        self,
        kind: str,
        schema_name: str,
        *,
        label: str | None = "",
        prepare: Prepare | None = None,
        strict_integers: bool = False,
    ) -> None:
        self.kind = kind
        self.schema_name = schema_name
        self.label = kind if label == "" else label
        self.strict_integers = strict_integers
        self._prepare = prepare
        self._given: dict[str, Any] | None = None
        self._accept: dict[str, Callable[[Any], bool]] = {}
        self._detail: Callable[[Any], Any] | None = None
        self._floats: FloatFinder | None | bool = False  # False: not compiled yet

    @classmethod
    def from_schema(cls, kind: str, schema: dict[str, Any]) -> Validator:
        """A validator of whole values (no label) against ``schema``, a JSON Schema
        (draft 7) dict, compiled now: a schema that does not compile raises
        :class:`NdintakeError`."""
        if not isinstance(schema, dict):
            raise NdintakeError(f"the schema of {kind!r} is not a JSON object")
        validator = cls(kind, "", label=None)
        validator._given = schema
        try:
            for name in {_BACKEND, "fastjsonschema"}:
                validator.accept(name)
            validator._detailed()
        except Exception as exc:  # each compiler has its own errors; all mean a bad schema
            raise NdintakeError(f"bad schema for {kind!r}: {str(exc).splitlines()[0]}") from None
        return validator

    def schema(self) -> dict[str, Any]:
        """The schema as validated."""
        return load_schema(self.schema_name, self._prepare) if self._given is None else self._given

    def _raw(self) -> dict[str, Any]:
        return raw_schema(self.schema_name) if self._given is None else self._given

    def _detailed(self) -> Callable[[Any], Any]:
        if self._detail is None:
            self._detail = _compile(self.schema(), detailed=True)
        return self._detail

    def accept(self, backend_name: str | None = None) -> Callable[[Any], bool]:
        """The compiled accept check for ``backend_name`` (default: :func:`backend`)."""
        name = backend_name or _BACKEND
        check = self._accept.get(name)
        if check is None:
            check = self._accept[name] = _without_floats(_accept_function(self.accepted_schema(), name), self.floats())
        return check

    def floats(self) -> FloatFinder | None:
        """Where a float sits in an integer field of a value (None: this schema
        does not refuse them); see :mod:`ndintake.core.integers`."""
        if self._floats is False:
            self._floats = float_finder(self.schema()) if self.strict_integers else None
        return self._floats  # type: ignore[return-value]  # compiled above

    def accepted_schema(self) -> dict[str, Any]:
        """The schema the accept check enforces: the kind's schema, plus, for a
        labelled object whose schema requires nothing, "some field is set"."""
        schema = self.schema()
        if self.label is None or schema.get("required"):
            return schema
        return {"allOf": [schema, {"type": "object"}, fields_set(self._raw())]}

    def refusal(self, value: Any, *, explain: bool = True) -> str | None:
        """Called when the fast check refused ``value``: None if fastjsonschema accepts
        it after all, else what is wrong in APM's words ("" when ``explain`` is false:
        past the fifth error no message is built)."""
        if not isinstance(value, dict):
            if not explain:
                return ""
            if value is None and self.label is not None:
                return f"validation error: '{self.label}' required"
            where = f"{self.label}: " if self.label is not None else ""
            return f"decode error: data read error: {where}expected an object, got {_json_type(value)}"
        if self.label is not None and not is_set(value, self._raw()):
            return f"validation error: '{self.label}' required" if explain else ""
        if not explain:
            if _BACKEND == "fastjsonschema":
                return ""
            return None if self.accept("fastjsonschema")(value) else ""
        try:
            self._detailed()(value)
        except fastjsonschema.JsonSchemaValueException as exc:
            return _message(self.label, exc)
        floats = self.floats()
        path = floats(value) if floats is not None else None
        if path is None:
            return None
        # json-iterator's integer readers (assertInteger) word it so
        where = "".join(f"{part}: " for part in (self.label, *path) if part is not None)
        return f"decode error: data read error: {where}can not decode float as int"


@cache
def lines_accept(
    validators: tuple[tuple[str, Validator], ...], backend_name: str | None = None
) -> Callable[[list[Any]], bool] | None:
    """One accept check for a whole list of parsed envelope lines: true when every
    line is an object with exactly one key, a key of ``validators`` (``(key,
    validator)`` pairs), whose value is an object that key's validator accepts.
    It is never looser than checking line by line; lines it refuses are then
    judged one by one. Compiled once per set of validators.

    None unless the backend is jsonschema-rs: one call per list saves its per-call
    cost, while fastjsonschema would only compile the schemas a second time.
    """
    if (backend_name or _BACKEND) != "jsonschema-rs":
        return None
    line = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": {
            key: {"allOf": [{"type": "object"}, validator.accepted_schema()]} for key, validator in validators
        },
    }
    check = _accept_function({"type": "array", "items": line}, "jsonschema-rs")
    floats = {key: finder for key, validator in validators if (finder := validator.floats()) is not None}
    if not floats:
        return check

    def accept(lines: list[Any]) -> bool:
        if not check(lines):
            return False
        for line in lines:  # each an object of one known key, checked above
            for key, value in line.items():
                finder = floats.get(key)
                if finder is not None and finder(value) is not None:
                    return False
        return True

    return accept


def _without_floats(check: Callable[[Any], bool], floats: FloatFinder | None) -> Callable[[Any], bool]:
    """``check``, and no float where the schema wants an integer."""
    if floats is None:
        return check
    return lambda value: check(value) and floats(value) is None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), "null")


def _path(label: str | None, name: str) -> list[str]:
    """``data.context.tags[0]`` -> ``[label, "context", "tags", "[0]"]``."""
    rest = name.split(".", 1)[1] if "." in name else ""
    rest = _INDEX.sub(r".[\1]", rest)
    parts = [part for part in rest.split(".") if part]
    return [label, *parts] if label is not None else parts


def _required(path: list[str]) -> str:
    """``validation error: <parents>: '<field>' required``."""
    return "validation error: " + "".join(f"{part}: " for part in path[:-1]) + f"'{path[-1]}' required"


def _message(label: str | None, exc: fastjsonschema.JsonSchemaValueException) -> str:
    """Say what failed and where, the way APM Server words it."""
    path = _path(label, exc.name or "data")
    rule, definition, value = exc.rule, exc.definition or {}, exc.value
    comment = definition.get("$comment", "")
    if comment == ELEMENT_MARK and len(path) >= 2:  # path ends with the list and its index
        outer = [part for part in path[:-2] if label is None or not _INDEX.fullmatch(part)]
        return "validation error: " + "".join(f"{part}: " for part in outer) + f"{path[-2]} slice element required"
    if comment == HEADER_MARK:  # as nullable.HTTPHeader's decoder
        outer = [part for part in path[:-1] if not _INDEX.fullmatch(part)]
        kind = {type(None): "<nil>", bool: "bool", dict: "map[string]interface {}"}.get(type(value), "float64")
        where = "".join(f"{part}: " for part in outer)
        return f"decode error: data read error: {where}invalid input for HTTPHeader value type: {kind}"
    if label is not None:
        if rule == "type" and value is None and path and not _INDEX.fullmatch(path[-1]):
            # null is unset upstream: a field that may not be null is a required one
            return _required([part for part in path if not _INDEX.fullmatch(part)])
        path = [part for part in path if not _INDEX.fullmatch(part)]  # upstream's paths name no index
    at = "".join(f"{part}: " for part in path)
    if comment in (SET_MARK, "ndintake: required") and path:  # a required object or map with nothing set
        return _required(path)
    if comment == "ndintake: timestamp" and rule == "pattern":  # as nullable.TimeMicrosUnix
        return f"decode error: data read error: {at}failed to parse the provided time string"
    if comment.startswith("ndintake: rule ") and path:  # upstream's own rule name
        named = comment[len("ndintake: rule ") :].split(":")[0]
        parents = "".join(f"{part}: " for part in path[:-1])
        return f"validation error: {parents}'{path[-1]}': validation rule '{named}' violated"
    if rule == "required" and comment.startswith("ndintake: required when "):  # a field that needs another
        needed, given = definition["required"][0], comment[len("ndintake: required when ") :]
        return f"validation error: {at}'{needed}' required when '{given}' is set"
    if rule == "required":
        present = value if isinstance(value, dict) else {}
        missing = next((k for k in definition.get("required", ()) if k not in present), "?")
        return f"validation error: {at}'{missing}' required"
    if rule == "anyOf" and all(set(branch) <= {"required", "properties"} for branch in definition["anyOf"]):
        fields = ";".join(f for branch in definition["anyOf"] for f in branch.get("required", ()))
        return f"validation error: {at}requires at least one of the fields '{fields}'"
    argument = definition.get(rule, "") if rule else ""
    if isinstance(argument, list):  # an enum: upstream checks only non-empty values, null is unset
        argument = ";".join(str(a) for a in argument if a is not None and a != "")
    elif isinstance(argument, dict):
        argument = ""
    if path:
        at = "".join(f"{part}: " for part in path[:-1]) + f"'{path[-1]}': "
    return f"validation error: {at}validation rule '{rule}({argument})' violated"
