"""Size limits of one request body."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import NdintakeError

#: APM Server's default ``max_event_size``: 300 KiB per line.
DEFAULT_MAX_EVENT_SIZE = 307_200
#: ndintake's default cap on the *decompressed* body: 64 MiB.
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Hard limits that bound memory and work per request.

    ``max_event_size``: a line of this many bytes or more (decompressed, without
    its newline) is refused with ``event exceeded the permitted size`` (400), as
    APM Server does. ``max_body_size``: the decompressed body may not exceed this
    many bytes; past it the request stops with 413 (events before it still count).
    """

    max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    max_body_size: int = DEFAULT_MAX_BODY_SIZE

    def __post_init__(self) -> None:
        for name in ("max_event_size", "max_body_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise NdintakeError(f"Limits.{name} must be a positive int, got {value!r}")
