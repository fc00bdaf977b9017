"""IntakeStream: the sans-I/O push core (decode -> lines -> classify -> validate)."""

from __future__ import annotations

import gc
import re
from typing import Any

import orjson

from ._decode import make_decoder
from ._errors import DecodeError, EventError, Fatal, NdintakeError
from ._event import Event
from ._limits import Limits
from ._lines import LineSplitter
from ._profiles import get_profile
from ._result import MAX_EVENT_ERRORS, IntakeResult
from ._schemas import Validator

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_QUOTE = re.compile(rb"[\"']")
_BLANK = frozenset(b" \t\r\n\f\v")
_TRAILING = ("unexpected content after document", "trailing characters")  # orjson's wordings


def _first_key(line: bytes) -> str:
    """The first quoted string of a line: how APM Server tells a line's type."""
    match = _QUOTE.search(line)
    if match is None:
        return ""
    start = match.end()
    end = line.find(match.group(), start)
    return line[start : end if end >= 0 else len(line)].decode("utf-8", "replace")


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace")


class _BadLine(Exception):
    """Internal: a line that cannot become an event; carries its message."""


class IntakeStream:
    """Validate one request body pushed in as chunks (sans-I/O).

    ``feed(chunk)`` returns the events accepted from the lines that chunk
    completed; ``close()`` ends the body and returns the :class:`IntakeResult`.
    Bad input never raises: it ends up in the result. A fatal error makes the
    stream ``finished``: later ``feed`` calls are no-ops.

    ``content_encoding``: the request's ``Content-Encoding`` (``gzip``,
    ``deflate``, ``zstd``, ``br``, ``identity`` or a comma list); None sniffs the
    magic bytes. ``strict``: refuse bytes after a line's JSON value (APM Server
    ignores them).
    """

    def __init__(
        self,
        *,
        profile: str = "apm",
        content_encoding: str | None = None,
        limits: Limits | None = None,
        strict: bool = False,
    ) -> None:
        self._profile = get_profile(profile)
        self.limits = limits if limits is not None else self._profile.limits
        self.strict = strict
        self._decoder = make_decoder(content_encoding)
        self._lines = LineSplitter(self.limits.max_event_size)
        self._metadata_keys = self._profile.metadata
        self._event_keys = self._profile.events
        # key -> (kind, accept check, keep predicate or None): one lookup per line
        self._table = {
            key: (v.kind, v.accept(), self._profile.keep.get(v.kind)) for key, v in self._event_keys.items()
        }
        self._counted = 0  # events of the current feed already added to _accepted
        self.metadata: dict[str, Any] | None = None
        self._errors: list[EventError] = []
        self._invalid = 0
        self._dropped = 0
        self._accepted = 0
        self._fatal: EventError | None = None
        self._line_no = 0
        self._size = 0
        self._out: list[Event] = []
        self._result: IntakeResult | None = None

    @property
    def finished(self) -> bool:
        """True once a fatal error stopped the request."""
        return self._fatal is not None

    @property
    def accepted(self) -> int:
        """Events accepted so far."""
        return self._accepted

    def feed(self, data: bytes) -> list[Event]:
        """Push the next chunk of the (possibly compressed) body."""
        if self._result is not None:
            raise NdintakeError("feed() after close()")
        if self._fatal is not None or not data:
            return []
        self._out = events = []
        self._counted = 0
        # Parsed events hold no reference cycles: pausing the cyclic GC while a
        # chunk is processed saves its repeated scans of the young objects.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            self._guard(self._decoder.decode, data, self._take_bytes)
        finally:
            if paused:
                gc.enable()
        self._out = []
        return events

    def close(self) -> IntakeResult:
        """End of body: finish decoding, take the last line, and return the result."""
        if self._result is not None:
            return self._result
        self._out = events = []
        self._counted = 0
        if self._fatal is None:
            self._guard(self._decoder.finish, self._take_bytes)
        if self._fatal is None:
            last = self._lines.flush()
            if last is not None:
                self._guard(self._take_last, last)
        errors = self._errors + ([self._fatal] if self._fatal else [])
        self._result = IntakeResult(
            accepted=self._accepted,
            errors=errors,
            status=max((e.status for e in errors), default=202),
            invalid=self._invalid,
            dropped=self._dropped,
            profile=self._profile.name,
            final_events=events,
            _render=self._profile.render,
        )
        return self._result

    def fail(self, status: int, message: str) -> None:
        """Stop the request with a fatal error from outside (queue full, timeout...)."""
        if self._fatal is None:
            self._fatal = EventError(message=message, status=status, fatal=True)

    # -- internals -------------------------------------------------------

    def _guard(self, step: Any, *args: Any) -> None:
        """Run a step; turn decoder errors and fatal errors into the fatal result."""
        try:
            step(*args)
        except Fatal as exc:
            self._fatal = exc.error
        except DecodeError as exc:
            self._fatal = self._decode_failure(exc)

    def _decode_failure(self, exc: DecodeError) -> EventError:
        if exc.status is not None:
            return EventError(message=str(exc), status=exc.status, fatal=True)
        if exc.at_header:
            return EventError(message=f"data decoding error: {exc}", status=400, fatal=True)
        if self.metadata is None:
            pending = self._lines.pending()
            return EventError(message=str(exc), document=_text(pending) or None, status=400, fatal=True)
        return EventError(message=f"cannot handle stream: {exc}", status=500, fatal=True)

    def _take_last(self, line: bytes) -> None:
        if self.metadata is None:
            self._line_no += 1
            raise Fatal(400, "EOF while reading metadata", _text(line), self._line_no)
        self._take_lines([line])

    def _take_bytes(self, piece: bytes) -> None:
        """The decoders' sink: count, cap, split into lines."""
        size = self._size + len(piece)
        limit = self.limits.max_body_size
        if size > limit:
            self._take_lines(self._lines.split(piece[: limit - self._size]))
            self._size = limit
            raise Fatal(413, f"request body too large: more than {limit} bytes after decompression")
        self._size = size
        lines = self._lines.split(piece)
        if lines:
            self._take_lines(lines)

    def _take_lines(self, lines: list[bytes]) -> None:
        """The per-line loop: the hot path, kept flat on purpose."""
        if self.metadata is None:
            self._line_no += 1
            self._take_metadata(lines[0])
            lines = lines[1:]
        max_size = self.limits.max_event_size
        table = self._table
        out = self._out
        line_no = self._line_no
        try:
            for line in lines:
                line_no += 1
                if len(line) >= max_size:
                    self._line_no = line_no
                    self._reject(line[:max_size], "event exceeded the permitted size")
                    continue
                if not line or (line[0] in _BLANK and not line.strip()):
                    continue
                try:
                    obj = _loads(line)
                except _JSONDecodeError:
                    obj = None
                if type(obj) is dict:
                    for key in obj:  # the first key: the event type
                        break
                    else:
                        key = None
                    entry = table.get(key)
                    if entry is not None:
                        value = obj[key]
                        if type(value) is dict and entry[1](value):
                            if entry[2] is None or entry[2](value):
                                out.append(Event(entry[0], value, line, line_no))
                            else:
                                self._dropped += 1
                            continue
                self._line_no = line_no
                self._take_event(line)
        finally:
            self._line_no = line_no
            self._accepted += len(out) - self._counted
            self._counted = len(out)

    def _take_metadata(self, line: bytes) -> None:
        max_size = self.limits.max_event_size
        if len(line) >= max_size:
            raise Fatal(400, "event exceeded the permitted size", _text(line[:max_size]), self._line_no)
        try:
            key, value = self._parse(line, self._metadata_keys)
        except _BadLine as exc:
            raise Fatal(400, str(exc), _text(line), self._line_no) from None
        except KeyError:
            raise Fatal(400, self._profile.metadata_required, _text(line) or None, self._line_no) from None
        validator = self._metadata_keys[key]
        if type(value) is not dict or not validator.accept()(value):
            message = validator.refusal(value)
            if message is not None:
                raise Fatal(400, message, _text(line), self._line_no)
        self.metadata = value

    def _take_event(self, line: bytes) -> None:
        """The slow path of one line: anything but a valid, kept event."""
        try:
            key, value = self._parse(line, self._event_keys)
        except _BadLine as exc:
            self._reject(line, str(exc))
            return
        except KeyError as exc:
            self._reject(line, f'did not recognize object type: "{exc.args[0]}"')
            return
        validator = self._event_keys[key]
        if type(value) is not dict or not validator.accept()(value):
            message = validator.refusal(value, explain=len(self._errors) < MAX_EVENT_ERRORS)
            if message is not None:
                self._reject(line, message)
                return
        keep = self._profile.keep.get(validator.kind)
        if keep is not None and not keep(value):
            self._dropped += 1
            return
        self._out.append(Event(validator.kind, value, line, self._line_no))

    def _parse(self, line: bytes, known: dict[str, Validator]) -> tuple[str, Any]:
        """The line's type key and the value under it.

        Raises KeyError(key) for an unknown type, _BadLine for broken JSON.
        """
        try:
            obj = _loads(line)
        except _JSONDecodeError as exc:
            obj = self._parse_prefix(line, exc, known)
        if type(obj) is dict and obj:
            key = next(iter(obj))
            if key in known:
                return key, obj[key]
            raise KeyError(key)
        key = _first_key(line)
        if key in known:
            raise _BadLine(f"decode error: data read error: {key}: expected an object")
        raise KeyError(key)

    def _parse_prefix(self, line: bytes, exc: _JSONDecodeError, known: dict[str, Validator]) -> Any:
        """Broken JSON: accept a complete value followed by junk (as APM Server
        does, unless strict), else say why, or that the type is unknown."""
        if not self.strict and exc.msg.startswith(_TRAILING):
            try:
                return _loads(line.decode("utf-8")[: exc.pos])
            except (UnicodeDecodeError, _JSONDecodeError):
                pass
        key = _first_key(line)
        if key not in known:
            raise KeyError(key)
        raise _BadLine(f"decode error: data read error: {exc}")

    def _reject(self, line: bytes, message: str) -> None:
        """Count a bad line; keep its error while fewer than five are kept."""
        self._invalid += 1
        if len(self._errors) < MAX_EVENT_ERRORS:
            self._errors.append(EventError(message=message, document=_text(line), line=self._line_no))
