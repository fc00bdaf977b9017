"""ReaderContext: all a reader may do to the stream that owns it."""

from __future__ import annotations

from typing import Any

from .errors import EventError
from .event import Event
from .jsonline import text
from .limits import Limits


class ReaderContext:
    """What a profile's reader sees of its stream, and reports to it.

    Readers append accepted events to ``out`` (or call :meth:`emit`), refuse bad
    lines or items with :meth:`reject` (or, past the kept errors, only count them
    with :meth:`count_refused`), count valid events the protocol discards
    without an error with :meth:`drop`, and set ``metadata`` once a first line
    is read. ``strict``, ``limits`` and ``explaining`` say how to read. The
    context holds no reference to the stream: the stream reads its counts.
    """

    __slots__ = ("out", "dropped", "invalid", "errors", "metadata", "strict", "limits", "max_errors")

    def __init__(self, limits: Limits, *, strict: bool, max_errors: int) -> None:
        self.out: list[Event] = []  # accepted since the stream last took them
        self.dropped = 0
        self.invalid = 0
        self.errors: list[EventError] = []
        self.metadata: dict[str, Any] | None = None
        self.strict = strict
        self.limits = limits
        self.max_errors = max_errors

    @property
    def explaining(self) -> bool:
        """False once ``max_errors`` errors are kept: later ones need no message."""
        return len(self.errors) < self.max_errors

    def emit(self, event: Event) -> None:
        """Accept ``event``."""
        self.out.append(event)

    def drop(self, count: int = 1) -> None:
        """Count ``count`` valid events discarded without an error."""
        self.dropped += count

    def reject(self, document: bytes, message: str, line: int | None) -> None:
        """Count a bad line or item; keep its error while fewer than ``max_errors`` are kept."""
        self.invalid += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(EventError(message=message, document=text(document), line=line))

    def count_refused(self, count: int) -> None:
        """Count ``count`` bad lines past the kept errors (no message to keep)."""
        self.invalid += count
