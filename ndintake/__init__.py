"""ndintake: validate streamed NDJSON event intake bodies like an observability intake server.

A sans-I/O core (:class:`IntakeStream`) fed with body chunks, and thin helpers
around it for a whole body, an iterable, an async iterable or a file.
"""

from .core.api import validate, validate_async, validate_chunks, validate_file
from .core.context import ReaderContext
from .core.decode import MAX_CODINGS, SUPPORTED_ENCODINGS
from .core.errors import EventError, NdintakeError, QueueFull, SinkUnavailable
from .core.event import Event
from .core.facets import facets
from .core.limits import DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_EVENT_SIZE, Limits
from .core.profile import PROFILES, Profile, get_profile, register as register_profile
from .core.result import MAX_EVENT_ERRORS, IntakeResult
from .core.schemas import BACKENDS, backend
from .core.stream import IntakeStream
from .profiles import define_profile  # importing the protocols registers apm, rum, prodlytics

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
    "Profile",
    "ReaderContext",
    "QueueFull",
    "SinkUnavailable",
    "backend",
    "define_profile",
    "facets",
    "get_profile",
    "register_profile",
    "validate",
    "validate_async",
    "validate_chunks",
    "validate_file",
]
