"""IntakeStream: the sans-I/O push core (decode -> read -> validate -> result)."""

from __future__ import annotations

import gc
from typing import Any, Callable, Iterator

from ._decode import make_decoder
from ._envelope import text
from ._errors import DecodeError, EventError, Fatal, NdintakeError
from ._event import Event
from ._limits import Limits
from ._profiles import get_profile
from ._result import MAX_EVENT_ERRORS, IntakeResult


#: ``feed_paced`` cuts chunks so that each step decodes about this much.
PACE_TARGET = 256 * 1024
_PACE_MIN = 256  # smallest step, in input bytes
_PACE_GROWTH = 16  # a step is at most this many times the last one


class IntakeStream:
    """Validate one request body pushed in as chunks (sans-I/O).

    ``feed(chunk)`` returns the events accepted from the lines that chunk
    completed; ``close()`` ends the body and returns the :class:`IntakeResult`.
    Bad input never raises: it ends up in the result. A fatal error makes the
    stream ``finished``: later ``feed`` calls are no-ops.

    ``profile``: ``"apm"`` (Elastic APM intake v2) or ``"prodlytics"`` (Datadog
    Product Analytics server-side events). ``content_encoding``: the request's
    ``Content-Encoding`` (``gzip``, ``deflate``, ``zstd``, ``br``, ``identity`` or
    a comma list); None sniffs the magic bytes. ``limits``: the profile's
    defaults unless given. ``strict``: refuse bytes after a line's JSON value
    (APM Server ignores them). ``sink``: if given, accepted events go to it in
    batches as soon as each decoded piece (at most 64 KiB) is read, and
    ``feed``/``close`` hand back none; memory then stays bounded even when one
    small compressed chunk holds a great many events.
    """

    def __init__(
        self,
        *,
        profile: str = "apm",
        content_encoding: str | None = None,
        limits: Limits | None = None,
        strict: bool = False,
        sink: Callable[[list[Event]], object] | None = None,
    ) -> None:
        self._profile = get_profile(profile)
        self._sink = sink
        self.limits = limits if limits is not None else self._profile.limits
        self.strict = strict
        #: The parsed metadata line (APM profiles), once read.
        self.metadata: dict[str, Any] | None = None
        self._decoder = make_decoder(content_encoding)
        self._reader = self._profile.reader(self, self._profile)
        self._errors: list[EventError] = []
        self._invalid = 0
        self.dropped = 0  # valid events the protocol discards without an error
        self._accepted = 0
        self._fatal: EventError | None = None
        self._size = 0
        self.out: list[Event] = []  # events accepted during the current feed/close
        self._result: IntakeResult | None = None
        self._pace = _PACE_MIN  # the next feed_paced step, in input bytes

    @property
    def finished(self) -> bool:
        """True once a fatal error stopped the request."""
        return self._fatal is not None

    @property
    def accepted(self) -> int:
        """Events accepted so far."""
        return self._accepted

    @property
    def explaining(self) -> bool:
        """False once five event errors are kept: later ones get no message built."""
        return len(self._errors) < MAX_EVENT_ERRORS

    def feed(self, data: bytes) -> list[Event]:
        """Push the next chunk of the (possibly compressed) body."""
        if self._result is not None:
            raise NdintakeError("feed() after close()")
        if self._fatal is not None or not data:
            return []
        return self._run(self._decoder.decode, data)

    def feed_paced(self, data: bytes) -> Iterator[list[Event]]:
        """Like :meth:`feed`, in steps: yields the events of each part of ``data``
        (a list, maybe empty), cut so that a step decodes about ``PACE_TARGET``
        bytes (a few MiB at most) however much the body inflates. For callers who
        cannot take events inside ``feed()`` (an async sink): memory stays bounded
        when one small compressed chunk holds a great many events. Stops early
        once the stream is finished (a fatal error, or ``fail()`` between steps).
        """
        start, size = 0, len(data)
        while start < size and self._fatal is None:
            step = self._pace
            part = data if start == 0 and step >= size else data[start : start + step]
            before = self._size
            events = self.feed(part)
            start += len(part)
            fits = len(part) * PACE_TARGET // max(self._size - before, 1)
            self._pace = max(_PACE_MIN, min(fits, len(part) * _PACE_GROWTH))
            yield events

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

    def reject(self, document: bytes, message: str, line: int | None) -> None:
        """Count a bad line or item; keep its error while fewer than five are kept."""
        self._invalid += 1
        if len(self._errors) < MAX_EVENT_ERRORS:
            self._errors.append(EventError(message=message, document=text(document), line=line))

    def count_refused(self, count: int) -> None:
        """Count ``count`` bad lines past the fifth kept error (no message to keep)."""
        self._invalid += count

    # -- internals -------------------------------------------------------

    def _make_result(self, final_events: list[Event]) -> IntakeResult:
        errors = self._errors + ([self._fatal] if self._fatal else [])
        return IntakeResult(
            accepted=self._accepted,
            errors=errors,
            status=max((e.status for e in errors), default=202),
            invalid=self._invalid,
            dropped=self.dropped,
            profile=self._profile.name,
            final_events=final_events,
            _render=self._profile.render,
        )

    def _run(self, step: Callable[..., None], *args: Any) -> list[Event]:
        """Run a step of the body; collect the events it accepts; turn decoder
        errors and fatal errors into the fatal result."""
        self.out = []
        # Parsed events hold no reference cycles: pausing the cyclic GC while a
        # chunk is processed saves its repeated scans of the young objects.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            step(*args, self._take_bytes)
        except Fatal as exc:
            self._fatal = exc.error
        except DecodeError as exc:
            self._fatal = self._decode_failure(exc)
        finally:
            if paused:
                gc.enable()
        return self._deliver()

    def _deliver(self) -> list[Event]:
        """Count the events accepted since the last delivery; hand them to the sink
        if there is one (then return none), else return them."""
        events, self.out = self.out, []
        self._accepted += len(events)
        if self._sink is None:
            return events
        if events:
            self._sink(events)
        return []

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
        if self._sink is not None and self.out:
            self._deliver()
