"""IntakeStream: the sans-I/O push core (decode -> read -> validate -> result)."""

from __future__ import annotations

import gc
from time import perf_counter
import logging
import threading
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

from .decode import make_decoder
from .errors import DecodeError, EventError, Fatal, NdintakeError, QueueFull
from .event import Event
from .limits import Limits
from .context import ReaderContext
from .profile import Profile, get_profile
from .result import IntakeResult


#: ``feed_paced`` cuts chunks so that each step decodes about this much...
PACE_TARGET = 256 * 1024
#: ...and takes about this many seconds (a server's event loop stays responsive).
PACE_SECONDS = 0.005
_PACE_MIN = 4  # smallest step, in input bytes (4 bytes of zstd can inflate to 128 KiB)
_PACE_GROWTH = 16  # a step is at most this many times the last one

#: The fatal errors of a sink that raised, worded as APM Server words them.
SINK_QUEUE_FULL = (503, "cannot handle stream: cannot process batch: queue is full")
SINK_FAILED = (500, "cannot handle stream: cannot process batch: internal error")

logger = logging.getLogger("ndintake")

_gc_lock = threading.Lock()
_gc_pausers = 0  # threads inside gc_paused() right now
_gc_resume = False  # whether the first of them found the GC enabled


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC around ndintake's own decode/parse/validate work, never
    around user code (only used when the stream has no sink). Parsed events hold
    no reference cycles, and a chunk makes thousands of new containers; without
    the pause the GC scans them again and again while they pile up in the list
    ``feed`` returns (5-15% of the time of a feed, measured).

    Process-wide and thread-safe: a counter under a lock, so the GC is disabled
    by the first thread to enter and enabled again by the last to leave, and only
    if it was enabled to begin with (a caller's ``gc.disable()`` is respected).
    """
    global _gc_pausers, _gc_resume
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_resume = gc.isenabled()
            if _gc_resume:
                gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_resume:
                gc.enable()


class IntakeStream:
    """Validate one request body pushed in as chunks (sans-I/O).

    ``feed(chunk)`` returns the events accepted from the lines that chunk
    completed; ``close()`` ends the body and returns the :class:`IntakeResult`.
    Bad input never raises: it ends up in the result. A fatal error makes the
    stream ``finished``: later ``feed`` calls are no-ops.

    ``profile``: ``"apm"`` (Elastic APM intake v2 and RUM v3 lines), ``"rum"``
    (the RUM routes, read exactly as ``apm``), ``"prodlytics"`` (Datadog
    Product Analytics server-side events), another registered name, or a
    :class:`Profile` (e.g. from :func:`ndintake.define_profile`). ``content_encoding``: the request's
    ``Content-Encoding`` (``gzip`` or ``x-gzip``, ``deflate``, ``zstd``, ``br``,
    ``identity`` or a comma list of at most ``MAX_CODINGS``); None sniffs the
    magic bytes. ``limits``: the profile's defaults unless given. ``strict``:
    refuse bytes after a line's JSON value (APM Server ignores them).

    ``sink``: if given, accepted events go to it in batches as soon as each
    decoded piece (at most 64 KiB) is read, and ``feed``/``close`` hand back
    none; memory then stays bounded even when one small compressed chunk holds a
    great many events. A batch counts as accepted once the sink has returned. A
    sink that raises stops the request as the HTTP layer does: with
    :class:`QueueFull`, 503 ``cannot handle stream: cannot process batch: queue
    is full``; with any other exception (logged on the ``ndintake`` logger), 500
    ``cannot handle stream: cannot process batch: internal error``. The refused
    batch is not counted, and the exception does not propagate out of ``feed``
    or ``close``.
    """

    def __init__(
        self,
        *,
        profile: str | Profile = "apm",
        content_encoding: str | None = None,
        limits: Limits | None = None,
        strict: bool = False,
        sink: Callable[[list[Event]], object] | None = None,
    ) -> None:
        self._profile = get_profile(profile)
        self._sink = sink
        self.limits = limits if limits is not None else self._profile.limits
        self.strict = strict
        self._decoder = make_decoder(content_encoding)
        # what the reader reports to; it holds no reference to the stream
        self._context = context = ReaderContext(self.limits, strict=strict, max_errors=self._profile.max_errors)
        self._reader = self._profile.reader(context, self._profile)
        self._accepted = 0
        self._fatal: EventError | None = None
        self._fatal_from_sink: EventError | None = None  # a sink that raised: nothing more goes to it
        self._size = 0
        self._result: IntakeResult | None = None
        self._pace = _PACE_MIN  # the next feed_paced step, in input bytes
        #: True when the fatal error is the content decoder's (bad or unknown coding, corrupt data).
        self.decode_failed = False

    @property
    def finished(self) -> bool:
        """True once a fatal error stopped the request."""
        return self._fatal is not None

    @property
    def accepted(self) -> int:
        """Events accepted so far."""
        return self._accepted

    @property
    def decoded_bytes(self) -> int:
        """Body bytes read so far, after decompression."""
        return self._size

    @property
    def profile(self) -> Profile:
        """The profile this body is read with."""
        return self._profile

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The parsed metadata line (profiles with one), once read."""
        return self._context.metadata

    @property
    def explaining(self) -> bool:
        """False once the profile's cap of event errors (five) is kept: later ones get no message built."""
        return self._context.explaining

    def feed(self, data: bytes) -> list[Event]:
        """Push the next chunk of the (possibly compressed) body."""
        if self._result is not None:
            raise NdintakeError("feed() after close()")
        if self._fatal is not None or not data:
            return []
        return self._run(self._decode_all, data)

    def feed_paced(self, data: bytes) -> Iterator[list[Event]]:
        """Like :meth:`feed`, in steps: yields the events of each part of ``data``
        (a list, maybe empty), cut so that a step decodes about ``PACE_TARGET``
        bytes and takes about ``PACE_SECONDS``, however much the body inflates and
        however cheap or costly its lines are. For callers who cannot take events
        inside ``feed()`` (an async sink) and for servers that must not hold their
        event loop: memory and the time between steps stay bounded when one small
        compressed chunk holds a great many events or junk lines. Stops early
        once the stream is finished (a fatal error, or ``fail()`` between steps).
        """
        if self._result is not None:
            raise NdintakeError("feed_paced() after close()")
        start, size = 0, len(data)
        while start < size and self._fatal is None:
            step = self._pace
            part = data if start == 0 and step >= size else data[start : start + step]
            before = self._size
            began = perf_counter()
            events = self._run(self._decoder.decode, part)  # one decode call: its output is bounded
            took = perf_counter() - began
            start += len(part)
            by_size = len(part) * PACE_TARGET // max(self._size - before, 1)
            by_time = int(len(part) * PACE_SECONDS / took) if took > 0 else by_size
            self._pace = max(_PACE_MIN, min(by_size, by_time, len(part) * _PACE_GROWTH))
            yield events
            while self._fatal is None and self._decoder.pending:  # output owed for what was fed
                yield self._run(self._decoder.decode, b"")

    def close(self) -> IntakeResult:
        """End of body: finish decoding, take the last line, and return the result."""
        if self._result is None:
            events = self._run(self._finish) if self._fatal is None else []
            self._result = self._make_result(events)
        return self._result

    def fail(self, status: int, message: str, *, refused: int = 0) -> None:
        """Stop the request with a fatal error from outside (queue full, rate
        limited, timeout...). ``refused``: accepted events the caller could not
        take after all (a batch its queue refused); they no longer count.

        Works at any time: after an earlier fatal error only ``refused`` is
        applied (the first fatal error stands); after ``close()`` the result is
        made again, and ``close()`` returns the new one.
        """
        if self._fatal is None:
            self._fatal = EventError(message=message, status=status, fatal=True)
        self._accepted -= min(refused, self._accepted)
        if self._result is not None:
            self._result = self._make_result(self._result.final_events)

    # -- internals -------------------------------------------------------

    def _make_result(self, final_events: list[Event]) -> IntakeResult:
        context = self._context
        errors = context.errors + ([self._fatal] if self._fatal else [])
        return IntakeResult(
            accepted=self._accepted,
            errors=errors,
            status=max((e.status for e in errors), default=202),
            invalid=context.invalid,
            dropped=context.dropped,
            profile=self._profile.name,
            final_events=final_events,
            _render=self._profile.render,
        )

    def _run(self, step: Callable[..., None], *args: Any) -> list[Event]:
        """Run a step of the body; collect the events it accepts; turn decoder
        errors and fatal errors into the fatal result."""
        self._context.out = []
        # Without a sink no user code runs inside the step: the GC is paused for
        # all of it. With one, it is not paused at all: the sink runs between the
        # pieces, and a pause around each piece's parsing alone saved nothing
        # measurable (the events are still alive when the GC runs after it).
        with gc_paused() if self._sink is None else nullcontext():
            try:
                step(*args, self._take_bytes)
            except Fatal as exc:
                self._fatal = exc.error
            except DecodeError as exc:
                self._fatal = self._decode_failure(exc)
                self.decode_failed = True
        return self._deliver()

    def _deliver(self) -> list[Event]:
        """Hand the events accepted since the last delivery to the sink if there is
        one (then return none), else return them; count them once delivered. A
        sink that raises makes the stream fail (the batch is not counted)."""
        context = self._context
        events, context.out = context.out, []
        if self._sink is None:
            self._accepted += len(events)
            return events
        if events and self._fatal_from_sink is None:
            try:
                self._sink(events)
            except QueueFull:
                self._sink_failed(SINK_QUEUE_FULL)
            except Exception:
                logger.exception("the sink failed on a batch of %d events", len(events))
                self._sink_failed(SINK_FAILED)
            else:
                self._accepted += len(events)
        return []

    def _decode_all(self, data: bytes, sink: Callable[[bytes], None]) -> None:
        self._decoder.decode(data, sink)
        while self._decoder.pending:
            self._decoder.decode(b"", sink)

    def _sink_failed(self, error: tuple[int, str]) -> None:
        self._fatal_from_sink = EventError(message=error[1], status=error[0], fatal=True)
        if self._fatal is None:
            self._fatal = self._fatal_from_sink

    def _finish(self, sink: Callable[[bytes], None]) -> None:
        self._decoder.finish(sink)
        self._reader.finish()

    def _decode_failure(self, exc: DecodeError) -> EventError:
        if exc.status is not None:
            return EventError(message=str(exc), status=exc.status, fatal=True)
        if exc.at_header:
            return EventError(message=f"data decoding error: {exc}", status=400, fatal=True)
        return self._reader.stream_error(exc)

    def _take_bytes(self, piece: bytes) -> None:
        """The decoders' sink: count, cap, hand on to the reader."""
        size = self._size + len(piece)
        limit = self.limits.max_body_size
        if size > limit:
            self._reader.feed(piece[: limit - self._size])
            self._size = limit
            raise Fatal(413, f"request body too large: more than {limit} bytes after decompression")
        self._size = size
        self._reader.feed(piece)
        if self._sink is not None and self._context.out:
            self._deliver()
            if self._fatal_from_sink is not None:
                raise Fatal(self._fatal_from_sink.status, self._fatal_from_sink.message)  # stop decoding
