"""Profiles: what differs between intake protocols (framing, schemas, limits, body shape)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .apm.envelope import EnvelopeReader
from ..core.errors import DecodeError, EventError, NdintakeError
from ..core.event import Event
from .datadog.items import ItemReader
from ..core.limits import Limits
from ..core.result import IntakeResult, apm_response
from .apm.rumv3 import is_internal_metricset, keeps_metricset
from ..core.schemas import Validator

if TYPE_CHECKING:
    from ..core.stream import IntakeStream


#: ``handler(value, line, line_no, out) -> dropped``: appends the events a valid
#: value yields to ``out`` and returns how many it dropped without an error.
Special = Callable[[dict[str, Any], bytes, int, list[Event]], int]


class Reader(Protocol):
    """Turns a profile's decoded body into events, reporting to the stream."""

    def feed(self, piece: bytes) -> None: ...

    def finish(self) -> None: ...

    def stream_error(self, exc: DecodeError) -> EventError: ...


@dataclass(frozen=True, slots=True)
class Profile:
    """One intake protocol.

    ``reader``: how the body is read (envelope lines for APM, JSON items for
    prodlytics); ``metadata``: the keys a first (metadata) line may have, with
    their schema; ``events``: event-line keys with theirs; ``item``: the schema
    each item is validated against whole (profiles without envelopes);
    ``special``: per line key, a handler for valid values that are not simply
    one event (dropped or split into several); ``abbreviated``: the line keys
    whose values use RUM v3's short keys; ``render``: the response body.
    """

    name: str
    reader: Callable[[IntakeStream, Profile], Reader]
    metadata: dict[str, Validator] = field(default_factory=dict)
    events: dict[str, Validator] = field(default_factory=dict)
    item: Validator | None = None
    limits: Limits = field(default_factory=Limits)
    special: dict[str, Special] = field(default_factory=dict)
    abbreviated: frozenset[str] = frozenset()
    render: Callable[[IntakeResult], dict[str, Any]] = apm_response

    @property
    def metadata_required(self) -> str:
        """The message for a first line that is not metadata."""
        return " or ".join(f'"{key}"' for key in self.metadata) + " required"


def _metricset(value: dict[str, Any], line: bytes, line_no: int, out: list[Event]) -> int:
    """A v2 metricset: dropped (counted, no error) when it has transaction fields
    set and ``keeps_metricset`` says no."""
    if is_internal_metricset(value) and not keeps_metricset(value, short=False):
        return 1
    out.append(Event("metricset", value, line, line_no))
    return 0


def _rumv3_transaction(value: dict[str, Any], line: bytes, line_no: int, out: list[Event]) -> int:
    """A RUM v3 ``x`` line: the transaction, one span per ``y`` element, and the
    ``me`` metricsets worth keeping; all abbreviated, spans and metricsets with
    the transaction as their parent."""
    out.append(Event("transaction", value, line, line_no, True))
    for span in value.get("y") or ():
        out.append(Event("span", span, line, line_no, True, value))
    dropped = 0
    for metricset in value.get("me") or ():
        if keeps_metricset(metricset):
            out.append(Event("metricset", metricset, line, line_no, True, value))
        else:
            dropped += 1
    return dropped


# Titles as Datadog words them (HTTPStatus phrases vary between Python versions).
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    408: "Request Timeout",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def datadog_response(result: IntakeResult) -> dict[str, Any]:
    """Datadog's body: ``{}`` on 202, else ``{"errors": [{"status", "title", "detail"}]}``
    with the status as a string."""
    if not result.errors:
        return {}
    errors = []
    for error in result.errors:
        title = _TITLES.get(error.status) or HTTPStatus(error.status).phrase
        errors.append({"status": str(error.status), "title": title, "detail": error.message})
    return {"errors": errors}


#: Datadog's documented limit for one prodlytics request: 5 MB uncompressed.
PRODLYTICS_MAX_BODY_SIZE = 5_000_000

_V2_KINDS = ("transaction", "span", "error", "metricset", "log")

APM = Profile(
    name="apm",
    reader=EnvelopeReader,
    metadata={
        "metadata": Validator("metadata", "apm/metadata"),
        "m": Validator("metadata", "rumv3/metadata", label="m"),
    },
    events={
        **{kind: Validator(kind, f"apm/{kind}") for kind in _V2_KINDS},
        "x": Validator("transaction", "rumv3/transaction", label="x"),
        "e": Validator("error", "rumv3/error", label="e"),
    },
    special={"metricset": _metricset, "x": _rumv3_transaction},
    abbreviated=frozenset({"m", "x", "e"}),
)

#: The RUM routes (/intake/v2/rum/events, /intake/v3/rum/events): APM Server
#: reads them exactly like the backend route, v2 and v3 keys in any mix.
RUM = replace(APM, name="rum")

PRODLYTICS = Profile(
    name="prodlytics",
    reader=ItemReader,
    item=Validator("prodlytics", "prodlytics", label=None),
    # no per-item limit is published: an item may be the whole body, never more
    limits=Limits(max_event_size=PRODLYTICS_MAX_BODY_SIZE + 1, max_body_size=PRODLYTICS_MAX_BODY_SIZE),
    render=datadog_response,
)

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (APM, RUM, PRODLYTICS)}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; raises :class:`NdintakeError` for an unknown one."""
    try:
        return PROFILES[name]
    except KeyError:
        raise NdintakeError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
