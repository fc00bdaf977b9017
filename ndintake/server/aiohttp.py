"""An aiohttp intake app: the ASGI app's request handling, driven from aiohttp.

    from aiohttp import web
    from ndintake.aiohttp import IntakeAiohttp

    intake = IntakeAiohttp(sink=my_async_sink)
    web.run_app(intake.application(), port=8200)

Routes, hooks and answers are those of :class:`ndintake.asgi.IntakeASGI`
(auth, rate limit, admission, timeout, sinks, ``/``, ``/config/v1/agents``,
``/healthz``, ``/metrics``); this module only does the aiohttp I/O.

The body must reach the intake as sent, still compressed: aiohttp's server
decompresses gzip, deflate and br bodies itself unless its handler is made
with ``auto_decompress=False``, and then ndintake's bounded decoders (and
their limits) never see the compressed bytes. :meth:`IntakeAiohttp.application`
makes an application with that setting. To add the intake to an application
of your own, create that one with ``web.Application(handler_args={"auto_decompress":
False})`` (the setting is the server's, so a sub-application's does not count)
and call :meth:`IntakeAiohttp.add_routes` or ``app.add_subapp("/apm",
intake.application())``. A compressed request that reaches a decompressing
server is refused with 500 and a message saying so (bodies without a
``Content-Encoding`` are fine).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .handler import Request
from .responses import Response, apm_error
from .asgi import IntakeASGI, _Disconnected

logger = logging.getLogger("ndintake.server")

#: aiohttp's server decodes these content codings itself when ``auto_decompress`` is on.
_DECOMPRESSED = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})
_AUTO_DECOMPRESS = (
    "the aiohttp server decompresses request bodies: make the application with "
    "handler_args={'auto_decompress': False} (ndintake.aiohttp: IntakeAiohttp.application())"
)
_HOP_BY_HOP = frozenset({"connection", "content-length"})


class _Content:
    """Reads an aiohttp request's body as it arrives."""

    def __init__(self, request: web.BaseRequest) -> None:
        self._content = request.content

    async def read(self) -> bytes | None:
        try:
            chunk = await self._content.readany()
        except (ConnectionError, HttpProcessingError) as exc:
            raise _Disconnected from exc
        return chunk or None


def request_from_aiohttp(request: web.BaseRequest, path: str | None = None) -> Request:
    """The intake's view of an aiohttp request; ``path``: the path relative to
    where the intake is mounted (default: the request's path). Headers are read
    from the raw bytes as latin-1, as the ASGI app reads them."""
    headers: dict[str, str] = {}
    for name, value in request.raw_headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(
        method=request.method.upper(),
        path=path if path is not None else request.path,
        query=request.query_string,
        headers=headers,
        client=request.remote,
    )


def server_decompresses(request: web.BaseRequest) -> bool | None:
    """Whether the aiohttp server handling ``request`` decompresses bodies
    (None: cannot tell, with an aiohttp whose internals differ)."""
    manager = getattr(request.protocol, "_manager", None)
    kwargs = getattr(manager, "_kwargs", None)
    if not isinstance(kwargs, dict):
        return None
    return bool(kwargs.get("auto_decompress", True))


class IntakeAiohttp(IntakeASGI):
    """The intake server for aiohttp: :meth:`handle` answers one request exactly
    as :class:`~ndintake.asgi.IntakeASGI` answers it, reading the body chunk by
    chunk as it arrives (``request.content``, never held whole).

    Takes :class:`~ndintake.server.handler.Intake`'s keyword arguments; sinks as for the
    ASGI app (async sinks awaited, synchronous ones in a thread). The
    ``Connection: Close`` of an error answer closes the connection (aiohttp
    writes the header itself).
    """

    def application(self, **kwargs: Any) -> web.Application:
        """A ``web.Application`` answering every path with :meth:`handle`, made with
        ``handler_args={"auto_decompress": False}``, whose startup, shutdown and
        cleanup start the sink, drain the requests in flight (up to
        :attr:`shutdown_timeout`) and close the sink. ``kwargs`` go to
        ``web.Application``."""
        handler_args = {**(kwargs.pop("handler_args", None) or {}), "auto_decompress": False}
        app = web.Application(handler_args=handler_args, **kwargs)
        self.add_routes(app)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    def add_routes(self, app: web.Application, prefix: str = "") -> None:
        """Route ``prefix`` + every path of the intake to :meth:`handle` (the
        intake sees the path without ``prefix``). ``app`` must have been made
        with ``handler_args={"auto_decompress": False}``; its lifecycle is yours
        (call :meth:`startup`, :meth:`shutdown` and :meth:`cleanup`)."""
        prefix = prefix.rstrip("/")
        app.router.add_route("*", prefix + "/{ndintake_path:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request."""
        tail = request.match_info.get("ndintake_path")
        intake_request = request_from_aiohttp(request, None if tail is None else "/" + tail)
        with self.in_flight():
            coding = intake_request.headers.get("content-encoding", "").strip().lower()
            if coding and any(c.strip() in _DECOMPRESSED for c in coding.split(",")) and server_decompresses(request):
                logger.error("%s", _AUTO_DECOMPRESS)
                response: Response | None = apm_error(500, _AUTO_DECOMPRESS, intake_request.headers)
            else:
                response = await self._respond_aiohttp(intake_request, request)
        if response is None:  # the client went away
            return web.Response(status=499)
        headers = [(name, value) for name, value in response.headers if name.lower() not in _HOP_BY_HOP]
        answer = web.Response(status=response.status, body=response.body, headers=headers)
        if any(name.lower() == "connection" and value.lower() == "close" for name, value in response.headers):
            answer.force_close()
        return answer

    async def _respond_aiohttp(self, intake_request: Request, request: web.BaseRequest) -> Response | None:
        exchange = self.exchange(intake_request)
        remaining = exchange.remaining
        try:
            if remaining is None:
                return await self._drive(exchange, _Content(request))
            return await asyncio.wait_for(self._drive(exchange, _Content(request)), max(remaining, 0.0))
        except asyncio.TimeoutError:
            return exchange.timed_out()
        except _Disconnected:
            exchange.abandon()
            return None

    async def _on_startup(self, app: web.Application) -> None:
        await self.startup()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.shutdown(self.shutdown_timeout)

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.cleanup()
