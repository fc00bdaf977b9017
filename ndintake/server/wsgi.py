"""A WSGI intake app: ``wsgi.input`` read chunk by chunk, the same logic as the ASGI app.

    from ndintake.wsgi import IntakeWSGI
    app = IntakeWSGI(sink=print)        # gunicorn module:app

Routes, hooks and answers are those of :class:`ndintake.server.handler.Intake` (see its
docstring); this module only does the WSGI I/O.
"""

from __future__ import annotations

import threading
import time
from http import HTTPStatus
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from ..sinks.hooks import Undelivered, is_async_sink, offer_each
from .handler import PAUSE, READ, Admit, Deliver, Exchange, Intake, Request, Sleep
from .responses import Response

#: Bytes asked of ``wsgi.input`` per read.
CHUNK_SIZE = 64 * 1024
#: Hop-by-hop headers a WSGI app may not set (PEP 3333); the server decides.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding"})
#: How often shutdown() looks whether the requests in flight are done.
_POLL = 0.05

StartResponse = Callable[..., Any]


def _body(environ: dict[str, Any]) -> Iterator[bytes]:
    """The request body in chunks: ``CONTENT_LENGTH`` bytes when given, else up to
    the end if the server says the input is terminated (chunked uploads), else none."""
    stream: BinaryIO | None = environ.get("wsgi.input")
    if stream is None:
        return
    try:
        length: int | None = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        length = None
    if length is None and not environ.get("wsgi.input_terminated"):
        return
    while length is None or length > 0:
        chunk = stream.read(CHUNK_SIZE if length is None else min(CHUNK_SIZE, length))
        if not chunk:
            return
        if length is not None:
            length -= len(chunk)
        yield chunk


def request_from_environ(environ: dict[str, Any]) -> Request:
    """The intake's view of a WSGI environ (``PATH_INFO`` is already relative to
    where the app is mounted)."""
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return Request(
        method=environ.get("REQUEST_METHOD", "GET").upper(),
        path=environ.get("PATH_INFO") or "/",
        query=environ.get("QUERY_STRING", ""),
        headers=headers,
        client=environ.get("REMOTE_ADDR") or None,
    )


def status_line(status: int) -> str:
    """``"202 Accepted"``."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class IntakeWSGI(Intake):
    """The intake server as a WSGI app, answering exactly like
    :class:`~ndintake.asgi.IntakeASGI` (same inputs, same status, headers and
    body), except that the hop-by-hop ``Connection: Close`` is left to the
    WSGI server (PEP 3333 forbids apps to set it).

    Takes :class:`~ndintake.server.handler.Intake`'s keyword arguments; the sink must be
    synchronous (a callable or a ``queue.Queue``). The timeout is checked
    between chunks and batches: a read blocked on a silent client is bounded by
    the WSGI server's own socket timeout. For a graceful stop call
    :meth:`shutdown` before stopping the server.
    """

    def _check(self) -> None:
        if is_async_sink(self.sink):
            raise TypeError(
                "IntakeWSGI needs a synchronous sink: wrap an async one in ndintake.sinks.BlockingSink, "
                "or use IntakeASGI"
            )
        self._slots = threading.BoundedSemaphore(self.max_concurrent_decoders or 1)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with self.in_flight():
            response = self._drive(self.exchange(request_from_environ(environ)), _body(environ))
        headers = [(name, value) for name, value in response.headers if name.lower() not in _HOP_BY_HOP]
        start_response(status_line(response.status), headers)
        return [response.body]

    def shutdown(self, timeout: float | None = None) -> bool:
        """Refuse new intake requests (503) and wait up to ``timeout`` seconds for
        those in flight; True when none is left."""
        self.begin_shutdown()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.active and (deadline is None or time.monotonic() < deadline):
            time.sleep(_POLL)
        return not self.active

    def _drive(self, exchange: Exchange, body: Iterator[bytes]) -> Response:
        admitted = False
        try:
            step = exchange.step()
            while not isinstance(step, Response):
                if step is READ:
                    step = exchange.step(next(body, None))
                elif step is PAUSE:
                    step = exchange.step()
                elif isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = exchange.step()
                elif isinstance(step, Admit):
                    admitted = self._slots.acquire(timeout=step.seconds)
                    step = exchange.step(admitted)
                else:
                    assert isinstance(step, Deliver)
                    try:
                        offer_each(self.sink, step.batches)  # type: ignore[arg-type]
                    except Undelivered as failure:
                        step = exchange.step(error=failure)
                    else:
                        step = exchange.step()
            return step
        finally:
            if admitted:
                self._slots.release()
