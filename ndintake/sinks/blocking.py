"""A synchronous face for an asynchronous sink, for ``IntakeWSGI``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from ..core.errors import QueueFull, SinkUnavailable
from .hooks import Batch

#: Seconds added to the sink's own bound before a call gives up on it.
MARGIN = 5.0


class BlockingSink:
    """Runs an async sink (:class:`~ndintake.sinks.redis.RedisStreamSink`,
    :class:`~ndintake.sinks.nats.JetStreamSink`...) on an event loop in a
    background thread, so synchronous code (``IntakeWSGI(sink=BlockingSink(s))``,
    several WSGI threads at once) can call it.

    The constructor starts the thread and the sink (``await sink.start()``, if
    it has one). ``sink(batch)`` blocks until the sink acknowledged the batch
    and raises what it raises (QueueFull, SinkUnavailable); the sink's own
    timeouts bound the wait, and a call still waiting ``MARGIN`` seconds past
    the sink's ``bound`` is abandoned with QueueFull. :meth:`close` drains the
    sink (``aclose()``) and stops the thread. Thread-safe.
    """

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        bound = getattr(sink, "bound", None)
        self._wait = None if bound is None else bound + MARGIN
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ndintake-sink", daemon=True)
        self._thread.start()
        self._closed = False
        self._lock = threading.Lock()
        start = getattr(sink, "start", None)
        if start is not None:
            self._run(start())

    @property
    def count(self) -> int:
        """The wrapped sink's ``count`` (events acknowledged)."""
        return int(getattr(self.sink, "count", 0))

    @property
    def healthy(self) -> bool:
        """The wrapped sink's ``healthy`` (True if it has none); False once closed."""
        return not self._closed and bool(getattr(self.sink, "healthy", True))

    def __call__(self, batch: Batch) -> None:
        with self._lock:
            if self._closed:
                raise SinkUnavailable(f"{self.sink!r}: the sink is closed")
            future = asyncio.run_coroutine_threadsafe(self.sink(batch), self._loop)
        try:
            future.result(self._wait)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise QueueFull(f"queue is full: no answer from {self.sink!r} within {self._wait:g} s") from None

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self._wait)

    def close(self) -> None:
        """Drain the sink and stop the thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            aclose = getattr(self.sink, "aclose", None)
            if aclose is not None:
                self._run(aclose())
            self._run(_cancel_others())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> BlockingSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _cancel_others() -> None:
    """Cancel the tasks a client left behind (reader loops...) before the loop stops."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
