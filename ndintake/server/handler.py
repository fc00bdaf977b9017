"""An intake server's request handling, sans-I/O: request in, (status, headers, body) out.

:class:`Intake` holds what a server is configured with (routes, hooks, state);
:meth:`Intake.exchange` makes an :class:`Exchange` per request. An exchange is
driven by stepping it: each :meth:`Exchange.step` returns either an effect for
the driver to carry out (:class:`Admit` the request when a decoder slot is
free, :data:`READ` the next body chunk, :data:`PAUSE` to let other requests
run, :class:`Sleep`, :class:`Deliver` batches to the sink) or the final
:class:`Response`. The ASGI and WSGI apps are such drivers; all the HTTP logic
lives here, once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterable, Iterator, Mapping, Union
from urllib.parse import parse_qs

from .auth import Authenticator, AuthOutcome, event_origin
from ..core.event import Event
from ..core.errors import QueueFull, SinkUnavailable
from ..sinks.hooks import Batch, Sink, Undelivered
from ..core.limits import Limits
from .ratelimit import BATCH_WAIT, RateLimiter, TokenBucket
from .responses import (
    SERVER_VERSION,
    Response,
    apm,
    apm_error,
    datadog,
    failed,
    server_info,
)
from .endpoints import Endpoint, builtin_endpoints
from ..core.profile import Profile
from ..core.result import IntakeResult
from ..core.stream import IntakeStream

if TYPE_CHECKING:
    from .metrics import Metrics

logger = logging.getLogger("ndintake.server")

#: APM Server reads this many lines per batch (blank and bad lines included).
BATCH_LINES = 10
#: Default per-request timeout in seconds (APM Server's HTTP read timeout).
DEFAULT_TIMEOUT = 30.0
#: Default number of intake requests reading their body at once, per process
#: (APM Server's ``max_concurrent_decoders``, 200 for a multi-core Go server).
DEFAULT_MAX_CONCURRENT_DECODERS = 8
#: Default seconds a request waits for a decoder slot before it is refused
#: (as APM Server's libbeat queue waits a second for room).
DEFAULT_ADMISSION_WAIT = 1.0

_BATCH_REFUSED = "cannot handle stream: cannot process batch: "
_RATE_LIMITED = (429, _BATCH_REFUSED + "rate limit exceeded")
_QUEUE_FULL = (503, "cannot handle stream: cannot process batch: queue is full")
_SINK_FAILED = (500, "cannot handle stream: cannot process batch: internal error")
_BUSY = "unable to service request: no decoder slot freed within {wait:g} s (max_concurrent_decoders={limit})"
_CONFIG_ETAG = '"ndintake-empty"'
#: The metrics' reason for each status _admit refuses with (others: "bad_request").
#: The request headers a RUM preflight always allows, after the configured ones.
_CORS_HEADERS = ("Content-Type", "Content-Encoding", "Accept")

_REFUSALS = {503: "shutting_down", 401: "auth", 403: "auth", 429: "rate_limit"}
#: Content codings counted by name in the metrics (others count as "other").
_CODINGS = frozenset({"identity", "gzip", "x-gzip", "deflate", "zstd", "br"})


def origin_matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    """APM Server's ``rum.allow_origins`` check: an origin is allowed if it
    matches one of ``patterns``, where ``*`` stands for any run of characters
    (``*`` alone: every origin, even none)."""
    expressions = [re.compile(".*".join(map(re.escape, pattern.split("*"))), re.DOTALL) for pattern in patterns]
    return lambda origin: any(expression.fullmatch(origin) for expression in expressions)


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of an HTTP request the intake looks at. ``headers``: lower-case
    names (repeated headers joined with ``", "``), values as the bytes received
    decoded as latin-1 (as ASGI and WSGI give them; credentials are compared as
    those bytes); ``client``: the peer's IP."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    client: str | None = None


class _Read:
    """The effect asking for the next body chunk: reply with bytes, or None at the end."""

    def __repr__(self) -> str:
        return "READ"


READ = _Read()


class _Pause:
    """The effect letting the driver run other work before the next step (the
    ASGI app yields to its event loop; the WSGI app carries on)."""

    def __repr__(self) -> str:
        return "PAUSE"


PAUSE = _Pause()


@dataclass(frozen=True, slots=True)
class Admit:
    """The effect asking for one of the intake's decoder slots (at most
    ``max_concurrent_decoders`` requests read their body at once), waiting at
    most ``seconds``. Reply True once one is held (the driver frees it when the
    exchange ends), False if none freed in time."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Sleep:
    """The effect asking the driver to wait (a rate-limited batch waiting for tokens)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Deliver:
    """The effect asking the driver to hand ``batches`` to the sink, in order
    (see :func:`ndintake.sinks.hooks.offer`), and to reply once every one was taken.
    If the sink fails, the driver throws :class:`~ndintake.sinks.hooks.Undelivered`
    (how many were taken, and the cause) back through ``step(error=...)``."""

    batches: list[Batch]


Effect = Union[Admit, _Read, _Pause, Sleep, Deliver]


@dataclass(frozen=True, slots=True)
class Route:
    """What a path is: ``intake`` (with its :class:`Endpoint`), ``root``,
    ``config``, ``health`` or ``metrics``."""

    kind: str
    endpoint: Endpoint | None = None

    @property
    def profile(self) -> str:
        """The name of the intake's profile ("" for other routes)."""
        return self.endpoint.profile.name if self.endpoint is not None else ""

    @property
    def rum(self) -> bool:
        return self.endpoint is not None and self.endpoint.rum


