"""Helpers for the HTTP tests: requests, a sans-I/O driver, ASGI and WSGI callers."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ndintake.asgi import IntakeASGI
from ndintake.server import (
    PAUSE,
    READ,
    Admit,
    Deliver,
    Exchange,
    Intake,
    QueueFull,
    Request,
    Response,
    Sleep,
    Undelivered,
    offer_each,
)
from ndintake.wsgi import IntakeWSGI

DATA = Path(__file__).resolve().parent / "data"
APM = DATA / "apm-server"
DATADOG = DATA / "datadog" / "client-captures"
NDJSON = {"content-type": "application/x-ndjson"}


def body_of(name: str) -> bytes:
    """An APM Server test payload, e.g. ``intake-v2/errors.ndjson``."""
    return (APM / name).read_bytes()


def expected() -> dict[str, Any]:
    return json.loads((APM / "derived-results.json").read_text(encoding="utf-8"))


def scenario(name: str) -> dict[str, Any]:
    """One of derived-results.json's handler scenarios, found by a part of its name."""
    scenarios = expected()["scenarios"]
    (key,) = [key for key in scenarios if name in key]
    return scenarios[key]


def cut(data: bytes, size: int | None) -> list[bytes]:
    """``data`` in chunks of ``size`` bytes (None: one chunk)."""
    if size is None or not data:
        return [data] if data else []
    return [data[i : i + size] for i in range(0, len(data), size)]


class FakeClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Recorder:
    """A sync sink that keeps batches; ``full_from``: raise QueueFull from that
    batch (0-based) on; ``fail_with``: raise this instead."""

    batches: list[Any] = field(default_factory=list)
    full_from: int | None = None
    fail_with: BaseException | None = None
    calls: int = 0

    def __call__(self, batch: Any) -> None:
        index = self.calls
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        if self.full_from is not None and index >= self.full_from:
            raise QueueFull
        self.batches.append(batch)

    @property
    def events(self) -> list[Any]:
        return [event for batch in self.batches for event in batch]

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


def request(
    method: str = "POST",
    path: str = "/intake/v2/events",
    headers: dict[str, str] | None = None,
    query: str = "",
    client: str = "127.0.0.1",
) -> Request:
    return Request(
        method=method, path=path, query=query, headers={k.lower(): v for k, v in (headers or {}).items()}, client=client
    )


@dataclass
class Outcome:
    response: Response
    exchange: Exchange
    effects: list[Any]

    @property
    def json(self) -> Any:
        return json.loads(self.response.body)


def drive(
    intake: Intake,
    req: Request,
    chunks: Iterable[bytes] = (),
    *,
    between: Callable[[int], None] | None = None,
    clock: FakeClock | None = None,
    record: bool = True,
    admit: bool = True,
) -> Outcome:
    """Run an exchange with a synchronous test driver. ``between(i)`` runs before
    the reply to the i-th READ; a Sleep advances ``clock`` when given. With
    ``record=False`` the effects (and the batches they carry) are not kept;
    ``admit`` is the reply to an Admit effect (a decoder slot or none)."""
    exchange = intake.exchange(req)
    effects: list[Any] = []
    pieces = iter(chunks)
    reads = 0
    step = exchange.step()
    while not isinstance(step, Response):
        if record:
            effects.append(step)
        if step is READ:
            if between is not None:
                between(reads)
            reads += 1
            step = exchange.step(next(pieces, None))
        elif step is PAUSE:
            step = exchange.step()
        elif isinstance(step, Admit):
            step = exchange.step(admit)
        elif isinstance(step, Sleep):
            if clock is not None:
                clock.advance(step.seconds)
            step = exchange.step()
        else:
            assert isinstance(step, Deliver)
            try:
                offer_each(intake.sink, step.batches)  # type: ignore[arg-type]
            except Undelivered as failure:
                step = exchange.step(error=failure)
            else:
                step = exchange.step()
    return Outcome(step, exchange, effects)


# -- ASGI --------------------------------------------------------------------------


@dataclass
class Reply:
    """A response as seen on the wire side of an app."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def comparable(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers (lower-case names, without hop-by-hop ones), body."""
        headers = sorted((k.lower(), v) for k, v in self.headers if k.lower() != "connection")
        return self.status, headers, self.body


