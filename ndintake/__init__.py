"""ndintake: validate streamed NDJSON event intake bodies like an observability intake server.

A sans-I/O core (:class:`IntakeStream`) fed with body chunks, and thin helpers
around it for a whole body, an iterable, an async iterable or a file.
"""

from .core.api import validate, validate_async, validate_chunks, validate_file
from .core.decode import MAX_CODINGS, SUPPORTED_ENCODINGS
from .core.errors import EventError, NdintakeError, QueueFull, SinkUnavailable
from .core.event import Event
from .profiles.datadog.facets import facets
from .core.limits import DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_EVENT_SIZE, Limits
from .profiles.base import PROFILES
from .core.result import MAX_EVENT_ERRORS, IntakeResult
from .core.schemas import BACKENDS, backend
from .core.stream import IntakeStream

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_EVENT_SIZE",
    "BACKENDS",
    "MAX_CODINGS",
    "MAX_EVENT_ERRORS",
    "PROFILES",
    "SUPPORTED_ENCODINGS",
    "Event",
    "EventError",
    "IntakeResult",
    "IntakeStream",
    "Limits",
    "NdintakeError",
    "QueueFull",
    "SinkUnavailable",
    "backend",
    "facets",
    "validate",
    "validate_async",
    "validate_chunks",
    "validate_file",
]
