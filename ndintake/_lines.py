"""Split decoded bytes into lines on ``\\n`` only, with a cap on line size."""

from __future__ import annotations

import re
from typing import Sequence


def lines_starting(
    pattern: re.Pattern[bytes], lines: list[bytes], numbers: Sequence[int]
) -> tuple[list[bytes], list[int]]:
    """The lines that ``pattern`` (which begins with ``\\n``) matches at their
    start, with their numbers: one regex scan of the joined lines, so the lines
    it does not match cost no Python step each."""
    kept: list[bytes] = []
    kept_numbers: list[int] = []
    joined = b"\n" + b"\n".join(lines)  # line i starts after the i-th newline
    index, at = -1, 0
    for match in pattern.finditer(joined):
        index += joined.count(b"\n", at, match.start() + 1)
        at = match.start() + 1
        kept.append(lines[index])
        kept_numbers.append(numbers[index])
    return kept, kept_numbers


def count_blank(lines: list[bytes]) -> int:
    """How many lines are empty or ASCII whitespace only (``not line.strip()``)."""
    return lines.count(b"") + sum(map(bytes.isspace, lines))


class LineSplitter:
    """Push decoded pieces in, get complete lines (without ``\\n``) out.

    A line that spans pieces is cut to its first ``max_size`` bytes as soon as
    it reaches that size, and the rest of it is skipped up to the next ``\\n``
    without being buffered, so at most ``max_size`` bytes are ever held. A line
    inside one piece is returned whole (the piece is in memory anyway): callers
    check ``len(line) >= max_size`` themselves.
    Only ``\\n`` ends a line: ``\\r`` and U+2028 are left alone.
    """

    __slots__ = ("_max", "_parts", "_size", "_skipping")

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._parts: list[bytes] = []  # the unfinished line, in pieces
        self._size = 0
        self._skipping = False

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
                lines.extend(piece[start:last].split(b"\n"))
            start = last + 1
        if start < len(piece):
            self._hold(piece[start:] if start else piece, lines)
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
