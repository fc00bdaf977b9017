"""``ndintake serve``: a reference intake server, the ASGI app on uvicorn, in one or more processes."""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import os
import resource
import select
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from importlib.util import find_spec
from typing import Any

from .. import __version__
from .auth import Authenticator
from .config import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ConfigError, add_options, render, resolve
from ..core.errors import NdintakeError
from ..core.limits import Limits
from ..profiles.custom import profile_from_directory
from .endpoints import DATADOG_STYLE, Endpoint, builtin_endpoints
from .ratelimit import RateLimiter
from ..sinks import open_sink

MISSING_UVICORN = "ndintake serve needs uvicorn: pip install 'ndintake[server]'"
MISSING_PROMETHEUS = (
    "ndintake serve needs prometheus-client for /metrics: pip install 'ndintake[server]' (or --no-metrics)"
)
__all__ = ["DEFAULT_HEADER_TIMEOUT", "DEFAULT_MAX_CONNECTIONS", "MISSING_UVICORN", "add_arguments", "serve"]
#: Descriptors kept free for the sink, logs and files beyond the connections.
_SPARE_DESCRIPTORS = 64

logger = logging.getLogger("ndintake.server")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand's options (see ``_config.py``: each also from
    an environment variable and the ``--config`` file)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="read options from this TOML file (default: $NDINTAKE_CONFIG, if set); "
        "flags, then NDINTAKE_* environment variables, take precedence",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as TOML (secrets masked) and exit",
    )
    parser.add_argument("--version", action="version", version=f"ndintake {__version__}")
    add_options(parser)


def mounted_endpoints(specs: list[str]) -> dict[str, Endpoint]:
    """The endpoints of ``--profile PATH=DIR[;classify=...][;metadata=FILE][;response=...]``
    mounts; raises :class:`NdintakeError` for a bad one."""
    endpoints: dict[str, Endpoint] = {}
    for spec in specs:
        mount, *settings = spec.split(";")
        path, equals, directory = mount.partition("=")
        if not equals or not path.startswith("/") or not directory:
            raise NdintakeError(f"{spec!r}: expected PATH=DIR, with PATH starting with /")
        options: dict[str, str] = {}
        for setting in settings:
            name, equals, value = setting.partition("=")
            if not equals or name not in ("classify", "metadata", "response"):
                raise NdintakeError(f"{spec!r}: unknown setting {setting!r} (classify=, metadata=, response=)")
            options[name] = value
        response = options.get("response", "apm")
        if response not in ("apm", "datadog"):
            raise NdintakeError(f"{spec!r}: response must be apm or datadog, not {response!r}")
        if path in endpoints or path in builtin_endpoints():
            raise NdintakeError(f"{spec!r}: {path} is already served")
        profile = profile_from_directory(
            directory,
            classify=options.get("classify", "key"),
            metadata=options.get("metadata"),
            response=response,
        )
        endpoints[path] = Endpoint.of(profile, DATADOG_STYLE if response == "datadog" else None)
    return endpoints


