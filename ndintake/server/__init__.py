"""The pieces of an intake server, for the ASGI app (:mod:`ndintake.asgi`) and
the WSGI app (:mod:`ndintake.wsgi`): their hooks, and the sans-I/O request
handling they share (:class:`Intake`, :class:`Exchange`), for other drivers."""

from .auth import Authenticator, AuthOutcome
from ..core.errors import QueueFull, SinkUnavailable
from ..sinks.hooks import Batch, Sink, Undelivered, offer, offer_each
from .metrics import Metrics
from .handler import (
    BATCH_LINES,
    DEFAULT_ADMISSION_WAIT,
    DEFAULT_MAX_CONCURRENT_DECODERS,
    DEFAULT_TIMEOUT,
    PAUSE,
    READ,
    Admit,
    Deliver,
    Exchange,
    Intake,
    Request,
    Route,
    Sleep,
    routes,
)
from .ratelimit import RateLimiter, TokenBucket
from .responses import SERVER_VERSION, Response
from ..sinks import JsonLinesSink, open_sink

__all__ = [
    "BATCH_LINES",
    "DEFAULT_ADMISSION_WAIT",
    "DEFAULT_MAX_CONCURRENT_DECODERS",
    "DEFAULT_TIMEOUT",
    "PAUSE",
    "READ",
    "SERVER_VERSION",
    "Admit",
    "AuthOutcome",
    "Authenticator",
    "Batch",
    "Deliver",
    "Exchange",
    "Intake",
    "JsonLinesSink",
    "Metrics",
    "QueueFull",
    "SinkUnavailable",
    "RateLimiter",
    "Request",
    "Response",
    "Route",
    "Sink",
    "Sleep",
    "TokenBucket",
    "Undelivered",
    "offer",
    "offer_each",
    "open_sink",
    "routes",
]
