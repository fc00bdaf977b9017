"""An ASGI intake app: no framework, the body streamed chunk by chunk as it arrives.

    from ndintake.asgi import IntakeASGI
    app = IntakeASGI(sink=print)        # uvicorn module:app

Routes, hooks and answers are those of :class:`ndintake.server.handler.Intake` (see its
docstring); this module only does the ASGI I/O.
"""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, MutableMapping, Protocol

from ..sinks.hooks import Batch, Undelivered, is_async_sink, offer_each
from .handler import PAUSE, READ, Admit, Deliver, Exchange, Intake, Request, Sleep
from .responses import Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: How often shutdown() looks whether the requests in flight are done.
_POLL = 0.05
#: Threads that run a synchronous sink off the event loop.
SINK_THREADS = 4


class _Disconnected(Exception):
    """The client went away before the body ended."""


class BodyReader(Protocol):
    """What the driver reads a body from: each non-empty chunk, then None at the
    end; raises ``_Disconnected`` if the client went away."""

    async def read(self) -> bytes | None: ...


class _Body:
    """Reads ``http.request`` messages: each non-empty body, then None at the end."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._more = True

    async def read(self) -> bytes | None:
        while self._more:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            self._more = bool(message.get("more_body", False))
            body = message.get("body", b"")
            if body:
                return bytes(body)
        return None


def request_from_scope(scope: Scope) -> Request:
    """The intake's view of an ASGI HTTP scope. The path is taken relative to
    ``root_path`` (where the app is mounted)."""
    path = scope.get("path") or "/"
    root = scope.get("root_path") or ""
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        path = path[len(root.rstrip("/")) :] or "/"
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    client = scope.get("client")
    return Request(
        method=scope.get("method", "GET").upper(),
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        client=client[0] if client else None,
    )


class IntakeASGI(Intake):
    """The intake server as a pure ASGI 3 app (HTTP and lifespan).

    Takes :class:`~ndintake.server.handler.Intake`'s keyword arguments. Each
    ``http.request`` message is fed to the stream as it arrives, so bodies are
    never held whole and chunked uploads stream through. A body is processed
    in short steps (a few milliseconds each) with the event loop free in
    between, so one request never stalls the others. A synchronous sink runs
    in a thread, off the loop; an async sink is awaited, the batches of a step
    together. The timeout cuts off a request waiting for its body, for a
    decoder slot or for a slow sink. On lifespan startup a sink's ``start()``
    is awaited if it has one; on lifespan shutdown (or :meth:`shutdown`), new
    intake requests get 503 ``server is shutting down`` while those in flight
    finish, then a sink's ``aclose()`` is awaited if it has one.
    """

    #: Seconds lifespan shutdown waits for requests in flight (None: no limit).
    shutdown_timeout: float | None = 30.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http":
            with self.in_flight():
                response = await self._respond(request_from_scope(scope), receive)
                if response is not None:
                    await _send(response, send)

    _slots: asyncio.Semaphore | None = None
    _slots_loop: asyncio.AbstractEventLoop | None = None
    _threads: ThreadPoolExecutor | None = None

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Refuse new intake requests (503) and wait up to ``timeout`` seconds for
        those in flight; True when none is left."""
        self.begin_shutdown()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.active and (deadline is None or loop.time() < deadline):
            await asyncio.sleep(_POLL)
        return not self.active

    async def _respond(self, request: Request, receive: Receive) -> Response | None:
        exchange = self.exchange(request)
        remaining = exchange.remaining
        try:
            if remaining is None:
                return await self._drive(exchange, _Body(receive))
            return await asyncio.wait_for(self._drive(exchange, _Body(receive)), max(remaining, 0.0))
        except asyncio.TimeoutError:
            return exchange.timed_out()
        except _Disconnected:
            exchange.abandon()
            return None

    async def _drive(self, exchange: Exchange, body: BodyReader) -> Response:
        admitted = False
        try:
            step = exchange.step()
            while not isinstance(step, Response):
                if step is READ:
                    step = exchange.step(await body.read())
                elif step is PAUSE:
                    await asyncio.sleep(0)
                    step = exchange.step()
                elif isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = exchange.step()
                elif isinstance(step, Admit):
                    admitted = await self._admit(step.seconds)
                    step = exchange.step(admitted)
                else:
                    assert isinstance(step, Deliver)
                    try:
                        await self._hand_over(step.batches)
                    except Undelivered as failure:
                        step = exchange.step(error=failure)
                    else:
                        step = exchange.step()
            return step
        finally:
            if admitted:
                assert self._slots is not None
                self._slots.release()

    async def _admit(self, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:  # one semaphore per event loop
            self._slots, self._slots_loop = asyncio.Semaphore(self.max_concurrent_decoders or 1), loop
        if not self._slots.locked():
            await self._slots.acquire()  # returns at once
            return True
        try:
            await asyncio.wait_for(self._slots.acquire(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    async def _hand_over(self, batches: list[Batch]) -> None:
        """Deliver ``batches``; raise :class:`Undelivered` if the sink failed."""
        sink: Any = self.sink
        deliver = getattr(sink, "deliver", None)
        if deliver is not None and inspect.iscoroutinefunction(deliver):
            try:
                await deliver(batches)  # all of them, or none
            except Exception as exc:
                raise Undelivered(0, exc) from exc
        elif self._sink_is_async:
            outcomes = await asyncio.gather(*(sink(batch) for batch in batches), return_exceptions=True)
            for done, outcome in enumerate(outcomes):
                if isinstance(outcome, BaseException):
                    raise Undelivered(done, outcome)
        elif hasattr(sink, "put_nowait"):
            offer_each(sink, batches)  # a queue never blocks
        else:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(SINK_THREADS, thread_name_prefix="ndintake-sink")
            await asyncio.get_running_loop().run_in_executor(self._threads, offer_each, sink, batches)

    @property
    def _sink_is_async(self) -> bool:
        return is_async_sink(self.sink)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown(self.shutdown_timeout)
                await self.cleanup()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Take requests again; await the sink's ``start()`` if it has one."""
        self.draining = False
        start = getattr(self.sink, "start", None)
        if start is not None:
            await start()

    async def cleanup(self) -> None:
        """After :meth:`shutdown`: await the sink's ``aclose()`` if it has one, stop the sink threads."""
        aclose = getattr(self.sink, "aclose", None)
        if aclose is not None:
            await aclose()
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None


async def _send(response: Response, send: Send) -> None:
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body, "more_body": False})
