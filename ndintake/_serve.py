"""``ndintake serve``: a reference intake server, the ASGI app on uvicorn."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from typing import Any

from ._auth import Authenticator
from ._http import DEFAULT_TIMEOUT
from ._ratelimit import RateLimiter
from .sinks import open_sink

MISSING_UVICORN = "ndintake serve needs uvicorn: pip install 'ndintake[server]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand's options."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8200, help="port (default 8200, APM Server's; 0: any free port)")
    parser.add_argument(
        "--sink",
        default="jsonl:events.jsonl",
        metavar="jsonl:PATH|stdout|null",
        help="where accepted events go, one JSON line each (default jsonl:events.jsonl, appended to)",
    )
    parser.add_argument("--secret-token", metavar="T", help="require 'Authorization: Bearer T'")
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="K",
        help="accept 'Authorization: ApiKey base64(K)' (or 'ApiKey K') and, for prodlytics, "
        "'DD-API-KEY: K'; repeatable",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        metavar="N",
        help="events per second per client IP for anonymous requests (burst 3N); default: no limit",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"per-request timeout (default {DEFAULT_TIMEOUT:g} s)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="S",
        help="on SIGINT/SIGTERM, wait this long for requests in flight",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _ignore(signum: int, frame: Any) -> None:
    """uvicorn re-raises the signal it stopped on once it is done; by then
    the shutdown was graceful, so the signal is ignored here."""


def serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT or SIGTERM; return the exit status."""
    try:
        import uvicorn
    except ImportError:
        print(MISSING_UVICORN, file=sys.stderr)
        return 2
    from .asgi import IntakeASGI

    try:
        sink = open_sink(args.sink)
    except (ValueError, OSError) as exc:
        print(f"ndintake serve: {exc}", file=sys.stderr)
        return 2
    authenticator = None
    if args.secret_token or args.api_key:
        authenticator = Authenticator(secret_token=args.secret_token, api_keys=args.api_key)
    limiter = RateLimiter(args.rate_limit) if args.rate_limit else None
    app = IntakeASGI(sink=sink, authenticator=authenticator, rate_limiter=limiter, timeout=args.timeout or None)
    app.shutdown_timeout = args.grace
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        print(f"ndintake serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"ndintake: listening on http://{shown}:{port} (sink: {args.sink})", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level=args.log_level,
        timeout_graceful_shutdown=max(1, round(args.grace)),
    )
    previous = {signum: signal.signal(signum, _ignore) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sock.close()
        if sink is not None:
            sink.close()
    print(f"ndintake: stopped ({sink.count if sink is not None else 0} events written)", file=sys.stderr, flush=True)
    return 0
