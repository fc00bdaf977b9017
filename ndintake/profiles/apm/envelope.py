"""APM intake NDJSON: a metadata line, then one ``{"<type>": {...}}`` event per line."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from itertools import compress, repeat
from operator import not_
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import orjson

from ...core.bytecheck import is_scanner
from ...core.context import ReaderContext
from ...core.errors import DecodeError, EventError, Fatal
from ...core.event import Event
from ...core.jsonline import first_key, only_value, parse_line, text
from ...core.lines import BLANK_BYTES, LineSplitter, LineStart, count_blank
from ...core.schemas import Validator, lines_accept
from .rumv3 import METADATA, expand
from .typed import envelope_check

if TYPE_CHECKING:
    from ...core.profile import Profile

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
#: The start of a line that may be an event: "{" after blanks, then a quote
#: before the line ends (a key is a double-quoted string). Any other line never
#: parses to an object with a key, strict or not: orjson skips only JSON
#: whitespace before a value and refuses a BOM, parse_line's salvage only cuts
#: a line's end, and its repair only writes U+FFFD (never "{", a quote or a
#: blank). So it is blank or refused. (\f and \v count as blanks
#: here only to keep the class simple: such lines are tried needlessly.)
_MAYBE_EVENT = LineStart(rb'[ \t\r\f\v]*\{[^\n"]*"')
#: Past the fifth error, refused lines up to this size are remembered (at most
#: _REFUSED_COUNT of them per body), so that a repeated one is counted unparsed.
_REFUSED_SIZE = 64
_REFUSED_COUNT = 256


def line_value(line: bytes) -> dict[str, Any]:
    """The value under the only key of a line the accept check took (its
    lazily parsed ``data``): parsed as the slow path parses it, so the same
    dict (invalid UTF-8 in an unchecked string becomes U+FFFD there too)."""
    obj: dict[str, Any] = parse_line(line, True, repair=True)
    value: dict[str, Any] = obj.popitem()[1]
    return value


#: Whether the last event parsed lazily that a consumer could have read had its
#: ``data`` read: then lines are parsed eagerly (after msgspec's typed check, a
#: parse costs more than a parse alone, and outside ``gc_paused``; not after the
#: byte scanner, which costs far less). Shared by all
#: readers, as a process usually has one kind of consumer; a wrong guess costs
#: time only, never a different result.
_reads_data = [False]
#: The starts of lines the accept check is not tried on: those of keys whose
#: lines it refused more often than it took, while the slow path accepted them
#: (an agent that sends fields the schema does not name: msgspec's typed check refuses
#: unknown keys). Shared like ``_reads_data``; forgotten every ``_RELEARN``
#: batches that skip some, so a change of traffic is seen. Lines of other starts (spacing) are
#: tried anyway: this only saves time.
_untyped: list[tuple[bytes, ...]] = [()]
#: Keys whose special handler keeps a line as sent unless the line's bytes hold
#: a marker: a v2 metricset is dropped only when internal (its "transaction" set,
#: see rumv3.is_internal_metricset). The scanner refuses escaped keys, so a line
#: it took without the marker has no such key: it stays unparsed.
_KEPT_UNLESS = {"metricset": b'"transaction"'}
_RELEARN = 256
_UNTYPED_MAX = 32
_batches = [0]


class _BadLine(Exception):
    """A line that cannot become an event; carries its message."""


class EnvelopeReader:
    """Turns decoded bytes into lines, lines into events, for the APM profiles.

    The first line must be metadata (any problem with it is fatal); each later
    line's type is its first key. Results go to the reader context: accepted events,
    rejected lines, dropped events.
    """

    def __init__(self, context: ReaderContext, profile: Profile) -> None:
        self._context = context
        self._profile = profile
        self._max = context.limits.max_event_size
        self._lines = LineSplitter(self._max)
        self._line_no = 0
        self._metadata_keys = profile.metadata
        self._event_keys = profile.events
        # key -> (kind, accept check, special handler or None, abbreviated): one lookup per line
        self._table = {
            key: (v.kind, v.accept(), profile.special.get(key), key in profile.abbreviated)
            for key, v in profile.events.items()
        }
        self._lines_accept = lines_accept(tuple(profile.events.items()))
        # the accept check (the scanner, else msgspec's typed check) for every event key; a line
        # under a key with a special handler is parsed at once for it (unless _KEPT_UNLESS says
        # the handler keeps it as sent), the others when their data is read
        checked = tuple(profile.events.items())
        self._typed = envelope_check(checked)
        # after the byte scanner, a parse when data is read costs less than parsing and checking
        # every line: then lines are never parsed eagerly
        self._scanner = is_scanner(self._typed)
        # how an event taken unparsed gets its data: the scanner's lines are valid JSON; msgspec's
        # may hold invalid UTF-8 in strings it skipped, which the slow path repairs
        self._value = only_value if self._scanner else line_value
        # key -> (kind, abbreviated) of the events taken unparsed; kept_unless: the same, with its marker
        self._lazy = {
            key: (validator.kind, key in profile.abbreviated)
            for key, validator in checked
            if key not in profile.special
        }
        self._kept_unless = {
            key: ((profile.events[key].kind, key in profile.abbreviated), marker)
            for key, marker in _KEPT_UNLESS.items()
            if self._scanner and key in profile.events and key in profile.special
        }
        self._probe: Event | None = None  # the last event parsed lazily, to see whether data is read
        self._batching = self._lines_accept is not None or self._typed is not None
        self._junk = False  # the last piece had a line that is not a valid one-key event
        self._refused: set[bytes] = set()  # short lines refused past the fifth error
        self._resift = False  # set by _reject at the fifth kept error
        self._remembered: bytes | None = None  # set by _reject: the line it just remembered

    def feed(self, piece: bytes) -> None:
        lines = self._lines.split(piece)
        if lines:
            self._take_lines(lines)

    def finish(self) -> None:
        last = self._lines.flush()
        if last is None:
            return
        if self._context.metadata is None:
            raise Fatal(400, "EOF while reading metadata", text(last), self._line_no + 1)
        self._take_lines([last])

    def stream_error(self, exc: DecodeError) -> EventError:
        """A read error mid-body: 400 while on the metadata line, else 500, as APM Server."""
        if self._context.metadata is None:
            pending = self._lines.pending()
            return EventError(message=str(exc), document=text(pending) or None, status=400, fatal=True)
        return EventError(message=f"cannot handle stream: {exc}", status=500, fatal=True)

    def _take_lines(self, lines: list[bytes]) -> None:
        if self._context.metadata is None:
            self._line_no += 1
            self._take_metadata(lines[0])
            lines = lines[1:]
        if not lines:
            return
        numbers = range(self._line_no + 1, self._line_no + 1 + len(lines))
        self._line_no += len(lines)
        self._take_numbered(lines, numbers)

    def _take_numbered(self, lines: list[bytes], numbers: Sequence[int]) -> None:
        """Lines with their line numbers: sifted once five errors are kept and the
        last piece had junk; then as a batch if the last piece was clean, else
        one by one, until a line changes what the sift would take out (the rest
        is then sifted again)."""
        while lines:
            sifted = False
            if self._junk and not self._context.explaining:
                kept, numbers = self._sift(lines, numbers)
                sifted, lines = len(kept) < len(lines), kept
            taken = len(lines)
            if lines and not (self._batching and self._take_batch(lines, numbers)):
                taken = self._take_each(lines, numbers)
            if sifted:
                self._junk = True  # sift the next piece too
            lines, numbers = lines[taken:], numbers[taken:]

    def _sift(self, lines: list[bytes], numbers: Sequence[int]) -> tuple[list[bytes], list[int]]:
        """The junk fast path, once five errors are kept: a refused line then
        only counts as invalid (no message, document or line number is kept), so
        the lines that cannot be events are counted here, unparsed, and the
        others returned with their line numbers. Cannot be an event: a line
        whose first non-blank byte is not "{" or that has no quote (it parses to
        no object, or to one with no key, or fails: refused, strict or not, as
        ``_take_each`` would), and a line this reader refused before past the
        fifth error (the same bytes get the same decision). Blank lines are
        skipped, as ``_take_each`` does. Only tried after a piece with junk."""
        total = len(lines)
        if self._refused:  # remembered lines: one hash each, in C
            fresh = list(map(not_, map(self._refused.__contains__, lines)))
            lines, numbers = list(compress(lines, fresh)), list(compress(numbers, fresh))
        kept, kept_numbers = _MAYBE_EVENT.pick(lines, numbers)
        self._context.count_refused(total - count_blank(lines, self._max) - len(kept))
        return kept, kept_numbers

    def _take_batch(self, lines: list[bytes], numbers: Sequence[int]) -> bool:
        """The hot path: check every line at once. Takes them all and returns
        True when each is a valid event alone under a known key; else takes none
        and returns False. Lines the accept check takes become events whose
        ``data`` is parsed when read (while the consumer does not read it; else
        only the last line of the batch, to notice when it stops); the others
        are parsed and checked together."""
        if max(map(len, lines)) >= self._max:
            return False
        typed = self._typed
        # per line: the key the accept check took it under, None if it refused it, "" if not tried
        keys: list[str | None] | None = None
        last: str | None = None  # that of the last line only, when parsing eagerly
        if typed is not None:
            if self._probe is not None:
                _reads_data[0] = self._probe.data_parsed
                self._probe = None
            if _reads_data[0] and not self._scanner:
                last = typed(lines[-1])
                if last not in self._lazy:  # refused, or a line for a special handler: parsed with the rest
                    last = None
            elif _untyped[0]:
                _batches[0] += 1
                if _batches[0] % _RELEARN == 0:
                    _untyped[0] = ()  # try every line again
                skip = _untyped[0]
                keys = ["" if line.startswith(skip) else typed(line) for line in lines]
            else:
                keys = list(map(typed, lines))
        if keys is None:
            slow = lines[:-1] if last is not None else lines
        else:
            slow = [line for line, key in zip(lines, keys) if not key]
        objs: list[Any] = []
        if slow:
            if self._lines_accept is None:
                return False
            try:
                objs = list(map(_loads, slow))
            except _JSONDecodeError:
                return False
            if not self._lines_accept(objs):
                return False
            if keys is not None and None in keys:
                self._learn(slow, objs, keys)
        self._take_checked(lines, numbers, repeat(None) if keys is None else keys, objs, last)
        self._junk = False
        return True

    def _take_checked(
        self,
        lines: list[bytes],
        numbers: Sequence[int],
        keys: Iterable[str | None],  # a key, or None or "" for a parsed line
        objs: list[Any],
        last: str | None,
    ) -> None:
        """The events of a checked batch, in order: for a line with a key (the
        accept check took it) one parsed when read; else from the next parsed
        line of ``objs``. ``last``: the key the accept check took the last line
        under when the others were parsed eagerly (the probe)."""
        context = self._context
        out = context.out
        append = out.append
        lazy = self._lazy
        kept_unless = self._kept_unless
        value_of = self._value
        table = self._table
        parsed = iter(objs)
        probe = None
        for key, line, line_no in zip(keys, lines[:-1] if last is not None else lines, numbers):
            if key:
                entry = lazy.get(key)
                if entry is None and key in kept_unless and kept_unless[key][1] not in line:
                    entry = kept_unless[key][0]
                if entry is not None:
                    probe = Event(entry[0], None, line, line_no, entry[1], None, value_of)
                    append(probe)
                else:  # checked, for a special handler: parsed now
                    context.dropped += self._profile.special[key](value_of(line), line, line_no, out)
                continue
            key, value = next(parsed).popitem()  # its only key
            kind, _, special, abbreviated = table[key]
            if special is None:
                append(Event(kind, value, line, line_no, abbreviated))
            else:
                context.dropped += special(value, line, line_no, out)
        if probe is not None:
            self._probe = probe
        if last is not None:
            kind, abbreviated = lazy[last]
            self._probe = Event(kind, None, lines[-1], numbers[-1], abbreviated, None, value_of)
            out.append(self._probe)

    def _learn(self, slow: list[bytes], objs: list[Any], keys: list[str | None]) -> None:
        """Skip the accept check for the keys it refused more often than it took
        in this batch of valid lines (those it never takes, such as metricsets,
        included: a refusal costs more than a success): the starts of their
        lines, up to the key's closing quote, join ``_untyped`` (at most
        ``_UNTYPED_MAX`` of them)."""
        tried = [(line, obj) for line, obj, key in zip(slow, objs, (k for k in keys if not k)) if key is None]
        refused = Counter(next(iter(obj)) for _, obj in tried)  # each has one key
        taken = Counter(keys)
        mostly = {key for key, count in refused.items() if count > taken[key]}
        if not mostly:
            return
        known = set(_untyped[0])
        for line, obj in tried:
            if next(iter(obj)) in mostly and len(known) < _UNTYPED_MAX:
                known.add(line[: line.find(b'"', line.find(b'"') + 1) + 1])
        _untyped[0] = tuple(known)

    def _take_each(self, lines: list[bytes], numbers: Sequence[int]) -> int:
        """Line by line: the path of pieces with a blank, oversized, broken or
        invalid line. The next piece is tried as a batch again only if every
        line of this one would have passed. Returns how many lines it took: it
        stops after a refused line that changes what ``_sift`` would take out."""
        context = self._context
        max_size = self._max
        table = self._table
        out = context.out
        clean = True
        taken = len(lines)
        try:
            for line_no, line in zip(numbers, lines):
                if len(line) >= max_size:
                    self._reject(line[:max_size], "event exceeded the permitted size", line_no)
                    clean = False
                elif not line or (line[0] in BLANK_BYTES and not line.strip()):
                    clean = False
                    continue
                else:
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
                            kind, accept, special, abbreviated = entry
                            value = obj[key]
                            if type(value) is dict and accept(value):
                                if special is None:
                                    out.append(Event(kind, value, line, line_no, abbreviated))
                                else:
                                    context.dropped += special(value, line, line_no, out)
                                clean = clean and len(obj) == 1
                                continue
                    clean = False
                    self._take_event(line, line_no)
                if self._resift or self._remembered is not None:
                    stop = self._stop_after(lines, numbers, line_no)
                    if stop:
                        taken = stop
                        break
        finally:
            self._junk = not clean
            self._batching = clean and (self._lines_accept is not None or self._typed is not None)
        return taken

    def _take_metadata(self, line: bytes) -> None:
        line_no = self._line_no
        if len(line) >= self._max:
            raise Fatal(400, "event exceeded the permitted size", text(line[: self._max]), line_no)
        try:
            key, value = self._parse(line, self._metadata_keys)
        except _BadLine as exc:
            raise Fatal(400, str(exc), text(line), line_no) from None
        except KeyError:
            raise Fatal(400, self._profile.metadata_required, text(line) or None, line_no) from None
        validator = self._metadata_keys[key]
        if type(value) is not dict or not validator.accept()(value):
            message = validator.refusal(value)
            if message is not None:
                raise Fatal(400, message, text(line), line_no)
        self._context.metadata = expand(value, METADATA) if key in self._profile.abbreviated else value

    def _take_event(self, line: bytes, line_no: int) -> None:
        """The slow path of one line: anything but a valid, kept event."""
        context = self._context
        try:
            key, value = self._parse(line, self._event_keys)
        except _BadLine as exc:
            self._reject(line, str(exc), line_no)
            return
        except KeyError as exc:
            self._reject(line, f'did not recognize object type: "{exc.args[0]}"', line_no)
            return
        validator = self._event_keys[key]
        if type(value) is not dict or not validator.accept()(value):
            message = validator.refusal(value, explain=context.explaining)
            if message is not None:
                self._reject(line, message, line_no)
                return
        special = self._profile.special.get(key)
        if special is not None:
            context.dropped += special(value, line, line_no, context.out)
        else:
            context.out.append(Event(validator.kind, value, line, line_no, key in self._profile.abbreviated))

    def _reject(self, line: bytes, message: str, line_no: int) -> None:
        """Refuse a line. Past the fifth error, where every decision is made
        with ``explain=False`` and so depends on the line's bytes alone (for
        this reader: its profile, limits and strictness), a short one is
        remembered for ``_sift``. Notes the fifth kept error (``_resift``) and
        the line remembered (``_remembered``) for ``_stop_after``."""
        context = self._context
        explaining = context.explaining
        context.reject(line, message, line_no)
        if explaining:
            self._resift = not context.explaining
        elif len(line) <= _REFUSED_SIZE and len(self._refused) < _REFUSED_COUNT:
            self._refused.add(line)
            self._remembered = line

    def _stop_after(self, lines: list[bytes], numbers: Sequence[int], line_no: int) -> int:
        """After a refused line: 0 for ``_take_each`` to go on, else how many
        lines it took, to sift the rest again: at the fifth kept error, or when
        the line just remembered comes again in the piece (at most
        ``_REFUSED_COUNT`` times per body, so the scans stay bounded)."""
        taken = bisect_left(numbers, line_no) + 1
        stop = self._resift or self._remembered in lines[taken:]
        self._resift, self._remembered = False, None
        return taken if stop else 0

    def _parse(self, line: bytes, known: dict[str, Validator]) -> tuple[str, Any]:
        """The line's type key and the value under it.

        Raises KeyError(key) for an unknown type, _BadLine for broken JSON.
        """
        try:
            obj = parse_line(line, self._context.strict, repair=True)
        except _JSONDecodeError as exc:
            key = first_key(line)
            if key in known:
                raise _BadLine(f"decode error: data read error: {exc}") from None
            raise KeyError(key) from None
        if type(obj) is dict and obj:
            key = next(iter(obj))
            if key in known:
                return key, obj[key]
            raise KeyError(key)
        key = first_key(line)
        if key in known:
            raise _BadLine(f"decode error: data read error: {key}: expected an object")
        raise KeyError(key)