def listen(host: str, port: int, *, reuse_port: bool = False, listening: bool = True) -> socket.socket:
    """A socket bound to ``host:port`` and listening, inheritable by forked
    workers. ``reuse_port``: in a ``SO_REUSEPORT`` group (each worker listens on
    a socket of its own and the kernel spreads connections evenly among them);
    ``listening=False`` only binds (the supervisor's hold on the port)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    if listening:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


#: Workers listen on sockets of their own in a SO_REUSEPORT group where the
#: platform has it: with one shared socket, whichever worker wakes first takes
#: a burst of new connections, and keep-alive clients stay on it.
_SPREAD = hasattr(socket, "SO_REUSEPORT")


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
        sources = resolve(args, os.environ)
    except ConfigError as exc:
        print(f"ndintake serve: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        sys.stdout.write(render(args, sources))
        sys.stdout.flush()
        return 0
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        print(MISSING_UVICORN, file=sys.stderr)
        return 2
    if args.metrics and find_spec("prometheus_client") is None:
        print(MISSING_PROMETHEUS, file=sys.stderr)
        return 2
    if args.ssl_certfile:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(args.ssl_certfile, args.ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            print(f"ndintake serve: cannot load the TLS certificate or key: {exc}", file=sys.stderr)
            return 2
    try:
        args.endpoints = mounted_endpoints(args.profile)  # schemas compiled once, before any worker forks
    except NdintakeError as exc:
        print(f"ndintake serve: --profile: {exc}", file=sys.stderr)
        return 2
    try:
        sink = open_sink(args.sink)  # checked here, so a bad spelling is exit 2 before anything starts
    except (ValueError, OSError, ImportError) as exc:
        print(f"ndintake serve: {exc}", file=sys.stderr)
        return 2
    spread = args.workers > 1 and _SPREAD
    try:
        sock = listen(args.host, args.port, reuse_port=spread, listening=not spread)
    except OSError as exc:
        print(f"ndintake serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    args.max_connections = _descriptor_budget(args.max_connections)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    workers = f", {args.workers} workers" if args.workers > 1 else ""
    scheme = "https" if args.ssl_certfile else "http"
    listening = f"ndintake: listening on {scheme}://{shown}:{port} (sink: {args.sink}{workers})"
    try:
        if args.workers == 1:
            print(listening, file=sys.stderr, flush=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # one process: its own values
            return _run_worker(args, sock, sink)
        _close(sink)  # each worker opens its own
        if not args.metrics:
            return _supervise(args, sock, listening)
        # prometheus-client's multiprocess mode: each worker writes its values
        # there (set before any worker imports prometheus_client)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir = tempfile.mkdtemp(prefix="ndintake-metrics-")
        try:
            return _supervise(args, sock, listening)
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
        authenticator = Authenticator(
            secret_token=args.secret_token,
            api_keys=args.api_key,
            anonymous_rum=args.anonymous,
            allow_agent=args.anonymous_allow_agent,
            allow_service=args.anonymous_allow_service,
        )
    limiter = RateLimiter(args.rate_limit, max_clients=args.rate_limit_ips) if args.rate_limit else None
    limits = Limits(max_event_size=args.max_event_size, max_body_size=args.max_body_size)
    metrics = None
    if args.metrics:
        from .metrics import Metrics

        metrics = Metrics()
    app = IntakeASGI(
        sink=sink,
        authenticator=authenticator,
        rate_limiter=limiter,
        timeout=args.timeout or None,
        limits={"apm": limits, "rum": limits},
        max_concurrent_decoders=args.max_concurrent_decoders,
        admission_wait=args.admission_wait,
        metrics=metrics,
        allow_origins=args.allow_origin,
        allow_headers=args.allow_header,
        endpoints=args.endpoints,
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
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    try:
        run_uvicorn(config, sock)
    finally:
        _close(sink)
        if metrics is not None:
            from .metrics import mark_process_dead

            mark_process_dead(os.getpid())  # its live gauges no longer count
    count = getattr(sink, "count", 0) if sink is not None else 0
    print(f"{name}: stopped ({count} events written)", file=sys.stderr, flush=True)
    return 0


def _close(sink: Any) -> None:
    close = getattr(sink, "close", None)
    if close is not None:
        close()


def run_uvicorn(config: Any, sock: socket.socket) -> None:
    """Serve ``config`` on ``sock`` until SIGINT or SIGTERM. uvicorn re-raises
    the signal it stopped on once it is done; by then the shutdown was
    graceful, so that signal is ignored here."""
    import uvicorn

    previous = {signum: signal.signal(signum, _ignore_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _ignore_signal(signum: int, frame: Any) -> None:
    pass


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
            config["formatters"][name] = {"()": "ndintake.server.logjson.JsonFormatter"}
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config.setdefault("filters", {})["descriptors"] = {"()": "ndintake.server.serve.DescriptorExhaustion"}
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


def _supervise(args: argparse.Namespace, sock: socket.socket, listening: str) -> int:
    """Fork ``args.workers`` workers on the port ``sock`` holds; print
    ``listening`` once each of them listens; on SIGINT or SIGTERM pass SIGTERM
    on and wait up to ``--grace`` (plus a little for the sink to drain) before
    killing what is left. A worker that dies is started again."""
    stopping: list[int] = []
    previous: dict[signal.Signals, Any] = {
        sig: signal.signal(sig, lambda signum, frame: stopping.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    children: dict[int, int] = {}  # pid -> worker number
    ready, ready_w = os.pipe()  # each worker writes a byte once it listens
    try:
        for number in range(1, args.workers + 1):
            children[_fork_worker(args, sock, number, previous, ready_w)] = number
        _await_workers(ready, args.workers)
        print(listening, file=sys.stderr, flush=True)
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
                from .metrics import mark_process_dead

                mark_process_dead(pid)  # killed workers never marked themselves
            if not stopping and number:
                print(f"ndintake: worker {number} exited ({status}); starting it again", file=sys.stderr, flush=True)
                time.sleep(0.5)
                children[_fork_worker(args, sock, number, previous, ready_w)] = number
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(ready)
        os.close(ready_w)
    print("ndintake: stopped", file=sys.stderr, flush=True)
    return 0


def _await_workers(ready: int, count: int, timeout: float = 30.0) -> None:
    """Wait (at most ``timeout`` seconds) until ``count`` workers said they listen."""
    deadline = time.monotonic() + timeout
    while count > 0 and time.monotonic() < deadline:
        readable, _, _ = select.select([ready], [], [], max(0.0, deadline - time.monotonic()))
        if readable:
            count -= len(os.read(ready, count))


def _fork_worker(
    args: argparse.Namespace, sock: socket.socket, number: int, handlers: dict[signal.Signals, Any], ready: int
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
        if _SPREAD:  # a listening socket of its own, in the port's SO_REUSEPORT group
            held, sock = sock, listen(args.host, sock.getsockname()[1], reuse_port=True)
            held.close()
        os.write(ready, b".")
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
