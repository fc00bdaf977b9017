"""Thin helpers over IntakeStream: a whole body, an iterable, an async iterable, a file."""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import AsyncIterable, BinaryIO, Callable, Iterable, Union

from .errors import QueueFull
from .event import Event
from .limits import Limits
from .profile import Profile
from .result import IntakeResult
from .stream import SINK_FAILED, SINK_QUEUE_FULL, IntakeStream, logger


def _ignore(events: list[Event]) -> None:
    """A sink for callers who want only the result: events are not kept."""


#: Receives each non-empty batch of accepted events, in order.
EventSink = Callable[[list[Event]], object]
AsyncEventSink = Callable[[list[Event]], Union[Awaitable[object], object]]


def validate_chunks(
    chunks: Iterable[bytes],
    *,
    profile: str | Profile = "apm",
    content_encoding: str | None = None,
    limits: Limits | None = None,
    strict: bool = False,
    sink: EventSink | None = None,
) -> IntakeResult:
    """Validate a body given as an iterable of chunks; stops reading at a fatal error.

    ``sink`` gets the accepted events in batches as they are read (memory stays
    bounded); without one they are counted and dropped.
    """
    stream = IntakeStream(
        profile=profile, content_encoding=content_encoding, limits=limits, strict=strict, sink=sink or _ignore
    )
    for chunk in chunks:
        stream.feed(chunk)
        if stream.finished:
            break
    return stream.close()


def validate(
    body: bytes,
    *,
    profile: str | Profile = "apm",
    content_encoding: str | None = None,
    limits: Limits | None = None,
    strict: bool = False,
    sink: EventSink | None = None,
) -> IntakeResult:
    """Validate a whole body held in memory."""
    return validate_chunks(
        (body,), profile=profile, content_encoding=content_encoding, limits=limits, strict=strict, sink=sink
    )


def validate_file(
    file: BinaryIO,
    *,
    chunk_size: int = 64 * 1024,
    profile: str | Profile = "apm",
    content_encoding: str | None = None,
    limits: Limits | None = None,
    strict: bool = False,
    sink: EventSink | None = None,
) -> IntakeResult:
    """Validate a body read from a binary file object, ``chunk_size`` bytes at a time."""
    return validate_chunks(
        iter(partial(file.read, chunk_size), b""),
        profile=profile,
        content_encoding=content_encoding,
        limits=limits,
        strict=strict,
        sink=sink,
    )


async def validate_async(
    chunks: AsyncIterable[bytes],
    *,
    profile: str | Profile = "apm",
    content_encoding: str | None = None,
    limits: Limits | None = None,
    strict: bool = False,
    sink: AsyncEventSink | None = None,
) -> IntakeResult:
    """Validate a body given as an async iterable of chunks; ``sink`` may be async.
    A sink that raises stops the request as with :class:`IntakeStream`'s sink."""
    stream = IntakeStream(profile=profile, content_encoding=content_encoding, limits=limits, strict=strict)
    failed = False

    async def deliver(events: list[Event]) -> None:
        nonlocal failed
        if events and sink is not None and not failed:
            try:
                outcome = sink(events)
                if isinstance(outcome, Awaitable):
                    await outcome
            except QueueFull:
                failed = True
                stream.fail(*SINK_QUEUE_FULL, refused=len(events))
            except Exception:
                failed = True
                logger.exception("the sink failed on a batch of %d events", len(events))
                stream.fail(*SINK_FAILED, refused=len(events))

    async for chunk in chunks:
        for events in stream.feed_paced(chunk):
            await deliver(events)
        if stream.finished:
            break
    result = stream.close()
    await deliver(result.final_events)
    return stream.close()  # made again if the sink refused the final events
