"""Errors: the per-event/fatal entries of a result, and the exceptions raised for misuse."""

from __future__ import annotations

from dataclasses import dataclass


class NdintakeError(Exception):
    """Raised when ndintake is *used* wrongly (feed after close, unknown profile...).

    Bad *input* never raises: it becomes an :class:`EventError` in the result.
    """


class QueueFull(Exception):
    """Raised by a sink that cannot take a batch now.

    The server then ends the request with 503 ``cannot handle stream: cannot
    process batch: queue is full`` and the refused batch is not counted as
    accepted, as APM Server does when its publisher queue is full.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class EventError:
    """One entry of a result's ``errors`` list, as APM Server reports it.

    ``status`` is the HTTP status this error asks for (400 for a bad event);
    ``fatal`` is true for the error that stopped the request.
    """

    message: str
    document: str | None = None
    line: int | None = None
    status: int = 400
    fatal: bool = False

    def to_json(self) -> dict[str, str]:
        """The error as it appears in APM Server's response body."""
        out = {"message": self.message}
        if self.document:
            out["document"] = self.document
        return out


class Fatal(Exception):
    """Internal: raised inside the stream to stop it with one fatal error."""

    def __init__(self, status: int, message: str, document: str | None = None, line: int | None = None):
        super().__init__(message)
        self.error = EventError(message=message, document=document, line=line, status=status, fatal=True)


class DecodeError(Exception):
    """Internal: a content decoder could not decode its input.

    ``at_header`` is true when the stream was refused before any output (bad magic
    bytes), which APM Server answers with 400 ``data decoding error: ...``.
    """

    def __init__(self, message: str, *, at_header: bool = False, status: int | None = None):
        super().__init__(message)
        self.at_header = at_header
        self.status = status


class SinkUnavailable(Exception):
    """Raised by a sink that cannot reach where it writes (a broker that is
    down or unreachable, a disk that refuses the write), after its bounded
    retries. The server answers 503 and the batch is not counted; the cause is
    logged. Unlike :class:`QueueFull`, the message says the output is down.
    """
