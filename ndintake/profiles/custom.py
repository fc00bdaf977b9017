"""Profiles from the user's own JSON Schemas: :func:`define_profile`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Union

import orjson

from ..core.errors import NdintakeError
from ..core.limits import Limits
from ..core.profile import FORMS, Profile
from ..core.result import MAX_EVENT_ERRORS, IntakeResult
from ..core.schemas import Validator
from .apm.response import apm_response
from .datadog.response import datadog_response
from .items import ItemReader

#: A kind's schema: a JSON Schema dict, the path of a JSON file holding one, or
#: a :class:`Validator` already made.
Schema = Union[Mapping[str, Any], str, "os.PathLike[str]", Validator]
#: The response body: APM Server's, Datadog's, or a function of the result.
Response = Union[Literal["apm", "datadog"], Callable[[IntakeResult], dict[str, Any]]]

_RESPONSES: dict[str, Callable[[IntakeResult], dict[str, Any]]] = {"apm": apm_response, "datadog": datadog_response}


def define_profile(
    name: str,
    kinds: Mapping[str, Schema],
    *,
    classify: str | None = "key",
    metadata: Schema | None = None,
    limits: Limits | None = None,
    max_errors: int = MAX_EVENT_ERRORS,
    response: Response = "apm",
    forms: Iterable[str] = FORMS,
) -> Profile:
    """A profile that validates the event kinds ``kinds`` (kind -> JSON Schema).

    ``classify`` says how an item's kind is found: ``"key"``, an envelope
    ``{"<kind>": {...}}`` whose value is the event (as APM's lines); ``"field:NAME"``,
    the value of the item's top-level field ``NAME`` (a discriminator; the
    whole item is the event); None, one kind for every item. ``metadata``: the
    schema of a required first item (``{"metadata": {...}}`` with envelopes, else
    the whole item), kept as the stream's ``metadata``; a bad one refuses the
    body (400). ``limits``: sizes (default :class:`Limits`); ``max_errors``: the
    per-event errors a result keeps; ``response``: ``"apm"``, ``"datadog"`` or a
    function ``result -> dict``; ``forms``: the body forms read, of ``ndjson``,
    ``array`` and ``object`` (whole documents, e.g. one pretty-printed object).

    The schemas are loaded, compiled and checked now: a bad schema, a bad
    ``classify``, or a kind that its schema's discriminator field cannot have
    raises :class:`NdintakeError`. Validation then never compiles anything.
    """
    if not kinds:
        raise NdintakeError(f"profile {name!r}: no event kinds")
    discriminator = _discriminator(classify, kinds)
    validators = {kind: _validator(kind, schema) for kind, schema in kinds.items()}
    if discriminator is not None:
        for kind, validator in validators.items():
            _check_discriminator(kind, validator.schema(), discriminator)
    forms = frozenset(forms)
    if not forms or not forms <= FORMS:
        raise NdintakeError(f"profile {name!r}: forms must be some of {', '.join(sorted(FORMS))}, not {sorted(forms)}")
    if not isinstance(max_errors, int) or max_errors < 1:  # the status is the highest of the kept errors
        raise NdintakeError(f"profile {name!r}: max_errors must be at least 1, not {max_errors!r}")
    render = _RESPONSES.get(response) if isinstance(response, str) else response
    if render is None or not callable(render):
        raise NdintakeError(f"profile {name!r}: response must be 'apm', 'datadog' or a function, not {response!r}")
    return Profile(
        name=name,
        reader=ItemReader,
        render=render,
        metadata={} if metadata is None else {"metadata": _validator("metadata", metadata)},
        events=validators if classify is not None else {},
        item=next(iter(validators.values())) if classify is None else None,
        discriminator=discriminator,
        forms=forms,
        limits=limits if limits is not None else Limits(),
        max_errors=max_errors,
    )


def _discriminator(classify: str | None, kinds: Mapping[str, Schema]) -> str | None:
    if classify is None:
        if len(kinds) != 1:
            raise NdintakeError(f"classify=None takes one kind, not {len(kinds)}: use 'key' or 'field:NAME'")
        return None
    if classify == "key":
        return None
    prefix, _, field = classify.partition(":")
    if prefix != "field" or not field:
        raise NdintakeError(f"classify must be 'key' or 'field:NAME' (a discriminator field), not {classify!r}")
    return field


def _validator(kind: str, schema: Schema) -> Validator:
    if isinstance(schema, Validator):
        return schema
    if isinstance(schema, (str, os.PathLike)):
        try:
            with open(schema, "rb") as file:
                loaded = orjson.loads(file.read())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise NdintakeError(f"cannot read the schema of {kind!r} from {os.fspath(schema)}: {exc}") from None
        return Validator.from_schema(kind, loaded)
    return Validator.from_schema(kind, dict(schema))


def _check_discriminator(kind: str, schema: dict[str, Any], field: str) -> None:
    """Refuse a schema whose discriminator field cannot be ``kind``: no item would ever pass."""
    rule = schema.get("properties", {}).get(field)
    if not isinstance(rule, dict):
        return
    if ("const" in rule and rule["const"] != kind) or ("enum" in rule and kind not in rule["enum"]):
        raise NdintakeError(f"the schema of {kind!r} does not allow {field!r} to be {kind!r}")


def profile_from_directory(
    directory: str | os.PathLike[str],
    *,
    name: str | None = None,
    classify: str | None = "key",
    metadata: Schema | None = None,
    **options: Any,
) -> Profile:
    """:func:`define_profile` with one kind per ``<kind>.json`` file of ``directory``
    (the CLI's ``--schemas`` and ``serve``'s ``--profile``); ``name`` defaults to
    the directory's name. No ``.json`` file raises :class:`NdintakeError`."""
    folder = Path(directory)
    try:
        files = sorted(path for path in folder.iterdir() if path.suffix == ".json" and path.is_file())
    except OSError as exc:
        raise NdintakeError(f"cannot read the schema directory {folder}: {exc.strerror or exc}") from None
    if not files:
        raise NdintakeError(f"no <kind>.json schema in {folder}")
    kinds = {path.stem: path for path in files}
    return define_profile(name or folder.resolve().name, kinds, classify=classify, metadata=metadata, **options)
