"""Profile: what differs between intake protocols, and the registry of named profiles.

The core reads a body through its profile's reader and renders the response with
its ``render``; it knows no protocol itself. Protocols register their profiles
here (:mod:`ndintake.profiles` registers ``apm``, ``rum`` and ``prodlytics``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .context import ReaderContext
from .errors import DecodeError, EventError, NdintakeError
from .event import Event
from .limits import Limits
from .result import MAX_EVENT_ERRORS, IntakeResult
from .schemas import Validator

#: ``handler(value, line, line_no, out) -> dropped``: appends the events a valid
#: value yields to ``out`` and returns how many it dropped without an error.
Special = Callable[[dict[str, Any], bytes, int, list[Event]], int]

#: The body forms a reader of JSON items can take (see :class:`Profile`).
FORMS = frozenset({"ndjson", "array", "object"})


class Reader(Protocol):
    """Turns a profile's decoded body into events, reporting to its :class:`ReaderContext`."""

    def feed(self, piece: bytes) -> None: ...

    def finish(self) -> None: ...

    def stream_error(self, exc: DecodeError) -> EventError: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """One intake protocol: how a body is read, checked and answered.

    ``reader(context, profile)``: makes the reader of one body (envelope lines
    for APM, JSON items for prodlytics and schema profiles); ``render``: the
    response body of a result. ``metadata``: the keys a required first line may
    have, with their schemas (none: no metadata line); ``events``: the event
    kinds (envelope keys, or discriminator values) with theirs; ``item``: the
    schema each item is validated against whole when there is one kind and no
    classification; ``discriminator``: the top-level field that names an item's
    kind; ``forms``: the body forms an item reader takes (``ndjson``, ``array``,
    ``object``); ``max_errors``: how many per-event errors a result keeps;
    ``special``: per key, a handler for valid values that are not simply one
    event (dropped or split); ``abbreviated``: keys whose values use short keys
    (RUM v3). Most users want :func:`ndintake.define_profile` instead.
    """

    name: str
    reader: Callable[[ReaderContext, Profile], Reader]
    render: Callable[[IntakeResult], dict[str, Any]]
    metadata: dict[str, Validator] = field(default_factory=dict)
    events: dict[str, Validator] = field(default_factory=dict)
    item: Validator | None = None
    discriminator: str | None = None
    forms: frozenset[str] = FORMS
    limits: Limits = field(default_factory=Limits)
    max_errors: int = MAX_EVENT_ERRORS
    special: dict[str, Special] = field(default_factory=dict)
    abbreviated: frozenset[str] = frozenset()

    @property
    def metadata_required(self) -> str:
        """The message for a first line that is not metadata."""
        return " or ".join(f'"{key}"' for key in self.metadata) + " required"


#: The named profiles: ``apm``, ``rum``, ``prodlytics`` and any registered since.
PROFILES: dict[str, Profile] = {}


def register(profile: Profile) -> Profile:
    """Make ``profile`` known by its name (for ``profile="<name>"`` and the CLI);
    returns it. A name already taken raises :class:`NdintakeError`."""
    if PROFILES.get(profile.name, profile) is not profile:
        raise NdintakeError(f"a profile named {profile.name!r} is already registered")
    PROFILES[profile.name] = profile
    return profile


def get_profile(profile: str | Profile) -> Profile:
    """``profile`` itself, or the registered profile of that name; raises
    :class:`NdintakeError` for an unknown name."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise NdintakeError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}") from None