def asgi_scope(
    method: str = "POST",
    path: str = "/intake/v2/events",
    headers: dict[str, str] | None = None,
    query: str = "",
    root_path: str = "",
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": query.encode("latin-1"),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
        "client": client,
        "server": ("127.0.0.1", 8200),
    }


async def call_asgi_async(app: Any, scope: dict[str, Any], messages: Sequence[dict[str, Any]]) -> Reply | None:
    """Call ``app`` with ``messages`` as what ``receive`` gives (then it blocks)."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return await queue.get()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if not sent:
        return None
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
    return Reply(start["status"], headers, b"".join(m.get("body", b"") for m in bodies))


def body_messages(chunks: Sequence[bytes]) -> list[dict[str, Any]]:
    """``http.request`` messages for ``chunks`` (an empty body: one empty message)."""
    if not chunks:
        return [{"type": "http.request", "body": b"", "more_body": False}]
    last = len(chunks) - 1
    return [{"type": "http.request", "body": c, "more_body": i < last} for i, c in enumerate(chunks)]


def call_asgi(
    app: IntakeASGI,
    method: str = "POST",
    path: str = "/intake/v2/events",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: str = "",
    chunk: int | None = None,
) -> Reply:
    scope = asgi_scope(method, path, headers, query)
    reply = asyncio.run(asyncio.wait_for(call_asgi_async(app, scope, body_messages(cut(body, chunk))), 10))
    assert reply is not None
    return reply


# -- WSGI --------------------------------------------------------------------------


class TrickleInput(io.RawIOBase):
    """A ``wsgi.input`` that hands out at most ``size`` bytes per read."""

    def __init__(self, data: bytes, size: int | None) -> None:
        self._data = data
        self._pos = 0
        self._size = size

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        limit = len(self._data) - self._pos if n is None or n < 0 else n
        if self._size is not None:
            limit = min(limit, self._size)
        out = self._data[self._pos : self._pos + limit]
        self._pos += len(out)
        return out

    @property
    def consumed(self) -> int:
        return self._pos


def wsgi_environ(
    method: str = "POST",
    path: str = "/intake/v2/events",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: str = "",
    chunk: int | None = None,
    content_length: bool = True,
    terminated: bool = False,
) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8200",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": TrickleInput(body, chunk),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if content_length:
        environ["CONTENT_LENGTH"] = str(len(body))
    if terminated:
        environ["wsgi.input_terminated"] = True
    for key, value in (headers or {}).items():
        name = key.upper().replace("-", "_")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[name] = value
        else:
            environ[f"HTTP_{name}"] = value
    return environ


def call_wsgi_environ(app: IntakeWSGI, environ: dict[str, Any]) -> Reply:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = headers

    body = b"".join(app(environ, start_response))
    return Reply(captured["status"], captured["headers"], body)


def call_wsgi(
    app: IntakeWSGI,
    method: str = "POST",
    path: str = "/intake/v2/events",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: str = "",
    chunk: int | None = None,
) -> Reply:
    return call_wsgi_environ(app, wsgi_environ(method, path, body, headers, query, chunk))


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


# -- agents ------------------------------------------------------------------------


def python_agent_traffic(server_url: str, service: str, *, metrics: bool = True, **config: Any) -> Any:
    """The Elastic APM Python agent: transactions with spans, errors, a log
    message and (``metrics``) one metrics collection, then close()."""
    import elasticapm

    client = elasticapm.Client(
        service_name=service,
        server_url=server_url,
        metrics_interval="1s" if metrics else "0s",
        cloud_provider="none",
        server_timeout="5s",
        **config,
    )
    try:
        for i in range(4):
            client.begin_transaction("request")
            with elasticapm.capture_span("SELECT FROM shop", span_type="db", span_subtype="postgresql"):
                with elasticapm.capture_span("render", span_type="template"):
                    pass
            try:
                raise KeyError("missing")
            except KeyError:
                client.capture_exception()
            client.end_transaction(f"GET /items/{i}", "HTTP 2xx")
        client.capture_message("checkout done")
        if metrics:
            time.sleep(1.1)  # one metrics collection
    finally:
        client.close()  # flushes, synchronously
    return client