def routes(endpoints: Mapping[str, Endpoint | Profile] | None = None) -> dict[str, Route]:
    """The paths an intake server answers: APM Server's and Datadog's, and
    ``endpoints`` (path -> :class:`Endpoint`, or a :class:`Profile` served with
    ``Endpoint.of(profile)``: APM Server's conventions)."""
    paths = {"/": Route("root"), "/config/v1/agents": Route("config"), "/healthz": Route("health")}
    for path, endpoint in {**builtin_endpoints(), **(endpoints or {})}.items():
        paths[path] = Route("intake", Endpoint.of(endpoint) if isinstance(endpoint, Profile) else endpoint)
    return paths


class Batcher:
    """Groups accepted events into batches as APM Server reads them: the events
    of ten lines at a time (``by_line``, lines counted after the metadata line),
    or ten events at a time (prodlytics items, which have no line numbers in a
    JSON array). A batch is complete when an event of a later one arrives."""

    def __init__(self, by_line: bool, size: int = BATCH_LINES) -> None:
        self._by_line = by_line
        self._size = size
        self._pending: list[Event] = []
        self._key = -1
        self._count = 0

    def add(self, events: list[Event]) -> list[list[Event]]:
        """Take ``events``; return the batches they complete."""
        ready: list[list[Event]] = []
        for event in events:
            key = (event.line - 2) // self._size if self._by_line else self._count // self._size
            self._count += 1
            if self._pending and key != self._key:
                ready.append(self._pending)
                self._pending = []
            self._key = key
            self._pending.append(event)
        return ready

    def flush(self) -> list[list[Event]]:
        """The unfinished batch, if any (end of body)."""
        pending, self._pending = self._pending, []
        return [pending] if pending else []

    def discard(self) -> int:
        """Drop the unfinished batch; return how many events it held."""
        count = len(self._pending)
        self._pending = []
        return count


