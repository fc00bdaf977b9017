"""The sink hook: where an intake server hands each batch of accepted events."""

from __future__ import annotations

import asyncio
import inspect
import queue
from typing import Any, Awaitable, Callable, Iterable, Protocol, Union

from ..core.errors import QueueFull
from ..core.event import Event


class Batch(list[Event]):
    """One batch of accepted events (a list), with the request it came from.

    ``profile``: the profile that read it (``apm``, ``rum``, ``prodlytics``);
    ``metadata``: the request's metadata line (APM profiles; None for
    prodlytics); ``path``: the request path. APM batches hold the events of up
    to ten lines, as APM Server's are; prodlytics batches up to ten items.
    """

    __slots__ = ("profile", "metadata", "path")

    def __init__(
        self,
        events: Iterable[Event] = (),
        *,
        profile: str = "apm",
        metadata: dict[str, Any] | None = None,
        path: str = "",
    ) -> None:
        super().__init__(events)
        self.profile = profile
        self.metadata = metadata
        self.path = path


class QueueLike(Protocol):
    """A bounded queue: ``asyncio.Queue`` or ``queue.Queue`` (``put_nowait``)."""

    def put_nowait(self, item: Any) -> None: ...


#: A sink: a callable taking a :class:`Batch` (a coroutine function too, under ASGI),
#: or a bounded queue that each batch is put into without waiting.
Sink = Union[Callable[[Batch], Union[Awaitable[object], object]], QueueLike]

_FULL = (asyncio.QueueFull, queue.Full)


def offer(sink: Sink, batch: Batch) -> Awaitable[object] | None:
    """Hand ``batch`` to ``sink``. Raises :class:`QueueFull` when a queue sink is
    full; returns the awaitable of an async sink (for the caller to await),
    else None. A callable sink signals "full" by raising QueueFull itself."""
    put = getattr(sink, "put_nowait", None)
    if put is not None:
        try:
            put(batch)
        except _FULL:
            raise QueueFull("queue is full") from None
        return None
    outcome = sink(batch)  # type: ignore[operator]
    return outcome if inspect.isawaitable(outcome) else None


def offer_each(sink: Sink, batches: list[Batch]) -> int:
    """Hand ``batches`` in order to a synchronous sink (or queue); return how
    many it took. At the first exception, stop and raise :class:`Undelivered`
    with that count and the cause."""
    for done, batch in enumerate(batches):
        try:
            offer(sink, batch)
        except Exception as exc:
            raise Undelivered(done, exc) from exc
    return len(batches)


class Undelivered(Exception):
    """A sink failed part-way through a group of batches: ``done`` batches were
    taken before ``cause`` was raised. Drivers throw it back into the exchange."""

    def __init__(self, done: int, cause: BaseException) -> None:
        super().__init__(done, cause)
        self.done = done
        self.cause = cause


def is_async_sink(sink: Sink | None) -> bool:
    """True for a coroutine-function sink (or an object whose ``__call__`` is one)."""
    if sink is None or hasattr(sink, "put_nowait"):
        return False
    if inspect.iscoroutinefunction(sink):
        return True
    return not inspect.isroutine(sink) and inspect.iscoroutinefunction(type(sink).__call__)
