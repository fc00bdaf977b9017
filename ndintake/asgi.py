"""An ASGI intake app: no framework, the body streamed chunk by chunk as it arrives.

    from ndintake.asgi import IntakeASGI
    app = IntakeASGI(sink=print)        # uvicorn module:app

Routes, hooks and answers are those of :class:`ndintake._http.Intake` (see its
docstring); this module only does the ASGI I/O.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, MutableMapping

from ._hooks import offer
from ._http import READ, Exchange, Intake, Request, Sleep
from ._responses import Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: How often shutdown() looks whether the requests in flight are done.
_POLL = 0.05


class _Disconnected(Exception):
    """The client went away before the body ended."""


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

    Takes :class:`~ndintake._http.Intake`'s keyword arguments. Each
    ``http.request`` message is fed to the stream as it arrives, so bodies are
    never held whole and chunked uploads stream through. The timeout cuts off a
    request waiting for its body or for a slow sink. On lifespan shutdown (or
    :meth:`shutdown`), new intake requests get 503 ``server is shutting down``
    while those in flight finish.
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

    async def _drive(self, exchange: Exchange, body: _Body) -> Response:
        step = exchange.step()
        while not isinstance(step, Response):
            if step is READ:
                step = exchange.step(await body.read())
            elif isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                step = exchange.step()
            else:
                try:
                    pending = offer(self.sink, step.batch)  # type: ignore[arg-type, union-attr]
                    if pending is not None:
                        await pending
                except Exception as exc:
                    step = exchange.step(error=exc)
                else:
                    step = exchange.step()
        return step

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.draining = False
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown(self.shutdown_timeout)
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _send(response: Response, send: Send) -> None:
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body, "more_body": False})
