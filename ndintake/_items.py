"""Split a JSON body into items: an array's elements, NDJSON lines, or whole documents."""

from __future__ import annotations

import json
import weakref
from typing import TYPE_CHECKING, Any, Callable

import ijson
import orjson

from ._envelope import parse_line
from ._errors import DecodeError, EventError, Fatal
from ._event import Event
from ._lines import LineSplitter

if TYPE_CHECKING:
    from ._profiles import Profile
    from ._stream import IntakeStream

try:
    _ijson = ijson.get_backend("yajl2_c")
except ImportError:  # pragma: no cover - the C backend ships in ijson's wheels
    _ijson = ijson

_BLANK = b" \t\r\n\f\v"


class JsonItems:
    """Push decoded bytes in; items come out one at a time.

    The first non-blank byte decides the body's form: ``[`` is an array, whose
    elements are streamed one by one with ijson (never the whole array in
    memory); anything else is NDJSON, one item per line (a single object without
    a newline is the one-line case), given to ``take_line(line, line_no)``. If
    the first line is a lone ``{`` (a pretty-printed object), the body is read
    as a sequence of JSON documents instead (any other first line that does not
    parse is one bad NDJSON item, and the lines after it still count). Items ijson builds go
    to ``take_value(value, line_no)`` (line_no 0: unknown). A syntax error inside
    an array or a document sequence ends the body (fatal 400); a bad NDJSON line
    is just a bad item.
    """

    def __init__(
        self, max_line: int, take_line: Callable[[bytes, int], None], take_value: Callable[[Any, int], None]
    ) -> None:
        self._take_line = take_line
        self._take_value = take_value
        self._lines = LineSplitter(max_line)
        self._head: list[bytes] = []  # body bytes held until the form is known
        self._seen_text = False  # a non-blank byte was seen in the head
        self._form = ""  # "", "array", "lines" or "documents"
        self._line_no = 0
        self._items: list[Any] = ijson.sendable_list()
        self._parser: Any = None
        self._count = 0

    def feed(self, piece: bytes) -> None:
        if not self._form:
            piece = self._decide(piece, final=False)
        if self._form == "lines":
            for line in self._lines.split(piece):
                self._line_no += 1
                self._take_line(line, self._line_no)
        elif self._form and piece:
            self._parse(piece)

    def finish(self) -> None:
        if not self._form:
            replay = self._decide(b"", final=True)
            if not self._form:
                return  # an empty or blank body: no items
            self.feed(replay)
        if self._form == "lines":
            last = self._lines.flush()
            if last is not None:
                self._line_no += 1
                self._take_line(last, self._line_no)
            return
        try:
            self._parser.close()
        except ijson.JSONError as exc:
            self._deliver()
            raise self._malformed(exc) from None
        self._deliver()

    def _decide(self, piece: bytes, *, final: bool) -> bytes:
        """Hold the head until the form is known; then return it all, to replay."""
        self._head.append(piece)
        if not self._seen_text:
            text = piece.lstrip(_BLANK)
            if not text:
                return b""
            self._seen_text = True
            if text[0] == ord("["):
                return self._start("array")
            newline = text.find(b"\n")
        else:
            newline = piece.find(b"\n")
        if newline < 0 and not final:
            return b""
        if not self._seen_text:
            return b""
        head = b"".join(self._head)
        first = head.lstrip(_BLANK).split(b"\n", 1)[0]
        return self._start("documents" if first.strip(_BLANK) == b"{" else "lines")

    def _start(self, form: str) -> bytes:
        self._form = form
        if form == "array":
            self._parser = _ijson.items_coro(self._items, "item", use_float=True)
        elif form == "documents":
            self._parser = _ijson.items_coro(self._items, "", use_float=True, multiple_values=True)
        head, self._head = b"".join(self._head), []
        return head

    def _parse(self, piece: bytes) -> None:
        try:
            self._parser.send(piece)
        except ijson.JSONError as exc:
            self._deliver()
            raise self._malformed(exc) from None
        self._deliver()

    def _deliver(self) -> None:
        items = self._items
        for item in items:
            self._count += 1
            self._take_value(item, 0)
        del items[:]

    def _malformed(self, exc: Exception) -> Fatal:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        what = "JSON array" if self._form == "array" else "JSON document"
        return Fatal(400, f"malformed {what} after item {self._count}: {reason}")


def _serialize(value: Any) -> bytes:
    """``value`` as compact JSON; ValueError if JSON cannot carry it."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # deeper than 254 levels, big ints, lone surrogates
        pass
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except RecursionError:
        raise ValueError("recursion limit exceeded") from None
    except ValueError as exc:  # infinity or NaN (1e400 read as a float)
        raise ValueError(f"number out of range ({exc})") from None
    return text.encode("ascii")


class ItemReader:
    """Validates each item of a JSON body whole, for profiles without envelopes
    (prodlytics): no metadata line, one kind, messages naming the item's index."""

    def __init__(self, stream: IntakeStream, profile: Profile) -> None:
        assert profile.item is not None
        self._stream = weakref.proxy(stream)  # the stream owns its reader: no cycle
        self._validator = profile.item
        self._accept = profile.item.accept()
        self._max = stream.limits.max_event_size
        self._items = JsonItems(self._max, self._take_line, self._take_value)
        self._index = 0  # 0-based index of the next item

    def feed(self, piece: bytes) -> None:
        self._items.feed(piece)

    def finish(self) -> None:
        self._items.finish()

    def stream_error(self, exc: DecodeError) -> EventError:
        """A read error mid-body: the body is malformed (400)."""
        return EventError(message=f"cannot read body after item {self._index}: {exc}", status=400, fatal=True)

    def _take_line(self, line: bytes, line_no: int) -> None:
        if not line.strip():
            return
        if len(line) >= self._max:
            self._reject(line[: self._max], "item exceeded the permitted size", line_no)
            return
        try:
            value = parse_line(line, self._stream.strict)
        except orjson.JSONDecodeError as exc:
            self._reject(line, f"decode error: {exc}", line_no)
            return
        self._take(value, line, line_no)

    def _take_value(self, value: Any, line_no: int) -> None:
        """An item ijson built (array element, document): written back as JSON and
        then taken exactly like an NDJSON line, so every body form decides an
        item the same way (numbers, depth and strings included)."""
        try:
            raw = _serialize(value)
        except ValueError as exc:  # what no JSON line could carry (an infinite number...)
            self._reject(b"", f"decode error: {exc}", line_no)
            return
        self._take_line(raw, line_no)

    def _take(self, value: Any, raw: bytes, line_no: int) -> None:
        if type(value) is dict and self._accept(value):
            message = None
        else:
            message = self._validator.refusal(value, explain=self._stream.explaining)
        if message is None:
            self._index += 1
            self._stream.out.append(Event(self._validator.kind, value, raw, line_no))
        else:
            self._reject(raw, message, line_no)

    def _reject(self, raw: bytes, message: str, line_no: int) -> None:
        self._stream.reject(raw, f"item {self._index}: {message}", line_no or None)
        self._index += 1
