"""The outcome of one request body, and its response body."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from .errors import EventError
from .event import Event

#: At most this many per-event errors are kept in a result (later ones are only counted).
MAX_EVENT_ERRORS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeResult:
    """What a request body came to.

    ``accepted``: events that passed; ``errors``: the first five per-event errors
    (the profile's ``max_errors``), then the fatal error if one stopped the
    request; ``invalid``: all per-event errors, kept or not; ``dropped``: events
    upstream discards without an error (internal metricsets with nothing to
    keep); ``status``: the HTTP status, the highest among the errors or 202; ``final_events``: events completed by
    ``close()`` itself (a last line without a newline), every other accepted
    event having been returned by ``feed()``.
    """

    accepted: int
    errors: list[EventError]
    status: int
    invalid: int = 0
    dropped: int = 0
    profile: str = "apm"
    final_events: list[Event] = field(default_factory=list, repr=False)
    _render: Callable[[IntakeResult], dict[str, Any]] = field(repr=False, compare=False)  # the profile's

    @property
    def ok(self) -> bool:
        """True when the whole body was accepted (status 202)."""
        return self.status == 202

    @property
    def fatal(self) -> EventError | None:
        """The error that stopped the request, if any."""
        return self.errors[-1] if self.errors and self.errors[-1].fatal else None

    def to_json(self) -> dict[str, Any]:
        """The response body as a dict, in the profile's shape."""
        return self._render(self)

    def body(self, *, pretty: bool = False) -> bytes:
        """The response body as JSON bytes (``pretty``: 2-space indent, as APM Server
        answers clients that accept ``application/json``)."""
        return orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2 if pretty else 0)
