"""The transport ceiling for ``benchmarks.load``: a bare ASGI app on ndintake serve's uvicorn set-up.

``python -m benchmarks.bare_app --port P`` serves an app that reads each request
body to the end, throws it away and answers ``202`` with no body (``GET /``
answers ``200 {}``). Nothing is decoded or validated, so its requests/s and
MB/s are what uvicorn, the event loop and the loopback socket cost alone.

The uvicorn configuration is the one ``ndintake serve`` builds, from its own
pieces (``ndintake/server/serve.py``: the listening socket, the HTTP protocol with its
header timeout and connection cap on httptools, uvloop where installed).
``--workers N`` forks N processes that share the one listening socket.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"x-content-type-options", b"nosniff")]
_INFO = b'{"bare": true}\n'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind != "http":
        return
    received = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        received += len(message.get("body", b""))
        more = bool(message.get("more_body", False))
    if scope.get("method") in ("GET", "HEAD"):
        status, body = 200, _INFO
    else:
        status, body = 202, b""
    headers = _HEADERS + [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_app", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8201)
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the socket (default 1)")
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)

    import uvicorn

    from ndintake.server.serve import (
        DEFAULT_HEADER_TIMEOUT,
        DEFAULT_MAX_CONNECTIONS,
        event_loop,
        http_protocol,
        listen,
        run_uvicorn,
    )

    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"bare_app: listening on http://{host}:{port}", file=sys.stderr, flush=True)
    children: list[int] = []
    for _ in range(max(1, args.workers) - 1):
        pid = os.fork()
        if pid == 0:
            children = []
            break
        children.append(pid)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level=args.log_level,
        timeout_graceful_shutdown=max(1, round(args.grace)),
        http=http_protocol(DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS),
        loop=event_loop(args.loop),
    )
    try:
        run_uvicorn(config, sock)
    finally:
        sock.close()
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