class Intake:
    """An intake server's configuration and state, shared by its requests.

    ``sink``: receives each :class:`~ndintake.sinks.hooks.Batch` of accepted events
    (a callable, under ASGI also a coroutine function, or a bounded queue);
    raising :class:`~ndintake.QueueFull` (or a full queue) ends the
    request with 503 and the batch uncounted. ``authenticator``: see
    :class:`~ndintake.server.auth.Authenticator`. ``rate_limiter``: applies to
    anonymous requests (no authenticator, or RUM without credentials), see
    :class:`~ndintake.server.ratelimit.RateLimiter`. ``timeout``: seconds a request
    may take, body and sink included (None: no limit); past it the answer is
    503 ``request timed out`` (prodlytics: 408), with the count of events the
    sink took. ``limits``: per profile name (``apm``, ``rum``, ``prodlytics``,
    or a mounted profile's; RUM takes ``apm``'s unless given its own), else the
    profile's defaults. ``endpoints``: more intake paths, path ->
    :class:`~ndintake.server.endpoints.Endpoint` or
    :class:`~ndintake.Profile` (e.g. from :func:`ndintake.define_profile`),
    answered like the built-in ones.
    ``server_version``: what ``GET /`` reports.
    ``max_concurrent_decoders``: intake requests reading their body at once
    (None: no limit); a request that finds no slot within ``admission_wait``
    seconds is answered 503 before its body is read. ``metrics``: a
    :class:`~ndintake.server.metrics.Metrics` to record into; ``GET /metrics`` then
    answers with them (None, the default: nothing recorded, no such route).
    ``allow_origins``: the origins RUM routes answer (APM Server's
    ``rum.allow_origins``, ``*`` wildcards; default every origin): a request
    from another origin gets 403 ``origin: '<origin>' is not allowed``, a
    preflight no ``Access-Control-Allow-Origin``. ``allow_headers``: request
    headers a RUM preflight allows before ``Content-Type, Content-Encoding,
    Accept`` (APM Server's ``rum.allow_headers``).
    """

    def __init__(
        self,
        *,
        sink: Sink | None = None,
        authenticator: Authenticator | None = None,
        rate_limiter: RateLimiter | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        limits: Mapping[str, Limits] | None = None,
        server_version: str = SERVER_VERSION,
        max_concurrent_decoders: int | None = DEFAULT_MAX_CONCURRENT_DECODERS,
        admission_wait: float = DEFAULT_ADMISSION_WAIT,
        allow_origins: Iterable[str] = ("*",),
        allow_headers: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        endpoints: Mapping[str, Endpoint | Profile] | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive or None")
        if max_concurrent_decoders is not None and max_concurrent_decoders < 1:
            raise ValueError("max_concurrent_decoders must be at least 1 or None")
        if admission_wait < 0:
            raise ValueError("admission_wait must not be negative")
        self.sink = sink
        self.authenticator = authenticator
        self.rate_limiter = rate_limiter
        self.timeout = timeout
        self.limits = dict(limits or {})
        self.server_version = server_version
        self.max_concurrent_decoders = max_concurrent_decoders
        self.admission_wait = admission_wait
        self.allow_origins = tuple(allow_origins)
        self.origin_allowed = origin_matcher(self.allow_origins)
        self.allow_headers = ", ".join([*allow_headers, *_CORS_HEADERS])
        self.clock = clock
        self.metrics = metrics
        self.routes = routes(endpoints)
        if metrics is not None:
            self.routes["/metrics"] = Route("metrics")
        self.draining = False
        self._active = 0
        self._lock = threading.Lock()
        self._check()

    def _check(self) -> None:
        """Refuse options the driver cannot use (raise TypeError or ValueError)."""

    @property
    def active(self) -> int:
        """Requests in flight."""
        return self._active

    def begin_shutdown(self) -> None:
        """From now on, intake requests get 503 ``server is shutting down``;
        requests in flight go on to the end."""
        self.draining = True

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a request as in flight while the driver handles it."""
        with self._lock:
            self._active += 1
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
            if self.metrics is not None:
                self.metrics.in_flight.dec()

    def exchange(self, request: Request) -> Exchange:
        """A new :class:`Exchange` for ``request``."""
        return Exchange(self, request)

    def limits_for(self, endpoint: Endpoint) -> Limits | None:
        """The limits configured for ``endpoint`` (None: its profile's own)."""
        return next((self.limits[key] for key in endpoint.limits_keys if key in self.limits), None)


class Exchange:
    """One request/response, sans-I/O: call :meth:`step` until it returns a
    :class:`Response`, carrying out each effect it returns in between.

    ``result``: the :class:`IntakeResult` once an intake request is done.
    """

    def __init__(self, intake: Intake, request: Request) -> None:
        self.intake = intake
        self.request = request
        self.route = intake.routes.get(request.path)
        self.result: IntakeResult | None = None
        timeout = intake.timeout
        self._deadline = intake.clock() + timeout if timeout is not None else None
        self._stream: IntakeStream | None = None
        self._batcher: Batcher | None = None
        self._in_flight = 0  # events handed to the sink, not yet taken
        self._bucket: TokenBucket | None = None
        self._began = time.perf_counter()
        #: Why the request was refused or stopped early (a reason of :mod:`ndintake.server.metrics`).
        self.refusal: str | None = None
        self._restricted: Authenticator | None = None  # checks each anonymous batch's agent and service
        self._gen = self._run()

    @property
    def remaining(self) -> float | None:
        """Seconds left before the request times out (None: no timeout)."""
        return None if self._deadline is None else self._deadline - self.intake.clock()

    def step(self, reply: bytes | bool | None = None, *, error: BaseException | None = None) -> Effect | Response:
        """Resume with the reply to the last effect (a body chunk, None at the
        end of the body) or the error it raised; return the next effect or the
        response."""
        try:
            if error is not None:
                return self._gen.throw(error)
            return self._gen.send(reply)
        except StopIteration as stop:
            return self._head(stop.value)

    def timed_out(self) -> Response:
        """Abandon the request for its timeout and return the answer to it
        (with the count of events the sink took, once the body was being read)."""
        self._gen.close()
        return self._head(self._timeout())

    def abandon(self) -> None:
        """The client went away: stop (no response will be sent)."""
        self._gen.close()
        if self._stream is not None:
            self._stop((499, "client closed the request"), self._in_flight)
            self.result = result = self._stream.close()
            logger.warning(
                "%s %s: the client went away after %d accepted events",
                self.request.path,
                self.request.client,
                result.accepted,
            )
        self.refusal = "client_closed"
        self._record(499)

    # -- the request ------------------------------------------------------------

    def _run(self) -> Generator[Effect, Any, Response]:
        route, request = self.route, self.request
        if route is None:
            return apm_error(404, "404 page not found", request.headers)
        if route.kind == "root":
            return self._root()
        if route.kind == "config":
            return self._config()
        if route.kind == "health":
            return self._health()
        if route.kind == "metrics":
            return self._metrics()
        if route.rum and request.method == "OPTIONS":
            return self._preflight()
        refusal = self._admit(route)
        if refusal is not None:
            self.refusal = _REFUSALS.get(refusal.status, "bad_request")
            return refusal
        return (yield from self._intake(route))

    def _admit(self, route: Route) -> Response | None:
        """Everything checked before the body is read, in APM Server's order."""
        request = self.request
        if self.intake.draining:
            return self._refuse(503, "server is shutting down")
        if route.rum:
            origin = request.headers.get("origin", "")
            if not self.intake.origin_allowed(origin):
                return self._refuse(403, f"origin: '{origin}' is not allowed")
        auth = self._authenticate(route)
        if not auth.ok:
            return self._refuse(auth.status, auth.message)
        authenticator = self.intake.authenticator
        if auth.anonymous and authenticator is not None and authenticator.restricts_anonymous:
            self._restricted = authenticator
        limiter = self.intake.rate_limiter
        if auth.anonymous and limiter is not None:
            self._bucket = limiter.bucket(request.client)
            if not self._bucket.allow(1):
                return self._refuse(429, "too many requests: rate limit exceeded")
        assert route.endpoint is not None  # an intake route
        refusal = route.endpoint.style.check(request.method, request.headers.get("content-type", ""))
        if refusal is not None:
            return self._failed(*refusal)
        return None

    def _intake(self, route: Route) -> Generator[Effect, Any, Response]:
        """Wait for a decoder slot, then stream the body into an IntakeStream in
        short steps, batching and delivering its events as they come."""
        if self.intake.max_concurrent_decoders is not None:
            wait = self.intake.admission_wait
            remaining = self.remaining
            metrics = self.intake.metrics
            if metrics is not None:
                metrics.waiting.inc()
            try:
                admitted = yield Admit(wait if remaining is None else max(0.0, min(wait, remaining)))
            finally:
                if metrics is not None:
                    metrics.waiting.dec()
            if not admitted:
                if self._expired():
                    return self._timeout()
                self.refusal = "admission"
                message = _BUSY.format(wait=self.intake.admission_wait, limit=self.intake.max_concurrent_decoders)
                return self._failed(503, message)
        encoding = self.request.headers.get("content-encoding") or None
        endpoint = route.endpoint
        assert endpoint is not None  # an intake route
        stream = self._stream = IntakeStream(
            profile=endpoint.profile, content_encoding=encoding, limits=self.intake.limits_for(endpoint)
        )
        batcher = self._batcher = Batcher(by_line=endpoint.batch_by_line)
        while not stream.finished:
            chunk = yield READ
            if self._expired():
                return self._timeout()
            if chunk is None:
                break
            for events in stream.feed_paced(chunk):  # short steps, however much the chunk inflates
                ready = batcher.add(events)
                if stream.finished:  # a fatal error in the body: what was read before it still goes
                    ready += batcher.flush()
                if ready:
                    yield from self._deliver(ready)
                if self._expired():
                    return self._timeout()
                yield PAUSE
        result = stream.close()
        yield from self._deliver(batcher.add(result.final_events) + batcher.flush())
        if self._expired():
            return self._timeout()
        return self._answer(stream.close())  # again: a refusal after close() makes a new result

    def _answer(self, result: IntakeResult) -> Response:
        self.result = result
        assert self.route is not None and self.route.endpoint is not None  # an intake route
        verbose = "verbose" in parse_qs(self.request.query, keep_blank_values=True)
        return self.route.endpoint.style.answer(result, self.request.headers, verbose, self._cors())

    def _deliver(self, batches: list[list[Event]]) -> Generator[Effect, Any, None]:
        """Rate-limit each batch in turn (tokens = events, waiting up to a
        second), check an anonymous batch's agents and services (403), then hand
        them to the sink together. At the first refusal, stop the request and
        un-count the refused batch and every event after it."""
        taken: list[Batch] = []
        for i, events in enumerate(batches):
            if self._bucket is not None:
                remaining = self.remaining
                most = BATCH_WAIT if remaining is None else min(BATCH_WAIT, remaining)
                wait = self._bucket.reserve(len(events), most)
                if wait is None:
                    if (yield from self._hand_over(taken)):
                        self.refusal = "rate_limit"
                        self._stop(_RATE_LIMITED, sum(map(len, batches[i:])))
                    return
                if wait > 0:
                    yield Sleep(wait)
            if self._restricted is not None:
                refusal = self._unauthorized(events)
                if refusal is not None:
                    if (yield from self._hand_over(taken)):
                        self.refusal = "auth"
                        self._stop((403, _BATCH_REFUSED + refusal), sum(map(len, batches[i:])))
                    return
            taken.append(self._batch(events))
        yield from self._hand_over(taken)

    def _hand_over(self, batches: list[Batch]) -> Generator[Effect, Any, bool]:
        """Deliver ``batches`` to the sink; False (and the request stopped) if it failed."""
        metrics = self.intake.metrics
        if self.intake.sink is None or not batches:
            if metrics is not None:
                metrics.delivered(batches)
            return True
        self._in_flight = sum(map(len, batches))  # left as is if the exchange is closed meanwhile
        began = time.perf_counter()
        try:
            yield Deliver(batches)
        except Undelivered as failure:
            self._in_flight = 0
            cause = failure.cause
            if isinstance(cause, (QueueFull, SinkUnavailable)):
                logger.warning("%s %s: the sink refused a batch: %s", self.request.path, self.request.client, cause)
                refusal, self.refusal = _QUEUE_FULL, "queue_full"
            else:
                logger.error("the sink failed on a batch", exc_info=cause)
                refusal, self.refusal = _SINK_FAILED, "sink_error"
            if metrics is not None:
                failed = "unavailable" if isinstance(cause, SinkUnavailable) else "error"
                metrics.sink_took(time.perf_counter() - began, "queue_full" if isinstance(cause, QueueFull) else failed)
                metrics.delivered(batches[: failure.done])
            self._stop(refusal, sum(map(len, batches[failure.done :])))
            return False
        self._in_flight = 0
        if metrics is not None:
            metrics.sink_took(time.perf_counter() - began)
            metrics.delivered(batches)
        return True

    def _unauthorized(self, events: list[Event]) -> str | None:
        """APM Server's anonymous check of a batch: each event's agent and service."""
        assert self._restricted is not None and self._stream is not None
        metadata = self._stream.metadata
        for event in events:
            refusal = self._restricted.authorize_anonymous(*event_origin(event, metadata))
            if refusal is not None:
                return refusal
        return None

    def _batch(self, events: list[Event]) -> Batch:
        assert self._stream is not None and self.route is not None
        return Batch(events, profile=self.route.profile, metadata=self._stream.metadata, path=self.request.path)

    def _stop(self, refusal: tuple[int, str], refused: int) -> None:
        """End the request with ``refusal``; ``refused`` events (plus those the
        batcher holds) were not taken after all."""
        assert self._stream is not None and self._batcher is not None
        status, message = refusal
        self._stream.fail(status, message, refused=refused + self._batcher.discard())

    # -- other routes -------------------------------------------------------------

    def _root(self) -> Response:
        """APM Server's server information: full for authenticated clients (or
        when no credentials are configured), an empty 200 for anonymous ones."""
        authenticator = self.intake.authenticator
        if authenticator is None or not authenticator.enabled:
            known = True
        else:
            auth = authenticator.check_apm(self.request.headers)
            known = auth.ok and not auth.anonymous
        return apm(200, server_info(self.intake.server_version) if known else None, self.request.headers)

    def _config(self) -> Response:
        """Agent central configuration: always empty (``{}``), cacheable."""
        request = self.request
        auth = self._authenticate(Route("config"))
        if not auth.ok:
            return apm_error(auth.status, auth.message, request.headers)
        if request.method not in ("GET", "POST"):
            return apm_error(405, "method not supported: only GET and POST requests are supported", request.headers)
        headers = [("Cache-Control", "max-age=30, must-revalidate"), ("Etag", _CONFIG_ETAG)]
        if request.headers.get("if-none-match") == _CONFIG_ETAG:
            return apm(304, None, request.headers, headers)
        return apm(200, {}, request.headers, headers)

    def _health(self) -> Response:
        """Readiness: 200 ``{"ready": true}``; 503 ``{"ready": false, "reason": ...}``
        while shutting down or while the sink says it is not ``healthy``."""
        if self.request.method not in ("GET", "HEAD"):
            return datadog(405, {"error": "only GET requests are supported"}, [("Allow", "GET, HEAD")])
        reason = None
        if self.intake.draining:
            reason = "server is shutting down"
        elif not getattr(self.intake.sink, "healthy", True):
            reason = "sink unavailable"
        if reason is not None:
            return datadog(503, {"ready": False, "reason": reason})
        return datadog(200, {"ready": True})

    def _metrics(self) -> Response:
        """The Prometheus text exposition of the intake's metrics."""
        from .metrics import CONTENT_TYPE

        assert self.intake.metrics is not None
        if self.request.method not in ("GET", "HEAD"):
            return datadog(405, {"error": "only GET requests are supported"}, [("Allow", "GET, HEAD")])
        body = self.intake.metrics.render()
        return Response(200, [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))], body)

    def _record(self, status: int) -> None:
        """Tell the metrics how the request ended."""
        metrics = self.intake.metrics
        if metrics is None:
            return
        route = self.request.path if self.route is not None else "other"
        metrics.answered(route, status, time.perf_counter() - self._began)
        result, stream = self.result, self._stream
        if result is not None and stream is not None and self.route is not None:
            coding = (self.request.headers.get("content-encoding") or "none").strip().lower()
            metrics.body_done(
                self.route.profile,
                coding if coding in _CODINGS or coding == "none" else "other",
                stream.decoded_bytes,
                result.invalid,
                result.dropped,
            )
            if self.refusal is None and result.fatal is not None:
                fatal = result.fatal
                self.refusal = (
                    "too_large" if fatal.status == 413 else "decode_error" if stream.decode_failed else "invalid_body"
                )
        if self.refusal is not None:
            metrics.refused(self.refusal)

    def _preflight(self) -> Response:
        """CORS preflight on a RUM route (``Access-Control-Allow-Origin`` for an allowed origin)."""
        headers = [
            *self._cors(),
            ("Access-Control-Allow-Methods", "POST, OPTIONS"),
            ("Access-Control-Allow-Headers", self.intake.allow_headers),
            ("Access-Control-Max-Age", "3600"),
        ]
        return apm(200, None, self.request.headers, headers)

    # -- helpers --------------------------------------------------------------------

    def _authenticate(self, route: Route) -> AuthOutcome:
        authenticator = self.intake.authenticator
        if authenticator is None:
            return AuthOutcome(anonymous=True)
        if route.endpoint is None:
            return authenticator.check_apm(self.request.headers)
        return route.endpoint.style.authenticate(authenticator, self.request.headers, route.rum)

    def _cors(self) -> list[tuple[str, str]]:
        origin = self.request.headers.get("origin")
        if not (self.route is not None and self.route.rum and origin and self.intake.origin_allowed(origin)):
            return []
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin"), ("Access-Control-Expose-Headers", "Etag")]

    def _refuse(self, status: int, message: str) -> Response:
        """A refusal outside the event stream: APM's ``{"error": ...}``, or Datadog's errors."""
        endpoint = self.route.endpoint if self.route is not None else None
        if endpoint is not None:
            return endpoint.style.refuse(endpoint.profile, status, message, self.request.headers, self._cors())
        return apm_error(status, message, self.request.headers, self._cors())

    def _failed(self, status: int, message: str, extra: list[tuple[str, str]] | None = None) -> Response:
        """A refusal in the intake result's own shape (method, content type)."""
        assert self.route is not None and self.route.endpoint is not None  # an intake route
        self.result = result = failed(self.route.endpoint.profile, status, message)
        return self.route.endpoint.style.answer(result, self.request.headers, True, [*self._cors(), *(extra or ())])

    def _expired(self) -> bool:
        remaining = self.remaining
        return remaining is not None and remaining <= 0

    def _timeout(self) -> Response:
        """503 ``request timed out`` (prodlytics: 408). Once the body was being
        read, in the result's shape: how many events the sink took."""
        endpoint = self.route.endpoint if self.route is not None else None
        status = endpoint.style.timeout_status if endpoint is not None else 503
        self.refusal = "timeout"
        if self._stream is None:
            return self._refuse(status, "request timed out")
        self._stop((status, "request timed out"), self._in_flight)
        return self._answer(self._stream.close())

    def _head(self, response: Response) -> Response:
        """HEAD: the same headers, no body. Logs intake answers other than 202."""
        result = self.result
        if self.intake.metrics is not None:
            self._record(response.status)
        if result is not None and result.status != 202:
            first = result.errors[0].message if result.errors else ""
            logger.info(
                "%s %s: %d, %d accepted: %s",
                self.request.path,
                self.request.client,
                result.status,
                result.accepted,
                first,
                extra={
                    "route": self.request.path,
                    "client": self.request.client,
                    "status": result.status,
                    "accepted": result.accepted,
                    "error": first,
                },
            )
        if self.request.method == "HEAD" and response.body:
            return replace(response, body=b"")
        return response
