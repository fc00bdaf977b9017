"""Split decoded bytes into lines on ``\\n`` only, with a cap on line size."""

from __future__ import annotations

import re
from itertools import compress
from typing import Sequence

#: The bytes a blank line or the space between JSON values may be made of (what
#: ``bytes.strip()`` removes): space, tab, CR, LF, form feed, vertical tab.
BLANK = b" \t\r\n\f\v"
#: ``BLANK`` as a set of byte values, for ``data[i] in BLANK_BYTES``.
BLANK_BYTES = frozenset(BLANK)


class LineStart:
    """Picks the lines that begin with a regex (which must not match a newline)."""

    def __init__(self, start: bytes) -> None:
        self._each = re.compile(start)  # matched at a line's start
        self._any = re.compile(b"\n" + start)  # searched in b"\n" + b"\n".join(lines)

    def pick(self, lines: list[bytes], numbers: Sequence[int]) -> tuple[list[bytes], list[int]]:
        """The lines that begin with the regex, with their numbers. Where few do
        (judged by how many begin with '{"'), one regex scan of the joined lines
        finds them, so the others cost no Python step each; else each line is
        matched in one ``map``. Both ways pick the same lines."""
        joined = b"\n" + b"\n".join(lines)  # line i starts after the i-th newline
        if joined.count(b'\n{"') * 5 > len(lines):
            starts = list(map(self._each.match, lines))
            return list(compress(lines, starts)), list(compress(numbers, starts))
        kept: list[bytes] = []
        kept_numbers: list[int] = []
        index, at = -1, 0
        for match in self._any.finditer(joined):
            index += joined.count(b"\n", at, match.start() + 1)
            at = match.start() + 1
            kept.append(lines[index])
            kept_numbers.append(numbers[index])
        return kept, kept_numbers


def count_blank(lines: list[bytes], max_size: int) -> int:
    """How many lines are empty or ASCII whitespace only (``not line.strip()``)
    and shorter than ``max_size``: an oversized line is refused for its size,
    blank or not (a line cut short while read is only known by its start)."""
    blank = lines.count(b"") + sum(map(bytes.isspace, lines))
    if max(map(len, lines), default=0) >= max_size:
        blank -= sum(1 for line in lines if len(line) >= max_size and line.isspace())
    return blank


#: From this mean line size on, lines are found with ``bytes.find`` (memchr, in
#: one Python step per line) rather than ``bytes.split``, which in CPython 3.11
#: compares byte by byte for a one-byte separator: measured, the find loop took
#: 0.64x the time on 850-byte lines and 3.9x on 200-byte lines.
LONG_LINE = 640


def _find_lines(piece: bytes, start: int, last: int, lines: list[bytes]) -> None:
    """``lines.extend(piece[start:last].split(b"\\n"))``, one ``find`` per line."""
    find, append = piece.find, lines.append
    while True:
        end = find(b"\n", start, last)
        if end < 0:
            append(piece[start:last])
            return
        append(piece[start:end])
        start = end + 1


class LineSplitter:
    """Push decoded pieces in, get complete lines (without ``\\n``) out.

    A line that spans pieces is cut to its first ``max_size`` bytes as soon as
    it reaches that size, and the rest of it is skipped up to the next ``\\n``
    without being buffered, so at most ``max_size`` bytes are ever held. A line
    inside one piece is returned whole (the piece is in memory anyway): callers
    check ``len(line) >= max_size`` themselves.
    Only ``\\n`` ends a line: ``\\r`` and U+2028 are left alone.
    """

    __slots__ = ("_max", "_parts", "_size", "_skipping", "_long")

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._parts: list[bytes] = []  # the unfinished line, in pieces
        self._size = 0
        self._skipping = False
        self._long = False  # the last piece's lines were long: find them with memchr

    def split(self, piece: bytes) -> list[bytes]:
        """The lines that ``piece`` completes, in order."""
        lines: list[bytes] = []
        start = 0
        if self._skipping:
            start = piece.find(b"\n") + 1
            if not start:
                return lines
            self._skipping = False
        last = piece.rfind(b"\n")
        if last >= start:
            if self._parts:
                end = piece.find(b"\n", start)
                self._parts.append(piece[start:end])
                line = b"".join(self._parts)
                self._parts, self._size = [], 0
                lines.append(line[: self._max])
                start = end + 1
            if start <= last:
                if self._long:
                    _find_lines(piece, start, last, lines)
                else:
                    lines.extend(piece[start:last].split(b"\n"))
            start = last + 1
        if start < len(piece):
            self._hold(piece[start:] if start else piece, lines)
        self._long = len(piece) >= LONG_LINE * len(lines)
        return lines

    def _hold(self, rest: bytes, lines: list[bytes]) -> None:
        self._parts.append(rest)
        self._size += len(rest)
        if self._size >= self._max:
            lines.append(b"".join(self._parts)[: self._max])
            self._parts, self._size = [], 0
            self._skipping = True

    def pending(self) -> bytes:
        """The unfinished line read so far."""
        return b"".join(self._parts)

    def flush(self) -> bytes | None:
        """End of input: the last line if it had no ``\\n``, else None."""
        if not self._parts:
            return None
        line = b"".join(self._parts)
        self._parts, self._size = [], 0
        return line
