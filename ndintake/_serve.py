"""``ndintake serve``: a reference intake server, the ASGI app on uvicorn, in one or more processes."""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
from importlib.util import find_spec
from typing import Any

from ._auth import Authenticator
from ._cliargs import non_negative_float, port_number, positive_float, positive_int
from ._http import DEFAULT_ADMISSION_WAIT, DEFAULT_MAX_CONCURRENT_DECODERS, DEFAULT_TIMEOUT
from ._ratelimit import RateLimiter
from .sinks import SINK_SPELLINGS, open_sink

MISSING_UVICORN = "ndintake serve needs uvicorn: pip install 'ndintake[server]'"
MISSING_PROMETHEUS = (
    "ndintake serve needs prometheus-client for /metrics: pip install 'ndintake[server]' (or --no-metrics)"
)
#: Seconds a connection may take to send a request's headers.
DEFAULT_HEADER_TIMEOUT = 10.0
#: Open connections per worker, beyond which new ones are closed at once.
DEFAULT_MAX_CONNECTIONS = 1000
#: Descriptors kept free for the sink, logs and files beyond the connections.
_SPARE_DESCRIPTORS = 64

logger = logging.getLogger("ndintake.server")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand's options."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=port_number,
        default=8200,
        help="port (default 8200, APM Server's; 0: any free port)",
    )
    parser.add_argument(
        "--sink",
        default="jsonl:events.jsonl",
        metavar="SINK",
        help=f"where accepted events go: {SINK_SPELLINGS} (default jsonl:events.jsonl, appended to)",
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
        type=positive_float,
        metavar="N",
        help="events per second per client IP for anonymous requests (burst 3N); default: no limit",
    )
    parser.add_argument(
        "--timeout",
        type=non_negative_float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"per-request timeout (default {DEFAULT_TIMEOUT:g} s; 0: none)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="worker processes sharing the port (default 1)",
    )
    parser.add_argument(
        "--max-concurrent-decoders",
        type=positive_int,
        default=DEFAULT_MAX_CONCURRENT_DECODERS,
        metavar="N",
        help=f"intake requests reading their body at once, per worker (default {DEFAULT_MAX_CONCURRENT_DECODERS})",
    )
    parser.add_argument(
        "--admission-wait",
        type=non_negative_float,
        default=DEFAULT_ADMISSION_WAIT,
        metavar="S",
        help=f"how long a request waits for a decoder before 503 (default {DEFAULT_ADMISSION_WAIT:g} s)",
    )
    parser.add_argument(
        "--header-timeout",
        type=positive_float,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="S",
        help=f"close connections that take longer to send request headers (default {DEFAULT_HEADER_TIMEOUT:g} s)",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"open connections per worker; more are closed at once (default {DEFAULT_MAX_CONNECTIONS}, "
        "lowered to fit the descriptor limit)",
    )
    parser.add_argument(
        "--grace",
        type=non_negative_float,
        default=10.0,
        metavar="S",
        help="on SIGINT/SIGTERM, wait this long for requests in flight (default 10 s)",
    )
    parser.add_argument(
        "--loop",
        default="asyncio",
        choices=["asyncio", "uvloop"],
        help="event loop (default asyncio: under overload uvloop left connections waiting in the accept "
        "queue for seconds; see README)",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text (default) or json: one JSON object per line, on stderr",
    )
    parser.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        help="do not answer GET /metrics (Prometheus text format; on by default)",
    )


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, inheritable by forked workers."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _descriptor_budget(wanted: int) -> int:
    """Raise the soft descriptor limit as far as allowed; return how many
    connections fit under it (at most ``wanted``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(1, min(wanted, soft - _SPARE_DESCRIPTORS))


def serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT or SIGTERM; return the exit status."""
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        print(MISSING_UVICORN, file=sys.stderr)
        return 2
    if args.metrics and find_spec("prometheus_client") is None:
        print(MISSING_PROMETHEUS, file=sys.stderr)
        return 2
    try:
        sink = open_sink(args.sink)  # checked here, so a bad spelling is exit 2 before anything starts
    except (ValueError, OSError, ImportError) as exc:
        print(f"ndintake serve: {exc}", file=sys.stderr)
        return 2
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        print(f"ndintake serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    args.max_connections = _descriptor_budget(args.max_connections)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    workers = f", {args.workers} workers" if args.workers > 1 else ""
    print(f"ndintake: listening on http://{shown}:{port} (sink: {args.sink}{workers})", file=sys.stderr, flush=True)
    try:
        if args.workers == 1:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # one process: its own values
            return _run_worker(args, sock, sink)
        _close(sink)  # each worker opens its own
        if not args.metrics:
            return _supervise(args, sock)
        # prometheus-client's multiprocess mode: each worker writes its values
        # there (set before any worker imports prometheus_client)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir = tempfile.mkdtemp(prefix="ndintake-metrics-")
        try:
            return _supervise(args, sock)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    finally:
        sock.close()


# -- one worker: the app on uvicorn ---------------------------------------------------------------


def _run_worker(args: argparse.Namespace, sock: socket.socket, sink: Any, name: str = "ndintake") -> int:
    import uvicorn

    from .asgi import IntakeASGI

    authenticator = None
    if args.secret_token or args.api_key:
        authenticator = Authenticator(secret_token=args.secret_token, api_keys=args.api_key)
    limiter = RateLimiter(args.rate_limit) if args.rate_limit else None
    metrics = None
    if args.metrics:
        from ._metrics import Metrics

        metrics = Metrics()
    app = IntakeASGI(
        sink=sink,
        authenticator=authenticator,
        rate_limiter=limiter,
        timeout=args.timeout or None,
        max_concurrent_decoders=args.max_concurrent_decoders,
        admission_wait=args.admission_wait,
        metrics=metrics,
    )
    app.shutdown_timeout = 1.0  # uvicorn has already waited --grace for the requests in flight
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level=args.log_level,
        log_config=_log_config(args.log_format, args.log_level),
        timeout_graceful_shutdown=max(1, round(args.grace)),
        http=http_protocol(args.header_timeout, args.max_connections),
        loop=event_loop(args.loop),
    )
    previous = {signum: signal.signal(signum, ignore_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _close(sink)
        if metrics is not None:
            from ._metrics import mark_process_dead

            mark_process_dead(os.getpid())  # its live gauges no longer count
    count = getattr(sink, "count", 0) if sink is not None else 0
    print(f"{name}: stopped ({count} events written)", file=sys.stderr, flush=True)
    return 0


def _close(sink: Any) -> None:
    close = getattr(sink, "close", None)
    if close is not None:
        close()


def ignore_signal(signum: int, frame: Any) -> None:
    """uvicorn re-raises the signal it stopped on once it is done; by then
    the shutdown was graceful, so the signal is ignored here."""


def event_loop(wanted: str = "asyncio") -> str:
    """uvicorn's ``loop`` setting: ``wanted``, or asyncio when uvloop is asked
    for and not installed."""
    if wanted == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "asyncio"
    return wanted


def _log_config(log_format: str = "text", level: str = "info") -> dict[str, Any]:
    """uvicorn's logging, with the access log on stderr (never mixed into
    ``--sink stdout``) and the accept-loop's descriptor-exhaustion errors
    reported once per interval instead of once per attempt; ndintake's loggers
    through uvicorn's default handler; ``json``: one JSON object per line."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["ndintake"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    if log_format == "json":
        for name in ("default", "access"):
            config["formatters"][name] = {"()": "ndintake._logjson.JsonFormatter"}
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config.setdefault("filters", {})["descriptors"] = {"()": "ndintake._serve.DescriptorExhaustion"}
    config["loggers"]["asyncio"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["handlers"]["default"]["filters"] = ["descriptors"]
    return config


class DescriptorExhaustion(logging.Filter):
    """Lets one "out of descriptors" error through per interval (with no
    traceback) and drops the repeats: the accept loop reports every failed
    ``accept()``, which floods the log when descriptors run out."""

    interval = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._last = -self.interval
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if "out of system resource" not in text and not (
            isinstance(exc, OSError) and exc.errno in (24, 23)  # EMFILE, ENFILE
        ):
            return True
        now = time.monotonic()
        if now - self._last < self.interval:
            self._dropped += 1
            return False
        record.msg = f"accept() failed: out of file descriptors ({self._dropped} repeats not logged)"
        record.args = ()
        record.exc_info = None
        self._last, self._dropped = now, 0
        return True


def http_protocol(header_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools where installed, else h11) with a
    header read timeout and a cap on open connections."""
    base: type[Any]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base = H11Protocol

    class Guarded(base):  # type: ignore[misc]
        """Closes a connection that has no request in progress ``header_timeout``
        seconds after it opened or after its last response (a client sending
        its headers slowly, or nothing), and connections beyond ``max_connections``."""

        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.abort()
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_overdue)

        def _headers_overdue(self) -> None:
            self._header_timer = None
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()

    return Guarded


# -- several workers: a supervisor that forks them --------------------------------------------------


def _supervise(args: argparse.Namespace, sock: socket.socket) -> int:
    """Fork ``args.workers`` workers on the listening socket; on SIGINT or
    SIGTERM pass SIGTERM on and wait up to ``--grace`` (plus a little for the
    sink to drain) before killing what is left. A worker that dies is started
    again."""
    stopping: list[int] = []
    previous: dict[signal.Signals, Any] = {
        sig: signal.signal(sig, lambda signum, frame: stopping.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    children: dict[int, int] = {}  # pid -> worker number
    try:
        for number in range(1, args.workers + 1):
            children[_fork_worker(args, sock, number, previous)] = number
        deadline: float | None = None
        while children:
            if stopping and deadline is None:
                deadline = time.monotonic() + args.grace + 5.0
                for pid in children:
                    _signal(pid, signal.SIGTERM)
            if deadline is not None and time.monotonic() > deadline:
                for pid in children:
                    _signal(pid, signal.SIGKILL)
                deadline = float("inf")
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            number = children.pop(pid, 0)
            if args.metrics:
                from ._metrics import mark_process_dead

                mark_process_dead(pid)  # killed workers never marked themselves
            if not stopping and number:
                print(f"ndintake: worker {number} exited ({status}); starting it again", file=sys.stderr, flush=True)
                time.sleep(0.5)
                children[_fork_worker(args, sock, number, previous)] = number
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("ndintake: stopped", file=sys.stderr, flush=True)
    return 0


def _fork_worker(
    args: argparse.Namespace, sock: socket.socket, number: int, handlers: dict[signal.Signals, Any]
) -> int:
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        # Its own process group: a Ctrl-C reaches the supervisor only, which
        # passes on one SIGTERM (uvicorn takes a second signal as "force exit");
        # and it stops if the supervisor dies.
        os.setpgid(0, 0)
        _die_with_parent()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        code = _run_worker(args, sock, open_sink(args.sink), name=f"ndintake worker {number}")
    except BaseException:
        logger.exception("worker %d failed", number)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent exits (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
