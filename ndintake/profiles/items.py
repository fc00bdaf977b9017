"""JSON items: split a body into items (an array's elements, NDJSON lines, or whole
documents) and validate each whole; the reader of prodlytics and of schema profiles."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any, Callable, Sequence

import orjson

from ..core.bytecheck import Check, envelope_checker, item_checker
from ..core.context import ReaderContext
from ..core.errors import DecodeError, EventError, Fatal
from ..core.event import Event
from ..core.jsonline import only_value, parse_line, text
from ..core.lines import BLANK, BLANK_BYTES, LineSplitter, LineStart, count_blank
from ..core.profile import FORMS
from ..core.schemas import Validator

if TYPE_CHECKING:
    from ..core.profile import Profile

#: The start of an NDJSON line that may be an object: "{" after blanks. Any other
#: line parses to no object, or not at all (see apm.envelope._MAYBE_EVENT): it is
#: blank or refused. (\f and \v count as blanks here: such lines are tried needlessly.)
_MAYBE_OBJECT = LineStart(rb"[ \t\r\f\v]*\{")
_loads = orjson.loads
#: The forms of JsonItems as a profile names them.
_FORM_NAMES = {"lines": "ndjson", "array": "array", "documents": "object"}
Sift = Callable[[list[bytes], Sequence[int]], tuple[list[bytes], Sequence[int]]]


class JsonItems:
    """Push decoded bytes in; items come out one at a time, as raw bytes.

    The first non-blank byte decides the body's form: ``[`` is an array, whose
    elements are cut out one by one as they arrive (never the whole array in
    memory); anything else is NDJSON, one item per line (a single object without
    a newline is the one-line case). If the first line is a lone ``{`` (a
    pretty-printed object), the body is read as a sequence of JSON documents
    instead. Each item goes to ``take(raw, line_no)`` (line_no 0 for an array
    element), so it is parsed and judged the same way whatever the body's form,
    and a broken item is just a bad item: only a broken array (a missing
    comma, junk after the closing bracket, a truncated body) ends the request.
    A form not in ``forms`` (``ndjson``, ``array``, ``object`` for documents)
    ends it too (400).
    """

    def __init__(
        self,
        max_item: int,
        take: Callable[[bytes, int, bool], None],
        sift: Sift | None = None,
        forms: frozenset[str] = FORMS,
    ) -> None:
        self._take = take  # (raw, line_no, from_lines)
        self._forms = forms
        self._sift = sift  # (lines, line numbers) -> the lines left to take, with their numbers
        self._lines = LineSplitter(max_item)
        self._values: _Values | None = None
        self._head: list[bytes] = []  # body bytes held until the form is known
        self._seen_text = False  # a non-blank byte was seen in the head
        self._head_size = 0
        self._form = ""  # "", "array", "lines" or "documents"
        self._line_no = 0
        self._max = max_item

    def feed(self, piece: bytes) -> None:
        if not self._form:
            piece = self._decide(piece, final=False)
        if self._form == "lines":
            lines = self._lines.split(piece)
            numbers: Sequence[int] = range(self._line_no + 1, self._line_no + 1 + len(lines))
            self._line_no += len(lines)
            if self._sift is not None and lines:
                lines, numbers = self._sift(lines, numbers)
            for line, line_no in zip(lines, numbers):
                self._take(line, line_no, True)
        elif self._values is not None and piece:
            self._values.feed(piece)

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
                self._take(last, self._line_no, True)
        elif self._values is not None:
            self._values.finish()

    def _decide(self, piece: bytes, *, final: bool) -> bytes:
        """Hold the head until the form is known; then return it all, to replay."""
        self._head.append(piece)
        if not self._seen_text:
            text = piece.lstrip(BLANK)
            if not text:
                return b""
            self._seen_text = True
            if text[0] == ord("["):
                return self._start("array")
            newline = text.find(b"\n")
        else:
            newline = piece.find(b"\n")
        self._head_size += len(piece)
        if newline < 0 and not final and self._head_size < self._max:
            return b""  # (a first line of max_item bytes or more is one too-large item: no need to wait)
        head = b"".join(self._head)
        first = head.lstrip(BLANK).split(b"\n", 1)[0]
        return self._start("documents" if first.strip(BLANK) == b"{" else "lines")

    def _start(self, form: str) -> bytes:
        name = _FORM_NAMES[form]
        if name not in self._forms:
            raise Fatal(400, f"cannot read a body of {name}: this intake takes {', '.join(sorted(self._forms))}")
        self._form = form
        if form != "lines":
            self._values = _Values(form == "array", self._max, lambda raw: self._take(raw, 0, False))
        head, self._head = b"".join(self._head), []
        return head


_NON_BLANK = re.compile(b"[^" + re.escape(BLANK) + b"]")
#: A whole string (skipped in one step), or one structural byte ('"' alone: a
#: string that goes on past this piece).
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},"]')
_IN_STRING = re.compile(rb'["\\]')


class _Values:
    """Cuts a byte stream into top-level JSON values without parsing them: the
    elements of one array, or a sequence of documents. Tracks only strings
    (with escapes) and bracket depth, so any bytes give the same cuts however
    they are split, in memory bounded by ``max_item`` (a longer value is
    refused and skipped, not held)."""

    def __init__(self, array: bool, max_item: int, take: Callable[[bytes], None]) -> None:
        self._array = array
        self._max = max_item
        self._take = take
        self._state = "open" if array else "between"  # open, between, value, after
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._parts: list[bytes] = []
        self._size = 0
        self._count = 0  # values handed on

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state != "value":
                found = _NON_BLANK.search(data, pos)
                if found is None:
                    return
                pos = found.start()
                byte = data[pos]
                if state == "open":  # the array's "[" (the form was chosen from it)
                    self._state, pos = "between", pos + 1
                elif state == "after":
                    raise self._malformed("unexpected content after the array")
                elif self._array and byte == 0x5D:  # "]": the end of the array
                    self._state, pos = "after", pos + 1
                else:
                    self._state, self._depth, self._in_string, self._escape = "value", 0, False, False
                continue
            pos = self._scan(data, pos)

    def _scan(self, data: bytes, pos: int) -> int:
        """Read ``data`` from ``pos`` inside a value; return where reading stopped."""
        start, end = pos, len(data)
        while pos < end:
            if self._in_string:
                if self._escape:
                    self._escape, pos = False, pos + 1
                    continue
                match = _IN_STRING.search(data, pos)
                if match is None:
                    pos = end
                    break
                pos = match.end()
                if match.group() == b"\\":
                    self._escape = True
                else:
                    self._in_string = False
                continue
            match = _TOKEN.search(data, pos)
            if match is not None and len(match.group()) > 1:  # a whole string: skip it
                if not self._array and self._depth == 0:
                    blank = _first_blank(data, pos, match.start())
                    if blank is not None:
                        self._hold(data[start:blank])
                        self._emit()
                        return blank
                pos = match.end()
                continue
            if match is None:
                if not self._array and self._depth == 0:
                    blank = _first_blank(data, pos)
                    if blank is not None:
                        self._hold(data[start:blank])
                        self._emit()
                        return blank
                pos = end
                break
            at, byte = match.start(), data[match.start()]
            if not self._array and self._depth == 0:
                blank = _first_blank(data, pos, at)
                if blank is not None:
                    self._hold(data[start:blank])
                    self._emit()
                    return blank
            pos = at + 1
            if byte == 0x22:  # '"'
                self._in_string = True
            elif byte in (0x5B, 0x7B):  # "[" "{"
                self._depth += 1
            elif byte in (0x5D, 0x7D):  # "]" "}"
                if self._depth == 0 and self._array:  # the array's own "]": the last element ends
                    self._hold(data[start:at])
                    self._emit()
                    self._state = "after"
                    return pos
                self._depth -= 1
                if self._depth == 0 and not self._array:
                    self._hold(data[start:pos])
                    self._emit()
                    return pos
            elif byte == 0x2C and self._depth == 0:  # "," between elements (or junk between documents)
                self._hold(data[start:at])
                self._emit()
                if not self._array:
                    raise self._malformed("unexpected ',' between documents")
                return pos
        self._hold(data[start:pos])
        return pos

    def _hold(self, part: bytes) -> None:
        if self._size < self._max:
            self._parts.append(part[: self._max - self._size])
        self._size += len(part)

    def _emit(self) -> None:
        raw = b"".join(self._parts).strip(BLANK)
        too_large = self._size >= self._max
        self._parts, self._size, self._state = [], 0, "between"
        self._count += 1
        self._take(_TooLarge(raw) if too_large else raw)

    def finish(self) -> None:
        if self._state == "value" and not self._array and self._depth == 0 and not self._in_string:
            self._emit()  # a last scalar document
        if self._array and self._state != "after":
            raise self._malformed("unexpected end of the body inside the array")
        if not self._array and self._state == "value":
            raise self._malformed("unexpected end of the body inside a document")

    def _malformed(self, reason: str) -> Fatal:
        what = "JSON array" if self._array else "JSON document"
        return Fatal(400, f"malformed {what} after item {self._count}: {reason}")


class _TooLarge(bytes):
    """The first ``max_item`` bytes of a value that was longer."""


def _first_blank(data: bytes, pos: int, stop: int | None = None) -> int | None:
    """The first whitespace byte in ``data[pos:stop]``, or None."""
    for index in range(pos, len(data) if stop is None else stop):
        if data[index] in BLANK_BYTES:
            return index
    return None


class ItemReader:
    """Validates each item of a JSON body whole, for profiles without envelopes
    (prodlytics, schema profiles), messages naming the item's index.

    An item's kind is the profile's one ``item`` kind, else the value of its
    ``discriminator`` field, else its first key (an envelope ``{"<kind>":
    {...}}``, whose value is then the event). With ``metadata``, the first item
    is the metadata (under one of its keys for envelopes, else whole), and any
    problem with it is fatal, as on APM's metadata line.
    """

    def __init__(self, context: ReaderContext, profile: Profile) -> None:
        self._context = context
        self._profile = profile
        # one kind (prodlytics): no classification, the hot path stays a plain check
        self._item = (profile.item, profile.item.accept()) if profile.item is not None else None
        self._classify = _classifier(profile)
        self._scanner, self._scanned = _scanner(profile)
        self._max = context.limits.max_event_size
        self._items = JsonItems(self._max, self._take_raw, self._sift, profile.forms)
        self._index = 0  # 0-based index of the next item
        self._junk = False  # an item was refused since the last sift that found no junk
        self._metadata = bool(profile.metadata)  # the metadata item is still to come

    def feed(self, piece: bytes) -> None:
        self._items.feed(piece)

    def finish(self) -> None:
        self._items.finish()

    def stream_error(self, exc: DecodeError) -> EventError:
        """A read error mid-body: the body is malformed (400)."""
        return EventError(message=f"cannot read body after item {self._index}: {exc}", status=400, fatal=True)

    def _sift(self, lines: list[bytes], numbers: Sequence[int]) -> tuple[list[bytes], Sequence[int]]:
        """The junk fast path of NDJSON bodies, once five errors are kept: a
        refused item then only counts (its message, with its index, is not
        kept), so a line whose first non-blank byte is not "{" (it parses to no
        object, or fails: refused, strict or not, as ``_take_raw`` would) is
        counted here unparsed; blank lines are skipped and oversized ones
        refused, as ``_take_raw`` does. The index moves on by the refused count, so it is
        exact again after each piece. Only tried after a piece with junk."""
        if not self._junk or self._context.explaining:
            return lines, numbers
        kept, kept_numbers = _MAYBE_OBJECT.pick(lines, numbers)
        refused = len(lines) - count_blank(lines, self._max) - len(kept)
        self._context.count_refused(refused)
        self._index += refused
        self._junk = refused > 0
        return kept, kept_numbers

    def _take_raw(self, raw: bytes, line_no: int, from_lines: bool) -> None:
        """One item's bytes: an NDJSON line, an array element or a document."""
        # Size first, as the APM reader does: a line cut short while it was read
        # is known only by its start, which may be blank.
        if isinstance(raw, _TooLarge) or len(raw) >= self._max:
            self._reject(raw[: self._max], "item exceeded the permitted size", line_no)
            return
        if from_lines and not raw.strip(BLANK):
            return  # a blank line
        if self._scanner is not None and not self._metadata:
            key = self._scanner(raw)
            if key is not None:  # valid: no schema walk
                kind, envelope = self._scanned[key]
                self._index += 1
                if envelope:  # raw is {"<key>": data}: data parsed when read
                    self._context.out.append(Event(kind, None, raw, line_no, parse=only_value))
                else:
                    self._context.out.append(Event(kind, _loads(raw), raw, line_no))
                return
        try:
            value = parse_line(raw, self._context.strict)
        except orjson.JSONDecodeError as exc:
            self._reject(raw, f"decode error: {exc}", line_no)
            return
        if self._metadata:
            self._take_metadata(value, raw, line_no)
            return
        if self._item is not None:
            (validator, accept), data = self._item, value
        else:
            try:
                validator, accept, data = self._classify(value)
            except _Unclassified as exc:
                self._reject(raw, str(exc), line_no)
                return
        if type(data) is dict and accept(data):
            message = None
        else:
            message = validator.refusal(data, explain=self._context.explaining)
        if message is None:
            self._index += 1
            self._context.out.append(Event(validator.kind, data, raw, line_no))
        else:
            self._reject(raw, message, line_no)

    def _take_metadata(self, value: Any, raw: bytes, line_no: int) -> None:
        metadata = self._profile.metadata
        if self._profile.item is None and self._profile.discriminator is None:  # envelopes
            key = next(iter(value), "") if type(value) is dict else ""
            if key not in metadata:
                self._reject(raw, self._profile.metadata_required, line_no)  # fatal
            validator, value = metadata[key], value[key]
        else:
            validator = next(iter(metadata.values()))
        if not (type(value) is dict and validator.accept()(value)):
            message = validator.refusal(value)
            if message is not None:
                self._reject(raw, f"metadata: {message}", line_no)
        self._metadata = False
        self._context.metadata = value
        self._index += 1

    def _reject(self, raw: bytes, message: str, line_no: int) -> None:
        if self._metadata:  # a body whose metadata is bad is refused whole
            raise Fatal(400, f"item {self._index}: {message}", text(raw), line_no or None)
        self._context.reject(raw, f"item {self._index}: {message}", line_no or None)
        self._index += 1
        self._junk = True


def _scanner(profile: Profile) -> tuple[Check | None, dict[str, tuple[str, bool]]]:
    """The byte scanner of the profile's items (:mod:`ndintake.core.bytecheck`),
    and per key it returns: (kind, whether the line is an envelope). None when
    nothing translates. Compiled once per profile's validators."""
    return _compiled_scanner(profile.item, profile.discriminator, tuple(profile.events.items()))


@cache
def _compiled_scanner(
    item: Validator | None, field: str | None, events: tuple[tuple[str, Validator], ...]
) -> tuple[Check | None, dict[str, tuple[str, bool]]]:
    if item is not None:
        return item_checker(((item.kind, item.schema()),)), {item.kind: (item.kind, False)}
    if field is not None:
        pinned = [(key, _pinned(validator, field, key)) for key, validator in events]
        check = item_checker([(key, schema) for key, schema in pinned if schema is not None])
        return check, {key: (validator.kind, False) for key, validator in events}
    check = envelope_checker(tuple((key, validator.schema()) for key, validator in events))
    return check, {key: (validator.kind, True) for key, validator in events}


def _pinned(validator: Validator, field: str, value: str) -> dict[str, Any] | None:
    """The kind's schema for the items classified under it: the discriminator
    ``field`` required and equal to ``value``. None when that would not be
    exactly so (the field's own schema refuses ``value``, or the schema refuses
    the field): the scanner then leaves the kind to the slow path."""
    schema = validator.schema()
    if not isinstance(schema, dict):
        return None
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return None
    if field in properties:
        if not Validator.from_schema("field", {"type": "object", "properties": {field: properties[field]}}).accept()(
            {field: value}
        ):
            return None
    elif schema.get("additionalProperties", True) is not True or "patternProperties" in schema:
        return None
    required = list(schema.get("required", ()))
    return {**schema, "properties": {**properties, field: {"const": value}},
            "required": required + [field] if field not in required else required}


class _Unclassified(Exception):
    """An item whose kind cannot be told; carries the message."""


Classify = Callable[[Any], tuple[Validator, Callable[[Any], bool], Any]]


def _classifier(profile: Profile) -> Classify:
    """``classify(item) -> (validator, its accept check, the event's data)`` for
    the profile's kinds (none with one ``item`` kind); raises
    :class:`_Unclassified` for an item of no known kind."""
    table = {kind: (validator, validator.accept()) for kind, validator in profile.events.items()}
    field = profile.discriminator

    if field is not None:

        def by_field(value: Any) -> tuple[Validator, Callable[[Any], bool], Any]:
            if type(value) is not dict or field not in value:
                raise _Unclassified(f"validation error: '{field}' required")
            kind = value[field]
            entry = table.get(kind) if type(kind) is str else None
            if entry is None:
                raise _Unclassified(f"validation error: unknown '{field}': {orjson.dumps(kind).decode()}")
            return (*entry, value)

        return by_field

    def by_key(value: Any) -> tuple[Validator, Callable[[Any], bool], Any]:
        key = next(iter(value), "") if type(value) is dict else ""
        entry = table.get(key)
        if entry is None:
            raise _Unclassified(f'did not recognize object type: "{key}"')
        return (*entry, value[key])

    return by_key
