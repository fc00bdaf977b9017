"""Profiles: what differs between intake protocols (framing, schemas, limits, body shape)."""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ._envelope import EnvelopeReader
from ._errors import DecodeError, EventError, NdintakeError
from ._items import ItemReader
from ._limits import Limits
from ._result import IntakeResult, apm_response
from ._schemas import Validator

if TYPE_CHECKING:
    from ._stream import IntakeStream


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
    ``keep``: per kind, a predicate that is False for a valid event the protocol
    discards without an error; ``render``: the response body.
    """

    name: str
    reader: Callable[[IntakeStream, Profile], Reader]
    metadata: dict[str, Validator] = field(default_factory=dict)
    events: dict[str, Validator] = field(default_factory=dict)
    item: Validator | None = None
    limits: Limits = field(default_factory=Limits)
    keep: dict[str, Callable[[dict[str, Any]], bool]] = field(default_factory=dict)
    render: Callable[[IntakeResult], dict[str, Any]] = apm_response

    @property
    def metadata_required(self) -> str:
        """The message for a first line that is not metadata."""
        return " or ".join(f'"{key}"' for key in self.metadata) + " required"


def _keep_metricset(data: dict[str, Any]) -> bool:
    """APM Server drops a metricset with transaction fields unless it carries span
    self-time samples (breakdown metrics it computes itself), without an error."""
    if data.get("transaction") is None:
        return True
    samples = data.get("samples") or {}
    return data.get("span") is not None and (
        "span.self_time.count" in samples or "span.self_time.sum.us" in samples
    )


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
    return {
        "errors": [
            {"status": str(error.status), "title": _TITLES.get(error.status) or HTTPStatus(error.status).phrase, "detail": error.message}
            for error in result.errors
        ]
    }


#: Datadog's documented limit for one prodlytics request: 5 MB uncompressed.
PRODLYTICS_MAX_BODY_SIZE = 5_000_000

APM = Profile(
    name="apm",
    reader=EnvelopeReader,
    metadata={
        "metadata": Validator("metadata", "apm/metadata"),
        "m": Validator("m", "rumv3/metadata"),
    },
    events={kind: Validator(kind, f"apm/{kind}") for kind in ("transaction", "span", "error", "metricset", "log")},
    keep={"metricset": _keep_metricset},
)

PRODLYTICS = Profile(
    name="prodlytics",
    reader=ItemReader,
    item=Validator("prodlytics", "prodlytics", label=None),
    limits=Limits(max_event_size=PRODLYTICS_MAX_BODY_SIZE, max_body_size=PRODLYTICS_MAX_BODY_SIZE),
    render=datadog_response,
)

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (APM, PRODLYTICS)}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; raises :class:`NdintakeError` for an unknown one."""
    try:
        return PROFILES[name]
    except KeyError:
        raise NdintakeError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
